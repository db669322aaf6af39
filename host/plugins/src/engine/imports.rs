//! What a component may import and which contract it speaks, checked before compiling so a
//! component that cannot link fails in milliseconds, with a message that names the import or
//! the contract version, instead of after a multi-second compile with a bare link error.

use super::PluginEngine;
use crate::PluginError;

/// Interfaces a plugin may import: WASI 0.2's CLI-world interfaces (wired to nothing but clocks,
/// random and our log), `wasi:http` (every outgoing request refused) and the router contract. Checked before compiling, so a component that
/// cannot link fails in milliseconds instead of after a multi-second compile.
const PROVIDED_IMPORTS: &[&str] = &[
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
    "wasi:sockets/",
    "wasi:http/",
    "router:plugin/",
];

/// The versions of the `router:plugin` contract routerd speaks. A 0.x version is compatible
/// with the later patch releases of its minor version (the component model's semver rule), so
/// each entry is a `major.minor` prefix.
pub const CONTRACT_VERSIONS: &[&str] = &["0.2", "0.3"];

/// Refuses an import or export of a `router:plugin` interface of a version routerd does not
/// speak, naming it: otherwise such a component fails later with a bare link error.
fn check_contract(name: &str) -> Result<(), PluginError> {
    let Some(rest) = name.strip_prefix("router:plugin/") else {
        return Ok(());
    };
    let version = rest.split_once('@').map_or("", |(_, v)| v);
    let spoken = CONTRACT_VERSIONS.iter().any(|v| {
        version
            .strip_prefix(v)
            .is_some_and(|patch| patch.is_empty() || patch.starts_with('.'))
    });
    if spoken {
        return Ok(());
    }
    Err(PluginError::Contract {
        interface: name.to_owned(),
        found: if version.is_empty() {
            "an unversioned router:plugin".to_owned()
        } else {
            format!("router:plugin@{version}")
        },
    })
}

impl PluginEngine {
    /// Checks, without compiling, that everything the component imports is something we
    /// provide.
    pub fn check_imports(bytes: &[u8]) -> Result<(), PluginError> {
        // Nested modules and components come inline, each between its own `Version` and `End`;
        // only the outermost component's imports are ours to provide.
        let mut depth = 0usize;
        for payload in wasmparser::Parser::new(0).parse_all(bytes) {
            let payload =
                payload.map_err(|e| PluginError::Invalid(crate::joined_lines(e.message())))?;
            match payload {
                wasmparser::Payload::Version { encoding, .. } => {
                    if depth == 0 && encoding == wasmparser::Encoding::Module {
                        return Err(PluginError::Invalid(
                            "this is a core WebAssembly module, not a component (wrap it with `wasm-tools component new`)".into(),
                        ));
                    }
                    depth += 1;
                }
                wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
                wasmparser::Payload::ComponentImportSection(imports) if depth == 1 => {
                    for import in imports {
                        let import = import
                            .map_err(|e| PluginError::Invalid(crate::joined_lines(e.message())))?;
                        let name = import.name.name;
                        check_contract(name)?;
                        if !PROVIDED_IMPORTS.iter().any(|p| name.starts_with(p)) {
                            return Err(PluginError::Link(format!(
                                "the component imports {name}, which routerd does not provide (plugins get WASI 0.2's cli, io, clocks, random, filesystem, sockets and http interfaces, without any files or network, and router:plugin)"
                            )));
                        }
                    }
                }
                wasmparser::Payload::ComponentExportSection(exports) if depth == 1 => {
                    for export in exports {
                        let export = export
                            .map_err(|e| PluginError::Invalid(crate::joined_lines(e.message())))?;
                        check_contract(export.name.name)?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_versions_other_than_the_spoken_ones_are_named() {
        assert!(check_contract("wasi:cli/environment@0.2.0").is_ok());
        assert!(check_contract("router:plugin/request@0.2.0").is_ok());
        assert!(check_contract("router:plugin/request@0.2.7").is_ok());
        assert!(check_contract("router:plugin/filter@0.3.0").is_ok());
        for (name, found) in [
            ("router:plugin/predicate@0.1.0", "router:plugin@0.1.0"),
            ("router:plugin/request@0.20.0", "router:plugin@0.20.0"),
            ("router:plugin/request@0.4.0", "router:plugin@0.4.0"),
            ("router:plugin/request@1.0.0", "router:plugin@1.0.0"),
            ("router:plugin/request", "an unversioned router:plugin"),
        ] {
            let e = check_contract(name).expect_err(name).to_string();
            assert!(e.contains(found), "{e}");
            assert!(
                e.contains("routerd speaks router:plugin@0.2.x, 0.3.x"),
                "{e}"
            );
        }
    }

    /// wasmparser pretty-prints the expected and found magic numbers over many lines; the
    /// error a user sees (and the log line it goes into) is one line.
    #[test]
    fn an_invalid_file_is_reported_on_one_line() {
        let e = PluginEngine::check_imports(b"definitely not a wasm file at all")
            .expect_err("random bytes are refused")
            .to_string();
        assert!(!e.contains('\n'), "{e}");
        assert!(e.contains("magic"), "{e}");
    }
}
