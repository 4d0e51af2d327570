// Generated from foundry's Rust types: the schemas of the OpenAPI document (docs/openapi.json), rendered by
// foundry-client's `typescript` module. Do not edit: `FOUNDRY_UPDATE_TYPES=1 cargo test --test typescript` rewrites
// it. Field and type descriptions are the Rust doc comments.

/** Whose repositories a sync lists. */
export type AccountKind = "organization" | "user";

export interface ActionBody {
  /** `archive`: archive even if work that is not on the remote cannot be pushed (it is discarded). */
  force?: boolean;
  /** `revert`: the file to revert. */
  path?: FilePath | null;
  /** `switch`: the branch or task to switch to. */
  target?: Branch | null;
}

export interface ActiveOrgBody {
  /** An organization the caller is a member of. */
  orgId: Id;
}

export interface ActiveSessionBody {
  sessionId: Id;
}

/** One actor in full: its state and its database's tables. */
export interface ActorDetail {
  /** Size of its database (pages times page size). */
  databaseBytes: number;
  key: string;
  kind: string;
  mailboxDepth: number;
  state: ActorState;
  tables: TableInfo[];
}

/** A page of a kind's live actors, by encoded key. */
export interface ActorPage {
  actors: ActorSummary[];
  kind: string;
  /** Live actors of the kind, all pages together. */
  live: number;
  /** Pass as `after` for the next page; absent on the last. */
  nextAfter?: string | null;
}

/** What a live actor reports of itself. */
export interface ActorState {
  /** Background tasks started through its context and not finished. */
  backgroundTasks: number;
  /** Panics in a row (restarts back off after the first). */
  consecutiveFailures: number;
  /** Outbox rows the receiver refused, kept in `_foundry_dead_letters`. */
  deadLetters: number;
  /** A delivery is on its way (or waiting to be retried). */
  delivering: boolean;
  /** Milliseconds since it last handled a message (to the runtime clock's 2 ms). */
  idleMs: number;
  /** When the earliest is due (ms since the Unix epoch). */
  nextDueMs?: number | null;
  /** Outbox rows not delivered yet. */
  outboxPending: number;
  /** Mutations waiting for their group commit. */
  pendingMutations: number;
  /** Durable schedules set. */
  schedules: number;
  /** Every topic it has published, with its committed version and current subscribers. */
  topics: TopicView[];
  /** Entries in its trace. */
  traced: number;
}

/** One live actor. */
export interface ActorSummary {
  /** The encoded key (what the actor's file and the routes name it by). */
  key: string;
  /** Calls in flight: queued in its mailbox or running. */
  mailboxDepth: number;
  /** Its state; `null` when it did not answer within a second (busy, or passivating meanwhile). */
  state?: ActorState | null;
}

export interface AddRepoBody {
  /** Default: `main`. */
  defaultBranch?: Branch | null;
  /** `owner/name`. */
  fullName: DisplayName;
  remoteUrl: RemoteUrl;
  repoId: Id;
}

/** The 200 answer of `POST .../admin/{op}`: `full-sync` starts a sync, `rebuild` counts what it wrote. */
export type AdminOutcome = SyncStarted | Rebuilt;

/** The key in an `unsubscribed` frame: any topic's (`app`'s names the caller). */
export type AnyKey = TopicKey | AppKey;

/** The key of an `app` frame: the caller's own user. */
export interface AppKey {
  user: string;
}

/** The `app` topic's snapshot (and reply of [`GetAppSnapshot`]). */
export interface AppSnapshot {
  /** Where the user's app opens: the one they last chose while still a member, else the first; `None` without any. */
  activeOrganizationId?: string | null;
  defaultModel: string;
  /** The organizations the user may use, in the order they joined. */
  organizations: OrganizationEntry[];
  profile: ProfileInfo;
  user: UserInfo;
}

/** A stored event (camelCase on the wire, like every other reply). */
export interface AuditEvent {
  at: number;
  id: number;
  kind: string;
  payload: any;
  repoId?: string | null;
  sessionId?: string | null;
  taskId?: string | null;
  userId?: string | null;
}

/** A page of [`ListAuditEvents`] (`{events, nextBefore}` on the wire). */
export interface AuditPage {
  /** Newest first. */
  events: AuditEvent[];
  /** The `before_id` of the next page; `None` when there are no older matching events. */
  nextBefore?: number | null;
}

/** A sign-in session as the user may see it (never the token hash). */
export interface AuthSessionInfo {
  createdAtMs: number;
  expiresAtMs: number;
  revokedAtMs?: number | null;
  sessionId: string;
  userAgent?: string | null;
}

/** a git branch name (git check-ref-format --branch); this pattern admits a safe subset: '/'-separated parts of letters, digits, '_' and '-', none starting with '-' */
export type Branch = string;

/** One model of the live catalog. */
export interface CatalogModel {
  agent: string;
  id: string;
  label: string;
}

/** What a client sends (JSON text, at most 64 KiB). */
export type ClientFrame = {
  /** Only snapshots with a version above this one (e.g. a create reply's `sessionVersion`). */
  after?: number | null;
  /** Every topic but `app` needs one. */
  key?: TopicKey | null;
  /** Connect params (JSON, at most 4 KiB serialised) for the topic's actor; none of today's topics reads any. */
  params?: any;
  /** After the first full snapshot, changes as `{topic}Patched` frames. */
  patches?: boolean | null;
  topic: TopicName;
  type: "subscribe";
} | {
  key?: TopicKey | null;
  topic: TopicName;
  type: "unsubscribe";
} | {
  type: "ping";
};

export interface ConnectBody {
  kind: AccountKind;
  /** The GitHub account's login. */
  login: Id;
}

export interface CreateOrgBody {
  displayName: DisplayName;
  /** The organization's id: foundry's own name, unrelated to any GitHub login. */
  id: Id;
  /** The profile's kind until a GitHub connection sets it (default: `organization`). */
  kind?: OrgKind | null;
  /** The profile's label until a GitHub connection sets it (default: the id). */
  login?: Label | null;
}

export interface CreateSessionBody {
  /** A model id of `GET /v1/models`. */
  model?: string | null;
  name?: DisplayName | null;
  /** A first message for the new session's agent. */
  prompt?: Text | null;
}

export interface CreateTaskBody {
  /** Default: derived from the title, made unique (409 if a given one has a task). */
  branch?: Branch | null;
  /** A model id of `GET /v1/models` (default: the caller's default model). */
  model?: string | null;
  /** What the agent is asked to do (the first session's first prompt). */
  prompt: Text;
  /** Default: derived from the prompt. */
  title?: DisplayName | null;
}

/** What a webhook delivery did. */
export type DeliveryOutcome = WebhookOutcome | Pong;

export interface DevSignIn {
  /** Default: `<login>@dev.invalid`. */
  email?: Email | null;
  login: Id;
  /** Default: the login. */
  name?: DisplayName | null;
}

/** a single-line name: not blank, no control characters, at most 200 characters (stored trimmed) */
export type DisplayName = string;

/** The unsent message of a session. */
export interface Draft {
  attachments: DraftAttachment[];
  text: string;
  /** When the draft was last saved; `None` if it never was. */
  updatedAtMs?: number | null;
}

/** A code line attached to a draft. */
export interface DraftAttachment {
  /** At most `MAX_ATTACHMENT_PATH_CHARS` characters. */
  filePath: string;
  /** Limits as [`SaveDraft`] checks them (tests/openapi.rs compares the two): at most `MAX_ID_CHARS` characters. */
  id: string;
  /**
   * At most `MAX_ATTACHMENT_LINE_BYTES` of UTF-8 (so never more characters than that; a quarter as many always
   * fit). The same type is answered in drafts, so the schema states the bound every stored line meets.
   */
  lineContent: string;
  lineNumber?: number | null;
}

export interface DraftBody {
  attachments?: DraftAttachment[];
  /** The unsent text: at most 64 KiB of UTF-8 (16384 characters always fit). */
  text: string;
}

/** an email address: something before and after an '@', no whitespace or control characters */
export type Email = string;

/** No body, or the empty object `{}` (a body with any field is refused like an unknown field). */
export type Empty = { [key: string]: any };

/** The body of every error response (the OpenAPI document's `Error`). */
export interface Error {
  error: ErrorDetail;
}

/** What went wrong: a stable machine-readable `code` (docs/API.md lists them all) and a message for people. */
export interface ErrorDetail {
  code: string;
  message: string;
}

/** a relative path inside the repository, never into .git or above it; this pattern admits a safe subset: '/'-separated parts of letters, digits, '.', '_' and '-', none starting with '.' or '-' */
export type FilePath = string;

/** One file changed against the base branch. */
export interface FileStat {
  /** Lines added and removed (`None` for binary files). */
  added?: number | null;
  path: string;
  removed?: number | null;
  /** `added`, `modified`, `deleted`, `renamed` or `changed` (type changes and the like). */
  status: string;
}

/** `GET /v1/orgs/{org}/github`: whether a GitHub account is connected, and then its sync status. */
export interface GitHubConnection {
  connected: boolean;
  /** Present when connected. */
  status?: SyncStatus | null;
}

/** A push, merge, reverted file or requested provisioning, as the task's viewers hear of it. */
export interface GitOperationEvent {
  /** `task.pushed`, `task.merged`, `task.file.reverted` or `task.workspace.provisioned` (as in the audit log). */
  kind: string;
  /** What the audit log records with it (the branch pushed, the file reverted, ...). */
  payload: any;
  /** Who did it (`null`: the system). */
  userId?: string | null;
}

/** A workspace's git state, as the task view shows it. */
export interface GitState {
  /** Commits on the branch and not on the base / on the base and not on the branch. */
  ahead: number;
  base: string;
  behind: number;
  branch: string;
  /** Changes not committed yet. */
  dirty: boolean;
  /** Files changed against the base (committed or not), in path order. */
  files: FileStat[];
  head?: string | null;
  lastCommit?: LastCommit | null;
  /** Whether the remote has the branch. */
  pushed: boolean;
  /** Commits not on the remote branch yet (all of `ahead` if it was never pushed). */
  unpushed: number;
}

/** 1-100 characters of letters, digits, '.', '_' and '-', and not '.' or '..' */
export type Id = string;

export interface InterruptBody {
  /** Also drop the prompts queued behind the turn. */
  dropQueued?: boolean;
}

export interface InviteBody {
  /** The login they signed in with (GitHub, else development; case-insensitive). */
  login: Id;
  role: MemberRole;
}

/** One actor kind: its live actors, configuration and counters since the process started. */
export interface KindView {
  activationFailures: number;
  activations: number;
  committedMutations: number;
  /** Actors destroyed (their database deleted). */
  destroyed: number;
  groupCommit: boolean;
  idleTimeoutMs: number;
  kind: string;
  live: number;
  mailboxCapacity: number;
  /** Calls in flight to this kind's live actors (the sum of their mailbox depths). */
  mailboxDepth: number;
  maxBatch: number;
  messages: number;
  passivations: number;
  restarts: number;
  scheduleFailures: number;
  schedulesFired: number;
  transactions: number;
}

/** a single-line label: not blank, no control characters, at most 100 characters */
export type Label = string;

/** The newest commit on the workspace's branch. */
export interface LastCommit {
  /** Milliseconds since the epoch. */
  at: number;
  author: string;
  message: string;
  sha: string;
}

/** One chunk of a process's output. */
export interface LogEntry {
  /** The bytes, as the host encodes them (`encoding`: `base64` or `utf8`). */
  data: string;
  encoding?: string | null;
  sequence: number;
  /** `stdout` or `stderr`. */
  stream: string;
  timestampMs: number;
}

export interface MemberBody {
  /** How the member is listed (default: their GitHub login, else their name). */
  login?: Label | null;
  role: MemberRole;
}

/** What a member may do: owners and admins manage members and run admin operations; members use the organization. */
export type MemberRole = "member" | "admin" | "owner";

/** A member of the organization: who may see and change it. */
export interface MemberRow {
  login: string;
  role: string;
  /** `manual` or `github` (joined through the linked GitHub organization). */
  source: string;
  state: string;
  updatedAt: number;
  userId: string;
}

/** Sync state and progress. */
export interface Meta {
  /** The connected account's GitHub id (`None` for a connection recorded before ids were). */
  accountId?: number | null;
  accountKind: string;
  accountLogin: string;
  finishedAt?: number | null;
  generation: number;
  lastError?: string | null;
  phase?: string | null;
  startedAt?: number | null;
  status: string;
  synced: number;
  total: number;
  updatedAt: number;
}

export interface ModelBody {
  /** A model id of `GET /v1/models` (400 `invalid_input` for another). */
  model: string;
}

/** Personal account or GitHub organization. */
export type OrgKind = "personal" | "organization";

/** One of the user's organizations, as the `app` snapshot and `GET /v1/orgs` list it. */
export interface OrganizationEntry {
  /** The organization's display name (its id until the organization has told it). */
  displayName: string;
  id: string;
  /** The user's role there (`owner`, `admin`, `member`); `None` until the organization has told it. */
  role?: string | null;
}

/** `GET /v1/orgs`: the caller's organizations and the one the app opens (as in the `app` snapshot). */
export interface OrganizationList {
  activeOrganizationId?: string | null;
  /** In the order the caller joined them. */
  organizations: OrganizationEntry[];
}

/** What `organizationUpdated` carries. */
export interface OrganizationSnapshot {
  members: MemberRow[];
  organizationId: string;
  profile: ProfileRow;
  repos: RepoRow[];
  taskSummaries: TaskSummary[];
}

/** One operation of a patch. Applied in order; each sees the document as the previous ones left it. */
export type PatchOp = {
  op: "add";
  path: string;
  value: any;
} | {
  op: "remove";
  path: string;
} | {
  op: "replace";
  path: string;
  value: any;
} | {
  op: "append";
  path: string;
  value: string;
};

/** A `ping` delivery's outcome: nothing to apply. */
export type Pong = "pong";

/** `GET T/processes/{process}/logs`: the output so far. */
export interface ProcessLogs {
  entries: LogEntry[];
  processId: string;
}

/** A process of the task, as published. */
export interface ProcessRow {
  /** Stored as JSON text, sent as the array it holds. */
  args: string[];
  command: string;
  createdAt: number;
  exitCode?: number | null;
  exitedAt?: number | null;
  id: string;
  pid?: number | null;
  /** `running`, `exited`, or `missing` (the host no longer knows it). */
  status: string;
  updatedAt: number;
}

/**
 * A process to start (also the body of `POST .../processes`, hence strict; its limits are checked by the web layer
 * and stated in the schema).
 */
export interface ProcessSpec {
  /** The arguments. */
  args?: string[];
  /** The program to run: not blank. */
  command: string;
  /** The working directory (default: the sandbox's). */
  cwd?: string | null;
  /** Environment variables: names not empty and without '='. */
  env?: { [key: string]: string };
}

/** What `sandboxProcessesUpdated` carries (and `GET T/processes` answers). */
export interface ProcessesSnapshot {
  processes: ProcessRow[];
}

export interface ProfileBody {
  /** The picture's URL (absent: kept; empty: removed). */
  avatarUrl?: string | null;
  /** The display name (absent: kept). */
  name?: DisplayName | null;
}

/** The user's profile. */
export interface ProfileInfo {
  eligibleOrgIds: string[];
  githubLogin?: string | null;
  role: string;
  starterRepoStatus: StarterRepoStatus;
}

export interface ProfileRow {
  billingPlan: string;
  billingSeats: number;
  billingStatus: string;
  createdAt: number;
  displayName: string;
  installationId?: number | null;
  kind: string;
  lastSyncAt?: number | null;
  login: string;
  syncError?: string | null;
  syncGeneration: number;
  syncPhase?: string | null;
  syncStatus: string;
  syncSynced: number;
  syncTotal: number;
  updatedAt: number;
}

/** `POST T/pull-request` (201): the pull request's number on GitHub. */
export interface PullRequestOpened {
  number: number;
}

/** A pull request as task data (rule 10). */
export interface PullRequestSummary {
  authorLogin?: string | null;
  baseRef: string;
  headRef: string;
  isDraft: boolean;
  number: number;
  /** `open`, `closed` or `merged`. */
  state: string;
  title: string;
  updatedAt: number;
  url: string;
}

/** The answer of a read-only query. */
export interface QueryAnswer {
  columns: string[];
  /** Values as JSON: numbers, strings, `null`, a blob as `{"blob": "<hex>"}`. */
  rows: any[][];
  /** Rows were left out (beyond the limit, or past ~4 MiB of values) or long values were cut. */
  truncated: boolean;
}

/** One read-only SQL statement to run on a copy of the actor's database. */
export interface QueryBody {
  /** Most rows to answer (default 100). */
  limit?: number | null;
  /**
   * One statement that only reads: `SELECT`/`WITH`, `EXPLAIN`, or a pragma that reads (`table_info`,
   * `index_list`, `user_version` ...). At most 16 KiB.
   */
  sql: string;
  /** Stop the statement after this many milliseconds (default 2,000). */
  timeoutMs?: number | null;
}

/** `POST .../admin/rebuild`: how many task summaries were written again. */
export interface Rebuilt {
  taskSummaries: number;
}

/** the git remote URL: not blank, no control characters, at most 2000 characters */
export type RemoteUrl = string;

export interface RenameBody {
  title: DisplayName;
}

export interface RepoRow {
  createdAt: number;
  defaultBranch: string;
  fullName: string;
  latestActivityAt?: number | null;
  remoteUrl: string;
  repoId: string;
  taskCount: number;
}

/** `DELETE /v1/auth/sessions`: how many sessions were signed out. */
export interface Revoked {
  revoked: number;
}

export interface RuntimeRow {
  activeSandboxId?: string | null;
  cwd?: string | null;
  switchTarget?: string | null;
  updatedAt: number;
}

/** The runtime as a whole. */
export interface RuntimeView {
  /** Every registered kind, by name. */
  kinds: KindView[];
  liveActors: number;
  /** Most actors open at once (beyond it, the least recently used idle ones passivate). */
  maxLive: number;
  /** Actors listed in the due index (actors with durable schedules). */
  scheduledActors: number;
  /** Topic channels with subscribers. */
  topicChannels: number;
  /** Messages each actor's trace keeps (0: off). */
  traceSize: number;
}

/**
 * What the server sends: per topic a full snapshot (`{topic}Updated`) or a change to the one the client holds
 * (`{topic}Patched`, only on subscriptions with `patches`), and the connection's own frames.
 */
export type ServerFrame = {
  key: AppKey;
  snapshot: AppSnapshot;
  type: "appUpdated";
  version: number;
} | {
  base: number;
  key: AppKey;
  ops: PatchOp[];
  type: "appPatched";
  version: number;
} | {
  key: TopicKey;
  snapshot: OrganizationSnapshot;
  type: "organizationUpdated";
  version: number;
} | {
  /** The version the operations apply to: the one the client holds. */
  base: number;
  key: TopicKey;
  ops: PatchOp[];
  type: "organizationPatched";
  version: number;
} | {
  key: TopicKey;
  snapshot: TaskView;
  type: "taskUpdated";
  version: number;
} | {
  base: number;
  key: TopicKey;
  ops: PatchOp[];
  type: "taskPatched";
  version: number;
} | {
  key: TopicKey;
  snapshot: SessionDetail;
  type: "sessionUpdated";
  version: number;
} | {
  base: number;
  key: TopicKey;
  ops: PatchOp[];
  type: "sessionPatched";
  version: number;
} | {
  key: TopicKey;
  snapshot: ProcessesSnapshot;
  type: "sandboxProcessesUpdated";
  version: number;
} | {
  base: number;
  key: TopicKey;
  ops: PatchOp[];
  type: "sandboxProcessesPatched";
  version: number;
} | {
  code: string;
  /** The key of the subscribe or unsubscribe frame it answers, as sent. */
  key?: TopicKey | null;
  message: string;
  topic?: string | null;
  type: "error";
} | {
  type: "pong";
} | {
  key: AnyKey;
  topic: TopicName;
  type: "unsubscribed";
} | {
  /** The event's name (per topic: `task` has `gitOperation`). */
  event: string;
  key: AnyKey;
  payload: any;
  /** Counts the events of this subscription: 1, 2, ...; after a `lagged` frame it is higher by `missed` + 1. */
  seq: number;
  topic: TopicName;
  type: "event";
} | {
  key: AnyKey;
  missed: number;
  topic: TopicName;
  type: "lagged";
};

/**
 * The 202 answer of every session command (`messages`, `steer`, `interrupt`, `stop`): where the session stands once
 * the command was taken, plus what the command itself reports.
 */
export type SessionCommandOutcome = SessionState & {
  /** `interrupt`: how many queued prompts it dropped. */
  droppedPrompts?: number | null;
  /** `messages`: whether the prompt runs now or after the running turn. */
  submitted?: Submitted | null;
};

/** What `sessionUpdated` carries. */
export interface SessionDetail {
  createdAt: number;
  mode: string;
  model: string;
  name: string;
  orgId: string;
  /** Text streamed by the running turn so far. */
  partialText: string;
  /** Prompts waiting for a turn. */
  queued: number;
  repoId: string;
  sessionId: string;
  status: SessionStatus;
  taskId: string;
  thoughtLevel: string;
  transcript: TranscriptItem[];
  updatedAt: number;
}

/** This user's state of one session. */
export interface SessionOverlay {
  draft: Draft;
  sessionId: string;
  unread: boolean;
}

/** Where a session stands after a command: what the session command routes answer (`202`). */
export interface SessionState {
  /** Prompts waiting for a turn. */
  queued: number;
  sessionId: string;
  status: SessionStatus;
  /** The `session` topic's version as of this read: a `sessionUpdated` frame with a higher one is newer. */
  version: number;
}

/** A session's lifecycle as its task sees it. */
export type SessionStatus = "ready" | "running" | "idle" | "error" | "stopped" | "closed";

/** What a task's index (and so the task detail, the repository and the organization) shows of one session. */
export interface SessionSummary {
  createdAt: number;
  model: string;
  name: string;
  sessionId: string;
  status: SessionStatus;
  updatedAt: number;
}

/** A new session for a signed-in user. */
export interface SignedIn {
  /** Whether this sign-in created the user. */
  created: boolean;
  expiresAtMs: number;
  sessionId: string;
  token: string;
  userId: string;
}

export interface StarterBody {
  status: StarterChoice;
}

/** What the user answers about the starter repository (`pending` is only where everyone starts). */
export type StarterChoice = "starred" | "skipped";

/** Onboarding status of the starter repository. */
export type StarterRepoStatus = "pending" | "starred" | "skipped";

export interface SteerBody {
  guidance: Text;
}

/** Where a submitted prompt went. */
export type Submitted = "started" | "queued";

/** A sync was started, or one was already running: its generation. */
export interface SyncStarted {
  generation: number;
}

/** Sync status and row counts. */
export interface SyncStatus {
  branches: number;
  members: number;
  meta: Meta;
  pullRequests: number;
  repositories: number;
}

/** A page of one table's rows, in stored order. */
export interface TableDump {
  columns: string[];
  offset: number;
  /** Values as JSON: numbers, strings, `null`, a blob as `{"blob": "<hex>"}`. */
  rows: any[][];
  table: string;
  /** The table's rows, all pages together. */
  total: number;
  /** Long values were cut (text after 4,096 characters, blobs after 1 KiB). */
  truncated: boolean;
}

/** A table of an actor's database. */
export interface TableInfo {
  name: string;
  rows: number;
  /**
   * One of the runtime's own tables, present in every actor (`_foundry_*`: outbox, inbox, topics, schedules ...;
   * and diesel's list of applied migrations).
   */
  runtime: boolean;
}

/**
 * The 200 answer of `POST T/{action}`: the status for `archive`, `unarchive` and `kill`, the task view for the
 * others (`pull-request` answers 201 [`PullRequestOpened`]).
 */
export type TaskActionOutcome = TaskStatusChanged | TaskView;

/**
 * `POST .../repos/{repo}/tasks` (201): the new task, its first session and that session's topic version before its
 * first turn (subscribe with `after` it: docs/API.md, "Following a new task").
 */
export interface TaskCreated {
  branch: string;
  orgId: string;
  repoId: string;
  sessionId: string;
  sessionVersion: number;
  taskId: string;
  title: string;
}

/** What `taskUpdated` carries. */
export interface TaskDetail {
  branch: string;
  createdAt: number;
  explicitBranch: boolean;
  explicitTitle: boolean;
  orgId: string;
  prompt: string;
  pullRequest?: PullRequestSummary | null;
  repoId: string;
  runtime?: RuntimeRow | null;
  sandboxProvider: string;
  sessions: SessionSummary[];
  status: TaskStatus;
  taskId: string;
  title: string;
  updatedAt: number;
  /** Who has the task open right now (connected to its topic), by user. */
  viewers: TaskViewer[];
  /** The task's workspace (its checkout and git state), once provisioning started. */
  workspace?: WorkspaceView | null;
}

/** A task's title and branch. */
export interface TaskNames {
  branch: string;
  title: string;
}

export interface TaskNamesBody {
  branch?: Branch | null;
  prompt: Text;
  title?: DisplayName | null;
}

/** This user's state of one task (reply of [`GetTaskOverlay`]); sessions sorted by id. */
export interface TaskOverlay {
  activeSessionId?: string | null;
  sessions: SessionOverlay[];
}

/** The canonical task status (domain rule 6). Archive and kill go through their intermediate steps in order. */
export type TaskStatus = "init_bootstrap_db" | "init_enqueue_provision" | "init_complete" | "running" | "idle" | "error" | "archive_stop_status_sync" | "archive_release_sandbox" | "archive_finalize" | "archived" | "kill_destroy_sandbox" | "kill_finalize" | "killed";

/** The task's status after `archive`, `unarchive` or `kill`. */
export interface TaskStatusChanged {
  status: TaskStatus;
}

/** One task as its repository and organization show it. */
export interface TaskSummary {
  branch: string;
  createdAt: number;
  pullRequest?: PullRequestSummary | null;
  repoId: string;
  sessions: SessionSummary[];
  status: TaskStatus;
  taskId: string;
  title: string;
  updatedAt: number;
}

/**
 * A task detail as one viewer sees it: the shared detail plus that viewer's overlay (active session, unread,
 * drafts), applied at read time.
 */
export type TaskView = TaskDetail & {
  overlay?: TaskOverlay | null;
};

/** A user viewing the task. */
export interface TaskViewer {
  /** The user's connections to the task's topic (at least 1). */
  connections: number;
  userId: string;
}

/** free text that is not blank, at most 64 KiB of UTF-8 (16384 characters always fit) */
export type Text = string;

export interface TextBody {
  text: Text;
}

/**
 * A topic's key as frames name it: `{org}` (organization), `{org, repo, task}` (task, sandboxProcesses) or
 * `{org, repo, task, session}` (session). `app` takes none.
 */
export interface TopicKey {
  org: string;
  repo?: string | null;
  session?: string | null;
  task?: string | null;
}

/** The topics a connection may subscribe to. */
export type TopicName = "app" | "organization" | "task" | "session" | "sandboxProcesses";

/** One topic of an actor. */
export interface TopicView {
  subscribers: number;
  topic: string;
  /** The committed version (0: subscribed to but never changed). */
  version: number;
}

/** One traced message. */
export interface TraceEntry {
  /** When it ended (ms since the Unix epoch; to the runtime clock's 2 ms). */
  atMs: number;
  /** From the actor taking it up to its answer (for a mutation: to its batch's commit). */
  durationUs: number;
  kind: TraceKind;
  /** The message's type name (a schedule's wire name). */
  message: string;
  outcome: TraceOutcome;
}

/** What sort of message a trace entry is. */
export type TraceKind = "read" | "mutation" | "command" | "delivery" | "schedule";

/** How a traced message ended. */
export type TraceOutcome = "ok" | "refused" | "panicked" | "failed";

/** One actor's recent messages. */
export interface TraceView {
  /** Newest first. */
  entries: TraceEntry[];
  /** Whether the actor is live: a passivated actor has no trace (it covers the current activation only). */
  live: boolean;
  /** Messages traced since the actor was activated; the ring keeps the last `size`. */
  recorded: number;
  /** The ring's size (`RuntimeConfig::trace_size`, `serve --trace-size`); 0: tracing is off. */
  size: number;
}

/** One complete transcript item. */
export interface TranscriptItem {
  at: number;
  /** `message`, `tool_call`, `file_change`, `status`. */
  kind: string;
  payload: string;
  /** `user`, `agent` or `system`. */
  role: string;
  seq: number;
  text: string;
  userId?: string | null;
}

export interface UnreadBody {
  unread: boolean;
}

export interface UpdateSessionBody {
  /** One of the model's modes (only with `model`). */
  mode?: string | null;
  /** A model id of `GET /v1/models`. */
  model?: string | null;
  name?: DisplayName | null;
  /** One of the model's thought levels (only with `model`). */
  thoughtLevel?: string | null;
}

/** Who the user is. */
export interface UserInfo {
  avatarUrl?: string | null;
  email: string;
  id: string;
  name: string;
}

/** `POST /v1/webhooks/github`. */
export interface WebhookAnswer {
  outcome: DeliveryOutcome;
}

/** What a delivery did. */
export type WebhookOutcome = "applied" | "duplicate" | "ignored" | "sync_started" | "cleared";

/** `GET /v1/auth/whoami`. */
export interface WhoAmI {
  /** When the session expires, in milliseconds since the epoch. */
  expiresAtMs: number;
  sessionId: string;
  userId: string;
}

/** The workspace as the task view shows it. */
export interface WorkspaceView {
  attempts: number;
  baseBranch: string;
  cwd?: string | null;
  git?: GitState | null;
  /** Progress while provisioning, the failure when it failed. */
  message: string;
  provider: string;
  /** `provisioning`, `ready`, `error`, `released` (archived: the branch is on the remote) or `destroyed` (killed). */
  status: string;
  updatedAt: number;
}
