//! Temporary directories, and `routerd` processes: launched with the standard flags, their logs
//! read line by line, killed on drop.

use super::*;

// ---------------------------------------------------------------------------------------------
// Temporary directory
// ---------------------------------------------------------------------------------------------

/// A directory under the system temp dir, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Create a fresh, uniquely named directory.
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "routerd-{tag}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------------------------------------
// routerd process
// ---------------------------------------------------------------------------------------------

/// Path of the routerd binary under test.
pub fn routerd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_routerd")
}

/// The `routerctl` binary. It is its own crate, so cargo builds it beside this test binary
/// (`target/<profile>/`) when the workspace's tests are built (`cargo test --workspace`).
pub fn routerctl_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("no test executable: {e}"));
    // target/<profile>/deps/<test> -> target/<profile>/routerctl
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("routerctl"))
        .unwrap_or_else(|| panic!("cannot place {}", exe.display()));
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build -p routerctl` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

/// Where routerd's config comes from.
pub enum ConfigSource {
    /// Written as JSON to `config.json` in the test's temp dir.
    Json(Value),
    /// An existing file, passed as is.
    File(PathBuf),
    /// No `--config` flag at all.
    None,
}

/// Spawn routerd with the standard flags in `dir` (plugins and data in `dir/plugins` and
/// `dir/data`), stdout and stderr piped.
fn spawn_routerd(dir: &Path, config: Option<&Path>) -> Child {
    spawn_routerd_with(dir, config, &dir.join("plugins"), &dir.join("data"))
}

/// Spawn routerd in `dir` with these plugins and data directories, stdout and stderr piped.
pub(super) fn spawn_routerd_with(
    dir: &Path,
    config: Option<&Path>,
    plugins: &Path,
    data: &Path,
) -> Child {
    spawn_routerd_args(
        dir,
        config,
        plugins,
        data,
        "127.0.0.1:0",
        &Extras::default(),
    )
}

/// [`spawn_routerd_with`] with this `--admin` address and extra arguments after the standard
/// ones.
/// What a launch adds to the standard command line and environment.
#[derive(Default, Clone)]
pub struct Extras {
    /// Arguments after the standard ones.
    pub args: Vec<OsString>,
    /// Environment variables set for routerd.
    pub envs: Vec<(OsString, OsString)>,
    /// `RLIMIT_FSIZE`, when set.
    pub file_size_limit: Option<u64>,
}

pub(super) fn spawn_routerd_args(
    dir: &Path,
    config: Option<&Path>,
    plugins: &Path,
    data: &Path,
    admin: &str,
    extras: &Extras,
) -> Child {
    std::fs::create_dir_all(plugins).expect("create plugins dir");
    std::fs::create_dir_all(data).expect("create data dir");
    let mut cmd = match extras.file_size_limit {
        // util-linux's prlimit sets RLIMIT_FSIZE, then runs routerd.
        Some(bytes) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--fsize={bytes}"))
                .arg("--")
                .arg(routerd_bin());
            c
        }
        None => Command::new(routerd_bin()),
    };
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    cmd.args(["--listen", "127.0.0.1:0", "--admin", admin])
        .args(&extras.args)
        .arg("--plugins")
        .arg(plugins)
        .arg("--data")
        .arg(data)
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env_remove("ROUTERD_CONFIG")
        .env_remove("ROUTERD_LISTEN")
        .env_remove("ROUTERD_ADMIN")
        .env_remove("ROUTERD_PLUGINS")
        .env_remove("ROUTERD_DATA")
        .env_remove("ROUTERD_DRAIN_SECS")
        .envs(extras.envs.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().expect("spawn routerd")
}

/// A running routerd, killed on drop (its logs are printed when the test is panicking).
pub struct Routerd {
    pub(super) instance: Instance,
    /// Proxy listener address.
    pub proxy: SocketAddr,
    /// Admin listener address.
    pub admin: SocketAddr,
    pub(super) logs: Arc<Mutex<Vec<String>>>,
    pub(super) stderr_lines: Arc<Mutex<Vec<String>>>,
    pub(super) config_path: Option<PathBuf>,
    pub(super) exit: Option<ExitStatus>,
    pub(super) plugins_dir: PathBuf,
    pub(super) data_dir: PathBuf,
    pub(super) dir: TempDir,
}

/// How a [`Routerd`] runs: its own process (the black-box default), or in this test's process
/// through the library ([`Launch::start_in_process`]), which has no pid, signals or log.
pub(super) enum Instance {
    Process(Child),
    InProcess(routerd::app::Running),
}

impl Instance {
    fn child(&mut self) -> &mut Child {
        match self {
            Instance::Process(child) => child,
            Instance::InProcess(_) => {
                panic!(
                    "an in-process routerd has no process: start this test's with Routerd::start"
                )
            }
        }
    }
}

impl Routerd {
    /// Start with `config` written to a temp file.
    pub async fn start(config: &Value) -> Routerd {
        Routerd::start_from(ConfigSource::Json(config.clone())).await
    }

    /// Start with an existing config file.
    pub async fn start_with_file(path: &Path) -> Routerd {
        Routerd::start_from(ConfigSource::File(path.to_owned())).await
    }

    /// Start without `--config` (embedded default).
    pub async fn start_without_config() -> Routerd {
        Routerd::start_from(ConfigSource::None).await
    }

    /// Start and wait (bounded by [`STARTUP_TIMEOUT`]) until both listeners are logged.
    pub async fn start_from(source: ConfigSource) -> Routerd {
        Launch::new(source).start().await
    }

    /// A [`Launch`] with `config` written to a temp file (to add plugins, directories, ...).
    pub fn launch(config: &Value) -> Launch {
        Launch::new(ConfigSource::Json(config.clone()))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        match &self.instance {
            Instance::Process(child) => child.id(),
            Instance::InProcess(_) => {
                panic!("an in-process routerd has no pid: start this test's with Routerd::start")
            }
        }
    }

    /// The temp dir routerd runs in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every log line so far (stdout and stderr, tagged).
    pub fn logs(&self) -> Vec<String> {
        lock_lines(&self.logs)
    }

    /// Every stderr line so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        lock_lines(&self.stderr_lines)
    }

    /// The plugins directory it watches.
    pub fn plugins_dir(&self) -> &Path {
        &self.plugins_dir
    }

    /// Its data directory (the compile cache is in `plugin-cache/`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// How many log lines so far (a mark for [`Routerd::wait_for_log`]).
    pub fn log_count(&self) -> usize {
        self.logs.lock().map(|l| l.len()).unwrap_or(0)
    }

    /// The log lines from index `from` on.
    pub fn logs_since(&self, from: usize) -> Vec<String> {
        self.logs
            .lock()
            .map(|l| l.iter().skip(from).cloned().collect())
            .unwrap_or_default()
    }

    /// The log records from line index `from` on: each event with its continuation lines (a
    /// message with newlines in it) joined by `\n`.
    pub fn log_records_since(&self, from: usize) -> Vec<String> {
        log_records(&self.logs_since(from))
    }

    /// Wait (bounded by `timeout`) for a log record (see [`Routerd::log_records_since`]) from
    /// line index `from` on that satisfies `pred`; returns it, or `None` at the deadline.
    pub async fn wait_for_log(
        &self,
        from: usize,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(record) = self.log_records_since(from).into_iter().find(|l| pred(l)) {
                return Some(record);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        if self.exit.is_some() {
            return false;
        }
        if let Instance::InProcess(_) = self.instance {
            return true;
        }
        match self.instance.child().try_wait() {
            Ok(Some(status)) => {
                self.exit = Some(status);
                false
            }
            Ok(None) => true,
            Err(_) => false,
        }
    }

    /// Replace the config file atomically (write a temp file, then rename over it).
    pub fn write_config(&self, config: &Value) {
        let path = self
            .config_path
            .as_ref()
            .expect("routerd has a config file");
        let tmp = path.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(config).expect("config json"),
        )
        .expect("write temp config");
        std::fs::rename(&tmp, path).expect("rename config");
    }

    /// Overwrite the config file in place with raw text (truncate + write, like many editors).
    pub fn write_config_in_place(&self, text: &str) {
        let path = self
            .config_path
            .as_ref()
            .expect("routerd has a config file");
        std::fs::write(path, text).expect("write config in place");
    }

    /// One HTTP/1.1 exchange with the proxy listener; panics on transport errors.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Resp {
        self.try_request(method, path, headers, body)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{method} {path} failed: {e}\nrouterd logs:\n{}",
                    self.logs().join("\n")
                )
            })
    }

    /// One HTTP/1.1 exchange with the proxy listener.
    pub async fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Resp, String> {
        request_to(self.proxy, method, path, headers, body).await
    }

    /// `GET path` on the proxy listener.
    pub async fn get(&self, path: &str) -> Resp {
        self.request("GET", path, &[], Bytes::new()).await
    }

    /// `GET path` on the admin listener.
    pub async fn admin_get(&self, path: &str) -> Resp {
        request_to(self.admin, "GET", path, &[], Bytes::new())
            .await
            .unwrap_or_else(|e| panic!("admin GET {path} failed: {e}"))
    }

    /// `http://ADMIN_ADDR` (for `routerctl --admin`).
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    /// One HTTP/1.1 exchange with the admin listener; panics on transport errors.
    pub async fn admin_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Resp {
        request_to(self.admin, method, path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("admin {method} {path} failed: {e}"))
    }

    /// An admin request with a JSON body (`Content-Type: application/json`), or none.
    pub async fn admin_json(&self, method: &str, path: &str, body: Option<&Value>) -> Resp {
        match body {
            Some(doc) => {
                self.admin_request(
                    method,
                    path,
                    &[("content-type", "application/json")],
                    doc.to_string(),
                )
                .await
            }
            None => self.admin_request(method, path, &[], Bytes::new()).await,
        }
    }

    /// Kill the process with SIGKILL (no chance to flush or clean up) and reap it.
    pub fn kill9(&mut self) -> ExitStatus {
        if let Some(status) = self.exit {
            return status;
        }
        let child = self.instance.child();
        child.kill().expect("SIGKILL routerd");
        let status = child.wait().expect("reap routerd");
        self.exit = Some(status);
        status
    }

    /// Send SIGTERM (via `kill -TERM`).
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// Wait (bounded) for the process to exit; `None` if it is still running at the deadline.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit {
                return Some(status);
            }
            if let Ok(Some(status)) = self.instance.child().try_wait() {
                self.exit = Some(status);
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Routerd {
    fn drop(&mut self) {
        let Instance::Process(child) = &mut self.instance else {
            // Dropping the handle asks the in-process routerd to stop.
            return;
        };
        if std::thread::panicking() {
            eprintln!("---- routerd logs (pid {}) ----", child.id());
            for line in lock_lines(&self.logs) {
                eprintln!("{line}");
            }
            eprintln!("---- end of routerd logs ----");
        }
        if self.exit.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What happened when routerd was run to completion (see [`run_routerd_to_exit`]).
#[derive(Debug)]
pub struct RunOutcome {
    /// Exit status, or `None` if it was still running at the deadline (then it was killed).
    pub status: Option<ExitStatus>,
    /// True if it logged `proxy listening` (it started instead of refusing the config).
    pub started: bool,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

/// Run routerd with `config_text` as its config file and wait (bounded by `timeout`) for it to
/// exit. If it starts serving instead (logs `proxy listening`), it is killed at once.
pub async fn run_routerd_to_exit(config_text: Option<&str>, timeout: Duration) -> RunOutcome {
    let dir = TempDir::new("run");
    let config_path = dir.path().join("config.json");
    let config = match config_text {
        Some(text) => {
            std::fs::write(&config_path, text).expect("write config");
            config_path
        }
        None => dir.path().join("does-not-exist.json"),
    };
    let child = spawn_routerd(dir.path(), Some(&config));
    wait_for_exit_or_start(child, timeout).await
}

/// Wait (bounded by `timeout`) for `child` to exit; kill it as soon as it logs
/// `proxy listening`.
pub(super) async fn wait_for_exit_or_start(mut child: Child, timeout: Duration) -> RunOutcome {
    let out = Arc::new(Mutex::new(Vec::new()));
    let err = Arc::new(Mutex::new(Vec::new()));
    let out_thread = pump_lines(child.stdout.take().expect("stdout"), "out", out.clone());
    let err_thread = pump_lines(child.stderr.take().expect("stderr"), "err", err.clone());
    let deadline = Instant::now() + timeout;
    let mut started = false;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        let all: Vec<String> = lock_lines(&out)
            .into_iter()
            .chain(lock_lines(&err))
            .collect();
        if all.iter().any(|l| l.contains("proxy listening")) {
            started = true;
        }
        if started || Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _ = out_thread.join();
    let _ = err_thread.join();
    let strip = |lines: Vec<String>| {
        lines
            .into_iter()
            .map(|l| {
                l.split_once("] ")
                    .map(|x| x.1)
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    RunOutcome {
        status,
        started,
        stdout: strip(lock_lines(&out)),
        stderr: strip(lock_lines(&err)),
    }
}
