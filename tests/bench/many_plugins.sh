#!/usr/bin/env bash
# Many plugins at once: N copies of the header-eq predicate (default 1,000), each its own
# plugin with its own route, loaded by a release routerd with the default instance pool (256),
# so warm instances are evicted least recently used first. With DISTINCT=1 every copy gets a
# custom section of its own, so each has its own sha256 and is compiled (in a child process)
# instead of hitting the compile cache. Reports the start-up time, resident
# memory after loading and after every route has been requested twice, and checks that each
# route answers through its own plugin. Bounded: 2N requests.
#
#   bash tests/bench/many_plugins.sh          # N=1000
#   N=300 DISTINCT=1 bash tests/bench/many_plugins.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

N="${N:-1000}"
cargo build --release --quiet --bin routerd
bash plugins/build.sh >/dev/null 2>&1

tmp="$(mktemp -d)"
pid=""
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
mkdir -p "$tmp/plugins" "$tmp/data"
python3 - "$N" "$tmp" "${DISTINCT:-0}" <<'PY'
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
                                {"condition": "plugin", "plugin": f"p{i}", "args": ["x-n", str(i)]}],
                   "filters": [{"name": "respond", "args": ["200", f"r{i}"]}]})
routes.append({"name": "miss", "matchers": [{"condition": "path_prefix", "pattern": "/p"}],
               "filters": [{"name": "respond", "args": ["200", "miss"]}]})
json.dump({"routes": routes}, open(f"{tmp}/config.json", "w"))
PY
. tests/bench/common.sh
port="$(port)"
started="$(date +%s.%N)"
RUST_LOG=warn target/release/routerd --config "$tmp/config.json" --listen "127.0.0.1:$port" \
    --admin 127.0.0.1:0 --plugins "$tmp/plugins" --data "$tmp/data" >"$tmp/log" 2>&1 &
pid=$!
for _ in $(seq 1200); do
    curl -sf "http://127.0.0.1:$port/p/0" >/dev/null 2>&1 && break
    sleep 0.1
done
ready="$(date +%s.%N)"
rss() { awk '/VmRSS/ {printf "%d MiB", $2 / 1024}' "/proc/$pid/status"; }
echo "$N plugins (distinct: ${DISTINCT:-0}): ready after $(printf '%.1f' "$(echo "$ready - $started" | bc -l)") s, RSS $(rss)"
python3 - "$N" "$port" <<'PY'
import http.client, sys
n, port = int(sys.argv[1]), int(sys.argv[2])
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
bad = 0
for rnd in range(2):
    for i in range(n):
        for value, want in ((str(i), f"r{i}"), ("no", "miss")):
            conn.request("GET", f"/p/{i}", headers={"x-n": value})
            body = conn.getresponse().read().decode()
            if body != want:
                bad += 1
print(f"{4 * n} requests, {bad} answered by the wrong route")
sys.exit(1 if bad else 0)
PY
echo "after serving every route: RSS $(rss)"
