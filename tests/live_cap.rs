//! The live cap under load: with room for only a few dozen open actors, 8 concurrent clients create 150 tasks (each
//! first prompt answered by the built-in agent): every creation succeeds, no activation fails, the live set stays
//! within the cap, and every task's first prompt is answered. Eviction makes room by passivating the least recently
//! used idle actors of any kind, skipping those that cannot passivate yet (a pending outbox, a running turn).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use foundry::actors::organization::{AddRepository, CreateOrganization, OrgKind};
use foundry::actors::repository::CreateTask;
use foundry::actors::session::GetSessionDetail;
use foundry::actors::{Domain, RepoKey};
use foundry::runtime::{Runtime, RuntimeConfig};
use futures_util::StreamExt;

const CAP: usize = 24;
const TASKS: usize = 150;

#[actix_rt::test]
async fn creating_tasks_at_a_small_live_cap_fails_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = RuntimeConfig::new(dir.path());
    config.max_live = CAP;
    config.arbiters = 2;
    let rt = Runtime::start(config).unwrap();
    let domain = Domain::new(rt.clone());
    let create = CreateOrganization {
        login: "acme".into(),
        display_name: "Acme".into(),
        kind: OrgKind::Organization,
        owner: None,
    };
    domain.orgs.mutate(&"acme".to_owned(), create).await.unwrap();
    for repo in ["api", "web"] {
        let add = AddRepository {
            repo_id: repo.into(),
            full_name: format!("acme/{repo}"),
            remote_url: format!("https://example.invalid/acme/{repo}.git"),
            default_branch: "main".into(),
            user_id: None,
        };
        domain.add_repository("acme", add).await.unwrap();
    }

    let peak = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (rt, peak) = (rt.clone(), peak.clone());
        actix_rt::spawn(async move {
            loop {
                peak.fetch_max(rt.live_actors(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let started = Instant::now();
    let results: Vec<_> = futures_util::stream::iter(0..TASKS)
        .map(|i| {
            let domain = domain.clone();
            async move {
                let repo = RepoKey::new("acme", if i % 2 == 0 { "api" } else { "web" });
                let msg = CreateTask {
                    prompt: format!("Task {i}: tidy module {i}"),
                    title: None,
                    branch: None,
                    model: None,
                    user_id: None,
                };
                domain.create_task(&repo, msg).await
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let failed: Vec<String> = results.iter().filter_map(|r| r.as_ref().err().map(|e| e.to_string())).collect();
    assert!(failed.is_empty(), "{} of {TASKS} creations failed: {:?}", failed.len(), &failed[..failed.len().min(5)]);
    eprintln!("{TASKS} tasks at max_live={CAP}: {elapsed:?} ({:.0} tasks/s)", TASKS as f64 / elapsed.as_secs_f64());

    // Every first prompt is answered (the turn ran and the agent replied), through evictions and reactivations.
    for created in results.into_iter().map(Result::unwrap) {
        let session = created.task.session(&created.session_id);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let detail = domain.sessions.read(&session, GetSessionDetail).await.unwrap();
            if detail.transcript.iter().any(|i| i.role == "agent") && detail.queued == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "{session:?} never answered its first prompt: {detail:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    watcher.abort();
    let peak = peak.load(Ordering::Relaxed);
    assert!(peak <= CAP, "the live set reached {peak} > {CAP}");
    let mut failures = Vec::new();
    rt.for_each_kind(|kind, stats, _| {
        let n = stats.activation_failures.load(Ordering::Relaxed);
        if n > 0 {
            failures.push(format!("{kind}: {n}"));
        }
    });
    assert!(failures.is_empty(), "activation failures: {failures:?}");
    rt.shutdown().await;
}
