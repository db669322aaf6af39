#!/usr/bin/env bash
# Many plugins at once: N copies of the header-eq predicate (default 1,000), each its own
# plugin with its own route (`/p/I`, `x-user: alice` matches, anything else falls through to a
# `miss` route), loaded by a release routerd with the default instance pool (256), so warm
# instances are evicted least recently used first. With DISTINCT=1 (the default) every copy
# gets a custom section of its own, so each has its own sha256 and is compiled (in a child
# process) instead of sharing one compilation.
#
# Reports, for a start from cold (empty compile cache) and a restart on the cache it filled:
# the time from start to serving and RSS; then CLIENTS clients (default 16) at once send
# REQUESTS requests each (default 300), spread over all routes, half with the header that
# matches: every answer must come from the right route (a wrong one is a failure, exit 1).
# Also prints routerd's overloaded and deadline counters and RSS after the run. ROUNDS=3
# repeats the spread on the warm process. Bounded: ROUNDS * CLIENTS * REQUESTS requests.
#
#   bash tests/bench/many_plugins.sh
#   N=300 CLIENTS=8 ROUTERD_BIN=target/release/routerd bash tests/bench/many_plugins.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

N="${N:-1000}"
CLIENTS="${CLIENTS:-16}"
REQUESTS="${REQUESTS:-300}"
ROUNDS="${ROUNDS:-3}"
DISTINCT="${DISTINCT:-1}"
if [[ -z "${ROUTERD_BIN:-}" ]]; then
    cargo build --release --quiet --bin routerd
    ROUTERD_BIN=target/release/routerd
fi
bash plugins/build.sh >/dev/null 2>&1

tmp="$(mktemp -d)"
pid=""
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
mkdir -p "$tmp/plugins" "$tmp/data"
python3 - "$N" "$tmp" "$DISTINCT" <<'PY'
import json, sys
n, tmp, distinct = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
base = open("plugins/dist/header-eq.wasm", "rb").read()
sys.path.insert(0, "tests/bench")
from wasm_variant import custom_section
routes = []
for i in range(n):
    data = base + custom_section(str(i).encode()) if distinct else base
    open(f"{tmp}/plugins/p{i}.wasm", "wb").write(data)
    routes.append({"name": f"r{i}",
                   "matchers": [{"condition": "path", "pattern": f"/p/{i}"},
                                {"condition": "plugin", "plugin": f"p{i}", "args": ["x-user", "alice"]}],
                   "filters": [{"name": "respond", "args": ["200", f"r{i}"]}]})
routes.append({"name": "miss", "matchers": [{"condition": "path_prefix", "pattern": "/p"}],
               "filters": [{"name": "respond", "args": ["200", "miss"]}]})
json.dump({"routes": routes}, open(f"{tmp}/config.json", "w"))
PY
. tests/bench/common.sh
port="$(port)"
admin="$(port)"
rss() { awk '/VmRSS/ {printf "%d MiB", $2 / 1024}' "/proc/$pid/status"; }

# Starts routerd and waits until the last route answers through its plugin; prints the time.
start() {
    local label="$1" started ready
    started="$(date +%s.%N)"
    RUST_LOG=warn "$ROUTERD_BIN" --config "$tmp/config.json" --listen "127.0.0.1:$port" \
        --admin "127.0.0.1:$admin" --plugins "$tmp/plugins" --data "$tmp/data" >>"$tmp/log" 2>&1 &
    pid=$!
    for _ in $(seq 3000); do
        [[ "$(curl -s -H 'x-user: alice' "http://127.0.0.1:$port/p/$((N - 1))" 2>/dev/null)" == "r$((N - 1))" ]] && break
        sleep 0.1
    done
    ready="$(date +%s.%N)"
    echo "$label: $N plugins serving after $(printf '%.1f' "$(echo "$ready - $started" | bc -l)") s, RSS $(rss)"
}

stop() {
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
    pid=""
}

start "cold (empty compile cache)"
stop
start "restart (compile cache)"

wrong_total=0
for round in $(seq "$ROUNDS"); do
    set +e
    python3 - "$N" "$port" "$CLIENTS" "$REQUESTS" "$round" <<'PY'
import http.client, random, sys, threading
n, port, clients, requests, rnd = (int(a) for a in sys.argv[1:6])
wrong, examples, lock = [0], [], threading.Lock()
def client(c):
    rng = random.Random(rnd * 1000 + c)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for k in range(requests):
        i = rng.randrange(n)
        user = "alice" if k % 2 == 0 else "bob"
        conn.request("GET", f"/p/{i}", headers={"x-user": user})
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace")
        want = f"r{i}" if user == "alice" else "miss"
        if resp.status != 200 or body != want:
            with lock:
                wrong[0] += 1
                if len(examples) < 5:
                    examples.append(f"/p/{i} x-user {user}: {resp.status} {body[:120]}")
threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
for t in threads: t.start()
for t in threads: t.join()
print(f"round {rnd}: {clients} clients x {requests} requests over {n} routes: {wrong[0]} wrong")
for e in examples: print("  e.g.", e)
sys.exit(1 if wrong[0] else 0)
PY
    rc=$?
    set -e
    [[ $rc -eq 0 ]] || wrong_total=$((wrong_total + 1))
done
metrics="$(curl -s "http://127.0.0.1:$admin/metrics")"
sum() { awk -v m="$1" 'index($0, m) == 1 {s += $NF} END {printf "%d", s}' <<<"$metrics"; }
echo "after the spread: RSS $(rss); plugin overloaded $(sum routerd_plugin_overloaded_total), deadline hits $(sum routerd_plugin_deadline_hits_total), traps $(sum routerd_plugin_traps_total); requests answered 503 for want of capacity $(sum routerd_overloaded_requests_total)"
echo "\"plugin predicate failed\" log lines: $(grep -c "plugin predicate failed" "$tmp/log" || true)"
grep -m 3 "plugin predicate failed" "$tmp/log" | cut -c 1-400 || true
[[ $wrong_total -eq 0 ]] || { echo "$wrong_total round(s) with wrong answers"; exit 1; }
