//! The sandbox-agent backend against the real sandbox-agent server (its built-in `mock` agent needs no credentials).
//! The binary comes from `SANDBOX_AGENT_BIN` (`.ci/run` installs it from npm); without it these tests print why and
//! return.

mod support;

use std::sync::Arc;
use std::time::Duration;

use foundry::actors::organization::{AddRepository, CreateOrganization, OrgKind};
use foundry::actors::repository::CreateTask;
use foundry::actors::session::GetSessionDetail;
use foundry::actors::summary::SessionStatus;
use foundry::actors::{Domain, RepoKey};
use foundry::integrations::agent::SandboxAgent;
use support::sandbox::Server;

async fn start_server() -> Option<Server> {
    support::sandbox::start(true).await
}

#[actix_rt::test]
async fn catalog_comes_from_the_server() {
    let Some(server) = start_server().await else { return };
    let agent = SandboxAgent::new(&server.url, "mock");
    let catalog = agent.catalog().await.unwrap();
    assert!(catalog.iter().any(|a| a.id == "mock"), "{catalog:?}");
    let codex = catalog.iter().find(|a| a.id == "codex").expect("codex in the catalog");
    assert!(!codex.models.is_empty() && !codex.thought_levels.is_empty(), "{codex:?}");
    // The domain's catalog refreshes from it: models are then the server's codex models.
    let (rt, _dir) = support::runtime(0);
    let domain = Domain::without_agent(rt);
    let n = domain.refresh_models(&agent, "codex").await.unwrap();
    assert_eq!(n, codex.models.len());
    assert!(domain.models().iter().all(|m| m.agent == "codex"));
    // An agent the server does not offer keeps the current catalog.
    assert!(domain.refresh_models(&agent, "no-such-agent").await.is_err());
    assert_eq!(domain.models().len(), n);
}

#[actix_rt::test]
async fn a_session_turn_runs_through_the_real_server() {
    let Some(server) = start_server().await else { return };
    let (rt, _dir) = support::runtime(2);
    let domain = Domain::with_agent(rt, Arc::new(SandboxAgent::new(&server.url, "mock")));
    let org = CreateOrganization {
        login: "acme".into(),
        display_name: "Acme".into(),
        kind: OrgKind::Organization,
        owner: None,
    };
    domain.orgs.mutate(&"acme".to_owned(), org).await.unwrap();
    let add = AddRepository {
        repo_id: "web".into(),
        full_name: "acme/web".into(),
        remote_url: "https://github.com/acme/web.git".into(),
        default_branch: "main".into(),
        user_id: None,
    };
    domain.add_repository("acme", add).await.unwrap();
    let prompt = CreateTask { prompt: "Say hello".into(), title: None, branch: None, model: None, user_id: None };
    let created = domain.create_task(&RepoKey::new("acme", "web"), prompt).await.unwrap();
    let session = created.task.session(&created.session_id);
    let mut detail = None;
    for _ in 0..400 {
        let d = domain.sessions.read(&session, GetSessionDetail).await.unwrap();
        if d.status == SessionStatus::Idle {
            detail = Some(d);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let d = detail.expect("the turn finished");
    let reply: Vec<&str> = d.transcript.iter().filter(|i| i.role == "agent").map(|i| i.text.as_str()).collect();
    assert!(reply.iter().any(|t| t.contains("echo: Say hello")), "{:?}", d.transcript);
    // A second prompt in the same session reuses its ACP server and sees only its own events.
    domain.send_message(&session, "Again", None).await.unwrap();
    for _ in 0..400 {
        let d = domain.sessions.read(&session, GetSessionDetail).await.unwrap();
        let agent_items: Vec<&str> =
            d.transcript.iter().filter(|i| i.role == "agent").map(|i| i.text.as_str()).collect();
        if d.status == SessionStatus::Idle && agent_items.len() >= 2 {
            assert!(agent_items[1].contains("echo: Again") && !agent_items[1].contains("Say hello"), "{agent_items:?}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("second turn did not finish");
}
