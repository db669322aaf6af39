#!/usr/bin/env bash
# Resident memory of a release routerd: idle with ROUTES routes (default 10,000: static,
# parameter and prefix paths, half with a method matcher) and 5 plugins, each used by a route;
# then RELOADS hot replacements (default 500) of one plugin through the admin API, each a build
# of its own (a distinct custom section, so it is compiled, not taken from the cache), each
# followed by a request that the new plugin answers. Reports RSS idle, after the first 50
# reloads (the allocator's warm state) and after the last, and the growth between the two.
# Bounded: RELOADS uploads and RELOADS requests, on 127.0.0.1 only.
#
#   bash tests/bench/memory.sh
#   ROUTES=100000 RELOADS=100 bash tests/bench/memory.sh
#   ROUTERD_BIN=/path/to/routerd bash tests/bench/memory.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUTES="${ROUTES:-10000}"
RELOADS="${RELOADS:-500}"
# ROUTERD_BIN measures another build (a before/after pair in one session).
if [[ -z "${ROUTERD_BIN:-}" ]]; then
    cargo build --release --quiet --bin routerd
    ROUTERD_BIN=target/release/routerd
fi
[[ -f plugins/dist/header-eq.wasm ]] || bash plugins/build.sh >/dev/null 2>&1

tmp="$(mktemp -d)"
pid=""
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
mkdir -p "$tmp/plugins" "$tmp/data" "$tmp/variants"
python3 - "$ROUTES" "$RELOADS" "$tmp" <<'PY'
import json, sys
n, reloads, tmp = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
base = open("plugins/dist/header-eq.wasm", "rb").read()
sys.path.insert(0, "tests/bench")
from wasm_variant import custom_section
for i in range(5):
    open(f"{tmp}/plugins/p{i}.wasm", "wb").write(base + custom_section(f"start-{i}".encode()))
for i in range(reloads):
    open(f"{tmp}/variants/{i}.wasm", "wb").write(base + custom_section(f"reload-{i}".encode()))
routes = []
for i in range(n):
    kind = i % 4
    pattern = [f"/api/v{i % 7}/svc{i}/items", f"/svc{i}/{{id}}", f"/u{i}/{{id}}/posts/{{post}}",
               f"/static{i}"][kind]
    m = [{"condition": "path_prefix" if kind == 3 else "path", "pattern": pattern}]
    if i % 2:
        m.append({"condition": "method", "pattern": "GET|POST"})
    routes.append({"name": f"r{i}", "matchers": m,
                   "filters": [{"name": "respond", "args": ["200", f"r{i}"]}]})
for i in range(5):
    routes.append({"name": f"plugin{i}",
                   "matchers": [{"condition": "path", "pattern": f"/plugin/{i}"},
                                {"condition": "plugin", "plugin": f"p{i}", "args": ["x-n", "1"]}],
                   "filters": [{"name": "respond", "args": ["200", f"plugin{i}"]}]})
json.dump({"routes": routes}, open(f"{tmp}/config.json", "w"))
PY
. tests/bench/common.sh
proxy="$(port)" admin="$(port)"
RUST_LOG=warn "$ROUTERD_BIN" --config "$tmp/config.json" --listen "127.0.0.1:$proxy" \
    --admin "127.0.0.1:$admin" --plugins "$tmp/plugins" --data "$tmp/data" >"$tmp/log" 2>&1 &
pid=$!
for _ in $(seq 1200); do
    [[ "$(curl -s -H 'x-n: 1' "http://127.0.0.1:$proxy/plugin/4")" == plugin4 ]] && break
    sleep 0.1
done
sleep 2
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
idle="$(rss_kib)"
echo "$ROUTES routes + 5 plugins, idle: RSS $((idle / 1024)) MiB"

python3 - "$RELOADS" "$proxy" "$admin" "$tmp" "$pid" <<'PY'
import http.client, sys, time
reloads, proxy, admin, tmp, pid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])
a = http.client.HTTPConnection("127.0.0.1", admin, timeout=60)
p = http.client.HTTPConnection("127.0.0.1", proxy, timeout=10)
warm, started = None, time.monotonic()
for i in range(reloads):
    a.request("POST", "/api/v1/plugins?name=p0", body=open(f"{tmp}/variants/{i}.wasm", "rb").read())
    r = a.getresponse()
    body = r.read()
    if r.status not in (200, 201):
        sys.exit(f"reload {i}: {r.status} {body[:200]!r}")
    p.request("GET", "/plugin/0", headers={"x-n": "1"})
    answer = p.getresponse().read().decode()
    if answer != "plugin0":
        sys.exit(f"after reload {i}: the route answered {answer!r}")
    if i + 1 == min(50, reloads):
        warm = rss()
        print(f"after {i + 1} reloads: RSS {warm // 1024} MiB")
    elif (i + 1) % 100 == 0 and i + 1 < reloads:
        print(f"  after {i + 1}: {rss() // 1024} MiB")
last = rss()
took = time.monotonic() - started
print(f"after {reloads} reloads ({took:.0f} s, {1000 * took / reloads:.0f} ms each): RSS {last // 1024} MiB,"
      f" {100 * (last - warm) / warm:+.1f}% since reload {min(50, reloads)}")
PY
