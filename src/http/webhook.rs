//! `POST /v1/webhooks/github`: GitHub webhook deliveries. The HMAC-SHA256 signature over the raw body is checked
//! before anything else (401, no effect, when it does not match); the delivery then goes to the github-data actor
//! of the organization it concerns, which applies it once per delivery id.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::{ApiError, MAX_WEBHOOK_BODY};
use crate::actors::github_data::{verify_signature, HandleWebhook};
use crate::actors::organization::GetOrganizationProfile;
use crate::actors::validate;

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The organization a delivery concerns: organization ids are GitHub logins.
fn owner_login(payload: &serde_json::Value) -> Option<&str> {
    payload["organization"]["login"]
        .as_str()
        .or_else(|| payload["repository"]["owner"]["login"].as_str())
        .or_else(|| payload["installation"]["account"]["login"].as_str())
}

async fn github_webhook(req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, ApiError> {
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
        return Ok(HttpResponse::Ok().json(serde_json::json!({ "outcome": "pong" })));
    }
    let org = owner_login(&payload)
        .ok_or_else(|| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", "no organization in the payload")
        })?
        .to_owned();
    validate::org_id("organization", &org)?;
    // Unknown organizations are refused before an actor (and its database) is created for them. GitHub logins are
    // case-insensitive: an organization created as `acme` receives `Acme`'s deliveries.
    let org = match api.domain.orgs.read_existing(&org, GetOrganizationProfile).await {
        Ok(_) => org,
        Err(_) if org != org.to_lowercase() => {
            let lower = org.to_lowercase();
            api.domain.orgs.read_existing(&lower, GetOrganizationProfile).await?;
            lower
        }
        Err(e) => return Err(e.into()),
    };
    let msg = HandleWebhook { delivery_id: delivery_id.to_owned(), event: event.to_owned(), payload };
    let outcome = api.domain.github.exec(&org, msg).await?;
    Ok(HttpResponse::Accepted().json(serde_json::json!({ "outcome": outcome })))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/webhooks/github")
            .app_data(web::PayloadConfig::new(MAX_WEBHOOK_BODY))
            .route(web::post().to(github_webhook)),
    );
}
