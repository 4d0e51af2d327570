//! The turn gate: at most `n` agent turns run at once across the service; sessions beyond it wait in line with their
//! prompt queued, may passivate while they wait (they hold no live slot), get their turn first come first served,
//! and a restart picks up whoever was waiting.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use foundry::actors::organization::{AddRepository, CreateOrganization, OrgKind};
use foundry::actors::repository::{CreateTask, CreatedTask};
use foundry::actors::session::{GetSessionDetail, SessionDetail, TurnPermits};
use foundry::actors::summary::SessionStatus;
use foundry::actors::{Domain, RepoKey, SessionKey};
use foundry::integrations::agent::{AgentBackend, AgentEvent, BuiltinAgent, TurnEnd, TurnRequest};
use foundry::runtime::{Runtime, RuntimeConfig};
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

/// The built-in agent, counting the turns it runs at once (and the most it ever ran at once).
struct CountingAgent {
    inner: BuiltinAgent,
    now: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl AgentBackend for CountingAgent {
    fn run_turn(
        &self,
        request: TurnRequest,
        events: mpsc::Sender<AgentEvent>,
        steer: mpsc::UnboundedReceiver<String>,
    ) -> BoxFuture<'static, TurnEnd> {
        let turn = self.inner.run_turn(request, events, steer);
        let (now, peak) = (self.now.clone(), self.peak.clone());
        Box::pin(async move {
            peak.fetch_max(now.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
            let _running = Running(now);
            turn.await
        })
    }
}

async fn domain(
    dir: &std::path::Path,
    turns: usize,
    pace: Duration,
) -> (Runtime, Domain, Arc<TurnPermits>, Arc<AtomicUsize>) {
    let mut config = RuntimeConfig::new(dir);
    config.arbiters = 2;
    let rt = Runtime::start(config).unwrap();
    let gate = Arc::new(TurnPermits::new(turns));
    rt.provide(gate.clone());
    let peak = Arc::new(AtomicUsize::new(0));
    let agent = CountingAgent { inner: BuiltinAgent::new(pace), now: Arc::default(), peak: peak.clone() };
    let domain = Domain::with_agent(rt.clone(), Arc::new(agent));
    (rt, domain, gate, peak)
}

async fn setup(domain: &Domain) -> RepoKey {
    let create = CreateOrganization {
        login: "acme".into(),
        display_name: "Acme".into(),
        kind: OrgKind::Organization,
        owner: None,
    };
    domain.orgs.mutate(&"acme".to_owned(), create).await.unwrap();
    let add = AddRepository {
        repo_id: "api".into(),
        full_name: "acme/api".into(),
        remote_url: "https://example.invalid/acme/api.git".into(),
        default_branch: "main".into(),
        user_id: None,
    };
    domain.add_repository("acme", add).await.unwrap();
    RepoKey::new("acme", "api")
}

async fn create(domain: &Domain, repo: &RepoKey, i: usize) -> SessionKey {
    let msg = CreateTask { prompt: format!("Task {i}"), title: None, branch: None, model: None, user_id: None };
    let created: CreatedTask = domain.create_task(repo, msg).await.unwrap();
    created.task.session(&created.session_id)
}

async fn detail(domain: &Domain, s: &SessionKey) -> SessionDetail {
    domain.sessions.read(s, GetSessionDetail).await.unwrap()
}

fn answered(d: &SessionDetail) -> bool {
    d.transcript.iter().any(|i| i.role == "agent") && d.queued == 0 && d.status != SessionStatus::Running
}

async fn wait_answered(domain: &Domain, s: &SessionKey, within: Duration) -> Instant {
    let deadline = Instant::now() + within;
    loop {
        let d = detail(domain, s).await;
        if answered(&d) {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "{s:?} was never answered: {d:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[actix_rt::test]
async fn no_more_turns_run_than_the_gate_allows_and_waiting_sessions_passivate() {
    let dir = tempfile::tempdir().unwrap();
    // ~40 words at 10 ms: each turn runs for a few hundred milliseconds.
    let (rt, domain, gate, peak) = domain(dir.path(), 2, Duration::from_millis(10)).await;
    let repo = setup(&domain).await;
    let mut sessions = Vec::new();
    for i in 0..6 {
        sessions.push(create(&domain, &repo, i).await);
    }
    assert_eq!(gate.running(), 2, "two turns hold the gate's permits");
    assert_eq!(gate.waiting(), 4, "the other four sessions wait in line");

    // A waiting session has no turn: it agrees to passivate, and still gets its turn later.
    let last = sessions.last().unwrap().clone();
    let d = detail(&domain, &last).await;
    assert_eq!((d.status, d.queued), (SessionStatus::Ready, 1), "its prompt is queued, no turn started");
    // (It agrees once the summary it pushed to its task is delivered.)
    let deadline = Instant::now() + Duration::from_secs(5);
    while !domain.sessions.passivate(&last).await {
        assert!(Instant::now() < deadline, "a waiting session never agreed to passivate");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    while domain.sessions.is_live(&last) {
        assert!(Instant::now() < deadline, "the waiting session never stopped");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(gate.waiting(), 4, "it is still in line");

    let mut done = Vec::new();
    for s in &sessions {
        done.push(wait_answered(&domain, s, Duration::from_secs(60)).await);
    }
    assert_eq!(peak.load(Ordering::SeqCst), 2, "the agent ran more (or fewer) than two turns at once");
    // First come, first served: the first two ran first; the passivated one (last in line) was answered last.
    assert!(done[5] >= done[0] && done[5] >= done[1], "the last in line was answered before the first ones");
    assert_eq!((gate.running(), gate.waiting()), (0, 0), "every permit came back");
    rt.shutdown().await;
}

#[actix_rt::test]
async fn a_session_waiting_for_its_turn_is_resumed_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let waiting = {
        // One permit, held by a turn that lasts far longer than the test: the second task's turn must wait.
        let (rt, domain, gate, _) = domain(dir.path(), 1, Duration::from_secs(30)).await;
        let repo = setup(&domain).await;
        let _busy = create(&domain, &repo, 0).await;
        let waiting = create(&domain, &repo, 1).await;
        assert_eq!(gate.waiting(), 1);
        assert_eq!(detail(&domain, &waiting).await.queued, 1);
        rt.shutdown().await;
        waiting
    };
    // The next process: nobody touches the waiting session; recovery reactivates it and its prompt is answered.
    let (rt, domain, _, _) = domain(dir.path(), 1, Duration::ZERO).await;
    let report = rt.recover().await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if domain.sessions.is_live(&waiting) {
            break;
        }
        assert!(Instant::now() < deadline, "recovery did not reactivate the waiting session");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    wait_answered(&domain, &waiting, Duration::from_secs(30)).await;
    rt.shutdown().await;
}
