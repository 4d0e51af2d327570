//! `Domain`: the operations that span several actors, each going down the coordinator hierarchy
//! (organization -> repository -> task -> session) with full keys.
//!
//! Every cross-actor effect is also written to the sender's outbox in the same transaction, so a crash between two
//! steps loses nothing; the facade additionally applies the next step at once (the receiving messages are
//! idempotent) so that a caller sees the whole operation done when it returns.

use std::sync::Arc;

use super::audit_log::{AppendAuditEvent, AuditLog, AuditPage, ListAuditEvents};
use super::auth_directory::{AuthDirectory, ClaimGitHubAccount, ReleaseGitHubAccount, AUTH_DIRECTORY_KEY};
use super::github_data::{ConnectGitHub, GitHubData};
use super::models::{CatalogModel, ModelCatalog};
use super::organization::{
    AddRepository, AdminReplaceRepoTasks, GetRepository, ListRepositories, Organization, RepoRow,
};
use super::repository::{
    CreateTask, CreatedTask, InitializeRepository, IsTaskMaterialized, ListTaskSummaries, MaterializeTask,
    PreviewTaskNames, Repository, TaskNames,
};
use super::session::{
    GetSessionState, Interrupt, RunQueue, Session, SessionAgent, Steer, SubmitPrompt, SubmitPromptOnce, Submitted,
    TurnPermits, DEFAULT_MAX_TURNS,
};
use super::task::{CreateSession, GetTaskDetail, StartProvision, Task, TaskDetail};
use super::user::{GetTaskOverlay, GetUser, MarkSessionUnread, TaskOverlay, User};
use super::{validate, DomainError, RepoKey, SessionKey, TaskKey};
use crate::integrations::agent::SandboxAgent;
use crate::integrations::agent::{AgentBackend, BuiltinAgent};
use crate::integrations::workspace::Workspaces;
use crate::runtime::{CallError, IdempotencyKey, Idempotent, Mutation, Once, Registry, Runtime};
use crate::secrets::TokenCipher;

/// Errors of domain operations: a domain refusal or a runtime failure, typed.
pub type DomainCallError = CallError<DomainError>;
type Result<T> = std::result::Result<T, DomainCallError>;

/// The runtime's "no such key" (from the `*_existing` calls, which create nothing) as the domain's `NotFound`, so
/// callers of the facade match one refusal whichever way the key was found missing.
trait OrNotFound {
    fn or_not_found(self) -> Self;
}

impl<T> OrNotFound for Result<T> {
    fn or_not_found(self) -> Self {
        self.map_err(|e| match e {
            CallError::NotFound { kind, key } => CallError::Handler(DomainError::not_found(kind, key)),
            other => other,
        })
    }
}

/// A task detail as one viewer sees it: the shared detail plus that viewer's overlay (active session, unread,
/// drafts), applied at read time.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskView {
    #[serde(flatten)]
    pub detail: TaskDetail,
    pub overlay: Option<TaskOverlay>,
}

/// Handles to every domain kind, and the flows between them.
#[derive(Clone)]
pub struct Domain {
    pub runtime: Runtime,
    pub orgs: Registry<Organization>,
    pub repos: Registry<Repository>,
    pub tasks: Registry<Task>,
    pub sessions: Registry<Session>,
    pub users: Registry<User>,
    pub audit: Registry<AuditLog>,
    pub github: Registry<GitHubData>,
    /// The app-level auth index (one instance, key [`AUTH_DIRECTORY_KEY`](super::auth_directory::AUTH_DIRECTORY_KEY)).
    pub auth: Registry<AuthDirectory>,
}

impl Domain {
    /// Registers every domain kind on `runtime`, with the built-in agent (unless the runtime already has one). Tasks
    /// get workspaces when the runtime provides [`Workspaces`] (and git credentials as
    /// [`GitTokens`](super::task::GitTokens)); pull requests need a [`GitHubService`](super::github_data::GitHubService).
    pub fn new(runtime: Runtime) -> Self {
        if runtime.service::<SessionAgent>().is_none() {
            runtime.provide(Arc::new(SessionAgent(Arc::new(BuiltinAgent::default()))));
        }
        Self::build(runtime)
    }

    /// Sessions run their turns on `agent`.
    pub fn with_agent(runtime: Runtime, agent: Arc<dyn AgentBackend>) -> Self {
        runtime.provide(Arc::new(SessionAgent(agent)));
        Self::build(runtime)
    }

    /// No agent backend: prompts are recorded and stay queued (for tests of the data side, and tools).
    pub fn without_agent(runtime: Runtime) -> Self {
        Self::build(runtime)
    }

    fn build(runtime: Runtime) -> Self {
        if runtime.service::<ModelCatalog>().is_none() {
            runtime.provide(Arc::new(ModelCatalog::builtin()));
        }
        // OAuth tokens are stored only sealed: without a key given to the runtime (`serve` loads --token-key-file
        // first), the data directory's own key is used, generated on first use.
        if runtime.service::<TokenCipher>().is_none() {
            let path = runtime.data_dir().join(crate::secrets::KEY_FILE_NAME);
            match TokenCipher::load_or_create(&path) {
                Ok(cipher) => runtime.provide(Arc::new(cipher)),
                Err(e) => tracing::error!(error = %e, "no token key: OAuth tokens will not be stored"),
            }
        }
        let domain = Domain {
            orgs: runtime.registry(),
            repos: runtime.registry(),
            tasks: runtime.registry(),
            sessions: runtime.registry(),
            users: runtime.registry(),
            audit: runtime.registry(),
            github: runtime.registry(),
            auth: runtime.registry(),
            runtime,
        };
        super::workspace_flow::install(&domain);
        if domain.runtime.service::<TurnPermits>().is_none() {
            domain.runtime.provide(Arc::new(TurnPermits::new(DEFAULT_MAX_TURNS)));
        }
        if let Some(gate) = domain.runtime.service::<TurnPermits>() {
            gate.start_dispatcher(domain.sessions.clone());
        }
        domain
    }

    /// Connects organization `org` to a GitHub account whose control the caller has established: claims the account's
    /// id in the auth directory first (a [`DomainError::Conflict`] naming the holder when another organization has
    /// it: nothing is created then), then records the connection on the organization's GitHub mirror. A claim this
    /// call made is given back if recording fails.
    pub async fn connect_github(&self, org: &str, msg: ConnectGitHub) -> Result<()> {
        msg.validate().map_err(CallError::Handler)?;
        validate::org_id("org", org).map_err(CallError::Handler)?;
        let dir = AUTH_DIRECTORY_KEY.to_owned();
        let claim = ClaimGitHubAccount { account_id: msg.account_id, login: msg.login.clone(), org_id: org.to_owned() };
        let account_id = msg.account_id;
        let fresh = self.auth.mutate(&dir, claim).await?;
        if let Err(e) = self.github.mutate(&org.to_owned(), msg).await {
            if fresh {
                let release = ReleaseGitHubAccount { account_id, org_id: org.to_owned() };
                if let Err(release_error) = self.auth.mutate(&dir, release).await {
                    tracing::error!(org, account_id, error = %release_error, "could not release a GitHub account claim");
                }
            }
            return Err(e);
        }
        Ok(())
    }

    /// Imports a repository into an organization and initialises its coordinator.
    pub async fn add_repository(&self, org: &str, msg: AddRepository) -> Result<RepoRow> {
        let row = self.orgs.mutate_existing(&org.to_owned(), msg).await.or_not_found()?;
        self.initialize_repository(&RepoKey::new(org, &row.repo_id), &row).await?;
        Ok(row)
    }

    /// [`Domain::add_repository`] at most once per idempotency key (recorded on the organization with the row). A
    /// replay that was never answered initialises the coordinator again (idempotent), in case the first was cut off.
    pub async fn add_repository_once(
        &self,
        org: &str,
        msg: AddRepository,
        key: IdempotencyKey,
    ) -> Result<Once<RepoRow>> {
        let once = self.orgs.mutate_existing(&org.to_owned(), Idempotent { key, msg }).await.or_not_found()?;
        if let Once::Applied(row) | Once::Replayed { output: row, answer: None } = &once {
            self.initialize_repository(&RepoKey::new(org, &row.repo_id), row).await?;
        }
        Ok(once)
    }

    /// Initialises a repository's coordinator from the organization's row of it. Needed when a sync imported it a
    /// moment ago and the organization's outbox has not done so yet: initialising is idempotent, so doing it now
    /// beats answering "not found" for a listed repository.
    async fn initialize_repository(&self, repo: &RepoKey, row: &RepoRow) -> Result<()> {
        let init = InitializeRepository {
            full_name: row.full_name.clone(),
            remote_url: row.remote_url.clone(),
            default_branch: row.default_branch.clone(),
        };
        self.repos.mutate(repo, init).await
    }

    /// The title and branch `CreateTask` would assign now (validated the same way), for a form's preview.
    pub async fn preview_task_names(&self, repo: &RepoKey, msg: PreviewTaskNames) -> Result<TaskNames> {
        let row =
            self.orgs.read_existing(&repo.org, GetRepository { repo_id: repo.repo.clone() }).await.or_not_found()?;
        let again =
            PreviewTaskNames { prompt: msg.prompt.clone(), title: msg.title.clone(), branch: msg.branch.clone() };
        match self.repos.read(repo, msg).await {
            Err(CallError::Handler(DomainError::NotFound { what: "repository", .. })) => {
                self.initialize_repository(repo, &row).await?;
                Ok(self.repos.read(repo, again).await?)
            }
            other => Ok(other?),
        }
    }

    /// Creates a task from a prompt: organization (knows the repository) -> repository (assigns id and branch) ->
    /// task (creates its first session) -> session (stores the prompt). Without an explicit model, the creating
    /// user's default model is used.
    pub async fn create_task(&self, repo: &RepoKey, msg: CreateTask) -> Result<CreatedTask> {
        let (row, msg) = self.prepare_task(repo, msg).await?;
        let (created, init) = self.mutate_repository(repo, &row, msg).await?;
        self.finish_task_creation(row, created, init).await
    }

    /// [`Domain::create_task`] at most once per idempotency key: the repository records the key in the transaction
    /// that assigns the task, and replays it. A replay that was never answered (the first request was cut off after
    /// the task existed) runs the remaining steps again; each is idempotent, so the task ends up whole, once.
    pub async fn create_task_once(
        &self,
        repo: &RepoKey,
        msg: CreateTask,
        key: IdempotencyKey,
    ) -> Result<Once<CreatedTask>> {
        let (row, msg) = self.prepare_task(repo, msg).await?;
        match self.mutate_repository(repo, &row, Idempotent { key, msg }).await? {
            Once::Applied((created, init)) => Ok(Once::Applied(self.finish_task_creation(row, created, init).await?)),
            Once::Replayed { output: (created, init), answer: None } => {
                let output = self.finish_task_creation(row, created, init).await?;
                Ok(Once::Replayed { output, answer: None })
            }
            other => Ok(other.map(|(created, _)| created)),
        }
    }

    /// The repository's row (the organization must know it) and the message with the creator's default model.
    async fn prepare_task(&self, repo: &RepoKey, mut msg: CreateTask) -> Result<(RepoRow, CreateTask)> {
        let row =
            self.orgs.read_existing(&repo.org, GetRepository { repo_id: repo.repo.clone() }).await.or_not_found()?;
        if msg.model.is_none() {
            msg.model = self.default_model_of(msg.user_id.as_deref()).await?;
        }
        Ok((row, msg))
    }

    /// A mutation of a repository's coordinator, initialising the coordinator first if the organization imported
    /// the repository a moment ago and its outbox has not done so yet.
    async fn mutate_repository<M>(&self, repo: &RepoKey, row: &RepoRow, msg: M) -> Result<M::Output>
    where
        M: Mutation<Entity = Repository, Error = DomainError> + Clone,
    {
        match self.repos.mutate(repo, msg.clone()).await {
            Err(CallError::Handler(DomainError::NotFound { what: "repository", .. })) => {
                self.initialize_repository(repo, row).await?;
                self.repos.mutate(repo, msg).await
            }
            other => other,
        }
    }

    /// The steps after the repository assigned the task (all idempotent): the task with its first session, the
    /// session with the prompt, the workspace, and the first turn.
    async fn finish_task_creation(
        &self,
        row: RepoRow,
        mut created: CreatedTask,
        init: super::task::InitializeTask,
    ) -> Result<CreatedTask> {
        let session = created.task.session(&created.session_id);
        if let Some(session_init) = self.tasks.mutate(&created.task, init).await? {
            self.sessions.mutate(&session, session_init).await?;
        }
        // Where the session stands before its first turn: the client learns which frames come after creation.
        created.session_version = self.sessions.read(&session, GetSessionState).await?.version;
        // The prompt was queued with the session; start its turn, or line it up for one (`TurnPermits`).
        let started = self.sessions.exec(&session, RunQueue).await?;
        let turns_run = self.runtime.service::<SessionAgent>().is_some();
        if self.runtime.service::<Workspaces>().is_some() && (started || !turns_run) {
            // The workspace is cloned meanwhile; the first turn waits for it (a turn that starts later, its permit
            // once granted, starts provisioning itself: a task waiting for its turn holds no clone in progress).
            // Without an agent no turn will, so it starts here. A new task has no pull request, so its base is the
            // repository's default branch (already read above).
            let start = StartProvision {
                full_name: row.full_name,
                remote_url: row.remote_url,
                base_branch: row.default_branch,
                retry: false,
            };
            self.tasks.exec(&created.task, start).await?;
        }
        Ok(created)
    }

    /// The user's default (starred) model, if the user exists.
    async fn default_model_of(&self, user: Option<&str>) -> Result<Option<String>> {
        let Some(user) = user else { return Ok(None) };
        match self.users.read_existing(&user.to_owned(), GetUser).await {
            // A default the live catalog no longer offers (the agent server changed) falls back to the catalog's.
            Ok(u) if self.catalog().contains(&u.default_model) => Ok(Some(u.default_model)),
            Ok(_) => Ok(Some(self.catalog().default_model())),
            Err(CallError::NotFound { .. } | CallError::Handler(DomainError::NotFound { .. })) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The models sessions may use now.
    pub fn models(&self) -> Vec<CatalogModel> {
        self.catalog().models()
    }

    fn catalog(&self) -> Arc<ModelCatalog> {
        // `with_git` provides a catalog when none was, and services are never removed.
        self.runtime.service::<ModelCatalog>().unwrap_or_else(|| Arc::new(ModelCatalog::builtin()))
    }

    /// Replaces the catalog with `agent_id`'s models on a sandbox-agent server (kept as it was on failure).
    pub async fn refresh_models(&self, server: &SandboxAgent, agent_id: &str) -> Result<usize> {
        self.catalog()
            .refresh_from(server, agent_id)
            .await
            .map_err(|e| CallError::Handler(DomainError::Unprocessable(e.to_string())))
    }

    /// Opens another session on a task; returns its id. Without an explicit model, the user's default is used.
    pub async fn create_session(&self, task: &TaskKey, msg: CreateSession) -> Result<String> {
        let msg = self.prepare_session(task, msg).await?;
        let (id, init) = self.tasks.mutate(task, msg).await?;
        self.sessions.mutate(&task.session(&id), init).await?;
        Ok(id)
    }

    /// [`Domain::create_session`] at most once per idempotency key (recorded on the task with the session's id).
    pub async fn create_session_once(
        &self,
        task: &TaskKey,
        msg: CreateSession,
        key: IdempotencyKey,
    ) -> Result<Once<String>> {
        let msg = self.prepare_session(task, msg).await?;
        let once = self.tasks.mutate(task, Idempotent { key, msg }).await?;
        if let Once::Applied((id, init)) | Once::Replayed { output: (id, init), answer: None } = &once {
            // Idempotent: a replay that was never answered makes sure the session exists.
            self.sessions.mutate(&task.session(id), init.clone()).await?;
        }
        Ok(once.map(|(id, _)| id))
    }

    async fn prepare_session(&self, task: &TaskKey, mut msg: CreateSession) -> Result<CreateSession> {
        self.open_task(task).await?;
        if msg.model.is_none() {
            msg.model = self.default_model_of(msg.user_id.as_deref()).await?;
        }
        Ok(msg)
    }

    /// Sends a prompt to one session's agent: it runs now, or after the running turn as a follow-up.
    pub async fn send_message(&self, session: &SessionKey, text: &str, user: Option<&str>) -> Result<Submitted> {
        let msg = SubmitPrompt { text: text.to_owned(), user_id: user.map(str::to_owned) };
        self.sessions.exec_existing(session, msg).await.or_not_found()
    }

    /// [`Domain::send_message`] at most once per idempotency key (recorded on the session with the prompt).
    pub async fn send_message_once(
        &self,
        session: &SessionKey,
        text: &str,
        user: Option<&str>,
        key: IdempotencyKey,
    ) -> Result<Once<Submitted>> {
        let msg = SubmitPromptOnce { text: text.to_owned(), user_id: user.map(str::to_owned), key };
        self.sessions.exec_existing(session, msg).await.or_not_found()
    }

    /// Guidance for the turn running in exactly this session.
    pub async fn steer(&self, session: &SessionKey, guidance: &str, user: Option<&str>) -> Result<()> {
        self.sessions
            .exec_existing(session, Steer { guidance: guidance.to_owned(), user_id: user.map(str::to_owned) })
            .await
            .or_not_found()
    }

    /// Cancels the turn running in exactly this session; queued follow-ups then run unless `drop_queued`.
    pub async fn interrupt(&self, session: &SessionKey, drop_queued: bool, user: Option<&str>) -> Result<usize> {
        self.sessions
            .exec_existing(session, Interrupt { drop_queued, user_id: user.map(str::to_owned) })
            .await
            .or_not_found()
    }

    /// Opens a task for use: `NotFound` unless it exists, checked down the coordinator hierarchy so that no actor or
    /// database is created for a key that names nothing; a task created lazily from a pull request gets its actor.
    /// A live task actor was opened this way before, so it skips the checks (two reads, and no write once
    /// materialized).
    pub async fn open_task(&self, task: &TaskKey) -> Result<()> {
        validate::org_id("org", &task.org).map_err(CallError::Handler)?;
        validate::repo_id("repo", &task.repo).map_err(CallError::Handler)?;
        validate::task_id("task", &task.task).map_err(CallError::Handler)?;
        if self.tasks.is_live(task) {
            return Ok(());
        }
        self.orgs.read_existing(&task.org, GetRepository { repo_id: task.repo.clone() }).await.or_not_found()?;
        let materialized = self.repos.read(&task.repo_key(), IsTaskMaterialized { task_id: task.task.clone() }).await?;
        if !materialized {
            self.ensure_task(task).await?;
        }
        Ok(())
    }

    /// `NotFound` unless the session exists (see [`Domain::open_task`]).
    pub async fn open_session(&self, session: &SessionKey) -> Result<()> {
        validate::session_id("session", &session.session).map_err(CallError::Handler)?;
        if self.sessions.is_live(session) {
            return Ok(());
        }
        let task = session.task_key();
        self.open_task(&task).await?;
        let detail = self.tasks.read(&task, GetTaskDetail).await?;
        if detail.sessions.iter().any(|s| s.session_id == session.session) {
            Ok(())
        } else {
            Err(CallError::Handler(DomainError::not_found("session", &session.session)))
        }
    }

    /// Makes sure a task created lazily from a pull request has its own actor (first use).
    pub async fn ensure_task(&self, task: &TaskKey) -> Result<()> {
        if let Some(init) = self.repos.mutate(&task.repo_key(), MaterializeTask { task_id: task.task.clone() }).await? {
            self.tasks.mutate(task, init).await?;
        }
        Ok(())
    }

    /// The task detail with `viewer`'s overlay.
    pub async fn task_view(&self, task: &TaskKey, viewer: Option<&str>) -> Result<TaskView> {
        self.open_task(task).await?;
        let detail = self.tasks.read(task, GetTaskDetail).await?;
        let overlay = match viewer {
            Some(user) => Some(
                self.users
                    .read_existing(&user.to_owned(), GetTaskOverlay { task: task.clone() })
                    .await
                    .or_not_found()?,
            ),
            None => None,
        };
        Ok(TaskView { detail, overlay })
    }

    /// Marks every open session of the task unread for `user`.
    pub async fn mark_task_unread(&self, task: &TaskKey, user: &str) -> Result<()> {
        let detail = self.tasks.read(task, GetTaskDetail).await?;
        for s in detail.sessions.iter().filter(|s| s.status != super::summary::SessionStatus::Closed) {
            let msg = MarkSessionUnread { session: task.session(&s.session_id), unread: true };
            self.users.mutate_existing(&user.to_owned(), msg).await.or_not_found()?;
        }
        Ok(())
    }

    /// Lists an organization's audit events (newest first, paginated).
    pub async fn audit_events(&self, org: &str, query: ListAuditEvents) -> Result<AuditPage> {
        match self.audit.read_existing(&org.to_owned(), query).await {
            // No event was delivered yet (or the organization does not exist): an empty log, and no file for it.
            Err(CallError::NotFound { .. }) => Ok(AuditPage { events: Vec::new(), next_before: None }),
            other => other,
        }
    }

    /// Recovery: rebuilds the organization's task projection from its repository coordinators (audited as
    /// `admin.rebuild`, by `by`). Returns the number of task summaries written.
    pub async fn admin_rebuild_organization(&self, org: &str, by: Option<&str>) -> Result<usize> {
        let repos = self.orgs.read_existing(&org.to_owned(), ListRepositories).await.or_not_found()?;
        let mut total = 0;
        for repo in repos {
            let tasks = self.repos.read(&RepoKey::new(org, &repo.repo_id), ListTaskSummaries).await?;
            total += self
                .orgs
                .mutate_existing(&org.to_owned(), AdminReplaceRepoTasks { repo_id: repo.repo_id, tasks })
                .await
                .or_not_found()?;
        }
        // The rebuild spans many mutations, none of which is "the" rebuild: its event is appended once it is done.
        let mut event = AppendAuditEvent::new("admin.rebuild", super::now_ms())
            .with_payload(serde_json::json!({ "taskSummaries": total }));
        event.user_id = by.map(str::to_owned);
        self.audit.mutate(&org.to_owned(), event).await?;
        Ok(total)
    }
}
