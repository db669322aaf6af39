#!/usr/bin/env bash
# How often a guest language's predicate fails under load: a release routerd with one route
# whose predicate is the `lang` plugin in LANG (default go), driven by wrk on 127.0.0.1 until
# CALLS predicate calls ran (default 1,000,000; in bounded wrk runs of DURATION seconds, at most
# MAX_RUNS of them). Every request carries the matching header, so every answer must be 200
# from the route: a failed call (trap, deadline, ...) answers 404 instead. Prints the calls, the
# failures by kind from /metrics, the non-200 answers wrk saw, and the first failure lines of
# the log; exits 1 when any call failed.
#
#   bash tests/bench/reliability.sh                 # Go, 1M calls
#   LANG_NAME=python CALLS=100000 bash tests/bench/reliability.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

LANG_NAME="${LANG_NAME:-go}"
CALLS="${CALLS:-1000000}"
DURATION="${DURATION:-30}"
MAX_RUNS="${MAX_RUNS:-20}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
if [[ -z "${ROUTERD_BIN:-}" ]]; then
    cargo build --release --quiet --bin routerd
    ROUTERD_BIN=target/release/routerd
fi
if [[ "$LANG_NAME" == rust ]]; then
    bash plugins/build.sh >/dev/null 2>&1
    wasm=plugins/dist/lang-rust.wasm
else
    bash plugins/lang/build.sh "$LANG_NAME" >/dev/null 2>&1
    wasm="plugins/lang/dist/lang-$LANG_NAME.wasm"
fi

tmp="$(mktemp -d)"
pid=""
cleanup() { [[ -z "$pid" ]] || kill "$pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
mkdir -p "$tmp/plugins" "$tmp/data"
cp "$wasm" "$tmp/plugins/lang.wasm"
# A generous deadline: this counts the guest's own failures, not a busy machine's slow calls.
echo '{"deadline_ms": 1000, "breaker_failures": 0}' >"$tmp/plugins/lang.json"
cat >"$tmp/config.json" <<'JSON'
{"routes": [{"name": "lang", "matchers": [{"condition": "path", "pattern": "/lang"},
  {"condition": "plugin", "plugin": "lang", "args": ["x-lang", "yes"]}],
  "filters": [{"name": "respond", "args": ["200", "ok"]}]}]}
JSON
. tests/bench/common.sh
port="$(port)"
admin="$(port)"
RUST_LOG=warn "$ROUTERD_BIN" --config "$tmp/config.json" --listen "127.0.0.1:$port" \
    --admin "127.0.0.1:$admin" --plugins "$tmp/plugins" --data "$tmp/data" >"$tmp/log" 2>&1 &
pid=$!
for _ in $(seq 600); do
    [[ "$(curl -s -H 'x-lang: yes' "http://127.0.0.1:$port/lang" 2>/dev/null)" == ok ]] && break
    sleep 0.1
done

metric() {
    curl -s "http://127.0.0.1:$admin/metrics" |
        awk -v m="$1" 'index($0, m) == 1 && $0 ~ /plugin="lang"/ && ($0 !~ /phase=/ || $0 ~ /phase="predicate"/) {s += $NF} END {printf "%d", s}'
}
non200=0
runs=0
while (( $(metric routerd_plugin_calls_total) < CALLS && runs < MAX_RUNS )); do
    out="$(wrk -t1 -c8 -d"${DURATION}s" -H 'x-lang: yes' "http://127.0.0.1:$port/lang")"
    bad="$(awk '/Non-2xx or 3xx responses/ {print $NF}' <<<"$out")"
    non200=$((non200 + ${bad:-0}))
    runs=$((runs + 1))
done
calls="$(metric routerd_plugin_calls_total)"
failed=0
report="lang-$LANG_NAME: $calls predicate calls in $runs wrk run(s) of ${DURATION}s (-t1 -c8)"
for kind in traps deadline_hits memory_cap_hits rejected_results overloaded short_circuited; do
    n="$(metric "routerd_plugin_${kind}_total")"
    failed=$((failed + n))
    report+=", $kind $n"
done
echo "$report; non-200 answers $non200"
grep -m 5 "plugin predicate failed" "$tmp/log" | cut -c 1-400 || true
[[ $failed -eq 0 && $non200 -eq 0 ]]
