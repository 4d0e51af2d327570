//! `foundry serve` as a process: the embedded default (loopback, dev sign-in), graceful shutdown on SIGTERM (open
//! WebSockets closed with 1001, exit 0), state and sessions surviving a restart, dev sign-in refused off loopback,
//! the demo mode's loop, the log formats (no colour codes off a terminal; JSON lines on request), and server admins
//! named by flag or environment (a malformed login refused at start).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn spawn(bind: &str, data: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_foundry"))
        .args(["serve", "--bind", bind, "--log", "warn", "--data-dir"])
        .arg(data)
        .env_remove("FOUNDRY_NO_DEV_SIGN_IN")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

async fn ready(client: &reqwest::Client, base: &str) {
    for _ in 0..400 {
        if let Ok(res) = client.get(format!("{base}/readyz")).send().await {
            if res.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not become ready");
}

fn sigterm(child: &Child) {
    // SAFETY: plain kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
}

fn wait_exit(mut child: Child) -> std::process::ExitStatus {
    for _ in 0..400 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("the server did not exit after SIGTERM");
}

async fn post(client: &reqwest::Client, url: String, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = client.post(url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

#[actix_rt::test]
async fn serve_runs_drains_on_sigterm_and_keeps_state() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = foundry::integrations::http_client_builder().build().unwrap();
    let child = spawn(&format!("127.0.0.1:{port}"), dir.path());
    ready(&client, &base).await;

    let (st, signed) = post(&client, format!("{base}/v1/auth/dev/sign-in"), None, json!({ "login": "alice" })).await;
    assert_eq!(st, 200, "dev sign-in is on by default on loopback: {signed}");
    let token = signed["token"].as_str().unwrap().to_owned();
    let (st, _) =
        post(&client, format!("{base}/v1/orgs"), Some(&token), json!({ "id": "acme", "displayName": "Acme" })).await;
    assert_eq!(st, 201);

    let mut req = format!("ws://127.0.0.1:{port}/v1/ws").into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(Message::Text(
        json!({ "type": "subscribe", "topic": "organization", "key": { "org": "acme" } }).to_string().into(),
    ))
    .await
    .unwrap();
    match ws.next().await.unwrap().unwrap() {
        Message::Text(t) => assert!(t.contains("organizationUpdated"), "{t}"),
        other => panic!("{other:?}"),
    }

    sigterm(&child);
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(20), ws.next()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => break frame.expect("a close reason"),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(close.code, CloseCode::Away);
    drop(ws);
    let status = tokio::task::spawn_blocking(move || wait_exit(child)).await.unwrap();
    assert!(status.success(), "graceful exit: {status:?}");
    // Every database was closed: SQLite removes a WAL file when its last connection closes cleanly.
    let left: Vec<_> = walk(dir.path()).into_iter().filter(|p| p.to_string_lossy().ends_with("-wal")).collect();
    assert!(left.is_empty(), "databases left open: {left:?}");

    // Restarted on the same data: the session token and the organization are still there.
    let child = spawn(&format!("127.0.0.1:{port}"), dir.path());
    ready(&client, &base).await;
    let res = client.get(format!("{base}/v1/orgs/acme")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 200);
    sigterm(&child);
    assert!(tokio::task::spawn_blocking(move || wait_exit(child)).await.unwrap().success());

    // Off loopback, dev sign-in does not exist.
    let port = free_port();
    let child = spawn(&format!("0.0.0.0:{port}"), dir.path());
    let base = format!("http://127.0.0.1:{port}");
    ready(&client, &base).await;
    let (st, body) = post(&client, format!("{base}/v1/auth/dev/sign-in"), None, json!({ "login": "mallory" })).await;
    assert_eq!(st, 404, "{body}");
    sigterm(&child);
    assert!(tokio::task::spawn_blocking(move || wait_exit(child)).await.unwrap().success());
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

async fn get(client: &reqwest::Client, url: String, token: &str) -> Value {
    let res = client.get(url).bearer_auth(token).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// README's offline path: `serve --demo`, sign in, create an organization, connect it to the demo GitHub, prompt a
/// task, publish and merge its pull request; after a restart the repositories (and their clone URLs) still work.
#[actix_rt::test]
async fn demo_mode_goes_from_a_prompt_to_a_merged_pull_request() {
    if std::process::Command::new("git").arg("--version").output().is_err() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "git is not installed (CI=true: not skipping)");
        println!("skipped: git is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (port, gh_port) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let client = foundry::integrations::http_client_builder().build().unwrap();
    let spawn_demo = || {
        Command::new(env!("CARGO_BIN_EXE_foundry"))
            .args(["serve", "--demo", "--bind", &format!("127.0.0.1:{port}"), "--log", "warn"])
            .args(["--demo-github-port", &gh_port.to_string(), "--data-dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap()
    };
    let child = spawn_demo();
    ready(&client, &base).await;
    let (_, body) = post(&client, format!("{base}/v1/auth/dev/sign-in"), None, json!({ "login": "alice" })).await;
    let token = body["token"].as_str().unwrap().to_owned();
    let (status, _) =
        post(&client, format!("{base}/v1/orgs"), Some(&token), json!({ "id": "demo", "displayName": "Demo" })).await;
    assert_eq!(status, 201);
    let connect = json!({ "login": "demo", "kind": "organization" });
    let (status, body) = post(&client, format!("{base}/v1/orgs/demo/github/connect"), Some(&token), connect).await;
    assert_eq!(status, 202, "{body}");
    let mut synced = false;
    for _ in 0..200 {
        let repos = get(&client, format!("{base}/v1/orgs/demo/repos"), &token).await;
        if repos.as_array().is_some_and(|r| r.iter().any(|r| r["repoId"] == "hello-rust")) {
            synced = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(synced, "the demo repositories were not synced");
    let tasks = format!("{base}/v1/orgs/demo/repos/hello-rust/tasks");
    let (status, body) =
        post(&client, tasks.clone(), Some(&token), json!({ "prompt": "Add a greeting to README.md" })).await;
    assert_eq!(status, 201, "{body}");
    let task = format!("{tasks}/{}", body["taskId"].as_str().unwrap());
    let mut view = Value::Null;
    for _ in 0..400 {
        view = get(&client, task.clone(), &token).await;
        if view["status"] == "idle" && view["workspace"]["git"]["ahead"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(view["workspace"]["git"]["files"][0]["path"], "README.md", "{view}");
    let (status, body) = post(&client, format!("{task}/pull-request"), Some(&token), json!({})).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = post(&client, format!("{task}/merge"), Some(&token), json!({})).await;
    assert_eq!((status, body["pullRequest"]["state"].as_str()), (200, Some("merged")), "{body}");
    let readme = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(dir.path().join("demo-github/demo/hello-rust.git"))
        .args(["show", "main:README.md"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&readme.stdout).contains("foundry: Add a greeting"));

    // After a restart the same clone URLs serve the same repositories: a new task gets its workspace.
    sigterm(&child);
    assert!(tokio::task::spawn_blocking(move || wait_exit(child)).await.unwrap().success());
    let child = spawn_demo();
    ready(&client, &base).await;
    let (status, body) = post(&client, tasks, Some(&token), json!({ "prompt": "Fix the README.md wording" })).await;
    assert_eq!(status, 201, "{body}");
    let second = format!("{base}/v1/orgs/demo/repos/hello-rust/tasks/{}", body["taskId"].as_str().unwrap());
    let mut view = Value::Null;
    for _ in 0..400 {
        view = get(&client, second.clone(), &token).await;
        if view["workspace"]["status"] == "ready" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(view["workspace"]["status"], "ready", "{view}");
    // The merged greeting is in the new task's base.
    let cwd = view["workspace"]["cwd"].as_str().unwrap();
    let text = std::fs::read_to_string(std::path::Path::new(cwd).join("README.md")).unwrap();
    assert!(text.contains("foundry: Add a greeting"), "{text}");
    sigterm(&child);
    assert!(tokio::task::spawn_blocking(move || wait_exit(child)).await.unwrap().success());
}

#[actix_rt::test]
async fn logs_are_plain_text_off_a_terminal_or_json_on_request() {
    for format in ["text", "json"] {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_foundry"))
            .args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--log", "info", "--log-format", format])
            .arg("--data-dir")
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let client = foundry::integrations::http_client_builder().build().unwrap();
        ready(&client, &format!("http://127.0.0.1:{port}")).await;
        let stdout = child.stdout.take().unwrap();
        sigterm(&child);
        let status = tokio::task::spawn_blocking(move || wait_exit(child)).await.unwrap();
        assert!(status.success());
        let out = std::io::read_to_string(stdout).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines.iter().any(|l| l.contains("listening")), "{out}");
        // Stdout is a pipe here: no colour codes in either format.
        assert!(!out.contains('\u{1b}'), "ANSI escapes in {format} logs:\n{out}");
        if format == "json" {
            for line in &lines {
                let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                assert!(v["level"].is_string() && v["timestamp"].is_string(), "{line}");
            }
        }
    }
}

#[actix_rt::test]
async fn server_admins_come_from_the_flag_or_the_environment() {
    let client = foundry::integrations::http_client_builder().build().unwrap();
    for (flags, env) in [(vec!["--server-admin", "Root", "--server-admin", "ops"], None), (vec![], Some("ops,root"))] {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_foundry"));
        cmd.args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--log", "warn", "--trace-size", "8"])
            .args(&flags)
            .arg("--data-dir")
            .arg(dir.path())
            .env_remove("FOUNDRY_NO_DEV_SIGN_IN")
            .env_remove("FOUNDRY_SERVER_ADMINS")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(admins) = env {
            cmd.env("FOUNDRY_SERVER_ADMINS", admins);
        }
        let child = cmd.spawn().unwrap();
        ready(&client, &base).await;
        let sign_in = |login: &'static str| {
            let (client, base) = (client.clone(), base.clone());
            async move {
                let (status, body) =
                    post(&client, format!("{base}/v1/auth/dev/sign-in"), None, json!({ "login": login })).await;
                assert_eq!(status, 200, "{body}");
                body["token"].as_str().unwrap().to_owned()
            }
        };
        for (login, status) in [("root", 200), ("bob", 403)] {
            let token = sign_in(login).await;
            let res = client.get(format!("{base}/v1/admin/runtime")).bearer_auth(&token).send().await.unwrap();
            assert_eq!(res.status().as_u16(), status, "{login} with {flags:?} / {env:?}");
            if status == 200 {
                let view: Value = res.json().await.unwrap();
                assert_eq!(view["traceSize"], 8, "{view}");
            }
        }
        sigterm(&child);
        let status = tokio::task::spawn_blocking(move || wait_exit(child)).await.unwrap();
        assert!(status.success());
    }
    // A login that cannot be one is a configuration error, reported at start.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_foundry"))
        .args(["serve", "--bind", &format!("127.0.0.1:{}", free_port()), "--server-admin", "not a login"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--server-admin"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
