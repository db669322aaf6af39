//! Compiling components: a large one in a short-lived child process when one is configured (so the
//! compiler's memory goes back to the system), else in this process; and the on-disk cache of
//! compiled artifacts, keyed by the component's sha256, the engine kind it needs and the
//! engine's compatibility hash.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wasmtime::Engine;
use wasmtime::component::Component;

use super::cache::{mark_used, trim, write_artifact};
use super::{EngineKind, PluginEngine};
use crate::PluginError;

/// Components smaller than this compile in routerd itself even with the compiling child: the
/// compiler's memory for them is a few MiB, and a child's start (exec, an engine of its own)
/// costs more than their compile (a 65 KB Rust component: 36 ms here, 67 ms through a child),
/// which is most of a cold start with many plugins.
pub const CHILD_COMPILE_MIN_BYTES: usize = 1 << 20;

/// Where a compiled component came from.
pub struct Compiled {
    /// The component.
    pub component: Component,
    /// The engine it was compiled for.
    pub kind: EngineKind,
    /// Where it came from.
    pub by: CompiledBy,
    /// How long compiling or loading it took.
    pub took: Duration,
}

/// How to run a compiling child: this program with these arguments, then the engine kind and
/// the artifact's path; the component on its stdin.
#[derive(Debug, Clone)]
pub struct ChildCompiler {
    /// The program (routerd itself).
    pub program: PathBuf,
    /// Arguments before the engine kind and the artifact's path.
    pub args: Vec<String>,
}

/// Where a compiled component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompiledBy {
    /// Loaded from the compile cache.
    Cache,
    /// Compiled by a child process (then loaded from the cache it wrote).
    Child,
    /// Compiled in this process.
    Routerd,
}

impl CompiledBy {
    /// `cache`, `child` or `routerd`.
    pub fn as_str(self) -> &'static str {
        match self {
            CompiledBy::Cache => "cache",
            CompiledBy::Child => "child",
            CompiledBy::Routerd => "routerd",
        }
    }
}

/// The longest a compiling child may take (a 20 MB guest compiles in seconds).
const CHILD_COMPILE_TIMEOUT: Duration = Duration::from_secs(300);

/// A child's exit code for "the bytes are not a valid component" (its stderr says why).
pub const CHILD_EXIT_INVALID: i32 = 3;

impl PluginEngine {
    /// Compiles from now on in a child process (`program args... ARTIFACT`, the component on
    /// its stdin), which writes the artifact into the compile cache and exits, so the
    /// compiler's peak memory (hundreds of MiB for a big guest) is returned to the system
    /// instead of staying in this process. Needs a cache directory; without one, or when the
    /// child cannot run, compiling happens in this process.
    pub fn compile_in_child(&self, compiler: ChildCompiler) {
        let _ = self.compiler.set(compiler);
    }

    /// The child side of [`PluginEngine::compile_in_child`]: compiles `bytes` with the
    /// configuration of [`PluginEngine::new`] and writes the artifact to `out` (atomically, by
    /// rename). No engine, ticker or runtime is kept.
    pub fn compile_to_file(bytes: &[u8], kind: EngineKind, out: &Path) -> Result<(), PluginError> {
        Self::check_imports(bytes)?;
        // The artifact depends on the compiler settings and tunables, not on the allocator,
        // so an on-demand engine compiles what the pooled one loads (the compatibility hash
        // in the cache file name and wasmtime's own check on load both make sure).
        let engine = Engine::new(&Self::config(None, true, kind)).map_err(PluginError::engine)?;
        let artifact = engine
            .precompile_component(bytes)
            .map_err(PluginError::invalid)?;
        write_artifact(out, &artifact).map_err(|e| PluginError::Read(out.display().to_string(), e))
    }

    /// Runs the compiling child for `bytes`, leaving the artifact at `out`.
    fn run_child(
        &self,
        compiler: &ChildCompiler,
        bytes: &[u8],
        kind: EngineKind,
        out: &Path,
    ) -> Result<(), ChildFailure> {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new(&compiler.program)
            .args(&compiler.args)
            .arg(kind.as_str())
            .arg(out)
            // Only its error message is wanted, and a chatty child must not fill the pipe.
            .env("RUST_LOG", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                ChildFailure::Run(format!("cannot start {}: {e}", compiler.program.display()))
            })?;
        let stderr = child.stderr.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
                text
            })
        });
        // The child reads all of stdin before it compiles, so writing it all first is safe.
        let sent = match child.stdin.take() {
            Some(mut stdin) => stdin.write_all(bytes),
            None => Ok(()),
        };
        let deadline = Instant::now() + CHILD_COMPILE_TIMEOUT;
        let waited = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(format!(
                        "the compiling child took longer than {CHILD_COMPILE_TIMEOUT:?}"
                    ));
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(format!("cannot wait for the compiling child: {e}"));
                }
            }
        };
        let stderr = stderr
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default();
        let status = waited.map_err(ChildFailure::Run)?;
        if let Err(e) = sent
            && status.success()
        {
            return Err(ChildFailure::Run(format!("cannot send the component: {e}")));
        }
        let message = crate::joined_lines(&stderr);
        match status.code() {
            Some(0) => Ok(()),
            Some(CHILD_EXIT_INVALID) => Err(ChildFailure::Invalid(message)),
            _ => Err(ChildFailure::Run(format!(
                "the compiling child failed ({status}): {message}"
            ))),
        }
    }

    /// Compiles `bytes` for the engine they need, or loads the compiled artifact cached for
    /// them.
    pub fn compile(&self, sha256: &str, bytes: &[u8]) -> Result<Compiled, PluginError> {
        let started = Instant::now();
        // Before the cache too: an artifact cached by an earlier routerd may be of a component
        // this one refuses (a contract version it no longer speaks).
        Self::check_imports(bytes)?;
        for kind in [EngineKind::Standard, EngineKind::ComponentAsync] {
            if let Some(path) = self.cache_path(kind, sha256)
                && path.exists()
            {
                match self.load_cached(kind, &path) {
                    Ok(component) => {
                        mark_used(&path);
                        return Ok(Compiled {
                            component,
                            kind,
                            by: CompiledBy::Cache,
                            took: started.elapsed(),
                        });
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "ignoring an unusable cached compilation")
                    }
                }
            }
        }
        let kind = EngineKind::for_component(bytes);
        let cached = self.cache_path(kind, sha256);
        let child = self
            .compiler
            .get()
            .filter(|_| bytes.len() >= CHILD_COMPILE_MIN_BYTES);
        if let (Some(compiler), Some(path)) = (child, &cached) {
            match self.run_child(compiler, bytes, kind, path) {
                Ok(()) => match self.load_cached(kind, path) {
                    Ok(component) => {
                        self.trim_cache(path);
                        return Ok(Compiled {
                            component,
                            kind,
                            by: CompiledBy::Child,
                            took: started.elapsed(),
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot load what the compiling child wrote; compiling here")
                    }
                },
                Err(ChildFailure::Invalid(message)) => return Err(PluginError::Invalid(message)),
                Err(ChildFailure::Run(reason)) => {
                    tracing::warn!("{reason}; compiling here")
                }
            }
        }
        let component =
            Component::new(&self.runtime(kind).engine, bytes).map_err(PluginError::invalid)?;
        if let Some(path) = &cached {
            match component.serialize() {
                Ok(artifact) => match write_artifact(path, &artifact) {
                    Ok(()) => self.trim_cache(path),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot write the compile cache")
                    }
                },
                Err(e) => tracing::warn!(error = %e, "cannot serialize a compiled plugin"),
            }
        }
        Ok(Compiled {
            component,
            kind,
            by: CompiledBy::Routerd,
            took: started.elapsed(),
        })
    }

    /// Bounds the compile cache's size (`bytes`; 0 leaves it unbounded). Past the bound, the
    /// least recently used artifacts are removed after each new one is written.
    pub fn bound_cache(&self, bytes: u64) {
        self.cache_bound
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// Keeps the cache under its bound, never removing `written`.
    fn trim_cache(&self, written: &Path) {
        let bound = self.cache_bound.load(std::sync::atomic::Ordering::Relaxed);
        if let (Some(dir), true) = (&self.cache_dir, bound > 0) {
            let removed = trim(dir, bound, written);
            if removed > 0 {
                tracing::info!(
                    removed,
                    bound_mib = bound >> 20,
                    "compile cache over its bound: removed the least recently used artifacts"
                );
            }
        }
    }

    fn cache_path(&self, kind: EngineKind, sha256: &str) -> Option<PathBuf> {
        let dir = self.cache_dir.as_ref()?;
        // The kind is in the name too: it is what the component needs, decided when it was
        // compiled, so a cached artifact never puts a component on the slower engine.
        Some(dir.join(format!(
            "{sha256}-{}-{:016x}.cwasm",
            kind.as_str(),
            compatibility(&self.runtime(kind).engine)
        )))
    }

    #[allow(unsafe_code)]
    fn load_cached(&self, kind: EngineKind, path: &Path) -> wasmtime::Result<Component> {
        // SAFETY: `Component::deserialize_file` trusts the file to be a wasmtime artifact. This
        // one is: it lives in our own data directory, under a name made of the source's sha256
        // and this engine's compatibility hash, and only `compile` above writes it (atomically,
        // by rename) from `Component::serialize`. wasmtime itself rejects artifacts from another
        // version or configuration. Whoever can rewrite our data directory can already replace
        // our binary, so the file is as trusted as the code running this.
        unsafe { Component::deserialize_file(&self.runtime(kind).engine, path) }
    }
}

/// What an artifact compiled by `engine` is compatible with, as a number for file names.
fn compatibility(engine: &Engine) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    h.finish()
}

/// Writes a compiled artifact atomically (a temp file unique to this process, then a rename),
/// so a reader never sees half of one and several routerd may share a data directory.
/// Why a compiling child did not leave an artifact.
enum ChildFailure {
    /// The component is invalid (the child's message).
    Invalid(String),
    /// The child could not run or crashed; compiling here may still work.
    Run(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PoolLimits;

    /// A child compiles with an on-demand engine what the parent's pooled engine loads: both
    /// must agree on everything an artifact depends on.
    #[test]
    fn pooled_and_on_demand_engines_share_artifacts() {
        let hash = compatibility;
        for kind in [EngineKind::Standard, EngineKind::ComponentAsync] {
            let pooled = Engine::new(&PluginEngine::config(
                Some(&PoolLimits::default()),
                true,
                kind,
            ));
            let on_demand = Engine::new(&PluginEngine::config(None, true, kind));
            let (Ok(pooled), Ok(on_demand)) = (pooled, on_demand) else {
                // No virtual memory for the pool here: the parent falls back to on-demand too.
                continue;
            };
            assert_eq!(hash(&pooled), hash(&on_demand), "{kind:?}");
        }
        // The two kinds never share artifacts.
        let standard = Engine::new(&PluginEngine::config(None, true, EngineKind::Standard));
        let with_async = Engine::new(&PluginEngine::config(
            None,
            true,
            EngineKind::ComponentAsync,
        ));
        if let (Ok(a), Ok(b)) = (standard, with_async) {
            assert_ne!(hash(&a), hash(&b));
        }
    }
}
