//! A routerd started in the test's own process through the library (`routerd::app::start`),
//! for tests of what it serves rather than of the process: it starts in milliseconds, and a
//! failure shows in the test's own backtrace. It has no pid, no signals and no captured log;
//! tests of those start a process ([`Launch::start`]).

use super::*;

use clap::Parser;

impl Routerd {
    /// Start in this process with `config` written to a temp file.
    pub async fn start_in_process(config: &Value) -> Routerd {
        Launch::new(ConfigSource::Json(config.clone()))
            .start_in_process()
            .await
    }
}

impl Launch {
    /// Start in this process (the same flags [`Launch::start`] passes the binary, compiling
    /// plugins in-process), returning once both listeners are bound.
    pub async fn start_in_process(self) -> Routerd {
        assert!(
            self.extras.file_size_limit.is_none(),
            "a file size limit needs a process of its own"
        );
        assert!(
            self.extras.envs.is_empty(),
            "environment variables need a process of their own"
        );
        let dir = TempDir::new("rd-in");
        let (plugins_dir, data_dir) = self.prepare(dir.path());
        let config_path = self.config_file(dir.path());
        let mut args: Vec<OsString> = vec!["routerd".into()];
        if let Some(config) = &config_path {
            args.extend(["--config".into(), config.clone().into_os_string()]);
        }
        let admin = self.admin_addr.as_deref().unwrap_or("127.0.0.1:0");
        args.extend(["--listen", "127.0.0.1:0", "--admin", admin].map(OsString::from));
        args.extend(self.extras.args.iter().cloned());
        args.extend([
            "--plugins".into(),
            plugins_dir.clone().into_os_string(),
            "--data".into(),
            data_dir.clone().into_os_string(),
            // The compiling child would be this test binary, not routerd.
            "--plugin-compiler".into(),
            "in-process".into(),
        ]);
        let settings = routerd::app::Settings::try_parse_from(args)
            .unwrap_or_else(|e| panic!("routerd's flags: {e}"));
        let running = tokio::task::spawn_blocking(move || routerd::app::start(settings))
            .await
            .expect("the starting task")
            .unwrap_or_else(|e| panic!("routerd did not start in-process: {e}"));
        Routerd {
            proxy: running.proxy,
            admin: running.admin,
            instance: Instance::InProcess(running),
            logs: Arc::new(Mutex::new(Vec::new())),
            stderr_lines: Arc::new(Mutex::new(Vec::new())),
            config_path,
            exit: None,
            plugins_dir,
            data_dir,
            dir,
        }
    }
}
