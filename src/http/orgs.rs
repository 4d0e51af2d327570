//! Routes of the signed-in user (`/v1/me`, `/v1/models`) and of organizations: profile and snapshot, members,
//! repositories, audit log, GitHub connection and sync, and admin recovery operations.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::body::{Json, NoBody};
use super::idempotency::{self, Step};
use super::{admin, member, Api, ApiError, Caller};
use crate::actors::audit_log::ListAuditEvents;
use crate::actors::auth_directory::{ResolveLogin, AUTH_DIRECTORY_KEY};
use crate::actors::github_data::{
    AdminClearState, AdminFullSync, ConnectGitHub, GetSyncStatus, GitHubService, RequestSync,
};
use crate::actors::organization::{
    AddMember, AddRepository, CreateOrganization, GetOrganizationSnapshot, GetRepository, ListMembers,
    ListRepositories, MemberRole, OrgKind, Owner, RemoveMember,
};
use crate::actors::repository::ListTaskSummaries;
use crate::actors::user::{
    GetAppSnapshot, GetOAuthAccessToken, GetUser, GrantOrganization, SetActiveOrganization, SetDefaultModel,
    SetStarterRepoStatus, StarterRepoStatus, StoredAccessToken, UpsertUser,
};
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

/// `GET /v1/me`: the caller's `app` snapshot (user, profile, default model, organizations).
async fn me(req: HttpRequest, caller: Caller) -> Res {
    ok(super::api(&req)?.domain.users.read_existing(&caller.user_id, GetAppSnapshot).await?)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProfileBody {
    name: Option<String>,
    avatar_url: Option<String>,
}

/// `PATCH /v1/me {name?, avatarUrl?}`: the caller's display name and avatar (the email comes from the sign-in).
async fn update_me(req: HttpRequest, caller: Caller, body: Json<ProfileBody>) -> Res {
    let api = super::api(&req)?;
    let b = body.into_inner();
    let user = api.domain.users.read_existing(&caller.user_id, GetUser).await?;
    let upsert = UpsertUser {
        name: b.name.unwrap_or(user.user.name),
        email: user.user.email,
        // An empty URL removes the picture; an absent one keeps it.
        avatar_url: match b.avatar_url {
            Some(url) if url.trim().is_empty() => None,
            Some(url) => Some(url),
            None => user.user.avatar_url,
        },
    };
    api.domain.users.mutate_existing(&caller.user_id, upsert).await?;
    ok(api.domain.users.read_existing(&caller.user_id, GetAppSnapshot).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelBody {
    model: String,
}

/// `PUT /v1/me/default-model {model}`.
async fn set_default_model(req: HttpRequest, caller: Caller, body: Json<ModelBody>) -> Res {
    let api = super::api(&req)?;
    api.domain.users.mutate_existing(&caller.user_id, SetDefaultModel { model: body.into_inner().model }).await?;
    ok(api.domain.users.read_existing(&caller.user_id, GetAppSnapshot).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StarterBody {
    status: StarterRepoStatus,
}

/// `PUT /v1/me/starter-repo {status: "starred" | "skipped"}`.
async fn set_starter_repo(req: HttpRequest, caller: Caller, body: Json<StarterBody>) -> Res {
    let api = super::api(&req)?;
    let msg = SetStarterRepoStatus { status: body.into_inner().status };
    api.domain.users.mutate_existing(&caller.user_id, msg).await?;
    ok(api.domain.users.read_existing(&caller.user_id, GetAppSnapshot).await?)
}

/// `GET /v1/models`: the models sessions may use.
async fn models(req: HttpRequest, _: Caller) -> Res {
    ok(super::api(&req)?.domain.models())
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateOrgBody {
    id: String,
    display_name: String,
    login: Option<String>,
    kind: Option<OrgKind>,
}

/// `POST /v1/orgs {id, displayName, login?, kind?}`: creates an organization with the caller as its owner. The id is
/// foundry's own name for it, unrelated to any GitHub login: an organization reaches GitHub only through
/// `github/connect`. `login` and `kind` are kept for older clients as the profile's label until a connection sets them.
///
/// With an `Idempotency-Key`: the organization's id comes from the body, so the caller's own user actor holds the
/// key's claim (the same key with another body, e.g. another id, is refused there) and the answer; the new
/// organization records the key in the transaction that creates it, which makes the creation exactly-once.
async fn create_org(req: HttpRequest, caller: Caller, body: Json<CreateOrgBody>) -> Res {
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
async fn list_orgs(req: HttpRequest, caller: Caller) -> Res {
    let app = super::api(&req)?.domain.users.read_existing(&caller.user_id, GetAppSnapshot).await?;
    ok(serde_json::json!({
        "organizations": app.organizations,
        "activeOrganizationId": app.active_organization_id,
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ActiveOrgBody {
    org_id: String,
}

/// `PUT /v1/me/active-organization {orgId}`: where the caller's app opens (members only).
async fn set_active_org(req: HttpRequest, caller: Caller, body: Json<ActiveOrgBody>) -> Res {
    let api = super::api(&req)?;
    let org_id = body.into_inner().org_id;
    member(&api, &caller, &org_id).await?;
    api.domain.users.mutate_existing(&caller.user_id, SetActiveOrganization { org_id }).await?;
    ok(api.domain.users.read_existing(&caller.user_id, GetAppSnapshot).await?)
}

/// `GET /v1/orgs/{org}`: the organization snapshot (what `organizationUpdated` carries). While WebSocket clients
/// subscribe to it, the topic's already-serialised snapshot is served without asking the actor.
async fn get_org(req: HttpRequest, caller: Caller, org: web::Path<String>) -> Res {
    let api = super::api(&req)?;
    member(&api, &caller, &org).await?;
    if let Some(ev) = api.domain.orgs.latest_snapshot(&org, crate::actors::organization::TOPIC) {
        return Ok(HttpResponse::Ok().content_type("application/json").body(ev.snapshot.get().to_owned()));
    }
    ok(api.domain.orgs.read_existing(&org, GetOrganizationSnapshot).await?)
}

async fn list_members(req: HttpRequest, caller: Caller, org: web::Path<String>) -> Res {
    let api = super::api(&req)?;
    member(&api, &caller, &org).await?;
    ok(api.domain.orgs.read_existing(&org, ListMembers).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberBody {
    role: MemberRole,
    login: Option<String>,
}

/// `PUT /v1/orgs/{org}/members/{user} {role, login?}`: adds a signed-up user or changes their role (admins; only
/// owners make owners).
async fn put_member(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: Json<MemberBody>,
) -> Res {
    let api = super::api(&req)?;
    let (org, user_id) = path.into_inner();
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

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct InviteBody {
    login: String,
    role: MemberRole,
}

/// `POST /v1/orgs/{org}/members {login, role}`: adds the user who signed in with that login (GitHub first, then a
/// development login); admins only, only owners make owners. 404 `user_not_found` if nobody has signed in with it,
/// 409 if they are already a member (decided in the transaction that adds them, after an `Idempotency-Key`'s replay).
async fn invite_member(req: HttpRequest, caller: Caller, org: web::Path<String>, body: Json<InviteBody>) -> Res {
    let api = super::api(&req)?;
    let org = org.into_inner();
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
async fn delete_member(req: HttpRequest, caller: Caller, path: web::Path<(String, String)>, _: NoBody) -> Res {
    let api = super::api(&req)?;
    let (org, user_id) = path.into_inner();
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

async fn list_repos(req: HttpRequest, caller: Caller, org: web::Path<String>) -> Res {
    let api = super::api(&req)?;
    member(&api, &caller, &org).await?;
    ok(api.domain.orgs.read_existing(&org, ListRepositories).await?)
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AddRepoBody {
    repo_id: String,
    full_name: String,
    remote_url: String,
    default_branch: Option<String>,
}

/// `POST /v1/orgs/{org}/repos {repoId, fullName, remoteUrl, defaultBranch?}`: imports a repository (admins). With an
/// `Idempotency-Key`, the organization records the key with the repository it adds.
async fn add_repo(req: HttpRequest, caller: Caller, org: web::Path<String>, body: Json<AddRepoBody>) -> Res {
    let api = super::api(&req)?;
    let org = org.into_inner();
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

async fn get_repo(req: HttpRequest, caller: Caller, path: web::Path<(String, String)>) -> Res {
    let api = super::api(&req)?;
    let (org, repo) = path.into_inner();
    member(&api, &caller, &org).await?;
    validate::repo_id("repo", &repo)?;
    ok(api.domain.orgs.read_existing(&org, GetRepository { repo_id: repo }).await?)
}

/// `GET /v1/orgs/{org}/repos/{repo}/tasks`: the repository's task summaries.
async fn list_tasks(req: HttpRequest, caller: Caller, path: web::Path<(String, String)>) -> Res {
    let api = super::api(&req)?;
    let (org, repo) = path.into_inner();
    member(&api, &caller, &org).await?;
    validate::repo_id("repo", &repo)?;
    api.domain.orgs.read_existing(&org, GetRepository { repo_id: repo.clone() }).await?;
    // The organization knows the repository, so its coordinator may be created here (a sync imported it a moment
    // ago and the organization's outbox has not initialised it yet).
    ok(api.domain.repos.read(&RepoKey::new(&org, &repo), ListTaskSummaries).await?)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AuditQuery {
    repo: Option<String>,
    task: Option<String>,
    before: Option<i64>,
    limit: Option<u32>,
}

/// `GET /v1/orgs/{org}/audit?repo&task&before&limit`: audit events, newest first.
async fn audit(req: HttpRequest, caller: Caller, org: web::Path<String>, q: web::Query<AuditQuery>) -> Res {
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
async fn github_status(req: HttpRequest, caller: Caller, org: web::Path<String>) -> Res {
    let api = super::api(&req)?;
    member(&api, &caller, &org).await?;
    match api.domain.github.read_existing(&org, GetSyncStatus).await {
        Ok(status) => ok(serde_json::json!({ "connected": true, "status": status })),
        Err(CallError::NotFound { .. } | CallError::Handler(DomainError::NotFound { .. })) => {
            ok(serde_json::json!({ "connected": false }))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectBody {
    login: String,
    kind: AccountKind,
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
async fn github_connect(req: HttpRequest, caller: Caller, org: web::Path<String>, body: Json<ConnectBody>) -> Res {
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
    Ok(HttpResponse::Accepted().json(serde_json::json!({ "generation": generation })))
}

/// `POST /v1/orgs/{org}/github/sync`: starts a sync (members); a running one is reported, not doubled.
async fn github_sync(req: HttpRequest, caller: Caller, org: web::Path<String>, _: NoBody) -> Res {
    let api = super::api(&req)?;
    member(&api, &caller, &org).await?;
    require_github(&api)?;
    let generation = api.domain.github.exec_existing(&org, RequestSync { by: Some(caller.user_id.clone()) }).await?;
    Ok(HttpResponse::Accepted().json(serde_json::json!({ "generation": generation })))
}

/// `POST /v1/orgs/{org}/admin/{op}`: recovery operations (admins): `full-sync`, `clear-github`, `rebuild`.
async fn admin_op(req: HttpRequest, caller: Caller, path: web::Path<(String, String)>, _: NoBody) -> Res {
    let api = super::api(&req)?;
    let (org, op) = path.into_inner();
    admin(&api, &caller, &org).await?;
    let by = Some(caller.user_id.clone());
    match op.as_str() {
        "full-sync" => {
            require_github(&api)?;
            ok(serde_json::json!({ "generation": api.domain.github.exec_existing(&org, AdminFullSync { by }).await? }))
        }
        "clear-github" => match api.domain.github.exec_existing(&org, AdminClearState { by }).await {
            // Never connected: nothing to clear (and nothing to audit: nothing happened).
            Ok(()) | Err(CallError::NotFound { .. }) => Ok(HttpResponse::NoContent().finish()),
            Err(e) => Err(e.into()),
        },
        "rebuild" => {
            let written = api.domain.admin_rebuild_organization(&org, by.as_deref()).await?;
            ok(serde_json::json!({ "taskSummaries": written }))
        }
        _ => Err(ApiError::not_found(format!("no admin operation {op:?}"))),
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/me", web::get().to(me))
        .route("/me", web::patch().to(update_me))
        .route("/me/default-model", web::put().to(set_default_model))
        .route("/me/starter-repo", web::put().to(set_starter_repo))
        .route("/models", web::get().to(models))
        .route("/me/active-organization", web::put().to(set_active_org))
        .route("/orgs", web::get().to(list_orgs))
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
