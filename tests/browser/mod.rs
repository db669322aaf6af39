//! A real browser for the dashboard's tests: Debian's chromium, headless, driven over
//! WebDriver by its chromedriver (both from `tests/system-deps.sh`), with helpers that wait
//! (bounded) for the page, take PNG screenshots into `target/dashboard/`, and check the
//! browser's console.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use thirtyfour::prelude::*;
use thirtyfour::{ChromiumLikeCapabilities, LoggingPrefsLogLevel};

use crate::harness::{repo_root, unused_port, wait_until};

/// Upper bound for anything the page does after a click (an API call and a redraw).
pub const UI_TIMEOUT: Duration = Duration::from_secs(15);

/// chromedriver in a process group of its own, stopped with the chromium it started when
/// dropped (a test that fails never quits its session, and chromium must not outlive it).
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One chromium session on one routerd's dashboard.
pub struct Browser {
    /// The session.
    pub driver: WebDriver,
    _chromedriver: Driver,
    base: String,
    shots: PathBuf,
}

impl Browser {
    pub async fn start(admin_url: &str) -> Browser {
        let port = unused_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver (tests/system-deps.sh installs chromium-driver)");
        let chromedriver = Driver(child);
        let ready = wait_until(
            || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            },
            Duration::from_secs(15),
        )
        .await;
        assert!(ready, "chromedriver did not listen on {port}");
        let mut caps = DesiredCapabilities::chrome();
        for arg in [
            "--headless=new",
            // The tests may run as root, where chromium's sandbox cannot start.
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--window-size=1500,1000",
            "--no-first-run",
            "--disable-extensions",
        ] {
            caps.add_arg(arg).expect("chromium arg");
        }
        if std::path::Path::new("/usr/bin/chromium").exists() {
            caps.set_binary("/usr/bin/chromium").expect("binary");
        }
        caps.set_browser_log_level(LoggingPrefsLogLevel::All)
            .expect("logging prefs");
        let driver = WebDriver::new(format!("http://127.0.0.1:{port}"), caps)
            .await
            .expect("start a chromium session");
        let shots = repo_root().join("target").join("dashboard");
        std::fs::create_dir_all(&shots).expect("create target/dashboard");
        Browser {
            driver,
            _chromedriver: chromedriver,
            base: format!("{admin_url}/ui/"),
            shots,
        }
    }

    pub async fn open(&self, page: &str) {
        self.driver
            .goto(format!("{}#/{page}", self.base))
            .await
            .expect("navigate");
    }

    /// The text of the first element matching `css` once `ok` holds for it.
    pub async fn wait_text(&self, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + UI_TIMEOUT;
        let mut last = String::from("(no such element)");
        while Instant::now() < deadline {
            if let Ok(el) = self.driver.find(By::Css(css)).await
                && let Ok(text) = el.text().await
            {
                if ok(&text) {
                    return text;
                }
                last = text;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.shot("failure").await;
        panic!("{what}: `{css}` never satisfied the check; last text: {last:?}");
    }

    /// Waits until no element matches `css`.
    pub async fn wait_gone(&self, css: &str, what: &str) {
        let deadline = Instant::now() + UI_TIMEOUT;
        while Instant::now() < deadline {
            if self
                .driver
                .find_all(By::Css(css))
                .await
                .is_ok_and(|v| v.is_empty())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.shot("failure").await;
        panic!("{what}: `{css}` is still on the page");
    }

    pub async fn el(&self, css: &str) -> WebElement {
        self.wait_text(css, css, |_| true).await;
        self.driver.find(By::Css(css)).await.expect(css)
    }

    pub async fn click(&self, css: &str) {
        self.el(css).await.click().await.expect("click");
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let el = self.el(css).await;
        el.clear().await.expect("clear");
        el.send_keys(text).await.expect("type");
    }

    pub async fn shot(&self, name: &str) {
        let path = self.shots.join(format!("{name}.png"));
        let _ = self.driver.screenshot(&path).await;
    }

    /// Errors the page logged since the last call: console errors, uncaught exceptions,
    /// failed loads (chromium logs an API answer of 4xx as a failed load).
    pub async fn console_errors(&self) -> Vec<String> {
        let entries = self.driver.browser_log().await.expect("browser log");
        entries
            .into_iter()
            .filter(|e| e.level == "SEVERE")
            .map(|e| e.message)
            .collect()
    }

    /// Asserts that the page logged exactly the `expected` errors since the last check (each
    /// a part of the message), and no other.
    pub async fn assert_clean(&self, page: &str, expected: &[&str]) {
        let errors = self.console_errors().await;
        let unexpected: Vec<_> = errors
            .iter()
            .filter(|m| !expected.iter().any(|x| m.contains(x)))
            .collect();
        assert!(
            unexpected.is_empty(),
            "the {page} page logged errors: {unexpected:#?}"
        );
        for x in expected {
            assert!(
                errors.iter().any(|m| m.contains(x)),
                "the {page} page should have logged {x:?}; it logged {errors:#?}"
            );
        }
    }
}
