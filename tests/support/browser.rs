//! A headless Chromium driven over WebDriver (chromedriver's W3C JSON API, spoken with reqwest, so no client crate is
//! built), for the web app's browser tests. Needs `chromium` and `chromedriver` (Debian: `apt-get install chromium
//! chromium-driver`); without them `Driver::start` answers `None`, saying why, except under `CI=true`, where it panics.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/web-app-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A chromedriver process for the test's lifetime.
pub struct Driver {
    child: std::process::Child,
    url: String,
    http: reqwest::Client,
    profiles: tempfile::TempDir,
    browsers: AtomicUsize,
}

const CHROMIUM: &str = "/usr/bin/chromium";

impl Driver {
    /// Starts chromedriver, or `None` (saying why) when chromium or chromedriver is missing outside CI.
    pub async fn start() -> Option<Driver> {
        let chromium = std::env::var("CHROME_BIN").unwrap_or_else(|_| CHROMIUM.to_owned());
        let missing = if !Path::new(&chromium).exists() {
            Some(format!("no chromium at {chromium}"))
        } else if std::process::Command::new("chromedriver").arg("--version").output().is_err() {
            Some("no chromedriver on PATH".to_owned())
        } else {
            None
        };
        if let Some(why) = missing {
            let msg = format!("{why}: install them with `apt-get install chromium chromium-driver`");
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("CI=true and the browser test cannot run: {msg}");
            }
            eprintln!("skipping the browser test: {msg}");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let http = foundry::integrations::http_client_builder().build().unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http.get(format!("{url}/status")).send().await.ok();
            if let Some(res) = ready {
                let body: Value = res.json().await.unwrap_or_default();
                if body["value"]["ready"] == true {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not become ready on port {port}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(Driver { child, url, http, profiles: tempfile::tempdir().unwrap(), browsers: AtomicUsize::new(0) })
    }

    /// A new headless browser with its own profile (so its own cookies).
    pub async fn browser(&self) -> Browser {
        let profile = self.profiles.path().join(format!("profile-{}", self.browsers.fetch_add(1, Ordering::Relaxed)));
        let chromium = std::env::var("CHROME_BIN").unwrap_or_else(|_| CHROMIUM.to_owned());
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         format!("--user-data-dir={}", profile.display()), "--window-size=1440,900"],
            },
        }}});
        let res = self.http.post(format!("{}/session", self.url)).json(&caps).send().await.unwrap();
        let body: Value = res.json().await.unwrap();
        let id = body["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("new session: {body}"));
        Browser { http: self.http.clone(), session: format!("{}/session/{id}", self.url) }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One WebDriver session.
pub struct Browser {
    http: reqwest::Client,
    session: String,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const WAIT: Duration = Duration::from_secs(15);

impl Browser {
    pub async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let body: Value = res.json().await.unwrap();
        if body["value"].get("error").is_some() {
            panic!("WebDriver {path}: {}", body["value"]);
        }
        body["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({ "url": url }))).await;
    }

    pub async fn js(&self, script: &str, args: Value) -> Value {
        self.cmd(reqwest::Method::POST, "/execute/sync", Some(json!({ "script": script, "args": args }))).await
    }

    /// Polls `condition` (a function body) until it returns something truthy; on timeout saves a screenshot.
    pub async fn wait(&self, what: &str, condition: &str) {
        let script = format!("try {{ return !!(function() {{ {condition} }})(); }} catch (e) {{ return false; }}");
        let deadline = Instant::now() + WAIT;
        loop {
            if self.js(&script, json!([])).await == true {
                return;
            }
            if Instant::now() > deadline {
                let dir = screenshot_dir();
                self.shot(&dir, "failure").await;
                let text = self.js("return document.body.innerText.slice(0, 3000)", json!([])).await;
                panic!("timed out waiting for {what}; page text:\n{text}\n(screenshot: {}/failure.png)", dir.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn element(&self, css: &str) -> String {
        self.wait(&format!("element {css}"), &format!("return !!document.querySelector({})", json!(css))).await;
        let found =
            self.cmd(reqwest::Method::POST, "/element", Some(json!({ "using": "css selector", "value": css }))).await;
        found[ELEMENT].as_str().unwrap().to_owned()
    }

    pub async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.cmd(reqwest::Method::POST, &format!("/element/{id}/click"), Some(json!({}))).await;
    }

    /// Types as a user would (real key events).
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.cmd(reqwest::Method::POST, &format!("/element/{id}/value"), Some(json!({ "text": text }))).await;
    }

    pub async fn clear(&self, css: &str) {
        let id = self.element(css).await;
        self.cmd(reqwest::Method::POST, &format!("/element/{id}/clear"), Some(json!({}))).await;
    }

    /// Sends keys to the focused element.
    pub async fn keys_to_active(&self, keys: &str) {
        let active = self.cmd(reqwest::Method::GET, "/element/active", None).await;
        let id = active[ELEMENT].as_str().unwrap().to_owned();
        self.cmd(reqwest::Method::POST, &format!("/element/{id}/value"), Some(json!({ "text": keys }))).await;
    }

    pub async fn shot(&self, dir: &Path, name: &str) {
        let png = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        std::fs::write(dir.join(format!("{name}.png")), base64_decode(png.as_str().unwrap())).unwrap();
    }

    /// Signs this browser in with a session token (as the sign-in response's cookie would), then opens `path`.
    pub async fn signed_in(&self, base: &str, token: &str, path: &str) {
        // Cookies can only be set for the page's own origin.
        self.goto(&format!("{base}/icon.svg")).await;
        let cookie = json!({ "cookie": { "name": "foundry_session", "value": token, "path": "/", "httpOnly": true } });
        self.cmd(reqwest::Method::POST, "/cookie", Some(cookie)).await;
        self.goto(&format!("{base}{path}")).await;
        self.wait("the live connection", "return document.querySelector('#conn')?.textContent === 'Live'").await;
    }

    /// A DevTools command's result.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.cmd(reqwest::Method::POST, "/goog/cdp/execute", Some(json!({ "cmd": cmd, "params": params }))).await
    }

    pub async fn quit(&self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}

/// Standard base64 (screenshots); small enough not to need a crate.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let digits: Vec<u8> = text.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()).map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, d)| n | (u32::from(*d) << (18 - 6 * i)));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// A TCP forwarder in front of a server that can lose the network: while down it cuts every open connection and
/// refuses new ones, as a dropped Wi-Fi or a restarting proxy would (Chromium's offline emulation leaves open
/// WebSockets alone, so it cannot stand in for this).
pub struct Flaky {
    pub base: String,
    up: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Flaky {
    pub fn start(target: SocketAddr) -> Flaky {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let up = Arc::new(AtomicBool::new(true));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (up2, open2) = (up.clone(), open.clone());
        // Lives as long as the test process; a test makes one or two.
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if !up2.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else { continue };
                let pipe = |mut from: TcpStream, mut to: TcpStream| {
                    std::thread::spawn(move || {
                        let _ = io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Write);
                    });
                };
                let mut open = open2.lock().unwrap();
                open.retain(|s: &TcpStream| s.peer_addr().is_ok());
                open.extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        Flaky { base, up, open }
    }

    /// Down: every open connection is cut and new ones are refused until it is up again.
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            for s in self.open.lock().unwrap().drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}
