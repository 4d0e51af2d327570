// The runtime inspector page (`/admin/...`), for server admins: the runtime's kinds, a kind's live actors, one
// actor's state, topics, tables (with a page of rows), a read-only SQL box and its trace of recent messages. A plain
// ES module imported by app.js, which hands it the main element, the route and its API helper; it owns everything
// under its own container (listeners included), so nothing of app.js's state or delegation is involved.
// @ts-check

/** @typedef {import('./api').ActorDetail} ActorDetail */
/** @typedef {import('./api').ActorPage} ActorPage */
/** @typedef {import('./api').QueryAnswer} QueryAnswer */
/** @typedef {import('./api').QueryBody} QueryBody */
/** @typedef {import('./api').RuntimeView} RuntimeView */
/** @typedef {import('./api').TableDump} TableDump */
/** @typedef {import('./api').TraceView} TraceView */

/**
 * @typedef {object} InspectorRoute
 * @property {string} [kind]
 * @property {string} [key]
 */

/**
 * @typedef {object} InspectorContext
 * @property {(method: string, path: string, body?: unknown) => Promise<any>} api
 * @property {(e: unknown) => void} fail
 */

const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ESC[c]);
const enc = encodeURIComponent;
const DUMP_ROWS = 25;

/** The page's address of a kind, or of one of its actors. */
export const inspectorPath = (kind, key) =>
  kind === undefined ? '/admin' : key === undefined ? `/admin/kinds/${enc(kind)}` : `/admin/kinds/${enc(kind)}/actors/${enc(key)}`;

const apiPath = (kind, key) => `/v1/admin/kinds/${enc(kind)}/actors${key === undefined ? '' : `/${enc(key)}`}`;

const when = (ms) => (ms ? new Date(ms).toLocaleString() : '—');
const num = (n) => Number(n).toLocaleString();

/** One JSON cell of a table dump or query answer: null, a number, a string, or a blob's hex. */
function cell(v) {
  if (v === null || v === undefined) return '<span class="muted">NULL</span>';
  if (typeof v === 'object' && v.blob !== undefined) return `<code class="muted">x'${esc(v.blob)}'</code>`;
  return esc(typeof v === 'object' ? JSON.stringify(v) : v);
}

/**
 * @param {string[]} columns
 * @param {any[][]} rows
 */
function rowsTable(columns, rows) {
  if (!rows.length) return '<p class="muted">No rows.</p>';
  return `<div class="inspect-scroll"><table class="table inspect-rows"><thead><tr>${columns.map((c) => `<th>${esc(c)}</th>`).join('')}</tr></thead><tbody>${rows
    .map((r) => `<tr>${r.map((v) => `<td>${cell(v)}</td>`).join('')}</tr>`)
    .join('')}</tbody></table></div>`;
}

/**
 * Renders the inspector page for `route` into `main`.
 * @param {HTMLElement} main
 * @param {InspectorRoute} route
 * @param {InspectorContext} ctx
 */
export function renderRuntimeInspector(main, route, ctx) {
  main.innerHTML = '<div class="page" id="runtime-inspector"><p class="muted">Loading…</p></div>';
  const root = /** @type {HTMLElement} */ (main.querySelector('#runtime-inspector'));
  const page = route.key !== undefined ? actorPage : route.kind !== undefined ? kindPage : runtimePage;
  page(root, route, ctx).catch((e) => {
    root.innerHTML = `<div class="empty"><h1>Cannot inspect</h1><p>${esc(e && e.message ? e.message : e)}</p><a class="btn" href="/admin">The runtime</a></div>`;
  });
}

/**
 * Renders `page` again into a new container in place of `root`, so the old one's listeners go with it.
 * @param {HTMLElement} root
 * @param {(root: HTMLElement, route: InspectorRoute, ctx: InspectorContext) => Promise<void>} page
 * @param {InspectorRoute} route
 * @param {InspectorContext} ctx
 */
async function afresh(root, page, route, ctx) {
  const fresh = document.createElement('div');
  fresh.className = root.className;
  fresh.id = root.id;
  fresh.innerHTML = root.innerHTML;
  root.replaceWith(fresh);
  await page(fresh, route, ctx);
}

function crumbs(route) {
  const parts = ['<a href="/admin">Runtime</a>'];
  if (route.kind !== undefined) parts.push(`<a href="${inspectorPath(route.kind)}">${esc(route.kind)}</a>`);
  if (route.key !== undefined) parts.push(`<span>${esc(route.key)}</span>`);
  return `<nav class="inspect-crumbs muted small">${parts.join(' / ')}</nav>`;
}

/**
 * @param {HTMLElement} root
 * @param {InspectorRoute} route
 * @param {InspectorContext} ctx
 */
async function runtimePage(root, route, ctx) {
  /** @type {RuntimeView} */
  const rt = await ctx.api('GET', '/v1/admin/runtime');
  root.innerHTML = `${crumbs(route)}
    <div class="page-head"><div><h1>Runtime inspector</h1>
      <p class="muted">${num(rt.liveActors)} of ${num(rt.maxLive)} actors live · ${num(rt.topicChannels)} topic channels · ${num(rt.scheduledActors)} actors with schedules · trace of ${rt.traceSize} messages per actor</p></div></div>
    <section class="card"><table class="table" id="inspect-kinds"><thead><tr><th>Kind</th><th class="right">Live</th><th class="right">In flight</th><th class="right">Messages</th><th class="right">Committed</th><th class="right">Activations</th><th class="right">Passivations</th><th class="right">Restarts</th><th class="right">Schedules fired / failed</th></tr></thead><tbody>
    ${rt.kinds
      .map(
        (k) => `<tr data-kind="${esc(k.kind)}"><td><a href="${inspectorPath(k.kind)}">${esc(k.kind)}</a></td><td class="right">${num(k.live)}</td><td class="right">${num(k.mailboxDepth)}</td><td class="right">${num(k.messages)}</td><td class="right">${num(k.committedMutations)}</td><td class="right">${num(k.activations)}</td><td class="right">${num(k.passivations)}</td><td class="right">${num(k.restarts)}</td><td class="right">${num(k.schedulesFired)} / ${num(k.scheduleFailures)}</td></tr>`,
      )
      .join('')}
    </tbody></table></section>`;
}

/**
 * @param {HTMLElement} root
 * @param {InspectorRoute} route
 * @param {InspectorContext} ctx
 */
async function kindPage(root, route, ctx) {
  const kind = /** @type {string} */ (route.kind);
  /** @type {string | null} */
  let after = null;
  const load = async () => {
    const q = after ? `?after=${enc(after)}` : '';
    /** @type {ActorPage} */
    const p = await ctx.api('GET', `${apiPath(kind)}${q}`);
    const rows = p.actors
      .map((a) => {
        const s = a.state;
        const topics = s ? s.topics.map((t) => `${esc(t.topic)} v${t.version}${t.subscribers ? ` (${t.subscribers} subscribed)` : ''}`).join(', ') : '';
        const outbox = s ? `${s.outboxPending}${s.deadLetters ? ` · <span class="badge badge-bad">${s.deadLetters} dead</span>` : ''}` : '';
        const schedules = s ? (s.schedules ? `${s.schedules}, next ${esc(when(s.nextDueMs))}` : '0') : '';
        return `<tr data-key="${esc(a.key)}"><td><a href="${inspectorPath(kind, a.key)}">${esc(a.key)}</a></td><td class="right">${a.mailboxDepth}</td><td class="right">${s ? `${(s.idleMs / 1000).toFixed(1)} s` : '<span class="badge badge-busy">busy</span>'}</td><td>${topics}</td><td>${outbox}</td><td>${schedules}</td></tr>`;
      })
      .join('');
    root.innerHTML = `${crumbs(route)}
      <div class="page-head"><div><h1>${esc(kind)}</h1><p class="muted">${num(p.live)} live actors${after ? `, after ${esc(after)}` : ''}</p></div>
        <div class="actions"><button class="btn small" data-inspect="refresh">Refresh</button>${p.nextAfter ? `<button class="btn small" data-inspect="next" data-after="${esc(p.nextAfter)}">Next page</button>` : ''}</div></div>
      <section class="card">${p.actors.length ? `<table class="table" id="inspect-actors"><thead><tr><th>Key</th><th class="right">Mailbox</th><th class="right">Idle</th><th>Topics</th><th>Outbox</th><th>Schedules</th></tr></thead><tbody>${rows}</tbody></table>` : '<p class="muted">No live actors of this kind. Passivated actors can be opened by their key: /admin/kinds/<kind>/actors/<key>.</p>'}</section>`;
  };
  root.addEventListener('click', async (e) => {
    const el = /** @type {HTMLElement | null} */ (e.target instanceof Element ? e.target.closest('[data-inspect]') : null);
    if (!el) return;
    if (el.dataset.inspect === 'next') after = el.dataset.after || null;
    try {
      await load();
    } catch (err) {
      ctx.fail(err);
    }
  });
  await load();
}

/**
 * @param {HTMLElement} root
 * @param {InspectorRoute} route
 * @param {InspectorContext} ctx
 */
async function actorPage(root, route, ctx) {
  const kind = /** @type {string} */ (route.kind);
  const key = /** @type {string} */ (route.key);
  const base = apiPath(kind, key);
  /** @type {ActorDetail} */
  const d = await ctx.api('GET', base);
  const s = d.state;
  const fact = (label, value) => `<dt>${esc(label)}</dt><dd>${value}</dd>`;
  root.innerHTML = `${crumbs(route)}
    <div class="page-head"><div><h1 class="inspect-key">${esc(key)}</h1><p class="muted">${esc(kind)} · ${num(d.databaseBytes)} bytes on disk</p></div>
      <div class="actions"><button class="btn small" data-inspect="reload">Refresh</button></div></div>
    <div class="grid">
      <section class="card"><h2>State</h2><dl class="kv inspect-kv" id="inspect-state">
        ${fact('Mailbox', `${d.mailboxDepth} in flight${s.pendingMutations ? `, ${s.pendingMutations} waiting to commit` : ''}`)}
        ${fact('Idle', `${(s.idleMs / 1000).toFixed(1)} s`)}
        ${fact('Outbox', `${s.outboxPending} pending${s.delivering ? ' (delivering)' : ''}, ${s.deadLetters} dead letters`)}
        ${fact('Schedules', s.schedules ? `${s.schedules}, next ${esc(when(s.nextDueMs))}` : 'none')}
        ${fact('Background', `${s.backgroundTasks} tasks`)}
        ${fact('Failures', `${s.consecutiveFailures} in a row`)}
      </dl></section>
      <section class="card"><h2>Topics</h2>${
        s.topics.length
          ? `<table class="table" id="inspect-topics"><thead><tr><th>Topic</th><th class="right">Version</th><th class="right">Subscribers</th></tr></thead><tbody>${s.topics
              .map((t) => `<tr><td>${esc(t.topic)}</td><td class="right">${t.version}</td><td class="right">${t.subscribers}</td></tr>`)
              .join('')}</tbody></table>`
          : '<p class="muted">No topic published yet.</p>'
      }</section>
    </div>
    <section class="card"><h2>Tables</h2><ul class="inspect-tables" id="inspect-tables">${d.tables
      .map(
        (t) => `<li><button class="btn ghost small" data-inspect="table" data-table="${esc(t.name)}">${esc(t.name)}</button> <span class="muted small">${num(t.rows)} rows</span>${t.runtime ? ' <span class="badge">runtime</span>' : ''}</li>`,
      )
      .join('')}</ul><div id="inspect-dump"></div></section>
    <section class="card"><h2>Read-only SQL</h2>
      <form class="form" id="inspect-sql"><textarea name="sql" rows="3" spellcheck="false" placeholder="SELECT * FROM sqlite_schema">SELECT name, type FROM sqlite_schema ORDER BY name</textarea>
        <p class="muted small">One statement that only reads, on a copy of this actor's database (at most 100 rows, 2 s). Ctrl+Enter runs it.</p>
        <div class="actions"><button class="btn primary" type="submit">Run</button></div></form>
      <div id="inspect-result"></div></section>
    <section class="card"><div class="page-head"><h2>Trace</h2><button class="btn small" data-inspect="trace">Refresh</button></div><div id="inspect-trace"></div></section>`;

  const dump = async (table, offset) => {
    /** @type {TableDump} */
    const t = await ctx.api('GET', `${base}/tables/${enc(table)}?offset=${offset}&limit=${DUMP_ROWS}`);
    const prev = offset > 0 ? `<button class="btn small" data-inspect="page" data-table="${esc(table)}" data-offset="${Math.max(0, offset - DUMP_ROWS)}">Previous</button>` : '';
    const next = offset + t.rows.length < t.total ? `<button class="btn small" data-inspect="page" data-table="${esc(table)}" data-offset="${offset + DUMP_ROWS}">Next</button>` : '';
    /** @type {HTMLElement} */ (root.querySelector('#inspect-dump')).innerHTML =
      `<h3>${esc(table)} <span class="muted small">rows ${t.rows.length ? offset + 1 : 0}–${offset + t.rows.length} of ${num(t.total)}${t.truncated ? ', long values cut' : ''}</span></h3>${rowsTable(t.columns, t.rows)}<div class="actions">${prev}${next}</div>`;
  };
  const trace = async () => {
    /** @type {TraceView} */
    const t = await ctx.api('GET', `${base}/trace`);
    const el = /** @type {HTMLElement} */ (root.querySelector('#inspect-trace'));
    if (!t.size) {
      el.innerHTML = '<p class="muted">Tracing is off (serve --trace-size 0).</p>';
      return;
    }
    el.innerHTML = `<p class="muted small">${num(t.recorded)} messages since activation; the last ${t.size} are kept.</p>${
      t.entries.length
        ? `<table class="table" id="inspect-trace-rows"><thead><tr><th>When</th><th>Message</th><th>Kind</th><th>Outcome</th><th class="right">µs</th></tr></thead><tbody>${t.entries
            .map(
              (e) => `<tr><td>${esc(new Date(e.atMs).toLocaleTimeString())}</td><td>${esc(e.message)}</td><td>${esc(e.kind)}</td><td><span class="badge ${e.outcome === 'ok' ? 'badge-ok' : 'badge-bad'}">${esc(e.outcome)}</span></td><td class="right">${num(e.durationUs)}</td></tr>`,
            )
            .join('')}</tbody></table>`
        : '<p class="muted">No message handled since activation.</p>'
    }`;
  };
  const run = async (sql) => {
    const out = /** @type {HTMLElement} */ (root.querySelector('#inspect-result'));
    /** @type {QueryBody} */
    const body = { sql };
    try {
      /** @type {QueryAnswer} */
      const a = await ctx.api('POST', `${base}/query`, body);
      out.innerHTML = `${rowsTable(a.columns, a.rows)}${a.truncated ? '<p class="muted small">More rows or longer values were left out.</p>' : ''}`;
    } catch (e) {
      out.innerHTML = `<p class="form-error" role="alert">${esc(e && e.message ? e.message : e)}</p>`;
    }
  };

  root.addEventListener('click', async (e) => {
    const el = /** @type {HTMLElement | null} */ (e.target instanceof Element ? e.target.closest('[data-inspect]') : null);
    if (!el) return;
    try {
      const what = el.dataset.inspect;
      if (what === 'reload') await afresh(root, actorPage, route, ctx);
      else if (what === 'table') await dump(el.dataset.table, 0);
      else if (what === 'page') await dump(el.dataset.table, Number(el.dataset.offset));
      else if (what === 'trace') await trace();
    } catch (err) {
      ctx.fail(err);
    }
  });
  const form = /** @type {HTMLFormElement} */ (root.querySelector('#inspect-sql'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    e.stopPropagation();
    run(String(new FormData(form).get('sql') || ''));
  });
  await trace();
}
