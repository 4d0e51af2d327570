//! Sandbox processes of a task: `T/processes` (list, start), `T/processes/{id}` (get, delete), `.../stop`, `.../kill`,
//! `.../logs`, where `T = /v1/orgs/{org}/repos/{repo}/tasks/{task}`. The sandbox's process host runs them; the task
//! records which are its own (another task's process id is 404) and publishes them on `sandboxProcesses`. Every route
//! answers with the task's record of the process (`createdAt`, `exitedAt`, `updatedAt`), never the host's own shape.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::body::{Json, NoBody};
use super::idempotency;
use super::openapi::{BadGateway, Conflict, TaskParams, Unprocessable};
use super::replies::ProcessLogs;
use super::tasks::task_of;
use super::{Api, ApiError, Caller};
use crate::actors::task::processes::{
    ForgetProcess, GetTaskProcess, ListTaskProcesses, ProcessAction, ProcessRow, ProcessesSnapshot, TrackProcess,
};
use crate::actors::validate::schema::Id;
use crate::integrations::sandbox::{
    ProcessError, ProcessHost, ProcessService, ProcessSpec, MAX_ARGS, MAX_ARG_BYTES, MAX_COMMAND_CHARS, MAX_ENV,
};
use crate::runtime::idempotency::ReserveIdempotency;

type Res = Result<HttpResponse, ApiError>;
type TaskPath = web::Path<TaskParams>;
type ProcessPath = web::Path<ProcessParams>;

impl From<ProcessError> for ApiError {
    fn from(e: ProcessError) -> Self {
        match e {
            ProcessError::NotFound(id) => ApiError::not_found(format!("process {id:?} not found in the sandbox")),
            ProcessError::Refused(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "sandbox_refused", m),
            e => {
                tracing::warn!(error = %e, "sandbox process host failed");
                ApiError::new(StatusCode::BAD_GATEWAY, "sandbox_unreachable", e.to_string())
            }
        }
    }
}

fn host(api: &Api) -> Result<Arc<dyn ProcessHost>, ApiError> {
    api.domain.runtime.service::<ProcessService>().map(|s| s.0.clone()).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "sandbox_unavailable",
            "this server runs no sandbox (start it with --agent-url)",
        )
    })
}

fn check(spec: &ProcessSpec) -> Result<(), ApiError> {
    let bad = |m: String| Err(ApiError::bad_request("invalid_input", m));
    if spec.command.trim().is_empty() || spec.command.chars().count() > MAX_COMMAND_CHARS {
        return bad(format!("command must be 1 to {MAX_COMMAND_CHARS} characters"));
    }
    if spec.args.len() > MAX_ARGS || spec.args.iter().any(|a| a.len() > MAX_ARG_BYTES) {
        return bad(format!("at most {MAX_ARGS} arguments of at most {MAX_ARG_BYTES} bytes"));
    }
    if spec.env.len() > MAX_ENV || spec.env.keys().any(|k| k.is_empty() || k.contains('=')) {
        return bad(format!("at most {MAX_ENV} environment variables with non-empty names without '='"));
    }
    Ok(())
}

/// The task (opened, membership checked) and the process id of a `T/processes/{id}` path.
async fn process_of(
    req: &HttpRequest,
    caller: &Caller,
    path: ProcessPath,
) -> Result<(web::Data<Api>, crate::actors::TaskKey, String), ApiError> {
    let ProcessParams { org, repo, task, process: id } = path.into_inner();
    let (api, task) = task_of(req, caller, (org, repo, task)).await?;
    Ok((api, task, id))
}

/// The `T/processes/{process}` path segments.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct ProcessParams {
    /// The organization's id.
    #[param(value_type = Id)]
    org: String,
    /// The repository's id in the organization.
    #[param(value_type = Id)]
    repo: String,
    /// The task's id in the repository.
    #[param(value_type = Id)]
    task: String,
    /// The process's id in the sandbox (one of this task's).
    process: String,
}

/// `GET T/processes`: the task's processes, oldest first.
#[utoipa::path(get, path = "/v1/orgs/{org}/repos/{repo}/tasks/{task}/processes", tag = "processes",
    operation_id = "list_processes", params(TaskParams),
    responses((status = 200, description = "The task's processes", body = ProcessesSnapshot)))]
pub(super) async fn list(req: HttpRequest, caller: Caller, path: TaskPath) -> Res {
    let (api, task) = task_of(&req, &caller, path.into_inner().parts()).await?;
    let processes = api.domain.tasks.read(&task, ListTaskProcesses).await?;
    Ok(HttpResponse::Ok().json(ProcessesSnapshot { processes }))
}

/// `POST T/processes {command, args?, cwd?, env?}`: starts a process in the sandbox (201 with the process).
///
/// With an `Idempotency-Key`: the start happens on the sandbox host, outside any transaction, so the task reserves
/// the key first (a retry meanwhile gets 409 `idempotency_in_progress`), and records it with the process in the
/// transaction that records the process; a failed start releases it.
#[utoipa::path(post, path = "/v1/orgs/{org}/repos/{repo}/tasks/{task}/processes", tag = "processes",
    operation_id = "start_process", params(TaskParams, idempotency::KeyHeader),
    request_body = ProcessSpec,
    responses(
        (status = 201, description = "Started", body = ProcessRow),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
        (status = 502, response = BadGateway),
    ))]
pub(super) async fn start(req: HttpRequest, caller: Caller, path: TaskPath, body: Json<ProcessSpec>) -> Res {
    let (org, repo, task) = path.into_inner().parts();
    let route = format!("POST /v1/orgs/{org}/repos/{repo}/tasks/{task}/processes");
    let (api, task) = task_of(&req, &caller, (org, repo, task)).await?;
    let spec = body.into_inner();
    check(&spec)?;
    let host = host(&api)?;
    let once = idempotency::key(&req, &caller, &route, &spec)?;
    idempotency::to_completion(async move {
        let tasks = &api.domain.tasks;
        if let Some(key) = &once {
            match tasks.mutate(&task, ReserveIdempotency::pending(key.clone())).await? {
                crate::runtime::Recorded::Created { output, answer: None } => {
                    // Recorded with the process, never answered: the process is the answer.
                    let row: serde_json::Value = serde_json::from_str(&output).map_err(|_| ApiError::internal())?;
                    return idempotency::answer(tasks, &task, key, StatusCode::CREATED, row, true).await;
                }
                before => {
                    if let Some(res) = idempotency::claimed(before)? {
                        return Ok(res);
                    }
                }
            }
        }
        let info = match host.start(&spec).await {
            Ok(info) => info,
            Err(e) => {
                if let Some(key) = &once {
                    idempotency::release(tasks, &task, key).await;
                }
                return Err(e.into());
            }
        };
        let user_id = Some(caller.user_id.clone());
        let track = TrackProcess { info, action: ProcessAction::Started, user_id, once: once.clone() };
        let row = tasks.exec(&task, track).await?;
        match &once {
            None => Ok(HttpResponse::Created().json(row)),
            Some(key) => idempotency::answer(tasks, &task, key, StatusCode::CREATED, row, false).await,
        }
    })
    .await
}

/// `GET T/processes/{process}`: one of the task's processes.
#[utoipa::path(get, path = "/v1/orgs/{org}/repos/{repo}/tasks/{task}/processes/{process}", tag = "processes",
    operation_id = "get_process", params(ProcessParams),
    responses((status = 200, description = "The process", body = ProcessRow)))]
pub(super) async fn get(req: HttpRequest, caller: Caller, path: ProcessPath) -> Res {
    let (api, task, id) = process_of(&req, &caller, path).await?;
    Ok(HttpResponse::Ok().json(api.domain.tasks.read(&task, GetTaskProcess { process_id: id }).await?))
}

/// A signal of `POST T/processes/{process}/{op}`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProcessSignal {
    /// SIGTERM.
    Stop,
    /// SIGKILL.
    Kill,
}

/// `POST T/processes/{id}/{stop|kill}`: SIGTERM or SIGKILL.
#[utoipa::path(post, path = "/v1/orgs/{org}/repos/{repo}/tasks/{task}/processes/{process}/{op}", tag = "processes",
    operation_id = "signal_process",
    params(ProcessParams, ("op" = inline(ProcessSignal), Path, description = "The signal")),
    request_body = Option<NoBody>,
    responses(
        (status = 200, description = "The process after the signal", body = ProcessRow),
        (status = 422, response = Unprocessable),
        (status = 502, response = BadGateway),
    ))]
pub(super) async fn signal(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<(String, String, String, String, String)>,
    _: NoBody,
) -> Res {
    let (org, repo, task, id, op) = path.into_inner();
    let (api, task) = task_of(&req, &caller, (org, repo, task)).await?;
    api.domain.tasks.read(&task, GetTaskProcess { process_id: id.clone() }).await?;
    let host = host(&api)?;
    let signal = super::segment(&op).ok_or_else(|| ApiError::not_found(format!("no process operation {op:?}")))?;
    let (info, action) = match signal {
        ProcessSignal::Stop => (host.stop(&id).await?, ProcessAction::Stopped),
        ProcessSignal::Kill => (host.kill(&id).await?, ProcessAction::Killed),
    };
    let track = TrackProcess { info, action, user_id: Some(caller.user_id.clone()), once: None };
    Ok(HttpResponse::Ok().json(api.domain.tasks.exec(&task, track).await?))
}

/// `DELETE T/processes/{id}`: removes an exited process (and its logs) from the sandbox and the task.
#[utoipa::path(delete, path = "/v1/orgs/{org}/repos/{repo}/tasks/{task}/processes/{process}", tag = "processes",
    operation_id = "delete_process", params(ProcessParams),
    request_body = Option<NoBody>,
    responses(
        (status = 204, description = "Forgotten"),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
        (status = 502, response = BadGateway),
    ))]
pub(super) async fn delete(req: HttpRequest, caller: Caller, path: ProcessPath, _: NoBody) -> Res {
    let (api, task, id) = process_of(&req, &caller, path).await?;
    let row = api.domain.tasks.read(&task, GetTaskProcess { process_id: id.clone() }).await?;
    if row.status == "running" {
        return Err(ApiError::new(StatusCode::CONFLICT, "conflict", "stop or kill the process first"));
    }
    match host(&api)?.delete(&id).await {
        // Already gone from the sandbox: forgetting it is all that is left.
        Ok(()) | Err(ProcessError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    api.domain.tasks.exec(&task, ForgetProcess { process_id: id, user_id: Some(caller.user_id.clone()) }).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET T/processes/{id}/logs`: the output so far (entries with `stream`, `data`, `encoding`).
#[utoipa::path(get, path = "/v1/orgs/{org}/repos/{repo}/tasks/{task}/processes/{process}/logs", tag = "processes",
    operation_id = "process_logs", params(ProcessParams),
    responses(
        (status = 200, description = "The output so far", body = ProcessLogs),
        (status = 422, response = Unprocessable),
        (status = 502, response = BadGateway),
    ))]
pub(super) async fn logs(req: HttpRequest, caller: Caller, path: ProcessPath) -> Res {
    let (api, task, id) = process_of(&req, &caller, path).await?;
    api.domain.tasks.read(&task, GetTaskProcess { process_id: id.clone() }).await?;
    let entries = host(&api)?.logs(&id).await?;
    Ok(HttpResponse::Ok().json(ProcessLogs { process_id: id, entries }))
}

/// Registered before the task's `{action}` route, which would otherwise take `processes`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    const P: &str = "/orgs/{org}/repos/{repo}/tasks/{task}/processes";
    cfg.route(P, web::get().to(list))
        .route(P, web::post().to(start))
        .route(&format!("{P}/{{process}}"), web::get().to(get))
        .route(&format!("{P}/{{process}}"), web::delete().to(delete))
        .route(&format!("{P}/{{process}}/logs"), web::get().to(logs))
        .route(&format!("{P}/{{process}}/{{op}}"), web::post().to(signal));
}
