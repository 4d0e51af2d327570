//! The whole service under a mixed load (plain program, `harness = false`): `foundry serve` (this build's binary) on
//! a fresh data directory, 4 repositories with local bare remotes (every task's workspace is a real clone), `users`
//! members of one organization. `clients` HTTP clients run for `secs` seconds, each loop picking its next request by
//! weight: the organization snapshot (`GET /v1/orgs/acme`, 25), a task (`GET T`, 20), a session (`GET S`, 15), a
//! message to a session (`POST S/messages`, its turn on the built-in agent, 25), a new task (`POST …/tasks`, 10), the
//! caller (`GET /v1/me`, 5). `ws` of the clients also hold a WebSocket subscribed (with patches) to the organization
//! and to one session, counting frames and bytes.
//!
//! ```text
//! cargo bench --bench load -- [clients=64] [secs=60] [ws=16] [users=8] [seed_tasks=32] [idle_s=20] [pace_ms=5]
//! ```
//!
//! Reported: requests per second, p50/p99 per route, answers by status, WebSocket frames and bytes, and the server's
//! live actors / open files / RSS before the load, right after it, and after `idle_s` + 10 s of idleness (the server
//! runs with `--idle-timeout-secs idle_s`, so passivation has returned what it could). Loopback only; temporary data
//! under `BENCH_TMP` (default `/work/bench-tmp`).

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::service::{bare_remote, free_port, metric, open_files, rss_mib};
use common::Opts;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// What the server holds: live actors, open files, RSS (MiB).
async fn footprint(client: &reqwest::Client, base: &str, pid: u32) -> (u64, usize, u64) {
    (metric(client, base, "foundry_live_actors").await, open_files(pid), rss_mib(pid))
}

async fn send(client: &reqwest::Client, method: &str, url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = client.request(method.parse().unwrap(), url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    match req.send().await {
        Ok(res) => {
            let status = res.status().as_u16();
            (status, res.json().await.unwrap_or(Value::Null))
        }
        Err(e) if e.is_timeout() => (0, Value::Null),
        Err(_) => (1, Value::Null),
    }
}

/// A task the clients know: its path and its first session's path.
#[derive(Clone)]
struct Known {
    task: String,
    session: String,
    key: Value,
}

fn known_from(base: &str, created: &Value) -> Option<Known> {
    let (repo, task, session) =
        (created["repoId"].as_str()?, created["taskId"].as_str()?, created["sessionId"].as_str()?);
    let t = format!("{base}/v1/orgs/acme/repos/{repo}/tasks/{task}");
    Some(Known {
        session: format!("{t}/sessions/{session}"),
        task: t,
        key: json!({ "org": "acme", "repo": repo, "task": task, "session": session }),
    })
}

/// Per route: latencies of 2xx answers, and answers by status (0: timeout, 1: transport error).
#[derive(Default)]
struct RouteStats {
    ok: Vec<Duration>,
    statuses: BTreeMap<u16, u64>,
}

const ROUTES: [(&str, u32); 6] =
    [("GET org", 25), ("GET task", 20), ("GET session", 15), ("POST message", 25), ("POST task", 10), ("GET me", 5)];

/// A tiny deterministic generator (xorshift), one per client: the mix does not depend on a crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[actix_rt::main]
async fn main() {
    let o = Opts::parse();
    let clients = o.get("clients", 64) as usize;
    let secs = o.get("secs", 60);
    let ws_clients = (o.get("ws", 16) as usize).min(clients);
    let users = o.get("users", 8).max(1) as usize;
    let seed_tasks = o.get("seed_tasks", 32) as usize;
    let idle = o.get("idle_s", 20).max(1);
    let pace = o.get("pace_ms", 5);
    let dir = common::tempdir("load");
    let data = dir.path().join("data");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = foundry::integrations::http_client_builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap();
    println!(
        "foundry load bench: clients={clients} secs={secs} ws={ws_clients} users={users} seed_tasks={seed_tasks} \
         idle_s={idle} pace_ms={pace}"
    );

    let mut child: Child = Command::new(env!("CARGO_BIN_EXE_foundry"))
        .args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--log", "warn"])
        .args(["--builtin-agent-pace-ms", &pace.to_string(), "--idle-timeout-secs", &idle.to_string()])
        .args(["--rate-limit-per-token", "0", "--rate-limit-sign-in", "0", "--data-dir"])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id();
    let started = Instant::now();
    while client.get(format!("{base}/readyz")).send().await.map(|r| r.status().as_u16()).ok() != Some(200) {
        assert!(started.elapsed() < Duration::from_secs(60), "the server did not become ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Setup: users signed in, the organization with every user a member, 4 repositories, a few tasks to read.
    let sign_in = |login: String| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let res = client.post(format!("{base}/v1/auth/dev/sign-in")).json(&json!({ "login": login })).send();
            let v: Value = res.await.unwrap().json().await.unwrap();
            v["token"].as_str().unwrap().to_owned()
        }
    };
    let mut tokens = Vec::new();
    for u in 0..users {
        tokens.push(sign_in(format!("user{u}")).await);
    }
    let owner = tokens[0].clone();
    let (st, _) =
        send(&client, "POST", &format!("{base}/v1/orgs"), &owner, Some(json!({"id": "acme", "displayName": "Acme"})))
            .await;
    assert_eq!(st, 201);
    for u in 1..users {
        let url = format!("{base}/v1/orgs/acme/members");
        let (st, v) =
            send(&client, "POST", &url, &owner, Some(json!({ "login": format!("user{u}"), "role": "member" }))).await;
        assert!(st < 300, "member user{u}: {st} {v}");
    }
    for r in ["r1", "r2", "r3", "r4"] {
        let url = format!("file://{}", bare_remote(dir.path(), r).display());
        let repo = json!({ "repoId": r, "fullName": format!("acme/{r}"), "remoteUrl": url });
        let (st, v) = send(&client, "POST", &format!("{base}/v1/orgs/acme/repos"), &owner, Some(repo)).await;
        assert_eq!(st, 201, "{v}");
    }
    let known: Arc<Mutex<Vec<Known>>> = Arc::default();
    for i in 0..seed_tasks {
        let url = format!("{base}/v1/orgs/acme/repos/r{}/tasks", i % 4 + 1);
        let (st, v) = send(&client, "POST", &url, &owner, Some(json!({ "prompt": format!("Seed task {i}") }))).await;
        assert_eq!(st, 201, "{v}");
        known.lock().unwrap().push(known_from(&base, &v).unwrap());
    }
    // Let the seed tasks' first turns settle, so the load starts from a steady service.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = footprint(&client, &base, pid).await;

    // The load.
    let stats: Arc<Mutex<BTreeMap<&'static str, RouteStats>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let (frames, frame_bytes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let t0 = Instant::now();
    let mut loops = Vec::new();
    for c in 0..clients {
        let token = tokens[c % users].clone();
        let (client, base, known, stats, stop) =
            (client.clone(), base.clone(), known.clone(), stats.clone(), stop.clone());
        if c < ws_clients {
            // This client also watches the organization and one session over a WebSocket.
            let (frames, frame_bytes, stop) = (frames.clone(), frame_bytes.clone(), stop.clone());
            let session_key = known.lock().unwrap()[c % seed_tasks.max(1)].key.clone();
            let (addr, token) = (format!("127.0.0.1:{port}"), token.clone());
            loops.push(actix_rt::spawn(async move {
                let mut req = format!("ws://{addr}/v1/ws").into_client_request().unwrap();
                req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
                let Ok((mut ws, _)) = tokio_tungstenite::connect_async(req).await else { return };
                for sub in [
                    json!({"type": "subscribe", "topic": "organization", "key": {"org": "acme"}, "patches": true}),
                    json!({"type": "subscribe", "topic": "session", "key": session_key, "patches": true}),
                ] {
                    let _ = ws.send(Message::Text(sub.to_string().into())).await;
                }
                while !stop.load(Ordering::Relaxed) {
                    match tokio::time::timeout(Duration::from_millis(200), ws.next()).await {
                        Ok(Some(Ok(Message::Text(t)))) => {
                            frames.fetch_add(1, Ordering::Relaxed);
                            frame_bytes.fetch_add(t.len() as u64, Ordering::Relaxed);
                        }
                        Ok(Some(Ok(_))) | Err(_) => {}
                        Ok(_) => return,
                    }
                }
                let _ = ws.close(None).await;
            }));
        }
        loops.push(actix_rt::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (c as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
            let total: u32 = ROUTES.iter().map(|r| r.1).sum();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let mut pick = (rng.next() % total as u64) as u32;
                let route = ROUTES
                    .iter()
                    .find(|r| {
                        pick < r.1 || {
                            pick -= r.1;
                            false
                        }
                    })
                    .map_or("GET me", |r| r.0);
                let target = {
                    let k = known.lock().unwrap();
                    k[(rng.next() % k.len() as u64) as usize].clone()
                };
                let started = Instant::now();
                let (status, reply) = match route {
                    "GET org" => send(&client, "GET", &format!("{base}/v1/orgs/acme"), &token, None).await,
                    "GET task" => send(&client, "GET", &target.task, &token, None).await,
                    "GET session" => send(&client, "GET", &target.session, &token, None).await,
                    "POST message" => {
                        let body = json!({ "text": format!("Follow-up {c}/{n}") });
                        send(&client, "POST", &format!("{}/messages", target.session), &token, Some(body)).await
                    }
                    "POST task" => {
                        let url = format!("{base}/v1/orgs/acme/repos/r{}/tasks", rng.next() % 4 + 1);
                        let body = json!({ "prompt": format!("Task from client {c}, #{n}") });
                        send(&client, "POST", &url, &token, Some(body)).await
                    }
                    _ => send(&client, "GET", &format!("{base}/v1/me"), &token, None).await,
                };
                let took = started.elapsed();
                if route == "POST task" && status == 201 {
                    if let Some(k) = known_from(&base, &reply) {
                        known.lock().unwrap().push(k);
                    }
                }
                let mut s = stats.lock().unwrap();
                let r = s.entry(route).or_default();
                *r.statuses.entry(status).or_default() += 1;
                if (200..300).contains(&status) {
                    r.ok.push(took);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        let _ = l.await;
    }
    let elapsed = t0.elapsed();
    let after = footprint(&client, &base, pid).await;
    let turns_waiting = metric(&client, &base, "foundry_turns_waiting").await;
    // Idle: wait for the turns the load queued, then the idle timeout and a margin, for passivation to free memory.
    let t_idle = Instant::now();
    while metric(&client, &base, "foundry_turns_running").await + metric(&client, &base, "foundry_turns_waiting").await
        > 0
        && t_idle.elapsed() < Duration::from_secs(600)
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let drained = t_idle.elapsed();
    tokio::time::sleep(Duration::from_secs(idle + 10)).await;
    let idle_fp = footprint(&client, &base, pid).await;
    let failures = metric(&client, &base, "foundry_activation_failures_total").await;
    child.kill().unwrap();
    child.wait().unwrap();

    let stats = stats.lock().unwrap();
    let total: usize = stats.values().map(|r| r.statuses.values().sum::<u64>() as usize).sum();
    println!();
    println!(
        "{total} requests in {:.1} s: {:.0} req/s; {} WebSocket frames ({} KiB) to {ws_clients} clients",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        frames.load(Ordering::Relaxed),
        frame_bytes.load(Ordering::Relaxed) / 1024
    );
    let rows: Vec<Vec<String>> = ROUTES
        .iter()
        .filter_map(|(name, _)| {
            let r = stats.get(name)?;
            let mut ok = r.ok.clone();
            ok.sort();
            let count: u64 = r.statuses.values().sum();
            Some(vec![
                name.to_string(),
                count.to_string(),
                format!("{:.0}", count as f64 / elapsed.as_secs_f64()),
                common::ms(common::percentile(&ok, 0.50)),
                common::ms(common::percentile(&ok, 0.99)),
                format!("{:?}", r.statuses),
            ])
        })
        .collect();
    common::table("per route", &["route", "requests", "req/s", "p50 ms", "p99 ms", "answers by status"], &rows);
    let fp = |(live, files, rss): (u64, usize, u64)| format!("{live} / {files} / {rss} MiB");
    common::table(
        "the server (live actors / open files / RSS)",
        &[
            "before the load",
            "right after it",
            &format!("idle {idle} s + 10 s later"),
            "turns waiting at the end",
            "turns drained after",
            "activation failures",
        ],
        &[vec![
            fp(before),
            fp(after),
            fp(idle_fp),
            turns_waiting.to_string(),
            format!("{:.1} s", drained.as_secs_f64()),
            failures.to_string(),
        ]],
    );
}
