//! The service at scale, as a process (plain program, `harness = false`): `foundry serve` (this build's binary) on a
//! fresh data directory; `clients` concurrent HTTP clients create `tasks` tasks (each first prompt answered by the
//! built-in agent, in the task's workspace: a clone of a local bare repository on the task's branch), then the run
//! waits until every task's first turn is over and the outboxes have settled; the
//! server is killed with SIGKILL and started again, and again stopped with SIGTERM and started.
//!
//! ```text
//! cargo bench --bench scale -- [tasks=10000] [clients=16] [settle_s=4] [max_live=N]
//! ```
//!
//! Reported: creation rate and errors by status, activation failures (`/metrics`), the live set and open files of the
//! server (from `/proc`) after the load and after settling, and the time from each start to `/readyz` answering 200
//! (recovery runs before the port opens, so this is what a restart costs) with the number of actors it resumed.
//! `max_live` passes `--max-live` (reproduces the live cap at a small scale). The server's warnings and errors go to
//! `SCALE_LOG` (default `/tmp/foundry-scale.log`). Temporary data goes under `BENCH_TMP` (default `/work/bench-tmp`).

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::service::{bare_remote, free_port, metric, open_files, rss_mib};
use common::Opts;
use serde_json::{json, Value};

/// Starts the server; its log (warnings and errors) is appended to `log`.
fn spawn(port: u16, data: &std::path::Path, max_live: Option<u64>, log: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_foundry"));
    cmd.args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--log", "warn", "--builtin-agent-pace-ms", "0"])
        .args(["--rate-limit-per-token", "0", "--rate-limit-sign-in", "0", "--data-dir"])
        .arg(data);
    if let Some(n) = max_live {
        cmd.args(["--max-live", &n.to_string()]);
    }
    cmd.stdout(Stdio::null()).stderr(log).spawn().unwrap()
}

/// Time from `since` until `/readyz` answers 200.
async fn ready(client: &reqwest::Client, base: &str, since: Instant) -> Duration {
    loop {
        if let Ok(res) = client.get(format!("{base}/readyz")).send().await {
            if res.status() == 200 {
                return since.elapsed();
            }
        }
        assert!(since.elapsed() < Duration::from_secs(300), "the server did not become ready");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn post(client: &reqwest::Client, url: String, token: &str, body: Value) -> Result<(u16, Value), String> {
    let res = client.post(url).bearer_auth(token).json(&body).send().await.map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    Ok((status, res.json().await.unwrap_or(Value::Null)))
}

#[actix_rt::main]
async fn main() {
    let o = Opts::parse();
    let tasks = o.get("tasks", 10_000) as usize;
    let clients = o.get("clients", 16) as usize;
    let settle = Duration::from_secs(o.get("settle_s", 4));
    let max_live = o.raw("max_live").and_then(|v| v.parse().ok());
    let dir = common::tempdir("scale");
    let data = dir.path().join("data");
    let log = std::path::PathBuf::from(std::env::var("SCALE_LOG").unwrap_or_else(|_| "/tmp/foundry-scale.log".into()));
    let _ = std::fs::remove_file(&log);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = foundry::integrations::http_client_builder().timeout(Duration::from_secs(60)).build().unwrap();
    println!("foundry scale bench: tasks={tasks} clients={clients} tmp={}", dir.path().display());

    let started = Instant::now();
    let mut child = spawn(port, &data, max_live, &log);
    let first_ready = ready(&client, &base, started).await;
    let (_, signed) =
        post(&client, format!("{base}/v1/auth/dev/sign-in"), "", json!({ "login": "alice" })).await.unwrap();
    let token = signed["token"].as_str().unwrap().to_owned();
    post(&client, format!("{base}/v1/orgs"), &token, json!({ "id": "acme", "displayName": "Acme" })).await.unwrap();
    // Four repositories with real (local, bare) remotes: every task's workspace is a clone on its own branch.
    for r in ["r1", "r2", "r3", "r4"] {
        let remote = bare_remote(dir.path(), r);
        let url = format!("file://{}", remote.display());
        let repo = json!({ "repoId": r, "fullName": format!("acme/{r}"), "remoteUrl": url });
        post(&client, format!("{base}/v1/orgs/acme/repos"), &token, repo).await.unwrap();
    }

    // Creation: `clients` loops taking task numbers from a shared counter.
    let next = Arc::new(AtomicUsize::new(0));
    let statuses: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let t0 = Instant::now();
    let loops: Vec<_> = (0..clients)
        .map(|_| {
            let (client, base, token, next, statuses) =
                (client.clone(), base.clone(), token.clone(), next.clone(), statuses.clone());
            actix_rt::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= tasks {
                        return;
                    }
                    let url = format!("{base}/v1/orgs/acme/repos/r{}/tasks", n % 4 + 1);
                    let outcome = match post(&client, url, &token, json!({ "prompt": format!("Task {n}") })).await {
                        Ok((status, _)) => status.to_string(),
                        Err(e) if e.contains("timed out") => "timeout".to_owned(),
                        Err(_) => "transport error".to_owned(),
                    };
                    *statuses.lock().unwrap().entry(outcome).or_default() += 1;
                }
            })
        })
        .collect();
    // Progress: every 10 s, tasks answered, the rate over the last window, the live set and open files.
    let progress = {
        let (client, base, statuses, pid) = (client.clone(), base.clone(), statuses.clone(), child.id());
        actix_rt::spawn(async move {
            let mut last = 0usize;
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let done: usize = statuses.lock().unwrap().values().sum();
                let live = metric(&client, &base, "foundry_live_actors").await;
                let running = metric(&client, &base, "foundry_turns_running").await;
                let waiting = metric(&client, &base, "foundry_turns_waiting").await;
                let (files, secs) = (open_files(pid), t0.elapsed().as_secs());
                let rate = (done - last) as f64 / 10.0;
                eprintln!(
                    "  {secs:>5} s: {done} answered, {rate:.0}/s, {live} live, {files} files, turns {running} running \
                     + {waiting} waiting"
                );
                last = done;
            }
        })
    };
    for l in loops {
        l.await.unwrap();
    }
    progress.abort();
    let create_time = t0.elapsed();
    let pid = child.id();
    let (live_loaded, files_loaded, rss_loaded) =
        (metric(&client, &base, "foundry_live_actors").await, open_files(pid), rss_mib(pid));

    // Settled: every first turn over (the organization's summaries say so), then the outboxes' markers cleared.
    let t1 = Instant::now();
    loop {
        let res = client.get(format!("{base}/v1/orgs/acme")).bearer_auth(&token).send().await.unwrap();
        let org: Value = res.json().await.unwrap();
        let summaries = org["taskSummaries"].as_array().cloned().unwrap_or_default();
        let running = summaries.iter().filter(|t| t.to_string().contains("\"running\"")).count();
        if summaries.len() >= tasks.min(statuses.lock().unwrap().get("201").copied().unwrap_or(0)) && running == 0 {
            break;
        }
        assert!(t1.elapsed() < Duration::from_secs(3600), "{} summaries, {running} running", summaries.len());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let turns_done = t1.elapsed();
    let errored = {
        let res = client.get(format!("{base}/v1/orgs/acme")).bearer_auth(&token).send().await.unwrap();
        let org: Value = res.json().await.unwrap();
        let summaries = org["taskSummaries"].as_array().cloned().unwrap_or_default();
        summaries.iter().filter(|t| t["sessions"].to_string().contains("\"error\"")).count()
    };
    tokio::time::sleep(settle).await;
    let failures = metric(&client, &base, "foundry_activation_failures_total").await;
    let (live_settled, files_settled) = (metric(&client, &base, "foundry_live_actors").await, open_files(pid));

    // kill -9, then start: recovery costs what is pending.
    let index_wal = std::fs::metadata(data.join("_foundry_index.sqlite3-wal")).map_or(0, |m| m.len());
    child.kill().unwrap();
    child.wait().unwrap();
    let t = Instant::now();
    let mut child = spawn(port, &data, max_live, &log);
    let after_kill = ready(&client, &base, t).await;
    let resumed_kill = metric(&client, &base, "foundry_activations_total").await;
    // SIGTERM (graceful), then start.
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    let t = Instant::now();
    let mut child = spawn(port, &data, max_live, &log);
    let after_term = ready(&client, &base, t).await;
    let resumed_term = metric(&client, &base, "foundry_activations_total").await;
    let res = client.get(format!("{base}/v1/orgs/acme")).bearer_auth(&token).send().await.unwrap();
    let org: Value = res.json().await.unwrap();
    let listed = org["taskSummaries"].as_array().map_or(0, Vec::len);
    child.kill().unwrap();
    child.wait().unwrap();

    let statuses = statuses.lock().unwrap().clone();
    let created = statuses.get("201").copied().unwrap_or(0);
    println!();
    println!("| figure | value |");
    println!("|---|---|");
    println!("| tasks asked / created (201) / listed after the restarts | {tasks} / {created} / {listed} |");
    println!("| answers by status | {statuses:?} |");
    println!(
        "| creation time, rate | {:.1} s, {:.0} tasks/s |",
        create_time.as_secs_f64(),
        created as f64 / create_time.as_secs_f64()
    );
    println!("| first turns all over after the last creation | {:.1} s |", turns_done.as_secs_f64());
    println!("| tasks whose first turn failed | {errored} |");
    println!("| activation failures | {failures} |");
    println!(
        "| live actors / open files / RSS right after the load | {live_loaded} / {files_loaded} / {rss_loaded} MiB |"
    );
    println!("| live actors / open files after settling ({}s) | {live_settled} / {files_settled} |", settle.as_secs());
    println!("| first start (empty data) to ready | {} ms |", first_ready.as_millis());
    println!("| recovery index WAL at the kill | {} KiB |", index_wal / 1024);
    println!(
        "| start after kill -9 to ready (actors activated at start: {resumed_kill}) | {} ms |",
        after_kill.as_millis()
    );
    println!(
        "| start after SIGTERM to ready (actors activated at start: {resumed_term}) | {} ms |",
        after_term.as_millis()
    );
}
