#!/usr/bin/env bash
# Requests per second through a route whose predicate is the `lang` plugin in each guest
# language, against the same route with the native header matcher, with wrk on 127.0.0.1
# (-t1 -c8). Runs alternate (native, language, native, ...) and each language's ratio is
# against the mean of the native runs beside it, so drift on a noisy machine cancels out.
#
#   bash tests/bench/languages.sh            # 5 s per run
#   DURATION=10 bash tests/bench/languages.sh
#   LANGS="rust python" SETTINGS='{"max_concurrent": 8}' bash tests/bench/languages.sh
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
pid=""
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
mkdir -p "$tmp/plugins" "$tmp/data"
cp plugins/dist/lang-rust.wasm "$tmp/plugins/"
routes='{"name": "native", "matchers": [{"condition": "path", "pattern": "/native"}, {"condition": "header", "field": "x-lang", "pattern": "yes"}], "filters": [{"name": "respond", "args": ["200", "ok"]}]}'
for lang in "${LANGS[@]}"; do
    [[ "$lang" == rust ]] || cp "plugins/lang/dist/lang-$lang.wasm" "$tmp/plugins/"
    [[ -z "${SETTINGS:-}" ]] || echo "$SETTINGS" >"$tmp/plugins/lang-$lang.json"
    routes+=", {\"name\": \"$lang\", \"matchers\": [{\"condition\": \"path\", \"pattern\": \"/$lang\"}, {\"condition\": \"plugin\", \"plugin\": \"lang-$lang\", \"args\": [\"x-lang\", \"yes\"]}], \"filters\": [{\"name\": \"respond\", \"args\": [\"200\", \"ok\"]}]}"
done
echo "{\"routes\": [$routes]}" >"$tmp/config.json"

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
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

echo "languages: wrk -t1 -c8 -d${DURATION}s, predicate route vs native header matcher; $(nproc) CPUs"
before="$(rps native)"
for lang in "${LANGS[@]}"; do
    mine="$(rps "$lang")"
    after="$(rps native)"
    printf '%-8s %9.0f rps   native %9.0f rps   ratio %.2fx\n' "$lang" "$mine" \
        "$(echo "($before + $after) / 2" | bc -l)" "$(echo "2 * $mine / ($before + $after)" | bc -l)"
    before="$after"
done
