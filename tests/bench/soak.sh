#!/usr/bin/env bash
# Soak: wrk on 127.0.0.1 against a real routerd (a native route, a route proxying to nginx and
# a route behind a Wasm predicate) while, every second, an API route is created, changed and
# deleted, an apply replaces a batch of routes, and the predicate's plugin file is replaced
# with a different build. Reports requests, failed requests (non-2xx or socket errors; must
# be 0), p99, and routerd's RSS at start and at the end. Not part of the test suite.
#
#   bash tests/bench/soak.sh                # 10 minutes
#   DURATION=60 bash tests/bench/soak.sh    # bounded by DURATION seconds in all cases
#   PLUGIN_SETTINGS='{"deadline_ms": 100}' bash tests/bench/soak.sh   # the predicate's NAME.json
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION="${DURATION:-600}"
PLUGIN_SETTINGS="${PLUGIN_SETTINGS:-{\}}"
for tool in wrk nginx curl; do
    command -v "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk nginx curl >/dev/null; }
done
cargo build --release --quiet --bin routerd
bash plugins/build.sh >/dev/null

tmp="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
. tests/bench/common.sh
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

backend="$(port)"
mkdir -p "$tmp/nginx/logs" "$tmp/www"
# nginx workers drop to an unprivileged user: they must be able to read the page.
chmod 755 "$tmp" "$tmp/www"
echo "from nginx" >"$tmp/www/index.html"
cat >"$tmp/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/logs/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    server { listen 127.0.0.1:$backend; root $tmp/www; }
}
EOF
nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -g 'daemon off;' &
pids+=($!)

mkdir -p "$tmp/plugins" "$tmp/data"
cp plugins/dist/header-eq.wasm "$tmp/plugins/gate.wasm"
echo "$PLUGIN_SETTINGS" >"$tmp/plugins/gate.json"
cat >"$tmp/config.json" <<EOF
{"routes": [
  {"name": "native", "matchers": [{"condition": "path", "pattern": "/native"}],
   "filters": [{"name": "respond", "args": ["200", "ok"]}]},
  {"name": "proxied", "target_url": "http://127.0.0.1:$backend",
   "matchers": [{"condition": "path", "pattern": "/"}]},
  {"name": "gated", "matchers": [{"condition": "path", "pattern": "/gated"},
                                 {"condition": "plugin", "plugin": "gate", "args": ["x-soak", "1"]}],
   "filters": [{"name": "respond", "args": ["200", "gated"]}]}
]}
EOF
proxy="$(port)"
admin="$(port)"
RUST_LOG=warn target/release/routerd --config "$tmp/config.json" --listen "127.0.0.1:$proxy" \
    --admin "127.0.0.1:$admin" --plugins "$tmp/plugins" --data "$tmp/data" >"$tmp/routerd.log" 2>&1 &
rd=$!
pids+=($rd)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$proxy/native" >/dev/null 2>&1 && break; sleep 0.1; done
rss_start="$(rss_kib "$rd")"

# Every request must succeed: a Lua script counts non-2xx answers.
cat >"$tmp/soak.lua" <<'EOF'
local paths = {"/native", "/", "/gated"}
local i = 0
request = function()
    i = i + 1
    return wrk.format("GET", paths[(i % #paths) + 1], {["x-soak"] = "1"})
end
EOF
wrk -t2 -c16 -d"${DURATION}s" --latency -s "$tmp/soak.lua" "http://127.0.0.1:$proxy" >"$tmp/wrk.out" &
wrk_pid=$!
pids+=($wrk_pid)

changes=0
alt=0
end=$((SECONDS + DURATION))
while ((SECONDS < end)) && kill -0 "$wrk_pid" 2>/dev/null; do
    n=$((changes % 50))
    curl -sf -X POST "http://127.0.0.1:$admin/api/v1/routes" -H 'content-type: application/json' \
        -d "{\"name\":\"churn-$n\",\"matchers\":[{\"condition\":\"path\",\"pattern\":\"/churn/$n\"}],\"filters\":[{\"name\":\"respond\",\"args\":[\"200\",\"c\"]}]}" >/dev/null || true
    curl -sf -X DELETE "http://127.0.0.1:$admin/api/v1/routes/churn-$n" >/dev/null || true
    curl -sf -X POST "http://127.0.0.1:$admin/api/v1/routes/apply" -H 'content-type: application/json' \
        -d "{\"routes\":[{\"name\":\"batch\",\"matchers\":[{\"condition\":\"path\",\"pattern\":\"/batch/$n\"}],\"filters\":[{\"name\":\"respond\",\"args\":[\"200\",\"b\"]}]}]}" >/dev/null || true
    # A different build of the same predicate (same behaviour for this route), swapped in.
    if ((alt == 0)); then src=plugins/dist/header-eq-copyall.wasm; alt=1; else src=plugins/dist/header-eq.wasm; alt=0; fi
    cp "$src" "$tmp/plugins/.gate.tmp" && mv "$tmp/plugins/.gate.tmp" "$tmp/plugins/gate.wasm"
    changes=$((changes + 1))
    sleep 1
done
wait "$wrk_pid" || true
rss_end="$(rss_kib "$rd")"
# Where failures came from: non-2xx answers by route, and the plugin's failure counters.
curl -sf "http://127.0.0.1:$admin/metrics" >"$tmp/metrics" || true
failures_by_route="$(grep '^routerd_requests_total' "$tmp/metrics" | grep -v 'status="2xx"' | awk '$2 > 0' | tr '\n' ' ')"
plugin_failures="$(grep -E '^routerd_plugin_(traps|deadline_hits|overloaded|short_circuited|memory_cap_hits)_total' "$tmp/metrics" | awk '$2 > 0' | tr '\n' ' ')"

requests="$(awk '/requests in/ {print $1}' "$tmp/wrk.out")"
non2xx="$(awk '/Non-2xx or 3xx responses/ {print $5}' "$tmp/wrk.out")"
socket="$(awk -F'[ ,]+' '/Socket errors/ {print $4+$6+$8+$10}' "$tmp/wrk.out")"
p99="$(awk '$1 == "99%" {print $2}' "$tmp/wrk.out")"
echo "soak: ${DURATION}s, wrk -t2 -c16 on /native, / (nginx) and /gated (Wasm predicate, settings $PLUGIN_SETTINGS); $changes rounds of changes; $(nproc) CPUs"
echo "requests ${requests:-0}, failed $(( ${non2xx:-0} + ${socket:-0} )) (non-2xx ${non2xx:-0}, socket errors ${socket:-0}), p99 ${p99:-?}"
echo "routerd RSS: start ${rss_start} KiB, end ${rss_end} KiB ($(( rss_end - rss_start )) KiB growth)"
echo "non-2xx by route: ${failures_by_route:-none}"
echo "plugin failures: ${plugin_failures:-none}"
grep -E 'WARN|ERROR' "$tmp/routerd.log" | grep -v 'API route excluded' | tail -5 || true
