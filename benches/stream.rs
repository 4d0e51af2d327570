//! Streaming cost per agent output delta (plain program, `harness = false`): bytes on the wire and server CPU per
//! streamed delta, for a session whose transcript holds 10 or 1,000 items, with a client of the snapshot protocol
//! (`sessionUpdated` frames) and one of the patch protocol (`"patches": true`: `sessionPatched` frames).
//!
//! ```text
//! cargo bench --bench stream -- [name=value ...]
//! ```
//!
//! Per (transcript size, client kind): a fresh runtime (`RuntimeConfig::new(dir)`) and the web layer served
//! in-process on `127.0.0.1:0`, with a lockstep agent (below) as the session agent. A task's first prompt makes the
//! agent append `items - 2` transcript items (tool calls and their results, `item_bytes` of output each); one
//! WebSocket client of the given kind subscribes to the session; a second prompt (the `items`-th item) starts a turn
//! that streams `deltas` text deltas of `delta_bytes` bytes. The agent emits delta k only once the client has
//! received the frame of delta k-1, so every delta is its own commit and its own frame: no coalescing, the worst
//! case for bytes per delta. Measured over those frames (the WebSocket payload, without the 2-4 byte frame header):
//! - bytes per delta (deterministic: the same on any machine);
//! - CPU per delta: process CPU minus this thread's (the client and the driver run here; the server's HTTP workers
//!   and the runtime's arbiters on their own threads), so the server's cost of committing, publishing and sending
//!   one delta. Each delta also waits out the session's 25 ms coalescing window, so a run takes `deltas` x ~25 ms.
//!
//! Options (`name=value` or `BENCH_<NAME>`): `items` (10,1000), `deltas` (100), `delta_bytes` (6), `item_bytes`
//! (200), `kinds` (`full,patch`). Temporary data goes under `BENCH_TMP` (default `/work/bench-tmp`).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use foundry::actors::repository::CreateTask;
use foundry::actors::{Domain, RepoKey, SessionKey};
use foundry::http::{Api, AuthSettings};
use foundry::integrations::agent::{AgentBackend, AgentEvent, TurnEnd, TurnRequest};
use foundry::runtime::{Runtime, RuntimeConfig};
use futures_util::future::BoxFuture;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::{mpsc, Mutex};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use common::{table, tmp_base, Opts};

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// CPU time (user + system) of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the local struct.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time (user + system) of the whole process.
fn process_cpu() -> Duration {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes the local struct.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The agent of this bench. `fill <n> <bytes>`: n items at once (tool calls and their results with `bytes` of
/// output), then done. `stream <n> <bytes>`: n text deltas of `bytes` bytes, each after a grant from the bench (and
/// one more grant to end the turn).
struct Lockstep {
    grants: Arc<Mutex<mpsc::UnboundedReceiver<()>>>,
}

impl AgentBackend for Lockstep {
    fn run_turn(
        &self,
        request: TurnRequest,
        events: mpsc::Sender<AgentEvent>,
        _steer: mpsc::UnboundedReceiver<String>,
    ) -> BoxFuture<'static, TurnEnd> {
        let grants = self.grants.clone();
        Box::pin(async move {
            let words: Vec<&str> = request.prompt.split_whitespace().collect();
            let n: usize = words.get(1).and_then(|w| w.parse().ok()).unwrap_or(0);
            let bytes: usize = words.get(2).and_then(|w| w.parse().ok()).unwrap_or(1);
            match words.first().copied() {
                Some("fill") => {
                    for i in 0..n {
                        let id = format!("tool-{}", i / 2);
                        let event = if i % 2 == 0 {
                            AgentEvent::ToolCall {
                                id,
                                name: "read_file".into(),
                                input: json!({ "path": format!("src/module_{i}.rs") }),
                            }
                        } else {
                            AgentEvent::ToolResult { id, output: "x".repeat(bytes) }
                        };
                        if events.send(event).await.is_err() {
                            break;
                        }
                    }
                }
                Some("stream") => {
                    let mut grants = grants.lock().await;
                    for k in 0..n {
                        if grants.recv().await.is_none() {
                            break;
                        }
                        let text = format!("{:<width$}", k % 10, width = bytes);
                        if events.send(AgentEvent::TextDelta { text }).await.is_err() {
                            break;
                        }
                    }
                    grants.recv().await;
                }
                _ => {}
            }
            TurnEnd::Completed
        })
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Full,
    Patch,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Full => "full snapshots (sessionUpdated)",
            Kind::Patch => "patches (sessionPatched)",
        }
    }
}

struct Result {
    items: usize,
    kind: Kind,
    deltas: usize,
    delta_bytes: usize,
    frames: usize,
    bytes: usize,
    server_cpu: Duration,
    client_cpu: Duration,
    snapshot_bytes: usize,
}

/// The next text frame: its length and version.
async fn next_frame(ws: &mut Ws) -> (usize, u64) {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next()).await.expect("a frame within 30 s");
        let text = match msg.expect("connection open").expect("no protocol error") {
            Message::Text(t) => t,
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        };
        let at = text.find(r#""version":"#).expect("a topic frame") + r#""version":"#.len();
        let digits: String = text[at..].chars().take_while(|c| c.is_ascii_digit()).collect();
        return (text.len(), digits.parse().expect("a version"));
    }
}

async fn scenario(o: &Opts, items: usize, kind: Kind) -> Result {
    let deltas = o.get("deltas", 100) as usize;
    let delta_bytes = o.get("delta_bytes", 6).max(1) as usize;
    let item_bytes = o.get("item_bytes", 200).max(1) as usize;
    let dir = common::tempdir("foundry-bench-stream-");
    let rt = Runtime::start(RuntimeConfig::new(dir.path())).expect("runtime starts");
    let (grant, grants) = mpsc::unbounded_channel();
    let domain = Domain::with_agent(rt.clone(), Arc::new(Lockstep { grants: Arc::new(Mutex::new(grants)) }));
    let api = Arc::new(Api::new(domain, AuthSettings { dev_sign_in: true, ..Default::default() }));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let server = foundry::http::server_on(api.clone(), listener, 2).expect("server");
    let handle: ServerHandle = server.handle();
    actix_rt::spawn(server);

    // An organization with one repository, and a task whose first turn fills its transcript.
    let http = foundry::integrations::http_client_builder().build().expect("reqwest client");
    let base = format!("http://{addr}");
    let signed: serde_json::Value = http
        .post(format!("{base}/v1/auth/dev/sign-in"))
        .json(&json!({ "login": "bench" }))
        .send()
        .await
        .expect("sign in")
        .json()
        .await
        .expect("token");
    let token = signed["token"].as_str().expect("token").to_owned();
    let org = json!({ "id": "acme", "displayName": "Acme" });
    http.post(format!("{base}/v1/orgs")).bearer_auth(&token).json(&org).send().await.expect("org");
    let repo = json!({ "repoId": "r1", "fullName": "acme/r1", "remoteUrl": "https://example.invalid/acme/r1.git" });
    http.post(format!("{base}/v1/orgs/acme/repos")).bearer_auth(&token).json(&repo).send().await.expect("repo");
    let fill = format!("fill {} {item_bytes}", items.saturating_sub(2));
    let msg = CreateTask { prompt: fill, title: None, branch: None, model: None, user_id: None };
    let created = api.domain.create_task(&RepoKey::new("acme", "r1"), msg).await.expect("create task");
    let session: SessionKey = created.task.session(&created.session_id);
    let detail = || api.domain.sessions.read(&session, foundry::actors::session::GetSessionDetail);
    for _ in 0..3000 {
        let d = detail().await.expect("session");
        if d.status == foundry::actors::summary::SessionStatus::Idle {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The client.
    let mut req = format!("ws://{addr}/v1/ws").into_client_request().expect("request");
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.expect("connect");
    let key = json!({ "org": "acme", "repo": "r1", "task": created.task.task, "session": created.session_id });
    let sub = json!({ "type": "subscribe", "topic": "session", "key": key, "patches": kind == Kind::Patch });
    ws.send(Message::Text(sub.to_string().into())).await.expect("subscribe");
    next_frame(&mut ws).await;

    // The streaming turn: once its start is delivered, one delta per grant, one frame per delta.
    let prompt = format!("stream {deltas} {delta_bytes}");
    api.domain.send_message(&session, &prompt, None).await.expect("send");
    let start = api.domain.sessions.latest_snapshot(&session, "session").expect("subscribed").version;
    let mut version = 0;
    while version < start {
        version = next_frame(&mut ws).await.1;
    }
    let snapshot_bytes =
        api.domain.sessions.latest_snapshot(&session, "session").expect("subscribed").snapshot.get().len();
    let (cpu0, mine0) = (process_cpu(), thread_cpu());
    let (mut frames, mut bytes) = (0, 0);
    for k in 0..deltas {
        grant.send(()).expect("the turn waits for grants");
        let (len, v) = next_frame(&mut ws).await;
        assert_eq!(v, start + k as u64 + 1, "one frame per delta");
        frames += 1;
        bytes += len;
    }
    let (cpu1, mine1) = (process_cpu(), thread_cpu());
    let _ = grant.send(());
    let client_cpu = mine1 - mine0;
    let server_cpu = (cpu1 - cpu0).saturating_sub(client_cpu);
    drop(ws);
    api.close_connections();
    handle.stop(true).await;
    rt.shutdown().await;
    Result { items, kind, deltas, delta_bytes, frames, bytes, server_cpu, client_cpu, snapshot_bytes }
}

#[actix_rt::main]
async fn main() {
    let o = Opts::parse();
    println!(
        "foundry stream bench: cores={} tmp={}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        tmp_base().display()
    );
    let t = Instant::now();
    let kinds: Vec<Kind> = o
        .raw("kinds")
        .unwrap_or_else(|| "full,patch".into())
        .split(',')
        .filter_map(|k| match k.trim() {
            "full" => Some(Kind::Full),
            "patch" => Some(Kind::Patch),
            _ => None,
        })
        .collect();
    let mut results = Vec::new();
    for items in o.list("items", &[10, 1000]) {
        for &kind in &kinds {
            results.push(scenario(&o, items as usize, kind).await);
        }
    }
    table(
        "(stream) per streamed delta, one delta per commit and per frame (lockstep), one client",
        &[
            "transcript items",
            "client",
            "deltas",
            "delta bytes",
            "snapshot bytes",
            "frames",
            "bytes/delta",
            "target <= 2 x delta + 300 B",
            "server CPU us/delta",
            "client CPU us/delta",
        ],
        &results
            .iter()
            .map(|r| {
                let per = r.bytes as f64 / r.deltas.max(1) as f64;
                let target = (2 * r.delta_bytes + 300) as f64;
                let us = |d: Duration| format!("{:.0}", d.as_secs_f64() * 1e6 / r.deltas.max(1) as f64);
                vec![
                    r.items.to_string(),
                    r.kind.label().to_owned(),
                    r.deltas.to_string(),
                    r.delta_bytes.to_string(),
                    r.snapshot_bytes.to_string(),
                    r.frames.to_string(),
                    format!("{per:.0}"),
                    if per <= target { "met".into() } else { format!("missed ({target:.0})") },
                    us(r.server_cpu),
                    us(r.client_cpu),
                ]
            })
            .collect::<Vec<_>>(),
    );
    println!(
        "(stream) bytes = WebSocket text payloads of the frames carrying the deltas; snapshot bytes = the session \
         snapshot when the turn starts; CPU = process minus the client thread over the deltas"
    );
    println!("\ntotal bench time {:.1} s", t.elapsed().as_secs_f64());
}
