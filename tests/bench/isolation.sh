#!/usr/bin/env bash
# Isolation under attack: how much of a native route's throughput and tail latency survives
# while another route's plugin predicate spins until its deadline on every call (bad-loop),
# hammered by 8 concurrent clients.
#
#   bash tests/bench/isolation.sh              # 5 s per measurement
#   DURATION=10 bash tests/bench/isolation.sh
#
# For each plugin setting (the defaults: concurrency cap + circuit breaker; then the breaker
# off, so only the cap and the epoch yields protect the native route), it measures the native
# `respond` route alone, then again while the attack runs, with wrk on 127.0.0.1 (-t1 -c8).
# Prints rps and p99 for each and the ratios. Bounded: every wrk run has a fixed duration.
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION="${DURATION:-5}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
# ROUTERD_BIN=PATH measures another build (for before/after runs).
if [[ -z "${ROUTERD_BIN:-}" ]]; then
    cargo build --release --quiet --bin routerd
    ROUTERD_BIN=target/release/routerd
fi
bash plugins/build.sh >/dev/null

tmp="$(mktemp -d)"
pid=""
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

. tests/bench/common.sh

# wrk's "Requests/sec" and the p99 latency in ms.
measure() {
    local url="$1" out
    out="$(wrk -t1 -c8 -d"${DURATION}s" --latency "$url")"
    local rps p99
    rps="$(awk '/^Requests\/sec/ {print $2}' <<<"$out")"
    p99="$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; print v}' <<<"$out")"
    echo "$rps $p99"
}

run_case() {
    local label="$1" settings="$2"
    mkdir -p "$tmp/$label/plugins" "$tmp/$label/data"
    cp plugins/dist/bad-loop.wasm "$tmp/$label/plugins/"
    echo "$settings" >"$tmp/$label/plugins/bad-loop.json"
    cat >"$tmp/$label/config.json" <<'EOF'
{"routes": [
  {"name": "native", "matchers": [{"condition": "path", "pattern": "/native"}],
   "filters": [{"name": "respond", "args": ["200", "ok"]}]},
  {"name": "bad", "matchers": [{"condition": "path", "pattern": "/bad"},
                               {"condition": "plugin", "plugin": "bad-loop", "args": []}],
   "filters": [{"name": "respond", "args": ["200", "bad"]}]},
  {"name": "bad-fallback", "matchers": [{"condition": "path", "pattern": "/bad"}],
   "filters": [{"name": "respond", "args": ["200", "fallback"]}]}
]}
EOF
    local p a
    p="$(port)"
    a="$(port)"
    RUST_LOG=error "$ROUTERD_BIN" --config "$tmp/$label/config.json" \
        --listen "127.0.0.1:$p" --admin "127.0.0.1:$a" \
        --plugins "$tmp/$label/plugins" --data "$tmp/$label/data" >"$tmp/$label/log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$p/native" >/dev/null 2>&1 && break
        sleep 0.1
    done
    local alone attacked attack
    alone="$(measure "http://127.0.0.1:$p/native")"
    # The attack runs a little longer than the measurement, on both sides of it.
    (wrk -t1 -c8 -d"$((DURATION + 2))s" --latency "http://127.0.0.1:$p/bad" >"$tmp/$label/attack") &
    local wrk_pid=$!
    sleep 1
    attacked="$(measure "http://127.0.0.1:$p/native")"
    wait "$wrk_pid"
    attack="$(awk '/^Requests\/sec/ {print $2}' "$tmp/$label/attack") $(awk '$1 == "99%" {print $2}' "$tmp/$label/attack")"
    kill "$pid" && wait "$pid" 2>/dev/null || true
    pid=""
    read -r rps0 p990 <<<"$alone"
    read -r rps1 p991 <<<"$attacked"
    printf '%-22s native alone %9.0f rps p99 %6.2f ms | under attack %9.0f rps p99 %6.2f ms | rps %.2fx p99 %.2fx | attacked route %s rps p99 %s\n' \
        "$label" "$rps0" "$p990" "$rps1" "$p991" \
        "$(echo "$rps1 / $rps0" | bc -l)" "$(echo "$p991 / $p990" | bc -l)" $attack
}

echo "isolation: wrk -t1 -c8 -d${DURATION}s, bad-loop (10 ms deadline) hammered by 8 clients; $(nproc) CPUs"
run_case defaults '{}'
run_case breaker-off '{"breaker_failures": 0}'
