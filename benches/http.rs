//! HTTP / WebSocket benchmarks (plain program, `harness = false`): the web layer of `src/http/` served in-process
//! on `127.0.0.1:0`, with a fresh runtime (`RuntimeConfig::new(dir)`) and `Domain::without_agent` (no agent turns:
//! the data path only) per run.
//!
//! ```text
//! cargo bench --bench http -- [ws|read|all] [name=value ...]
//! ```
//!
//! - `ws`: `clients` WebSocket clients (tokio-tungstenite, Bearer tokens of `users` distinct members) subscribe to
//!   the `organization` topic of one organization; then `tasks` tasks are created one after another with
//!   `Domain::create_task` (directly, not over HTTP, `gap_ms` apart; with `burst=1` also back to back). For every
//!   (client, task) pair: the time from `create_task` returning (and from its call start) to the client's first
//!   frame that lists the task. Once per `modes` entry: `full` clients subscribe with the snapshot protocol (every
//!   change an `organizationUpdated` with the whole snapshot, coalesced for a slow client), `patch` clients with
//!   `"patches": true` (the first snapshot, then `organizationPatched` frames). Also frames and bytes per client and
//!   per topic change, process RSS / fds and wall time.
//! - `read`: `conc` keep-alive reqwest clients (built with `foundry::integrations::http_client_builder`) for `secs`
//!   seconds each on `GET /healthz`, `GET /v1/auth/whoami` (token resolution only), `GET
//!   /v1/orgs/acme/repos/r1/tasks/t1` and `GET /v1/orgs/acme` (an organization with `read_tasks` tasks): requests/s,
//!   latency percentiles, errors, CPU of the load generator vs the server.
//!
//! Clients run in this process on `client_threads` OS threads (one current-thread tokio runtime each), so they compete
//! with the server (`workers` actix-web workers + the runtime's arbiters) for the same cores.
//!
//! Options (`name=value` or `BENCH_<NAME>`): `clients` (100,1000), `tasks` (200), `gap_ms` (10), `burst` (1),
//! `users` (10), `client_threads` (2), `workers` (2), `connect_conc` (32 per client thread), `timeout_s` (30),
//! `parse` (`scan`: substring search for `"taskId":"tN"` in each frame; `serde`: serde_json of every frame, patches
//! applied to the snapshot the client holds), `modes` (`full,patch`),
//! `conc` (32), `secs` (5), `warmup_ms` (500), `read_tasks` (100).
//! Temporary data goes under `BENCH_TMP` (default `/work/bench-tmp`, else the system temp dir) and is deleted.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use foundry::actors::repository::CreateTask;
use foundry::actors::{Domain, RepoKey};
use foundry::http::{Api, AuthSettings};
use foundry::runtime::patch::{self, PatchOp};
use foundry::runtime::{Runtime, RuntimeConfig};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use common::{ms, percentile, table, tmp_base, Opts};

const ORG: &str = "acme";
const REPO: &str = "r1";

// ---------------------------------------------------------------------------------------------------------------
// Process resources

/// `VmRSS` of this process in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU time (user + system) of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the local struct.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time (user + system) of the whole process, exited threads included.
fn process_cpu() -> Duration {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes the local struct.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Raises the soft open-files limit to the hard one (1,000 clients + their server sockets + actor databases).
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim = want;
            }
        }
    }
    lim.rlim_cur
}

// ---------------------------------------------------------------------------------------------------------------
// Server and setup

struct Server {
    api: Arc<Api>,
    rt: Runtime,
    addr: SocketAddr,
    base: String,
    handle: ServerHandle,
    http: reqwest::Client,
    /// Session tokens of the members, the owner first.
    tokens: Vec<String>,
    _dir: tempfile::TempDir,
}

async fn start_server(workers: usize, users: usize) -> Server {
    let dir = common::tempdir("foundry-bench-http-");
    let rt = Runtime::start(RuntimeConfig::new(dir.path())).expect("runtime starts");
    let domain = Domain::without_agent(rt.clone());
    let api = Arc::new(Api::new(domain, AuthSettings { dev_sign_in: true, ..Default::default() }));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let server = foundry::http::server_on(api.clone(), listener, workers).expect("server");
    let handle = server.handle();
    actix_rt::spawn(server);
    let http = foundry::integrations::http_client_builder().build().expect("reqwest client");
    let mut s = Server { api, rt, addr, base: format!("http://{addr}"), handle, http, tokens: Vec::new(), _dir: dir };
    s.setup(users.max(1)).await;
    s
}

impl Server {
    async fn call(&self, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Value>) -> Value {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = res.status();
        let text = res.text().await.expect("body");
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// `users` members signed in (dev sign-in), organization `acme` created by the first (its owner) with
    /// repository `r1`, the others added as members.
    async fn setup(&mut self, users: usize) {
        use reqwest::Method;
        for i in 0..users {
            let signed =
                self.call(Method::POST, "/v1/auth/dev/sign-in", None, Some(json!({ "login": format!("bench{i}") })));
            let token = signed.await["token"].as_str().expect("token").to_owned();
            self.tokens.push(token);
        }
        let owner = self.tokens[0].clone();
        self.call(Method::POST, "/v1/orgs", Some(&owner), Some(json!({ "id": ORG, "displayName": "Acme Inc" }))).await;
        let repo = json!({ "repoId": REPO, "fullName": "acme/r1", "remoteUrl": "https://example.invalid/acme/r1.git" });
        self.call(Method::POST, &format!("/v1/orgs/{ORG}/repos"), Some(&owner), Some(repo)).await;
        for t in self.tokens.clone().iter().skip(1) {
            let who = self.call(Method::GET, "/v1/auth/whoami", Some(t), None).await;
            let user = who["userId"].as_str().expect("userId").to_owned();
            let path = format!("/v1/orgs/{ORG}/members/{user}");
            self.call(Method::PUT, &path, Some(&owner), Some(json!({ "role": "member" }))).await;
        }
    }

    async fn create_task(&self, i: usize) -> foundry::actors::repository::CreatedTask {
        let msg = CreateTask {
            prompt: format!("Fix the flaky integration test number {i} in the billing service"),
            title: None,
            branch: None,
            model: None,
            user_id: None,
        };
        self.api.domain.create_task(&RepoKey::new(ORG, REPO), msg).await.expect("create task")
    }

    async fn stop(self) {
        self.api.close_connections();
        self.handle.stop(true).await;
        self.rt.shutdown().await;
    }
}

/// Runs `f(thread index)` on `n` OS threads, each with its own current-thread tokio runtime; the results and the
/// thread's CPU time arrive on the returned receivers (awaitable from the actix system thread without blocking it).
fn on_threads<T, F, Fut>(n: usize, f: F) -> Vec<tokio::sync::oneshot::Receiver<(T, Duration)>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = T>,
{
    let f = Arc::new(f);
    (0..n)
        .map(|i| {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let f = f.clone();
            std::thread::Builder::new()
                .name(format!("bench-client-{i}"))
                .spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                    let out = rt.block_on(f(i));
                    let _ = tx.send((out, thread_cpu()));
                })
                .expect("spawn client thread");
            rx
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// ws: organization topic fan-out

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[derive(Clone, Copy, PartialEq)]
enum Parse {
    Scan,
    Serde,
}

/// Which protocol the clients speak.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// The snapshot protocol: each change is the whole snapshot.
    Full,
    /// `"patches": true`: the first snapshot, then patches.
    Patch,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Patch => "patch",
        }
    }

    fn subscribe(self) -> Value {
        json!({ "type": "subscribe", "topic": "organization", "key": { "org": ORG }, "patches": self == Mode::Patch })
    }
}

/// What one client shares with the others and the task creator.
struct Shared {
    addr: SocketAddr,
    tasks: usize,
    /// How many creations have been started (tasks `t1..=issued` may appear in frames).
    issued: AtomicUsize,
    ready: AtomicUsize,
    failed: AtomicUsize,
    /// `"taskId":"t{k+1}"` for task index k.
    needles: Vec<String>,
    parse: Parse,
    mode: Mode,
    stop: tokio::sync::watch::Receiver<bool>,
    connect_limit: Vec<tokio::sync::Semaphore>,
}

#[derive(Default)]
struct ClientResult {
    /// When the client first received a snapshot listing task k.
    seen: Vec<Option<Instant>>,
    /// Update frames after the initial snapshot.
    frames: u64,
    bytes: u64,
    first_version: u64,
    last_version: u64,
    /// `overloaded` error frames answered to the subscription (each retried).
    subscribe_retries: u32,
    error: Option<String>,
}

#[derive(Deserialize)]
struct FullFrame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    version: u64,
    snapshot: Option<Value>,
    #[serde(default)]
    ops: Vec<PatchOp>,
}

/// `"version":N` of an update frame (the server writes it before the snapshot).
fn scan_version(text: &str) -> Option<u64> {
    let at = text.find(r#""version":"#)? + r#""version":"#.len();
    let digits: String = text[at..].chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

async fn ws_connect(shared: &Shared, token: &str) -> Result<Ws, String> {
    let mut req = format!("ws://{}/v1/ws", shared.addr).into_client_request().map_err(|e| e.to_string())?;
    let auth = format!("Bearer {token}").parse().map_err(|e| format!("{e}"))?;
    req.headers_mut().insert("authorization", auth);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.map_err(|e| format!("connect: {e}"))?;
    ws.send(Message::Text(shared.mode.subscribe().to_string().into())).await.map_err(|e| format!("subscribe: {e}"))?;
    Ok(ws)
}

/// One client: connect, subscribe, wait for the initial snapshot, then stamp every task's first appearance.
async fn ws_client(shared: Arc<Shared>, thread: usize, token: String) -> ClientResult {
    let mut r = ClientResult { seen: vec![None; shared.tasks], ..Default::default() };
    // The permit is held until the initial snapshot: at most `connect_conc` subscriptions per thread are pending.
    let mut permit = shared.connect_limit[thread].acquire().await.ok();
    let mut ws = match ws_connect(&shared, &token).await {
        Ok(ws) => ws,
        Err(e) => {
            r.error = Some(e);
            shared.failed.fetch_add(1, Ordering::SeqCst);
            return r;
        }
    };
    let mut stop = shared.stop.clone();
    let mut initial = true;
    let mut lo = 0usize; // every task below `lo` has been seen
    let mut doc = Value::Null; // parse=serde: the snapshot as of the last frame
    loop {
        let msg = tokio::select! {
            _ = stop.changed() => break,
            m = ws.next() => m,
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(other)) => {
                r.error = Some(format!("unexpected frame {other:?}"));
                break;
            }
            Some(Err(e)) => {
                r.error = Some(format!("receive: {e}"));
                break;
            }
            None => {
                r.error = Some("connection closed by the server".into());
                break;
            }
        };
        let now = Instant::now();
        if initial && text.starts_with('{') && text.contains(r#""code":"overloaded""#) {
            // The organization's mailbox was full (the membership check fails fast): retry like a real client.
            r.subscribe_retries += 1;
            tokio::time::sleep(Duration::from_millis(10 * u64::from(r.subscribe_retries.min(20)))).await;
            if let Err(e) = ws.send(Message::Text(shared.mode.subscribe().to_string().into())).await {
                r.error = Some(format!("subscribe: {e}"));
                break;
            }
            continue;
        }
        let version;
        match shared.parse {
            Parse::Scan => {
                if !text.starts_with(r#"{"type":"organizationUpdated""#)
                    && !text.starts_with(r#"{"type":"organizationPatched""#)
                {
                    r.error = Some(format!("unexpected frame {}", &text[..text.len().min(200)]));
                    break;
                }
                version = scan_version(&text).unwrap_or(0);
                let hi = shared.issued.load(Ordering::SeqCst).min(shared.tasks);
                for k in lo..hi {
                    if r.seen[k].is_none() && text.contains(shared.needles[k].as_str()) {
                        r.seen[k] = Some(now);
                    }
                }
            }
            Parse::Serde => {
                let f: FullFrame = match serde_json::from_str(&text) {
                    Ok(f) => f,
                    Err(e) => {
                        r.error = Some(format!("bad frame: {e}"));
                        break;
                    }
                };
                match f.kind.as_str() {
                    "organizationUpdated" => doc = f.snapshot.unwrap_or_default(),
                    "organizationPatched" => {
                        if let Err(e) = patch::apply(&mut doc, &f.ops) {
                            r.error = Some(format!("patch to {} does not apply: {e}", f.version));
                            break;
                        }
                    }
                    other => {
                        r.error = Some(format!("unexpected frame type {other}"));
                        break;
                    }
                }
                version = f.version;
                for s in doc["taskSummaries"].as_array().into_iter().flatten() {
                    let k =
                        s["taskId"].as_str().and_then(|t| t.strip_prefix('t')).and_then(|n| n.parse::<usize>().ok());
                    if let Some(slot) = k.and_then(|k| r.seen.get_mut(k.wrapping_sub(1))) {
                        slot.get_or_insert(now);
                    }
                }
            }
        }
        if initial {
            initial = false;
            r.first_version = version;
            shared.ready.fetch_add(1, Ordering::SeqCst);
            permit = None;
        } else {
            r.frames += 1;
            r.bytes += text.len() as u64;
        }
        r.last_version = r.last_version.max(version);
        while lo < shared.tasks && r.seen[lo].is_some() {
            lo += 1;
        }
        if lo == shared.tasks {
            break;
        }
    }
    drop(permit);
    if initial {
        // Never subscribed: count it, so the creator does not wait for it.
        shared.failed.fetch_add(1, Ordering::SeqCst);
        eprintln!("client failed before its first snapshot: {}", r.error.as_deref().unwrap_or("stopped"));
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    r
}

struct WsRun {
    clients: usize,
    gap_ms: u64,
    mode: Mode,
    tasks: usize,
    connect: Duration,
    failed: usize,
    subscribe_retries: u64,
    /// CPU seconds from the first connect to the end: client threads, and the rest of the process.
    client_cpu: Duration,
    rest_cpu: Duration,
    create_lat: Vec<Duration>,
    /// Per (client, task): from the return of `create_task` (saturating) and from its call start.
    from_return: Vec<Duration>,
    from_start: Vec<Duration>,
    before_return: usize,
    lost: usize,
    frames_mean: f64,
    frames_min: u64,
    frames_max: u64,
    bytes_per_client: f64,
    versions: u64,
    server_frames: u64,
    dropped: u64,
    rss: [f64; 3],
    fds: [usize; 3],
    /// First create call start -> last delivery (or give-up).
    wall: Duration,
    errors: Vec<String>,
}

async fn ws_run(o: &Opts, clients: usize, gap_ms: u64, mode: Mode) -> WsRun {
    let tasks = o.get("tasks", 200) as usize;
    let users = o.get("users", 10).max(1) as usize;
    let threads = o.get("client_threads", 2).max(1) as usize;
    let workers = o.get("workers", 2).max(1) as usize;
    let connect_conc = o.get("connect_conc", 32).max(1) as usize;
    let timeout = Duration::from_secs(o.get("timeout_s", 30));
    let parse = if o.raw("parse").as_deref() == Some("serde") { Parse::Serde } else { Parse::Scan };

    let server = start_server(workers, users).await;
    let rss0 = rss_mib();
    let fds0 = open_fds();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let shared = Arc::new(Shared {
        addr: server.addr,
        tasks,
        issued: AtomicUsize::new(0),
        ready: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        needles: (0..tasks).map(|k| format!(r#""taskId":"t{}""#, k + 1)).collect(),
        parse,
        mode,
        stop: stop_rx,
        connect_limit: (0..threads).map(|_| tokio::sync::Semaphore::new(connect_conc)).collect(),
    });

    // Clients: client c uses the token of user c % users, and runs on thread c % threads.
    let connect_start = Instant::now();
    let cpu0 = process_cpu();
    let tokens = Arc::new(server.tokens.clone());
    let sh = shared.clone();
    let receivers = on_threads(threads, move |t| {
        let sh = sh.clone();
        let tokens = tokens.clone();
        async move {
            let mine = (0..clients).filter(|c| c % threads == t);
            let futs = mine.map(|c| ws_client(sh.clone(), t, tokens[c % tokens.len()].clone()));
            futures_util::future::join_all(futs).await
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut report = Instant::now() + Duration::from_secs(5);
    while shared.ready.load(Ordering::SeqCst) + shared.failed.load(Ordering::SeqCst) < clients {
        assert!(Instant::now() < deadline, "clients did not connect within 120 s");
        if Instant::now() > report {
            report += Duration::from_secs(5);
            eprintln!(
                "waiting for clients: ready {} failed {} of {clients}; server ws sessions {}, opened {}",
                shared.ready.load(Ordering::SeqCst),
                shared.failed.load(Ordering::SeqCst),
                server.api.stats.ws_sessions.load(Ordering::Relaxed),
                server.api.stats.ws_opened.load(Ordering::Relaxed),
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let connect = connect_start.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await; // let the connect burst settle
    let rss1 = rss_mib();
    let fds1 = open_fds();

    // Creation, one after another.
    let gap = Duration::from_millis(gap_ms);
    let mut starts = Vec::with_capacity(tasks);
    let mut returns = Vec::with_capacity(tasks);
    let mut errors = Vec::new();
    for j in 0..tasks {
        if !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
        shared.issued.store(j + 1, Ordering::SeqCst);
        let s = Instant::now();
        let created = server.create_task(j).await;
        returns.push(Instant::now());
        starts.push(s);
        if created.task.task != format!("t{}", j + 1) {
            errors.push(format!("task {j} got id {} (expected t{})", created.task.task, j + 1));
        }
    }
    let last_return = Instant::now();

    // Collect: clients end once they have seen every task; the rest are stopped after `timeout`.
    let mut results = Vec::with_capacity(clients);
    let mut client_cpu = Duration::ZERO;
    let give_up = tokio::time::Instant::from_std(last_return + timeout);
    for rx in receivers {
        let mut rx = rx;
        let got = match tokio::time::timeout_at(give_up, &mut rx).await {
            Ok(r) => r,
            Err(_) => {
                let _ = stop_tx.send(true);
                rx.await
            }
        };
        let (got, cpu) = got.expect("client thread panicked");
        results.extend(got);
        client_cpu += cpu;
    }
    let total_cpu = process_cpu() - cpu0;
    let _ = stop_tx.send(true);
    let rss2 = rss_mib();
    let fds2 = open_fds();

    // Figures.
    let first_start = starts.first().copied().unwrap_or(last_return);
    let mut last_delivery = last_return;
    let (mut from_return, mut from_start) = (Vec::new(), Vec::new());
    let (mut before_return, mut lost) = (0usize, 0usize);
    for r in results.iter().filter(|r| r.error.is_none() || r.frames > 0) {
        for (k, seen) in r.seen.iter().enumerate() {
            match seen {
                Some(at) => {
                    if *at < returns[k] {
                        before_return += 1;
                    }
                    from_return.push(at.saturating_duration_since(returns[k]));
                    from_start.push(at.saturating_duration_since(starts[k]));
                    last_delivery = last_delivery.max(*at);
                }
                None => lost += 1,
            }
        }
    }
    for r in &results {
        if let Some(e) = &r.error {
            if errors.len() < 5 {
                errors.push(e.clone());
            }
        }
    }
    from_return.sort();
    from_start.sort();
    let mut create_lat: Vec<Duration> = starts.iter().zip(&returns).map(|(s, r)| *r - *s).collect();
    create_lat.sort();
    let frames: Vec<u64> = results.iter().map(|r| r.frames).collect();
    let n = results.len().max(1) as f64;
    let versions = results.iter().map(|r| r.last_version).max().unwrap_or(0)
        - results.iter().map(|r| r.first_version).min().unwrap_or(0);
    let stats = &server.api.stats;
    let run = WsRun {
        clients,
        gap_ms,
        mode,
        tasks,
        connect,
        failed: shared.failed.load(Ordering::SeqCst),
        subscribe_retries: results.iter().map(|r| u64::from(r.subscribe_retries)).sum(),
        client_cpu,
        rest_cpu: total_cpu.saturating_sub(client_cpu),
        create_lat,
        from_return,
        from_start,
        before_return,
        lost,
        frames_mean: frames.iter().sum::<u64>() as f64 / n,
        frames_min: frames.iter().copied().min().unwrap_or(0),
        frames_max: frames.iter().copied().max().unwrap_or(0),
        bytes_per_client: results.iter().map(|r| r.bytes).sum::<u64>() as f64 / n,
        versions,
        server_frames: stats.ws_frames.load(Ordering::Relaxed),
        dropped: stats.ws_dropped.load(Ordering::Relaxed),
        rss: [rss0, rss1, rss2],
        fds: [fds0, fds1, fds2],
        wall: last_delivery - first_start,
        errors,
    };
    server.stop().await;
    run
}

async fn ws_section(o: &Opts) {
    {
        let clients = o.list("clients", &[100, 1000]);
        let gap = o.get("gap_ms", 10);
        let mut gaps = vec![gap];
        if o.get("burst", 1) != 0 && gap != 0 {
            gaps.push(0);
        }
        let modes: Vec<Mode> = o
            .raw("modes")
            .unwrap_or_else(|| "full,patch".into())
            .split(',')
            .filter_map(|m| match m.trim() {
                "full" => Some(Mode::Full),
                "patch" => Some(Mode::Patch),
                _ => None,
            })
            .collect();
        let mut runs = Vec::new();
        // The modes of one size and gap run back to back, so a comparison is between neighbouring runs.
        for &c in &clients {
            for &g in &gaps {
                for &m in &modes {
                    let t = Instant::now();
                    let r = ws_run(o, c as usize, g, m).await;
                    eprintln!("ws clients={c} gap_ms={g} mode={}: {:.1} s", m.name(), t.elapsed().as_secs_f64());
                    runs.push(r);
                }
            }
        }
        let label = |r: &WsRun| {
            if r.gap_ms == 0 {
                format!("{} clients, burst, {}", r.clients, r.mode.name())
            } else {
                format!("{} clients, gap {} ms, {}", r.clients, r.gap_ms, r.mode.name())
            }
        };
        table(
            "(ws-1) create_task return -> client receives a frame listing the task (full: a snapshot with it; patch: the patch adding it), over all (client, task) pairs",
            &["run", "pairs", "lost", "before return", "p50 ms", "p90 ms", "p99 ms", "max ms", "create p50 ms", "create p99 ms"],
            &runs
                .iter()
                .map(|r| {
                    let l = &r.from_return;
                    vec![
                        label(r),
                        l.len().to_string(),
                        r.lost.to_string(),
                        format!("{:.1}%", 100.0 * r.before_return as f64 / l.len().max(1) as f64),
                        ms(percentile(l, 0.5)),
                        ms(percentile(l, 0.9)),
                        ms(percentile(l, 0.99)),
                        ms(l.last().copied().unwrap_or_default()),
                        ms(percentile(&r.create_lat, 0.5)),
                        ms(percentile(&r.create_lat, 0.99)),
                    ]
                })
                .collect::<Vec<_>>(),
        );
        table(
            "(ws-2) the same pairs measured from the create_task call start",
            &["run", "p50 ms", "p90 ms", "p99 ms", "max ms"],
            &runs
                .iter()
                .map(|r| {
                    let l = &r.from_start;
                    vec![
                        label(r),
                        ms(percentile(l, 0.5)),
                        ms(percentile(l, 0.9)),
                        ms(percentile(l, 0.99)),
                        ms(l.last().copied().unwrap_or_default()),
                    ]
                })
                .collect::<Vec<_>>(),
        );
        table(
            "(ws-3) frames, coalescing, resources (RSS/fds: whole process, clients included; before = server up, no clients)",
            &[
                "run",
                "tasks",
                "connect s",
                "failed",
                "overloaded retries",
                "topic versions",
                "frames/client mean (min-max)",
                "frames/task",
                "KiB/client",
                "bytes/client/change",
                "server frames",
                "dropped",
                "RSS MiB before/connected/after",
                "fds before/connected/after",
                "CPU s clients / rest",
                "wall s",
            ],
            &runs
                .iter()
                .map(|r| {
                    vec![
                        label(r),
                        r.tasks.to_string(),
                        format!("{:.2}", r.connect.as_secs_f64()),
                        r.failed.to_string(),
                        r.subscribe_retries.to_string(),
                        r.versions.to_string(),
                        format!("{:.1} ({}-{})", r.frames_mean, r.frames_min, r.frames_max),
                        format!("{:.2}", r.frames_mean / r.tasks.max(1) as f64),
                        format!("{:.0}", r.bytes_per_client / 1024.0),
                        format!("{:.0}", r.bytes_per_client / r.versions.max(1) as f64),
                        r.server_frames.to_string(),
                        r.dropped.to_string(),
                        format!("{:.0} / {:.0} / {:.0}", r.rss[0], r.rss[1], r.rss[2]),
                        format!("{} / {} / {}", r.fds[0], r.fds[1], r.fds[2]),
                        format!("{:.2} / {:.2}", r.client_cpu.as_secs_f64(), r.rest_cpu.as_secs_f64()),
                        format!("{:.2}", r.wall.as_secs_f64()),
                    ]
                })
                .collect::<Vec<_>>(),
        );
        println!(
            "(ws-3) topic versions = organization topic versions committed during the run; frames/client counts update \
             frames after the initial snapshot; frames/task < versions/task means coalescing; bytes/client/change = \
             bytes a client received after its initial snapshot / topic versions; server frames = \
             foundry_ws_frames (initial snapshots included); overloaded retries = `overloaded` error frames answered to subscribe frames (the client retries after 10 ms x attempt); CPU = client threads vs the rest of the process (server workers, runtime arbiters, task creator), first connect -> end; wall = first create call -> last delivery"
        );
        for r in &runs {
            for e in &r.errors {
                println!("{}: {e}", label(r));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// read: HTTP read throughput

/// Write transactions so far: of the repository kind, and of every kind.
fn txns(d: &Domain) -> [u64; 2] {
    let t = |s: &foundry::runtime::KindStats| s.transactions.load(Ordering::Relaxed);
    let repo = t(d.repos.stats());
    let all = t(d.orgs.stats())
        + repo
        + t(d.tasks.stats())
        + t(d.sessions.stats())
        + t(d.users.stats())
        + t(d.audit.stats())
        + t(d.auth.stats());
    [repo, all]
}

struct LoadResult {
    lat: Vec<Duration>,
    errors: u64,
    bytes: u64,
    span: Duration,
    first_error: Option<String>,
    /// CPU seconds over warm-up + measurement: load-generator threads, and the rest (the server).
    client_cpu: Duration,
    rest_cpu: Duration,
}

/// `conc` keep-alive loops over `threads` client threads, GET `url` with the tokens round robin: a warm-up of
/// `warmup`, then `secs` measured (requests started in the measured window).
async fn load(
    url: String,
    tokens: Vec<String>,
    conc: usize,
    threads: usize,
    warmup: Duration,
    secs: Duration,
) -> LoadResult {
    let t0 = Instant::now() + Duration::from_millis(50);
    let (measure_from, end) = (t0 + warmup, t0 + warmup + secs);
    let url = Arc::new(url);
    let tokens = Arc::new(tokens);
    let cpu0 = process_cpu();
    let receivers = on_threads(threads, move |t| {
        let url = url.clone();
        let tokens = tokens.clone();
        async move {
            let per = conc / threads + usize::from(t < conc % threads);
            let client = foundry::integrations::http_client_builder()
                .pool_max_idle_per_host(per.max(1))
                .build()
                .expect("reqwest client");
            let loops = (0..per).map(|i| {
                let client = client.clone();
                let url = url.clone();
                let token = tokens[(t + i * threads) % tokens.len().max(1)].clone();
                async move {
                    let mut r = LoadResult {
                        lat: Vec::new(),
                        errors: 0,
                        bytes: 0,
                        span: Duration::ZERO,
                        first_error: None,
                        client_cpu: Duration::ZERO,
                        rest_cpu: Duration::ZERO,
                    };
                    tokio::time::sleep_until(tokio::time::Instant::from_std(t0)).await;
                    let mut last = measure_from;
                    loop {
                        let s = Instant::now();
                        if s >= end {
                            break;
                        }
                        let res = client.get(url.as_str()).bearer_auth(&token).send().await;
                        let outcome = match res {
                            Ok(res) if res.status().is_success() => res.bytes().await.map_err(|e| e.to_string()),
                            Ok(res) => Err(format!("status {}", res.status())),
                            Err(e) => Err(e.to_string()),
                        };
                        let done = Instant::now();
                        if s < measure_from {
                            continue;
                        }
                        last = done;
                        match outcome {
                            Ok(body) => {
                                r.lat.push(done - s);
                                r.bytes += body.len() as u64;
                            }
                            Err(e) => {
                                r.errors += 1;
                                r.first_error.get_or_insert(e);
                            }
                        }
                    }
                    r.span = last.saturating_duration_since(measure_from);
                    r
                }
            });
            futures_util::future::join_all(loops).await
        }
    });
    let mut all = LoadResult {
        lat: Vec::new(),
        errors: 0,
        bytes: 0,
        span: Duration::ZERO,
        first_error: None,
        client_cpu: Duration::ZERO,
        rest_cpu: Duration::ZERO,
    };
    let mut client_cpu = Duration::ZERO;
    for rx in receivers {
        let (results, cpu) = rx.await.expect("load thread panicked");
        client_cpu += cpu;
        for r in results {
            all.lat.extend(r.lat);
            all.errors += r.errors;
            all.bytes += r.bytes;
            all.span = all.span.max(r.span);
            if all.first_error.is_none() {
                all.first_error = r.first_error;
            }
        }
    }
    all.lat.sort();
    all.client_cpu = client_cpu;
    all.rest_cpu = (process_cpu() - cpu0).saturating_sub(client_cpu);
    all
}

async fn read_section(o: &Opts) {
    let conc = o.get("conc", 32).max(1) as usize;
    let secs = Duration::from_secs(o.get("secs", 5).max(1));
    let warmup = Duration::from_millis(o.get("warmup_ms", 500));
    let threads = o.get("client_threads", 2).max(1) as usize;
    let workers = o.get("workers", 2).max(1) as usize;
    let users = o.get("users", 10).max(1) as usize;
    let read_tasks = o.get("read_tasks", 100).max(1) as usize;

    let server = start_server(workers, users).await;
    for i in 0..read_tasks {
        server.create_task(i).await;
    }
    // Let the summaries reach the organization before measuring its snapshot.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let snap = server.call(reqwest::Method::GET, &format!("/v1/orgs/{ORG}"), Some(&server.tokens[0]), None).await;
        let n = snap["taskSummaries"].as_array().map_or(0, Vec::len);
        if n >= read_tasks || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let endpoints = [
        ("GET /healthz", "/healthz".to_owned()),
        ("GET /v1/auth/whoami (auth only)", "/v1/auth/whoami".to_owned()),
        ("GET task t1 (auth + membership + view + overlay)", format!("/v1/orgs/{ORG}/repos/{REPO}/tasks/t1")),
        ("GET organization snapshot (auth + membership + snapshot)", format!("/v1/orgs/{ORG}")),
    ];
    let rss0 = rss_mib();
    let mut rows = Vec::new();
    for (name, path) in endpoints {
        let url = format!("{}{path}", server.base);
        let before = txns(&server.api.domain);
        let r = load(url, server.tokens.clone(), conc, threads, warmup, secs).await;
        let after = txns(&server.api.domain);
        // Requests of warm-up + measurement, to share the transaction counts over.
        let all_requests = (r.lat.len() as f64 * (warmup + secs).as_secs_f64() / secs.as_secs_f64()).max(1.0);
        let n = r.lat.len();
        let span = r.span.as_secs_f64().max(1e-9);
        rows.push(vec![
            name.to_owned(),
            n.to_string(),
            format!("{:.0}", n as f64 / span),
            ms(percentile(&r.lat, 0.5)),
            ms(percentile(&r.lat, 0.9)),
            ms(percentile(&r.lat, 0.99)),
            ms(r.lat.last().copied().unwrap_or_default()),
            r.errors.to_string(),
            format!("{}", r.bytes / n.max(1) as u64),
            format!("{:.2} / {:.2}", r.client_cpu.as_secs_f64(), r.rest_cpu.as_secs_f64()),
            format!(
                "{:.2} / {:.2}",
                (after[0] - before[0]) as f64 / all_requests,
                (after[1] - before[1]) as f64 / all_requests
            ),
        ]);
        if let Some(e) = r.first_error {
            println!("{name}: first error: {e}");
        }
    }
    table(
        &format!(
            "(read) {conc} keep-alive clients on {threads} client threads, {} s each after {} ms warm-up; server workers={workers}, organization with {read_tasks} tasks, {users} users",
            secs.as_secs(),
            warmup.as_millis()
        ),
        &["endpoint", "requests", "requests/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors", "bytes/response", "CPU s load gen / server", "repo txns / all txns per request"],
        &rows,
    );
    println!(
        "(read) RSS {rss0:.0} MiB before the load, {:.0} MiB after; txns per request = KindStats.transactions deltas \
         over warm-up + measurement / requests (estimated from the measured rate)",
        rss_mib()
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------------------------

#[actix_rt::main]
async fn main() {
    let o = Opts::parse();
    let nofile = raise_nofile();
    println!(
        "foundry http bench: section={} cores={} nofile={nofile} tmp={}",
        o.section,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        tmp_base().display()
    );
    let t = Instant::now();
    if o.runs("ws") {
        ws_section(&o).await;
    }
    if o.runs("read") {
        read_section(&o).await;
    }
    println!("\ntotal bench time {:.1} s", t.elapsed().as_secs_f64());
}
