// Foundry web app: one ES module, no framework and no build step (embedded into the server binary).
//
// Data flow: HTTP for actions, /v1/ws for state. The server sends full snapshots per topic, so the app keeps the
// latest snapshot of each subscribed topic and re-renders the regions that depend on it, at most once per frame.
// Lists are rendered as one HTML string per snapshot and every interaction goes through a few delegated listeners
// on the document, which keeps 1,000 sidebar rows cheap.

const $ = (sel, root = document) => root.querySelector(sel);
const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ESC[c]);
const enc = encodeURIComponent;

// ---------------------------------------------------------------------------------------------------------------
// State

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

async function api(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: {} };
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

function onRoute() {
  if (S.phase !== 'app') return;
  const prev = S.route;
  const r = parseRoute(location.pathname);
  if (r.name === 'signin') return go('/', true);
  if (r.name === 'home') {
    const orgs = S.me ? S.me.organizations : [];
    const last = localStorage.getItem('foundry.org');
    const target = orgs.includes(last) ? last : orgs[0];
    return go(target ? orgPath(target) : '/orgs', true);
  }
  S.route = r;
  if (r.org !== prev.org) {
    S.org = null;
    S.orgError = null;
  }
  if (r.org) localStorage.setItem('foundry.org', r.org);
  const sameTask = r.name === 'task' && prev.name === 'task' && r.org === prev.org && r.repo === prev.repo && r.task === prev.task;
  if (!sameTask) {
    S.task = null;
    S.session = null;
    S.sessionPick = null;
    S.renaming = false;
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
const active = new Map(); // subscription id -> frame sent

const subId = (s) => `${s.topic}|${s.key ? JSON.stringify(s.key) : ''}`;

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

function desiredSubs() {
  const subs = [{ topic: 'app' }];
  const r = S.route;
  if (r.org) subs.push({ topic: 'organization', key: { org: r.org } });
  if (r.name === 'task') {
    const key = { org: r.org, repo: r.repo, task: r.task };
    subs.push({ topic: 'task', key });
    const session = currentSessionId();
    if (session) subs.push({ topic: 'session', key: { ...key, session } });
  }
  return subs;
}

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
    }
  }
  for (const [id, s] of want) {
    if (!active.has(id)) {
      send({ type: 'subscribe', ...s });
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
    syncSubs();
    clearInterval(pingTimer);
    // Keeps idle connections visibly alive through proxies; the server also pings.
    pingTimer = setInterval(() => send({ type: 'ping' }), 20000);
    invalidate('top');
  };
  sock.onmessage = (e) => {
    let frame;
    try {
      frame = JSON.parse(e.data);
    } catch {
      return;
    }
    onFrame(frame);
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

function onFrame(f) {
  switch (f.type) {
    case 'appUpdated':
      S.me = f.snapshot;
      invalidate('top');
      if (S.route.name === 'orgs') invalidate('orgs');
      break;
    case 'organizationUpdated':
      if (f.key && f.key.org === S.route.org) {
        S.org = f.snapshot;
        S.orgError = null;
        invalidate('sidebar', 'org', 'top');
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
    case 'sessionUpdated':
      if (keyMatchesTask(f.key) && f.key.session === currentSessionId()) {
        S.session = f.snapshot;
        invalidate('session');
      }
      break;
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
  if (parts.has('task') && S.route.name === 'task') renderTaskLive();
  if ((parts.has('session') || parts.has('task')) && S.route.name === 'task') renderTranscript();
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

function renderShell() {
  $('#app').className = 'layout';
  $('#app').removeAttribute('aria-busy');
  $('#app').innerHTML = `
    <header class="topbar">
      <a class="brand" href="/"><img src="/icon.svg" alt="" width="22" height="22"><span>Foundry</span></a>
      <label class="org-switch"><span class="sr-only">Organization</span><select id="org-select" data-change="org"></select></label>
      <span class="spacer"></span>
      <span id="conn" class="conn" role="status"></span>
      <span id="user-name" class="user-name"></span>
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
  const orgs = me ? [...me.organizations] : [];
  const cur = S.route.org;
  if (cur && !orgs.includes(cur) && S.org) orgs.push(cur); // just created; the app snapshot catches up
  const select = $('#org-select');
  const html =
    orgs.map((o) => `<option value="${esc(o)}"${o === cur ? ' selected' : ''}>${esc(o === cur && S.org ? S.org.profile.displayName : o)}</option>`).join('') +
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
  const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.task : null;
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
}

// --- organizations -----------------------------------------------------------------------------------------------

function renderOrgs(main) {
  const orgs = S.me ? S.me.organizations : [];
  main.innerHTML = `
    <div class="page narrow">
      <h1>Organizations</h1>
      <p class="lead">Each organization holds repositories, the tasks your agents work on, and its members.</p>
      ${orgs.length ? `<ul class="org-list">${orgs.map((o) => `<li><a class="org-card" href="${orgPath(o)}"><span class="avatar">${esc(o.slice(0, 1).toUpperCase())}</span><span>${esc(o)}</span></a></li>`).join('')}</ul>` : '<p class="muted">You are not a member of any organization yet. Create one to start.</p>'}
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
            <p class="form-error" role="alert"></p>
            <div class="actions"><button class="btn" type="submit">Connect and sync</button><button class="btn ghost" type="button" data-action="sync">Sync now</button></div>
          </form>
        </section>
        <section class="card">
          <h2>Members</h2>
          <ul id="members" class="members"></ul>
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
  $('#members').innerHTML = o.members
    .map((m) => `<li><span class="avatar small">${esc((m.login || m.userId).slice(0, 1).toUpperCase())}</span><span class="grow">${esc(m.login || m.userId)}</span><span class="badge">${esc(m.role)}</span></li>`)
    .join('');
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
    const page = await api('GET', `/v1/orgs/${enc(org)}/audit?${q}`);
    if (S.route.name !== 'audit' || S.route.org !== org || !$('#audit-rows')) return;
    if (err) err.textContent = '';
    const members = new Map((S.org ? S.org.members : []).map((m) => [m.userId, m.login]));
    const events = page.events || [];
    $('#audit-rows').insertAdjacentHTML(
      'beforeend',
      events
        .map((ev) => {
          const repo = ev.repo_id ?? ev.repoId;
          const task = ev.task_id ?? ev.taskId;
          const user = ev.user_id ?? ev.userId;
          const where = repo && task ? `<a href="${taskPath(org, repo, task)}">${esc(repo)}/${esc(task)}</a>` : esc(repo || '');
          const payload = ev.payload && typeof ev.payload === 'object' && Object.keys(ev.payload).length ? JSON.stringify(ev.payload) : '';
          return `<tr class="audit-row" data-id="${esc(ev.id)}"><td title="${esc(new Date(ev.at).toISOString())}">${esc(new Date(ev.at).toLocaleString())}</td><td><code class="audit-kind">${esc(ev.kind)}</code></td><td>${esc(user ? members.get(user) || user : '—')}</td><td>${where}</td><td class="audit-payload"><code>${esc(payload.length > 200 ? `${payload.slice(0, 200)}…` : payload)}</code></td></tr>`;
        })
        .join(''),
    );
    S.auditBefore = page.next_before ?? page.nextBefore ?? null;
    $('#audit-more').hidden = S.auditBefore == null;
    $('#audit-empty').hidden = !!document.querySelector('#audit-rows tr');
  } catch (e) {
    if (err && err.isConnected) err.textContent = e.message;
    else fail(e);
  }
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
}

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
        <aside class="inspector" id="inspector" aria-label="Workspace"></aside>
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

async function changeSession(field, value) {
  const s = S.session;
  if (!s) return;
  const body = { model: s.model };
  if (field === 'model') body.model = value;
  else body[field] = value;
  try {
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

function renderItem(item, members) {
  const who = item.userId ? (S.me && item.userId === S.me.user.id ? 'You' : members.get(item.userId) || item.userId) : 'You';
  if (item.kind === 'message') {
    const agent = item.role === 'agent';
    return `<div class="msg ${agent ? 'msg-agent' : 'msg-user'}" data-seq="${item.seq}"><div class="msg-who">${agent ? 'Agent' : esc(who)}</div><div class="msg-text">${esc(item.text)}</div></div>`;
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
    const body = { login: data.login.trim() };
    if (data.name.trim()) body.name = data.name.trim();
    await api('POST', '/v1/auth/dev/sign-in', body);
    const next = location.pathname === '/sign-in' ? '/' : location.pathname;
    history.replaceState(null, '', next);
    await enterApp();
  },
  async 'create-org'(form, data) {
    const id = data.id.trim();
    await api('POST', '/v1/orgs', { id, displayName: data.displayName.trim() });
    go(orgPath(id));
  },
  async 'add-repo'(form, data) {
    const body = { repoId: data.repoId.trim(), fullName: data.fullName.trim(), remoteUrl: data.remoteUrl.trim() };
    if (data.defaultBranch.trim()) body.defaultBranch = data.defaultBranch.trim();
    await api('POST', `/v1/orgs/${enc(S.route.org)}/repos`, body);
    form.reset();
    toast(`Added ${body.fullName}`, 'info');
  },
  async connect(form, data) {
    await api('POST', `/v1/orgs/${enc(S.route.org)}/github/connect`, { login: data.login.trim(), kind: data.kind });
    toast('Connected; syncing repositories…', 'info');
  },
  async 'new-task'(form, data) {
    if (!data.repo) throw new Error('Choose a repository first.');
    const body = { prompt: data.prompt };
    if (data.model) body.model = data.model;
    if (data.title.trim()) body.title = data.title.trim();
    if (data.branch.trim()) body.branch = data.branch.trim();
    const created = await api('POST', `/v1/orgs/${enc(S.route.org)}/repos/${enc(data.repo)}/tasks`, body);
    go(taskPath(S.route.org, created.repoId, created.taskId));
  },
  async send(form, data) {
    const text = data.text.trim();
    if (!text || !currentSessionId()) return;
    const box = $('#composer');
    box.value = '';
    try {
      await api('POST', `${sessionBase()}/messages`, { text });
    } catch (e) {
      box.value = text; // nothing was sent: keep what was typed
      throw e;
    }
  },
  async 'rename-session'(form, data) {
    const name = data.name.trim();
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
    S.sessionPick = el.dataset.session;
    S.session = null;
    syncSubs();
    renderTaskLive();
    renderTranscript();
    await api('PUT', `${taskBase()}/active-session`, { sessionId: S.sessionPick });
  },
  async 'new-session'() {
    const created = await api('POST', `${taskBase()}/sessions`, {});
    S.sessionPick = created.sessionId;
    S.session = null;
    syncSubs();
    renderTranscript();
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
    await api('POST', `${taskBase()}/pull-request`);
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

document.addEventListener('click', async (e) => {
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

document.addEventListener('submit', async (e) => {
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

document.addEventListener('change', (e) => {
  const kind = e.target.dataset && e.target.dataset.change;
  if (kind === 'org') go(e.target.value ? orgPath(e.target.value) : '/orgs');
  if (kind === 'session-model') changeSession('model', e.target.value);
  if (kind === 'session-mode') changeSession('mode', e.target.value);
  if (kind === 'session-level') changeSession('thoughtLevel', e.target.value);
  if (kind === 'archived') {
    S.showArchived = e.target.checked;
    invalidate('sidebar');
  }
});

document.addEventListener('input', (e) => {
  // The organization id follows its name until the user edits the id.
  const form = e.target.form;
  if (!form || form.dataset.form !== 'create-org') return;
  if (e.target.name === 'id') form.id.dataset.edited = '1';
  if (e.target.name === 'displayName' && !form.id.dataset.edited) {
    form.id.value = e.target.value.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 64);
  }
});

document.addEventListener('keydown', (e) => {
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
  const rows = [...document.querySelectorAll('#task-list .task-row')];
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
