// Foundry web app: one ES module, no framework and no build step (embedded into the server binary).
//
// Data flow: HTTP for actions, /v1/ws for state. The server sends a full snapshot per topic, then each change as a
// patch (subscriptions ask for `patches`), so the app keeps the latest snapshot of each subscribed topic and
// re-renders the regions that depend on it, at most once per frame.
// Lists are rendered as one HTML string per snapshot and every interaction goes through a few delegated listeners
// on the document, which keeps 1,000 sidebar rows cheap.
//
// Type-checked (`// @ts-check`, JSDoc; CI: .ci/typecheck-webapp) against api.d.ts, the API's types generated from
// the server's Rust types (tests/typescript.rs keeps it current): a renamed field fails CI, not the user.
// @ts-check

import { renderRuntimeInspector } from './inspector.js';

/** @typedef {import('./api').AppSnapshot} AppSnapshot */
/** @typedef {import('./api').AuditPage} AuditPage */
/** @typedef {import('./api').AuthSessionInfo} AuthSessionInfo */
/** @typedef {import('./api').CatalogModel} CatalogModel */
/** @typedef {import('./api').ClientFrame} ClientFrame */
/** @typedef {import('./api').CreateTaskBody} CreateTaskBody */
/** @typedef {import('./api').GitOperationEvent} GitOperationEvent */
/** @typedef {import('./api').OrganizationSnapshot} OrganizationSnapshot */
/** @typedef {import('./api').PatchOp} PatchOp */
/** @typedef {import('./api').ProcessLogs} ProcessLogs */
/** @typedef {import('./api').ProcessRow} ProcessRow */
/** @typedef {import('./api').ProcessSpec} ProcessSpec */
/** @typedef {import('./api').Revoked} Revoked */
/** @typedef {import('./api').ServerFrame} ServerFrame */
/** @typedef {import('./api').SessionDetail} SessionDetail */
/** @typedef {import('./api').TaskCreated} TaskCreated */
/** @typedef {import('./api').TaskNames} TaskNames */
/** @typedef {import('./api').TaskView} TaskView */
/** @typedef {import('./api').TaskViewer} TaskViewer */
/** @typedef {import('./api').TopicKey} TopicKey */
/** @typedef {import('./api').TopicName} TopicName */
/** @typedef {import('./api').WhoAmI} WhoAmI */

const $ = (sel, root = document) => root.querySelector(sel);
const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ESC[c]);
const enc = encodeURIComponent;

// ---------------------------------------------------------------------------------------------------------------
// State

/**
 * @typedef {object} AppState
 * @property {'boot' | 'signin' | 'app'} phase
 * @property {AppSnapshot | null} me the `app` snapshot
 * @property {CatalogModel[]} models
 * @property {any} route
 * @property {OrganizationSnapshot | null} org
 * @property {string | null} orgError
 * @property {TaskView | null} task
 * @property {SessionDetail | null} session
 * @property {string | null} sessionPick
 * @property {boolean} online
 * @property {boolean} showArchived
 * @property {boolean} renaming
 * @property {number | null} auditBefore
 * @property {ProcessRow[]} processes
 * @property {string | null} draftSession
 * @property {string | null} [logsOf] the process whose logs are open
 * @property {boolean} [serverAdmin] the user may open the runtime inspector (`/admin`)
 */

/** @type {AppState} */
const S = {
  phase: 'boot', // boot | signin | app
  me: null, // the `app` snapshot
  models: [],
  route: { name: 'home' },
  org: null, // organization snapshot of route.org
  orgError: null, // why route.org cannot be shown
  task: null, // task snapshot (with overlay) of the routed task
  session: null, // session snapshot of the open tab
  sessionPick: null, // the tab chosen in this page, before the overlay reflects it
  online: false,
  showArchived: false,
  renaming: false,
  auditBefore: null, // the audit page's next `before`
  processes: [], // the routed task's sandbox processes (its `sandboxProcesses` topic)
  draftSession: null, // the session whose draft the composer holds
};

// ---------------------------------------------------------------------------------------------------------------
// HTTP

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * One API call: the answer's JSON (typed where it is used, from api.d.ts), or an ApiError with the server's code.
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 * @param {string} [idempotencyKey]
 * @returns {Promise<any>}
 */
async function api(method, path, body, idempotencyKey) {
  /** @type {RequestInit & { headers: Record<string, string> }} */
  const init = { method, credentials: 'same-origin', headers: {} };
  if (idempotencyKey) init.headers['idempotency-key'] = idempotencyKey;
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'network', 'Cannot reach the server. Check that it is running.');
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!res.ok) {
    const err = data && data.error ? data.error : { code: `http_${res.status}`, message: `Request failed (${res.status})` };
    if (res.status === 401 && S.phase === 'app') signedOut('Your session ended. Sign in again.');
    throw new ApiError(res.status, err.code, err.message);
  }
  return data;
}

// Creating requests carry an Idempotency-Key: one per submission, kept while that same submission may be sent
// again (a second click, a retry after the connection dropped or the server answered 5xx/429), so the server creates
// once whatever reached it. An answer that settles the submission (created, or refused for a reason a resend cannot
// change) ends it: the next submission gets a fresh key.
const pendingKeys = new Map();

function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16)); // randomUUID needs a secure context; this does not
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * @param {string} path
 * @param {unknown} [body]
 * @returns {Promise<any>}
 */
async function create(path, body) {
  const submission = `${path} ${JSON.stringify(body === undefined ? null : body)}`;
  let key = pendingKeys.get(submission);
  if (!key) {
    key = newKey();
    pendingKeys.set(submission, key);
  }
  try {
    const created = await api('POST', path, body, key);
    pendingKeys.delete(submission);
    return created;
  } catch (e) {
    const resendable = e.status === 0 || e.status >= 500 || e.status === 429 || e.code === 'idempotency_in_progress';
    if (!resendable) pendingKeys.delete(submission);
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Toasts: every failure the user caused is shown with the API's own message.

function toast(message, kind = 'error') {
  const box = $('#toasts');
  const el = document.createElement('div');
  el.className = `toast toast-${kind}`;
  el.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  el.innerHTML = `<span>${esc(message)}</span><button class="toast-close" aria-label="Dismiss">×</button>`;
  box.append(el);
  setTimeout(() => el.remove(), kind === 'error' ? 8000 : 4000);
}

function fail(e) {
  toast(e instanceof ApiError ? e.message : String(e && e.message ? e.message : e));
}

// ---------------------------------------------------------------------------------------------------------------
// Routing

function parseRoute(path) {
  const p = path.split('/').filter(Boolean).map(decodeURIComponent);
  if (p[0] === 'sign-in') return { name: 'signin' };
  if (p[0] === 'settings' && p.length === 1) return { name: 'settings' };
  if (p[0] === 'admin') return { name: 'inspector', kind: p[1] === 'kinds' ? p[2] : undefined, key: p[3] === 'actors' ? p[4] : undefined };
  if (p[0] !== 'orgs') return { name: 'home' };
  if (p.length === 1) return { name: 'orgs' };
  const org = p[1];
  if (p.length === 2) return { name: 'org', org };
  if (p[2] === 'new' && p.length === 3) return { name: 'new', org };
  if (p[2] === 'audit' && p.length === 3) return { name: 'audit', org };
  if (p[2] === 'repos' && p[4] === 'tasks' && p.length === 6) return { name: 'task', org, repo: p[3], task: p[5] };
  return { name: 'org', org };
}

const orgPath = (org) => `/orgs/${enc(org)}`;
const taskPath = (org, repo, task) => `${orgPath(org)}/repos/${enc(repo)}/tasks/${enc(task)}`;

function go(path, replace = false) {
  if (path !== location.pathname + location.search) history[replace ? 'replaceState' : 'pushState'](null, '', path);
  onRoute();
}

window.addEventListener('popstate', () => onRoute());

// Tells the server the organization now in use, when it is one of the user's and not already the active one.
function rememberOrg(org) {
  const me = S.me;
  if (!me || me.activeOrganizationId === org || !me.organizations.some((o) => o.id === org)) return;
  me.activeOrganizationId = org; // the `app` snapshot confirms it
  api('PUT', '/v1/me/active-organization', { orgId: org }).catch(() => {});
}

function onRoute() {
  if (S.phase !== 'app') return;
  const prev = S.route;
  const r = parseRoute(location.pathname);
  if (r.name === 'signin') return go('/', true);
  if (r.name === 'home') {
    // The server remembers where the user works (on every device): its active organization, else the first.
    const target = S.me ? S.me.activeOrganizationId : null;
    return go(target ? orgPath(target) : '/orgs', true);
  }
  if (prev.name === 'task') saveDraftNow(); // while the route still names the session it belongs to
  S.route = r;
  if (r.org !== prev.org) {
    S.org = null;
    S.orgError = null;
  }
  if (r.org) rememberOrg(r.org);
  const sameTask = r.name === 'task' && prev.name === 'task' && r.org === prev.org && r.repo === prev.repo && r.task === prev.task;
  if (!sameTask) {
    S.task = null;
    S.session = null;
    S.sessionPick = null;
    S.renaming = false;
    S.processes = [];
    S.draftSession = null;
  }
  syncSubs();
  renderMain();
  invalidate('top', 'sidebar');
}

// ---------------------------------------------------------------------------------------------------------------
// WebSocket: one connection; subscriptions follow the route; a dropped connection reconnects with back-off.

let ws = null;
let retries = 0;
let retryTimer = null;
let pingTimer = null;
/** @type {Map<string, Sub>} */
const active = new Map(); // subscription id -> frame sent

const subId = (s) => `${s.topic}|${s.key ? JSON.stringify(s.key) : ''}`;

// The snapshot each subscription holds and its version, keyed like subId but by the key the server's frames carry.
// `{topic}Patched` frames apply to it when their `base` is its version; otherwise (never expected: the server sends
// a full snapshot rather than leave a gap) the app subscribes again and waits for a full `{topic}Updated`.
const wire = new Map(); // `${topic}|${JSON.stringify(key)}` -> { version, doc, resync }

function pointerTokens(path) {
  if (path === '') return [];
  if (path[0] !== '/') throw new Error(`bad pointer ${path}`);
  return path.slice(1).split('/').map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function arrayIndex(token, max) {
  if (!/^(0|[1-9][0-9]*)$/.test(token) || Number(token) > max) throw new Error(`bad index ${token}`);
  return Number(token);
}

// JSON Patch (RFC 6902: add, remove, replace) plus `append` to a string, as docs/API.md describes. Mutates `doc`
// and returns it (a new value when the root itself is replaced); throws when the patch does not fit.
function applyOps(doc, ops) {
  for (const op of ops) {
    const toks = pointerTokens(op.path);
    if (!toks.length) {
      if (op.op === 'append') doc += op.value;
      else if (op.op === 'add' || op.op === 'replace') doc = op.value;
      else throw new Error(`cannot ${op.op} the root`);
      continue;
    }
    const last = toks.pop();
    let parent = doc;
    for (const t of toks) {
      parent = Array.isArray(parent) ? parent[arrayIndex(t, parent.length - 1)] : parent && parent[t];
      if (parent === null || typeof parent !== 'object') throw new Error(`nothing at ${op.path}`);
    }
    if (Array.isArray(parent)) {
      if (op.op === 'add') {
        parent.splice(last === '-' ? parent.length : arrayIndex(last, parent.length), 0, op.value);
        continue;
      }
      const i = arrayIndex(last, parent.length - 1);
      if (op.op === 'remove') parent.splice(i, 1);
      else if (op.op === 'replace') parent[i] = op.value;
      else if (op.op === 'append' && typeof parent[i] === 'string') parent[i] += op.value;
      else throw new Error(`cannot ${op.op} ${op.path}`);
    } else if (op.op === 'add') {
      parent[last] = op.value;
    } else {
      if (!Object.prototype.hasOwnProperty.call(parent, last)) throw new Error(`nothing at ${op.path}`);
      if (op.op === 'remove') delete parent[last];
      else if (op.op === 'replace') parent[last] = op.value;
      else if (op.op === 'append' && typeof parent[last] === 'string') parent[last] += op.value;
      else throw new Error(`cannot ${op.op} ${op.path}`);
    }
  }
  return doc;
}

/**
 * What every topic's `{topic}Updated` and `{topic}Patched` frames have in common.
 * @typedef {{ type: string, key: any, version: number, snapshot?: any, base?: number, ops?: PatchOp[] }} TopicFrame
 */

// Keeps `wire` up to date; returns the frame as a full `{topic}Updated` (a patch applied to the held snapshot), or
// null for a patch that cannot be applied (the app then resubscribes).
/**
 * @param {ServerFrame} frame
 * @returns {ServerFrame | null}
 */
function throughWire(frame) {
  const m = /^(.*)(Updated|Patched)$/.exec(frame.type || '');
  if (!m) return frame;
  const f = /** @type {TopicFrame} */ (frame);
  const topic = /** @type {TopicName} */ (m[1]);
  const kind = m[2];
  const id = `${topic}|${JSON.stringify(f.key)}`;
  if (kind === 'Updated') {
    wire.set(id, { version: f.version, doc: f.snapshot, resync: false });
    return frame;
  }
  const w = wire.get(id);
  if (!w || w.resync) return null;
  try {
    if (w.version !== f.base) throw new Error(`patch from ${f.base}, have ${w.version}`);
    w.doc = applyOps(w.doc, f.ops);
    w.version = f.version;
  } catch {
    w.resync = true; // until the full snapshot the subscription resends
    send({ type: 'subscribe', topic, ...(topic === 'app' ? {} : { key: f.key }), patches: true });
    return null;
  }
  const updated = { type: `${topic}Updated`, key: f.key, version: f.version, snapshot: w.doc };
  return /** @type {ServerFrame} */ (/** @type {unknown} */ (updated));
}

function currentSessionId() {
  const t = S.task;
  if (!t) return null;
  const open = t.sessions.filter((s) => s.status !== 'closed');
  const ids = open.map((s) => s.sessionId);
  if (S.sessionPick && ids.includes(S.sessionPick)) return S.sessionPick;
  const fromOverlay = t.overlay && t.overlay.activeSessionId;
  if (fromOverlay && ids.includes(fromOverlay)) return fromOverlay;
  return ids[0] || (t.sessions[0] && t.sessions[0].sessionId) || null;
}

/** @typedef {{ topic: TopicName, key?: TopicKey }} Sub */

/** @returns {Sub[]} */
function desiredSubs() {
  /** @type {Sub[]} */
  const subs = [{ topic: 'app' }];
  const r = S.route;
  if (r.org) subs.push({ topic: 'organization', key: { org: r.org } });
  if (r.name === 'task') {
    const key = { org: r.org, repo: r.repo, task: r.task };
    subs.push({ topic: 'task', key });
    subs.push({ topic: 'sandboxProcesses', key });
    const session = currentSessionId();
    if (session) subs.push({ topic: 'session', key: { ...key, session } });
  }
  return subs;
}

/** @param {ClientFrame} frame */
function send(frame) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
}

function syncSubs() {
  if (!ws || ws.readyState !== WebSocket.OPEN) return; // resubscribed on open
  const want = new Map(desiredSubs().map((s) => [subId(s), s]));
  for (const [id, s] of active) {
    if (!want.has(id)) {
      send({ type: 'unsubscribe', ...s });
      active.delete(id);
      wire.delete(id);
    }
  }
  for (const [id, s] of want) {
    if (!active.has(id)) {
      send({ type: 'subscribe', ...s, patches: true });
      active.set(id, s);
    }
  }
}

function connect() {
  if (ws || S.phase !== 'app') return;
  const sock = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/ws`);
  ws = sock;
  sock.onopen = () => {
    retries = 0;
    S.online = true;
    active.clear();
    wire.clear();
    syncSubs();
    clearInterval(pingTimer);
    // Keeps idle connections visibly alive through proxies; the server also pings.
    pingTimer = setInterval(() => send({ type: 'ping' }), 20000);
    invalidate('top');
  };
  sock.onmessage = (e) => {
    /** @type {ServerFrame | null} */
    let frame;
    try {
      frame = JSON.parse(e.data);
    } catch {
      return;
    }
    frame = throughWire(frame);
    if (frame) onFrame(frame);
  };
  sock.onclose = (e) => {
    if (ws !== sock) return;
    ws = null;
    clearInterval(pingTimer);
    S.online = false;
    invalidate('top');
    if (S.phase !== 'app') return;
    const delay = Math.min(10000, 500 * 2 ** retries) * (0.75 + Math.random() / 2);
    retries += 1;
    // 1008 is the server saying the session is gone; otherwise check before retrying, since a refused upgrade
    // (401) looks like any other drop from here.
    retryTimer = setTimeout(async () => {
      retryTimer = null;
      if (await sessionAlive()) connect();
    }, e.code === 1008 ? 0 : delay);
  };
}

async function sessionAlive() {
  try {
    await api('GET', '/v1/auth/whoami');
    return true;
  } catch (e) {
    return e.status !== 401;
  }
}

function disconnect() {
  clearTimeout(retryTimer);
  clearInterval(pingTimer);
  retryTimer = null;
  active.clear();
  if (ws) {
    const sock = ws;
    ws = null;
    sock.close(1000);
  }
  S.online = false;
}

function keyMatchesTask(key) {
  const r = S.route;
  return r.name === 'task' && key && key.org === r.org && key.repo === r.repo && key.task === r.task;
}

/** @param {ServerFrame} f */
function onFrame(f) {
  switch (f.type) {
    case 'appUpdated':
      S.me = f.snapshot;
      invalidate('top');
      if (S.route.name === 'orgs') invalidate('orgs');
      if (S.route.name === 'settings') invalidate('settings');
      break;
    case 'organizationUpdated':
      if (f.key && f.key.org === S.route.org) {
        S.org = f.snapshot;
        S.orgError = null;
        // 'names': the open task's header names its viewers from the member list, which may arrive after the task
        invalidate('sidebar', 'org', 'top', 'names');
      }
      break;
    case 'taskUpdated':
      if (keyMatchesTask(f.key)) {
        S.task = f.snapshot;
        markSeen(S.task.repoId, S.task.taskId, S.task.updatedAt);
        syncSubs(); // the open tab may have changed
        invalidate('task');
      }
      break;
    case 'sandboxProcessesUpdated':
      if (keyMatchesTask(f.key)) {
        S.processes = Array.isArray(f.snapshot) ? f.snapshot : f.snapshot.processes || [];
        invalidate('processes');
      }
      break;
    case 'sessionUpdated':
      if (keyMatchesTask(f.key) && f.key.session === currentSessionId()) {
        S.session = f.snapshot;
        invalidate('session');
      }
      break;
    case 'event':
      if (f.topic === 'task' && f.event === 'gitOperation' && keyMatchesTask(f.key)) {
        gitOperationNotice(/** @type {GitOperationEvent} */ (f.payload));
      }
      break;
    case 'lagged':
      break; // events were lost; the full snapshot that follows is the state
    case 'error':
      if (f.code === 'unauthenticated') {
        signedOut('Your session ended. Sign in again.');
      } else if (f.topic === 'organization' && f.key && f.key.org === S.route.org) {
        S.org = null;
        S.orgError = f.code === 'forbidden' || f.code === 'not_found' ? 'noaccess' : f.message;
        active.delete(subId({ topic: f.topic, key: f.key }));
        invalidate('sidebar', 'org', 'top');
        renderMain();
      } else {
        if (f.topic) active.delete(subId({ topic: f.topic, key: f.key }));
        toast(f.message);
      }
      break;
    default:
      break;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Unread marks: the API has no per-user "seen" for the sidebar yet, so this device remembers the last version of
// each task it showed; a task updated since then gets the dot. Tasks older than the first visit start as read.

const seenCache = new Map();

function seenOf(org) {
  let seen = seenCache.get(org);
  if (!seen) {
    try {
      seen = JSON.parse(localStorage.getItem(`foundry.seen.${org}`) || 'null');
    } catch {
      seen = null;
    }
    if (!seen || typeof seen !== 'object') seen = { _base: Date.now() };
    seenCache.set(org, seen);
  }
  return seen;
}

function markSeen(repo, task, at) {
  const org = S.route.org;
  if (!org) return;
  const seen = seenOf(org);
  const k = `${repo}/${task}`;
  if ((seen[k] || 0) >= at) return;
  seen[k] = at;
  localStorage.setItem(`foundry.seen.${org}`, JSON.stringify(seen));
}

function isUnread(seen, t) {
  const last = seen[`${t.repoId}/${t.taskId}`];
  return t.updatedAt > (last === undefined ? seen._base : last);
}

// ---------------------------------------------------------------------------------------------------------------
// Rendering

const dirty = new Set();
let frameRequested = false;

function invalidate(...parts) {
  for (const p of parts) dirty.add(p);
  if (!frameRequested) {
    frameRequested = true;
    requestAnimationFrame(flush);
  }
}

function flush() {
  frameRequested = false;
  if (S.phase !== 'app') {
    dirty.clear();
    return;
  }
  const parts = new Set(dirty);
  dirty.clear();
  if (parts.has('top')) renderTop();
  if (parts.has('sidebar')) renderSidebar();
  if (parts.has('org') && S.route.name === 'org') renderOrgLive();
  if (parts.has('org') && S.route.name === 'new') renderNewTaskLive();
  if (parts.has('orgs') && S.route.name === 'orgs') renderMain();
  if ((parts.has('task') || parts.has('names')) && S.route.name === 'task') renderTaskLive();
  if ((parts.has('session') || parts.has('task')) && S.route.name === 'task') renderTranscript();
  if ((parts.has('processes') || parts.has('task')) && S.route.name === 'task') renderProcesses();
  if (parts.has('task') && S.route.name === 'task') restoreDraft();
  if (parts.has('settings') && S.route.name === 'settings') renderSettingsLive();
}

const TASK_STATUS = {
  running: ['running', 'Running'],
  idle: ['idle', 'Idle'],
  error: ['error', 'Error'],
  archived: ['archived', 'Archived'],
  killed: ['archived', 'Killed'],
};

function taskStatus(status) {
  if (TASK_STATUS[status]) return TASK_STATUS[status];
  if (status.startsWith('init')) return ['pending', 'Starting'];
  if (status.startsWith('archive')) return ['pending', 'Archiving'];
  if (status.startsWith('kill')) return ['pending', 'Stopping'];
  return ['idle', status];
}

const hiddenStatus = (s) => s === 'archived' || s === 'killed' || s.startsWith('archive_') || s.startsWith('kill_');

function prBadge(pr) {
  if (!pr) return '';
  const state = pr.isDraft && pr.state === 'open' ? 'draft' : pr.state;
  return `<span class="pr pr-${esc(state)}" title="Pull request #${esc(pr.number)}: ${esc(state)}">#${esc(pr.number)}</span>`;
}

function timeAgo(ms) {
  if (!ms) return '';
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 60) return 'just now';
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(ms).toLocaleDateString();
}

// An avatar: the user's picture when they gave an http(s) URL, else their initial.
function avatarHtml(name, url) {
  if (url && /^https?:\/\//i.test(url)) return `<img src="${esc(url)}" alt="" width="24" height="24" referrerpolicy="no-referrer">`;
  return esc(String(name || '?').slice(0, 1).toUpperCase());
}

function renderShell() {
  $('#app').className = 'layout';
  $('#app').removeAttribute('aria-busy');
  $('#app').innerHTML = `
    <header class="topbar">
      <a class="brand" href="/"><img src="/icon.svg" alt="" width="22" height="22"><span>Foundry</span></a>
      <label class="org-switch"><span class="sr-only">Organization</span><select id="org-select" data-change="org"></select></label>
      <span class="spacer"></span>
      <span id="conn" class="conn" role="status"></span>
      <a id="inspector-link" class="btn ghost small" href="/admin" hidden>Inspector</a>
      <a id="user-link" class="user-link" href="/settings" title="Your settings"><span id="user-avatar" class="avatar small" aria-hidden="true"></span><span id="user-name" class="user-name"></span></a>
      <button class="btn ghost" data-action="sign-out">Sign out</button>
    </header>
    <aside class="sidebar" aria-label="Tasks">
      <div class="sidebar-head"><a id="new-task" class="btn primary block" href="/orgs">New task</a></div>
      <nav id="task-list" class="task-list" aria-label="Tasks by repository"></nav>
      <label class="sidebar-foot"><input type="checkbox" data-change="archived"> Show archived</label>
    </aside>
    <main id="main" class="main" tabindex="-1"></main>
    <dialog id="dialog" class="dialog"></dialog>`;
}

function renderTop() {
  const me = S.me;
  const conn = $('#conn');
  if (!conn) return;
  conn.className = `conn ${S.online ? 'on' : 'off'}`;
  conn.textContent = S.online ? 'Live' : 'Offline — reconnecting…';
  $('#user-name').textContent = me ? me.user.name || me.user.email : '';
  $('#inspector-link').hidden = !S.serverAdmin;
  const av = $('#user-avatar');
  const avHtml = me ? avatarHtml(me.user.name || me.user.email, me.user.avatarUrl) : '';
  if (av.dataset.html !== avHtml) {
    av.innerHTML = avHtml;
    av.dataset.html = avHtml;
  }
  const orgs = me ? me.organizations.map((o) => ({ id: o.id, name: o.displayName })) : [];
  const cur = S.route.org;
  if (cur && S.org && !orgs.some((o) => o.id === cur)) orgs.push({ id: cur, name: S.org.profile.displayName }); // just created; the app snapshot catches up
  const select = $('#org-select');
  const html =
    orgs.map((o) => `<option value="${esc(o.id)}"${o.id === cur ? ' selected' : ''}>${esc(o.name)}</option>`).join('') +
    `<option value=""${cur ? '' : ' selected'}>All organizations…</option>`;
  if (select.dataset.html !== html) {
    select.innerHTML = html;
    select.dataset.html = html;
  }
  const newTask = $('#new-task');
  newTask.href = cur && S.org ? `${orgPath(cur)}/new` : '/orgs';
  newTask.classList.toggle('disabled', !(cur && S.org));
}

function renderSidebar() {
  const list = $('#task-list');
  if (!list) return;
  const o = S.org;
  if (!o) {
    list.innerHTML = S.route.org && !S.orgError ? '<p class="side-empty">Loading…</p>' : '';
    return;
  }
  const started = performance.now();
  const seen = seenOf(o.organizationId);
  const r = S.route;
  const current = r.name === 'task' ? `${r.repo}/${r.task}` : null;
  const byRepo = new Map(o.repos.map((repo) => [repo.repoId, []]));
  for (const t of o.taskSummaries) {
    if (!S.showArchived && hiddenStatus(t.status)) continue;
    if (!byRepo.has(t.repoId)) byRepo.set(t.repoId, []);
    byRepo.get(t.repoId).push(t);
  }
  const names = new Map(o.repos.map((repo) => [repo.repoId, repo.fullName]));
  const activeEl = /** @type {HTMLElement | null} */ (document.activeElement);
  const focused = activeEl && activeEl.dataset ? activeEl.dataset.task : null;
  let first = true;
  const parts = [];
  for (const [repoId, tasks] of byRepo) {
    tasks.sort((a, b) => b.updatedAt - a.updatedAt);
    parts.push(`<section class="group"><h2 class="group-title"><span>${esc(names.get(repoId) || repoId)}</span><span class="count">${tasks.length}</span></h2><ul>`);
    for (const t of tasks) {
      const id = `${t.repoId}/${t.taskId}`;
      const isCurrent = id === current;
      if (isCurrent) markSeen(t.repoId, t.taskId, t.updatedAt);
      const unread = !isCurrent && isUnread(seen, t);
      const [cls, label] = taskStatus(t.status);
      // Roving tabindex: the list is one tab stop; arrows move inside it.
      const tab = isCurrent || (!current && first) ? '0' : '-1';
      first = false;
      parts.push(
        `<li><a class="task-row${isCurrent ? ' current' : ''}${unread ? ' unread' : ''}" href="${taskPath(o.organizationId, t.repoId, t.taskId)}" data-task="${esc(id)}" tabindex="${tab}"${isCurrent ? ' aria-current="page"' : ''}>` +
          `<span class="st st-${cls}" title="${esc(label)}"><span class="sr-only">${esc(label)}</span></span>` +
          `<span class="t-title">${esc(t.title)}</span>` +
          (unread ? '<span class="unread-dot" title="Updated since you last looked"><span class="sr-only">unread</span></span>' : '') +
          prBadge(t.pullRequest) +
          '</a></li>',
      );
    }
    if (!tasks.length) parts.push('<li class="side-none">No tasks yet</li>');
    parts.push('</ul></section>');
  }
  if (!o.repos.length) parts.push(`<p class="side-empty">No repositories yet. <a href="${orgPath(o.organizationId)}">Add one</a>.</p>`);
  list.innerHTML = parts.join('');
  if (focused) {
    const again = list.querySelector(`[data-task="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
  // Visible in the browser's performance tools (and read by the browser test): the cost per snapshot at scale.
  performance.measure('foundry:sidebar', { start: started, detail: { tasks: o.taskSummaries.length } });
}

function renderMain() {
  const main = $('#main');
  if (!main) return;
  const r = S.route;
  if (r.org && S.orgError) {
    main.innerHTML = S.orgError === 'noaccess'
      ? `<div class="empty"><h1>Organization not available</h1><p>There is no organization “${esc(r.org)}”, or you are not one of its members.</p><a class="btn" href="/orgs">Your organizations</a></div>`
      : `<div class="empty"><h1>Something went wrong</h1><p>${esc(S.orgError)}</p></div>`;
    return;
  }
  if (r.name === 'orgs') renderOrgs(main);
  else if (r.name === 'org') renderOrg(main);
  else if (r.name === 'new') renderNewTask(main);
  else if (r.name === 'task') renderTask(main);
  else if (r.name === 'audit') renderAudit(main);
  else if (r.name === 'settings') renderSettings(main);
  else if (r.name === 'inspector') renderRuntimeInspector(main, r, { api, fail });
}

// --- organizations -----------------------------------------------------------------------------------------------

function renderOrgs(main) {
  const orgs = S.me ? S.me.organizations : [];
  main.innerHTML = `
    <div class="page narrow">
      <h1>Organizations</h1>
      <p class="lead">Each organization holds repositories, the tasks your agents work on, and its members.</p>
      ${orgs.length ? `<ul class="org-list">${orgs.map((o) => `<li><a class="org-card" href="${orgPath(o.id)}"><span class="avatar">${esc(o.displayName.slice(0, 1).toUpperCase())}</span><span>${esc(o.displayName)}${o.role ? ` <span class="muted small">${esc(o.role)}</span>` : ''}</span></a></li>`).join('')}</ul>` : '<p class="muted">You are not a member of any organization yet. Create one to start.</p>'}
      <section class="card">
        <h2>Create an organization</h2>
        <form data-form="create-org" class="form">
          <label>Name<input name="displayName" required maxlength="100" placeholder="Acme Inc." autocomplete="organization"></label>
          <label><span>Id <span class="hint">letters, digits and dashes; used in links</span></span><input name="id" required pattern="[A-Za-z0-9][A-Za-z0-9._-]*" maxlength="64" placeholder="acme"></label>
          <p class="form-error" role="alert"></p>
          <div class="actions"><button class="btn primary" type="submit">Create organization</button></div>
        </form>
      </section>
    </div>`;
}

function renderOrg(main) {
  const r = S.route;
  main.innerHTML = `
    <div class="page">
      <header class="page-head"><div><h1 id="org-title">${esc(r.org)}</h1><p id="org-sub" class="muted"></p></div>
        <div class="actions"><a class="btn" id="audit-link" href="${orgPath(r.org)}/audit">Audit log</a><a class="btn primary" href="${orgPath(r.org)}/new">New task</a></div></header>
      <div class="grid">
        <section class="card span2">
          <h2>Repositories</h2>
          <div id="repos"><p class="muted">Loading…</p></div>
          <details class="add-repo">
            <summary>Add a repository</summary>
            <form data-form="add-repo" class="form cols">
              <label>Full name<input name="fullName" required placeholder="acme/web" autocomplete="off"></label>
              <label>Id<input name="repoId" required placeholder="web" pattern="[A-Za-z0-9][A-Za-z0-9._-]*" autocomplete="off"></label>
              <label class="wide">Git remote URL<input name="remoteUrl" required placeholder="https://github.com/acme/web.git" autocomplete="off"></label>
              <label>Default branch<input name="defaultBranch" placeholder="main" autocomplete="off"></label>
              <p class="form-error wide" role="alert"></p>
              <div class="actions wide"><button class="btn primary" type="submit">Add repository</button></div>
            </form>
          </details>
        </section>
        <section class="card">
          <h2>GitHub</h2>
          <div id="github"></div>
          <form data-form="connect" class="form">
            <label>GitHub account<input name="login" required placeholder="acme" autocomplete="off"></label>
            <label>Account type<select name="kind"><option value="organization">Organization</option><option value="user">User</option></select></label>
            <p class="hint">Only an admin of the GitHub organization (or the GitHub user themself), signed in with GitHub, can connect it.</p>
            <p class="form-error" role="alert"></p>
            <div class="actions"><button class="btn" type="submit">Connect and sync</button></div>
          </form>
          <div class="actions"><button class="btn ghost" type="button" data-action="sync">Sync now</button></div>
        </section>
        <section class="card">
          <h2>Members</h2>
          <ul id="members" class="members"></ul>
          <form data-form="invite" class="form" id="invite" hidden>
            <div class="cols">
              <label>Login<input name="login" required placeholder="their-login" autocomplete="off"></label>
              <label>Role<select name="role"><option value="member">Member</option><option value="admin">Admin</option><option value="owner" data-owner-only>Owner</option></select></label>
            </div>
            <p class="hint">They must have signed in once, with GitHub or on this server.</p>
            <p class="form-error" role="alert"></p>
            <div class="actions"><button class="btn" type="submit">Add member</button></div>
          </form>
        </section>
        <section class="card" id="admin-card" hidden>
          <h2>Administration</h2>
          <p class="muted small">Recovery operations. Each is recorded in the audit log.</p>
          <div class="admin-ops">
            <div><button class="btn" data-action="admin-op" data-op="full-sync">Full sync</button><span class="hint">Fetch everything from GitHub again, from scratch.</span></div>
            <div><button class="btn danger-ghost" data-action="admin-op" data-op="clear-github">Clear GitHub data</button><span class="hint">Forget the mirrored GitHub data; tasks stay.</span></div>
            <div><button class="btn" data-action="admin-op" data-op="rebuild">Rebuild task index</button><span class="hint">Recompute the sidebar's task summaries from the tasks.</span></div>
          </div>
        </section>
      </div>
    </div>`;
  renderOrgLive();
}

function renderOrgLive() {
  const o = S.org;
  if (!o || !$('#repos')) return;
  const p = o.profile;
  const me = S.me && o.members.find((m) => m.userId === S.me.user.id);
  $('#org-title').textContent = p.displayName;
  $('#org-sub').textContent = `${o.organizationId} · ${o.repos.length} ${o.repos.length === 1 ? 'repository' : 'repositories'}${me ? ` · you are ${me.role}` : ''}`;
  $('#repos').innerHTML = o.repos.length
    ? `<table class="table"><thead><tr><th scope="col">Repository</th><th scope="col">Default branch</th><th scope="col">Tasks</th><th scope="col">Last activity</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead><tbody>${o.repos
        .map((repo) => `<tr><td><strong>${esc(repo.fullName)}</strong><div class="muted small">${esc(repo.remoteUrl)}</div></td><td><code>${esc(repo.defaultBranch)}</code></td><td>${esc(repo.taskCount)}</td><td>${esc(timeAgo(repo.latestActivityAt)) || '—'}</td><td class="right"><a class="btn small" href="${orgPath(o.organizationId)}/new?repo=${enc(repo.repoId)}">New task</a></td></tr>`)
        .join('')}</tbody></table>`
    : '<p class="muted">No repositories yet. Connect GitHub to import them, or add one by its remote URL.</p>';
  const status = p.syncStatus;
  const cls = status === 'synced' ? 'ok' : status === 'error' ? 'bad' : status === 'syncing' ? 'busy' : 'idle';
  const progress = p.syncTotal > 0 ? ` · ${p.syncSynced}/${p.syncTotal}` : '';
  $('#github').innerHTML = `
    <dl class="kv">
      <dt>Account</dt><dd>${p.installationId || status !== 'pending' ? esc(p.login) : '<span class="muted">not connected</span>'}</dd>
      <dt>Sync</dt><dd><span class="badge badge-${cls}">${esc(status)}</span>${p.syncPhase ? ` <span class="muted">${esc(p.syncPhase)}${esc(progress)}</span>` : ''}</dd>
      ${p.lastSyncAt ? `<dt>Last sync</dt><dd>${esc(timeAgo(p.lastSyncAt))}</dd>` : ''}
      ${p.syncError ? `<dt>Error</dt><dd class="error-text">${esc(p.syncError)}</dd>` : ''}
    </dl>`;
  const isAdmin = !!me && (me.role === 'admin' || me.role === 'owner');
  const isOwner = !!me && me.role === 'owner';
  const roles = ['member', 'admin', 'owner'];
  const html = o.members
    .map((m) => {
      const name = m.login || m.userId;
      const self = S.me && m.userId === S.me.user.id;
      // Admins change roles (only owners touch owners) and remove others; everyone may leave.
      const editable = isAdmin && !self && (isOwner || m.role !== 'owner');
      const role = editable
        ? `<label><span class="sr-only">Role of ${esc(name)}</span><select data-change="member-role" data-user="${esc(m.userId)}" data-role="${esc(m.role)}">${roles
            .filter((r) => isOwner || r !== 'owner')
            .map((r) => `<option value="${r}"${r === m.role ? ' selected' : ''}>${r}</option>`)
            .join('')}</select></label>`
        : `<span class="badge">${esc(m.role)}</span>`;
      const act = self
        ? '<button class="btn ghost small" data-action="leave-org">Leave</button>'
        : editable
          ? `<button class="btn ghost small" data-action="remove-member" data-user="${esc(m.userId)}" data-name="${esc(name)}" aria-label="Remove ${esc(name)}">Remove</button>`
          : '';
      return `<li data-user="${esc(m.userId)}"><span class="avatar small">${esc(name.slice(0, 1).toUpperCase())}</span><span class="grow">${esc(name)}${self ? ' <span class="muted small">(you)</span>' : ''}</span>${role}${act}</li>`;
    })
    .join('');
  const list = $('#members');
  if (list.dataset.html !== html) {
    list.innerHTML = html;
    list.dataset.html = html;
  }
  const invite = $('#invite');
  invite.hidden = !isAdmin;
  for (const opt of invite.querySelectorAll('[data-owner-only]')) opt.disabled = !isOwner;
  $('#admin-card').hidden = !isAdmin;
  $('form[data-form=connect]').hidden = !isAdmin;
}

// --- audit log --------------------------------------------------------------------------------------------------

const AUDIT_PAGE = 50;

function renderAudit(main) {
  const org = S.route.org;
  main.innerHTML = `
    <div class="page">
      <header class="page-head"><div><h1>Audit log</h1><p class="muted">What happened in <a href="${orgPath(org)}">${esc(org)}</a>, newest first.</p></div></header>
      <section class="card">
        <table class="table audit"><thead><tr><th scope="col">When</th><th scope="col">Event</th><th scope="col">By</th><th scope="col">Where</th><th scope="col">Details</th></tr></thead><tbody id="audit-rows"></tbody></table>
        <p id="audit-empty" class="muted" hidden>No events yet.</p>
        <p class="form-error" id="audit-error" role="alert"></p>
        <div class="actions"><button class="btn" id="audit-more" data-action="audit-more" hidden>Load more</button></div>
      </section>
    </div>`;
  S.auditBefore = null;
  loadAudit(org, true);
}

async function loadAudit(org, first) {
  // `?limit=` on the page's address sets the page size (1 to 500).
  const asked = Number(new URLSearchParams(location.search).get('limit'));
  const limit = asked >= 1 && asked <= 500 ? Math.floor(asked) : AUDIT_PAGE;
  const q = new URLSearchParams({ limit: String(limit) });
  if (!first && S.auditBefore != null) q.set('before', String(S.auditBefore));
  const err = $('#audit-error');
  try {
    /** @type {AuditPage} */
    const page = await api('GET', `/v1/orgs/${enc(org)}/audit?${q}`);
    if (S.route.name !== 'audit' || S.route.org !== org || !$('#audit-rows')) return;
    if (err) err.textContent = '';
    const members = new Map((S.org ? S.org.members : []).map((m) => [m.userId, m.login]));
    const events = page.events || [];
    $('#audit-rows').insertAdjacentHTML(
      'beforeend',
      events
        .map((ev) => {
          const repo = ev.repoId;
          const task = ev.taskId;
          const user = ev.userId;
          const where = repo && task ? `<a href="${taskPath(org, repo, task)}">${esc(repo)}/${esc(task)}</a>` : esc(repo || '');
          const payload = ev.payload && typeof ev.payload === 'object' && Object.keys(ev.payload).length ? JSON.stringify(ev.payload) : '';
          return `<tr class="audit-row" data-id="${esc(ev.id)}"><td title="${esc(new Date(ev.at).toISOString())}">${esc(new Date(ev.at).toLocaleString())}</td><td><code class="audit-kind">${esc(ev.kind)}</code></td><td>${esc(user ? members.get(user) || user : '—')}</td><td>${where}</td><td class="audit-payload"><code>${esc(payload.length > 200 ? `${payload.slice(0, 200)}…` : payload)}</code></td></tr>`;
        })
        .join(''),
    );
    S.auditBefore = page.nextBefore ?? null;
    $('#audit-more').hidden = S.auditBefore == null;
    $('#audit-empty').hidden = !!document.querySelector('#audit-rows tr');
  } catch (e) {
    if (err && err.isConnected) err.textContent = e.message;
    else fail(e);
  }
}

// --- settings ---------------------------------------------------------------------------------------------------

function renderSettings(main) {
  const me = S.me;
  main.innerHTML = `
    <div class="page narrow">
      <h1>Settings</h1>
      <section class="card">
        <h2>Profile</h2>
        <form data-form="profile" class="form">
          <div class="profile-row"><span class="avatar large" id="settings-avatar" aria-hidden="true"></span>
            <div class="grow">
              <label>Name<input name="name" required maxlength="200" autocomplete="name" value="${esc(me.user.name)}"></label>
              <label><span>Avatar URL <span class="hint">https://…, optional</span></span><input name="avatarUrl" type="url" maxlength="2048" autocomplete="photo" value="${esc(me.user.avatarUrl || '')}"></label>
            </div>
          </div>
          <p class="muted small">${esc(me.user.email)}${me.profile.githubLogin ? ` · GitHub <strong>${esc(me.profile.githubLogin)}</strong>` : ''}</p>
          <p class="form-error" role="alert"></p>
          <div class="actions"><button class="btn primary" type="submit">Save profile</button></div>
        </form>
      </section>
      <section class="card">
        <h2>Default model</h2>
        <form data-form="default-model" class="form">
          <label>New tasks and sessions start with<select name="model" id="settings-model"></select></label>
          <p class="form-error" role="alert"></p>
          <div class="actions"><button class="btn primary" type="submit">Save default</button></div>
        </form>
      </section>
      <section class="card">
        <h2>Sign-in sessions</h2>
        <ul id="auth-sessions" class="members"><li class="muted">Loading…</li></ul>
        <div class="actions"><button class="btn danger-ghost" data-action="revoke-sessions">Sign out everywhere</button></div>
      </section>
    </div>`;
  renderSettingsLive();
  loadAuthSessions();
}

function renderSettingsLive() {
  const me = S.me;
  const av = $('#settings-avatar');
  if (!me || !av) return;
  av.innerHTML = avatarHtml(me.user.name || me.user.email, me.user.avatarUrl);
  const select = $('#settings-model');
  const html = S.models.map((m) => `<option value="${esc(m.id)}"${m.id === me.defaultModel ? ' selected' : ''}>${m.id === me.defaultModel ? '★ ' : ''}${esc(m.label)}</option>`).join('');
  if (select.dataset.html !== html) {
    select.innerHTML = html;
    select.dataset.html = html;
  }
}

async function loadAuthSessions() {
  /** @type {AuthSessionInfo[]} */
  let list;
  /** @type {WhoAmI} */
  let me;
  try {
    [list, me] = await Promise.all([api('GET', '/v1/auth/sessions'), api('GET', '/v1/auth/whoami')]);
  } catch (e) {
    fail(e);
    return;
  }
  const el = $('#auth-sessions');
  if (!el) return;
  const now = Date.now();
  const live = list.filter((x) => !x.revokedAtMs && x.expiresAtMs > now);
  el.innerHTML = live
    .map((x) => {
      const current = x.sessionId === me.sessionId;
      const end = current
        ? '<span class="badge badge-ok">this browser</span>'
        : `<button class="btn ghost small" data-action="revoke-session" data-session="${esc(x.sessionId)}">Sign out</button>`;
      return `<li><span class="grow">${esc(x.userAgent || 'Unknown client')}<div class="muted small">signed in ${esc(new Date(x.createdAtMs).toLocaleString())}</div></span>${end}</li>`;
    })
    .join('');
}

// --- new task ---------------------------------------------------------------------------------------------------

function renderNewTask(main) {
  const models = S.models;
  const def = S.me ? S.me.defaultModel : null;
  main.innerHTML = `
    <div class="page narrow">
      <h1>New task</h1>
      <p class="lead">Describe what the agent should do. It starts working as soon as you create the task.</p>
      <form data-form="new-task" class="form card">
        <label>Repository<select name="repo" id="nt-repo" required></select></label>
        <label>Prompt<textarea name="prompt" rows="6" required placeholder="Fix the flaky login test and explain the cause"></textarea></label>
        <label>Model<select name="model">${models
          .map((m) => `<option value="${esc(m.id)}"${m.id === def ? ' selected' : ''}>${m.id === def ? '★ ' : ''}${esc(m.label)}${m.id === def ? ' (your default)' : ''}</option>`)
          .join('')}</select></label>
        <p class="preview" id="nt-preview" aria-live="polite"><span class="muted">Title and branch appear here as you type.</span></p>
        <details><summary>Title and branch</summary>
          <div class="cols">
            <label><span>Title <span class="hint">derived from the prompt if empty</span></span><input name="title" maxlength="200" autocomplete="off"></label>
            <label><span>Branch <span class="hint">derived from the title if empty</span></span><input name="branch" maxlength="200" autocomplete="off"></label>
          </div>
        </details>
        <p class="form-error" role="alert"></p>
        <div class="actions"><button class="btn primary" type="submit">Create task</button><span class="hint">Ctrl+Enter</span></div>
      </form>
    </div>`;
  renderNewTaskLive();
  $('textarea[name=prompt]', main).focus();
}

function renderNewTaskLive() {
  const select = $('#nt-repo');
  if (!select || !S.org) return;
  const want = new URLSearchParams(location.search).get('repo');
  const html = S.org.repos.map((r) => `<option value="${esc(r.repoId)}">${esc(r.fullName)}</option>`).join('');
  if (select.dataset.html === html) return;
  const keep = select.value || want;
  select.innerHTML = html || '<option value="">No repositories: add one first</option>';
  select.dataset.html = html;
  if (keep && S.org.repos.some((r) => r.repoId === keep)) select.value = keep;
  schedulePreview(select.form);
}

// The title and branch the server would assign, asked of it (so the preview never disagrees with creation),
// at most once per pause in typing; an answer to an older input is dropped.
let previewTimer = null;
let previewSeq = 0;

function schedulePreview(form) {
  clearTimeout(previewTimer);
  previewTimer = setTimeout(() => previewNames(form), 250);
}

async function previewNames(form) {
  const out = $('#nt-preview');
  if (!out || !form.isConnected) return;
  // The new-task form has text fields only.
  const data = /** @type {Record<string, string>} */ (Object.fromEntries(new FormData(form)));
  if (!data.repo || !data.prompt.trim()) {
    out.innerHTML = '<span class="muted">Title and branch appear here as you type.</span>';
    return;
  }
  /** @type {import('./api').TaskNamesBody} */
  const body = { prompt: data.prompt };
  if (data.title.trim()) body.title = data.title.trim();
  if (data.branch.trim()) body.branch = data.branch.trim();
  const seq = ++previewSeq;
  try {
    /** @type {TaskNames} */
    const names = await api('POST', `/v1/orgs/${enc(S.route.org)}/repos/${enc(data.repo)}/task-names`, body);
    if (seq !== previewSeq || !out.isConnected) return;
    out.innerHTML = `<span class="muted">Title</span> <strong id="nt-title">${esc(names.title)}</strong> <span class="muted">on branch</span> <code id="nt-branch">${esc(names.branch)}</code>`;
  } catch (e) {
    if (seq !== previewSeq || !out.isConnected) return;
    out.innerHTML = `<span class="error-text">${esc(e.message)}</span>`;
  }
}

// --- drafts -----------------------------------------------------------------------------------------------------
// The composer's text is the session's draft on the server (per user): saved a moment after typing stops and when
// leaving the session, restored when the session is opened here or on another device.

let draftTimer = null;
let draftSent = new Map(); // "repo/task/session" -> the text the server has

const draftKey = () => `${S.route.repo}/${S.route.task}/${S.draftSession}`;

function scheduleDraft() {
  clearTimeout(draftTimer);
  draftTimer = setTimeout(saveDraftNow, 600);
}

function saveDraftNow() {
  clearTimeout(draftTimer);
  draftTimer = null;
  const box = $('#composer');
  if (!box || !S.draftSession || S.route.name !== 'task') return;
  const key = draftKey();
  const text = box.value;
  if (draftSent.get(key) === text) return;
  draftSent.set(key, text);
  const path = `${taskBase()}/sessions/${enc(S.draftSession)}/draft`;
  api('PUT', path, { text, attachments: [] }).catch((e) => {
    draftSent.delete(key);
    if (e.status !== 404) fail(e); // a closed session has no draft to keep
  });
}

// Fills the composer from the open session's saved draft when a session is opened (never over what is typed
// here), and clears the session's unread mark, since it is now being looked at.
function restoreDraft() {
  const t = S.task;
  const box = $('#composer');
  const sid = currentSessionId();
  if (!t || !box || !sid || S.draftSession === sid) return;
  if (S.draftSession) saveDraftNow();
  S.draftSession = sid;
  const mine = t.overlay && t.overlay.sessions ? t.overlay.sessions.find((o) => o.sessionId === sid) : null;
  const text = mine && mine.draft ? mine.draft.text : '';
  draftSent.set(draftKey(), text);
  box.value = text;
  if (mine && mine.unread) api('PUT', `${taskBase()}/sessions/${enc(sid)}/unread`, { unread: false }).catch(fail);
}

window.addEventListener('pagehide', saveDraftNow);
// A page the browser keeps for back/forward navigation would otherwise keep its socket, and with it its place among
// a task's viewers: leave when the page is hidden for good or frozen, come back when it is shown again.
window.addEventListener('pagehide', () => disconnect());
window.addEventListener('pageshow', (e) => {
  if (e.persisted) connect();
});

// --- task -------------------------------------------------------------------------------------------------------

function renderTask(main) {
  main.innerHTML = `
    <div class="task">
      <header class="task-head" id="task-head"><h1 class="loading">Loading…</h1></header>
      <div class="task-body">
        <section class="conversation" aria-label="Conversation">
          <div class="tabs" id="tabs" role="tablist" aria-label="Sessions"></div>
          <div class="session-bar" id="session-bar"></div>
          <div class="transcript" id="transcript" aria-live="polite"></div>
          <form class="composer" data-form="send">
            <label class="sr-only" for="composer">Message the agent</label>
            <textarea id="composer" name="text" rows="3" placeholder="Reply to the agent… (Ctrl+Enter to send)"></textarea>
            <div class="composer-bar">
              <span id="turn-status" class="muted small"></span>
              <span class="spacer"></span>
              <button class="btn" type="button" data-action="steer" id="steer" hidden title="Send the text above as guidance to the running turn">Steer</button>
              <button class="btn" type="button" data-action="interrupt" id="interrupt" hidden>Interrupt</button>
              <button class="btn danger-ghost" type="button" data-action="stop" id="stop" hidden>Stop</button>
              <button class="btn primary" type="submit">Send</button>
            </div>
          </form>
        </section>
        <aside class="inspector" aria-label="Workspace and processes"><div id="inspector"></div><section id="processes" class="processes" aria-label="Sandbox processes"></section></aside>
      </div>
    </div>`;
  renderTaskLive();
  renderTranscript();
}

function renderTaskLive() {
  const t = S.task;
  const head = $('#task-head');
  if (!head || !t) return;
  const [cls, label] = taskStatus(t.status);
  const pr = t.pullRequest;
  const winding = hiddenStatus(t.status);
  if (!S.renaming) {
    let prActions = '';
    if (!winding) {
      if (!pr) prActions = '<button class="btn" data-action="publish-pr">Create pull request</button>';
      else if (pr.state === 'open') prActions = '<button class="btn" data-action="merge">Merge</button>';
    }
    head.innerHTML = `
      <div class="title-row">
        <h1 id="task-title">${esc(t.title)}</h1>
        <button class="btn ghost small" data-action="rename" aria-label="Rename task">Rename</button>
      </div>
      <div class="meta">
        <span class="pill pill-${cls}"><span class="st st-${cls}"></span>${esc(label)}</span>
        <code class="branch" title="Branch">${esc(t.branch)}</code>
        ${pr ? `<a class="pr-link" href="${esc(pr.url)}" target="_blank" rel="noopener">${prBadge(pr)} ${esc(pr.title)}</a>` : ''}
        ${viewersBadge(t.viewers)}
        <span class="spacer"></span>
        ${prActions}
        ${winding ? '' : '<button class="btn" data-action="push">Push</button>'}
        ${t.status === 'archived' ? '<button class="btn" data-action="unarchive">Unarchive</button>' : ''}
        ${winding ? '' : '<button class="btn danger-ghost" data-action="archive">Archive</button>'}
        ${t.status === 'killed' || t.status.startsWith('kill') ? '' : '<button class="btn danger-ghost" data-action="kill">Kill</button>'}
      </div>`;
  }
  const tabs = $('#tabs');
  const current = currentSessionId();
  const open = t.sessions.filter((s) => s.status !== 'closed');
  tabs.innerHTML =
    open
      .map((s) => `<button role="tab" class="tab" aria-selected="${s.sessionId === current}" data-action="tab" data-session="${esc(s.sessionId)}"><span class="st st-${taskStatus(s.status === 'ready' ? 'idle' : s.status)[0]}"></span>${esc(s.name || s.sessionId)}</button>`)
      .join('') + (winding ? '' : '<button class="tab add" data-action="new-session" aria-label="New session">+</button>');
  renderInspector();
}

/** A member's name as the organization lists it (their login), else their user id. */
function memberName(userId) {
  const m = S.org && S.org.members.find((x) => x.userId === userId);
  return m ? m.login : userId;
}

/**
 * Who else has the task open (the server's presence: one entry per user, with their connections).
 * @param {TaskViewer[] | undefined} viewers
 */
function viewersBadge(viewers) {
  const me = S.me && S.me.user.id;
  const others = (viewers || []).filter((v) => v.userId !== me);
  if (!others.length) return '';
  const names = others.map((v) => memberName(v.userId) + (v.connections > 1 ? ` (${v.connections} tabs)` : ''));
  return `<span class="viewers small" id="task-viewers" title="Has this task open now">Also here: ${esc(names.join(', '))}</span>`;
}

/**
 * A git operation someone else did on the open task, told once (the task's `gitOperation` event).
 * @param {GitOperationEvent} e
 */
function gitOperationNotice(e) {
  if (S.me && e.userId === S.me.user.id) return; // the one who did it already heard
  const who = e.userId ? memberName(e.userId) : 'foundry';
  const what = {
    'task.pushed': 'pushed the branch',
    'task.merged': 'merged the pull request',
    'task.file.reverted': `reverted ${(e.payload && e.payload.path) || 'a file'}`,
    'task.workspace.provisioned': 'provisioned the workspace again',
  }[e.kind] || e.kind;
  toast(`${who} ${what}`, 'info');
}

function renderInspector() {
  const el = $('#inspector');
  const t = S.task;
  if (!el || !t) return;
  const w = t.workspace;
  if (!w) {
    el.innerHTML = `<h2>Workspace</h2><p class="muted">No workspace: this server runs agents without a checkout, so there are no files to show.</p>`;
    return;
  }
  const g = w.git;
  const wcls = w.status === 'ready' ? 'ok' : w.status === 'error' ? 'bad' : w.status === 'provisioning' ? 'busy' : 'idle';
  const files = g && g.files.length
    ? `<ul class="files">${g.files
        .map((f) => `<li class="file-row"><button class="file" data-action="diff" data-path="${esc(f.path)}"><span class="fs fs-${esc(f.status)}" title="${esc(f.status)}">${esc(f.status.slice(0, 1).toUpperCase())}</span><span class="path">${esc(f.path)}</span>${f.added == null ? '<span class="muted small">binary</span>' : `<span class="plus">+${f.added}</span><span class="minus">−${f.removed}</span>`}</button><button class="btn ghost small revert" data-action="revert" data-path="${esc(f.path)}" aria-label="Revert ${esc(f.path)}">Revert</button></li>`)
        .join('')}</ul>`
    : '<p class="muted small">No changes yet.</p>';
  el.innerHTML = `
    <h2>Workspace</h2>
    <p><span class="badge badge-${wcls}">${esc(w.status)}</span> ${w.message ? `<span class="muted small">${esc(w.message)}</span>` : ''}${w.status === 'error' ? ' <button class="btn small" data-action="provision">Retry</button>' : ''}</p>
    ${g ? `<p class="small muted">${esc(g.ahead)} ahead · ${esc(g.behind)} behind <code>${esc(g.base)}</code>${g.unpushed ? ` · ${esc(g.unpushed)} unpushed` : ''}${g.dirty ? ' · uncommitted changes' : ''}</p>` : ''}
    <h3>Changed files</h3>
    ${files}`;
}

// --- sandbox processes ------------------------------------------------------------------------------------------

function renderProcesses() {
  const el = $('#processes');
  const t = S.task;
  if (!el || !t) return;
  if (!el.dataset.ready) {
    el.dataset.ready = '1';
    el.innerHTML = `
      <h2>Processes</h2>
      <form data-form="run-process" class="form run-process">
        <label><span class="sr-only">Command</span><input name="commandLine" required placeholder="npm test" autocomplete="off" spellcheck="false"></label>
        <button class="btn small" type="submit">Run</button>
        <p class="form-error" role="alert"></p>
      </form>
      <ul id="process-list" class="processes-list"></ul>`;
  }
  const list = $('#process-list', el);
  const rows = [...S.processes].reverse();
  const html = rows.length
    ? rows
        .map((p) => {
          const cls = p.status === 'running' ? 'busy' : p.exitCode === 0 ? 'ok' : p.status === 'missing' || p.exitCode ? 'bad' : 'idle';
          const label = p.status === 'running' ? 'running' : p.status === 'missing' ? 'gone' : `exit ${p.exitCode ?? '?'}`;
          const cmd = [p.command, ...(p.args || [])].join(' ');
          const buttons = p.status === 'running'
            ? `<button class="btn ghost small" data-action="process-stop" data-id="${esc(p.id)}">Stop</button><button class="btn ghost small" data-action="process-kill" data-id="${esc(p.id)}">Kill</button>`
            : `<button class="btn ghost small" data-action="process-remove" data-id="${esc(p.id)}">Remove</button>`;
          return `<li class="process" data-id="${esc(p.id)}"><button class="file" data-action="process-logs" data-id="${esc(p.id)}" title="Show the output"><span class="badge badge-${cls}">${esc(label)}</span><code class="path">${esc(cmd)}</code></button>${buttons}</li>`;
        })
        .join('')
    : '<li class="muted small">Run a command in the task\'s sandbox: its output stays here.</li>';
  if (list.dataset.html !== html) {
    list.innerHTML = html;
    list.dataset.html = html;
  }
  if (S.logsOf) refreshLogs();
}

// A command line split into words; quotes group words ('a b' or "a b"), as a shell would without expansion.
function splitCommand(line) {
  const words = [];
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g;
  let m;
  while ((m = re.exec(line))) words.push(m[1] ?? m[2] ?? m[3]);
  return words;
}

async function refreshLogs() {
  const id = S.logsOf;
  const pre = $('#process-log');
  if (!id || !pre) {
    S.logsOf = null;
    return;
  }
  /** @type {ProcessLogs | { error: ApiError }} */
  const res = await api('GET', `${taskBase()}/processes/${enc(id)}/logs`).catch((e) => ({ error: e }));
  if (S.logsOf !== id || !pre.isConnected) return;
  if ('error' in res) {
    pre.textContent = res.error.message;
    return;
  }
  const text = res.entries
    .map((e) => (e.encoding === 'base64' ? atob(e.data) : e.data))
    .join('');
  const atEnd = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 40;
  pre.textContent = text || '(no output yet)';
  if (atEnd) pre.scrollTop = pre.scrollHeight;
}

const MODES = ['default', 'plan', 'accept-edits', 'full-access'];
const LEVELS = ['low', 'medium', 'high'];

function options(list, cur) {
  const all = list.some((o) => o.id === cur) ? list : [...list, { id: cur, label: cur }];
  return all.map((o) => `<option value="${esc(o.id)}"${o.id === cur ? ' selected' : ''}>${esc(o.label)}</option>`).join('');
}

function renderSessionBar() {
  const bar = $('#session-bar');
  if (!bar) return;
  const s = S.session;
  if (!s) {
    bar.innerHTML = '';
    bar.dataset.html = '';
    return;
  }
  const plain = (list) => list.map((v) => ({ id: v, label: v }));
  const html = `
    <label><span class="sr-only">Model</span><select id="session-model" data-change="session-model" title="Model">${options(S.models.map((m) => ({ id: m.id, label: m.label })), s.model)}</select></label>
    <label><span class="sr-only">Mode</span><select id="session-mode" data-change="session-mode" title="Mode">${options(plain(MODES), s.mode)}</select></label>
    <label><span class="sr-only">Thought level</span><select id="session-level" data-change="session-level" title="Thought level">${options(plain(LEVELS), s.thoughtLevel)}</select></label>
    <span class="spacer"></span>
    <button class="btn ghost small" data-action="rename-session" id="rename-session">Rename tab</button>
    <button class="btn ghost small" data-action="close-session" id="close-session">Close tab</button>`;
  if (bar.dataset.html === html) return;
  bar.innerHTML = html;
  bar.dataset.html = html;
}

async function changeRole(select) {
  const user = select.dataset.user;
  try {
    await api('PUT', `/v1/orgs/${enc(S.route.org)}/members/${enc(user)}`, { role: select.value });
    toast('Role changed', 'info');
  } catch (e) {
    fail(e);
    select.value = select.dataset.role; // unchanged on the server
  }
}

async function changeSession(field, value) {
  const s = S.session;
  if (!s) return;
  /** @type {import('./api').UpdateSessionBody} */
  const body = { model: s.model };
  if (field === 'model') body.model = value;
  else body[field] = value;
  try {
    /** @type {SessionDetail} */
    const detail = await api('PATCH', sessionBase(), body);
    if (S.session && detail && detail.sessionId === S.session.sessionId) {
      S.session = detail;
      invalidate('session');
    }
  } catch (e) {
    fail(e);
    const bar = $('#session-bar');
    if (bar) bar.dataset.html = ''; // put the select back to the session's value
    renderSessionBar();
  }
}

// --- markdown ---------------------------------------------------------------------------------------------------
// Agent replies are Markdown. A small renderer over escaped text: fenced code, headings, lists, quotes, paragraphs,
// inline code, bold, italics and http(s) links. Nothing the agent writes becomes markup of its own.

function mdInline(text) {
  return text
    .split(/(`[^`\n]+`)/)
    .map((part, i) => {
      if (i % 2) return `<code>${esc(part.slice(1, -1))}</code>`;
      return esc(part)
        .replace(/\[([^\]\n]+)\]\((https?:\/\/[^\s)]+)\)/g, '<a href="$2" target="_blank" rel="noopener noreferrer">$1</a>')
        .replace(/\*\*([^*\n]+)\*\*/g, '<strong>$1</strong>')
        .replace(/(^|[\s(])\*([^*\s][^*\n]*?)\*(?=[\s).,;:!?]|$)/g, '$1<em>$2</em>')
        .replace(/(^|[\s(])_([^_\s][^_\n]*?)_(?=[\s).,;:!?]|$)/g, '$1<em>$2</em>');
    })
    .join('');
}

function mdBlocks(text) {
  const out = [];
  let para = [];
  let list = null; // { tag, items }
  const flushPara = () => {
    if (para.length) out.push(`<p>${para.map(mdInline).join('<br>')}</p>`);
    para = [];
  };
  const flushList = () => {
    if (list) out.push(`<${list.tag}>${list.items.map((it) => `<li>${mdInline(it)}</li>`).join('')}</${list.tag}>`);
    list = null;
  };
  for (const line of text.split('\n')) {
    const h = /^(#{1,4})\s+(.*)$/.exec(line);
    const ul = /^\s*[-*+]\s+(.*)$/.exec(line);
    const ol = /^\s*\d+[.)]\s+(.*)$/.exec(line);
    const q = /^>\s?(.*)$/.exec(line);
    if (!line.trim()) {
      flushPara();
      flushList();
    } else if (h) {
      flushPara();
      flushList();
      const n = Math.min(6, h[1].length + 2); // inside a message, headings stay below the page's own
      out.push(`<h${n}>${mdInline(h[2])}</h${n}>`);
    } else if (ul || ol) {
      flushPara();
      const tag = ul ? 'ul' : 'ol';
      if (list && list.tag !== tag) flushList();
      if (!list) list = { tag, items: [] };
      list.items.push((ul || ol)[1]);
    } else if (q) {
      flushPara();
      flushList();
      out.push(`<blockquote>${mdInline(q[1])}</blockquote>`);
    } else {
      flushList();
      para.push(line);
    }
  }
  flushPara();
  flushList();
  return out.join('');
}

function markdown(text) {
  const parts = String(text ?? '').split(/^```[^\n]*\n?/m);
  // Even parts are prose, odd parts code (an unterminated fence, as while streaming, runs to the end).
  return parts.map((part, i) => (i % 2 ? `<pre class="code"><code>${esc(part.replace(/\n$/, ''))}</code></pre>` : mdBlocks(part))).join('');
}

function renderItem(item, members) {
  const who = item.userId ? (S.me && item.userId === S.me.user.id ? 'You' : members.get(item.userId) || item.userId) : 'You';
  if (item.kind === 'message') {
    const agent = item.role === 'agent';
    const body = agent ? `<div class="msg-md">${markdown(item.text)}</div>` : `<div class="msg-text">${esc(item.text)}</div>`;
    return `<div class="msg ${agent ? 'msg-agent' : 'msg-user'}" data-seq="${item.seq}"><div class="msg-who">${agent ? 'Agent' : esc(who)}</div>${body}</div>`;
  }
  if (item.kind === 'tool_call' || item.kind === 'file_change') {
    let detail = '';
    if (item.payload) {
      let text = item.payload;
      try {
        text = JSON.stringify(JSON.parse(item.payload), null, 2);
      } catch {
        /* shown as sent */
      }
      detail = `<details><summary>${item.kind === 'tool_call' ? 'Tool call' : 'File change'}: <code>${esc(item.text)}</code></summary><pre>${esc(text)}</pre></details>`;
    } else {
      detail = `<span>${item.kind === 'tool_call' ? 'Tool call' : 'File change'}: <code>${esc(item.text)}</code></span>`;
    }
    return `<div class="event event-${item.kind === 'tool_call' ? 'tool' : 'file'}" data-seq="${item.seq}">${detail}</div>`;
  }
  const bad = /fail|error/i.test(item.text);
  return `<div class="note${bad ? ' note-bad' : ''}" data-seq="${item.seq}">${esc(item.text)}</div>`;
}

function renderTranscript() {
  const el = $('#transcript');
  if (!el) return;
  const s = S.session;
  const interrupt = $('#interrupt');
  const status = $('#turn-status');
  if (!s) {
    el.innerHTML = '<p class="muted center">Loading conversation…</p>';
    el.dataset.sid = '';
    return;
  }
  const nearBottom = el.scrollHeight - el.scrollTop - el.clientHeight < 120;
  const members = new Map((S.org ? S.org.members : []).map((m) => [m.userId, m.login]));
  const sid = `${s.repoId}/${s.taskId}/${s.sessionId}`;
  let list = el.querySelector('.items');
  const items = s.transcript;
  const lastSeq = list ? Number(list.dataset.last) : -1;
  const newest = items.length ? items[items.length - 1].seq : -1;
  if (!list || el.dataset.sid !== sid || newest < lastSeq) {
    el.dataset.sid = sid;
    el.innerHTML = `<div class="items">${items.map((i) => renderItem(i, members)).join('')}</div><div class="msg msg-agent partial" hidden><div class="msg-who">Agent <span class="typing">typing</span></div><div class="msg-text"></div></div>`;
    list = el.querySelector('.items');
  } else if (newest > lastSeq) {
    // Snapshots are complete, but the transcript only grows: append the new items instead of rebuilding.
    list.insertAdjacentHTML('beforeend', items.filter((i) => i.seq > lastSeq).map((i) => renderItem(i, members)).join(''));
  }
  list.dataset.last = String(newest);
  // The task view is usable once its conversation is on screen (read by benches/web_app.rs): once per page load.
  if (!performance.getEntriesByName('foundry:task-interactive').length) performance.mark('foundry:task-interactive');
  const partial = el.querySelector('.partial');
  partial.hidden = !s.partialText;
  $('.msg-text', partial).textContent = s.partialText || '';
  if (!items.length && !s.partialText && !el.querySelector('.empty-conv')) list.innerHTML = '<p class="muted center empty-conv">No messages yet.</p>';
  if (nearBottom) el.scrollTop = el.scrollHeight;
  const running = s.status === 'running';
  if (interrupt) interrupt.hidden = !running;
  for (const id of ['#steer', '#stop']) {
    const b = $(id);
    if (b) b.hidden = !running;
  }
  renderSessionBar();
  if (status) {
    const queued = s.queued ? ` · ${s.queued} queued` : '';
    status.textContent = running ? `Agent is working…${queued}` : s.status === 'error' ? 'The last turn failed.' : `${s.model}${queued}`;
  }
}

// --- sign-in ----------------------------------------------------------------------------------------------------

function renderSignIn(message) {
  const app = $('#app');
  app.className = 'signin';
  app.removeAttribute('aria-busy');
  app.innerHTML = `
    <main class="signin-card card">
      <div class="signin-brand"><img src="/icon.svg" alt="" width="36" height="36"><span>Foundry</span></div>
      <h1>Sign in</h1>
      <p class="muted">Run coding agents on your team's repositories.</p>
      ${message ? `<p class="notice" role="status">${esc(message)}</p>` : ''}
      <a id="github-sign-in" class="btn block" href="/v1/auth/github/start?redirect=/" hidden>Continue with GitHub</a>
      <form data-form="signin" class="form">
        <label>Login<input name="login" required autocomplete="username" autofocus placeholder="your-login"></label>
        <label><span>Name <span class="hint">optional</span></span><input name="name" autocomplete="name"></label>
        <p class="form-error" role="alert"></p>
        <button class="btn primary block" type="submit">Sign in</button>
        <p class="hint center">Development sign-in: available when the server listens on this machine only.</p>
      </form>
    </main>`;
  // Offer GitHub only when the server has it configured (it redirects instead of answering 404).
  fetch('/v1/auth/github/start?redirect=/', { redirect: 'manual', credentials: 'same-origin' })
    .then((res) => {
      if (res.type === 'opaqueredirect') $('#github-sign-in').hidden = false;
    })
    .catch(() => {});
}

function signedOut(message) {
  if (S.phase === 'signin') return;
  S.phase = 'signin';
  disconnect();
  Object.assign(S, { me: null, org: null, orgError: null, task: null, session: null, route: { name: 'home' } });
  history.replaceState(null, '', '/sign-in');
  renderSignIn(message);
}

async function enterApp() {
  S.phase = 'app';
  try {
    /** @type {[AppSnapshot, CatalogModel[]]} */
    const [me, models] = await Promise.all([api('GET', '/v1/me'), api('GET', '/v1/models')]);
    S.me = me;
    S.models = models;
  } catch (e) {
    if (S.phase === 'app') fail(e);
    return;
  }
  renderShell();
  connect();
  onRoute();
  // Server admins (serve --server-admin) get the runtime inspector's link; anyone else is refused with 403.
  api('GET', '/v1/admin/runtime').then(
    () => {
      S.serverAdmin = true;
      invalidate('top');
    },
    () => {},
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Interactions, all delegated from the document.

function formError(form, e) {
  const p = $('.form-error', form);
  if (p) p.textContent = e ? (e instanceof ApiError ? e.message : String(e.message || e)) : '';
  else if (e) fail(e);
}

function taskBase() {
  const r = S.route;
  return `/v1/orgs/${enc(r.org)}/repos/${enc(r.repo)}/tasks/${enc(r.task)}`;
}

function sessionBase() {
  return `${taskBase()}/sessions/${enc(currentSessionId())}`;
}

const forms = {
  async signin(form, data) {
    /** @type {import('./api').DevSignIn} */
    const body = { login: data.login.trim() };
    if (data.name.trim()) body.name = data.name.trim();
    await api('POST', '/v1/auth/dev/sign-in', body);
    const next = location.pathname === '/sign-in' ? '/' : location.pathname;
    history.replaceState(null, '', next);
    await enterApp();
  },
  async 'create-org'(form, data) {
    const id = data.id.trim();
    /** @type {import('./api').CreateOrgBody} */
    const body = { id, displayName: data.displayName.trim() };
    await create('/v1/orgs', body);
    go(orgPath(id));
  },
  async 'add-repo'(form, data) {
    /** @type {import('./api').AddRepoBody} */
    const body = { repoId: data.repoId.trim(), fullName: data.fullName.trim(), remoteUrl: data.remoteUrl.trim() };
    if (data.defaultBranch.trim()) body.defaultBranch = data.defaultBranch.trim();
    await create(`/v1/orgs/${enc(S.route.org)}/repos`, body);
    form.reset();
    toast(`Added ${body.fullName}`, 'info');
  },
  async connect(form, data) {
    /** @type {import('./api').ConnectBody} */
    const body = { login: data.login.trim(), kind: data.kind };
    await api('POST', `/v1/orgs/${enc(S.route.org)}/github/connect`, body);
    toast('Connected; syncing repositories…', 'info');
  },
  async invite(form, data) {
    const login = data.login.trim();
    /** @type {import('./api').InviteBody} */
    const body = { login, role: data.role };
    await create(`/v1/orgs/${enc(S.route.org)}/members`, body);
    form.reset();
    toast(`Added ${login}`, 'info');
  },
  async profile(form, data) {
    /** @type {import('./api').ProfileBody} */
    const body = { name: data.name.trim() };
    body.avatarUrl = data.avatarUrl.trim(); // empty: no picture
    S.me = await api('PATCH', '/v1/me', body);
    invalidate('top', 'settings');
    toast('Profile saved', 'info');
  },
  async 'default-model'(form, data) {
    /** @type {import('./api').ModelBody} */
    const body = { model: data.model };
    S.me = await api('PUT', '/v1/me/default-model', body);
    invalidate('top', 'settings');
    toast('Default model saved', 'info');
  },
  async 'new-task'(form, data) {
    if (!data.repo) throw new Error('Choose a repository first.');
    /** @type {CreateTaskBody} */
    const body = { prompt: data.prompt };
    if (data.model) body.model = data.model;
    if (data.title.trim()) body.title = data.title.trim();
    if (data.branch.trim()) body.branch = data.branch.trim();
    /** @type {TaskCreated} */
    const created = await create(`/v1/orgs/${enc(S.route.org)}/repos/${enc(data.repo)}/tasks`, body);
    go(taskPath(S.route.org, created.repoId, created.taskId));
  },
  async send(form, data) {
    const text = data.text.trim();
    if (!text || !currentSessionId()) return;
    const box = $('#composer');
    box.value = '';
    try {
      /** @type {import('./api').TextBody} */
      const body = { text };
      await create(`${sessionBase()}/messages`, body);
    } catch (e) {
      box.value = text; // nothing was sent: keep what was typed
      throw e;
    }
    saveDraftNow(); // the draft is now empty
  },
  async 'run-process'(form, data) {
    const [command, ...args] = splitCommand(data.commandLine);
    if (!command) throw new Error('Type a command to run.');
    /** @type {ProcessSpec} */
    const body = { command, args };
    const w = S.task && S.task.workspace;
    if (w && w.status === 'ready' && w.cwd) body.cwd = w.cwd; // in the task's checkout
    await create(`${taskBase()}/processes`, body);
    form.reset();
  },
  async 'rename-session'(form, data) {
    const name = data.name.trim();
    /** @type {SessionDetail} */
    const detail = await api('PATCH', sessionBase(), { name });
    $('#dialog').close();
    if (S.session && detail && detail.sessionId === S.session.sessionId) S.session = detail;
    invalidate('task', 'session');
  },
  async rename(form, data) {
    const title = data.title.trim();
    S.task = await api('PATCH', taskBase(), { title });
    S.renaming = false;
    renderTaskLive();
  },
};

const actions = {
  async 'sign-out'() {
    try {
      await api('POST', '/v1/auth/sign-out');
    } finally {
      signedOut('You signed out.');
    }
  },
  'remove-member'(el) {
    const user = el.dataset.user;
    confirmDialog(`Remove ${el.dataset.name}?`, 'They lose access to this organization and its tasks at once.', 'Remove member', async () => {
      await api('DELETE', `/v1/orgs/${enc(S.route.org)}/members/${enc(user)}`);
      toast(`Removed ${el.dataset.name}`, 'info');
    });
  },
  'leave-org'() {
    const org = S.route.org;
    confirmDialog('Leave this organization?', 'You lose access to its repositories and tasks until an admin adds you again.', 'Leave', async () => {
      await api('DELETE', `/v1/orgs/${enc(org)}/members/${enc(S.me.user.id)}`);
      go('/orgs');
      toast(`You left ${org}`, 'info');
    });
  },
  'admin-op'(el) {
    const op = el.dataset.op;
    const org = S.route.org;
    const texts = {
      'full-sync': ['Run a full sync?', 'Everything is fetched from GitHub again; the repositories and pull requests are replaced by what GitHub reports.', 'Full sync'],
      'clear-github': ['Clear the GitHub data?', 'The mirrored repositories, members and pull requests of GitHub are forgotten until the next sync. Tasks stay.', 'Clear'],
      rebuild: ['Rebuild the task index?', 'The task summaries are recomputed from each task. The sidebar shows the result.', 'Rebuild'],
    };
    const [title, text, confirm] = texts[op];
    confirmDialog(title, text, confirm, async () => {
      await api('POST', `/v1/orgs/${enc(org)}/admin/${op}`);
      toast(`${confirm}: done`, 'info');
    });
  },
  async 'revoke-session'(el) {
    await api('DELETE', `/v1/auth/sessions/${enc(el.dataset.session)}`);
    await loadAuthSessions();
  },
  async 'revoke-sessions'() {
    /** @type {Revoked} */
    const res = await api('DELETE', '/v1/auth/sessions');
    signedOut(`Signed out everywhere (${res.revoked} ${res.revoked === 1 ? 'session' : 'sessions'}).`);
  },
  async sync() {
    await api('POST', `/v1/orgs/${enc(S.route.org)}/github/sync`);
    toast('Sync started', 'info');
  },
  rename() {
    S.renaming = true;
    const head = $('#task-head .title-row');
    head.innerHTML = `<form data-form="rename" class="rename"><label class="sr-only" for="rename-input">Task title</label><input id="rename-input" name="title" value="${esc(S.task.title)}" required maxlength="200"><button class="btn primary small" type="submit">Save</button><button class="btn ghost small" type="button" data-action="cancel-rename">Cancel</button><p class="form-error" role="alert"></p></form>`;
    const input = $('#rename-input');
    input.focus();
    input.select();
  },
  'cancel-rename'() {
    S.renaming = false;
    renderTaskLive();
  },
  async tab(el) {
    saveDraftNow();
    S.sessionPick = el.dataset.session;
    S.session = null;
    syncSubs();
    renderTaskLive();
    renderTranscript();
    restoreDraft();
    await api('PUT', `${taskBase()}/active-session`, { sessionId: S.sessionPick });
  },
  async 'new-session'() {
    saveDraftNow();
    /** @type {SessionDetail} */
    const created = await create(`${taskBase()}/sessions`, {});
    S.sessionPick = created.sessionId;
    S.session = null;
    syncSubs();
    renderTranscript();
    restoreDraft();
  },
  async interrupt() {
    await api('POST', `${sessionBase()}/interrupt`, {});
  },
  async steer() {
    const box = $('#composer');
    const guidance = box.value.trim();
    if (!guidance) throw new Error('Type the guidance for the running turn in the message box, then press Steer.');
    await api('POST', `${sessionBase()}/steer`, { guidance });
    box.value = '';
    saveDraftNow();
    toast('Guidance sent to the running turn', 'info');
  },
  async stop() {
    await api('POST', `${sessionBase()}/stop`);
  },
  'rename-session'() {
    const s = S.session;
    const cur = s ? s.name : '';
    const d = $('#dialog');
    d.className = 'dialog';
    d.innerHTML = `<form data-form="rename-session" class="form"><h2>Rename this tab</h2><label>Name<input id="session-name" name="name" value="${esc(cur)}" required maxlength="200"></label><p class="form-error" role="alert"></p><div class="actions"><button class="btn ghost" type="button" data-action="close-dialog">Cancel</button><button class="btn primary" type="submit">Save</button></div></form>`;
    d.showModal();
    const input = $('#session-name', d);
    input.focus();
    input.select();
  },
  'close-session'() {
    const id = currentSessionId();
    confirmDialog('Close this tab?', 'Its agent stops; the conversation is no longer shown here.', 'Close tab', async () => {
      await api('DELETE', `${taskBase()}/sessions/${enc(id)}`);
      S.sessionPick = null;
      S.session = null;
      syncSubs();
      invalidate('task', 'session');
    });
  },
  async push() {
    await api('POST', `${taskBase()}/push`);
    toast('Pushed', 'info');
  },
  async unarchive() {
    await api('POST', `${taskBase()}/unarchive`);
    toast('Task unarchived', 'info');
  },
  kill() {
    confirmDialog('Kill this task?', 'Running turns are cancelled and the workspace is destroyed at once. Work that was not pushed is lost.', 'Kill task', async () => {
      await api('POST', `${taskBase()}/kill`);
      toast('Task killed', 'info');
    });
  },
  revert(el) {
    const path = el.dataset.path;
    confirmDialog(`Revert ${path}?`, 'The file is restored as on the base branch (removed if the base has none), and that is committed.', 'Revert file', async () => {
      await api('POST', `${taskBase()}/revert`, { path });
      toast(`Reverted ${path}`, 'info');
    });
  },
  async provision() {
    await api('POST', `${taskBase()}/provision`);
    toast('Provisioning the workspace again…', 'info');
  },
  async 'audit-more'() {
    await loadAudit(S.route.org, false);
  },
  async 'publish-pr'() {
    await create(`${taskBase()}/pull-request`);
    toast('Pull request created', 'info');
  },
  async merge() {
    await api('POST', `${taskBase()}/merge`);
    toast('Merged', 'info');
  },
  archive() {
    confirmDialog(
      'Archive this task?',
      'The agent stops, the branch is pushed and the workspace is released. You can find the task again with “Show archived”.',
      'Archive task',
      async () => {
        await api('POST', `${taskBase()}/archive`, {});
        toast('Task archived', 'info');
      },
    );
  },
  async diff(el) {
    const path = el.dataset.path;
    /** @type {string} */
    const text = await api('GET', `${taskBase()}/diff?path=${enc(path)}`);
    const lines = String(text || '')
      .split('\n')
      .map((l) => {
        const c = l.startsWith('+++') || l.startsWith('---') ? 'meta' : l.startsWith('+') ? 'add' : l.startsWith('-') ? 'del' : l.startsWith('@@') ? 'hunk' : '';
        return `<span class="dl ${c}">${esc(l) || ' '}</span>`;
      })
      .join('');
    const d = $('#dialog');
    d.className = 'dialog wide';
    d.innerHTML = `<header class="dialog-head"><h2><code>${esc(path)}</code></h2><button class="btn ghost small" data-action="close-dialog" aria-label="Close">Close</button></header><pre class="diff">${lines || '<span class="muted">No changes.</span>'}</pre>`;
    d.showModal();
  },
  reload() {
    location.reload();
  },
  'close-dialog'() {
    $('#dialog').close();
  },
  'process-logs'(el) {
    const id = el.dataset.id;
    const p = S.processes.find((x) => x.id === id);
    const d = $('#dialog');
    d.className = 'dialog wide';
    d.innerHTML = `<header class="dialog-head"><h2><code>${esc(p ? [p.command, ...(p.args || [])].join(' ') : id)}</code></h2><button class="btn ghost small" data-action="close-dialog" aria-label="Close">Close</button></header><pre class="diff log" id="process-log">Loading…</pre>`;
    S.logsOf = id;
    // Output is not pushed: poll it while the dialog is open and the process runs.
    const timer = setInterval(() => {
      const cur = S.processes.find((x) => x.id === id);
      if (cur && cur.status === 'running') refreshLogs();
    }, 1000);
    d.addEventListener('close', () => {
      S.logsOf = null;
      clearInterval(timer);
    }, { once: true });
    d.showModal();
    refreshLogs();
  },
  async 'process-stop'(el) {
    await api('POST', `${taskBase()}/processes/${enc(el.dataset.id)}/stop`);
  },
  async 'process-kill'(el) {
    await api('POST', `${taskBase()}/processes/${enc(el.dataset.id)}/kill`);
  },
  async 'process-remove'(el) {
    await api('DELETE', `${taskBase()}/processes/${enc(el.dataset.id)}`);
  },
};

function confirmDialog(title, text, confirm, run) {
  const d = $('#dialog');
  d.className = 'dialog';
  d.innerHTML = `<form method="dialog" class="confirm"><h2>${esc(title)}</h2><p>${esc(text)}</p><p class="form-error" role="alert"></p><div class="actions"><button class="btn ghost" value="cancel" formnovalidate>Cancel</button><button class="btn danger" value="ok" id="confirm-ok">${esc(confirm)}</button></div></form>`;
  $('#confirm-ok', d).addEventListener('click', async (e) => {
    e.preventDefault();
    try {
      await run();
      d.close();
    } catch (err) {
      formError($('form', d), err);
    }
  });
  d.showModal();
  $('#confirm-ok', d).focus();
}

// Delegated listeners: an event's target is whichever element it came from (a button, an input, a form ...).
document.addEventListener('click', async (/** @type {MouseEvent & { target: any }} */ e) => {
  const closer = e.target.closest('.toast-close');
  if (closer) {
    closer.parentElement.remove();
    return;
  }
  const actionEl = e.target.closest('[data-action]');
  if (actionEl && actions[actionEl.dataset.action]) {
    e.preventDefault();
    if (actionEl.disabled) return;
    actionEl.disabled = true;
    try {
      await actions[actionEl.dataset.action](actionEl);
    } catch (err) {
      fail(err);
    } finally {
      actionEl.disabled = false;
    }
    return;
  }
  const a = e.target.closest('a[href]');
  if (!a || a.target === '_blank' || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith('/v1/')) return;
  e.preventDefault();
  if (a.classList.contains('disabled')) return;
  go(url.pathname + url.search);
});

document.addEventListener('submit', async (/** @type {SubmitEvent & { target: any }} */ e) => {
  const form = e.target;
  const handler = forms[form.dataset.form];
  if (!handler) return;
  e.preventDefault();
  const button = form.querySelector('[type=submit]');
  if (button && button.disabled) return;
  if (button) button.disabled = true;
  formError(form, null);
  try {
    await handler(form, Object.fromEntries(new FormData(form)));
  } catch (err) {
    if (form.isConnected) formError(form, err);
    else fail(err);
  } finally {
    if (button) button.disabled = false;
  }
});

document.addEventListener('change', (/** @type {Event & { target: any }} */ e) => {
  const kind = e.target.dataset && e.target.dataset.change;
  if (kind === 'org') go(e.target.value ? orgPath(e.target.value) : '/orgs');
  if (e.target.id === 'nt-repo') schedulePreview(e.target.form);
  if (kind === 'member-role') changeRole(e.target);
  if (kind === 'session-model') changeSession('model', e.target.value);
  if (kind === 'session-mode') changeSession('mode', e.target.value);
  if (kind === 'session-level') changeSession('thoughtLevel', e.target.value);
  if (kind === 'archived') {
    S.showArchived = e.target.checked;
    invalidate('sidebar');
  }
});

document.addEventListener('input', (/** @type {InputEvent & { target: any }} */ e) => {
  if (e.target.id === 'composer') {
    scheduleDraft();
    return;
  }
  const form = e.target.form;
  if (form && form.dataset.form === 'new-task') {
    schedulePreview(form);
    return;
  }
  // The organization id follows its name until the user edits the id.
  if (!form || form.dataset.form !== 'create-org') return;
  if (e.target.name === 'id') form.id.dataset.edited = '1';
  if (e.target.name === 'displayName' && !form.id.dataset.edited) {
    form.id.value = e.target.value.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 64);
  }
});

document.addEventListener('keydown', (/** @type {KeyboardEvent & { target: any }} */ e) => {
  if (e.key === 'Enter' && (e.ctrlKey || e.metaKey) && e.target.tagName === 'TEXTAREA' && e.target.form) {
    e.preventDefault();
    e.target.form.requestSubmit();
    return;
  }
  if (e.key === 'Escape' && S.renaming && e.target.id === 'rename-input') {
    actions['cancel-rename']();
    return;
  }
  // Sidebar: arrows move between tasks (Enter opens, as on any link); Home/End jump to the ends.
  const row = e.target.closest && e.target.closest('.task-row');
  if (!row || !['ArrowDown', 'ArrowUp', 'Home', 'End'].includes(e.key)) return;
  e.preventDefault();
  const rows = /** @type {HTMLElement[]} */ ([...document.querySelectorAll('#task-list .task-row')]);
  const i = rows.indexOf(row);
  const j = e.key === 'Home' ? 0 : e.key === 'End' ? rows.length - 1 : Math.max(0, Math.min(rows.length - 1, i + (e.key === 'ArrowDown' ? 1 : -1)));
  row.tabIndex = -1;
  rows[j].tabIndex = 0;
  rows[j].focus();
});

// ---------------------------------------------------------------------------------------------------------------
// Boot

async function boot() {
  try {
    S.me = await api('GET', '/v1/me');
  } catch (e) {
    if (e.status === 401) {
      S.phase = 'signin';
      if (location.pathname !== '/sign-in') history.replaceState(null, '', '/sign-in');
      renderSignIn();
    } else {
      $('#app').innerHTML = `<div class="empty"><h1>Cannot load Foundry</h1><p>${esc(e.message)}</p><button class="btn" data-action="reload">Try again</button></div>`;
    }
    return;
  }
  await enterApp();
}

boot();
