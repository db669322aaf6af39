#!/usr/bin/env bash
# Convergence across instances: how long after instance A acknowledged a route change does
# instance C serve it? One etcd and three routerd instances (A, B, C) on loopback; CHANGES
# successive PUTs of one route on A's admin API, each giving the route a new body; after each
# acknowledgement, C's proxy listener is polled (about every 0.5 ms) until it answers the new
# body. Prints p50, p90, p99 and max in ms, also counted from the moment the PUT was sent.
#
#   bash tests/bench/convergence.sh             # 200 changes
#   CHANGES=50 bash tests/bench/convergence.sh  # a shorter run
#
# Bounded: each change waits at most 5 s for C, and the run gives up on the first change
# that does not converge in that time.
set -euo pipefail
cd "$(dirname "$0")/../.."

CHANGES="${CHANGES:-200}"
bash tests/system-deps.sh
cargo build --release --quiet --features etcd --bin routerd

tmp="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

. tests/bench/common.sh

client="$(port)"; peer="$(port)"
etcd --name bench --data-dir "$tmp/etcd" \
    --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "bench=http://127.0.0.1:$peer" >"$tmp/etcd.log" 2>&1 &
pids+=($!)

store="etcd://127.0.0.1:$client/convergence"
declare -A proxy admin
for name in a b c; do
    proxy[$name]="$(port)"; admin[$name]="$(port)"
    mkdir -p "$tmp/$name/plugins" "$tmp/$name/data"
    echo '{"routes":[]}' >"$tmp/$name/routes.json"
    RUST_LOG=warn ./target/release/routerd --config "$tmp/$name/routes.json" \
        --listen "127.0.0.1:${proxy[$name]}" --admin "127.0.0.1:${admin[$name]}" \
        --plugins "$tmp/$name/plugins" --data "$tmp/$name/data" \
        --store "$store" --instance-id "$name" >"$tmp/$name.log" 2>&1 &
    pids+=($!)
done

python3 - "${admin[a]}" "${proxy[c]}" "$CHANGES" <<'PY'
import http.client, json, sys, time

admin_a, proxy_c, changes = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])

def wait_up(port, path):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path)
            c.getresponse().read()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"nothing answers on 127.0.0.1:{port}")

wait_up(admin_a, "/api/v1/cluster")
wait_up(proxy_c, "/")

def route(body):
    return json.dumps({
        "name": "conv",
        "matchers": [{"condition": "path_prefix", "pattern": "/conv"}],
        "filters": [{"name": "respond", "args": ["200", body, "text/plain"]}],
    })

admin = http.client.HTTPConnection("127.0.0.1", admin_a, timeout=10)
proxy = http.client.HTTPConnection("127.0.0.1", proxy_c, timeout=10)

def write(method, path, body):
    admin.request(method, path, route(body), {"content-type": "application/json"})
    r = admin.getresponse()
    text = r.read()
    if r.status not in (200, 201):
        sys.exit(f"{method} {path} answered {r.status}: {text!r}")

def put(body):
    write("PUT", "/api/v1/routes/conv", body)

def served():
    proxy.request("GET", "/conv")
    r = proxy.getresponse()
    return r.read().decode(errors="replace")

write("POST", "/api/v1/routes", "warmup")
deadline = time.monotonic() + 10
while served() != "warmup":
    if time.monotonic() > deadline:
        sys.exit("instance C never served the first route")
    time.sleep(0.01)

after_ack, after_send = [], []
for i in range(changes):
    body = f"v{i}"
    sent = time.monotonic()
    put(body)
    acked = time.monotonic()
    limit = acked + 5
    while True:
        if served() == body:
            now = time.monotonic()
            break
        if time.monotonic() > limit:
            sys.exit(f"change {i} not served by C within 5 s")
        time.sleep(0.0005)
    after_ack.append((now - acked) * 1000)
    after_send.append((now - sent) * 1000)

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]

print(f"{changes} route changes on A, served by C (ms):")
print(f"{'':>22} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
for label, xs in (("after A acknowledged", after_ack), ("after the PUT was sent", after_send)):
    print(f"{label:>22} {pct(xs,50):8.2f} {pct(xs,90):8.2f} {pct(xs,99):8.2f} {max(xs):8.2f}")
PY
