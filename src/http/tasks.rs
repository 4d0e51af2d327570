//! Routes of tasks and sessions, addressed by full key:
//! `/v1/orgs/{org}/repos/{repo}/tasks/{task}/sessions/{session}/...`. Every route checks the caller's membership of
//! `{org}`; the task view carries the caller's own overlay (active session, unread, drafts), never another user's.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::body::{Json, NoBody, OptionalJson};
use super::idempotency::{self, Step};
use super::openapi::{BadGateway, Conflict, RepoParams, SessionParams, TaskParams, Unprocessable};
use super::replies::{PullRequestOpened, SessionCommandOutcome, TaskActionOutcome, TaskCreated, TaskStatusChanged};
use super::{member, Api, ApiError, Caller};
use crate::actors::repository::{CreateTask, PreviewTaskNames, TaskNames};
use crate::actors::session::{
    ChangeModel, GetSessionDetail, GetSessionState, RenameSession, SessionDetail, StopSession, Submitted,
};
use crate::actors::task::{CloseSession, CreateSession, RenameTask, SwitchTask};
use crate::actors::user::{DraftAttachment, MarkSessionUnread, SaveDraft, SetActiveSession};
use crate::actors::validate::schema::{Branch, DisplayName, FilePath, Id, Text};
use crate::actors::{validate, RepoKey, SessionKey, TaskKey, TaskView};
use crate::runtime::IdempotencyKey;

type Res = Result<HttpResponse, ApiError>;

fn ok<T: serde::Serialize>(value: T) -> Res {
    Ok(HttpResponse::Ok().json(value))
}

/// The api, after checking the caller is a member of the key's organization and the key's ids are well formed.
async fn authorized(req: &HttpRequest, caller: &Caller, ids: &[&str]) -> Result<web::Data<Api>, ApiError> {
    let api = super::api(req)?;
    member(&api, caller, ids[0]).await?;
    let rules = [validate::repo_id, validate::task_id, validate::session_id];
    for ((rule, field), id) in rules.iter().zip(["repo", "task", "session"]).zip(&ids[1..]) {
        rule(field, id)?;
    }
    Ok(api)
}

pub(super) async fn task_of(
    req: &HttpRequest,
    caller: &Caller,
    path: (String, String, String),
) -> Result<(web::Data<Api>, TaskKey), ApiError> {
    let api = authorized(req, caller, &[&path.0, &path.1, &path.2]).await?;
    let task = RepoKey::new(&path.0, &path.1).task(&path.2);
    api.domain.open_task(&task).await?;
    Ok((api, task))
}

async fn session_of(
    req: &HttpRequest,
    caller: &Caller,
    p: (String, String, String, String),
) -> Result<(web::Data<Api>, SessionKey), ApiError> {
    let api = authorized(req, caller, &[&p.0, &p.1, &p.2, &p.3]).await?;
    let session = RepoKey::new(&p.0, &p.1).task(&p.2).session(&p.3);
    api.domain.open_session(&session).await?;
    Ok((api, session))
}

type TaskPath = web::Path<TaskParams>;
type SessionPath = web::Path<SessionParams>;

#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTaskBody {
    /// What the agent is asked to do (the first session's first prompt).
    #[schema(value_type = Text)]
    pub prompt: String,
    /// Default: derived from the prompt.
    #[schema(value_type = Option<DisplayName>)]
    pub title: Option<String>,
    /// Default: derived from the title, made unique (409 if a given one has a task).
    #[schema(value_type = Option<Branch>)]
    pub branch: Option<String>,
    /// A model id of `GET /v1/models` (default: the caller's default model).
    pub model: Option<String>,
}

/// `POST .../repos/{repo}/tasks {prompt, title?, branch?, model?}`: creates a task with its first session, whose
/// agent starts on the prompt. `sessionVersion` is that session's topic version before the turn started: subscribing
/// with `after` it, the client's first `sessionUpdated` is the turn's start (or anything later), never older. With an
/// `Idempotency-Key`, the repository records the key with the task it assigns.
#[utoipa::path(post, path = "/v1/orgs/{org}/repos/{repo}/tasks", tag = "tasks",
    params(RepoParams, idempotency::KeyHeader),
    request_body = CreateTaskBody,
    responses(
        (status = 201, description = "Created; its first session's agent started on the prompt", body = TaskCreated),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
pub(super) async fn create_task(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<RepoParams>,
    body: Json<CreateTaskBody>,
) -> Res {
    let (org, repo) = path.into_inner().parts();
    let api = authorized(&req, &caller, &[&org, &repo]).await?;
    let b = body.into_inner();
    let once = idempotency::key(&req, &caller, &format!("POST /v1/orgs/{org}/repos/{repo}/tasks"), &b)?;
    let repo = RepoKey::new(&org, &repo);
    let msg = CreateTask {
        prompt: b.prompt,
        title: b.title,
        branch: b.branch,
        model: b.model,
        user_id: Some(caller.user_id),
    };
    idempotency::to_completion(async move {
        let Some(key) = once else {
            return Ok(HttpResponse::Created().json(TaskCreated::from(&api.domain.create_task(&repo, msg).await?)));
        };
        match idempotency::step(api.domain.create_task_once(&repo, msg, key.clone()).await?)? {
            Step::Answered(res) => Ok(res),
            Step::Finish(created, replayed) => {
                let body = TaskCreated::from(&created);
                idempotency::answer(&api.domain.repos, &repo, &key, StatusCode::CREATED, body, replayed).await
            }
        }
    })
    .await
}

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskNamesBody {
    #[schema(value_type = Text)]
    pub prompt: String,
    #[schema(value_type = Option<DisplayName>)]
    pub title: Option<String>,
    #[schema(value_type = Option<Branch>)]
    pub branch: Option<String>,
}

/// `POST .../repos/{repo}/task-names {prompt, title?, branch?}`: the `{title, branch}` a task created with this body
/// would get now (validated as creation validates them; nothing is created or reserved).
#[utoipa::path(post, path = "/v1/orgs/{org}/repos/{repo}/task-names", tag = "tasks", params(RepoParams),
    request_body = TaskNamesBody,
    responses(
        (status = 200, description = "The title and branch a creation would get now", body = TaskNames),
        (status = 409, response = Conflict),
    ))]
pub(super) async fn task_names(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<RepoParams>,
    body: Json<TaskNamesBody>,
) -> Res {
    let (org, repo) = path.into_inner().parts();
    let api = authorized(&req, &caller, &[&org, &repo]).await?;
    let b = body.into_inner();
    let msg = PreviewTaskNames { prompt: b.prompt, title: b.title, branch: b.branch };
    ok(api.domain.preview_task_names(&RepoKey::new(&org, &repo), msg).await?)
}

/// `GET .../tasks/{task}`: the task detail with the caller's overlay.
#[utoipa::path(get, path = "/v1/orgs/{org}/repos/{repo}/tasks/{task}", tag = "tasks", params(TaskParams),
    responses((status = 200, description = "The task with the caller's overlay", body = TaskView)))]
pub(super) async fn get_task(req: HttpRequest, caller: Caller, path: TaskPath) -> Res {
    let (api, task) = task_of(&req, &caller, path.into_inner().parts()).await?;
    ok(api.domain.task_view(&task, Some(&caller.user_id)).await?)
}

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameBody {
    #[schema(value_type = DisplayName)]
    pub title: String,
}

/// `PATCH .../tasks/{task} {title}`.
#[utoipa::path(patch, path = "/v1/orgs/{org}/repos/{repo}/tasks/{task}", tag = "tasks", params(TaskParams),
    request_body = RenameBody,
    responses(
        (status = 200, description = "The task with the caller's overlay", body = TaskView),
        (status = 422, response = Unprocessable),
    ))]
pub(super) async fn rename_task(req: HttpRequest, caller: Caller, path: TaskPath, body: Json<RenameBody>) -> Res {
    let (api, task) = task_of(&req, &caller, path.into_inner().parts()).await?;
    api.domain
        .tasks
        .mutate(&task, RenameTask { title: body.into_inner().title, user_id: Some(caller.user_id.clone()) })
        .await?;
    ok(api.domain.task_view(&task, Some(&caller.user_id)).await?)
}

#[derive(Clone, Debug, Deserialize, Serialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    /// `revert`: the file to revert.
    #[schema(value_type = Option<FilePath>)]
    pub path: Option<String>,
    /// `switch`: the branch or task to switch to.
    #[schema(value_type = Option<Branch>)]
    pub target: Option<String>,
    /// `archive`: archive even if work that is not on the remote cannot be pushed (it is discarded).
    #[serde(default)]
    pub force: bool,
}

/// What `POST T/{action}` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TaskAction {
    /// Cancel turns, refuse prompts, push work not on the remote (`force`: discard it if that fails), release the
    /// workspace.
    Archive,
    Unarchive,
    /// Cancel turns and destroy the workspace at once.
    Kill,
    /// Provision the workspace again.
    Provision,
    /// Mark unread for the caller.
    Unread,
    /// Push, then open the pull request on GitHub (201).
    PullRequest,
    Push,
    /// Merge the task's pull request on GitHub.
    Merge,
    /// Restore `path` as on the base branch.
    Revert,
    /// Record `target` as the switch target.
    Switch,
}

/// `POST .../tasks/{task}/{action}`: `archive {force?}`, `unarchive`, `kill`, `provision` (retry a failed
/// workspace), `unread`, `pull-request`, `push`, `merge`, `revert {path}`, `switch {target}`.
#[utoipa::path(post, path = "/v1/orgs/{org}/repos/{repo}/tasks/{task}/{action}", tag = "tasks",
    params(TaskParams, ("action" = inline(TaskAction), Path, description = "The action"), idempotency::KeyHeader),
    request_body = Option<ActionBody>,
    responses(
        (status = 200, description = "Done: the status (`archive`, `unarchive`, `kill`) or the task view",
            body = TaskActionOutcome),
        (status = 201, description = "`pull-request`: opened", body = PullRequestOpened),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
        (status = 502, response = BadGateway),
    ))]
pub(super) async fn task_action(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<(String, String, String, String)>,
    body: OptionalJson<ActionBody>,
) -> Res {
    let (org, repo, task, action) = path.into_inner();
    let route = format!("POST /v1/orgs/{org}/repos/{repo}/tasks/{task}/{action}");
    let (api, task) = task_of(&req, &caller, (org, repo, task)).await?;
    let body = body.into_inner();
    let action: TaskAction =
        super::segment(&action).ok_or_else(|| ApiError::not_found(format!("no task action {action:?}")))?;
    let user = Some(caller.user_id.as_str());
    let d = &api.domain;
    let status = |status| ok(TaskActionOutcome::Status(TaskStatusChanged { status }));
    match action {
        TaskAction::PullRequest => {
            let once = idempotency::key(&req, &caller, &route, &body)?;
            let user = caller.user_id.clone();
            return idempotency::to_completion(publish_pull_request(api.clone(), task, user, once)).await;
        }
        TaskAction::Archive => return status(d.archive_task(&task, body.force, user).await?),
        TaskAction::Unarchive => return status(d.unarchive_task(&task, user).await?),
        TaskAction::Kill => return status(d.kill_task(&task, user).await?),
        TaskAction::Provision => {
            d.reprovision_workspace(&task, user).await?;
        }
        TaskAction::Unread => d.mark_task_unread(&task, &caller.user_id).await?,
        TaskAction::Push => {
            d.push_task(&task, user).await?;
        }
        TaskAction::Merge => {
            d.merge_task(&task, user).await?;
        }
        TaskAction::Revert => {
            let path = body.path.ok_or_else(|| ApiError::bad_request("invalid_field", "path is required"))?;
            d.revert_file(&task, &path, user).await?;
        }
        TaskAction::Switch => {
            let target = body.target.ok_or_else(|| ApiError::bad_request("invalid_field", "target is required"))?;
            d.tasks.mutate(&task, SwitchTask { target, user_id: Some(caller.user_id.clone()) }).await?
        }
    };
    ok(TaskActionOutcome::View(Box::new(d.task_view(&task, user).await?)))
}

/// `POST T/pull-request`: 201 `{number}`. With an `Idempotency-Key`: the pull request is opened on GitHub, outside
/// any transaction, so the task reserves the key first (a retry meanwhile gets 409 `idempotency_in_progress`) and
/// stores the answer once it is open; a failure releases the key. GitHub and the task both refuse a second open
/// pull request for the branch, so even a retry after the reservation lapsed cannot open two.
async fn publish_pull_request(api: web::Data<Api>, task: TaskKey, user: String, once: Option<IdempotencyKey>) -> Res {
    let tasks = &api.domain.tasks;
    if let Some(key) = &once {
        let reserve = crate::runtime::idempotency::ReserveIdempotency::pending(key.clone());
        if let Some(res) = idempotency::claimed(tasks.mutate(&task, reserve).await?)? {
            return Ok(res);
        }
    }
    let number = match api.domain.publish_pull_request(&task, Some(&user)).await {
        Ok(number) => number,
        Err(e) => {
            if let Some(key) = &once {
                idempotency::release(tasks, &task, key).await;
            }
            return Err(e.into());
        }
    };
    let body = PullRequestOpened { number };
    match &once {
        None => Ok(HttpResponse::Created().json(body)),
        Some(key) => idempotency::answer(tasks, &task, key, StatusCode::CREATED, body, false).await,
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DiffQuery {
    /// The file.
    #[param(value_type = FilePath)]
    pub path: String,
}

/// `GET .../tasks/{task}/diff?path=...`: one file's diff against the base branch (`text/x-diff`; empty when the
/// file is unchanged).
#[utoipa::path(get, path = "/v1/orgs/{org}/repos/{repo}/tasks/{task}/diff", tag = "tasks",
    params(TaskParams, DiffQuery),
    responses(
        (status = 200, description = "The diff (empty when the file is unchanged)", content_type = "text/x-diff",
            body = String),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
        (status = 502, response = BadGateway),
    ))]
pub(super) async fn file_diff(req: HttpRequest, caller: Caller, path: TaskPath, query: web::Query<DiffQuery>) -> Res {
    let (api, task) = task_of(&req, &caller, path.into_inner().parts()).await?;
    let diff = api.domain.file_diff(&task, &query.into_inner().path).await?;
    Ok(HttpResponse::Ok().content_type("text/x-diff; charset=utf-8").body(diff))
}

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActiveSessionBody {
    #[schema(value_type = Id)]
    pub session_id: String,
}

/// `PUT .../tasks/{task}/active-session {sessionId}`: the caller's open tab.
#[utoipa::path(put, path = "/v1/orgs/{org}/repos/{repo}/tasks/{task}/active-session", tag = "tasks", params(TaskParams),
    request_body = ActiveSessionBody,
    responses((status = 200, description = "The task with the caller's overlay", body = TaskView)))]
pub(super) async fn set_active_session(
    req: HttpRequest,
    caller: Caller,
    path: TaskPath,
    body: Json<ActiveSessionBody>,
) -> Res {
    let (api, task) = task_of(&req, &caller, path.into_inner().parts()).await?;
    let msg = SetActiveSession { task: task.clone(), session_id: body.into_inner().session_id };
    api.domain.users.mutate_existing(&caller.user_id, msg).await?;
    ok(api.domain.task_view(&task, Some(&caller.user_id)).await?)
}

#[derive(Clone, Debug, Deserialize, Serialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSessionBody {
    #[schema(value_type = Option<DisplayName>)]
    pub name: Option<String>,
    /// A model id of `GET /v1/models`.
    pub model: Option<String>,
    /// A first message for the new session's agent.
    #[schema(value_type = Option<Text>)]
    pub prompt: Option<String>,
}

/// `POST .../tasks/{task}/sessions {name?, model?, prompt?}`: opens another session. With an `Idempotency-Key`, the
/// task records the key with the session it opens, and the first prompt is sent once under the same key.
#[utoipa::path(post, path = "/v1/orgs/{org}/repos/{repo}/tasks/{task}/sessions", tag = "sessions",
    params(TaskParams, idempotency::KeyHeader),
    request_body = Option<CreateSessionBody>,
    responses(
        (status = 201, description = "Opened", body = SessionDetail),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
pub(super) async fn create_session(
    req: HttpRequest,
    caller: Caller,
    path: TaskPath,
    body: OptionalJson<CreateSessionBody>,
) -> Res {
    let (org, repo, task) = path.into_inner().parts();
    let route = format!("POST /v1/orgs/{org}/repos/{repo}/tasks/{task}/sessions");
    let (api, task) = task_of(&req, &caller, (org, repo, task)).await?;
    let b = body.into_inner();
    if let Some(prompt) = &b.prompt {
        validate::text("prompt", prompt)?;
    }
    let once = idempotency::key(&req, &caller, &route, &b)?;
    let user = caller.user_id.clone();
    let msg = CreateSession { name: b.name, model: b.model, user_id: Some(user.clone()) };
    idempotency::to_completion(async move {
        let (id, replayed) = match &once {
            None => (api.domain.create_session(&task, msg).await?, false),
            Some(key) => match idempotency::step(api.domain.create_session_once(&task, msg, key.clone()).await?)? {
                Step::Answered(res) => return Ok(res),
                Step::Finish(id, replayed) => (id, replayed),
            },
        };
        let session = task.session(&id);
        if let Some(prompt) = b.prompt {
            match &once {
                None => drop(api.domain.send_message(&session, &prompt, Some(&user)).await?),
                Some(key) => {
                    let key = IdempotencyKey { scope: format!("{} (first prompt)", key.scope), ..key.clone() };
                    idempotency::step(api.domain.send_message_once(&session, &prompt, Some(&user), key).await?)?;
                }
            }
        }
        let detail = api.domain.sessions.read(&session, GetSessionDetail).await?;
        match &once {
            None => Ok(HttpResponse::Created().json(detail)),
            Some(key) => {
                idempotency::answer(&api.domain.tasks, &task, key, StatusCode::CREATED, detail, replayed).await
            }
        }
    })
    .await
}

/// `GET .../sessions/{session}`: the session detail with its transcript.
#[utoipa::path(get, path = "/v1/orgs/{org}/repos/{repo}/tasks/{task}/sessions/{session}", tag = "sessions",
    params(SessionParams),
    responses((status = 200, description = "The session with its transcript", body = SessionDetail)))]
pub(super) async fn get_session(req: HttpRequest, caller: Caller, path: SessionPath) -> Res {
    let (api, session) = session_of(&req, &caller, path.into_inner().parts()).await?;
    ok(api.domain.sessions.read(&session, GetSessionDetail).await?)
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateSessionBody {
    #[schema(value_type = Option<DisplayName>)]
    pub name: Option<String>,
    /// A model id of `GET /v1/models`.
    pub model: Option<String>,
    /// One of the model's modes (only with `model`).
    pub mode: Option<String>,
    /// One of the model's thought levels (only with `model`).
    pub thought_level: Option<String>,
}

/// `PATCH .../sessions/{session} {name?, model?, mode?, thoughtLevel?}`.
#[utoipa::path(patch, path = "/v1/orgs/{org}/repos/{repo}/tasks/{task}/sessions/{session}", tag = "sessions",
    params(SessionParams),
    request_body = UpdateSessionBody,
    responses(
        (status = 200, description = "The session", body = SessionDetail),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
pub(super) async fn update_session(
    req: HttpRequest,
    caller: Caller,
    path: SessionPath,
    body: Json<UpdateSessionBody>,
) -> Res {
    let (api, session) = session_of(&req, &caller, path.into_inner().parts()).await?;
    let b = body.into_inner();
    let user_id = Some(caller.user_id.clone());
    if b.model.is_none() && (b.mode.is_some() || b.thought_level.is_some()) {
        return Err(ApiError::bad_request("invalid_field", "mode and thoughtLevel are set together with model"));
    }
    // Validate everything before changing anything: a rename must not land if the model change is refused.
    if let Some(name) = &b.name {
        validate::display_name("name", name)?;
    }
    if let Some(model) = b.model {
        let msg = ChangeModel { model, mode: b.mode, thought_level: b.thought_level, user_id: user_id.clone() };
        api.domain.sessions.mutate(&session, msg).await?;
    }
    if let Some(name) = b.name {
        api.domain.sessions.mutate(&session, RenameSession { name, user_id }).await?;
    }
    ok(api.domain.sessions.read(&session, GetSessionDetail).await?)
}

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TextBody {
    #[schema(value_type = Text)]
    pub text: String,
}

/// The answer of every session command route (`messages`, `steer`, `interrupt`, `stop`): 202 with where the session
/// stands after the command (`{sessionId, status, queued, version}`) plus what the command itself reports. One
/// shape, so a client handles them alike, and the version tells it which `sessionUpdated` frames are newer.
async fn accepted(api: &Api, session: &SessionKey, submitted: Option<Submitted>, dropped: Option<usize>) -> Res {
    Ok(HttpResponse::Accepted().json(session_state(api, session, submitted, dropped).await?))
}

/// The body of [`accepted`]: the session's state now, with what the command reports.
async fn session_state(
    api: &Api,
    session: &SessionKey,
    submitted: Option<Submitted>,
    dropped_prompts: Option<usize>,
) -> Result<SessionCommandOutcome, ApiError> {
    let state = api.domain.sessions.read(session, GetSessionState).await?;
    Ok(SessionCommandOutcome { state, submitted, dropped_prompts })
}

/// `POST .../sessions/{session}/messages {text}`: runs now, or queues after the running turn. With an
/// `Idempotency-Key`, the session records the key with the prompt.
#[utoipa::path(post, path = "/v1/orgs/{org}/repos/{repo}/tasks/{task}/sessions/{session}/messages", tag = "sessions",
    params(SessionParams, idempotency::KeyHeader),
    request_body = TextBody,
    responses(
        (status = 202, description = "Taken: it runs now or after the running turn (`submitted`)",
            body = SessionCommandOutcome),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
pub(super) async fn send_message(req: HttpRequest, caller: Caller, path: SessionPath, body: Json<TextBody>) -> Res {
    let (org, repo, task, session) = path.into_inner().parts();
    let route = format!("POST /v1/orgs/{org}/repos/{repo}/tasks/{task}/sessions/{session}/messages");
    let (api, session) = session_of(&req, &caller, (org, repo, task, session)).await?;
    let text = body.into_inner();
    let Some(key) = idempotency::key(&req, &caller, &route, &text)? else {
        let submitted = api.domain.send_message(&session, &text.text, Some(&caller.user_id)).await?;
        return accepted(&api, &session, Some(submitted), None).await;
    };
    idempotency::to_completion(async move {
        let once = api.domain.send_message_once(&session, &text.text, Some(&caller.user_id), key.clone()).await?;
        match idempotency::step(once)? {
            Step::Answered(res) => Ok(res),
            Step::Finish(submitted, replayed) => {
                let state = session_state(&api, &session, Some(submitted), None).await?;
                idempotency::answer(&api.domain.sessions, &session, &key, StatusCode::ACCEPTED, state, replayed).await
            }
        }
    })
    .await
}

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SteerBody {
    #[schema(value_type = Text)]
    pub guidance: String,
}

/// `POST .../sessions/{session}/steer {guidance}`: guidance for the running turn of exactly this session.
#[utoipa::path(post, path = "/v1/orgs/{org}/repos/{repo}/tasks/{task}/sessions/{session}/steer", tag = "sessions",
    params(SessionParams),
    request_body = SteerBody,
    responses(
        (status = 202, description = "Taken by the running turn", body = SessionCommandOutcome),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
pub(super) async fn steer(req: HttpRequest, caller: Caller, path: SessionPath, body: Json<SteerBody>) -> Res {
    let (api, session) = session_of(&req, &caller, path.into_inner().parts()).await?;
    api.domain.steer(&session, &body.into_inner().guidance, Some(&caller.user_id)).await?;
    accepted(&api, &session, None, None).await
}

#[derive(Clone, Debug, Deserialize, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InterruptBody {
    /// Also drop the prompts queued behind the turn.
    #[serde(default)]
    pub drop_queued: bool,
}

/// `POST .../sessions/{session}/interrupt {dropQueued?}`: cancels the running turn of exactly this session.
#[utoipa::path(post, path = "/v1/orgs/{org}/repos/{repo}/tasks/{task}/sessions/{session}/interrupt", tag = "sessions",
    params(SessionParams),
    request_body = Option<InterruptBody>,
    responses(
        (status = 202, description = "The turn was cancelled (`droppedPrompts`: the queued prompts dropped)",
            body = SessionCommandOutcome),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
pub(super) async fn interrupt(
    req: HttpRequest,
    caller: Caller,
    path: SessionPath,
    body: OptionalJson<InterruptBody>,
) -> Res {
    let (api, session) = session_of(&req, &caller, path.into_inner().parts()).await?;
    let drop_queued = body.into_inner().drop_queued;
    let dropped = api.domain.interrupt(&session, drop_queued, Some(&caller.user_id)).await?;
    accepted(&api, &session, None, Some(dropped)).await
}

/// `POST .../sessions/{session}/stop`: stops the session's agent.
#[utoipa::path(post, path = "/v1/orgs/{org}/repos/{repo}/tasks/{task}/sessions/{session}/stop", tag = "sessions",
    params(SessionParams),
    request_body = Option<NoBody>,
    responses(
        (status = 202, description = "The agent was stopped", body = SessionCommandOutcome),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
pub(super) async fn stop(req: HttpRequest, caller: Caller, path: SessionPath, _: NoBody) -> Res {
    let (api, session) = session_of(&req, &caller, path.into_inner().parts()).await?;
    api.domain.sessions.exec(&session, StopSession { user_id: Some(caller.user_id.clone()) }).await?;
    accepted(&api, &session, None, None).await
}

/// `DELETE .../sessions/{session}`: closes the session (a task keeps at least one open).
#[utoipa::path(delete, path = "/v1/orgs/{org}/repos/{repo}/tasks/{task}/sessions/{session}", tag = "sessions",
    params(SessionParams),
    request_body = Option<NoBody>,
    responses((status = 204, description = "Closed"), (status = 409, response = Conflict)))]
pub(super) async fn close(req: HttpRequest, caller: Caller, path: SessionPath, _: NoBody) -> Res {
    let (api, session) = session_of(&req, &caller, path.into_inner().parts()).await?;
    let msg = CloseSession { session_id: session.session.clone(), user_id: Some(caller.user_id.clone()) };
    api.domain.tasks.mutate(&session.task_key(), msg).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DraftBody {
    /// The unsent text: at most 64 KiB of UTF-8 (16384 characters always fit).
    #[schema(max_length = 16384)]
    pub text: String,
    #[serde(default)]
    #[schema(max_items = 20)]
    pub attachments: Vec<DraftAttachment>,
}

/// `PUT .../sessions/{session}/draft {text, attachments}`: the caller's unsent message.
#[utoipa::path(put, path = "/v1/orgs/{org}/repos/{repo}/tasks/{task}/sessions/{session}/draft", tag = "sessions",
    params(SessionParams),
    request_body = DraftBody,
    responses((status = 200, description = "The task with the caller's overlay", body = TaskView)))]
pub(super) async fn save_draft(req: HttpRequest, caller: Caller, path: SessionPath, body: Json<DraftBody>) -> Res {
    let (api, session) = session_of(&req, &caller, path.into_inner().parts()).await?;
    let b = body.into_inner();
    let task = session.task_key();
    api.domain
        .users
        .mutate_existing(&caller.user_id, SaveDraft { session, text: b.text, attachments: b.attachments })
        .await?;
    ok(api.domain.task_view(&task, Some(&caller.user_id)).await?)
}

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnreadBody {
    pub unread: bool,
}

/// `PUT .../sessions/{session}/unread {unread}`: the caller's unread mark.
#[utoipa::path(put, path = "/v1/orgs/{org}/repos/{repo}/tasks/{task}/sessions/{session}/unread", tag = "sessions",
    params(SessionParams),
    request_body = UnreadBody,
    responses((status = 200, description = "The task with the caller's overlay", body = TaskView)))]
pub(super) async fn set_unread(req: HttpRequest, caller: Caller, path: SessionPath, body: Json<UnreadBody>) -> Res {
    let (api, session) = session_of(&req, &caller, path.into_inner().parts()).await?;
    let task = session.task_key();
    api.domain.users.mutate_existing(&caller.user_id, MarkSessionUnread { session, unread: body.unread }).await?;
    ok(api.domain.task_view(&task, Some(&caller.user_id)).await?)
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    const T: &str = "/orgs/{org}/repos/{repo}/tasks/{task}";
    const S: &str = "/orgs/{org}/repos/{repo}/tasks/{task}/sessions/{session}";
    cfg.route("/orgs/{org}/repos/{repo}/tasks", web::post().to(create_task))
        .route("/orgs/{org}/repos/{repo}/task-names", web::post().to(task_names))
        .route(T, web::get().to(get_task))
        .route(T, web::patch().to(rename_task))
        .route(&format!("{T}/active-session"), web::put().to(set_active_session))
        .route(&format!("{T}/diff"), web::get().to(file_diff))
        .route(&format!("{T}/sessions"), web::post().to(create_session))
        .route(&format!("{T}/{{action}}"), web::post().to(task_action))
        .route(S, web::get().to(get_session))
        .route(S, web::patch().to(update_session))
        .route(S, web::delete().to(close))
        .route(&format!("{S}/messages"), web::post().to(send_message))
        .route(&format!("{S}/steer"), web::post().to(steer))
        .route(&format!("{S}/interrupt"), web::post().to(interrupt))
        .route(&format!("{S}/stop"), web::post().to(stop))
        .route(&format!("{S}/draft"), web::put().to(save_draft))
        .route(&format!("{S}/unread"), web::put().to(set_unread));
}
