//! GitHub App authentication: the App's RSA key signs short-lived JWTs (RS256), which buy per-installation access
//! tokens (`POST /app/installations/{id}/access_tokens`); [`AppClient`] is a [`GitHubApi`] that picks each call's
//! installation from the repository or account owner and delegates to a [`GitHubClient`] holding that
//! installation's token. A connected account's installation is found by the account's numeric id (in the App's
//! installation list), not by its login: a renamed account keeps its installation, and a login someone else took over
//! never leads to their installation.
//!
//! Installation ids and tokens are cached; a token is reused until 5 minutes before it expires. An installation that
//! stopped existing (uninstalled, reinstalled) is forgotten when its token exchange answers 404. PEM and base64 are
//! decoded here rather than with another crate: the few lines below are all the JWT and key loading need.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde::Deserialize;

use super::client::parse_rfc3339_ms;
use super::client::{
    Account, AccountKind, AccountRef, Branch, GitHubApi, GitHubClient, GitHubError, MergeMethod, MergeOutcome, Page,
    PullRequest, PullState, Repository, RetryPolicy,
};

type Res<T> = Result<T, GitHubError>;

/// A token is refreshed this long before GitHub says it expires, so a call never starts with a token about to lapse.
const REFRESH_MARGIN_MS: i64 = 5 * 60 * 1000;
/// GitHub allows JWTs of at most 10 minutes; issuing 60 s in the past absorbs clock drift (GitHub's advice).
const JWT_BACKDATE_SECS: u64 = 60;
const JWT_LIFETIME_SECS: u64 = 540;

/// What can go wrong loading an App key or signing with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    #[error("invalid GitHub App private key: {0}")]
    InvalidKey(String),
    #[error("invalid GitHub App id {0:?}")]
    InvalidAppId(String),
    #[error("could not sign the GitHub App JWT")]
    Signing,
}

#[derive(Deserialize)]
struct AccessToken {
    token: String,
    expires_at: String,
}

#[derive(Deserialize)]
struct Installation {
    id: i64,
    #[serde(default)]
    account: Option<Account>,
}

struct CachedToken {
    token: String,
    /// Epoch ms after which the token is no longer handed out.
    refresh_at_ms: i64,
}

/// A GitHub App: its id and private key, with the installation ids and tokens obtained so far.
pub struct GitHubApp {
    app_id: String,
    key: RsaKeyPair,
    rng: SystemRandom,
    /// Authenticates nothing by itself: each App call uses a copy carrying a fresh JWT.
    http: GitHubClient,
    tokens: Mutex<HashMap<i64, CachedToken>>,
    /// (kind, lowercased login) -> (installation id, the account's id).
    installations: Mutex<HashMap<(AccountKind, String), (i64, u64)>>,
    /// Account id -> installation id.
    by_account: Mutex<HashMap<u64, i64>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl GitHubApp {
    /// `private_key_pem`: PKCS#1 (`BEGIN RSA PRIVATE KEY`, what GitHub hands out) or PKCS#8 (`BEGIN PRIVATE KEY`).
    pub fn new(app_id: &str, private_key_pem: &str, api_base: &str) -> Result<GitHubApp, AppError> {
        Self::with_policy(app_id, private_key_pem, api_base, RetryPolicy::default())
    }

    pub fn with_policy(
        app_id: &str,
        private_key_pem: &str,
        api_base: &str,
        policy: RetryPolicy,
    ) -> Result<GitHubApp, AppError> {
        let app_id = app_id.trim();
        if app_id.is_empty() || !app_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_') {
            return Err(AppError::InvalidAppId(app_id.to_owned()));
        }
        let (label, der) = pem_decode(private_key_pem).ok_or_else(|| AppError::InvalidKey("not a PEM block".into()))?;
        let key = match label.as_str() {
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der),
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der),
            other => return Err(AppError::InvalidKey(format!("unsupported PEM block {other:?}"))),
        }
        .map_err(|e| AppError::InvalidKey(e.to_string()))?;
        Ok(GitHubApp {
            app_id: app_id.to_owned(),
            key,
            rng: SystemRandom::new(),
            http: GitHubClient::with_policy(api_base, "", policy),
            tokens: Mutex::new(HashMap::new()),
            installations: Mutex::new(HashMap::new()),
            by_account: Mutex::new(HashMap::new()),
        })
    }

    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// The public key (PKCS#1 `RSAPublicKey` DER), as a verifier needs it.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.key.public().as_ref().to_vec()
    }

    /// An RS256 JWT for App endpoints, valid from `now_unix - 60` to `now_unix + 540`.
    pub fn jwt(&self, now_unix: u64) -> Result<String, AppError> {
        let header = base64url(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = serde_json::json!({
            "iat": now_unix.saturating_sub(JWT_BACKDATE_SECS),
            "exp": now_unix + JWT_LIFETIME_SECS,
            "iss": self.app_id,
        });
        let signed = format!("{header}.{}", base64url(claims.to_string().as_bytes()));
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &self.rng, signed.as_bytes(), &mut signature)
            .map_err(|_| AppError::Signing)?;
        Ok(format!("{signed}.{}", base64url(&signature)))
    }

    fn app_client(&self) -> Res<GitHubClient> {
        let jwt = self.jwt(now_unix()).map_err(|e| GitHubError::Unexpected { status: 0, message: e.to_string() })?;
        Ok(self.http.with_token(&jwt))
    }

    /// An access token for the installation, from the cache while it has more than 5 minutes left.
    pub async fn installation_token(&self, installation_id: i64) -> Res<String> {
        let now_ms = (now_unix() * 1000) as i64;
        if let Some(cached) = lock(&self.tokens).get(&installation_id).filter(|c| c.refresh_at_ms > now_ms) {
            return Ok(cached.token.clone());
        }
        let path = format!("/app/installations/{installation_id}/access_tokens");
        let issued: AccessToken = self.app_client()?.post_json(&path).await?;
        let expires_ms = parse_rfc3339_ms(&issued.expires_at)
            .ok_or_else(|| GitHubError::Decode(format!("expires_at {:?}", issued.expires_at)))?;
        let cached = CachedToken { token: issued.token.clone(), refresh_at_ms: expires_ms - REFRESH_MARGIN_MS };
        lock(&self.tokens).insert(installation_id, cached);
        Ok(issued.token)
    }

    /// The id of the App's installation on an organization or user account, by login (cached).
    pub async fn installation_for(&self, owner: &str, kind: AccountKind) -> Res<i64> {
        let key = (kind, owner.to_ascii_lowercase());
        if let Some((id, _)) = lock(&self.installations).get(&key) {
            return Ok(*id);
        }
        let path = match kind {
            AccountKind::Organization => format!("/orgs/{owner}/installation"),
            AccountKind::User => format!("/users/{owner}/installation"),
        };
        let installation: Installation = self.app_client()?.get_json(&path).await?;
        let account = installation.account.map_or(0, |a| a.id);
        lock(&self.installations).insert(key, (installation.id, account));
        if account > 0 {
            lock(&self.by_account).insert(account, installation.id);
        }
        Ok(installation.id)
    }

    /// The id of the App's installation on the GitHub account `account_id` (cached), found in the App's installation
    /// list by the account's id: [`GitHubError::NotFound`] when the App is not installed there.
    pub async fn installation_for_account(&self, account_id: u64) -> Res<i64> {
        if let Some(id) = lock(&self.by_account).get(&account_id) {
            return Ok(*id);
        }
        let all = self.app_client()?.app_installations().await?;
        let mut by_account = lock(&self.by_account);
        for i in &all {
            by_account.insert(i.account.id, i.id);
        }
        by_account.get(&account_id).copied().ok_or_else(|| {
            GitHubError::NotFound(format!("the GitHub App is not installed on GitHub account {account_id}"))
        })
    }

    /// Forgets an installation and its token (it answered 404: uninstalled, or replaced by a new installation).
    pub fn forget_installation(&self, installation_id: i64) {
        lock(&self.tokens).remove(&installation_id);
        lock(&self.installations).retain(|_, (id, _)| *id != installation_id);
        lock(&self.by_account).retain(|_, id| *id != installation_id);
    }
}

/// The installation serving one owner, and the client for its current token.
struct OwnerEntry {
    installation: i64,
    /// The account id the installation was found by, when known.
    account: Option<u64>,
    client: Option<Arc<GitHubClient>>,
}

/// A [`GitHubApi`] authenticated as a GitHub App installation per owner.
pub struct AppClient {
    app: Arc<GitHubApp>,
    /// Async because resolving an owner awaits GitHub: concurrent first calls wait for one token exchange instead of
    /// each requesting their own.
    owners: tokio::sync::Mutex<HashMap<String, OwnerEntry>>,
}

fn no_owner(what: &str) -> GitHubError {
    GitHubError::Unexpected {
        status: 0,
        message: format!("{what} has no owner to pick a GitHub App installation from; use repos_page"),
    }
}

fn owner_of(full_name: &str) -> &str {
    full_name.split_once('/').map_or(full_name, |(owner, _)| owner)
}

impl AppClient {
    pub fn new(app: Arc<GitHubApp>) -> AppClient {
        AppClient { app, owners: tokio::sync::Mutex::new(HashMap::new()) }
    }

    pub fn app(&self) -> &GitHubApp {
        &self.app
    }

    /// The client for `owner`'s installation: by the account's id when known (a connected account), else by login.
    /// Without a `kind` (a repository's owner), an organization installation is looked for first, then a user one.
    async fn client_for(&self, owner: &str, kind: Option<AccountKind>, account: Option<u64>) -> Res<Arc<GitHubClient>> {
        let mut owners = self.owners.lock().await;
        let key = owner.to_ascii_lowercase();
        let cached = owners.get(&key).filter(|e| account.is_none() || e.account == account).map(|e| e.installation);
        let installation = match (cached, account) {
            (Some(installation), _) => installation,
            (None, Some(id)) => self.app.installation_for_account(id).await?,
            (None, None) => match kind {
                Some(kind) => self.app.installation_for(owner, kind).await?,
                None => match self.app.installation_for(owner, AccountKind::Organization).await {
                    Err(GitHubError::NotFound(_)) => self.app.installation_for(owner, AccountKind::User).await?,
                    other => other?,
                },
            },
        };
        let token = match self.app.installation_token(installation).await {
            Ok(token) => token,
            Err(e @ GitHubError::NotFound(_)) => {
                // Gone: the next call looks the owner up afresh.
                self.app.forget_installation(installation);
                owners.remove(&key);
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        if owners.get(&key).is_some_and(|e| e.installation != installation) {
            owners.remove(&key);
        }
        let entry = owners.entry(key).or_insert(OwnerEntry { installation, account, client: None });
        if account.is_some() {
            entry.account = account;
        }
        match &entry.client {
            Some(client) if client.token() == token => Ok(client.clone()),
            _ => {
                let client = Arc::new(self.app.http.with_token(&token));
                entry.client = Some(client.clone());
                Ok(client)
            }
        }
    }
}

impl GitHubApi for AppClient {
    fn repos_page(&self, account: &AccountRef, next: Option<String>) -> BoxFuture<'_, Res<Page<Repository>>> {
        let account = account.clone();
        Box::pin(async move {
            let client = self.client_for(&account.login, Some(account.kind), account.id).await?;
            match account.kind {
                AccountKind::Organization => client.repos_page(&account, next).await,
                // An installation token has no user behind it (`/user/repos` answers 403); its repositories are the
                // ones installed on the account.
                AccountKind::User => client.installation_repos_page(next).await,
            }
        })
    }

    fn list_org_repos(&self, org: &str) -> BoxFuture<'_, Res<Vec<Repository>>> {
        let org = org.to_owned();
        Box::pin(async move {
            self.client_for(&org, Some(AccountKind::Organization), None).await?.list_org_repos(&org).await
        })
    }

    fn list_user_repos(&self) -> BoxFuture<'_, Res<Vec<Repository>>> {
        Box::pin(async { Err(no_owner("list_user_repos")) })
    }

    fn list_installation_repos(&self) -> BoxFuture<'_, Res<Vec<Repository>>> {
        Box::pin(async { Err(no_owner("list_installation_repos")) })
    }

    fn get_repo(&self, full_name: &str) -> BoxFuture<'_, Res<Repository>> {
        let full_name = full_name.to_owned();
        Box::pin(async move { self.client_for(owner_of(&full_name), None, None).await?.get_repo(&full_name).await })
    }

    fn list_branches(&self, full_name: &str) -> BoxFuture<'_, Res<Vec<Branch>>> {
        let full_name = full_name.to_owned();
        Box::pin(
            async move { self.client_for(owner_of(&full_name), None, None).await?.list_branches(&full_name).await },
        )
    }

    fn list_pulls(&self, full_name: &str, state: PullState, limit: usize) -> BoxFuture<'_, Res<Vec<PullRequest>>> {
        let full_name = full_name.to_owned();
        Box::pin(async move {
            self.client_for(owner_of(&full_name), None, None).await?.list_pulls(&full_name, state, limit).await
        })
    }

    fn get_pull(&self, full_name: &str, number: u64) -> BoxFuture<'_, Res<PullRequest>> {
        let full_name = full_name.to_owned();
        Box::pin(
            async move { self.client_for(owner_of(&full_name), None, None).await?.get_pull(&full_name, number).await },
        )
    }

    fn list_org_members(&self, org: &str) -> BoxFuture<'_, Res<Vec<Account>>> {
        let org = org.to_owned();
        Box::pin(async move {
            self.client_for(&org, Some(AccountKind::Organization), None).await?.list_org_members(&org).await
        })
    }

    fn create_pull(
        &self,
        full_name: &str,
        head: &str,
        base: &str,
        title: &str,
        body: Option<&str>,
        draft: bool,
    ) -> BoxFuture<'_, Res<PullRequest>> {
        let (full_name, head, base, title) = (full_name.to_owned(), head.to_owned(), base.to_owned(), title.to_owned());
        let body = body.map(str::to_owned);
        Box::pin(async move {
            let client = self.client_for(owner_of(&full_name), None, None).await?;
            client.create_pull(&full_name, &head, &base, &title, body.as_deref(), draft).await
        })
    }

    fn merge_pull(
        &self,
        full_name: &str,
        number: u64,
        method: MergeMethod,
        expected_head_sha: Option<&str>,
    ) -> BoxFuture<'_, Res<MergeOutcome>> {
        let full_name = full_name.to_owned();
        let expected = expected_head_sha.map(str::to_owned);
        Box::pin(async move {
            let client = self.client_for(owner_of(&full_name), None, None).await?;
            client.merge_pull(&full_name, number, method, expected.as_deref()).await
        })
    }

    fn update_pull_state(&self, full_name: &str, number: u64, open: bool) -> BoxFuture<'_, Res<PullRequest>> {
        let full_name = full_name.to_owned();
        Box::pin(async move {
            self.client_for(owner_of(&full_name), None, None).await?.update_pull_state(&full_name, number, open).await
        })
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Base64url without padding (RFC 7515's encoding for JWT parts).
pub fn base64url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            let c = B64[(n >> (18 - 6 * i) & 63) as usize];
            out.push(match c {
                b'+' => '-',
                b'/' => '_',
                c => c as char,
            });
        }
    }
    out
}

/// Decodes standard or url-safe base64, padded or not, ignoring whitespace; `None` on any other character.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The label and DER of the first PEM block (`-----BEGIN <label>-----`).
fn pem_decode(pem: &str) -> Option<(String, Vec<u8>)> {
    let start = pem.find("-----BEGIN ")? + "-----BEGIN ".len();
    let (label, rest) = pem[start..].split_once("-----")?;
    let end = rest.find(&format!("-----END {label}-----"))?;
    let der = base64_decode(&rest[..end])?;
    (!der.is_empty()).then(|| (label.to_owned(), der))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};

    const PKCS1: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/github-app-test-key.pem"));
    const PKCS8: &str =
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/github-app-test-key-pkcs8.pem"));

    fn json_part(part: &str) -> serde_json::Value {
        serde_json::from_slice(&base64_decode(part).unwrap()).unwrap()
    }

    #[test]
    fn jwt_has_githubs_shape_and_verifies() {
        let app = GitHubApp::new("12345", PKCS1, "http://127.0.0.1:1").unwrap();
        let jwt = app.jwt(1_700_000_000).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3, "{jwt}");
        for part in &parts {
            assert!(part.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'), "base64url: {part}");
        }
        assert_eq!(json_part(parts[0]), serde_json::json!({"alg": "RS256", "typ": "JWT"}));
        assert_eq!(
            json_part(parts[1]),
            serde_json::json!({"iat": 1_699_999_940, "exp": 1_700_000_540, "iss": "12345"})
        );
        let signature = base64_decode(parts[2]).unwrap();
        assert_eq!(signature.len(), 256);
        let public = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, app.public_key_der());
        let signed = format!("{}.{}", parts[0], parts[1]);
        public.verify(signed.as_bytes(), &signature).expect("the signature verifies with the public key");
        assert!(public.verify(format!("{signed}x").as_bytes(), &signature).is_err(), "and only for that message");
    }

    #[test]
    fn pkcs1_and_pkcs8_keys_load_and_differ() {
        let a = GitHubApp::new("1", PKCS1, "http://x").unwrap();
        let b = GitHubApp::new("1", PKCS8, "http://x").unwrap();
        assert_ne!(a.public_key_der(), b.public_key_der());
        // Windows line endings and surrounding text are tolerated.
        let crlf = format!("key for app 1\r\n{}", PKCS8.replace('\n', "\r\n"));
        assert_eq!(GitHubApp::new("1", &crlf, "http://x").unwrap().public_key_der(), b.public_key_der());
    }

    #[test]
    fn garbage_keys_and_ids_are_errors() {
        let err = |pem: &str| GitHubApp::new("1", pem, "http://x").err().unwrap();
        assert!(matches!(err("not a key"), AppError::InvalidKey(_)));
        assert!(matches!(
            err("-----BEGIN RSA PRIVATE KEY-----\n!!!\n-----END RSA PRIVATE KEY-----"),
            AppError::InvalidKey(_)
        ));
        assert!(matches!(
            err("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----"),
            AppError::InvalidKey(_)
        ));
        // A PKCS#8 body under the PKCS#1 label is refused, not guessed.
        let mislabelled = PKCS8.replace("PRIVATE KEY", "RSA PRIVATE KEY");
        assert!(matches!(err(&mislabelled), AppError::InvalidKey(_)));
        assert!(matches!(err("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"), AppError::InvalidKey(_)));
        assert!(matches!(GitHubApp::new("", PKCS1, "http://x").err().unwrap(), AppError::InvalidAppId(_)));
        assert!(matches!(GitHubApp::new("1\"}", PKCS1, "http://x").err().unwrap(), AppError::InvalidAppId(_)));
    }

    #[test]
    fn base64_round_trips() {
        for input in [&b""[..], b"f", b"fo", b"foo", b"foob", b"fooba", b"foobar", &[0xfb, 0xff, 0xfe]] {
            assert_eq!(base64_decode(&base64url(input)).unwrap(), input);
        }
        assert_eq!(base64url(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(base64_decode("Zm9vYg==").unwrap(), b"foob");
        assert_eq!(base64_decode("a*b"), None);
    }
}
