//! The plugins the tests load: built once per test process from `plugins/`.

use super::*;

// ---------------------------------------------------------------------------------------------
// Plugins
// ---------------------------------------------------------------------------------------------

/// The repository root (the parent of `host/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// Hold an exclusive lock on `target/NAME` (created if missing) until the file is dropped, so
/// that several test processes take turns.
fn exclusive_lock(name: &str) -> std::fs::File {
    let target = repo_root().join("target");
    std::fs::create_dir_all(&target).expect("create target dir");
    let path = target.join(name);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open lock file {}: {e}", path.display()));
    file.lock()
        .unwrap_or_else(|e| panic!("lock {}: {e}", path.display()));
    file
}

/// Runs the build script `plugins/SCRIPT` (a path below `plugins/`) under an exclusive file lock
/// (`target/LOCK`), so that test binaries running at once take turns; panics with the script's
/// output if it fails.
fn run_plugin_build(script: &str, lock: &str) {
    let root = repo_root();
    let _lock = exclusive_lock(lock);
    let script = root.join("plugins").join(script);
    let started = Instant::now();
    let output = Command::new("bash")
        .arg(&script)
        .current_dir(&root)
        // The plugins workspace has its own target dir; an inherited override would send the
        // artifacts elsewhere.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    if !output.status.success() {
        panic!(
            "{} failed ({}) after {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            script.display(),
            output.status,
            started.elapsed(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// `plugins/dist`, after `bash plugins/build.sh` has built every plugin to wasm32-wasip2 (at
/// most once per test process, see [`run_plugin_build`]).
pub fn plugins_dist() -> PathBuf {
    static DIST: OnceLock<PathBuf> = OnceLock::new();
    DIST.get_or_init(|| {
        run_plugin_build("build.sh", "plugins-build.lock");
        repo_root().join("plugins").join("dist")
    })
    .clone()
}

/// The built plugin `plugins/dist/NAME.wasm` (building the plugins first if needed).
pub fn dist_plugin(name: &str) -> PathBuf {
    let path = plugins_dist().join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} does not exist after plugins/build.sh",
        path.display()
    );
    path
}

/// The `lang` plugin in guest language `lang`: `plugins/dist/lang-rust.wasm` for Rust, else
/// `plugins/lang/dist/lang-LANG.wasm`, built by `plugins/lang/build.sh` (which installs missing
/// toolchains and skips builds that are up to date) at most once per test process.
pub fn lang_plugin(lang: &str) -> PathBuf {
    if lang == "rust" {
        return dist_plugin("lang-rust");
    }
    static DIST: OnceLock<PathBuf> = OnceLock::new();
    let dist = DIST.get_or_init(|| {
        run_plugin_build("lang/build.sh", "lang-build.lock");
        repo_root().join("plugins").join("lang").join("dist")
    });
    let path = dist.join(format!("lang-{lang}.wasm"));
    assert!(
        path.is_file(),
        "{} does not exist after plugins/lang/build.sh",
        path.display()
    );
    path
}

/// Write `bytes` to `path` atomically: a hidden temp file in the same directory (whose name
/// does not end in `.wasm` or `.json`, so the plugin watcher ignores it), then a rename.
pub fn install_file(path: &Path, bytes: &[u8]) {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = path.parent().expect("file has a directory");
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .expect("file name");
    let tmp = dir.join(format!(
        ".{name}.{}-{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&tmp, bytes).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    std::fs::rename(&tmp, path)
        .unwrap_or_else(|e| panic!("rename {} -> {}: {e}", tmp.display(), path.display()));
}

/// A data directory shared by the tests that are not about the compile cache
/// (`target/plugin-test-data`), so their routerd processes load plugins from the cache instead
/// of compiling them. The first call in a process (under an exclusive file lock) fills the cache
/// by starting routerd once with every built plugin.
pub fn shared_plugin_data() -> PathBuf {
    static DATA: OnceLock<PathBuf> = OnceLock::new();
    DATA.get_or_init(|| {
        let dist = plugins_dist();
        let data = repo_root().join("target").join("plugin-test-data");
        let _lock = exclusive_lock("plugin-test-data.lock");
        let dir = TempDir::new("warm");
        let plugins = dir.path().join("plugins");
        std::fs::create_dir_all(&plugins).expect("create plugins dir");
        let mut count = 0;
        for entry in std::fs::read_dir(&dist).expect("read plugins/dist") {
            let path = entry.expect("dist entry").path();
            if path.extension().is_some_and(|e| e == "wasm") {
                let name = path.file_name().expect("file name");
                std::fs::copy(&path, plugins.join(name)).expect("copy plugin");
                count += 1;
            }
        }
        let config = dir.path().join("config.json");
        std::fs::write(&config, r#"{"routes": []}"#).expect("write config");
        let mut child = spawn_routerd_with(dir.path(), Some(&config), &plugins, &data);
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = pump_lines(child.stdout.take().expect("stdout"), "out", lines.clone());
        let err = pump_lines(child.stderr.take().expect("stderr"), "err", lines.clone());
        // Compiling every plugin cold in a debug build takes a few seconds.
        let deadline = Instant::now() + Duration::from_secs(120);
        let started = loop {
            if lock_lines(&lines)
                .iter()
                .any(|l| l.contains("proxy listening"))
            {
                break true;
            }
            if matches!(child.try_wait(), Ok(Some(_))) || Instant::now() >= deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = child.kill();
        let _ = child.wait();
        let _ = out.join();
        let _ = err.join();
        assert!(
            started,
            "routerd did not start with the {count} built plugins to fill the shared compile \
             cache; logs:\n{}",
            lock_lines(&lines).join("\n")
        );
        data
    })
    .clone()
}

/// How fast a request must be answered when a plugin misbehaves (the precise figure is for
/// benchmarks; this only proves the request is not stuck behind the plugin).
pub const CONTAINED_WITHIN: Duration = Duration::from_secs(2);

/// A launch on the shared warm compile cache, with these built plugins installed.
pub fn launch(cfg: &Value, plugins: &[&str]) -> Launch {
    plugins
        .iter()
        .fold(Routerd::launch(cfg).warm_cache(), |l, p| l.plugin(p))
}

/// The value of `key` in a log line's `key="value"` or `key=value` field.
pub fn log_field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[start..];
    match rest.strip_prefix('"') {
        Some(quoted) => quoted.find('"').map(|end| quoted[..end].to_owned()),
        None => Some(rest.split_whitespace().next().unwrap_or("").to_owned()),
    }
}

/// Whether `line` is a `plugin {kind} failed` line for this plugin and route.
pub fn is_failure_line(line: &str, kind: &str, plugin: &str, route: &str) -> bool {
    line.contains(&format!("plugin {kind} failed"))
        && log_field(line, "plugin").as_deref() == Some(plugin)
        && log_field(line, "route").as_deref() == Some(route)
}

/// Whether `line` is a `plugin loaded` line for `plugin`.
pub fn is_loaded_line(line: &str, plugin: &str) -> bool {
    line.contains("plugin loaded") && log_field(line, "plugin").as_deref() == Some(plugin)
}
