//! Placement (cluster mode's seam, issue 15 slice 1): a whole organization's actors share its shard, users are placed
//! by their own id, and a runtime given a `Router` opens only the shards it serves — a key of another shard is refused
//! with `NotOwner` before any file is looked for or created, while single-node mode (no router) is unchanged.

mod support;

use std::borrow::Cow;
use std::sync::Arc;

use foundry::actors::{
    audit_log::AuditLog, github_data::GitHubData, organization::Organization, repository::Repository, session::Session,
    task::Task, user::User, RepoKey, SessionKey, TaskKey,
};
use foundry::runtime::{
    shard_of, ActivationFailure, CallError, Entity, Route, Router, Runtime, RuntimeConfig, ShardId, SHARD_COUNT,
};
use support::{Add, GetValue, Tally};

fn placed<E: Entity>(key: &E::Key) -> ShardId {
    shard_of(&E::placement_key(key))
}

#[test]
fn an_organizations_actors_share_its_shard_and_users_have_their_own() {
    let org = "acme".to_owned();
    let want = shard_of("acme");
    assert_eq!(placed::<Organization>(&org), want);
    assert_eq!(placed::<GitHubData>(&org), want);
    assert_eq!(placed::<AuditLog>(&org), want);
    assert_eq!(placed::<Repository>(&RepoKey::new("acme", "web")), want);
    assert_eq!(placed::<Task>(&TaskKey { org: "acme".into(), repo: "web".into(), task: "t1".into() }), want);
    let session = SessionKey { org: "acme".into(), repo: "api".into(), task: "t9".into(), session: "s3".into() };
    assert_eq!(placed::<Session>(&session), want);
    assert_eq!(placed::<User>(&"u-42".to_owned()), shard_of("u-42"));
    assert!(
        matches!(
            Task::placement_key(&TaskKey { org: "acme".into(), repo: "r".into(), task: "t".into() }),
            Cow::Borrowed("acme")
        ),
        "no allocation for the common case"
    );
    assert!(want.0 < SHARD_COUNT);
}

/// Serves the even shards only.
#[derive(Debug)]
struct EvenShards;

impl Router for EvenShards {
    fn route(&self, shard: ShardId) -> Route {
        if shard.0.is_multiple_of(2) {
            Route::Local
        } else {
            Route::Remote
        }
    }
}

/// A key of the given parity.
fn key_on(even: bool) -> String {
    (0..).map(|i| format!("k{i}")).find(|k| shard_of(k).0.is_multiple_of(2) == even).unwrap()
}

#[actix_rt::test]
async fn a_routed_runtime_opens_only_the_shards_it_serves() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = RuntimeConfig::new(dir.path());
    config.arbiters = 1;
    config.router = Some(Arc::new(EvenShards));
    let rt = Runtime::start(config).unwrap();
    let reg = rt.registry::<Tally>();
    let (local, remote) = (key_on(true), key_on(false));
    assert_eq!(reg.shard_of(&remote), shard_of(&remote));

    reg.mutate(&local, Add::new(5)).await.expect("a served shard works as in single-node mode");
    assert_eq!(reg.read(&local, GetValue).await.unwrap(), 5);

    for result in
        [reg.mutate(&remote, Add::new(1)).await.map(drop), reg.read_existing(&remote, GetValue).await.map(drop)]
    {
        match result {
            Err(CallError::Activation(e)) => {
                assert!(matches!(e.reason, ActivationFailure::NotOwner(s) if s == shard_of(&remote)), "{e}")
            }
            other => panic!("expected NotOwner, got {other:?}"),
        }
    }
    assert!(!dir.path().join("tally").join(format!("{remote}.sqlite3")).exists(), "nothing opened for another shard");
    rt.shutdown().await;
}

#[actix_rt::test]
async fn without_a_router_every_shard_is_local() {
    let (rt, _dir) = support::runtime(1);
    let reg = rt.registry::<Tally>();
    for key in [key_on(true), key_on(false)] {
        reg.mutate(&key, Add::new(2)).await.unwrap();
        assert_eq!(reg.read(&key, GetValue).await.unwrap(), 2);
    }
    rt.shutdown().await;
}
