//! Three (or N) `foundry serve --cluster` processes on loopback, for the multi-process fault harness: one private
//! PostgreSQL and one NATS, each node reaching both through its own [`Proxy`] (so one node can be cut off while the
//! others are not), its own data directory (wiped to replace a machine), one shared token key, and the faults a
//! process can suffer: kill -9, SIGSTOP/SIGCONT, SIGTERM, blackholed connections.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use super::{nats::NatsServer, postgres::PgServer, proxy::Proxy};

/// Environment variables of `serve` that would change what the harness starts.
const SERVE_ENV: &[&str] = &[
    "FOUNDRY_CLUSTER",
    "FOUNDRY_NODE_ID",
    "FOUNDRY_POSTGRES_URL",
    "FOUNDRY_CLUSTER_ADDR",
    "FOUNDRY_LEASE_TTL_SECS",
    "FOUNDRY_NATS_URL",
    "FOUNDRY_TOKEN_KEY_FILE",
    "FOUNDRY_RATE_LIMIT_PER_TOKEN",
];

/// One node's place in the cluster: it keeps its port, proxies and data directory across restarts.
pub struct Slot {
    pub id: String,
    pub port: u16,
    pub data: PathBuf,
    pub pg_proxy: Proxy,
    pub nats_proxy: Proxy,
    child: Option<Child>,
}

impl Slot {
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }
}

pub struct ProcCluster {
    pub pg: PgServer,
    pub nats: NatsServer,
    pub slots: Vec<Slot>,
    pub ttl_secs: u64,
    binary: PathBuf,
    key_file: PathBuf,
    log_dir: PathBuf,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl ProcCluster {
    /// Starts PostgreSQL (`durable`: fsync on), NATS and `nodes` serve processes `n1..`; `None` when a server binary
    /// is missing outside CI (the support modules say why).
    pub async fn start(binary: &Path, nodes: usize, ttl_secs: u64, durable: bool) -> Option<ProcCluster> {
        let pg = if durable { PgServer::start_durable().await? } else { PgServer::start().await? };
        let nats = NatsServer::start()?;
        let dir = tempfile::Builder::new().prefix("fdy-chaos-").tempdir().unwrap();
        let key_file = dir.path().join("token-key");
        let key: String = (0..32).map(|i| format!("{:02x}", (i * 37 + 11) % 256)).collect();
        std::fs::write(&key_file, key).unwrap();
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        // `FOUNDRY_CHAOS_LOGS=<dir>` keeps the nodes' logs there after the run (to read a bench's timeline).
        let log_dir = match std::env::var_os("FOUNDRY_CHAOS_LOGS") {
            Some(keep) => PathBuf::from(keep).join(dir.path().file_name().unwrap()),
            None => dir.path().join("logs"),
        };
        std::fs::create_dir_all(&log_dir).unwrap();
        let slots = (0..nodes)
            .map(|i| Slot {
                id: format!("n{}", i + 1),
                port: free_port(),
                data: dir.path().join(format!("n{}", i + 1)),
                pg_proxy: Proxy::start(pg.addr()),
                nats_proxy: Proxy::start(nats_addr(&nats)),
                child: None,
            })
            .collect();
        let mut cluster =
            ProcCluster { pg, nats, slots, ttl_secs, binary: binary.to_owned(), key_file, log_dir, _dir: dir };
        for i in 0..nodes {
            cluster.spawn(i);
        }
        Some(cluster)
    }

    /// Starts node `i`'s process (its data directory as it is).
    pub fn spawn(&mut self, i: usize) {
        let slot = &self.slots[i];
        assert!(slot.child.is_none(), "{} already runs", slot.id);
        std::fs::create_dir_all(&slot.data).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_dir.join(format!("{}.log", slot.id)))
            .unwrap();
        let mut command = Command::new(&self.binary);
        command
            .args([
                "serve",
                "--bind",
                &format!("127.0.0.1:{}", slot.port),
                "--log",
                &std::env::var("FOUNDRY_CHAOS_LOG").unwrap_or_else(|_| "warn,foundry::cluster=info".into()),
                "--workers",
                "1",
            ])
            .arg("--data-dir")
            .arg(&slot.data)
            .arg("--token-key-file")
            .arg(&self.key_file)
            // One signed-in user drives the whole load: the per-token limit would throttle the harness, not foundry.
            .args(["--rate-limit-per-token", "0"])
            .args(["--cluster", "--node-id", &slot.id])
            .args(["--postgres-url", &self.pg.url_via(slot.pg_proxy.addr())])
            .args(["--nats-url", &format!("nats://{}", slot.nats_proxy.addr())])
            .args(["--lease-ttl-secs", &self.ttl_secs.to_string()])
            .args(["--cluster-addr", &format!("127.0.0.1:{}", slot.port)]);
        for var in SERVE_ENV {
            command.env_remove(var);
        }
        // The server logs to stdout: both go to the node's log file.
        let child = command.stdout(log.try_clone().unwrap()).stderr(log).spawn().expect("foundry serve starts");
        self.slots[i].child = Some(child);
    }

    pub fn running(&self, i: usize) -> bool {
        self.slots[i].child.is_some()
    }

    fn signal(&self, i: usize, signal: i32) {
        let pid = self.slots[i].pid().expect("the node runs");
        // SAFETY: plain kill(2) on our own child's pid (not yet reaped, so the pid is still ours).
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "signal {signal} to {}", self.slots[i].id);
    }

    /// kill -9, and the process reaped.
    pub fn kill(&mut self, i: usize) {
        self.signal(i, libc::SIGKILL);
        let mut child = self.slots[i].child.take().unwrap();
        let _ = child.wait();
    }

    /// Deletes node `i`'s data directory (it must not run): the machine was replaced.
    pub fn wipe(&self, i: usize) {
        assert!(self.slots[i].child.is_none());
        let _ = std::fs::remove_dir_all(&self.slots[i].data);
    }

    pub fn stop(&self, i: usize) {
        self.signal(i, libc::SIGSTOP);
    }

    pub fn cont(&self, i: usize) {
        self.signal(i, libc::SIGCONT);
    }

    /// SIGTERM, then waits (up to `limit`) for the graceful exit.
    pub async fn term(&mut self, i: usize, limit: Duration) -> ExitStatus {
        self.signal(i, libc::SIGTERM);
        self.exited(i, limit).await
    }

    /// Waits (up to `limit`, then kills) for node `i`'s process to end, and reaps it.
    async fn exited(&mut self, i: usize, limit: Duration) -> ExitStatus {
        let mut child = self.slots[i].child.take().unwrap();
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + limit;
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    return status;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    return child.wait().unwrap();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .await
        .unwrap()
    }

    /// SIGTERM to every running node at once, then waits for each exit; whether all exited cleanly.
    pub async fn term_all(&mut self, limit: Duration) -> bool {
        let running: Vec<usize> = (0..self.slots.len()).filter(|i| self.running(*i)).collect();
        for &i in &running {
            self.signal(i, libc::SIGTERM);
        }
        let mut clean = true;
        for i in running {
            clean &= self.exited(i, limit).await.success();
        }
        clean
    }

    /// Cuts node `i` off PostgreSQL and NATS (bytes held, nothing delivered) or lets it through again.
    pub fn blackhole(&self, i: usize, on: bool) {
        for proxy in [&self.slots[i].pg_proxy, &self.slots[i].nats_proxy] {
            if on {
                proxy.pause()
            } else {
                proxy.resume()
            }
        }
    }

    pub fn bases(&self) -> Vec<String> {
        self.slots.iter().map(Slot::base).collect()
    }

    /// `/readyz` answered 200 by node `i`.
    pub async fn is_ready(&self, client: &reqwest::Client, i: usize) -> bool {
        let url = format!("{}/readyz", self.slots[i].base());
        matches!(client.get(url).timeout(Duration::from_secs(2)).send().await, Ok(r) if r.status() == 200)
    }

    /// Waits until every running node answers `/readyz` 200 (up to `limit`).
    pub async fn all_ready(&self, client: &reqwest::Client, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let mut ready = true;
            for i in 0..self.slots.len() {
                if self.running(i) && !self.is_ready(client, i).await {
                    ready = false;
                }
            }
            if ready {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Node `i`'s `/metrics` text.
    pub async fn metrics(&self, client: &reqwest::Client, i: usize) -> Option<String> {
        let url = format!("{}/metrics", self.slots[i].base());
        client.get(url).timeout(Duration::from_secs(5)).send().await.ok()?.text().await.ok()
    }

    /// The last lines of node `i`'s stderr (for failure messages).
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_dir.join(format!("{}.log", self.slots[i].id))).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for ProcCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for i in 0..self.slots.len() {
                eprintln!("--- {} (last lines of its log) ---\n{}", self.slots[i].id, self.log_tail(i, 15));
            }
        }
        for slot in &mut self.slots {
            if let Some(mut child) = slot.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn nats_addr(nats: &NatsServer) -> std::net::SocketAddr {
    let url = nats.url();
    url.trim_start_matches("nats://").parse().expect("the NATS url is host:port")
}

/// A counter or gauge from a Prometheus text page.
pub fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok()).map(|v| v as u64)
}
