//! The storage side of authentication: the app-level `auth_directory` (session, email and account indexes, OAuth
//! verifications) and the user actor's auth sessions, OAuth accounts and organization grants.

mod support;

use foundry::actors::auth_directory::*;
use foundry::actors::user::*;
use std::sync::Arc;

use diesel::prelude::*;
use foundry::actors::{Domain, DomainError};
use foundry::runtime::{CallError, Registry};
use foundry::secrets::{SecretsError, TokenCipher, KEY_FILE_NAME};
use support::{runtime, runtime_at};

/// An expiry no test reaches (year 2255).
const FAR: i64 = 9_000_000_000_000;

/// A distinct, well-formed SHA-256 hex per seed.
fn hash(seed: u8) -> String {
    format!("{seed:02x}").repeat(32)
}

fn dir_key() -> String {
    AUTH_DIRECTORY_KEY.to_owned()
}

fn index(token_hash: &str, user_id: &str, session_id: &str, expires_at_ms: i64) -> IndexAuthSession {
    IndexAuthSession {
        token_hash: token_hash.into(),
        user_id: user_id.into(),
        session_id: session_id.into(),
        expires_at_ms,
    }
}

async fn resolve(dir: &Registry<AuthDirectory>, token_hash: &str, now_ms: i64) -> Option<ResolvedSession> {
    dir.read(&dir_key(), ResolveAuthSession { token_hash: token_hash.into(), now_ms }).await.unwrap()
}

fn link(provider: &str, account_id: &str, email: Option<&str>, new_user_id: &str) -> LinkAccount {
    LinkAccount {
        provider: provider.into(),
        account_id: account_id.into(),
        email: email.map(str::to_owned),
        new_user_id: new_user_id.into(),
    }
}

async fn account_of(dir: &Registry<AuthDirectory>, provider: &str, account_id: &str) -> Option<String> {
    let msg = ResolveAccount { provider: provider.into(), account_id: account_id.into() };
    dir.read(&dir_key(), msg).await.unwrap()
}

fn upsert(name: &str) -> UpsertUser {
    UpsertUser { name: name.into(), email: format!("{}@example.com", name.to_lowercase()), avatar_url: None }
}

fn start(session_id: &str, token_hash: &str, user_agent: Option<String>) -> StartAuthSession {
    StartAuthSession { session_id: session_id.into(), token_hash: token_hash.into(), expires_at_ms: FAR, user_agent }
}

fn oauth(login: &str, token: &str) -> LinkOAuthAccount {
    LinkOAuthAccount {
        provider: "github".into(),
        account_id: "42".into(),
        login: login.into(),
        access_token: token.into(),
        scopes: "repo read:org".into(),
    }
}

fn invalid_field<T: std::fmt::Debug>(r: Result<T, CallError<DomainError>>) -> &'static str {
    match r {
        Err(CallError::Handler(DomainError::Invalid { field, .. })) => field,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn is_conflict<T: std::fmt::Debug>(r: Result<T, CallError<DomainError>>) -> bool {
    matches!(r, Err(CallError::Handler(DomainError::Conflict(_))))
}

fn is_user_not_found<T: std::fmt::Debug>(r: Result<T, CallError<DomainError>>) -> bool {
    matches!(r, Err(CallError::Handler(DomainError::NotFound { what: "user", .. })))
}

#[actix_rt::test]
async fn sessions_are_indexed_resolved_until_expiry_and_removed() {
    let (rt, _dir) = runtime(2);
    let domain = Domain::without_agent(rt.clone());
    let dir = &domain.auth;
    let expires = 2_000_000_000_000;
    dir.mutate(&dir_key(), index(&hash(1), "u1", "as1", expires)).await.unwrap();

    let resolved = resolve(dir, &hash(1), expires - 1).await;
    assert_eq!(
        resolved,
        Some(ResolvedSession { user_id: "u1".into(), session_id: "as1".into(), expires_at_ms: expires })
    );
    assert_eq!(resolve(dir, &hash(1), expires).await, None, "valid strictly before its expiry");
    assert_eq!(resolve(dir, &hash(9), 0).await, None);

    assert!(is_conflict(dir.mutate(&dir_key(), index(&hash(1), "u2", "other", expires)).await));
    assert_eq!(resolve(dir, &hash(1), 0).await.unwrap().user_id, "u1", "the refused index changed nothing");

    assert!(dir.mutate(&dir_key(), RemoveAuthSession { token_hash: hash(1) }).await.unwrap());
    assert!(!dir.mutate(&dir_key(), RemoveAuthSession { token_hash: hash(1) }).await.unwrap());
    assert_eq!(resolve(dir, &hash(1), 0).await, None);

    // Sign out everywhere removes only that user's tokens.
    for (seed, user) in [(2, "u2"), (3, "u2"), (4, "u3")] {
        dir.mutate(&dir_key(), index(&hash(seed), user, &format!("as{seed}"), expires)).await.unwrap();
    }
    assert_eq!(dir.mutate(&dir_key(), RemoveUserAuthSessions { user_id: "u2".into() }).await.unwrap(), 2);
    assert_eq!(dir.mutate(&dir_key(), RemoveUserAuthSessions { user_id: "u2".into() }).await.unwrap(), 0);
    assert_eq!(resolve(dir, &hash(2), 0).await, None);
    assert_eq!(resolve(dir, &hash(4), 0).await.unwrap().user_id, "u3");
    rt.shutdown().await;
}

#[actix_rt::test]
async fn indexing_prunes_expired_entries_and_a_refusal_prunes_nothing() {
    let (rt, _dir) = runtime(2);
    let dir = rt.registry::<AuthDirectory>();
    // Expired long ago by any real clock, but resolvable at `now_ms = 0`: shows whether the row is still stored.
    dir.mutate(&dir_key(), index(&hash(1), "u1", "old", 1)).await.unwrap();
    assert!(resolve(&dir, &hash(1), 0).await.is_some());

    assert_eq!(invalid_field(dir.mutate(&dir_key(), index(&hash(2), "u1", "has space", FAR)).await), "session_id");
    assert!(resolve(&dir, &hash(1), 0).await.is_some(), "a refused index prunes nothing");

    dir.mutate(&dir_key(), index(&hash(2), "u1", "new", FAR)).await.unwrap();
    assert_eq!(resolve(&dir, &hash(1), 0).await, None, "pruned by the next index");
    assert!(resolve(&dir, &hash(2), 0).await.is_some());
    rt.shutdown().await;
}

#[actix_rt::test]
async fn invalid_directory_input_is_refused_and_changes_nothing() {
    let (rt, _dir) = runtime(2);
    let dir = rt.registry::<AuthDirectory>();
    let k = dir_key();
    assert_eq!(invalid_field(dir.mutate(&k, index("not-a-hash", "u1", "s", 9)).await), "token_hash");
    assert_eq!(invalid_field(dir.mutate(&k, index(&hash(1)[1..], "u1", "s", 9)).await), "token_hash");
    assert_eq!(invalid_field(dir.mutate(&k, index(&hash(1), "", "s", 9)).await), "user_id");
    assert_eq!(invalid_field(dir.mutate(&k, index(&hash(1), "u1", "s", 0)).await), "expires_at_ms");
    assert_eq!(resolve(&dir, &hash(1), 0).await, None);

    assert_eq!(invalid_field(dir.mutate(&k, link("git hub", "1", None, "u1")).await), "provider");
    assert_eq!(invalid_field(dir.mutate(&k, link("github", "", None, "u1")).await), "account_id");
    assert_eq!(invalid_field(dir.mutate(&k, link("github", "1", Some("nobody"), "u1")).await), "email");
    assert_eq!(invalid_field(dir.mutate(&k, link("github", "1", None, "u\n1")).await), "new_user_id");
    assert_eq!(account_of(&dir, "github", "1").await, None);

    let email = |e: &str| IndexEmail { email: e.into(), user_id: "u1".into() };
    assert_eq!(invalid_field(dir.mutate(&k, email("a b@example.com")).await), "email");
    assert_eq!(invalid_field(dir.mutate(&k, email(&format!("{}@x.io", "a".repeat(320)))).await), "email");
    assert_eq!(invalid_field(dir.read(&k, ResolveEmail { email: "@".into() }).await), "email");

    let verification = |state_hash: &str, provider: &str| CreateVerification {
        state_hash: state_hash.into(),
        provider: provider.into(),
        redirect: None,
        expires_at_ms: FAR,
    };
    assert_eq!(invalid_field(dir.mutate(&k, verification("abc", "github")).await), "state_hash");
    assert_eq!(invalid_field(dir.mutate(&k, verification(&hash(5), "")).await), "provider");
    let consumed = dir.mutate(&k, ConsumeVerification { state_hash: hash(5), now_ms: 0 }).await.unwrap();
    assert_eq!(consumed, None);
    rt.shutdown().await;
}

#[actix_rt::test]
async fn accounts_link_by_account_then_by_email_else_to_the_new_user() {
    let (rt, _dir) = runtime(2);
    let dir = rt.registry::<AuthDirectory>();
    let k = dir_key();

    let first = dir.mutate(&k, link("github", "42", Some("Ada@Example.com"), "u-ada")).await.unwrap();
    assert_eq!(first, LinkedAccount { user_id: "u-ada".into(), created: true });
    assert_eq!(account_of(&dir, "github", "42").await.as_deref(), Some("u-ada"));
    let by_email = dir.read(&k, ResolveEmail { email: "ada@EXAMPLE.com".into() }).await.unwrap();
    assert_eq!(by_email.as_deref(), Some("u-ada"), "emails are indexed lowercased");

    // The same account again: its user, whatever new id or email is offered.
    let again = dir.mutate(&k, link("github", "42", Some("other@example.com"), "u-new")).await.unwrap();
    assert_eq!(again, LinkedAccount { user_id: "u-ada".into(), created: false });
    assert_eq!(dir.read(&k, ResolveEmail { email: "other@example.com".into() }).await.unwrap(), None);

    // Another provider's account with the same (verified) email joins that user and is bound to them.
    let google = dir.mutate(&k, link("google", "g-7", Some("ADA@example.com"), "u-new")).await.unwrap();
    assert_eq!(google, LinkedAccount { user_id: "u-ada".into(), created: false });
    assert_eq!(account_of(&dir, "google", "g-7").await.as_deref(), Some("u-ada"));

    // No account, no email: a new user.
    let bob = dir.mutate(&k, link("github", "43", None, "u-bob")).await.unwrap();
    assert_eq!(bob, LinkedAccount { user_id: "u-bob".into(), created: true });
    assert_eq!(account_of(&dir, "github", "44").await, None);

    // Emails: idempotent for their user, a conflict for anyone else.
    dir.mutate(&k, IndexEmail { email: "bob@example.com".into(), user_id: "u-bob".into() }).await.unwrap();
    dir.mutate(&k, IndexEmail { email: "BOB@example.com".into(), user_id: "u-bob".into() }).await.unwrap();
    assert!(is_conflict(dir.mutate(&k, IndexEmail { email: "bob@example.com".into(), user_id: "u-ada".into() }).await));
    let bob_email = dir.read(&k, ResolveEmail { email: "bob@example.com".into() }).await.unwrap();
    assert_eq!(bob_email.as_deref(), Some("u-bob"));
    rt.shutdown().await;
}

#[actix_rt::test]
async fn verifications_are_single_use_and_expire() {
    let (rt, _dir) = runtime(2);
    let dir = rt.registry::<AuthDirectory>();
    let k = dir_key();
    let expires = 2_000_000_000_000;
    let create = |seed: u8, redirect: Option<&str>| CreateVerification {
        state_hash: hash(seed),
        provider: "github".into(),
        redirect: redirect.map(str::to_owned),
        expires_at_ms: expires,
    };
    let consume = |seed: u8, now_ms: i64| ConsumeVerification { state_hash: hash(seed), now_ms };

    dir.mutate(&k, create(1, Some("/orgs/acme"))).await.unwrap();
    assert!(is_conflict(dir.mutate(&k, create(1, None)).await));
    let taken = dir.mutate(&k, consume(1, expires - 1)).await.unwrap();
    assert_eq!(taken, Some(Verification { provider: "github".into(), redirect: Some("/orgs/acme".into()) }));
    assert_eq!(dir.mutate(&k, consume(1, expires - 1)).await.unwrap(), None, "single use");

    dir.mutate(&k, create(2, None)).await.unwrap();
    assert_eq!(dir.mutate(&k, consume(2, expires)).await.unwrap(), None, "expired");
    assert_eq!(dir.mutate(&k, consume(2, 0)).await.unwrap(), None, "an expired one is deleted too");
    assert_eq!(dir.mutate(&k, consume(3, 0)).await.unwrap(), None);
    rt.shutdown().await;
}

#[actix_rt::test]
async fn user_auth_sessions_start_list_and_revoke() {
    let (rt, _dir) = runtime(2);
    let users = rt.registry::<User>();
    let k = "u-ada".to_owned();
    assert!(is_user_not_found(users.mutate(&k, start("as1", &hash(1), None)).await));
    assert!(users.read(&k, ListAuthSessions).await.unwrap().is_empty());

    users.mutate(&k, upsert("Ada")).await.unwrap();
    users.mutate(&k, start("as1", &hash(1), Some("curl/8".into()))).await.unwrap();
    users.mutate(&k, start("as2", &hash(2), Some("é".repeat(600)))).await.unwrap();
    assert!(is_conflict(users.mutate(&k, start("as1", &hash(3), None)).await), "session id taken");
    assert!(is_conflict(users.mutate(&k, start("as3", &hash(1), None)).await), "token hash taken");
    assert_eq!(invalid_field(users.mutate(&k, start("as4", "x", None)).await), "token_hash");
    assert_eq!(invalid_field(users.mutate(&k, start("", &hash(4), None)).await), "session_id");

    let listed = users.read(&k, ListAuthSessions).await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|s| s.session_id.as_str()).collect();
    assert_eq!(ids, ["as2", "as1"], "newest first, and nothing from the refusals");
    assert_eq!(listed[0].user_agent.as_ref().unwrap().chars().count(), MAX_USER_AGENT_CHARS);
    assert_eq!(listed[1].user_agent.as_deref(), Some("curl/8"));
    assert!(listed.iter().all(|s| s.revoked_at_ms.is_none() && s.expires_at_ms == FAR));
    let json = serde_json::to_string(&listed).unwrap();
    assert!(json.contains("\"sessionId\"") && json.contains("\"revokedAtMs\""), "{json}");
    assert!(!json.contains(&hash(1)) && !json.contains(&hash(2)), "never the token hash: {json}");

    let revoke = |id: &str| RevokeAuthSession { session_id: id.into() };
    assert_eq!(users.mutate(&k, revoke("as1")).await.unwrap(), Some(hash(1)));
    assert_eq!(users.mutate(&k, revoke("as1")).await.unwrap(), None, "already revoked");
    assert_eq!(users.mutate(&k, revoke("nope")).await.unwrap(), None);
    let as1 = users.read(&k, GetAuthSession { session_id: "as1".into() }).await.unwrap().unwrap();
    assert!(as1.revoked_at_ms.is_some());
    assert_eq!(users.read(&k, GetAuthSession { session_id: "nope".into() }).await.unwrap(), None);

    users.mutate(&k, start("as3", &hash(3), None)).await.unwrap();
    let mut all = users.mutate(&k, RevokeAllAuthSessions).await.unwrap();
    all.sort();
    assert_eq!(all, [hash(2), hash(3)], "only the sessions not yet revoked");
    assert!(users.mutate(&k, RevokeAllAuthSessions).await.unwrap().is_empty());
    assert!(users.read(&k, ListAuthSessions).await.unwrap().iter().all(|s| s.revoked_at_ms.is_some()));
    rt.shutdown().await;
}

#[actix_rt::test]
async fn oauth_accounts_upsert_and_never_list_their_tokens() {
    let (rt, _dir) = runtime(2);
    rt.provide(Arc::new(TokenCipher::generate().unwrap()));
    let users = rt.registry::<User>();
    let k = "u-ada".to_owned();
    assert!(is_user_not_found(users.mutate(&k, oauth("ada", "gho_first")).await));
    users.mutate(&k, upsert("Ada")).await.unwrap();

    users.mutate(&k, oauth("ada", "gho_first")).await.unwrap();
    users.mutate(&k, oauth("ada-l", "gho_second")).await.unwrap();
    assert_eq!(invalid_field(users.mutate(&k, oauth("ada", "")).await), "access_token");
    assert_eq!(
        invalid_field(users.mutate(&k, LinkOAuthAccount { provider: "a/b".into(), ..oauth("x", "t") }).await),
        "provider"
    );

    let accounts = users.read(&k, ListOAuthAccounts).await.unwrap();
    assert_eq!(accounts.len(), 1, "one row per (provider, account id)");
    assert_eq!((accounts[0].login.as_str(), accounts[0].scopes.as_str()), ("ada-l", "repo read:org"));
    let json = serde_json::to_string(&accounts).unwrap();
    assert!(json.contains("\"accountId\"") && json.contains("\"updatedAtMs\""), "{json}");
    assert!(!json.contains("gho_"), "never the access token: {json}");

    let token = users.exec(&k, GetOAuthAccessToken { provider: "github".into() }).await.unwrap();
    assert_eq!(token, StoredAccessToken::Token("gho_second".into()));
    let none = users.exec(&k, GetOAuthAccessToken { provider: "gitlab".into() }).await.unwrap();
    assert_eq!(none, StoredAccessToken::Missing);
    rt.shutdown().await;
}

fn github_token() -> GetOAuthAccessToken {
    GetOAuthAccessToken { provider: "github".into() }
}

/// The stored `access_token` column of every account row of the user database `file`.
fn stored_tokens(file: &std::path::Path) -> Vec<String> {
    use diesel::sql_types::Text;
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        access_token: String,
    }
    let mut conn = diesel::SqliteConnection::establish(file.to_str().unwrap()).unwrap();
    let rows: Vec<Row> = diesel::sql_query("SELECT access_token FROM accounts").load(&mut conn).unwrap();
    rows.into_iter().map(|r| r.access_token).collect()
}

/// Every byte of the user kind's files (databases, WAL, shared memory).
fn user_files_bytes(data: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(data.join("user")).unwrap() {
        all.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// OAuth tokens are sealed at rest under the data directory's key: the user's files never hold the token, a restart
/// reads it back, a plaintext row of an earlier version is sealed on first use, and another key reports the
/// mismatch instead of a token. Without a key nothing is stored.
#[actix_rt::test]
async fn oauth_tokens_are_sealed_at_rest() {
    let (rt, tmp) = runtime(2);
    let domain = Domain::without_agent(rt.clone());
    let k = "u-ada".to_owned();
    domain.users.mutate(&k, upsert("Ada")).await.unwrap();
    domain.users.mutate(&k, oauth("ada", "gho_sealedsecret123")).await.unwrap();
    assert_eq!(
        domain.users.exec(&k, github_token()).await.unwrap(),
        StoredAccessToken::Token("gho_sealedsecret123".into())
    );
    rt.shutdown().await;
    assert!(tmp.path().join(KEY_FILE_NAME).exists(), "the key was generated in the data directory");
    assert!(!contains(&user_files_bytes(tmp.path()), "gho_sealedsecret123"), "the token is in no user file");
    let file = std::fs::read_dir(tmp.path().join("user"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "sqlite3"))
        .unwrap();
    let stored = stored_tokens(&file);
    assert!(stored.len() == 1 && stored[0].starts_with("v1:"), "{stored:?}");

    // An earlier version's plaintext row: read back after a restart, and sealed in place by that first use.
    let mut conn = diesel::SqliteConnection::establish(file.to_str().unwrap()).unwrap();
    diesel::sql_query("UPDATE accounts SET access_token = 'gho_legacyplain456'").execute(&mut conn).unwrap();
    drop(conn);
    let rt = runtime_at(tmp.path(), 2);
    let domain = Domain::without_agent(rt.clone());
    assert_eq!(
        domain.users.exec(&k, github_token()).await.unwrap(),
        StoredAccessToken::Token("gho_legacyplain456".into())
    );
    assert_eq!(
        domain.users.exec(&k, github_token()).await.unwrap(),
        StoredAccessToken::Token("gho_legacyplain456".into())
    );
    rt.shutdown().await;
    let stored = stored_tokens(&file);
    assert!(stored[0].starts_with("v1:"), "sealed on first use: {stored:?}");

    // Another key: the token is reported unreadable, naming both keys, not returned as garbage.
    let sealed_with = stored[0].split(':').nth(1).unwrap().to_owned();
    std::fs::remove_file(tmp.path().join(KEY_FILE_NAME)).unwrap();
    let rt = runtime_at(tmp.path(), 2);
    let domain = Domain::without_agent(rt.clone());
    match domain.users.exec(&k, github_token()).await.unwrap() {
        StoredAccessToken::Unreadable(SecretsError::WrongKey { sealed_with: was, current }) => {
            assert_eq!(was, sealed_with);
            assert_ne!(current, sealed_with);
            let message = SecretsError::WrongKey { sealed_with: was, current }.to_string();
            assert!(message.contains("token-key-file"), "{message}");
        }
        other => panic!("expected a wrong-key refusal, got {other:?}"),
    }
    // Signing in again stores a token under the new key.
    domain.users.mutate(&k, oauth("ada", "gho_fresh789")).await.unwrap();
    assert_eq!(domain.users.exec(&k, github_token()).await.unwrap(), StoredAccessToken::Token("gho_fresh789".into()));
    rt.shutdown().await;

    // A runtime without a key stores no token at all.
    let (bare, _dir) = runtime(2);
    let users = bare.registry::<User>();
    users.mutate(&k, upsert("Ada")).await.unwrap();
    let refused = users.mutate(&k, oauth("ada", "gho_nowhere")).await;
    assert!(matches!(refused, Err(CallError::Handler(DomainError::Unprocessable(_)))), "{refused:?}");
    assert!(users.read(&k, ListOAuthAccounts).await.unwrap().is_empty());
    bare.shutdown().await;
}

#[actix_rt::test]
async fn organization_grants_change_the_app_snapshot() {
    let (rt, _dir) = runtime(2);
    let users = rt.registry::<User>();
    let k = "u-ada".to_owned();
    // Before the user exists there is nothing to reflect the membership in: a successful no-op.
    users.mutate(&k, GrantOrganization::new("acme")).await.unwrap();
    assert!(is_user_not_found(users.read(&k, GetAppSnapshot).await));

    users.mutate(&k, upsert("Ada")).await.unwrap();
    let mut sub = users.subscribe(&k, APP_TOPIC).await.unwrap();
    let first = sub.next().await.unwrap();
    assert!(first.snapshot_as::<AppSnapshot>().unwrap().organizations.is_empty());

    users.mutate(&k, GrantOrganization::new("acme")).await.unwrap();
    let granted = sub.next().await.unwrap();
    assert_eq!(granted.version, first.version + 1);
    assert_eq!(ids(&granted.snapshot_as::<AppSnapshot>().unwrap()), ["acme"]);

    // Unchanged lists publish nothing; a refusal neither.
    users.mutate(&k, GrantOrganization::new("acme")).await.unwrap();
    users.mutate(&k, RevokeOrganization { org_id: "beta".into() }).await.unwrap();
    assert_eq!(invalid_field(users.mutate(&k, GrantOrganization::new(String::new())).await), "org_id");
    assert!(futures_util::FutureExt::now_or_never(sub.next()).is_none());

    users.mutate(&k, GrantOrganization::new("beta")).await.unwrap();
    users.mutate(&k, RevokeOrganization { org_id: "acme".into() }).await.unwrap();
    let app = users.read(&k, GetAppSnapshot).await.unwrap();
    assert_eq!(ids(&app), ["beta"]);
    assert_eq!(app.profile.eligible_org_ids, ["beta"]);
    // Without details an organization is listed by its id, role unknown; the active one is the first.
    assert_eq!(app.organizations[0].display_name, "beta");
    assert_eq!(app.organizations[0].role, None);
    assert_eq!(app.active_organization_id.as_deref(), Some("beta"));

    // An organization tells its name and the user's role; a later grant updates them.
    let grant = |role: &str| GrantOrganization {
        org_id: "gamma".into(),
        display_name: Some("Gamma Inc.".into()),
        role: Some(role.into()),
    };
    users.mutate(&k, grant("member")).await.unwrap();
    users.mutate(&k, grant("admin")).await.unwrap();
    let app = users.read(&k, GetAppSnapshot).await.unwrap();
    assert_eq!(ids(&app), ["beta", "gamma"]);
    let gamma = &app.organizations[1];
    assert_eq!((gamma.display_name.as_str(), gamma.role.as_deref()), ("Gamma Inc.", Some("admin")));
    let json = serde_json::to_value(&app).unwrap();
    assert_eq!(
        json["organizations"][1],
        serde_json::json!({ "id": "gamma", "displayName": "Gamma Inc.", "role": "admin" })
    );

    // The active organization is the user's choice while they are a member of it.
    users.mutate(&k, SetActiveOrganization { org_id: "gamma".into() }).await.unwrap();
    assert_eq!(users.read(&k, GetAppSnapshot).await.unwrap().active_organization_id.as_deref(), Some("gamma"));
    users.mutate(&k, RevokeOrganization { org_id: "gamma".into() }).await.unwrap();
    let app = users.read(&k, GetAppSnapshot).await.unwrap();
    assert_eq!((ids(&app), app.active_organization_id.as_deref()), (vec!["beta"], Some("beta")));
    rt.shutdown().await;
}

fn ids(app: &AppSnapshot) -> Vec<&str> {
    app.organizations.iter().map(|o| o.id.as_str()).collect()
}

#[actix_rt::test]
async fn auth_state_survives_a_runtime_restart() {
    let (rt, tmp) = runtime(2);
    let domain = Domain::without_agent(rt.clone());
    let (dir, users, k) = (&domain.auth, &domain.users, "u-ada".to_owned());
    dir.mutate(&dir_key(), index(&hash(1), &k, "as1", FAR)).await.unwrap();
    dir.mutate(&dir_key(), link("github", "42", Some("ada@example.com"), &k)).await.unwrap();
    let verification =
        CreateVerification { state_hash: hash(7), provider: "github".into(), redirect: None, expires_at_ms: FAR };
    dir.mutate(&dir_key(), verification).await.unwrap();
    users.mutate(&k, upsert("Ada")).await.unwrap();
    users.mutate(&k, start("as1", &hash(1), Some("firefox".into()))).await.unwrap();
    users.mutate(&k, oauth("ada", "gho_kept")).await.unwrap();
    users.mutate(&k, GrantOrganization::new("acme")).await.unwrap();
    let sessions = users.read(&k, ListAuthSessions).await.unwrap();
    let accounts = users.read(&k, ListOAuthAccounts).await.unwrap();
    rt.shutdown().await;

    let rt2 = runtime_at(tmp.path(), 2);
    let domain2 = Domain::without_agent(rt2.clone());
    let (dir2, users2) = (&domain2.auth, &domain2.users);
    assert_eq!(resolve(dir2, &hash(1), 0).await.unwrap().session_id, "as1");
    assert_eq!(account_of(dir2, "github", "42").await, Some(k.clone()));
    assert_eq!(dir2.read(&dir_key(), ResolveEmail { email: "ADA@example.com".into() }).await.unwrap(), Some(k.clone()));
    let consumed = dir2.mutate(&dir_key(), ConsumeVerification { state_hash: hash(7), now_ms: 0 }).await.unwrap();
    assert_eq!(consumed.map(|v| v.provider).as_deref(), Some("github"));
    assert_eq!(users2.read(&k, ListAuthSessions).await.unwrap(), sessions);
    assert_eq!(users2.read(&k, ListOAuthAccounts).await.unwrap(), accounts);
    let token = users2.exec(&k, GetOAuthAccessToken { provider: "github".into() }).await.unwrap();
    assert_eq!(token, StoredAccessToken::Token("gho_kept".into()));
    assert_eq!(ids(&users2.read(&k, GetAppSnapshot).await.unwrap()), ["acme"]);
    rt2.shutdown().await;
}
