//! What a component says it was built from: the `producers` custom sections (the languages
//! and the tools that made it), for the plugin listing. Purely informative: nothing is
//! decided on it, and a component without the sections simply lists nothing.

use serde::Serialize;
use wasmparser::{KnownCustom, Parser, Payload};

/// A component's declared languages and build tools.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Producers {
    /// The source languages, as declared: the component's own `language` field when it has
    /// one (ComponentizeJS writes `JavaScript` there), else those of its core modules (the
    /// runtime's languages for an interpreter-based guest).
    pub languages: Vec<String>,
    /// The component's `processed-by` tools, as `name version`.
    pub tools: Vec<String>,
}

/// Reads `bytes`' producers sections; a malformed section ends the reading, keeping what
/// came before it.
pub fn read(bytes: &[u8]) -> Producers {
    let mut top_languages = Vec::new();
    let mut module_languages = Vec::new();
    let mut tools = Vec::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let Ok(payload) = payload else { break };
        match payload {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::CustomSection(section) => {
                let KnownCustom::Producers(reader) = section.as_known() else {
                    continue;
                };
                for field in reader.into_iter().flatten() {
                    for value in field.values.into_iter().flatten() {
                        let (list, text) = match (field.name, depth) {
                            ("language", 1) => (&mut top_languages, value.name.to_owned()),
                            ("language", _) => (&mut module_languages, value.name.to_owned()),
                            ("processed-by", 1) if value.version.is_empty() => {
                                (&mut tools, value.name.to_owned())
                            }
                            ("processed-by", 1) => {
                                (&mut tools, format!("{} {}", value.name, value.version))
                            }
                            _ => continue,
                        };
                        let text = text.replace("C_plus_plus", "C++");
                        if !list.contains(&text) {
                            list.push(text);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Producers {
        languages: if top_languages.is_empty() {
            module_languages
        } else {
            top_languages
        },
        tools,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component holding one core module, with producers sections at both levels.
    fn component(top: &[(&str, &str)], module: &[(&str, &str)]) -> Vec<u8> {
        let producers = |fields: &[(&str, &str)]| {
            let mut section = wasm_encoder::ProducersSection::new();
            for (field, value) in fields {
                let mut f = wasm_encoder::ProducersField::new();
                f.value(value, "1.0");
                section.field(field, &f);
            }
            section
        };
        let mut m = wasm_encoder::Module::new();
        m.section(&producers(module));
        let mut c = wasm_encoder::Component::new();
        c.section(&wasm_encoder::ModuleSection(&m));
        c.section(&producers(top));
        c.finish()
    }

    #[test]
    fn the_component_s_own_language_wins_over_its_runtime_s() {
        let bytes = component(
            &[
                ("language", "JavaScript"),
                ("processed-by", "ComponentizeJS"),
            ],
            &[("language", "C_plus_plus_14"), ("language", "Rust")],
        );
        let p = read(&bytes);
        assert_eq!(p.languages, ["JavaScript"]);
        assert_eq!(p.tools, ["ComponentizeJS 1.0"]);
    }

    #[test]
    fn without_one_the_modules_languages_are_listed_once_each() {
        let bytes = component(
            &[("processed-by", "wit-component")],
            &[
                ("language", "Rust"),
                ("language", "C_plus_plus_14"),
                ("language", "Rust"),
            ],
        );
        let p = read(&bytes);
        assert_eq!(p.languages, ["Rust", "C++_14"]);
        assert_eq!(read(b"not wasm"), Producers::default());
    }
}
