#!/usr/bin/env bash
# Requests per second through a route whose predicate is the `lang` plugin in each guest
# language, against the same route with the native header matcher, with wrk on 127.0.0.1
# (-t1 -c8). Runs alternate (native, language, native, ...) and each language's ratio is
# against the mean of the native runs beside it, so drift on a noisy machine cancels out.
#
#   bash tests/bench/languages.sh            # 5 s per run
#   DURATION=10 bash tests/bench/languages.sh
#   LANGS="rust python" SETTINGS='{"max_concurrent": 8}' bash tests/bench/languages.sh
#   PROXY=1 bash tests/bench/languages.sh    # every route proxies to an nginx backend
#
# By default every route answers with the `respond` filter, the cheapest route there is, so a
# predicate's cost weighs most; with PROXY=1 each request also goes to a backend (nginx, which
# is installed with apt-get when missing), as a route usually does.
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION="${DURATION:-5}"
read -ra LANGS <<<"${LANGS:-rust c wat go quickjs python js}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
# ROUTERD_BIN=PATH measures another build (for before/after runs).
if [[ -z "${ROUTERD_BIN:-}" ]]; then
    cargo build --release --quiet --bin routerd
    ROUTERD_BIN=target/release/routerd
fi
bash plugins/build.sh >/dev/null 2>&1
bash plugins/lang/build.sh >/dev/null 2>&1

tmp="$(mktemp -d)"
chmod 755 "$tmp" # nginx's workers run as nobody when started by root
pid=""
backend_pid=""
# Each step may fail (a process already gone) without skipping the rest.
cleanup() {
    [[ -z "$pid" ]] || kill "$pid" 2>/dev/null || true
    [[ -z "$backend_pid" ]] || kill "$backend_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$tmp/plugins" "$tmp/data"
. tests/bench/common.sh
# What a matched route does: answer itself, or (PROXY=1) go to an nginx backend.
action='"filters": [{"name": "respond", "args": ["200", "ok"]}]'
if [[ -n "${PROXY:-}" ]]; then
    command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx >/dev/null; }
    backend_port="$(port)"
    nginx_conf "$tmp/nginx" "server { listen 127.0.0.1:$backend_port; location / { return 200 \"ok\"; } }"
    nginx -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/error.log" &
    backend_pid=$!
    action="\"target_url\": \"http://127.0.0.1:$backend_port\""
fi
cp plugins/dist/lang-rust.wasm "$tmp/plugins/"
routes="{\"name\": \"native\", \"matchers\": [{\"condition\": \"path\", \"pattern\": \"/native\"}, {\"condition\": \"header\", \"field\": \"x-lang\", \"pattern\": \"yes\"}], $action}"
for lang in "${LANGS[@]}"; do
    [[ "$lang" == rust ]] || cp "plugins/lang/dist/lang-$lang.wasm" "$tmp/plugins/"
    [[ -z "${SETTINGS:-}" ]] || echo "$SETTINGS" >"$tmp/plugins/lang-$lang.json"
    routes+=", {\"name\": \"$lang\", \"matchers\": [{\"condition\": \"path\", \"pattern\": \"/$lang\"}, {\"condition\": \"plugin\", \"plugin\": \"lang-$lang\", \"args\": [\"x-lang\", \"yes\"]}], $action}"
done
echo "{\"routes\": [$routes]}" >"$tmp/config.json"

port="$(port)"
RUST_LOG=warn "$ROUTERD_BIN" --config "$tmp/config.json" --listen "127.0.0.1:$port" \
    --admin 127.0.0.1:0 --plugins "$tmp/plugins" --data "$tmp/data" >"$tmp/log" 2>&1 &
pid=$!
for _ in $(seq 600); do
    curl -sf -H 'x-lang: yes' "http://127.0.0.1:$port/native" >/dev/null 2>&1 && break
    sleep 0.1
done
for lang in "${LANGS[@]}"; do
    body="$(curl -s -H 'x-lang: yes' "http://127.0.0.1:$port/$lang")"
    [[ "$body" == ok ]] || { echo "/$lang does not answer through its predicate: $body" >&2; cat "$tmp/log" >&2; exit 1; }
done

rps() { wrk -t1 -c8 -d"${DURATION}s" -H 'x-lang: yes' "http://127.0.0.1:$port/$1" | awk '/^Requests\/sec/ {print $2}'; }

echo "languages: wrk -t1 -c8 -d${DURATION}s, predicate route vs native header matcher${PROXY:+, proxied to nginx}; $(nproc) CPUs"
before="$(rps native)"
for lang in "${LANGS[@]}"; do
    mine="$(rps "$lang")"
    after="$(rps native)"
    printf '%-8s %9.0f rps   native %9.0f rps   ratio %.2fx\n' "$lang" "$mine" \
        "$(echo "($before + $after) / 2" | bc -l)" "$(echo "2 * $mine / ($before + $after)" | bc -l)"
    before="$after"
done
