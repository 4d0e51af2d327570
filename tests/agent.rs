//! Agent sessions: per-session loops running concurrently, prompts serialised per session, steer and interrupt scoped
//! to exactly one session, reads never waiting behind a turn, no prompt dropped, no session stuck after a restart.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use foundry::actors::organization::{AddRepository, CreateOrganization, OrgKind};
use foundry::actors::repository::CreateTask;
use foundry::actors::session::{GetSessionDetail, SessionDetail, Submitted};
use foundry::actors::summary::SessionStatus;
use foundry::actors::task::CreateSession;
use foundry::actors::{Domain, DomainError, RepoKey, SessionKey, TaskKey};
use foundry::integrations::agent::{BuiltinAgent, TurnGate};
use foundry::runtime::CallError;
use foundry::runtime::EntityKey;
use support::{runtime, runtime_at};

const ORG: &str = "acme";

async fn setup(domain: &Domain) {
    let org = CreateOrganization {
        login: "acme".into(),
        display_name: "Acme".into(),
        kind: OrgKind::Organization,
        owner: None,
    };
    domain.orgs.mutate(&ORG.to_owned(), org).await.unwrap();
    for repo in ["web", "api"] {
        let add = AddRepository {
            repo_id: repo.into(),
            full_name: format!("acme/{repo}"),
            remote_url: format!("https://github.com/acme/{repo}.git"),
            default_branch: "main".into(),
            user_id: None,
        };
        domain.add_repository(ORG, add).await.unwrap();
    }
}

fn prompt(text: &str) -> CreateTask {
    CreateTask { prompt: text.into(), title: None, branch: None, model: None, user_id: None }
}

async fn detail(domain: &Domain, s: &SessionKey) -> SessionDetail {
    domain.sessions.read(s, GetSessionDetail).await.unwrap()
}

/// Waits (bounded) until the session satisfies `done`.
async fn until(domain: &Domain, s: &SessionKey, what: &str, done: impl Fn(&SessionDetail) -> bool) -> SessionDetail {
    for _ in 0..1000 {
        let d = detail(domain, s).await;
        if done(&d) {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for {what}: {:?}", detail(domain, s).await);
}

fn agent_text(d: &SessionDetail) -> String {
    d.transcript.iter().filter(|i| i.role == "agent" && i.kind == "message").map(|i| i.text.as_str()).collect()
}

/// Four sessions: two of one task, one of another task in the same repository, one in another repository.
async fn four_sessions(domain: &Domain) -> Vec<SessionKey> {
    let t1 = domain.create_task(&RepoKey::new(ORG, "web"), prompt("First task prompt")).await.unwrap().task;
    let t2 = domain.create_task(&RepoKey::new(ORG, "web"), prompt("Second task prompt")).await.unwrap().task;
    let t3 = domain.create_task(&RepoKey::new(ORG, "api"), prompt("Third task prompt")).await.unwrap().task;
    let s2 = domain.create_session(&t1, CreateSession { name: None, model: None, user_id: None }).await.unwrap();
    vec![t1.session("s1"), t1.session(&s2), t2.session("s1"), t3.session("s1")]
}

/// Waits until the turns of all `sessions` have started (each announced by the gate) — they overlap by construction.
async fn all_started(gate: &mut TurnGate, sessions: &[SessionKey]) {
    let mut seen = HashSet::new();
    while !sessions.iter().all(|s| seen.contains(&s.encode())) {
        let s = tokio::time::timeout(Duration::from_secs(10), gate.started()).await.expect("turn start");
        seen.insert(s);
    }
}

#[actix_rt::test]
async fn sessions_run_concurrently_and_interrupt_touches_only_its_target() {
    let (rt, _dir) = runtime(2);
    let (agent, mut gate) = BuiltinAgent::with_gate(Duration::from_millis(2));
    let domain = Domain::with_agent(rt, Arc::new(agent));
    setup(&domain).await;
    let t1 = domain.create_task(&RepoKey::new(ORG, "web"), prompt("First task prompt")).await.unwrap().task;
    let t2 = domain.create_task(&RepoKey::new(ORG, "web"), prompt("Second task prompt")).await.unwrap().task;
    let t3 = domain.create_task(&RepoKey::new(ORG, "api"), prompt("Third task prompt")).await.unwrap().task;
    let s2 = domain.create_session(&t1, CreateSession { name: None, model: None, user_id: None }).await.unwrap();
    let second = t1.session(&s2);
    assert_eq!(
        domain.send_message(&second, "Review the first session's work", None).await.unwrap(),
        Submitted::Started
    );
    let sessions = vec![t1.session("s1"), second.clone(), t2.session("s1"), t3.session("s1")];
    // All four turns are in progress at the same time: none has been released yet.
    all_started(&mut gate, &sessions).await;
    for s in &sessions {
        assert_eq!(detail(&domain, s).await.status, SessionStatus::Running, "{s:?}");
    }
    // Interrupt one of the two sessions of task t1.
    let victim = &sessions[0];
    domain.interrupt(victim, false, None).await.unwrap();
    gate.release_all();
    for s in &sessions[1..] {
        let d = until(&domain, s, "turn completed", |d| d.status == SessionStatus::Idle).await;
        assert!(agent_text(&d).contains("Done."), "{s:?}: {}", agent_text(&d));
        assert!(d.transcript.iter().all(|i| i.text != "interrupted"), "{s:?} was touched");
    }
    let v = detail(&domain, victim).await;
    assert_eq!(v.status, SessionStatus::Idle);
    assert!(v.transcript.iter().any(|i| i.kind == "status" && i.text == "interrupted"));
    assert!(!agent_text(&v).contains("Done."), "the interrupted turn did not finish");
    // Interrupt with no turn running is refused.
    let err = domain.interrupt(victim, false, None).await.unwrap_err();
    assert!(matches!(err, CallError::Handler(DomainError::Unprocessable(_))), "{err:?}");
}

#[actix_rt::test]
async fn steer_reaches_only_its_target_and_never_waits_behind_the_turn() {
    let (rt, _dir) = runtime(2);
    let (agent, mut gate) = BuiltinAgent::with_gate(Duration::from_millis(2));
    let domain = Domain::with_agent(rt, Arc::new(agent));
    setup(&domain).await;
    let sessions = four_sessions(&domain).await;
    let (a, b) = (&sessions[2], &sessions[3]);
    all_started(&mut gate, &[a.clone(), b.clone()]).await;
    // The turns are held by the gate, yet steer and reads return: the mailbox is not blocked by the running turn.
    domain.steer(a, "use the new API", None).await.unwrap();
    assert_eq!(detail(&domain, a).await.status, SessionStatus::Running);
    gate.release_all();
    let da = until(&domain, a, "steered turn done", |d| d.status == SessionStatus::Idle).await;
    let db = until(&domain, b, "other turn done", |d| d.status == SessionStatus::Idle).await;
    assert!(agent_text(&da).contains("use the new API"), "{}", agent_text(&da));
    assert!(!agent_text(&db).contains("use the new API"), "steer leaked into another session");
    assert!(da.transcript.iter().any(|i| i.kind == "steer" && i.text == "use the new API"));
    // Steer with no turn running is refused.
    assert!(domain.steer(b, "late", None).await.is_err());
}

#[actix_rt::test]
async fn prompts_are_serialised_per_session_and_follow_ups_run_or_are_dropped() {
    let (rt, _dir) = runtime(2);
    let (agent, mut gate) = BuiltinAgent::with_gate(Duration::from_millis(1));
    let domain = Domain::with_agent(rt, Arc::new(agent));
    setup(&domain).await;
    let task: TaskKey = domain.create_task(&RepoKey::new(ORG, "web"), prompt("Initial work")).await.unwrap().task;
    let s = task.session("s1");
    assert_eq!(gate.started().await, s.encode());
    // Mid-turn prompts queue up behind the running turn.
    assert_eq!(domain.send_message(&s, "follow-up one", None).await.unwrap(), Submitted::Queued);
    assert_eq!(domain.send_message(&s, "follow-up two", None).await.unwrap(), Submitted::Queued);
    assert_eq!(detail(&domain, &s).await.queued, 2);
    // Interrupt keeping the follow-ups: the next one starts.
    assert_eq!(domain.interrupt(&s, false, None).await.unwrap(), 0);
    assert_eq!(gate.started().await, s.encode());
    assert_eq!(detail(&domain, &s).await.queued, 1);
    // Interrupt dropping the rest.
    assert_eq!(domain.interrupt(&s, true, None).await.unwrap(), 1);
    let d = until(&domain, &s, "idle after dropping", |d| d.status == SessionStatus::Idle).await;
    assert_eq!(d.queued, 0);
    // One more prompt runs to completion, and its reply follows it in the transcript.
    gate.release_all();
    assert_eq!(domain.send_message(&s, "please edit with a tool", None).await.unwrap(), Submitted::Started);
    let d =
        until(&domain, &s, "final turn", |d| d.status == SessionStatus::Idle && agent_text(d).contains("Done.")).await;
    let kinds: Vec<&str> = d.transcript.iter().map(|i| i.kind.as_str()).collect();
    // No workspace here: the tool ran (and said so) and no file change is claimed (tests/workspace.rs has real ones).
    assert!(kinds.contains(&"tool_call") && kinds.contains(&"tool_result"), "{kinds:?}");
    assert!(!kinds.contains(&"file_change"), "{kinds:?}");
    assert!(d.partial_text.is_empty(), "deltas were folded into complete items");
}

#[actix_rt::test]
async fn the_first_prompt_of_a_new_task_is_answered() {
    let (rt, _dir) = runtime(2);
    let domain = Domain::with_agent(rt, Arc::new(BuiltinAgent::new(Duration::from_millis(1))));
    setup(&domain).await;
    let created = domain.create_task(&RepoKey::new(ORG, "web"), prompt("Refactor the login flow")).await.unwrap();
    let s = created.task.session(&created.session_id);
    let d =
        until(&domain, &s, "first reply", |d| d.status == SessionStatus::Idle && agent_text(d).contains("Done.")).await;
    assert_eq!(d.transcript[0].text, "Refactor the login flow");
    assert!(agent_text(&d).contains("Refactor the login flow"), "{}", agent_text(&d));
    // A fast stream is coalesced: far fewer topic versions than streamed words.
    let mut sub = domain.sessions.subscribe(&s, "session").await.unwrap();
    let before = sub.next().await.unwrap().version;
    domain.send_message(&s, "Now write the docs", None).await.unwrap();
    let d = until(&domain, &s, "second reply", |d| d.status == SessionStatus::Idle && d.transcript.len() >= 4).await;
    let words = agent_text(&d).split_whitespace().count();
    let after = sub.latest().unwrap().version;
    assert!(after > before);
    assert!(after - before < words as u64, "{} versions for {words} words", after - before);
}

#[actix_rt::test]
async fn a_turn_cut_by_a_stop_is_marked_failed_after_restart() {
    let (rt, dir) = runtime(2);
    let (agent, mut gate) = BuiltinAgent::with_gate(Duration::from_millis(1));
    let domain = Domain::with_agent(rt.clone(), Arc::new(agent));
    setup(&domain).await;
    let created = domain.create_task(&RepoKey::new(ORG, "web"), prompt("Long running work")).await.unwrap();
    let s = created.task.session("s1");
    assert_eq!(gate.started().await, s.encode());
    domain.send_message(&s, "queued behind it", None).await.unwrap();
    // The process goes away mid-turn (the stop cancels the turn; the database still says `running`).
    rt.shutdown().await;
    drop(gate);

    let domain = Domain::with_agent(runtime_at(dir.path(), 2), Arc::new(BuiltinAgent::new(Duration::from_millis(1))));
    // On activation the lost turn is marked failed, and the queued follow-up then runs: nothing stays `running`.
    let d = until(&domain, &s, "recovered", |d| d.status == SessionStatus::Idle && d.queued == 0).await;
    assert!(d.transcript.iter().any(|i| i.kind == "status" && i.text.contains("turn failed")), "{:?}", d.transcript);
    assert!(agent_text(&d).contains("queued behind it"));
}

const KILL_CHILD_DIR: &str = "FOUNDRY_AGENT_KILL_CHILD_DIR";

/// Child side of the SIGKILL test: starts a turn that never finishes (held by the gate), says so, and waits to be
/// killed. Returns at once in a normal test run.
#[actix_rt::test]
async fn child_runs_a_turn_until_killed() {
    let Some(dir) = std::env::var_os(KILL_CHILD_DIR) else { return };
    let rt = runtime_at(std::path::Path::new(&dir), 2);
    let (agent, mut gate) = BuiltinAgent::with_gate(Duration::from_millis(1));
    let domain = Domain::with_agent(rt, Arc::new(agent));
    setup(&domain).await;
    let created = domain.create_task(&RepoKey::new(ORG, "web"), prompt("Work that gets killed")).await.unwrap();
    let s = created.task.session("s1");
    gate.started().await;
    domain.send_message(&s, "follow-up that must survive", None).await.unwrap();
    println!("TURN-RUNNING");
    std::future::pending::<()>().await;
}

#[actix_rt::test]
async fn killing_the_process_mid_turn_leaves_no_session_running() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_runs_a_turn_until_killed", "--nocapture", "--test-threads=1"])
        .env(KILL_CHILD_DIR, dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let ready = std::thread::spawn(move || {
        BufReader::new(stdout).lines().map_while(Result::ok).any(|l| l.contains("TURN-RUNNING"))
    });
    assert!(ready.join().unwrap(), "the child never started its turn");
    child.kill().unwrap(); // SIGKILL: no shutdown, no cleanup
    child.wait().unwrap();

    let domain = Domain::with_agent(runtime_at(dir.path(), 2), Arc::new(BuiltinAgent::new(Duration::from_millis(1))));
    let s = RepoKey::new(ORG, "web").task("t1").session("s1");
    let d = until(&domain, &s, "recovered after SIGKILL", |d| d.status == SessionStatus::Idle && d.queued == 0).await;
    assert!(d.transcript.iter().any(|i| i.kind == "status" && i.text.contains("turn failed")), "{:?}", d.transcript);
    assert!(agent_text(&d).contains("follow-up that must survive"), "{}", agent_text(&d));
}
