//! A private NATS server per test: `nats-server` (Debian's `nats-server` package, or `$FOUNDRY_NATS_SERVER`) on a
//! free loopback port, killed on drop. Without the binary [`NatsServer::start`] answers `None`, saying why, except
//! under `CI=true`, where it fails the test (`.ci/run` installs the package).

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NatsServer {
    child: Child,
    port: u16,
}

fn binary() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("FOUNDRY_NATS_SERVER") {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

impl NatsServer {
    pub fn start() -> Option<NatsServer> {
        NatsServer::start_with(None)
    }

    /// A server that takes TLS connections only, with a certificate for 127.0.0.1 signed by a CA of its own, whose
    /// certificate is `ca.crt` in `certs` (see [`super::make_certificates`]).
    pub fn start_tls(certs: &std::path::Path) -> Option<NatsServer> {
        super::make_certificates(certs);
        NatsServer::start_with(Some(certs))
    }

    fn start_with(certs: Option<&std::path::Path>) -> Option<NatsServer> {
        let Some(bin) = binary() else {
            let msg = "no nats-server: install it with `apt-get install nats-server` or set FOUNDRY_NATS_SERVER";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("CI=true and the NATS tests cannot run: {msg}");
            }
            eprintln!("skipping a NATS test: {msg}");
            return None;
        };
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let mut command = Command::new(&bin);
            command.args(["-a", "127.0.0.1", "-p", &port.to_string()]);
            if let Some(dir) = certs {
                command
                    .arg("--tls")
                    .arg("--tlscert")
                    .arg(dir.join("server.crt"))
                    .arg("--tlskey")
                    .arg(dir.join("server.key"));
            }
            let mut child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("nats-server starts");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // the port was taken meanwhile: try another
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(NatsServer { child, port });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("nats-server did not start");
    }

    /// `tls://…` for a server started with [`NatsServer::start_tls`].
    pub fn tls_url(&self) -> String {
        format!("tls://127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
