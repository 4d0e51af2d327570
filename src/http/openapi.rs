//! The API's contract: the OpenAPI 3.1 document of every `/v1` route, generated from the handlers' request and
//! response types and their `#[utoipa::path]` declarations, served at `GET /v1/openapi.json` (built once, when the
//! app is first configured) and committed as `docs/openapi.json` (tests/openapi.rs fails when the two differ, and
//! when a registered route and the document disagree).
//!
//! Each route declares its success answers and the refusals particular to it (409, 422, 502, a 404 that is not about
//! a path segment). [`Contract`] adds the refusals that follow from a route's shape, the same way for every route of
//! that shape, so no route can forget one: a session (401; 429 for its rate limit), path segments (400
//! `invalid_path`/`invalid_input`, 404 for what they name), a JSON body (400, 413, 415), any actor call (429
//! `overloaded`, 500, 503), an organization in the path, `/v1/admin` or a method that acts (403: not a member, not a
//! server admin, or a cookie sent by another site).

use std::sync::OnceLock;

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr, Required};
use utoipa::{IntoParams, Modify, OpenApi, ToResponse};

use crate::actors::validate::schema::Id;

/// Routes that need no session: signing in, GitHub's own calls, and this document.
const PUBLIC: &[&str] = &[
    "/v1/auth/dev/sign-in",
    "/v1/auth/github/start",
    "/v1/auth/github/callback",
    "/v1/webhooks/github",
    "/v1/openapi.json",
];
/// Routes that call no actor (so never 429 `overloaded`, 500 or 503).
const SELF_CONTAINED: &[&str] = &["/v1/openapi.json"];
/// Routes whose body is read as bytes, not by the strict JSON parser (`body.rs`): GitHub's webhook, checked by its
/// signature.
const RAW_BODY: &[&str] = &["/v1/webhooks/github"];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "foundry",
        description = "Teams run AI coding agents on GitHub repositories: organizations, repositories, tasks and \
                       their agent sessions. Reference and rules: docs/API.md; every error is `Error` with a stable \
                       code listed there. Live updates come over the WebSocket at `/v1/ws` (docs/API.md)."
    ),
    paths(
        super::auth::dev_sign_in,
        super::auth::github_start,
        super::auth::github_callback,
        super::auth::sign_out,
        super::auth::whoami,
        super::auth::list_sessions,
        super::auth::delete_all_sessions,
        super::auth::delete_session,
        super::me::me,
        super::me::update_me,
        super::me::set_default_model,
        super::me::set_starter_repo,
        super::me::set_active_org,
        super::me::models,
        super::orgs::list_orgs,
        super::orgs::create_org,
        super::orgs::get_org,
        super::orgs::list_members,
        super::orgs::invite_member,
        super::orgs::put_member,
        super::orgs::delete_member,
        super::orgs::list_repos,
        super::orgs::add_repo,
        super::orgs::get_repo,
        super::orgs::list_tasks,
        super::orgs::audit,
        super::orgs::github_status,
        super::orgs::github_connect,
        super::orgs::github_sync,
        super::orgs::admin_op,
        super::tasks::create_task,
        super::tasks::task_names,
        super::tasks::get_task,
        super::tasks::rename_task,
        super::tasks::set_active_session,
        super::tasks::file_diff,
        super::tasks::create_session,
        super::tasks::task_action,
        super::tasks::get_session,
        super::tasks::update_session,
        super::tasks::close,
        super::tasks::send_message,
        super::tasks::steer,
        super::tasks::interrupt,
        super::tasks::stop,
        super::tasks::save_draft,
        super::tasks::set_unread,
        super::processes::list,
        super::processes::start,
        super::processes::get,
        super::processes::delete,
        super::processes::logs,
        super::processes::signal,
        super::ws::ws,
        super::webhook::github_webhook,
        super::admin::runtime,
        super::admin::actors,
        super::admin::actor,
        super::admin::table,
        super::admin::query,
        super::admin::trace,
        openapi_json,
    ),
    components(schemas(
        super::error::Body,
        super::frames::ClientFrame,
        super::frames::ServerFrame,
        crate::actors::task::GitOperationEvent
    )),
    modifiers(&Contract),
    tags(
        (name = "auth", description = "Sign-in, sign-out and the caller's sessions"),
        (name = "me", description = "The signed-in user and the model catalog"),
        (name = "organizations", description = "Organizations, members, repositories and the audit log"),
        (name = "github", description = "The organization's GitHub connection, sync and recovery operations"),
        (name = "tasks", description = "Tasks: agents working on a branch of a repository"),
        (name = "sessions", description = "A task's agent sessions"),
        (name = "processes", description = "Processes in a task's sandbox"),
        (name = "events", description = "Live topic updates over WebSocket"),
        (name = "webhooks", description = "Deliveries from GitHub"),
        (name = "admin", description = "The runtime inspector, for server admins (`serve --server-admin`) only"),
        (name = "meta", description = "This document"),
    )
)]
struct ApiDoc;

/// The document, as generated from the code.
pub fn document() -> Document {
    ApiDoc::openapi()
}

/// The document as served and committed: pretty-printed JSON with a final newline.
pub fn document_json() -> String {
    // Serialising a tree of strings, maps and numbers cannot fail; an empty document would fail its tests loudly.
    let mut text = document().to_pretty_json().unwrap_or_default();
    text.push('\n');
    text
}

static SERVED: OnceLock<web::Bytes> = OnceLock::new();

/// Builds the served copy now, so that the first request does not pay for it (`configure` calls this).
pub(super) fn prepare() {
    SERVED.get_or_init(|| web::Bytes::from(document_json()));
}

/// `GET /v1/openapi.json`: this document (OpenAPI 3.1), the same bytes as docs/openapi.json.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "meta",
    operation_id = "openapi",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object),
    )
)]
async fn openapi_json() -> HttpResponse {
    let body = SERVED.get_or_init(|| web::Bytes::from(document_json())).clone();
    HttpResponse::Ok().content_type("application/json").body(body)
}

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/openapi.json", web::get().to(openapi_json));
}

/// One reusable error response: its component name, status and when it is answered (with its codes).
struct Refusal {
    name: &'static str,
    status: u16,
    description: &'static str,
    retry_after: bool,
}

macro_rules! refusals {
    ($($ty:ident = $status:literal, $retry:literal, $description:literal;)*) => {
        $(
            #[doc = $description]
            pub struct $ty;

            impl<'r> ToResponse<'r> for $ty {
                fn response() -> (&'r str, RefOr<Response>) {
                    (stringify!($ty), error_response($description, $retry).into())
                }
            }
        )*

        const REFUSALS: &[Refusal] = &[
            $(Refusal { name: stringify!($ty), status: $status, description: $description, retry_after: $retry },)*
        ];
    };
}

refusals! {
    BadRequest = 400, false, "The request cannot be read or a value breaks its rule: `malformed_json`, \
        `invalid_field`, \
        `invalid_input`, `invalid_query`, `invalid_path`, `invalid_header`, `invalid_idempotency_key`, \
        `invalid_state`, `invalid_code`, `invalid_redirect`, `oauth_denied`, `not_websocket`; the inspector's \
        `invalid_limit`, `sql_invalid`, `sql_not_read_only`.";
    Unauthenticated = 401, false, "No session, or an unknown, expired or revoked one: `unauthenticated` \
        (`invalid_signature` for a webhook whose signature does not match).";
    Forbidden = 403, false, "Signed in but not a member (or not an admin) of the organization, or a request that acts \
        sent with the session cookie from another site: `forbidden`; connecting GitHub without a usable GitHub \
        identity or control of the account: `github_identity_required`, `github_not_admin`; `/v1/admin` by anyone \
        but a server admin: `not_server_admin`.";
    NotFound = 404, false, "What the path names does not exist (organization, repository, task, session, user, \
        process, action), or the feature is off on this server: `not_found`, `user_not_found`.";
    Conflict = 409, true, "The current state refuses it: `conflict` (already exists, the last owner or open session, \
        an open pull request, a running process ...), `task_archived`, `workspace_unavailable`, \
        `idempotency_in_progress` (with `Retry-After`).";
    PayloadTooLarge = 413, false, "The body is over 256 KiB: `payload_too_large`.";
    UnsupportedMediaType = 415, false, "A body that is not `application/json`: `unsupported_media_type`.";
    Unprocessable = 422, false, "Well-formed but not applicable now: `unprocessable`, `git_failed`, \
        `github_not_configured`, `sandbox_unavailable`, `sandbox_refused`, `idempotency_key_reused`; an inspector \
        query that ran too long or failed (`sql_timeout`, `sql_failed`), a database too large to copy \
        (`database_too_large`).";
    TooManyRequests = 429, true, "Over the client's rate limit (`rate_limited`) or the actor's mailbox is full \
        (`overloaded`); retry after `Retry-After` seconds.";
    Internal = 500, false, "A storage failure or a bug: `internal` (details only in the server log).";
    BadGateway = 502, false, "GitHub, the git host or the sandbox could not be reached or failed: `oauth_failed`, \
        `github_unavailable`, `sandbox_unreachable`, `git_failed`.";
    Unavailable = 503, true, "Shutting down or no capacity in time: `shutting_down`, `timeout`, `unavailable`; in \
        cluster mode, the resource's shard is not served by this node (`not_owner`: served by another node, or \
        moving); retry after `Retry-After` seconds.";
}

fn error_response(description: &str, retry_after: bool) -> Response {
    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Error"))).build();
    let mut response = ResponseBuilder::new().description(description).content("application/json", content);
    if retry_after {
        let seconds = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1));
        let header = HeaderBuilder::new()
            .schema(seconds)
            .description(Some("Seconds to wait before retrying (with 429, 503 and `idempotency_in_progress`)."));
        response = response.header("Retry-After", header.build());
    }
    response.build()
}

/// The `{org}` path segment (the path extractors below are the handlers' own: their fields are the route's segment
/// names, so the document and the router name the same segments).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct OrgParams {
    /// The organization's id.
    #[param(value_type = Id)]
    pub org: String,
}

/// The `{org}/repos/{repo}` path segments.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct RepoParams {
    /// The organization's id.
    #[param(value_type = Id)]
    pub org: String,
    /// The repository's id in the organization.
    #[param(value_type = Id)]
    pub repo: String,
}

/// The path segments of a task, `T = /v1/orgs/{org}/repos/{repo}/tasks/{task}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct TaskParams {
    /// The organization's id.
    #[param(value_type = Id)]
    pub org: String,
    /// The repository's id in the organization.
    #[param(value_type = Id)]
    pub repo: String,
    /// The task's id in the repository (`t<n>`).
    #[param(value_type = Id)]
    pub task: String,
}

/// The path segments of a session, `S = T/sessions/{session}`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct SessionParams {
    /// The organization's id.
    #[param(value_type = Id)]
    pub org: String,
    /// The repository's id in the organization.
    #[param(value_type = Id)]
    pub repo: String,
    /// The task's id in the repository (`t<n>`).
    #[param(value_type = Id)]
    pub task: String,
    /// The session's id in the task (`s<n>`).
    #[param(value_type = Id)]
    pub session: String,
}

impl RepoParams {
    pub fn parts(self) -> (String, String) {
        (self.org, self.repo)
    }
}

impl TaskParams {
    pub fn parts(self) -> (String, String, String) {
        (self.org, self.repo, self.task)
    }
}

impl SessionParams {
    pub fn parts(self) -> (String, String, String, String) {
        (self.org, self.repo, self.task, self.session)
    }
}

/// Adds to every operation what follows from its shape (see the module's documentation), the security schemes and
/// the shared error responses.
struct Contract;

impl Modify for Contract {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        let bearer = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("A session token (`fdy_` + 64 hex digits) from a sign-in."))
            .build();
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        let cookie = ApiKeyValue::with_description(
            super::auth::SESSION_COOKIE,
            "The browser's session cookie: requests that act must come from this server's own origin.",
        );
        components.add_security_scheme("cookie", SecurityScheme::ApiKey(ApiKey::Cookie(cookie)));
        for refusal in REFUSALS {
            let response = error_response(refusal.description, refusal.retry_after);
            components.responses.insert(refusal.name.to_owned(), RefOr::T(response));
        }
        for (path, item) in doc.paths.paths.iter_mut() {
            for (method, op) in operations(item) {
                shape(path, method, op);
            }
        }
    }
}

/// `schema` without its `null` alternative (`type: [T, "null"]` or `oneOf: [{type: null}, T]`).
fn without_null(schema: &mut RefOr<Schema>) {
    let is_null = |s: &RefOr<Schema>| match s {
        RefOr::T(Schema::Object(o)) => matches!(&o.schema_type, SchemaType::Type(Type::Null)),
        _ => false,
    };
    match schema {
        RefOr::T(Schema::Object(object)) => {
            if let SchemaType::Array(types) = &object.schema_type {
                let kept: Vec<Type> = types.iter().filter(|t| **t != Type::Null).cloned().collect();
                object.schema_type = match <[Type; 1]>::try_from(kept) {
                    Ok([only]) => SchemaType::Type(only),
                    Err(several) => SchemaType::Array(several),
                };
            }
        }
        RefOr::T(Schema::OneOf(one)) => {
            let kept: Vec<RefOr<Schema>> = one.items.iter().filter(|s| !is_null(s)).cloned().collect();
            if let Ok([only]) = <[RefOr<Schema>; 1]>::try_from(kept) {
                *schema = only;
            }
        }
        _ => {}
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("GET", &mut item.get),
        ("PUT", &mut item.put),
        ("POST", &mut item.post),
        ("DELETE", &mut item.delete),
        ("PATCH", &mut item.patch),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.as_mut().map(|op| (method, op)))
}

/// The security and refusals of one operation, from its shape; what the route declared itself stays as declared.
fn shape(path: &str, method: &str, op: &mut Operation) {
    // A parameter is absent or a string on the wire, never null; an optional body is optional by being absent (a
    // JSON `null` body is refused like any body that is not an object). utoipa derives both from `Option<T>` as
    // "T or null".
    for parameter in op.parameters.iter_mut().flatten() {
        parameter.schema.as_mut().into_iter().for_each(without_null);
    }
    if let Some(body) = op.request_body.as_mut().filter(|b| !matches!(b.required, Some(Required::True))) {
        body.content.values_mut().flat_map(|c| c.schema.as_mut()).for_each(without_null);
    }
    let public = PUBLIC.contains(&path);
    if !public {
        let anyone: [&str; 0] = [];
        op.security =
            Some(vec![SecurityRequirement::new("bearer", anyone), SecurityRequirement::new("cookie", anyone)]);
    }
    let segments = path.contains('{');
    let parameters = segments || op.parameters.as_ref().is_some_and(|p| !p.is_empty());
    let json_body = op.request_body.is_some() && !RAW_BODY.contains(&path);
    let actors = !SELF_CONTAINED.contains(&path);
    let mut add = |status: u16, applies: bool| {
        let Some(refusal) = REFUSALS.iter().find(|r| r.status == status) else { return };
        let key = status.to_string();
        if applies && !op.responses.responses.contains_key(&key) {
            op.responses.responses.insert(key, RefOr::Ref(Ref::from_response_name(refusal.name)));
        }
    };
    add(400, parameters || json_body);
    add(401, !public);
    add(403, !public && (method != "GET" || path.starts_with("/v1/orgs/{org}") || path.starts_with("/v1/admin/")));
    add(404, segments);
    add(413, json_body);
    add(415, json_body);
    add(429, actors);
    add(500, actors);
    add(503, actors);
}
