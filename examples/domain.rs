//! Drives the domain actors directly: an organization with a repository, two tasks created from prompts (the built-in
//! agent answers them), a second session, a follow-up in each session answered the way a client's message is
//! (`Domain::send_message`, as `POST .../messages` does); then prints a transcript, the organization snapshot and the
//! audit log. `cargo test` runs it (`tests/readme.rs`).
//!
//! Run: `cargo run --example domain` (data goes to a temporary directory).

use std::time::Duration;

use foundry::actors::audit_log::ListAuditEvents;
use foundry::actors::organization::{AddRepository, CreateOrganization, GetOrganizationSnapshot, OrgKind};
use foundry::actors::repository::CreateTask;
use foundry::actors::session::GetSessionDetail;
use foundry::actors::summary::SessionStatus;
use foundry::actors::task::CreateSession;
use foundry::actors::user::UpsertUser;
use foundry::actors::{Domain, RepoKey};
use foundry::runtime::{Runtime, RuntimeConfig};

#[actix_rt::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let domain = Domain::new(Runtime::start(RuntimeConfig::new(dir.path()))?);
    let org = "acme".to_owned();
    let user = "u-ada".to_owned();

    domain
        .users
        .mutate(&user, UpsertUser { name: "Ada".into(), email: "ada@acme.dev".into(), avatar_url: None })
        .await?;
    let create = CreateOrganization {
        login: "acme".into(),
        display_name: "Acme".into(),
        kind: OrgKind::Organization,
        owner: None,
    };
    domain.orgs.mutate(&org, create).await?;
    let add = AddRepository {
        repo_id: "web".into(),
        full_name: "acme/web".into(),
        remote_url: "https://github.com/acme/web.git".into(),
        default_branch: "main".into(),
        user_id: Some(user.clone()),
    };
    domain.add_repository(&org, add).await?;
    let repo = RepoKey::new(&org, "web");

    let mut tasks = Vec::new();
    for prompt in ["Add a dark mode toggle to the settings page", "Fix the crash when the cart is empty"] {
        let msg =
            CreateTask { prompt: prompt.into(), title: None, branch: None, model: None, user_id: Some(user.clone()) };
        let created = domain.create_task(&repo, msg).await?;
        println!("created {} {:?} on branch {}", created.task, created.title, created.branch);
        tasks.push(created);
    }

    // A second session on the first task, and a follow-up in each: it runs now, or after the running turn.
    let first = &tasks[0].task;
    let review = CreateSession { name: Some("Review".into()), model: Some("claude-sonnet-4".into()), user_id: None };
    let s2 = domain.create_session(first, review).await?;
    for session in ["s1", s2.as_str()] {
        let text = format!("Status update please ({session})");
        domain.send_message(&first.session(session), &text, Some(&user)).await?;
    }
    // Turns run in the background; wait until the first session has answered both prompts.
    let mut detail = domain.sessions.read(&first.session("s1"), GetSessionDetail).await?;
    for _ in 0..500 {
        let replies = detail.transcript.iter().filter(|i| i.role == "agent").count();
        if detail.status == SessionStatus::Idle && detail.queued == 0 && replies >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        detail = domain.sessions.read(&first.session("s1"), GetSessionDetail).await?;
    }
    println!("\nsession {} transcript:", detail.session_id);
    for item in &detail.transcript {
        println!("  [{}] {}: {}", item.seq, item.role, item.text);
    }

    // Summaries travel up through the outboxes; give them a moment, then print the organization snapshot.
    let mut snapshot = domain.orgs.read(&org, GetOrganizationSnapshot).await?;
    for _ in 0..100 {
        if snapshot.task_summaries.iter().map(|t| t.sessions.len()).sum::<usize>() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        snapshot = domain.orgs.read(&org, GetOrganizationSnapshot).await?;
    }
    println!("\norganization snapshot:\n{}", serde_json::to_string_pretty(&snapshot)?);

    let page =
        domain.audit_events(&org, ListAuditEvents { repo_id: None, task_id: None, before_id: None, limit: 50 }).await?;
    println!("\naudit log (newest first):");
    for e in &page.events {
        let scope = [e.repo_id.as_deref(), e.task_id.as_deref(), e.session_id.as_deref()]
            .iter()
            .flatten()
            .copied()
            .collect::<Vec<_>>()
            .join("/");
        println!("  #{:<3} {:<24} {}", e.id, e.kind, scope);
    }

    domain.runtime.shutdown().await;
    Ok(())
}
