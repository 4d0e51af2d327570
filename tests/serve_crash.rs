//! The `foundry serve` binary killed with SIGKILL under concurrent HTTP mutations, several times at random moments:
//! after the last restart every acknowledged mutation is present exactly once — each acknowledged task (by its unique
//! title) once in its repository and once in the organization's task list (which the outbox delivers), each
//! acknowledged follow-up message once in its session's transcript — nothing unacknowledged is doubled, and every task
//! that exists gets its first prompt answered (also when its creation request was cut by the kill): by the agent, or,
//! for a turn the kill cut short, by the recorded failure that says so (the turn is not re-run behind the user's back:
//! a real agent may already have acted on it). Every task's workspace is a real clone of a local bare repository.
//!
//! The kill moments come from a seed printed at the start; `FOUNDRY_CRASH_SEED=<n>` replays a run.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const CLIENTS: usize = 6;
const KILLS: usize = 4;
/// What a session records for a turn that was running when the process died.
const CUT_BY_RESTART: &str = "turn failed: the session restarted mid-turn";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn spawn(port: u16, data: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_foundry"))
        .args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--log", "error", "--builtin-agent-pace-ms", "1"])
        .arg("--data-dir")
        .arg(data)
        .env_remove("FOUNDRY_NO_DEV_SIGN_IN")
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

async fn ready(client: &reqwest::Client, base: &str) {
    for _ in 0..600 {
        if let Ok(res) = client.get(format!("{base}/readyz")).send().await {
            if res.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not become ready");
}

/// xorshift64*: enough to spread kill moments; the seed is printed so a failure can be replayed.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// What the clients were told, and what they sent without an answer.
#[derive(Default)]
struct Ledger {
    /// Acknowledged (201) task creations: title -> (task id, session id, prompt).
    tasks: HashMap<String, (String, String, String)>,
    /// Titles whose creation request got no answer (cut by the kill): each may exist at most once.
    unknown_tasks: Vec<String>,
    /// Acknowledged (202) follow-ups: (task id, session id, text).
    messages: Vec<(String, String, String)>,
    /// Follow-ups cut by the kill: (task id, session id, text), each at most once.
    unknown_messages: Vec<(String, String, String)>,
}

async fn call(client: &reqwest::Client, url: String, token: &str, body: Value) -> Result<(u16, Value), ()> {
    let res = client.post(url).bearer_auth(token).json(&body).send().await.map_err(|_| ())?;
    let status = res.status().as_u16();
    // A reply cut after its headers is no acknowledgement either.
    let body = res.json().await.map_err(|_| ())?;
    Ok((status, body))
}

/// One client: creates tasks and sends each a follow-up until the server goes away.
async fn client_loop(client: reqwest::Client, base: String, token: String, id: String, ledger: Arc<Mutex<Ledger>>) {
    for n in 0.. {
        let title = format!("crash {id} n{n}");
        let prompt = format!("first prompt of {title}");
        let url = format!("{base}/v1/orgs/acme/repos/r1/tasks");
        match call(&client, url, &token, json!({ "prompt": prompt, "title": title })).await {
            Ok((201, body)) => {
                let task = body["taskId"].as_str().unwrap().to_owned();
                let session = body["sessionId"].as_str().unwrap().to_owned();
                ledger.lock().unwrap().tasks.insert(title.clone(), (task.clone(), session.clone(), prompt));
                let text = format!("follow-up of {title}");
                let url = format!("{base}/v1/orgs/acme/repos/r1/tasks/{task}/sessions/{session}/messages");
                match call(&client, url, &token, json!({ "text": text })).await {
                    Ok((202, _)) => ledger.lock().unwrap().messages.push((task, session, text)),
                    Ok((status, body)) => panic!("follow-up answered {status}: {body}"),
                    Err(()) => {
                        ledger.lock().unwrap().unknown_messages.push((task, session, text));
                        return;
                    }
                }
            }
            // Refusals while shutting down would be fine if they changed nothing; SIGKILL gives none, so any other
            // answer is a bug worth seeing.
            Ok((status, body)) => panic!("task creation answered {status}: {body}"),
            Err(()) => {
                ledger.lock().unwrap().unknown_tasks.push(title);
                return;
            }
        }
    }
}

fn git(args: &[&str], cwd: &std::path::Path) {
    let out = Command::new("git").args(args).current_dir(cwd).output().unwrap_or_else(|e| {
        panic!("git is needed (the task workspaces are real clones): {e}");
    });
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A bare repository with one commit on `main`, outside the server's data directory: every task's workspace is a
/// real clone of it, on the task's own branch.
fn bare_remote(dir: &std::path::Path) -> std::path::PathBuf {
    let remote = dir.join("remote/r1.git");
    let seed = dir.join("remote/seed");
    std::fs::create_dir_all(&seed).unwrap();
    git(&["init", "-q", "--bare", "-b", "main", remote.to_str().unwrap()], dir);
    git(&["init", "-q", "-b", "main"], &seed);
    std::fs::write(seed.join("README.md"), "# r1\n").unwrap();
    git(&["add", "README.md"], &seed);
    git(&["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "init"], &seed);
    git(&["push", "-q", remote.to_str().unwrap(), "main"], &seed);
    remote
}

fn sigkill(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Kills the server when the test ends, also by a failed assertion (it would otherwise outlive the test).
struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn get(client: &reqwest::Client, url: String, token: &str) -> Value {
    let res = client.get(&url).bearer_auth(token).send().await.unwrap();
    assert_eq!(res.status(), 200, "GET {url}");
    res.json().await.unwrap()
}

fn count_titles(list: &[Value], title: &str) -> usize {
    list.iter().filter(|t| t["title"] == title).count()
}

#[actix_rt::test]
async fn acknowledged_mutations_survive_sigkill_exactly_once() {
    let seed = std::env::var("FOUNDRY_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    eprintln!("serve_crash: FOUNDRY_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    // Kept for a look when the test fails (a passing run removes it below).
    let dir = dir.keep();
    eprintln!("serve_crash: data in {}", dir.display());
    let data = dir.join("data");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = foundry::integrations::http_client_builder().timeout(Duration::from_secs(60)).build().unwrap();

    let mut child = Server(spawn(port, &data));
    ready(&client, &base).await;
    let (_, signed) =
        call(&client, format!("{base}/v1/auth/dev/sign-in"), "", json!({ "login": "alice" })).await.unwrap();
    let token = signed["token"].as_str().unwrap().to_owned();
    let (st, _) =
        call(&client, format!("{base}/v1/orgs"), &token, json!({ "id": "acme", "displayName": "Acme" })).await.unwrap();
    assert_eq!(st, 201);
    let remote = bare_remote(&dir);
    let repo = json!({ "repoId": "r1", "fullName": "acme/r1", "remoteUrl": format!("file://{}", remote.display()) });
    let (st, _) = call(&client, format!("{base}/v1/orgs/acme/repos"), &token, repo).await.unwrap();
    assert_eq!(st, 201);

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    for round in 0..KILLS {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let id = format!("r{round}c{c}");
                actix_rt::spawn(client_loop(client.clone(), base.clone(), token.clone(), id, ledger.clone()))
            })
            .collect();
        // Killed between 0.3 and 2.3 s into the load: mid-creation, mid-outbox and mid-turn all happen.
        let after = Duration::from_millis(300 + rng.below(2000));
        tokio::time::sleep(after).await;
        sigkill(&mut child.0);
        for c in clients {
            c.await.unwrap();
        }
        let acknowledged = ledger.lock().unwrap().tasks.len();
        eprintln!("round {round}: killed after {after:?}; {acknowledged} tasks acknowledged so far");
        let started = Instant::now();
        child = Server(spawn(port, &data));
        ready(&client, &base).await;
        eprintln!("round {round}: ready again in {:?}", started.elapsed());
    }

    let ledger = Arc::try_unwrap(ledger).ok().unwrap().into_inner().unwrap();
    assert!(
        ledger.tasks.len() >= CLIENTS,
        "the load acknowledged too little to prove anything: {}",
        ledger.tasks.len()
    );

    // The repository: every acknowledged task exactly once under its id; nothing cut by a kill twice.
    let listed = get(&client, format!("{base}/v1/orgs/acme/repos/r1/tasks"), &token).await;
    let listed = listed.as_array().cloned().or_else(|| listed["tasks"].as_array().cloned()).unwrap();
    for (title, (task, _, _)) in &ledger.tasks {
        let found: Vec<_> = listed.iter().filter(|t| t["title"] == title.as_str()).collect();
        assert_eq!(found.len(), 1, "acknowledged task {title:?} listed {} times", found.len());
        assert_eq!(found[0]["taskId"], task.as_str(), "{title:?} under another id");
    }
    for title in &ledger.unknown_tasks {
        assert!(count_titles(&listed, title) <= 1, "unacknowledged task {title:?} doubled");
    }
    assert_eq!(
        listed.len(),
        ledger.tasks.len() + ledger.unknown_tasks.iter().filter(|t| count_titles(&listed, t) == 1).count(),
        "tasks nobody asked for"
    );

    // The organization's list (filled by the repository's outbox) converges to the same tasks, each once.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let org = get(&client, format!("{base}/v1/orgs/acme"), &token).await;
        let summaries = org["taskSummaries"].as_array().cloned().unwrap_or_default();
        let complete = listed
            .iter()
            .all(|t| summaries.iter().filter(|s| s["taskId"] == t["taskId"] && s["repoId"] == "r1").count() == 1);
        if complete && summaries.len() == listed.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the organization lists {} tasks, the repository {} (or some twice)",
            summaries.len(),
            listed.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every task that exists has its first prompt answered, once; every acknowledged follow-up is in its transcript
    // once; follow-ups cut by a kill at most once.
    let by_id: HashMap<String, String> = listed
        .iter()
        .map(|t| (t["taskId"].as_str().unwrap().to_owned(), t["title"].as_str().unwrap().to_owned()))
        .collect();
    let mut follow_ups: HashMap<&str, (&str, bool)> = HashMap::new();
    for (task, _, text) in &ledger.messages {
        follow_ups.insert(task, (text, true));
    }
    for (task, _, text) in &ledger.unknown_messages {
        follow_ups.insert(task, (text, false));
    }
    for (task, title) in &by_id {
        let prompt = format!("first prompt of {title}");
        let url = format!("{base}/v1/orgs/acme/repos/r1/tasks/{task}/sessions/s1");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = get(&client, url.clone(), &token).await;
            let items = s["transcript"].as_array().cloned().unwrap_or_default();
            let users = |text: &str| items.iter().filter(|i| i["role"] == "user" && i["text"] == text).count();
            // A prompt's outcome is the agent's reply, or — for a turn that was running when the server was
            // killed — the recorded failure saying so (never silence: the prompt is not dropped).
            // The built-in agent's reply opens with "I'll look into: <the prompt>", which names the prompt it ran.
            let ran = |text: &str| {
                items.iter().any(|i| {
                    i["role"] == "agent" && i["text"].as_str().is_some_and(|t| t.contains(&format!(": {text}.")))
                })
            };
            let cut = items.iter().filter(|i| i["role"] == "system" && i["text"] == CUT_BY_RESTART).count();
            if let Some(failure) = items.iter().find(|i| i["role"] == "system" && i["text"] != CUT_BY_RESTART) {
                panic!("{title}: a turn failed for another reason than the kill: {failure}");
            }
            let prompts: Vec<&str> =
                items.iter().filter(|i| i["role"] == "user").filter_map(|i| i["text"].as_str()).collect();
            let unanswered = prompts.iter().filter(|p| !ran(p)).count();
            assert!(users(&prompt) <= 1, "{title}: first prompt twice");
            let follow_up = follow_ups.get(task.as_str());
            if let Some((text, _)) = follow_up {
                assert!(users(text) <= 1, "{title}: follow-up twice");
            }
            let want_follow_up = matches!(follow_up, Some((_, true)));
            let settled = s["status"] != "running" && s["queued"] == 0;
            let first_answered = users(&prompt) == 1 && (ran(&prompt) || cut >= 1);
            let all_answered = unanswered <= cut;
            let follow_up_there = !want_follow_up || follow_up.is_some_and(|(text, _)| users(text) == 1);
            if settled && first_answered && all_answered && follow_up_there {
                if cut == 0 {
                    assert_eq!(s["status"], "idle", "{title}: {s:#}");
                }
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{title}: first prompt answered {first_answered}, acknowledged follow-up present \
                 {follow_up_there}, status {} queued {}: {s:#}",
                s["status"],
                s["queued"]
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    eprintln!(
        "serve_crash: {} tasks acknowledged, {} cut by a kill ({} exist), {} follow-ups acknowledged, {} cut",
        ledger.tasks.len(),
        ledger.unknown_tasks.len(),
        ledger.unknown_tasks.iter().filter(|t| count_titles(&listed, t) == 1).count(),
        ledger.messages.len(),
        ledger.unknown_messages.len()
    );
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
}
