//! The GitHub REST client against the local GitHub-compatible server, over real HTTP: pagination, typed errors,
//! retries of transient failures and rate limits.

use std::time::{Duration, Instant};

use foundry::integrations::github::client::{GitHubApi, GitHubClient, GitHubError, PullState, RetryPolicy};
use foundry::integrations::github::fake::{FakeGitHub, Fixture};

const TOKEN: &str = "test-token";

fn client(base: &str) -> GitHubClient {
    let policy = RetryPolicy {
        backoff: Duration::from_millis(5),
        max_rate_limit_wait: Duration::from_secs(5),
        ..Default::default()
    };
    GitHubClient::with_policy(base, TOKEN, policy)
}

#[actix_rt::test]
async fn lists_follow_pagination_to_the_last_page() {
    let gh = FakeGitHub::start(Fixture::generate("acme", 250, 4, 6), TOKEN).await;
    let c = client(&gh.base_url());
    let before = gh.request_count();
    let repos = c.list_org_repos("acme").await.unwrap();
    assert_eq!(repos.len(), 250);
    assert_eq!(gh.request_count() - before, 3, "three pages of 100");
    let mut ids: Vec<u64> = repos.iter().map(|r| r.id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 250, "no page repeated");
    let full = &repos[0].full_name;
    assert_eq!(c.get_repo(full).await.unwrap(), repos[0]);
    let branches = c.list_branches(full).await.unwrap();
    assert!(branches.iter().any(|b| b.name == repos[0].default_branch), "{branches:?}");
    let open = c.list_pulls(full, PullState::Open, usize::MAX).await.unwrap();
    let all = c.list_pulls(full, PullState::All, usize::MAX).await.unwrap();
    assert!(open.iter().all(|p| p.state == "open"));
    assert!(all.len() > open.len(), "the fixture closes some pull requests");
    let recent = c.list_pulls(full, PullState::Closed, 1).await.unwrap();
    assert_eq!(recent.len(), 1);
    assert_eq!(c.get_pull(full, all[0].number).await.unwrap().number, all[0].number);
    assert_eq!(c.list_org_members("acme").await.unwrap().len(), 5);
    assert_eq!(c.list_installation_repos().await.unwrap().len(), 250);
    gh.stop().await;
}

#[actix_rt::test]
async fn errors_are_typed() {
    let gh = FakeGitHub::start(Fixture::generate("acme", 3, 1, 1), TOKEN).await;
    let bad = GitHubClient::new(&gh.base_url(), "wrong");
    assert_eq!(bad.list_org_repos("acme").await.unwrap_err(), GitHubError::Unauthorized);
    let c = client(&gh.base_url());
    assert!(matches!(c.get_repo("acme/nope").await.unwrap_err(), GitHubError::NotFound(_)));
    gh.fail_next("/repos/acme/repo-000", 403, 1);
    assert!(matches!(c.get_repo("acme/repo-000").await.unwrap_err(), GitHubError::Forbidden(_)));
    gh.stop().await;
}

#[actix_rt::test]
async fn transient_failures_are_retried_with_bounds() {
    let gh = FakeGitHub::start(Fixture::generate("acme", 150, 1, 1), TOKEN).await;
    let c = client(&gh.base_url());
    // Two 502s on the second page, then success: the list is still complete.
    gh.fail_next("page=2", 502, 2);
    assert_eq!(c.list_org_repos("acme").await.unwrap().len(), 150);
    // More failures than attempts: a typed error saying so.
    gh.fail_next("/orgs/acme/repos", 503, 10);
    assert_eq!(c.list_org_repos("acme").await.unwrap_err(), GitHubError::Server { status: 503, attempts: 4 });
    gh.stop().await;
}

#[actix_rt::test]
async fn rate_limits_are_waited_out_or_reported() {
    let gh = FakeGitHub::start(Fixture::generate("acme", 5, 1, 1), TOKEN).await;
    let c = client(&gh.base_url());
    gh.rate_limit_next(1, 1);
    let started = Instant::now();
    assert_eq!(c.list_org_repos("acme").await.unwrap().len(), 5);
    assert!(started.elapsed() >= Duration::from_millis(900), "the client waited for retry-after");
    // A reset further away than the client may wait is reported, not slept through.
    gh.rate_limit_next(1, 3600);
    let err = c.list_org_repos("acme").await.unwrap_err();
    assert_eq!(err, GitHubError::RateLimited { retry_after: Duration::from_secs(3600) });
    gh.stop().await;
}
