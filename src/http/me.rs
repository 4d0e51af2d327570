//! Routes of the signed-in user: `/v1/me` (the `app` snapshot: profile, default model, starter repository, the
//! organization the app opens) and the model catalog (`/v1/models`).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::body::Json;
use super::{member, ApiError, Caller};
use crate::actors::models::CatalogModel;
use crate::actors::user::{
    AppSnapshot, GetAppSnapshot, GetUser, SetActiveOrganization, SetDefaultModel, SetStarterRepoStatus,
    StarterRepoStatus, UpsertUser,
};
use crate::actors::validate::schema::{DisplayName, Id};

type Res = Result<HttpResponse, ApiError>;

fn ok<T: serde::Serialize>(value: T) -> Res {
    Ok(HttpResponse::Ok().json(value))
}

/// `GET /v1/me`: the caller's `app` snapshot (user, profile, default model, organizations).
#[utoipa::path(get, path = "/v1/me", tag = "me",
    responses((status = 200, description = "The caller's `app` snapshot", body = AppSnapshot)))]
pub(super) async fn me(req: HttpRequest, caller: Caller) -> Res {
    ok(super::api(&req)?.domain.users.read_existing(&caller.user_id, GetAppSnapshot).await?)
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileBody {
    /// The display name (absent: kept).
    #[schema(value_type = Option<DisplayName>)]
    pub name: Option<String>,
    /// The picture's URL (absent: kept; empty: removed).
    #[schema(max_length = 2048)]
    pub avatar_url: Option<String>,
}

/// `PATCH /v1/me {name?, avatarUrl?}`: the caller's display name and avatar (the email comes from the sign-in).
#[utoipa::path(patch, path = "/v1/me", tag = "me", request_body = ProfileBody,
    responses((status = 200, description = "The caller's `app` snapshot", body = AppSnapshot)))]
pub(super) async fn update_me(req: HttpRequest, caller: Caller, body: Json<ProfileBody>) -> Res {
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

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelBody {
    /// A model id of `GET /v1/models` (400 `invalid_input` for another).
    pub model: String,
}

/// `PUT /v1/me/default-model {model}`.
#[utoipa::path(put, path = "/v1/me/default-model", tag = "me", request_body = ModelBody,
    responses((status = 200, description = "The caller's `app` snapshot", body = AppSnapshot)))]
pub(super) async fn set_default_model(req: HttpRequest, caller: Caller, body: Json<ModelBody>) -> Res {
    let api = super::api(&req)?;
    api.domain.users.mutate_existing(&caller.user_id, SetDefaultModel { model: body.into_inner().model }).await?;
    ok(api.domain.users.read_existing(&caller.user_id, GetAppSnapshot).await?)
}

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StarterBody {
    pub status: StarterChoice,
}

/// What the user answers about the starter repository (`pending` is only where everyone starts).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StarterChoice {
    Starred,
    Skipped,
}

impl From<StarterChoice> for StarterRepoStatus {
    fn from(choice: StarterChoice) -> Self {
        match choice {
            StarterChoice::Starred => StarterRepoStatus::Starred,
            StarterChoice::Skipped => StarterRepoStatus::Skipped,
        }
    }
}

/// `PUT /v1/me/starter-repo {status: "starred" | "skipped"}`.
#[utoipa::path(put, path = "/v1/me/starter-repo", tag = "me", request_body = StarterBody,
    responses((status = 200, description = "The caller's `app` snapshot", body = AppSnapshot)))]
pub(super) async fn set_starter_repo(req: HttpRequest, caller: Caller, body: Json<StarterBody>) -> Res {
    let api = super::api(&req)?;
    let msg = SetStarterRepoStatus { status: body.into_inner().status.into() };
    api.domain.users.mutate_existing(&caller.user_id, msg).await?;
    ok(api.domain.users.read_existing(&caller.user_id, GetAppSnapshot).await?)
}

/// `GET /v1/models`: the models sessions may use.
#[utoipa::path(get, path = "/v1/models", tag = "me",
    responses((status = 200, description = "The model catalog", body = Vec<CatalogModel>)))]
pub(super) async fn models(req: HttpRequest, _: Caller) -> Res {
    ok(super::api(&req)?.domain.models())
}

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActiveOrgBody {
    /// An organization the caller is a member of.
    #[schema(value_type = Id)]
    pub org_id: String,
}

/// `PUT /v1/me/active-organization {orgId}`: where the caller's app opens (members only).
#[utoipa::path(put, path = "/v1/me/active-organization", tag = "me", request_body = ActiveOrgBody,
    responses(
        (status = 200, description = "The caller's `app` snapshot", body = AppSnapshot),
        (status = 404, response = super::openapi::NotFound),
    ))]
pub(super) async fn set_active_org(req: HttpRequest, caller: Caller, body: Json<ActiveOrgBody>) -> Res {
    let api = super::api(&req)?;
    let org_id = body.into_inner().org_id;
    member(&api, &caller, &org_id).await?;
    api.domain.users.mutate_existing(&caller.user_id, SetActiveOrganization { org_id }).await?;
    ok(api.domain.users.read_existing(&caller.user_id, GetAppSnapshot).await?)
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/me", web::get().to(me))
        .route("/me", web::patch().to(update_me))
        .route("/me/default-model", web::put().to(set_default_model))
        .route("/me/starter-repo", web::put().to(set_starter_repo))
        .route("/models", web::get().to(models))
        .route("/me/active-organization", web::put().to(set_active_org));
}
