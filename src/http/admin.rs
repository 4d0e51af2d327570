//! `/v1/admin/...`: the runtime inspector (`runtime::inspect`) for server admins: the runtime and its kinds, a kind's
//! live actors, one actor's state and tables, a page of a table, read-only SQL and the actor's trace.
//!
//! Server admins are the logins given with `serve --server-admin` (`FOUNDRY_SERVER_ADMINS`), matched against the
//! caller's GitHub login, and against their dev sign-in login only while dev sign-in is on (a dev login from an
//! earlier loopback run never counts on a server that no longer offers it). Every route answers 401 without a
//! session and 403 `not_server_admin` to anyone else before it looks at anything. These are reads: no audit event
//! (the SQL route, a POST, is on tests/audit_coverage.rs's list); each query is logged with who ran it.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::body::Json;
use super::openapi::Unprocessable;
use super::{Api, ApiError, Caller, CHECK_BACKPRESSURE};
use crate::actors::auth_directory::{ListLoginUsers, AUTH_DIRECTORY_KEY};
use crate::runtime::inspect::{
    ActorDetail, ActorPage, QueryAnswer, RuntimeView, TableDump, TraceView, DEFAULT_ACTORS, DEFAULT_DUMP_ROWS,
    DEFAULT_QUERY_ROWS, DEFAULT_QUERY_TIME,
};
use crate::runtime::InspectError;

type Res = Result<HttpResponse, ApiError>;

fn ok<T: Serialize>(value: T) -> Res {
    Ok(HttpResponse::Ok().json(value))
}

/// Most `--server-admin` logins (each is looked up on every admin request).
pub const MAX_SERVER_ADMINS: usize = 32;

/// 403 for anyone but a server admin.
fn not_server_admin() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "not_server_admin",
        "only server admins may use /v1/admin (serve --server-admin <login>)",
    )
}

/// The caller must be a server admin (see the module's documentation).
async fn require_server_admin(api: &Api, caller: &Caller) -> Result<(), ApiError> {
    if api.server_admins.is_empty() {
        return Err(not_server_admin());
    }
    let mut logins = Vec::with_capacity(api.server_admins.len() * 2);
    for login in &api.server_admins {
        logins.push(("github".to_owned(), login.clone()));
        if api.auth.dev_sign_in {
            logins.push(("dev".to_owned(), login.clone()));
        }
    }
    let users = api
        .domain
        .auth
        .read_with(&AUTH_DIRECTORY_KEY.to_owned(), ListLoginUsers { logins }, CHECK_BACKPRESSURE)
        .await?;
    if users.contains(&caller.user_id) {
        Ok(())
    } else {
        Err(not_server_admin())
    }
}

impl From<InspectError> for ApiError {
    fn from(e: InspectError) -> Self {
        let message = e.to_string();
        match e {
            InspectError::UnknownKind(_) | InspectError::UnknownTable(_) => ApiError::not_found(message),
            InspectError::InvalidKey(_) => ApiError::bad_request("invalid_input", message),
            InspectError::InvalidLimit(_) => ApiError::bad_request("invalid_limit", message),
            InspectError::InvalidSql(_) => ApiError::bad_request("sql_invalid", message),
            InspectError::NotReadOnly(_) => ApiError::bad_request("sql_not_read_only", message),
            InspectError::Timeout(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "sql_timeout", message),
            InspectError::QueryFailed(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "sql_failed", message),
            InspectError::TooLarge { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "database_too_large", message)
            }
            InspectError::Snapshot(_) => {
                tracing::error!(error = %message, "inspecting an actor failed");
                ApiError::internal()
            }
        }
    }
}

/// The `{kind}` path segment.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct KindPath {
    /// A registered actor kind (`GET /v1/admin/runtime` lists them).
    kind: String,
}

/// The `{kind}/actors/{key}` path segments.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct ActorPath {
    /// A registered actor kind.
    kind: String,
    /// The actor's encoded key as one segment (`/` as `%2F`, e.g. `acme%2Fweb` for a repository).
    key: String,
}

/// The `{kind}/actors/{key}/tables/{table}` path segments.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct TablePath {
    /// A registered actor kind.
    kind: String,
    /// The actor's encoded key as one segment (`/` as `%2F`).
    key: String,
    /// One of the actor's tables (`GET .../actors/{key}` lists them).
    table: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ActorsQuery {
    /// Only actors whose encoded key sorts after this one: a page's `nextAfter`.
    pub after: Option<String>,
    /// Page size (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DumpQuery {
    /// Rows to skip (default 0).
    pub offset: Option<u64>,
    /// Rows to return (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// One read-only SQL statement to run on a copy of the actor's database.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueryBody {
    /// One statement that only reads: `SELECT`/`WITH`, `EXPLAIN`, or a pragma that reads (`table_info`,
    /// `index_list`, `user_version` ...). At most 16 KiB.
    #[schema(min_length = 1, max_length = 4096)]
    pub sql: String,
    /// Most rows to answer (default 100).
    #[schema(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Stop the statement after this many milliseconds (default 2,000).
    #[schema(minimum = 1, maximum = 10000)]
    pub timeout_ms: Option<u64>,
}

/// `GET /v1/admin/runtime`: the runtime and every actor kind with its counters.
#[utoipa::path(get, path = "/v1/admin/runtime", tag = "admin",
    responses((status = 200, description = "The runtime and its kinds", body = RuntimeView)))]
pub(super) async fn runtime(req: HttpRequest, caller: Caller) -> Res {
    let api = super::api(&req)?;
    require_server_admin(&api, &caller).await?;
    ok(api.domain.runtime.inspector().runtime())
}

/// `GET /v1/admin/kinds/{kind}/actors?after&limit`: a page of the kind's live actors (by encoded key) with their
/// mailbox depth, idle time, topics, outbox and schedules. Activates nothing.
#[utoipa::path(get, path = "/v1/admin/kinds/{kind}/actors", tag = "admin", params(KindPath, ActorsQuery),
    responses((status = 200, description = "Live actors of the kind", body = ActorPage)))]
pub(super) async fn actors(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<KindPath>,
    q: web::Query<ActorsQuery>,
) -> Res {
    let api = super::api(&req)?;
    require_server_admin(&api, &caller).await?;
    let q = q.into_inner();
    let limit = q.limit.map_or(DEFAULT_ACTORS, |n| n as usize);
    ok(api.domain.runtime.inspector().actors(&path.kind, q.after.as_deref(), limit).await?)
}

/// `GET /v1/admin/kinds/{kind}/actors/{key}`: one actor's state and its tables with their row counts. A
/// passivated actor is activated to answer; a key that names nothing is 404 and nothing is created.
#[utoipa::path(get, path = "/v1/admin/kinds/{kind}/actors/{key}", tag = "admin", params(ActorPath),
    responses(
        (status = 200, description = "The actor's state and tables", body = ActorDetail),
        (status = 422, response = Unprocessable),
    ))]
pub(super) async fn actor(req: HttpRequest, caller: Caller, path: web::Path<ActorPath>) -> Res {
    let api = super::api(&req)?;
    require_server_admin(&api, &caller).await?;
    ok(api.domain.runtime.inspector().actor(&path.kind, &path.key).await?)
}

/// `GET /v1/admin/kinds/{kind}/actors/{key}/tables/{table}?offset&limit`: a page of one table's rows.
#[utoipa::path(get, path = "/v1/admin/kinds/{kind}/actors/{key}/tables/{table}", tag = "admin",
    params(TablePath, DumpQuery),
    responses(
        (status = 200, description = "A page of the table", body = TableDump),
        (status = 422, response = Unprocessable),
    ))]
pub(super) async fn table(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<TablePath>,
    q: web::Query<DumpQuery>,
) -> Res {
    let api = super::api(&req)?;
    require_server_admin(&api, &caller).await?;
    let q = q.into_inner();
    let limit = q.limit.map_or(DEFAULT_DUMP_ROWS, |n| n as usize);
    let p = path.into_inner();
    ok(api.domain.runtime.inspector().table(&p.kind, &p.key, &p.table, q.offset.unwrap_or(0), limit).await?)
}

/// `POST /v1/admin/kinds/{kind}/actors/{key}/query {sql, limit?, timeoutMs?}`: one read-only statement on a copy
/// of the actor's database (writes, ATTACH and pragmas that set are refused before it runs).
#[utoipa::path(post, path = "/v1/admin/kinds/{kind}/actors/{key}/query", tag = "admin", params(ActorPath),
    request_body = QueryBody,
    responses(
        (status = 200, description = "The statement's rows", body = QueryAnswer),
        (status = 422, response = Unprocessable),
    ))]
pub(super) async fn query(req: HttpRequest, caller: Caller, path: web::Path<ActorPath>, body: Json<QueryBody>) -> Res {
    let api = super::api(&req)?;
    require_server_admin(&api, &caller).await?;
    let b = body.into_inner();
    let p = path.into_inner();
    let limit = b.limit.map_or(DEFAULT_QUERY_ROWS, |n| n as usize);
    let time = b.timeout_ms.map_or(DEFAULT_QUERY_TIME, Duration::from_millis);
    // The operator's trail: server-wide reads belong to no organization's audit log.
    tracing::info!(user = %caller.user_id, kind = %p.kind, key = %p.key, sql = %b.sql, "inspector query");
    ok(api.domain.runtime.inspector().query(&p.kind, &p.key, &b.sql, limit, time).await?)
}

/// `GET /v1/admin/kinds/{kind}/actors/{key}/trace`: the actor's recent messages, newest first (`live: false` and
/// none for a passivated actor, which is not activated).
#[utoipa::path(get, path = "/v1/admin/kinds/{kind}/actors/{key}/trace", tag = "admin", params(ActorPath),
    responses((status = 200, description = "The actor's trace", body = TraceView)))]
pub(super) async fn trace(req: HttpRequest, caller: Caller, path: web::Path<ActorPath>) -> Res {
    let api = super::api(&req)?;
    require_server_admin(&api, &caller).await?;
    ok(api.domain.runtime.inspector().trace(&path.kind, &path.key).await?)
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/runtime", web::get().to(runtime))
        .route("/admin/kinds/{kind}/actors", web::get().to(actors))
        .route("/admin/kinds/{kind}/actors/{key}", web::get().to(actor))
        .route("/admin/kinds/{kind}/actors/{key}/tables/{table}", web::get().to(table))
        .route("/admin/kinds/{kind}/actors/{key}/query", web::post().to(query))
        .route("/admin/kinds/{kind}/actors/{key}/trace", web::get().to(trace));
}
