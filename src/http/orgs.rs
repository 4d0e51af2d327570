//! Routes of organizations: creation and the caller's list, the snapshot, members, repositories, audit log, GitHub
//! connection and sync, and admin recovery operations.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::body::{Json, NoBody};
use super::idempotency::{self, Step};
use super::openapi::{BadGateway, Conflict, OrgParams, RepoParams, Unprocessable};
use super::replies::{AdminOutcome, GitHubConnection, OrganizationList, Rebuilt, SyncStarted};
use super::{admin, member, Api, ApiError, Caller};
use crate::actors::audit_log::{AuditPage, ListAuditEvents};
use crate::actors::auth_directory::{ResolveLogin, AUTH_DIRECTORY_KEY};
use crate::actors::github_data::{
    AdminClearState, AdminFullSync, ConnectGitHub, GetSyncStatus, GitHubService, RequestSync,
};
use crate::actors::organization::schema::{MemberRow, RepoRow};
use crate::actors::organization::{
    AddMember, AddRepository, CreateOrganization, GetOrganizationSnapshot, GetRepository, ListMembers,
    ListRepositories, MemberRole, OrgKind, OrganizationSnapshot, Owner, RemoveMember,
};
use crate::actors::repository::ListTaskSummaries;
use crate::actors::summary::TaskSummary;
use crate::actors::user::{GetAppSnapshot, GetOAuthAccessToken, GetUser, GrantOrganization, StoredAccessToken};
use crate::actors::validate::schema::{Branch, DisplayName, Id, Label, RemoteUrl};
use crate::actors::DomainError;
use crate::actors::{validate, RepoKey};
use crate::integrations::github::client::{AccountKind, GitHubClient};
use crate::integrations::github::control::{verify_control, ControlError, ControlledAccount};
use crate::runtime::idempotency::ReserveIdempotency;
use crate::runtime::{CallError, Idempotent};

type Res = Result<HttpResponse, ApiError>;

fn ok<T: serde::Serialize>(value: T) -> Res {
    Ok(HttpResponse::Ok().json(value))
}

/// 422 unless the server was given GitHub API credentials (nothing could sync).
fn require_github(api: &Api) -> Result<(), ApiError> {
    if api.domain.runtime.service::<GitHubService>().is_none() {
        return Err(ApiError::new(
            actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
            "github_not_configured",
            "this server has no GitHub API token (see --github-token)",
        ));
    }
    Ok(())
}

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateOrgBody {
    /// The organization's id: foundry's own name, unrelated to any GitHub login.
    #[schema(value_type = Id)]
    pub id: String,
    #[schema(value_type = DisplayName)]
    pub display_name: String,
    /// The profile's label until a GitHub connection sets it (default: the id).
    #[schema(value_type = Option<Label>)]
    pub login: Option<String>,
    /// The profile's kind until a GitHub connection sets it (default: `organization`).
    pub kind: Option<OrgKind>,
}

/// `POST /v1/orgs {id, displayName, login?, kind?}`: creates an organization with the caller as its owner. The id is
/// foundry's own name for it, unrelated to any GitHub login: an organization reaches GitHub only through
/// `github/connect`. `login` and `kind` are kept for older clients as the profile's label until a connection sets them.
///
/// With an `Idempotency-Key`: the organization's id comes from the body, so the caller's own user actor holds the
/// key's claim (the same key with another body, e.g. another id, is refused there) and the answer; the new
/// organization records the key in the transaction that creates it, which makes the creation exactly-once.
#[utoipa::path(post, path = "/v1/orgs", tag = "organizations", request_body = CreateOrgBody,
    params(idempotency::KeyHeader),
    responses(
        (status = 201, description = "Created, with the caller as its owner", body = OrganizationSnapshot),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
pub(super) async fn create_org(req: HttpRequest, caller: Caller, body: Json<CreateOrgBody>) -> Res {
    let api = super::api(&req)?;
    let body = body.into_inner();
    let once = idempotency::key(&req, &caller, "POST /v1/orgs", &body)?;
    validate::org_id("id", &body.id)?;
    let user = api.domain.users.read_existing(&caller.user_id, GetUser).await?;
    let owner_login = user.profile.github_login.clone().unwrap_or_else(|| user.user.name.clone());
    let msg = CreateOrganization {
        login: body.login.unwrap_or_else(|| body.id.clone()),
        display_name: body.display_name,
        kind: body.kind.unwrap_or(OrgKind::Organization),
        owner: Some(Owner { user_id: caller.user_id.clone(), login: owner_login }),
    };
    // Everything is checked before the organization's database is created by the mutation.
    msg.validate(&body.id)?;
    let grant = GrantOrganization {
        org_id: body.id.clone(),
        display_name: Some(msg.display_name.trim().to_owned()),
        role: Some(MemberRole::Owner.as_str().to_owned()),
    };
    let id = body.id;
    let me = caller.user_id;
    idempotency::to_completion(async move {
        let users = &api.domain.users;
        let mut replayed = false;
        match &once {
            None => api.domain.orgs.mutate(&id, msg).await?,
            Some(key) => {
                let claim = ReserveIdempotency::created(key.clone(), serde_json::json!(id).to_string());
                if let Some(res) = idempotency::claimed(users.mutate_existing(&me, claim).await?)? {
                    return Ok(res);
                }
                match api.domain.orgs.mutate(&id, Idempotent { key: key.clone(), msg }).await {
                    Ok(once) => match idempotency::step(once)? {
                        Step::Answered(res) => return Ok(res),
                        Step::Finish((), again) => replayed = again,
                    },
                    Err(e) => {
                        // Refused (the id is taken ...): nothing was created, so the key is free again.
                        idempotency::release(users, &me, key).await;
                        return Err(e.into());
                    }
                }
            }
        }
        // The organization's outbox tells the owner too; applied here as well (idempotent) so that the creator's
        // `GET /v1/orgs` and `app` snapshot list the organization as soon as this answers.
        users.mutate_existing(&me, grant).await?;
        let snapshot = api.domain.orgs.read_existing(&id, GetOrganizationSnapshot).await?;
        match &once {
            None => Ok(HttpResponse::Created().json(snapshot)),
            Some(key) => idempotency::answer(users, &me, key, StatusCode::CREATED, snapshot, replayed).await,
        }
    })
    .await
}

/// `GET /v1/orgs`: the caller's organizations with names and roles, and the active one (the `app` snapshot's).
#[utoipa::path(get, path = "/v1/orgs", tag = "organizations",
    responses((status = 200, description = "The caller's organizations", body = OrganizationList)))]
pub(super) async fn list_orgs(req: HttpRequest, caller: Caller) -> Res {
    let app = super::api(&req)?.domain.users.read_existing(&caller.user_id, GetAppSnapshot).await?;
    ok(OrganizationList { organizations: app.organizations, active_organization_id: app.active_organization_id })
}

/// `GET /v1/orgs/{org}`: the organization snapshot (what `organizationUpdated` carries). While WebSocket clients
/// subscribe to it, the topic's already-serialised snapshot is served without asking the actor.
#[utoipa::path(get, path = "/v1/orgs/{org}", tag = "organizations", params(OrgParams),
    responses((status = 200, description = "The organization snapshot", body = OrganizationSnapshot)))]
pub(super) async fn get_org(req: HttpRequest, caller: Caller, path: web::Path<OrgParams>) -> Res {
    let org = path.into_inner().org;
    let api = super::api(&req)?;
    member(&api, &caller, &org).await?;
    if let Some(ev) = api.domain.orgs.latest_snapshot(&org, crate::actors::organization::TOPIC) {
        return Ok(HttpResponse::Ok().content_type("application/json").body(ev.snapshot.get().to_owned()));
    }
    ok(api.domain.orgs.read_existing(&org, GetOrganizationSnapshot).await?)
}

/// `GET /v1/orgs/{org}/members`: the members, by user id.
#[utoipa::path(get, path = "/v1/orgs/{org}/members", tag = "organizations", params(OrgParams),
    responses((status = 200, description = "The members", body = Vec<MemberRow>)))]
pub(super) async fn list_members(req: HttpRequest, caller: Caller, path: web::Path<OrgParams>) -> Res {
    let org = path.into_inner().org;
    let api = super::api(&req)?;
    member(&api, &caller, &org).await?;
    ok(api.domain.orgs.read_existing(&org, ListMembers).await?)
}

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberBody {
    pub role: MemberRole,
    /// How the member is listed (default: their GitHub login, else their name).
    #[schema(value_type = Option<Label>)]
    pub login: Option<String>,
}

/// The `{org}/members/{user}` path segments.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct MemberParams {
    /// The organization's id.
    #[param(value_type = Id)]
    org: String,
    /// The member's user id.
    #[param(value_type = Id)]
    user: String,
}

/// `PUT /v1/orgs/{org}/members/{user} {role, login?}`: adds a signed-up user or changes their role (admins; only
/// owners make owners).
#[utoipa::path(put, path = "/v1/orgs/{org}/members/{user}", tag = "organizations", params(MemberParams),
    request_body = MemberBody,
    responses(
        (status = 200, description = "The member as now recorded", body = MemberRow),
        (status = 409, response = Conflict),
    ))]
pub(super) async fn put_member(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<MemberParams>,
    body: Json<MemberBody>,
) -> Res {
    let api = super::api(&req)?;
    let MemberParams { org, user: user_id } = path.into_inner();
    let me = admin(&api, &caller, &org).await?;
    let body = body.into_inner();
    if body.role == MemberRole::Owner && me.role() != MemberRole::Owner {
        return Err(ApiError::forbidden("only owners may make owners"));
    }
    validate::user_id("user", &user_id)?;
    // Only a user who signed up can be added: an unknown id is 404, and no user database is created for it.
    let user = api.domain.users.read_existing(&user_id, GetUser).await?;
    let login = body.login.or(user.profile.github_login).unwrap_or(user.user.name);
    let msg = AddMember { user_id, login, role: body.role, by: Some(caller.user_id.clone()), new_only: false };
    ok(api.domain.orgs.mutate_existing(&org, msg).await?)
}

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteBody {
    /// The login they signed in with (GitHub, else development; case-insensitive).
    #[schema(value_type = Id)]
    pub login: String,
    pub role: MemberRole,
}

/// `POST /v1/orgs/{org}/members {login, role}`: adds the user who signed in with that login (GitHub first, then a
/// development login); admins only, only owners make owners. 404 `user_not_found` if nobody has signed in with it,
/// 409 if they are already a member (decided in the transaction that adds them, after an `Idempotency-Key`'s replay).
#[utoipa::path(post, path = "/v1/orgs/{org}/members", tag = "organizations", params(OrgParams, idempotency::KeyHeader),
    request_body = InviteBody,
    responses(
        (status = 201, description = "Added", body = MemberRow),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
pub(super) async fn invite_member(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<OrgParams>,
    body: Json<InviteBody>,
) -> Res {
    let org = path.into_inner().org;
    let api = super::api(&req)?;
    let me = admin(&api, &caller, &org).await?;
    let body = body.into_inner();
    let once = idempotency::key(&req, &caller, &format!("POST /v1/orgs/{org}/members"), &body)?;
    if body.role == MemberRole::Owner && me.role() != MemberRole::Owner {
        return Err(ApiError::forbidden("only owners may make owners"));
    }
    let login = body.login.trim().to_owned();
    validate::login("login", &login)?;
    let Some(user_id) =
        api.domain.auth.read(&AUTH_DIRECTORY_KEY.to_owned(), ResolveLogin { login: login.clone() }).await?
    else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "user_not_found",
            format!("nobody has signed in as {login:?} yet: they can be added after their first sign-in"),
        ));
    };
    // Listed under their GitHub login when they have one, else the login as indexed (lowercase).
    let user = api.domain.users.read(&user_id, GetUser).await?;
    let login = user.profile.github_login.unwrap_or_else(|| login.to_lowercase());
    let msg = AddMember { user_id, login, role: body.role, by: Some(caller.user_id.clone()), new_only: true };
    let Some(key) = once else { return Ok(HttpResponse::Created().json(api.domain.orgs.mutate(&org, msg).await?)) };
    idempotency::to_completion(async move {
        match idempotency::step(api.domain.orgs.mutate(&org, Idempotent { key: key.clone(), msg }).await?)? {
            Step::Answered(res) => Ok(res),
            Step::Finish(row, replayed) => {
                idempotency::answer(&api.domain.orgs, &org, &key, StatusCode::CREATED, row, replayed).await
            }
        }
    })
    .await
}

/// `DELETE /v1/orgs/{org}/members/{user}`: admins remove members; anyone may leave.
#[utoipa::path(delete, path = "/v1/orgs/{org}/members/{user}", tag = "organizations", params(MemberParams),
    request_body = Option<NoBody>,
    responses((status = 204, description = "Removed"), (status = 409, response = Conflict)))]
pub(super) async fn delete_member(req: HttpRequest, caller: Caller, path: web::Path<MemberParams>, _: NoBody) -> Res {
    let api = super::api(&req)?;
    let MemberParams { org, user: user_id } = path.into_inner();
    if user_id == caller.user_id {
        member(&api, &caller, &org).await?;
    } else {
        admin(&api, &caller, &org).await?;
    }
    validate::user_id("user", &user_id)?;
    if api.domain.orgs.mutate_existing(&org, RemoveMember { user_id, by: Some(caller.user_id.clone()) }).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::not_found("not a member"))
    }
}

/// `GET /v1/orgs/{org}/repos`: the organization's repositories, by full name.
#[utoipa::path(get, path = "/v1/orgs/{org}/repos", tag = "organizations", params(OrgParams),
    responses((status = 200, description = "The repositories", body = Vec<RepoRow>)))]
pub(super) async fn list_repos(req: HttpRequest, caller: Caller, path: web::Path<OrgParams>) -> Res {
    let org = path.into_inner().org;
    let api = super::api(&req)?;
    member(&api, &caller, &org).await?;
    ok(api.domain.orgs.read_existing(&org, ListRepositories).await?)
}

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddRepoBody {
    #[schema(value_type = Id)]
    pub repo_id: String,
    /// `owner/name`.
    #[schema(value_type = DisplayName)]
    pub full_name: String,
    #[schema(value_type = RemoteUrl)]
    pub remote_url: String,
    /// Default: `main`.
    #[schema(value_type = Option<Branch>)]
    pub default_branch: Option<String>,
}

/// `POST /v1/orgs/{org}/repos {repoId, fullName, remoteUrl, defaultBranch?}`: imports a repository (admins). With an
/// `Idempotency-Key`, the organization records the key with the repository it adds.
#[utoipa::path(post, path = "/v1/orgs/{org}/repos", tag = "organizations", params(OrgParams, idempotency::KeyHeader),
    request_body = AddRepoBody,
    responses(
        (status = 201, description = "Imported", body = RepoRow),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
pub(super) async fn add_repo(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<OrgParams>,
    body: Json<AddRepoBody>,
) -> Res {
    let org = path.into_inner().org;
    let api = super::api(&req)?;
    admin(&api, &caller, &org).await?;
    let b = body.into_inner();
    let once = idempotency::key(&req, &caller, &format!("POST /v1/orgs/{org}/repos"), &b)?;
    let msg = AddRepository {
        repo_id: b.repo_id,
        full_name: b.full_name,
        remote_url: b.remote_url,
        default_branch: b.default_branch.unwrap_or_else(|| "main".into()),
        user_id: Some(caller.user_id.clone()),
    };
    idempotency::to_completion(async move {
        let Some(key) = once else {
            return Ok(HttpResponse::Created().json(api.domain.add_repository(&org, msg).await?));
        };
        match idempotency::step(api.domain.add_repository_once(&org, msg, key.clone()).await?)? {
            Step::Answered(res) => Ok(res),
            Step::Finish(row, replayed) => {
                idempotency::answer(&api.domain.orgs, &org, &key, StatusCode::CREATED, row, replayed).await
            }
        }
    })
    .await
}

/// `GET /v1/orgs/{org}/repos/{repo}`: one repository.
#[utoipa::path(get, path = "/v1/orgs/{org}/repos/{repo}", tag = "organizations", params(RepoParams),
    responses((status = 200, description = "The repository", body = RepoRow)))]
pub(super) async fn get_repo(req: HttpRequest, caller: Caller, path: web::Path<RepoParams>) -> Res {
    let api = super::api(&req)?;
    let (org, repo) = path.into_inner().parts();
    member(&api, &caller, &org).await?;
    validate::repo_id("repo", &repo)?;
    ok(api.domain.orgs.read_existing(&org, GetRepository { repo_id: repo }).await?)
}

/// `GET /v1/orgs/{org}/repos/{repo}/tasks`: the repository's task summaries.
#[utoipa::path(get, path = "/v1/orgs/{org}/repos/{repo}/tasks", tag = "organizations", params(RepoParams),
    responses((status = 200, description = "The task summaries", body = Vec<TaskSummary>)))]
pub(super) async fn list_tasks(req: HttpRequest, caller: Caller, path: web::Path<RepoParams>) -> Res {
    let api = super::api(&req)?;
    let (org, repo) = path.into_inner().parts();
    member(&api, &caller, &org).await?;
    validate::repo_id("repo", &repo)?;
    api.domain.orgs.read_existing(&org, GetRepository { repo_id: repo.clone() }).await?;
    // The organization knows the repository, so its coordinator may be created here (a sync imported it a moment
    // ago and the organization's outbox has not initialised it yet).
    ok(api.domain.repos.read(&RepoKey::new(&org, &repo), ListTaskSummaries).await?)
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only events of this repository.
    #[param(value_type = Option<Id>)]
    pub repo: Option<String>,
    /// Only events of this task (of `repo`).
    #[param(value_type = Option<Id>)]
    pub task: Option<String>,
    /// Only events older than this id: a page's `nextBefore`.
    pub before: Option<i64>,
    /// Page size (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// `GET /v1/orgs/{org}/audit?repo&task&before&limit`: audit events, newest first.
#[utoipa::path(get, path = "/v1/orgs/{org}/audit", tag = "organizations", params(OrgParams, AuditQuery),
    responses((status = 200, description = "A page of events, newest first", body = AuditPage)))]
pub(super) async fn audit(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<OrgParams>,
    q: web::Query<AuditQuery>,
) -> Res {
    let org = path.into_inner().org;
    let api = super::api(&req)?;
    member(&api, &caller, &org).await?;
    let q = q.into_inner();
    if let Some(repo) = &q.repo {
        validate::repo_id("repo", repo)?;
    }
    if let Some(task) = &q.task {
        validate::task_id("task", task)?;
    }
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > 500 {
        return Err(ApiError::bad_request("invalid_query", "limit must be 1 to 500"));
    }
    let msg = ListAuditEvents { repo_id: q.repo, task_id: q.task, before_id: q.before, limit };
    ok(api.domain.audit_events(&org, msg).await?)
}

/// `GET /v1/orgs/{org}/github`: sync status and mirror counts.
#[utoipa::path(get, path = "/v1/orgs/{org}/github", tag = "github", params(OrgParams),
    responses((status = 200, description = "The connection and its sync", body = GitHubConnection)))]
pub(super) async fn github_status(req: HttpRequest, caller: Caller, path: web::Path<OrgParams>) -> Res {
    let org = path.into_inner().org;
    let api = super::api(&req)?;
    member(&api, &caller, &org).await?;
    match api.domain.github.read_existing(&org, GetSyncStatus).await {
        Ok(status) => ok(GitHubConnection { connected: true, status: Some(status) }),
        Err(CallError::NotFound { .. } | CallError::Handler(DomainError::NotFound { .. })) => {
            ok(GitHubConnection { connected: false, status: None })
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectBody {
    /// The GitHub account's login.
    #[schema(value_type = Id)]
    pub login: String,
    pub kind: AccountKind,
}

fn identity_required(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "github_identity_required", message)
}

/// Asks GitHub, with the caller's own OAuth token, whether they control the account: 403 `github_identity_required`
/// without a usable GitHub sign-in, 403 `github_not_admin` when GitHub says no, 502 `github_unavailable` when GitHub
/// could not be asked.
async fn prove_control(
    api: &Api,
    caller: &Caller,
    login: &str,
    kind: AccountKind,
) -> Result<ControlledAccount, ApiError> {
    let Some(base) = api.auth.github_api_base() else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "github_not_configured",
            "connecting a GitHub account needs GitHub sign-in on this server (--github-client-id and \
             --github-client-secret): the caller proves control of the account with their GitHub identity",
        ));
    };
    let stored = api.domain.users.exec_existing(&caller.user_id, GetOAuthAccessToken { provider: "github".into() });
    let token = match stored.await? {
        StoredAccessToken::Token(token) => token,
        StoredAccessToken::Missing => {
            return Err(identity_required(
                "connecting a GitHub account needs your GitHub identity: sign in with GitHub first",
            ))
        }
        StoredAccessToken::Unreadable(e) => {
            return Err(identity_required(format!(
                "your stored GitHub sign-in cannot be read on this server ({e}): sign in with GitHub again"
            )))
        }
    };
    let user_api = GitHubClient::new(base, &token);
    verify_control(&user_api, login, kind, api.github_app_id.as_deref()).await.map_err(|e| match e {
        ControlError::NotControlled(why) => ApiError::new(
            StatusCode::FORBIDDEN,
            "github_not_admin",
            format!("only an admin of a GitHub organization (or the GitHub user themself) may connect it: {why}"),
        ),
        ControlError::TokenRejected => identity_required(e.to_string()),
        ControlError::Unavailable(_) => {
            tracing::warn!(error = %e, "GitHub could not check control of an account");
            ApiError::new(StatusCode::BAD_GATEWAY, "github_unavailable", e.to_string())
        }
    })
}

/// `POST /v1/orgs/{org}/github/connect {login, kind}`: links a GitHub account (admins who control it on GitHub: see
/// `prove_control`), then starts a sync. 409 when another organization holds the account.
#[utoipa::path(post, path = "/v1/orgs/{org}/github/connect", tag = "github", params(OrgParams),
    request_body = ConnectBody,
    responses(
        (status = 202, description = "Connected; a sync started", body = SyncStarted),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
        (status = 502, response = BadGateway),
    ))]
pub(super) async fn github_connect(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<OrgParams>,
    body: Json<ConnectBody>,
) -> Res {
    let org = path.into_inner().org;
    let api = super::api(&req)?;
    admin(&api, &caller, &org).await?;
    require_github(&api)?;
    let b = body.into_inner();
    validate::login("login", &b.login)?;
    let account = prove_control(&api, &caller, &b.login, b.kind).await?;
    let (login, proof) = (&account.login, account.proof);
    tracing::info!(org = %org, %login, account_id = account.id, ?proof, "GitHub account control shown");
    let account_id =
        i64::try_from(account.id).map_err(|_| ApiError::bad_request("invalid_input", "account id out of range"))?;
    let by = Some(caller.user_id.clone());
    let connect = ConnectGitHub { login: account.login, kind: b.kind, account_id, by: by.clone() };
    // Claims the account, then creates the organization's GitHub mirror; a refusal creates nothing.
    api.domain.connect_github(&org, connect).await?;
    let generation = api.domain.github.exec(&org, RequestSync { by }).await?;
    Ok(HttpResponse::Accepted().json(SyncStarted { generation }))
}

/// `POST /v1/orgs/{org}/github/sync`: starts a sync (members); while one runs, 409 (never two at once).
#[utoipa::path(post, path = "/v1/orgs/{org}/github/sync", tag = "github", params(OrgParams),
    request_body = Option<NoBody>,
    responses(
        (status = 202, description = "A sync started", body = SyncStarted),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
pub(super) async fn github_sync(req: HttpRequest, caller: Caller, path: web::Path<OrgParams>, _: NoBody) -> Res {
    let org = path.into_inner().org;
    let api = super::api(&req)?;
    member(&api, &caller, &org).await?;
    require_github(&api)?;
    let generation = api.domain.github.exec_existing(&org, RequestSync { by: Some(caller.user_id.clone()) }).await?;
    Ok(HttpResponse::Accepted().json(SyncStarted { generation }))
}

/// A recovery operation of `POST /v1/orgs/{org}/admin/{op}`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AdminOp {
    /// Sync everything again from GitHub (200 with the sync's generation).
    FullSync,
    /// Forget the GitHub mirror (204).
    ClearGithub,
    /// Rebuild the task summaries from the tasks (200 with how many).
    Rebuild,
}

/// `POST /v1/orgs/{org}/admin/{op}`: recovery operations (admins): `full-sync`, `clear-github`, `rebuild`.
#[utoipa::path(post, path = "/v1/orgs/{org}/admin/{op}", tag = "github",
    params(OrgParams, ("op" = inline(AdminOp), Path, description = "The operation")),
    request_body = Option<NoBody>,
    responses(
        (status = 200, description = "`full-sync`: the sync's generation; `rebuild`: the summaries written",
            body = AdminOutcome),
        (status = 204, description = "`clear-github`: cleared (or never connected)"),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
    ))]
pub(super) async fn admin_op(req: HttpRequest, caller: Caller, path: web::Path<(String, String)>, _: NoBody) -> Res {
    let api = super::api(&req)?;
    let (org, op) = path.into_inner();
    admin(&api, &caller, &org).await?;
    let op: AdminOp = super::segment(&op).ok_or_else(|| ApiError::not_found(format!("no admin operation {op:?}")))?;
    let by = Some(caller.user_id.clone());
    match op {
        AdminOp::FullSync => {
            require_github(&api)?;
            let generation = api.domain.github.exec_existing(&org, AdminFullSync { by }).await?;
            ok(AdminOutcome::Sync(SyncStarted { generation }))
        }
        AdminOp::ClearGithub => match api.domain.github.exec_existing(&org, AdminClearState { by }).await {
            // Never connected: nothing to clear (and nothing to audit: nothing happened).
            Ok(()) | Err(CallError::NotFound { .. }) => Ok(HttpResponse::NoContent().finish()),
            Err(e) => Err(e.into()),
        },
        AdminOp::Rebuild => {
            let written = api.domain.admin_rebuild_organization(&org, by.as_deref()).await?;
            ok(AdminOutcome::Rebuilt(Rebuilt { task_summaries: written }))
        }
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/orgs", web::get().to(list_orgs))
        .route("/orgs", web::post().to(create_org))
        .route("/orgs/{org}", web::get().to(get_org))
        .route("/orgs/{org}/members", web::get().to(list_members))
        .route("/orgs/{org}/members", web::post().to(invite_member))
        .route("/orgs/{org}/members/{user}", web::put().to(put_member))
        .route("/orgs/{org}/members/{user}", web::delete().to(delete_member))
        .route("/orgs/{org}/repos", web::get().to(list_repos))
        .route("/orgs/{org}/repos", web::post().to(add_repo))
        .route("/orgs/{org}/repos/{repo}", web::get().to(get_repo))
        .route("/orgs/{org}/repos/{repo}/tasks", web::get().to(list_tasks))
        .route("/orgs/{org}/audit", web::get().to(audit))
        .route("/orgs/{org}/github", web::get().to(github_status))
        .route("/orgs/{org}/github/connect", web::post().to(github_connect))
        .route("/orgs/{org}/github/sync", web::post().to(github_sync))
        .route("/orgs/{org}/admin/{op}", web::post().to(admin_op));
}
