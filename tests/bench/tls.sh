#!/usr/bin/env bash
# What TLS termination costs: a native `respond` route over the plain listener and over
# --tls-listen (TLS 1.3, HTTP/1.1 keep-alive, so the handshake is paid once per connection),
# alternated ROUNDS times with wrk on 127.0.0.1 (-t1 -c32). Prints rps per round and the ratio.
#
#   bash tests/bench/tls.sh              # 5 s per measurement, 3 rounds
#   DURATION=10 ROUNDS=5 bash tests/bench/tls.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION="${DURATION:-5}"
ROUNDS="${ROUNDS:-3}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl >/dev/null; }
cargo build --release --quiet --bin routerd

tmp="$(mktemp -d)"
pid=""
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

. tests/bench/common.sh

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
cat >"$tmp/config.json" <<'JSON'
{"routes": [{"name": "native", "matchers": [{"condition": "path", "pattern": "/native"}],
             "filters": [{"name": "respond", "args": ["200", "ok"]}]}]}
JSON
mkdir -p "$tmp/plugins" "$tmp/data"
p="$(port)"; t="$(port)"; a="$(port)"
RUST_LOG=error target/release/routerd --config "$tmp/config.json" --listen "127.0.0.1:$p" \
    --admin "127.0.0.1:$a" --tls-listen "127.0.0.1:$t" --tls-cert "$tmp/cert.pem" \
    --tls-key "$tmp/key.pem" --plugins "$tmp/plugins" --data "$tmp/data" >"$tmp/log" 2>&1 &
pid=$!
for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$p/native" >/dev/null 2>&1 && break
    sleep 0.1
done

rps() { wrk -t1 -c32 -d"${DURATION}s" "$1" | awk '/^Requests\/sec/ {print $2}'; }
for round in $(seq "$ROUNDS"); do
    plain="$(rps "http://127.0.0.1:$p/native")"
    tls="$(rps "https://127.0.0.1:$t/native")"
    ratio="$(awk -v a="$tls" -v b="$plain" 'BEGIN {printf "%.2f", a / b}')"
    echo "round $round: plain $plain rps, tls $tls rps, tls/plain $ratio"
done
