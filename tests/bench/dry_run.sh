#!/usr/bin/env bash
# Dry runs at scale: a release routerd keeping every request head (--sample-every 1, up to
# HEADS, default 10,000) takes ROUTES API routes (default 10,000: `path /svcN/{id}` + `method
# GET`, answered by the `respond` filter) in one apply; a client then sends HEADS requests over
# them (one kept-alive connection, each to a random route, some with a cookie and an
# Authorization header), and asks for RUNS dry runs (default 5) of a one-route change
# (`PUT /api/v1/routes/svcN?dry_run=true` with a new path). Reports each dry run's time end to
# end from the client and routerd's own `took_ms`, the heads replayed and the requests moved;
# checks that the count moved equals the sampled requests to the changed route.
#
# Bounded: one apply, HEADS requests, RUNS dry runs; 127.0.0.1 only.
#
#   bash tests/bench/dry_run.sh
#   ROUTES=1000 HEADS=2000 bash tests/bench/dry_run.sh
#   ROUTERD_BIN=/path/to/routerd bash tests/bench/dry_run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/bench/common.sh

ROUTES="${ROUTES:-10000}"
HEADS="${HEADS:-10000}"
RUNS="${RUNS:-5}"
if [[ -z "${ROUTERD_BIN:-}" ]]; then
    cargo build --release --quiet --bin routerd
    ROUTERD_BIN=target/release/routerd
fi

tmp="$(mktemp -d)"
pid=""
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
mkdir -p "$tmp/plugins" "$tmp/data"
echo '{"routes": []}' >"$tmp/config.json"
admin_port="$(port)"
proxy_port="$(port)"
RUST_LOG=warn "$ROUTERD_BIN" --config "$tmp/config.json" --sample-every 1 \
    --sample-max-heads "$HEADS" --listen "127.0.0.1:$proxy_port" \
    --admin "127.0.0.1:$admin_port" --plugins "$tmp/plugins" --data "$tmp/data" >"$tmp/log" 2>&1 &
pid=$!
for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$admin_port/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done

python3 - "$ROUTES" "$HEADS" "$RUNS" "$admin_port" "$proxy_port" <<'PY'
import http.client, json, random, statistics, sys, time
routes, heads, runs, admin, proxy = (int(a) for a in sys.argv[1:])
random.seed(7)

def rule(i, path):
    return {"name": f"svc{i}", "matchers": [{"condition": "path", "pattern": path},
            {"condition": "method", "pattern": "GET"}],
            "filters": [{"name": "respond", "args": ["200", f"svc{i}", "text/plain"]}]}

a = http.client.HTTPConnection("127.0.0.1", admin, timeout=120)
doc = {"routes": [rule(i, f"/svc{i}/{{id}}") for i in range(routes)]}
a.request("POST", "/api/v1/routes/apply", json.dumps(doc), {"content-type": "application/json"})
r = a.getresponse(); r.read()
assert r.status == 200, r.status

p = http.client.HTTPConnection("127.0.0.1", proxy, timeout=30)
target = 17
to_target = 0
for n in range(heads):
    i = target if n % 50 == 0 else random.randrange(routes)
    to_target += i == target
    headers = {}
    if n % 3 == 0:
        headers = {"cookie": f"session=s{n}; theme=dark", "authorization": f"Bearer t{n}"}
    p.request("GET", f"/svc{i}/{n}?q={n % 7}", headers=headers)
    r = p.getresponse(); r.read()
    assert r.status == 200, (r.status, i)

change = rule(target, f"/moved{target}/{{id}}")
walls, took = [], []
for _ in range(runs):
    started = time.perf_counter()
    a.request("PUT", f"/api/v1/routes/svc{target}?dry_run=true", json.dumps(change),
              {"content-type": "application/json"})
    r = a.getresponse(); body = r.read()
    walls.append((time.perf_counter() - started) * 1000)
    assert r.status == 200, (r.status, body[:300])
    report = json.loads(body)
    took.append(report["took_ms"])
print(f"{routes} routes, {report['replayed']} sampled heads ({report['sample']['bytes'] / 1e6:.1f} MB held)")
print(f"dry run end to end: median {statistics.median(walls):.0f} ms (each: {', '.join(f'{w:.0f}' for w in walls)})")
print(f"replay inside routerd (took_ms): median {statistics.median(took):.0f} ms")
print(f"moved: {report['moved']} (sampled requests to svc{target}: {to_target})")
assert report["moved"] == to_target, report["groups"]
PY
