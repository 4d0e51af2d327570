//! Web app figures (plain program, `harness = false`), in a real headless Chromium through chromedriver (the browser
//! tests' harness, `tests/support/browser.rs`) against the server in-process on `127.0.0.1:0`:
//!
//! ```text
//! cargo bench --bench web_app -- [assets|load|transcript|sidebar|all] [name=value ...]
//! ```
//!
//! - `assets`: each asset's size as served and gzip -9 compressed (the `gzip` binary).
//! - `load`: a signed-in task view opened `loads` times in one browser: first paint, first contentful paint,
//!   DOMContentLoaded and "interactive" (the app's `foundry:task-interactive` mark: the conversation on screen with
//!   the composer usable), each from navigation start; the first load is cold (no cache), the rest revalidate.
//! - `transcript`: a session whose transcript grows to `items` items while the task view is open (built-in agent,
//!   no pacing): the browser's JS heap (after a forced GC) and DOM node count before and after, and the time from
//!   the last turn's end to the last item on screen.
//! - `sidebar`: `tasks` task summaries in the sidebar: first render and a live update (the app's `foundry:sidebar`
//!   measure).
//!
//! Options (`name=value` or `BENCH_<NAME>`): `loads` (10), `items` (500), `tasks` (1000).
//! Needs `chromium` and `chromedriver` (Debian packages).

#[allow(dead_code)]
#[path = "../tests/support/browser.rs"]
mod browser;
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use foundry::actors::session::SessionAgent;
use foundry::actors::Domain;
use foundry::http::{Api, AuthSettings};
use foundry::integrations::agent::{BuiltinAgent, TurnGate};
use foundry::runtime::{Runtime, RuntimeConfig};
use futures_util::StreamExt;
use serde_json::{json, Value};

use browser::{Browser, Driver};
use common::{table, Opts};

struct Server {
    base: String,
    http: reqwest::Client,
    handle: ServerHandle,
    rt: Runtime,
    token: String,
    _gate: Option<TurnGate>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// A server with the built-in agent (unpaced; turns held at their start with `gated`), signed in as alice
    /// with organization `acme` and repository `web`.
    async fn start(gated: bool) -> Server {
        let dir = common::tempdir("foundry-bench-web-");
        let rt = Runtime::start(RuntimeConfig::new(dir.path())).expect("runtime starts");
        let (agent, gate) = if gated {
            let (agent, gate) = BuiltinAgent::with_gate(Duration::ZERO);
            (agent, Some(gate))
        } else {
            (BuiltinAgent::new(Duration::ZERO), None)
        };
        rt.provide(Arc::new(SessionAgent(Arc::new(agent))));
        let api = Arc::new(Api::new(Domain::new(rt.clone()), AuthSettings { dev_sign_in: true, ..Default::default() }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let server = foundry::http::server_on(api, listener, 2).expect("server");
        let handle = server.handle();
        actix_rt::spawn(server);
        let http = foundry::integrations::http_client_builder().build().expect("client");
        let mut s = Server { base, http, handle, rt, token: String::new(), _gate: gate, _dir: dir };
        let signed = s.call("POST", "/v1/auth/dev/sign-in", Some(json!({ "login": "alice" }))).await;
        s.token = signed["token"].as_str().expect("token").to_owned();
        s.call("POST", "/v1/orgs", Some(json!({ "id": "acme", "displayName": "Acme" }))).await;
        let repo = json!({ "repoId": "web", "fullName": "acme/web", "remoteUrl": "https://example.invalid/web.git" });
        s.call("POST", "/v1/orgs/acme/repos", Some(repo)).await;
        s
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if !self.token.is_empty() {
            req = req.bearer_auth(&self.token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.expect("request");
        let status = res.status();
        let text = res.text().await.expect("body");
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn create_task(&self, prompt: &str) -> String {
        let t = self.call("POST", "/v1/orgs/acme/repos/web/tasks", Some(json!({ "prompt": prompt }))).await;
        t["taskId"].as_str().expect("taskId").to_owned()
    }

    async fn session(&self, task: &str) -> Value {
        self.call("GET", &format!("/v1/orgs/acme/repos/web/tasks/{task}/sessions/s1"), None).await
    }

    async fn stop(self) {
        self.handle.stop(true).await;
        self.rt.shutdown().await;
    }
}

fn ms(v: f64) -> String {
    format!("{v:.1} ms")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn metric(b: &Browser, name: &str) -> f64 {
    let m = b.cdp("Performance.getMetrics", json!({})).await;
    m["metrics"]
        .as_array()
        .and_then(|l| l.iter().find(|x| x["name"] == name))
        .map_or(0.0, |x| x["value"].as_f64().unwrap_or(0.0))
}

/// JS heap (MiB, after a forced GC) and DOM nodes of the page.
async fn memory(b: &Browser) -> (f64, f64) {
    b.cdp("HeapProfiler.collectGarbage", json!({})).await;
    (metric(b, "JSHeapUsedSize").await / 1_048_576.0, metric(b, "Nodes").await)
}

async fn assets(s: &Server) {
    let mut rows = Vec::new();
    for path in ["/", "/app.js", "/app.css", "/icon.svg"] {
        let bytes = s.http.get(format!("{}{path}", s.base)).send().await.expect("asset").bytes().await.expect("body");
        let mut gz = std::process::Command::new("gzip")
            .args(["-9", "-c"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("gzip runs");
        std::io::Write::write_all(gz.stdin.as_mut().expect("stdin"), &bytes).expect("gzip input");
        let out = gz.wait_with_output().expect("gzip output");
        rows.push(vec![
            path.to_owned(),
            format!("{:.1} KB", bytes.len() as f64 / 1000.0),
            format!("{:.1} KB", out.stdout.len() as f64 / 1000.0),
        ]);
    }
    table("Assets", &["asset", "served", "gzip -9"], &rows);
}

async fn load(o: &Opts, driver: &Driver) {
    let s = Server::start(false).await;
    let task = s.create_task("Add a health check endpoint").await;
    for _ in 0..400 {
        if s.session(&task).await["status"] == "idle" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let b = driver.browser().await;
    let url = format!("/orgs/acme/repos/web/tasks/{task}");
    b.signed_in(&s.base, &s.token, "/orgs/acme").await;
    // The cookie is set; the cache is still cold for the task view's first load below.
    b.cdp("Network.enable", json!({})).await;
    b.cdp("Network.clearBrowserCache", json!({})).await;
    let loads = o.get("loads", 10) as usize;
    let mut rows = Vec::new();
    let mut warm: Vec<[f64; 4]> = Vec::new();
    for i in 0..loads {
        b.goto(&format!("{}{url}", s.base)).await;
        b.wait("the task view", "return performance.getEntriesByName('foundry:task-interactive').length > 0").await;
        let v = b
            .js(
                "const p = (n) => (performance.getEntriesByName(n)[0] || {}).startTime || 0;
                 const nav = performance.getEntriesByType('navigation')[0];
                 return [p('first-paint'), p('first-contentful-paint'), nav.domContentLoadedEventEnd, p('foundry:task-interactive')];",
                json!([]),
            )
            .await;
        let f: Vec<f64> = v.as_array().expect("numbers").iter().map(|x| x.as_f64().unwrap_or(0.0)).collect();
        let f = [f[0], f[1], f[2], f[3]];
        if i == 0 {
            rows.push(vec!["cold (first load)".into(), ms(f[0]), ms(f[1]), ms(f[2]), ms(f[3])]);
        } else {
            warm.push(f);
        }
    }
    if !warm.is_empty() {
        let col = |k: usize| median(warm.iter().map(|f| f[k]).collect());
        rows.push(vec![format!("warm, median of {}", warm.len()), ms(col(0)), ms(col(1)), ms(col(2)), ms(col(3))]);
    }
    table(
        "Task view load (from navigation start)",
        &["load", "first paint", "FCP", "DOMContentLoaded", "interactive"],
        &rows,
    );
    b.quit().await;
    s.stop().await;
}

async fn transcript(o: &Opts, driver: &Driver) {
    let items = o.get("items", 500) as usize;
    let s = Server::start(false).await;
    let task = s.create_task("Start a long conversation").await;
    let b = driver.browser().await;
    b.signed_in(&s.base, &s.token, &format!("/orgs/acme/repos/web/tasks/{task}")).await;
    b.wait("the first reply", "return document.querySelectorAll('.items > *').length >= 2").await;
    b.cdp("Performance.enable", json!({})).await;
    let (heap0, nodes0) = memory(&b).await;
    let path = format!("/v1/orgs/acme/repos/web/tasks/{task}/sessions/s1/messages");
    let mut n = 0;
    let mut last;
    loop {
        // Prompts queue behind the running turn; the transcript streams into the open page meanwhile.
        for _ in 0..25 {
            n += 1;
            s.call("POST", &path, Some(json!({ "text": format!("Follow-up number {n}: tidy module {n}") }))).await;
        }
        loop {
            let sess = s.session(&task).await;
            last = sess["transcript"].as_array().map_or(0, Vec::len);
            if sess["status"] == "idle" && sess["queued"].as_u64().unwrap_or(0) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if last >= items {
            break;
        }
    }
    let settled = Instant::now();
    b.wait("every item on screen", &format!("return document.querySelectorAll('.items > *').length >= {last}")).await;
    let shown = settled.elapsed();
    let (heap, nodes) = memory(&b).await;
    let rows = vec![
        vec!["before".into(), "2".into(), format!("{heap0:.1} MiB"), format!("{nodes0}")],
        vec![format!("after {n} prompts"), format!("{last}"), format!("{heap:.1} MiB"), format!("{nodes}")],
    ];
    table(
        "Transcript in the open task view (JS heap after GC, DOM nodes)",
        &["when", "items", "JS heap", "DOM nodes"],
        &rows,
    );
    println!("last item on screen {} ms after the last turn ended (polling at 50 ms)", common::ms(shown));
    b.quit().await;
    s.stop().await;
}

async fn sidebar(o: &Opts, driver: &Driver) {
    let tasks = o.get("tasks", 1000) as usize;
    let s = Server::start(true).await;
    let t = Instant::now();
    let calls = (0..tasks).map(|i| {
        let s = &s;
        async move { s.create_task(&format!("Task number {i}: tidy module {i}")).await }
    });
    futures_util::stream::iter(calls).buffer_unordered(16).collect::<Vec<_>>().await;
    let created = t.elapsed();
    loop {
        let org = s.call("GET", "/v1/orgs/acme", None).await;
        if org["taskSummaries"].as_array().map_or(0, Vec::len) == tasks {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b = driver.browser().await;
    b.signed_in(&s.base, &s.token, "/orgs/acme").await;
    let rows_js = format!("return document.querySelectorAll('.task-row').length === {tasks}");
    b.wait("every task in the sidebar", &rows_js).await;
    let last = "const m = performance.getEntriesByName('foundry:sidebar'); return m[m.length - 1].duration";
    let first = b.js(last, json!([])).await.as_f64().unwrap_or(0.0);
    let count = "return performance.getEntriesByName('foundry:sidebar').length";
    let before = b.js(count, json!([])).await.as_u64().unwrap_or(0);
    s.create_task("One more task").await;
    b.wait("the live update", &format!("return performance.getEntriesByName('foundry:sidebar').length > {before}"))
        .await;
    let update = b.js(last, json!([])).await.as_f64().unwrap_or(0.0);
    let rows = vec![vec![format!("{tasks}"), ms(first), ms(update)]];
    table("Sidebar (foundry:sidebar measure)", &["tasks", "first render", "live update"], &rows);
    println!("({tasks} tasks created in {} ms)", common::ms(created));
    b.quit().await;
    s.stop().await;
}

#[actix_rt::main]
async fn main() {
    let o = Opts::parse();
    println!(
        "foundry web app bench: section={} cores={}",
        o.section,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let driver = Driver::start().await.expect("chromium and chromedriver are needed for this bench");
    if o.runs("assets") {
        let s = Server::start(false).await;
        assets(&s).await;
        s.stop().await;
    }
    if o.runs("load") {
        load(&o, &driver).await;
    }
    if o.runs("transcript") {
        transcript(&o, &driver).await;
    }
    if o.runs("sidebar") {
        sidebar(&o, &driver).await;
    }
}
