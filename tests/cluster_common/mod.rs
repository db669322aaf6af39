//! What the scale-out tests share: etcd members on loopback ports (started, killed, restarted,
//! checked healthy), routerd instances sharing a store, and waiting for a change to reach each.
// Each cluster test file uses its own part.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

pub const ROUTES: &str = "/api/v1/routes";

/// How long a change may take to reach every instance in these tests (the goal is 250 ms at
/// p99 on loopback; `tests/bench/convergence.sh` measures it); debug builds on a busy machine
/// get slack.
pub const CONVERGE: Duration = Duration::from_secs(10);

/// One etcd member, on loopback ports, with its data in a temp dir.
pub struct Etcd {
    pub name: String,
    pub client: u16,
    pub peer: u16,
    pub cluster: String,
    pub dir: TempDir,
    pub child: Option<Child>,
}

pub fn etcd_bin() -> &'static str {
    let bin = "/usr/bin/etcd";
    assert!(
        Path::new(bin).is_file(),
        "{bin} is missing: `apt-get install etcd-server` (tests/run.sh does)"
    );
    bin
}

impl Etcd {
    /// A cluster of `n` members, started and healthy. A member that lost its port to another
    /// process between the probe and etcd's bind makes the whole cluster start again on new
    /// ports (peer ports are baked into every member's `--initial-cluster`).
    pub async fn cluster(n: usize) -> Vec<Etcd> {
        for _ in 0..3 {
            let mut members = Self::start_cluster(n);
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut healthy = vec![false; n];
            while healthy.contains(&false) {
                if let Some(gone) = members.iter_mut().find_map(|m| m.exited().then_some(&*m)) {
                    let log = gone.log();
                    assert!(
                        log.contains("address already in use"),
                        "etcd {} exited; its log:\n{log}",
                        gone.name
                    );
                    break;
                }
                if Instant::now() >= deadline {
                    let logs: Vec<String> = members.iter().map(|m| m.log()).collect();
                    panic!(
                        "etcd did not become healthy; its logs:\n{}",
                        logs.join("\n")
                    );
                }
                for (m, ok) in members.iter().zip(healthy.iter_mut()) {
                    *ok = *ok || m.answers_healthy().await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if !healthy.contains(&false) {
                return members;
            }
        }
        panic!("etcd lost its ports to other processes three times in a row");
    }

    pub fn start_cluster(n: usize) -> Vec<Etcd> {
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (unused_port(), unused_port())).collect();
        let cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members: Vec<Etcd> = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| Etcd {
                name: format!("m{i}"),
                client: *client,
                peer: *peer,
                cluster: cluster.clone(),
                dir: TempDir::new("etcd"),
                child: None,
            })
            .collect();
        for m in &mut members {
            m.start();
        }
        members
    }

    pub fn start(&mut self) {
        let client = format!("http://127.0.0.1:{}", self.client);
        let peer = format!("http://127.0.0.1:{}", self.peer);
        let log = std::fs::File::create(self.dir.path().join("etcd.log")).unwrap();
        let child = Command::new(etcd_bin())
            .args(["--name", &self.name])
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "routerd-test"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start etcd: {e}"));
        self.child = Some(child);
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.client))
    }

    /// Whether the member's process has exited.
    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    /// Whether the member answers its health check now.
    pub async fn answers_healthy(&self) -> bool {
        request_to(self.addr(), "GET", "/health", &[], "")
            .await
            .is_ok_and(|r| r.text().contains("\"health\":\"true\""))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    pub async fn wait_healthy(&self) {
        let healthy = wait_until(
            async || self.answers_healthy().await,
            Duration::from_secs(30),
        )
        .await;
        assert!(
            healthy,
            "etcd {} did not become healthy; its log:\n{}",
            self.name,
            self.log()
        );
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `etcd://HOST:PORT,.../PREFIX` for these members.
pub fn store_url(members: &[&Etcd], prefix: &str) -> String {
    let hosts: Vec<String> = members
        .iter()
        .map(|m| format!("127.0.0.1:{}", m.client))
        .collect();
    format!("etcd://{}/{prefix}", hosts.join(","))
}

/// An instance on `store`, with its own data and plugins dirs (kept by the caller when given).
pub async fn instance(store: &str, id: &str, dirs: Option<(&Path, &Path)>) -> Routerd {
    let mut launch = Routerd::launch(&json!({"routes": []}))
        .arg("--store")
        .arg(store)
        .arg("--instance-id")
        .arg(id)
        .warm_cache();
    if let Some((data, plugins)) = dirs {
        launch = launch.data_dir(data).plugins_dir(plugins);
    }
    launch.start().await
}

pub async fn three(store: &str) -> Vec<Routerd> {
    let mut out = Vec::new();
    for id in ["a", "b", "c"] {
        out.push(instance(store, id, None).await);
    }
    out
}

pub fn respond_route(name: &str, body: &str) -> Value {
    json!({
        "name": name,
        "matchers": [prefix(&format!("/{name}"))],
        "filters": [{"name": "respond", "args": ["200", body, "text/plain"]}],
    })
}

/// Makes `respond_route(name, body)` through `via` and waits until every one of `all` serves
/// it; returns the answer to the creation.
pub async fn made_everywhere<'a>(
    via: &Routerd,
    all: impl IntoIterator<Item = &'a Routerd>,
    name: &str,
    body: &str,
) -> Resp {
    let made = via
        .admin_json("POST", ROUTES, Some(&respond_route(name, body)))
        .await;
    assert_eq!(
        made.status,
        201,
        "{}\nlogs:\n{}",
        made.text(),
        via.logs().join("\n")
    );
    for rd in all {
        served(rd, &format!("/{name}"), body).await;
    }
    made
}

/// Waits until `rd` answers `path` with `body`; returns how long it took.
pub async fn served(rd: &Routerd, path: &str, body: &str) -> Duration {
    let start = Instant::now();
    let ok = wait_until(
        async || {
            rd.try_request("GET", path, &[], "")
                .await
                .is_ok_and(|r| r.status == 200 && r.text() == body)
        },
        CONVERGE,
    )
    .await;
    assert!(
        ok,
        "{path} was not answered {body:?} within {CONVERGE:?}; logs:\n{}",
        rd.logs().join("\n")
    );
    start.elapsed()
}

/// Waits until `rd` no longer has a route for `path`.
pub async fn not_served(rd: &Routerd, path: &str) {
    let ok = wait_until(
        async || {
            rd.try_request("GET", path, &[], "")
                .await
                .is_ok_and(|r| r.status == 404)
        },
        CONVERGE,
    )
    .await;
    assert!(
        ok,
        "{path} is still served; logs:\n{}",
        rd.logs().join("\n")
    );
}
