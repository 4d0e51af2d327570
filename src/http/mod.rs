//! The web layer. For now: health and readiness routes; the domain API and WebSocket topics come with the HTTP issue.

use actix_web::{web, HttpResponse};
use serde::Serialize;

use crate::runtime::Runtime;

#[derive(Serialize)]
struct Health {
    status: &'static str,
    live_actors: usize,
}

async fn healthz(rt: web::Data<Runtime>) -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok", live_actors: rt.live_actors() })
}

/// Registers the routes on an actix-web app.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz)).route("/readyz", web::get().to(healthz));
}
