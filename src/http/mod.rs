//! The web layer (actix-web): the JSON API under `/v1`, WebSocket topic subscriptions (`/v1/ws`), the GitHub
//! webhook, the operational routes (`/healthz`, `/readyz`, `/metrics`) and the browser app at `/` (`webapp`).
//!
//! Every route under `/v1` except sign-in and the webhook takes a [`Caller`] (401 without a valid session) and
//! checks membership of the organization in its path ([`member`]: 404 for an unknown organization, 403 for a
//! non-member). Handlers translate requests into domain messages; every failure is an [`ApiError`] JSON body.
//! `/v1/admin` (`admin`) is the runtime inspector, for server admins only.

mod admin;
pub mod auth;
mod body;
mod error;
pub mod frames;
pub mod idempotency;
pub mod limits;
mod me;
pub mod openapi;
mod ops;
mod orgs;
mod processes;
mod replies;
pub mod session_cache;
mod tasks;
mod webapp;
mod webhook;
pub mod ws;

/// The API's request and response bodies and the WebSocket frames: the types the handlers themselves parse and
/// serialise, gathered for clients (the `foundry-client` crate re-exports this module), so a client cannot drift from
/// the server.
pub mod wire {
    pub use super::admin::{ActorsQuery, DumpQuery, QueryBody};
    pub use super::auth::{DevSignIn, SignedIn};
    pub use super::frames::{AnyKey, AppKey, ClientFrame, ServerFrame, TopicKey, TopicName, TopicSnapshot};
    pub use super::me::{ActiveOrgBody, ModelBody, ProfileBody, StarterBody, StarterChoice};
    pub use super::orgs::{AddRepoBody, AdminOp, AuditQuery, ConnectBody, CreateOrgBody, InviteBody, MemberBody};
    pub use super::processes::ProcessSignal;
    pub use super::replies::{
        AdminOutcome, GitHubConnection, OrganizationList, ProcessLogs, PullRequestOpened, Rebuilt, Revoked,
        SessionCommandOutcome, SyncStarted, TaskActionOutcome, TaskCreated, TaskStatusChanged, WhoAmI,
    };
    pub use super::tasks::{
        ActionBody, ActiveSessionBody, CreateSessionBody, CreateTaskBody, DiffQuery, DraftBody, InterruptBody,
        RenameBody, SteerBody, TaskAction, TaskNamesBody, TextBody, UnreadBody, UpdateSessionBody,
    };
    pub use crate::actors::audit_log::{AuditEvent, AuditPage};
    pub use crate::actors::domain::TaskView;
    pub use crate::actors::github_data::schema::Meta;
    pub use crate::actors::github_data::SyncStatus;
    pub use crate::actors::keys::{RepoKey, SessionKey, TaskKey};
    pub use crate::actors::models::CatalogModel;
    pub use crate::actors::organization::schema::{MemberRow, ProfileRow, RepoRow};
    pub use crate::actors::organization::{MemberRole, OrgKind, OrganizationSnapshot};
    pub use crate::actors::repository::TaskNames;
    pub use crate::actors::session::{SessionDetail, SessionState, Submitted, TranscriptItem};
    pub use crate::actors::summary::{PullRequestSummary, SessionStatus, SessionSummary, TaskStatus, TaskSummary};
    pub use crate::actors::task::processes::{ProcessRow, ProcessesSnapshot};
    pub use crate::actors::task::{GitOperationEvent, TaskDetail, TaskViewer, WorkspaceView};
    pub use crate::actors::user::{AppSnapshot, AuthSessionInfo, DraftAttachment, OrganizationEntry, TaskOverlay};
    pub use crate::integrations::github::client::AccountKind;
    pub use crate::integrations::sandbox::{LogEntry, ProcessSpec};
    pub use crate::integrations::workspace::GitState;
    pub use crate::runtime::inspect::{
        ActorDetail, ActorPage, ActorState, ActorSummary, KindView, QueryAnswer, RuntimeView, TableDump, TableInfo,
        TopicView, TraceEntry, TraceKind, TraceOutcome, TraceView,
    };
    pub use crate::runtime::patch::{apply as apply_patch, PatchError, PatchOp};
}

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};

pub use admin::MAX_SERVER_ADMINS;
pub use auth::{AuthSettings, Caller, DevGitHub, DevIdentity};
pub use error::ApiError;
pub use limits::{RateLimit, RateLimits};
pub use ops::render_metrics;

use crate::actors::organization::{GetMember, MemberRole, MemberRow};
use crate::actors::{validate, Domain};
use crate::runtime::Backpressure;

/// How the per-request checks (session token, membership) wait for a busy actor: a burst queues briefly instead of
/// being refused at once; past this the request fails with 503 and `Retry-After`.
pub(crate) const CHECK_BACKPRESSURE: Backpressure = Backpressure::WaitUpTo(std::time::Duration::from_secs(2));

/// Largest JSON request body (prompts are at most 64 KiB; drafts carry attachments).
pub const MAX_JSON_BODY: usize = 256 * 1024;
/// Largest webhook body GitHub sends (25 MB).
pub const MAX_WEBHOOK_BODY: usize = 25 * 1024 * 1024;
/// How long this node trusts a resolved session token without asking the auth directory again. Sign-outs made here
/// take effect at once regardless; this only bounds how stale a revocation made elsewhere can be.
const SESSION_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// Counters of the web layer, exported on `/metrics`.
#[derive(Default)]
pub struct HttpStats {
    pub ws_sessions: AtomicU64,
    pub ws_opened: AtomicU64,
    pub ws_frames: AtomicU64,
    pub ws_dropped: AtomicU64,
    /// Responses of `/v1` by status class: 2xx, 3xx, 4xx, 5xx.
    pub responses: [AtomicU64; 4],
    /// Requests refused by a rate limit (429 `rate_limited`).
    pub rate_limited: AtomicU64,
}

impl HttpStats {
    fn count(&self, status: u16) {
        let class = (status / 100).clamp(2, 5) as usize - 2;
        self.responses[class].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Everything the handlers share.
pub struct Api {
    pub domain: Domain,
    pub auth: AuthSettings,
    /// The GitHub webhook secret; without it the webhook route answers 404.
    pub webhook_secret: Option<Vec<u8>>,
    /// The GitHub App this server authenticates as (`--github-app-id`): an installation of it on an account, which
    /// the caller may access, also proves control of that account when connecting it.
    pub github_app_id: Option<String>,
    pub ws: ws::WsSettings,
    pub stats: HttpStats,
    /// Sign-outs on this node, `(user id, session id or None for all of the user's sessions)`: open WebSockets of
    /// those sessions re-check at once instead of at their next heartbeat re-check.
    signed_out: tokio::sync::broadcast::Sender<(String, Option<String>)>,
    /// Resolved session tokens, so that authentication does not queue on the auth directory's mailbox.
    pub(crate) sessions: session_cache::SessionCache,
    /// Bearer token that opens `/metrics` to non-loopback clients (`--metrics-token`); without it, loopback only.
    pub metrics_token: Option<String>,
    /// Flipped once at shutdown: open WebSocket connections close with 1001 instead of holding the server's drain.
    closing: tokio::sync::watch::Sender<bool>,
    /// Per-token and per-address request limits (none unless set with [`Api::set_rate_limits`]).
    pub(crate) limits: limits::RateLimiter,
    /// Logins of the server admins, lowercased (`serve --server-admin`): only they may use `/v1/admin`.
    pub server_admins: Vec<String>,
    /// Cluster mode (`serve --cluster`): the node's shard ownership, for `/readyz` and `/metrics`.
    pub cluster: Option<crate::cluster::ClusterStatus>,
}

impl Api {
    pub fn new(domain: Domain, auth: AuthSettings) -> Self {
        Api {
            domain,
            auth,
            webhook_secret: None,
            github_app_id: None,
            ws: ws::WsSettings::default(),
            stats: HttpStats::default(),
            metrics_token: None,
            signed_out: tokio::sync::broadcast::channel(64).0,
            sessions: session_cache::SessionCache::new(SESSION_CACHE_TTL),
            closing: tokio::sync::watch::channel(false).0,
            limits: limits::RateLimiter::new(RateLimits::default()),
            server_admins: Vec::new(),
            cluster: None,
        }
    }

    /// Sets the request limits (before the server starts).
    pub fn set_rate_limits(&mut self, limits: RateLimits) {
        self.limits = limits::RateLimiter::new(limits);
    }

    /// Closes every WebSocket connection ("going away"); call before stopping the HTTP server.
    pub fn close_connections(&self) {
        self.closing.send_replace(true);
    }

    /// Tells this node's WebSockets that `session` (or every session of `user` when `None`) was signed out.
    pub(crate) fn notify_signed_out(&self, user: &str, session: Option<&str>) {
        self.sessions.forget(user, session);
        let _ = self.signed_out.send((user.to_owned(), session.map(str::to_owned)));
    }

    pub(crate) fn signed_out(&self) -> tokio::sync::broadcast::Receiver<(String, Option<String>)> {
        self.signed_out.subscribe()
    }

    /// Counts a request of session token `token` against its rate limit.
    pub(crate) fn limit_token(&self, token: &str) -> Result<(), ApiError> {
        self.limits.check_token(token).inspect_err(|_| self.count_limited())
    }

    /// Counts a sign-in request against its client's rate limit.
    pub(crate) fn limit_sign_in(&self, req: &HttpRequest) -> Result<(), ApiError> {
        self.limits.check_sign_in(req).inspect_err(|_| self.count_limited())
    }

    fn count_limited(&self) {
        self.stats.rate_limited.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }
}

/// The shared state of a request.
pub(crate) fn api(req: &HttpRequest) -> Result<web::Data<Api>, ApiError> {
    req.app_data::<web::Data<Api>>().cloned().ok_or_else(|| {
        tracing::error!("the app was configured without foundry::http::Api");
        ApiError::internal()
    })
}

/// The caller's membership of `org`: 400 for a malformed id, 404 if the organization does not exist (nothing is
/// created for it), 403 if the caller is not a member.
pub async fn member(api: &Api, caller: &Caller, org: &str) -> Result<MemberRow, ApiError> {
    validate::org_id("org", org)?;
    let msg = GetMember { user_id: caller.user_id.clone() };
    api.domain
        .orgs
        .read_existing_with(&org.to_owned(), msg, CHECK_BACKPRESSURE)
        .await?
        .ok_or_else(|| ApiError::forbidden(format!("not a member of organization {org:?}")))
}

/// Like [`member`], and the caller must be an admin or owner.
pub async fn admin(api: &Api, caller: &Caller, org: &str) -> Result<MemberRow, ApiError> {
    let m = member(api, caller, org).await?;
    if m.role() < MemberRole::Admin {
        return Err(ApiError::forbidden(format!("only admins of {org:?} may do this")));
    }
    Ok(m)
}

/// A path segment read as one of the values of `T` (an enum of unit variants, named as its serde attributes say), or
/// `None`: the operations a route's `{op}` or `{action}` may name, one type for the handler and the OpenAPI document.
pub(crate) fn segment<T: serde::de::DeserializeOwned>(text: &str) -> Option<T> {
    use serde::de::IntoDeserializer;
    let text: serde::de::value::StrDeserializer<'_, serde::de::value::Error> = text.into_deserializer();
    T::deserialize(text).ok()
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    use actix_web::ResponseError;
    ApiError::new(
        actix_web::http::StatusCode::NOT_FOUND,
        "route_not_found",
        format!("no route for {} {}", req.method(), req.path()),
    )
    .error_response()
}

/// Counts each `/v1` response by status class and logs it (server errors at warn, the rest at debug).
fn observe<S>(
    req: actix_web::dev::ServiceRequest,
    srv: &S,
) -> impl std::future::Future<Output = Result<actix_web::dev::ServiceResponse, actix_web::Error>>
where
    S: actix_web::dev::Service<
        actix_web::dev::ServiceRequest,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    >,
{
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.path().to_owned();
    let api = req.app_data::<web::Data<Api>>().cloned();
    let call = srv.call(req);
    async move {
        let res = call.await?;
        let status = res.status().as_u16();
        if let Some(api) = api {
            api.stats.count(status);
        }
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        if status >= 500 {
            tracing::warn!(%method, %path, status, ms, "request failed");
        } else {
            tracing::debug!(%method, %path, status, ms, "request");
        }
        Ok(res)
    }
}

/// Why a request path cannot name anything: a `%` not followed by two hex digits, or a path that decodes to a control
/// character (NUL included) or to bytes that are not UTF-8. Raw control bytes never get here: the HTTP/1 parser
/// refuses them (see ARCHITECTURE.md, "Protocol errors").
fn path_problem(raw: &str) -> Option<&'static str> {
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) else {
                    return Some("malformed percent-encoding");
                };
                i += 3;
                v
            }
            b => {
                i += 1;
                b
            }
        };
        if b < 0x20 || b == 0x7f {
            return Some("a control character");
        }
        decoded.push(b);
    }
    std::str::from_utf8(&decoded).is_err().then_some("bytes that are not UTF-8")
}

/// Refuses requests whose path cannot name anything (see [`path_problem`]) with 400 `invalid_path`, before routing:
/// every route, the web app's and the JSON 404 alike.
fn guard_path<S>(
    req: actix_web::dev::ServiceRequest,
    srv: &S,
) -> futures_util::future::Either<
    std::future::Ready<Result<actix_web::dev::ServiceResponse, actix_web::Error>>,
    S::Future,
>
where
    S: actix_web::dev::Service<
        actix_web::dev::ServiceRequest,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    >,
{
    use actix_web::ResponseError;
    match path_problem(req.uri().path()) {
        Some(problem) => {
            let e = ApiError::bad_request("invalid_path", format!("the request path contains {problem}"));
            futures_util::future::Either::Left(std::future::ready(Ok(req.into_response(e.error_response()))))
        }
        None => futures_util::future::Either::Right(srv.call(req)),
    }
}

/// Configures an app with every route; `api` is shared by all workers.
pub fn configure(api: web::Data<Api>) -> impl Fn(&mut web::ServiceConfig) + Clone {
    openapi::prepare();
    move |cfg| {
        cfg.app_data(api.clone())
            .app_data(web::QueryConfig::default().error_handler(error::query_error))
            .app_data(web::PathConfig::default().error_handler(error::path_error))
            .configure(ops::routes)
            .configure(webapp::routes)
            .service(
                web::scope("/v1")
                    .wrap_fn(observe)
                    .configure(auth::routes)
                    .configure(me::routes)
                    .configure(openapi::routes)
                    .configure(orgs::routes)
                    .configure(processes::routes)
                    .configure(tasks::routes)
                    .configure(webhook::routes)
                    .configure(ws::routes)
                    .configure(admin::routes),
            )
            .default_service(web::to(not_found));
    }
}

/// An HTTP server for `api` on `bind` (port 0 picks one), with its address. The caller runs or spawns it.
pub fn server(
    api: Arc<Api>,
    bind: std::net::SocketAddr,
    workers: usize,
) -> std::io::Result<(actix_web::dev::Server, std::net::SocketAddr)> {
    let listener = std::net::TcpListener::bind(bind)?;
    let addr = listener.local_addr()?;
    Ok((server_on(api, listener, workers)?, addr))
}

/// An HTTP server for `api` on an already-bound listener: every route of [`configure`], behind the path guard.
pub fn server_on(
    api: Arc<Api>,
    listener: std::net::TcpListener,
    workers: usize,
) -> std::io::Result<actix_web::dev::Server> {
    let data = web::Data::from(api);
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new().wrap_fn(guard_path).configure(configure(data.clone()))
    })
    .workers(workers)
    // WebSocket connections are long-lived: after this long, graceful shutdown stops waiting for them.
    .shutdown_timeout(10)
    // The service handles SIGINT/SIGTERM itself (see `stop_on_signals`) to close WebSockets first.
    .disable_signals()
    .listen(listener)?;
    Ok(server.run())
}

/// SIGINT and SIGTERM, listened to from the moment this is made: make it before the server can answer, so a signal
/// that follows the first answer is never met by the default action (exiting at once, undrained).
pub struct StopSignals {
    interrupt: actix_rt::signal::unix::Signal,
    terminate: actix_rt::signal::unix::Signal,
}

impl StopSignals {
    pub fn listen() -> std::io::Result<StopSignals> {
        use actix_rt::signal::unix::{signal, SignalKind};
        Ok(StopSignals { interrupt: signal(SignalKind::interrupt())?, terminate: signal(SignalKind::terminate())? })
    }
}

/// Waits for SIGINT or SIGTERM, then closes WebSocket connections, stops accepting and drains in-flight requests.
pub async fn stop_on_signals(api: Arc<Api>, server: actix_web::dev::ServerHandle, mut signals: StopSignals) {
    tokio::select! {
        _ = signals.interrupt.recv() => tracing::info!("SIGINT: shutting down"),
        _ = signals.terminate.recv() => tracing::info!("SIGTERM: shutting down"),
    }
    api.close_connections();
    server.stop(true).await;
}

#[cfg(test)]
mod tests {
    use super::path_problem;

    #[test]
    fn paths_that_cannot_name_anything_are_told_apart() {
        for ok in ["/", "/v1/orgs/acme", "/v1/orgs/ac%6De", "/orgs/caf%C3%A9", "/v1/orgs/a%2Fb", "/%25"] {
            assert_eq!(path_problem(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("/v1/orgs/%00", "a control character"),
            ("/v1/orgs/a%0Ab", "a control character"),
            ("/v1/orgs/%7f", "a control character"),
            ("/v1/orgs/%1F", "a control character"),
            ("/v1/orgs/%ZZ", "malformed percent-encoding"),
            ("/v1/orgs/%4", "malformed percent-encoding"),
            ("/v1/orgs/%", "malformed percent-encoding"),
            ("/v1/orgs/%FF", "bytes that are not UTF-8"),
            ("/v1/orgs/%C3", "bytes that are not UTF-8"),
        ] {
            assert_eq!(path_problem(bad), Some(why), "{bad}");
        }
    }
}
