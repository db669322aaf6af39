//! How a test starts routerd: [`Launch`] gathers the config, the plugins and data directories,
//! plugins and their settings, extra flags and limits, then starts the process, runs it to its
//! exit, or (in `in_process`) starts it in the test's own process.

use super::*;

/// How to start routerd: the config, the plugins and data directories, and plugins (with their
/// settings) to put in the plugins directory first. Start with [`Routerd::launch`].
pub struct Launch {
    pub(super) source: ConfigSource,
    pub(super) plugins_dir: Option<PathBuf>,
    pub(super) data_dir: Option<PathBuf>,
    pub(super) warm_cache: bool,
    pub(super) plugins: Vec<(String, PathBuf)>,
    pub(super) settings: Vec<(String, Value)>,
    pub(super) admin_addr: Option<String>,
    pub(super) extras: Extras,
    pub(super) startup_timeout: Duration,
}

impl Launch {
    /// Defaults: `plugins/` and `data/` in the process's own temp dir, no plugins.
    pub fn new(source: ConfigSource) -> Launch {
        Launch {
            source,
            plugins_dir: None,
            data_dir: None,
            warm_cache: false,
            plugins: Vec::new(),
            settings: Vec::new(),
            admin_addr: None,
            extras: Extras::default(),
            startup_timeout: STARTUP_TIMEOUT,
        }
    }

    /// Wait this long for the listeners instead of [`STARTUP_TIMEOUT`] (big plugins compiled
    /// cold at start, in a debug build, take a while).
    pub fn startup_timeout(mut self, timeout: Duration) -> Launch {
        self.startup_timeout = timeout;
        self
    }

    /// Pass `--admin addr` instead of `127.0.0.1:0` (only [`Launch::run_to_exit`] may use a
    /// non-loopback address: tests never send traffic anywhere but 127.0.0.1).
    pub fn admin_addr(mut self, addr: &str) -> Launch {
        self.admin_addr = Some(addr.to_owned());
        self
    }

    /// Add a command-line argument after the standard ones (e.g. `--admin-token-file`).
    pub fn arg(mut self, arg: impl Into<OsString>) -> Launch {
        self.extras.args.push(arg.into());
        self
    }

    /// Set an environment variable for routerd (e.g. `OTEL_BSP_SCHEDULE_DELAY`).
    pub fn env(mut self, name: &str, value: &str) -> Launch {
        self.extras.envs.push((name.into(), value.into()));
        self
    }

    fn spawn(&self, dir: &Path, config: Option<&Path>, plugins: &Path, data: &Path) -> Child {
        let admin = self.admin_addr.as_deref().unwrap_or("127.0.0.1:0");
        spawn_routerd_args(dir, config, plugins, data, admin, &self.extras)
    }

    /// Run routerd with this file size limit (`RLIMIT_FSIZE`): a write past it fails the way a
    /// full disk fails it.
    pub fn file_size_limit(mut self, bytes: u64) -> Launch {
        self.extras.file_size_limit = Some(bytes);
        self
    }

    /// Use this (existing or new) plugins directory.
    pub fn plugins_dir(mut self, dir: &Path) -> Launch {
        self.plugins_dir = Some(dir.to_owned());
        self
    }

    /// Use this data directory (e.g. [`shared_plugin_data`], or a fresh one for cache tests).
    pub fn data_dir(mut self, dir: &Path) -> Launch {
        self.data_dir = Some(dir.to_owned());
        self
    }

    /// Start with a private data directory holding a copy of the shared warm compile cache
    /// ([`shared_plugin_data`]): no cold plugin compiles, and no data shared with another
    /// routerd (the route database takes an exclusive lock).
    pub fn warm_cache(mut self) -> Launch {
        self.warm_cache = true;
        self
    }

    /// Install the built plugin `name` (see [`dist_plugin`]) under its own name.
    pub fn plugin(self, name: &str) -> Launch {
        self.plugin_as(name, name)
    }

    /// Install the built plugin `built` as `name.wasm`.
    pub fn plugin_as(mut self, name: &str, built: &str) -> Launch {
        self.plugins.push((name.to_owned(), dist_plugin(built)));
        self
    }

    /// Install the component at `path` as `name.wasm`.
    pub fn plugin_path(mut self, name: &str, path: &Path) -> Launch {
        self.plugins.push((name.to_owned(), path.to_owned()));
        self
    }

    /// Write `settings` to `name.json` in the plugins directory.
    pub fn plugin_settings(mut self, name: &str, settings: Value) -> Launch {
        self.settings.push((name.to_owned(), settings));
        self
    }

    /// Create the directories, install the plugins and settings; returns (plugins, data).
    /// The config file to pass: the JSON written into `dir`, the given file, or none.
    pub(super) fn config_file(&self, dir: &Path) -> Option<PathBuf> {
        match &self.source {
            ConfigSource::Json(json) => {
                let path = dir.join("config.json");
                std::fs::write(&path, serde_json::to_vec_pretty(json).expect("config json"))
                    .expect("write config");
                Some(path)
            }
            ConfigSource::File(path) => Some(path.clone()),
            ConfigSource::None => None,
        }
    }

    pub(super) fn prepare(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let plugins = self
            .plugins_dir
            .clone()
            .unwrap_or_else(|| dir.join("plugins"));
        let data = self.data_dir.clone().unwrap_or_else(|| dir.join("data"));
        std::fs::create_dir_all(&plugins).expect("create plugins dir");
        std::fs::create_dir_all(&data).expect("create data dir");
        if self.warm_cache {
            let cache = data.join("plugin-cache");
            std::fs::create_dir_all(&cache).expect("create plugin-cache");
            let shared = shared_plugin_data().join("plugin-cache");
            for entry in std::fs::read_dir(&shared)
                .expect("read the shared cache")
                .flatten()
            {
                let _ = std::fs::copy(entry.path(), cache.join(entry.file_name()));
            }
        }
        for (name, source) in &self.plugins {
            let bytes = std::fs::read(source)
                .unwrap_or_else(|e| panic!("read plugin {}: {e}", source.display()));
            install_file(&plugins.join(format!("{name}.wasm")), &bytes);
        }
        for (name, settings) in &self.settings {
            let text = serde_json::to_vec_pretty(settings).expect("settings json");
            install_file(&plugins.join(format!("{name}.json")), &text);
        }
        (plugins, data)
    }

    /// Start and wait (bounded by [`STARTUP_TIMEOUT`], or [`Launch::startup_timeout`]) until
    /// both listeners are logged.
    pub async fn start(self) -> Routerd {
        let dir = TempDir::new("rd");
        let (plugins_dir, data_dir) = self.prepare(dir.path());
        let config_path = self.config_file(dir.path());
        let mut child = self.spawn(dir.path(), config_path.as_deref(), &plugins_dir, &data_dir);
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr_lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("child stdout");
        let stderr = child.stderr.take().expect("child stderr");
        pump_lines(stdout, "out", logs.clone());
        {
            // stderr goes to both the combined log and a stderr-only copy.
            let (logs, stderr_lines) = (logs.clone(), stderr_lines.clone());
            std::thread::spawn(move || {
                let reader = BufReader::new(stderr);
                for line in reader.split(b'\n') {
                    let Ok(line) = line else { break };
                    let line = strip_ansi(String::from_utf8_lossy(&line).trim_end());
                    if let Ok(mut l) = stderr_lines.lock() {
                        l.push(line.clone());
                    }
                    if let Ok(mut l) = logs.lock() {
                        l.push(format!("[err] {line}"));
                    }
                }
            });
        }

        let proxy_re =
            regex::Regex::new(r"proxy listening on http://([0-9.]+:[0-9]+)").expect("regex");
        let admin_re =
            regex::Regex::new(r"admin listening on http://([0-9.]+:[0-9]+)").expect("regex");
        let startup_timeout = self.startup_timeout;
        let deadline = Instant::now() + startup_timeout;
        let (proxy, admin) = loop {
            let lines = lock_lines(&logs);
            let find = |re: &regex::Regex| {
                lines.iter().find_map(|l| {
                    re.captures(l)
                        .and_then(|c| c.get(1))
                        .and_then(|m| m.as_str().parse::<SocketAddr>().ok())
                })
            };
            if let (Some(p), Some(a)) = (find(&proxy_re), find(&admin_re)) {
                break (p, a);
            }
            if let Ok(Some(status)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "routerd exited during startup with {status}; logs:\n{}",
                    lock_lines(&logs).join("\n")
                );
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "routerd did not log both listeners within {startup_timeout:?}; logs:\n{}",
                    lock_lines(&logs).join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Routerd {
            instance: Instance::Process(child),
            proxy,
            admin,
            logs,
            stderr_lines,
            config_path,
            exit: None,
            plugins_dir,
            data_dir,
            dir,
        }
    }

    /// Run to completion instead (for configs routerd must refuse): wait (bounded by
    /// `timeout`) for it to exit; if it starts serving instead it is killed at once.
    pub async fn run_to_exit(self, timeout: Duration) -> RunOutcome {
        let dir = TempDir::new("run");
        let (plugins_dir, data_dir) = self.prepare(dir.path());
        let config = self.config_file(dir.path());
        let child = self.spawn(dir.path(), config.as_deref(), &plugins_dir, &data_dir);
        wait_for_exit_or_start(child, timeout).await
    }
}
