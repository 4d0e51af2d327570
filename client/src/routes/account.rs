//! Sign-in and the caller's sessions (`/v1/auth/*`), the caller's own state (`/v1/me/*`) and the model catalog.

use reqwest::Method;

use super::seg;
use crate::client::json;
use crate::types::{
    ActiveOrgBody, AppSnapshot, AuthSessionInfo, CatalogModel, DevSignIn, ModelBody, ProfileBody, Revoked, SignedIn,
    StarterBody, StarterChoice, WhoAmI,
};
use crate::{Client, Result};

impl Client {
    /// `POST /v1/auth/dev/sign-in`: signs in by login (servers that enable it only). Use the answer's token with
    /// [`Client::with_token`].
    pub async fn dev_sign_in(&self, body: &DevSignIn) -> Result<SignedIn> {
        self.call(Method::POST, "/v1/auth/dev/sign-in", json(body)).await
    }

    /// Dev sign-in as `login`, answering a client signed in with the new session.
    pub async fn signed_in_as(&self, login: &str) -> Result<Client> {
        let body = DevSignIn { login: login.to_owned(), name: None, email: None };
        let signed = self.dev_sign_in(&body).await?;
        Ok(self.clone().with_token(signed.token))
    }

    /// `POST /v1/auth/sign-out`: ends this client's session.
    pub async fn sign_out(&self) -> Result<()> {
        self.call_empty(Method::POST, "/v1/auth/sign-out", None).await
    }

    /// `GET /v1/auth/whoami`.
    pub async fn whoami(&self) -> Result<WhoAmI> {
        self.call(Method::GET, "/v1/auth/whoami", None).await
    }

    /// `GET /v1/auth/sessions`: the caller's sessions (never tokens).
    pub async fn auth_sessions(&self) -> Result<Vec<AuthSessionInfo>> {
        self.call(Method::GET, "/v1/auth/sessions", None).await
    }

    /// `DELETE /v1/auth/sessions/{id}`: revokes one of the caller's sessions.
    pub async fn revoke_auth_session(&self, session_id: &str) -> Result<()> {
        self.call_empty(Method::DELETE, &format!("/v1/auth/sessions/{}", seg(session_id)), None).await
    }

    /// `DELETE /v1/auth/sessions`: signs out everywhere.
    pub async fn revoke_all_auth_sessions(&self) -> Result<Revoked> {
        self.call(Method::DELETE, "/v1/auth/sessions", None).await
    }

    /// `GET /v1/me`: the caller's `app` snapshot.
    pub async fn me(&self) -> Result<AppSnapshot> {
        self.call(Method::GET, "/v1/me", None).await
    }

    /// `PATCH /v1/me`: display name and avatar.
    pub async fn update_me(&self, body: &ProfileBody) -> Result<AppSnapshot> {
        self.call(Method::PATCH, "/v1/me", json(body)).await
    }

    /// `PUT /v1/me/default-model`.
    pub async fn set_default_model(&self, model: &str) -> Result<AppSnapshot> {
        self.call(Method::PUT, "/v1/me/default-model", json(&ModelBody { model: model.to_owned() })).await
    }

    /// `PUT /v1/me/starter-repo`.
    pub async fn set_starter_repo(&self, status: StarterChoice) -> Result<AppSnapshot> {
        self.call(Method::PUT, "/v1/me/starter-repo", json(&StarterBody { status })).await
    }

    /// `PUT /v1/me/active-organization`: where the caller's app opens.
    pub async fn set_active_organization(&self, org: &str) -> Result<AppSnapshot> {
        let body = ActiveOrgBody { org_id: org.to_owned() };
        self.call(Method::PUT, "/v1/me/active-organization", json(&body)).await
    }

    /// `GET /v1/models`: the model catalog.
    pub async fn models(&self) -> Result<Vec<CatalogModel>> {
        self.call(Method::GET, "/v1/models", None).await
    }

    /// `GET /v1/openapi.json`: the API's OpenAPI 3.1 document.
    pub async fn openapi(&self) -> Result<serde_json::Value> {
        self.call(Method::GET, "/v1/openapi.json", None).await
    }
}
