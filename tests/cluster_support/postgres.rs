//! A private PostgreSQL server per test: `initdb` into a temporary directory, `postgres` on a free loopback port
//! (trust authentication, user `postgres`), stopped and deleted on drop.
//!
//! Binaries: `$FOUNDRY_PG_BIN` if set, else the newest `/usr/lib/postgresql/<version>/bin` (Debian's `postgresql`
//! package), else `initdb`/`postgres` on `PATH`. Without them [`PgServer::start`] answers `None`, saying why, except
//! under `CI=true`, where it fails the test (`.ci/run` installs the package). `initdb` refuses to run as root, so as
//! root (CI runs as root) the server runs as the `postgres` system user the package creates, or `nobody`.

use std::ffi::CString;
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running PostgreSQL server owned by the test.
pub struct PgServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

fn skip_or_fail(why: &str) -> Option<PgServer> {
    let msg = format!("{why}: install the server with `apt-get install postgresql` or set FOUNDRY_PG_BIN");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and the PostgreSQL tests cannot run: {msg}");
    }
    eprintln!("skipping a PostgreSQL test: {msg}");
    None
}

/// The directory holding `initdb` and `postgres`.
fn bin_dir() -> Option<PathBuf> {
    let has_both = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Ok(dir) = std::env::var("FOUNDRY_PG_BIN") {
        return Some(PathBuf::from(dir)).filter(|d| has_both(d));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, d)| has_both(d))
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return Some(dir);
    }
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).find(|d| has_both(d)))
}

/// The (uid, gid) to run the server as when this process is root.
fn unprivileged_user() -> Option<(u32, u32)> {
    for name in ["postgres", "nobody"] {
        let c = CString::new(name).ok()?;
        // SAFETY: getpwnam returns a pointer into static storage or null; we copy the two ids out at once, and the
        // tests call it from one thread at a time (the server start is serialised by the test's lock).
        let pw = unsafe { libc::getpwnam(c.as_ptr()) };
        if !pw.is_null() {
            // SAFETY: non-null, points to a valid passwd record (see above).
            let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
            return Some((uid, gid));
        }
    }
    None
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl PgServer {
    /// Starts a fresh server and waits until it accepts connections, or `None` (saying why) when PostgreSQL is not
    /// installed outside CI.
    pub async fn start() -> Option<PgServer> {
        PgServer::start_with(false, false).await
    }

    /// [`PgServer::start`] with `fsync = on`, for benchmarks whose figures must include making commits durable.
    pub async fn start_durable() -> Option<PgServer> {
        PgServer::start_with(true, false).await
    }

    /// A server that takes TCP connections over TLS only (`hostssl`; a plain one is rejected), with a certificate
    /// for 127.0.0.1 made by `openssl` and signed by a CA of its own, whose certificate is [`PgServer::ca_file`].
    pub async fn start_tls() -> Option<PgServer> {
        PgServer::start_with(false, true).await
    }

    /// The CA certificate (PEM) that signed a [`PgServer::start_tls`] server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    async fn start_with(durable: bool, tls: bool) -> Option<PgServer> {
        let Some(bin) = bin_dir() else { return skip_or_fail("no PostgreSQL server binaries (initdb, postgres)") };
        // SAFETY: geteuid has no preconditions.
        let as_user = if unsafe { libc::geteuid() } == 0 {
            match unprivileged_user() {
                Some(ids) => Some(ids),
                None => return skip_or_fail("running as root and there is no `postgres` or `nobody` user"),
            }
        } else {
            None
        };
        let mut dir = tempfile::Builder::new().prefix("fdy-pg-").tempdir().unwrap();
        if let Some((uid, gid)) = as_user {
            let path = CString::new(dir.path().to_str().unwrap()).unwrap();
            // SAFETY: a valid NUL-terminated path; chown only changes the directory's owner.
            assert_eq!(unsafe { libc::chown(path.as_ptr(), uid, gid) }, 0, "chown {}", dir.path().display());
        }
        let data = dir.path().join("data");
        let command = |program: &str| {
            let mut c = Command::new(bin.join(program));
            if let Some((uid, gid)) = as_user {
                c.uid(uid).gid(gid);
            }
            c.env_remove("PGDATA").stdin(Stdio::null());
            c
        };
        let out = command("initdb")
            .args(["-D", data.to_str().unwrap(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "-N"])
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if tls {
            make_certificates(dir.path(), &data, as_user);
        }
        let log_path = dir.path().join("postgres.log");
        // A port taken between choosing it and the server binding it only costs a retry.
        for _ in 0..3 {
            let port = free_port();
            let log = File::create(&log_path).unwrap();
            if let Some((uid, gid)) = as_user {
                // SAFETY: as above; the log file must be writable by the server's user.
                let path = CString::new(log_path.to_str().unwrap()).unwrap();
                unsafe { libc::chown(path.as_ptr(), uid, gid) };
            }
            let child = command("postgres")
                .args(["-D", data.to_str().unwrap(), "-p", &port.to_string()])
                .args(["-c", "listen_addresses=127.0.0.1"])
                .arg("-c")
                .arg(format!("unix_socket_directories={}", dir.path().display()))
                // Durability against power loss is not under test here (a killed server keeps its WAL in the OS
                // cache); fsync only slows a 2-core CI machine down.
                .args(["-c", if durable { "fsync=on" } else { "fsync=off" }])
                .args(["-c", "max_connections=60", "-c", "shared_buffers=16MB"])
                .args(if tls { &["-c", "ssl=on"][..] } else { &[][..] })
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("postgres starts");
            let mut server = PgServer { child, port, dir };
            match server.wait_ready().await {
                Ok(()) => return Some(server),
                Err(why) if why.contains("could not bind") || why.contains("Address already in use") => {
                    dir = server.take_dir();
                    continue;
                }
                Err(why) => panic!("PostgreSQL did not start: {why}"),
            }
        }
        panic!("PostgreSQL could not bind a free port in three attempts");
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status}: {}", self.log()));
            }
            let socket = format!("host={} port={} user=postgres dbname=postgres", self.dir.path().display(), self.port);
            if let Ok((client, conn)) = tokio_postgres::connect(&socket, tokio_postgres::NoTls).await {
                let driver = tokio::spawn(conn);
                let ok = client.simple_query("SELECT 1").await.is_ok();
                drop(client);
                let _ = driver.await;
                if ok {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!("not accepting connections after 30 s: {}", self.log()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server and hands the directory back (for a retry on another port).
    fn take_dir(mut self) -> tempfile::TempDir {
        self.stop();
        let placeholder = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, placeholder)
    }

    /// `postgresql://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The same server, reached at another address (a proxy in front of it).
    pub fn url_via(&self, addr: SocketAddr) -> String {
        format!("postgresql://postgres@{addr}/postgres")
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        // SIGINT is PostgreSQL's fast shutdown: backends are told to exit, then the postmaster exits.
        // SAFETY: signalling our own child process by its pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it (`openssl`), in the server's data directory with
/// `pg_hba.conf` taking TCP connections over TLS only (the Unix socket, for the harness's own readiness check, stays).
fn make_certificates(dir: &Path, data: &Path, as_user: Option<(u32, u32)>) {
    super::make_certificates(dir);
    for file in ["server.crt", "server.key"] {
        let to = data.join(file);
        std::fs::copy(dir.join(file), &to).unwrap();
        std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        if let Some((uid, gid)) = as_user {
            let path = CString::new(to.to_str().unwrap()).unwrap();
            // SAFETY: a valid NUL-terminated path; the server's user must own its key.
            unsafe { libc::chown(path.as_ptr(), uid, gid) };
        }
    }
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
    )
    .unwrap();
}
