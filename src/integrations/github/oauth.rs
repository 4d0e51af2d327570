//! GitHub OAuth sign-in (the web application flow): the authorize URL users are sent to, the exchange of the code
//! GitHub hands back for an access token, and who that token belongs to (profile plus a usable email).
//!
//! Sessions, state/CSRF bookkeeping and account linking belong to the HTTP layer; this module only talks to GitHub
//! (or the local [`FakeGitHub`](super::fake::FakeGitHub), which serves the same endpoints).

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::client::error_message;

/// Where GitHub users authorize OAuth apps and codes are exchanged.
pub const DEFAULT_WEB_BASE: &str = "https://github.com";

/// The scopes foundry's sign-in asks for: the profile, the emails, and organization memberships (connecting a GitHub
/// organization checks the caller's admin membership with their token, which needs `read:org`).
pub const SIGN_IN_SCOPES: &str = "read:user user:email read:org";

/// An OAuth app's registration and the GitHub it talks to.
#[derive(Clone)]
pub struct OAuthConfig {
    pub client_id: String,
    pub client_secret: String,
    /// Where users authorize and codes are exchanged: https://github.com (or the fake server's URL).
    pub web_base: String,
    /// REST API base: https://api.github.com (or the fake server's URL).
    pub api_base: String,
    /// Our callback URL registered with the OAuth app (sent as redirect_uri when Some).
    pub redirect_uri: Option<String>,
    /// Space-separated scopes, e.g. "read:user user:email read:org".
    pub scopes: String,
}

// Written by hand so that logging a config (`?config`) cannot leak the client secret.
impl fmt::Debug for OAuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("web_base", &self.web_base)
            .field("api_base", &self.api_base)
            .field("redirect_uri", &self.redirect_uri)
            .field("scopes", &self.scopes)
            .finish()
    }
}

impl OAuthConfig {
    /// The page to send a user to; GitHub redirects back to `redirect_uri` with `code` and this `state`.
    pub fn authorize_url(&self, state: &str) -> String {
        let mut url = format!(
            "{}/login/oauth/authorize?client_id={}&state={}&scope={}",
            self.web_base.trim_end_matches('/'),
            percent_encode(&self.client_id),
            percent_encode(state),
            percent_encode(&self.scopes),
        );
        if let Some(redirect) = &self.redirect_uri {
            url.push_str("&redirect_uri=");
            url.push_str(&percent_encode(redirect));
        }
        url
    }
}

/// The token GitHub grants for a code. `scope` is what the user actually granted, comma-separated as GitHub sends
/// it, which may be less than was asked for.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct OAuthToken {
    pub access_token: String,
    #[serde(default)]
    pub token_type: String,
    #[serde(default)]
    pub scope: String,
}

// Written by hand so that logging a token cannot leak it.
impl fmt::Debug for OAuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthToken")
            .field("access_token", &"<redacted>")
            .field("token_type", &self.token_type)
            .field("scope", &self.scope)
            .finish()
    }
}

/// The GitHub account behind an access token. `email` is the public profile email, else the primary verified one,
/// else `None` (none verified, or the token may not read emails).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitHubUser {
    pub id: i64,
    pub login: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub avatar_url: Option<String>,
}

/// What can go wrong signing in with GitHub.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// The code is wrong, expired or already used: the user should start over. Carries GitHub's description.
    #[error("GitHub rejected the authorization code: {0}")]
    BadCode(String),
    /// Our client id or secret is wrong: a configuration problem, not the user's.
    #[error("GitHub rejected the OAuth app's client credentials: {0}")]
    BadClientCredentials(String),
    /// Any other OAuth error GitHub reports (e.g. `redirect_uri_mismatch`).
    #[error("GitHub OAuth error {error}: {description}")]
    OAuth { error: String, description: String },
    /// The access token is not (or no longer) valid.
    #[error("GitHub rejected the access token (401)")]
    Unauthorized,
    #[error("GitHub answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("cannot reach GitHub: {0}")]
    Transport(String),
    #[error("unexpected answer from GitHub: {0}")]
    Decode(String),
}

/// The OAuth client. Cheap to share behind an `Arc`; reqwest pools connections inside.
pub struct GitHubOAuth {
    config: OAuthConfig,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct UserBody {
    id: i64,
    login: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    avatar_url: Option<String>,
}

#[derive(Deserialize)]
struct EmailBody {
    email: String,
    #[serde(default)]
    primary: bool,
    #[serde(default)]
    verified: bool,
}

impl GitHubOAuth {
    pub fn new(config: OAuthConfig) -> Self {
        let http = crate::integrations::http_client_builder()
            .connect_timeout(Duration::from_secs(10))
            // A user is waiting on the callback page: fail rather than hang.
            .timeout(Duration::from_secs(30))
            .user_agent("foundry")
            .build()
            .unwrap_or_default();
        GitHubOAuth { config, http }
    }

    pub fn config(&self) -> &OAuthConfig {
        &self.config
    }

    /// Trades the `code` from the callback for an access token. GitHub reports a bad code or bad credentials with
    /// a 200 and an `error` field, so the body decides, not the status.
    pub async fn exchange_code(&self, code: &str) -> Result<OAuthToken, OAuthError> {
        let c = &self.config;
        let mut form = vec![("client_id", c.client_id.as_str()), ("client_secret", &c.client_secret), ("code", code)];
        if let Some(redirect) = &c.redirect_uri {
            form.push(("redirect_uri", redirect));
        }
        let body = form.iter().map(|(k, v)| format!("{k}={}", percent_encode(v))).collect::<Vec<_>>().join("&");
        let res = self
            .http
            .post(format!("{}/login/oauth/access_token", c.web_base.trim_end_matches('/')))
            .header("accept", "application/json")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| OAuthError::Transport(e.to_string()))?;
        let status = res.status().as_u16();
        let text = res.text().await.map_err(|e| OAuthError::Transport(e.to_string()))?;
        if !(200..300).contains(&status) {
            return Err(OAuthError::Status { status, message: error_message(&text).unwrap_or_default() });
        }
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| OAuthError::Decode(e.to_string()))?;
        if let Some(error) = value.get("error").and_then(|e| e.as_str()) {
            let description = value.get("error_description").and_then(|d| d.as_str()).unwrap_or_default().to_owned();
            return Err(match error {
                "bad_verification_code" => OAuthError::BadCode(description),
                "incorrect_client_credentials" => OAuthError::BadClientCredentials(description),
                _ => OAuthError::OAuth { error: error.to_owned(), description },
            });
        }
        serde_json::from_value(value).map_err(|e| OAuthError::Decode(e.to_string()))
    }

    /// Who `access_token` belongs to. When the profile email is private, falls back to the primary verified address
    /// of `/user/emails`; a token without the `user:email` scope gets 404 or 403 there, which leaves the email unknown
    /// rather than failing the sign-in.
    pub async fn authenticated_user(&self, access_token: &str) -> Result<GitHubUser, OAuthError> {
        let user: UserBody = match self.api_get("/user", access_token).await? {
            Ok(user) => user,
            Err((status, message)) => return Err(OAuthError::Status { status, message }),
        };
        let email = match user.email.filter(|e| !e.is_empty()) {
            Some(email) => Some(email),
            None => match self.api_get::<Vec<EmailBody>>("/user/emails", access_token).await? {
                Ok(emails) => emails.into_iter().find(|e| e.primary && e.verified).map(|e| e.email),
                Err((status @ (403 | 404), message)) => {
                    tracing::warn!(status, message, "cannot read the GitHub user's emails (scope user:email missing?)");
                    None
                }
                Err((status, message)) => return Err(OAuthError::Status { status, message }),
            },
        };
        Ok(GitHubUser { id: user.id, login: user.login, name: user.name, email, avatar_url: user.avatar_url })
    }

    /// One authenticated GET on the REST API: the decoded body, or the status and message of a non-2xx answer other
    /// than 401 (left to the caller, as what it means depends on the endpoint).
    async fn api_get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        token: &str,
    ) -> Result<Result<T, (u16, String)>, OAuthError> {
        let res = self
            .http
            .get(format!("{}{path}", self.config.api_base.trim_end_matches('/')))
            .header("authorization", format!("Bearer {token}"))
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
            .send()
            .await
            .map_err(|e| OAuthError::Transport(e.to_string()))?;
        let status = res.status().as_u16();
        let text = res.text().await.map_err(|e| OAuthError::Transport(e.to_string()))?;
        match status {
            200..=299 => serde_json::from_str(&text).map(Ok).map_err(|e| OAuthError::Decode(e.to_string())),
            401 => Err(OAuthError::Unauthorized),
            _ => Ok(Err((status, error_message(&text).unwrap_or_default()))),
        }
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so the result is safe in a query string and in
/// an `application/x-www-form-urlencoded` body alike (spaces become `%20`, which both accept).
pub(crate) fn percent_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> OAuthConfig {
        OAuthConfig {
            client_id: "Iv1.abc123".to_string(),
            client_secret: "s3cret".to_string(),
            web_base: "https://github.com/".to_string(),
            api_base: "https://api.github.com".to_string(),
            redirect_uri: Some("https://foundry.example/auth/github/callback?next=/a b".to_string()),
            scopes: "read:user user:email read:org".to_string(),
        }
    }

    #[test]
    fn percent_encode_keeps_only_unreserved() {
        assert_eq!(percent_encode("AZaz09-._~"), "AZaz09-._~");
        assert_eq!(percent_encode("a b&c=d/e?f#g+h%"), "a%20b%26c%3Dd%2Fe%3Ff%23g%2Bh%25");
        assert_eq!(percent_encode("é"), "%C3%A9");
        assert_eq!(percent_encode(""), "");
    }

    #[test]
    fn authorize_url_is_encoded_and_ordered() {
        let url = config().authorize_url("st&te=1");
        assert_eq!(
            url,
            "https://github.com/login/oauth/authorize?client_id=Iv1.abc123&state=st%26te%3D1\
             &scope=read%3Auser%20user%3Aemail%20read%3Aorg\
             &redirect_uri=https%3A%2F%2Ffoundry.example%2Fauth%2Fgithub%2Fcallback%3Fnext%3D%2Fa%20b"
        );
        let without = OAuthConfig { redirect_uri: None, ..config() }.authorize_url("x");
        assert!(!without.contains("redirect_uri"), "{without}");
        assert!(without.ends_with("&scope=read%3Auser%20user%3Aemail%20read%3Aorg"), "{without}");
    }

    #[test]
    fn debug_output_hides_secrets() {
        let shown = format!("{:?}", config());
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("Iv1.abc123"), "{shown}");
        let token = OAuthToken {
            access_token: "gho_sensitive".to_string(),
            token_type: "bearer".to_string(),
            scope: "read:user".to_string(),
        };
        let shown = format!("{token:?}");
        assert!(!shown.contains("gho_sensitive") && shown.contains("read:user"), "{shown}");
    }
}
