//! `POST /v1/webhooks/github`: GitHub webhook deliveries. The HMAC-SHA256 signature over the raw body is checked
//! before anything else (401, no effect, when it does not match); the delivery then goes to the github-data actor
//! of the organization connected to the GitHub account it concerns, found by the account's numeric id (installation
//! account, organization, repository owner), never by login: organization ids are foundry's own names, and a login
//! can be renamed or taken over. It is applied once per delivery id.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::replies::{DeliveryOutcome, Pong, WebhookAnswer};
use super::{ApiError, MAX_WEBHOOK_BODY};
use crate::actors::auth_directory::{ResolveGitHubAccount, AUTH_DIRECTORY_KEY};
use crate::actors::github_data::{delivery_account, verify_signature, HandleWebhook};

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// `POST /v1/webhooks/github`: one signed delivery from GitHub (404 unless the server has a webhook secret).
#[utoipa::path(post, path = "/v1/webhooks/github", tag = "webhooks",
    params(
        ("X-Hub-Signature-256" = String, Header,
            description = "`sha256=` + the HMAC-SHA256 of the body with the webhook secret"),
        ("X-GitHub-Event" = String, Header, description = "The event"),
        ("X-GitHub-Delivery" = String, Header, description = "The delivery's id (applied once)"),
    ),
    request_body(content = Object, description = "GitHub's payload", content_type = "application/json"),
    responses(
        (status = 200, description = "A `ping`", body = WebhookAnswer),
        (status = 202, description = "Handled", body = WebhookAnswer),
        (status = 401, response = super::openapi::Unauthenticated),
        (status = 404, response = super::openapi::NotFound),
        (status = 422, response = super::openapi::Unprocessable),
    ))]
pub(super) async fn github_webhook(req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let api = super::api(&req)?;
    let secret = api.webhook_secret.as_deref().ok_or_else(|| ApiError::not_found("webhooks are not configured"))?;
    if !verify_signature(secret, &body, header(&req, "x-hub-signature-256")) {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid_signature", "signature does not match"));
    }
    let event = header(&req, "x-github-event")
        .ok_or_else(|| ApiError::bad_request("invalid_header", "X-GitHub-Event is required"))?;
    let delivery_id = header(&req, "x-github-delivery")
        .ok_or_else(|| ApiError::bad_request("invalid_header", "X-GitHub-Delivery is required"))?;
    let payload: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("malformed_json", e.to_string()))?;
    if event == "ping" {
        return Ok(HttpResponse::Ok().json(WebhookAnswer { outcome: DeliveryOutcome::Ping(Pong::Pong) }));
    }
    let (account_id, login) = delivery_account(&payload).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable",
            "no GitHub account (with its id) in the payload",
        )
    })?;
    // Deliveries for accounts no organization connected are refused before any actor (or database) exists for them.
    let resolve = ResolveGitHubAccount { account_id };
    let org = api.domain.auth.read(&AUTH_DIRECTORY_KEY.to_owned(), resolve).await?.ok_or_else(|| {
        ApiError::not_found(format!("no organization is connected to GitHub account {login:?} (id {account_id})"))
    })?;
    let msg = HandleWebhook { delivery_id: delivery_id.to_owned(), event: event.to_owned(), payload };
    let outcome = api.domain.github.exec_existing(&org, msg).await?;
    Ok(HttpResponse::Accepted().json(WebhookAnswer { outcome: DeliveryOutcome::Delivery(outcome) }))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    // The guard makes other methods fall through to the JSON 404 like every other route's (a resource answers an
    // unmatched method itself with an empty 405).
    cfg.service(
        web::resource("/webhooks/github")
            .guard(actix_web::guard::Post())
            .app_data(web::PayloadConfig::new(MAX_WEBHOOK_BODY))
            .route(web::post().to(github_webhook)),
    );
}
