//! The web app served at `/`: its assets over HTTP (ETag revalidation, content types, the shell for client-side
//! routes, the JSON 404 kept for `/v1`), and a walk through it in a real headless Chromium driven over WebDriver
//! (chromedriver's W3C JSON API, spoken with reqwest, so no client crate is built): sign in, create an
//! organization, add a repository, create a task and watch the agent's reply stream in, follow up, steer and
//! interrupt a turn, rename the task and its session tab, the organization's audit log, a second
//! member's sidebar updating live and keyboard navigation, who else has a task open (presence), sign out, and a
//! non-member who sees nothing.
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install chromium chromium-driver`); without them the browser
//! test skips, saying why, except under `CI=true`, where it fails. Screenshots of the main screens are written to
//! `target/web-app-screenshots/`.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use foundry::actors::session::SessionAgent;
use foundry::integrations::agent::BuiltinAgent;
use futures_util::StreamExt;
use serde_json::{json, Value};
use support::browser::{screenshot_dir, Browser, Driver};
use support::web::start;

#[actix_rt::test]
async fn assets_are_served_with_etags_and_the_api_keeps_its_404() {
    let s = start(|_, _| {}).await;
    let get = |path: &str| s.client.get(format!("{}{path}", s.base));

    let res = get("/").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(res.headers()["cache-control"], "no-cache");
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.len() == 18, "{etag}");
    let html = res.text().await.unwrap();
    assert!(html.contains(r#"<script type="module" src="/app.js">"#), "{html}");

    // Revalidation: the same bytes answer 304 with no body; another asset has another tag.
    let res = get("/").header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(res.status(), 304);
    assert_eq!(res.headers()["etag"].to_str().unwrap(), etag);
    assert!(res.bytes().await.unwrap().is_empty());
    let res = get("/app.js").header("if-none-match", "\"0000000000000000\"").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/javascript; charset=utf-8");
    assert_ne!(res.headers()["etag"].to_str().unwrap(), etag);
    let res = get("/app.css").send().await.unwrap();
    assert_eq!(
        (res.status().as_u16(), res.headers()["content-type"].to_str().unwrap()),
        (200, "text/css; charset=utf-8")
    );
    let res = get("/icon.svg").send().await.unwrap();
    assert_eq!((res.status().as_u16(), res.headers()["content-type"].to_str().unwrap()), (200, "image/svg+xml"));
    let res = get("/inspector.js").send().await.unwrap();
    assert_eq!(
        (res.status().as_u16(), res.headers()["content-type"].to_str().unwrap()),
        (200, "text/javascript; charset=utf-8")
    );
    assert!(res.text().await.unwrap().contains("export function renderRuntimeInspector"));

    // Client-side routes get the shell, so a reload or a shared link works.
    for path in
        ["/sign-in", "/orgs", "/orgs/acme", "/orgs/acme/repos/r1/tasks/t1", "/admin", "/admin/kinds/task/actors/a%2Fb"]
    {
        let res = get(path).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.headers()["etag"].to_str().unwrap(), etag, "{path}");
    }
    // The API's unknown routes stay JSON.
    for path in ["/v1/nope", "/v1/orgs/acme/nope/x", "/nope"] {
        let res = get(path).send().await.unwrap();
        assert_eq!(res.status(), 404, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "route_not_found", "{path}");
    }
    s.stop().await;
}

#[actix_rt::test]
async fn a_team_works_in_the_browser() {
    let Some(driver) = Driver::start().await else { return };
    let began = Instant::now();
    // A paced agent, so its reply is visibly streaming for a few seconds.
    let s = start(|api, _| {
        let agent = BuiltinAgent::new(Duration::from_millis(40));
        api.domain.runtime.provide(Arc::new(SessionAgent(Arc::new(agent))));
        // Sessions are re-checked every two heartbeats: fast enough to see a revoked one end in the browser.
        api.ws.heartbeat = Duration::from_millis(300);
    })
    .await;
    let shots = screenshot_dir();

    // Sign in.
    let a = driver.browser().await;
    a.goto(&format!("{}/", s.base)).await;
    a.wait("the sign-in form", "return !!document.querySelector('form[data-form=signin]')").await;
    a.shot(&shots, "01-sign-in").await;
    a.type_into("input[name=login]", "alice").await;
    a.click("form[data-form=signin] button[type=submit]").await;
    a.wait(
        "the organizations page",
        "return location.pathname === '/orgs' && !!document.querySelector('form[data-form=create-org]')",
    )
    .await;
    a.wait("the live connection", "return document.querySelector('#conn').textContent === 'Live'").await;

    // Create an organization: the id follows the name.
    a.type_into("input[name=displayName]", "Acme Labs").await;
    assert_eq!(a.js("return document.querySelector('input[name=id]').value", json!([])).await, "acme-labs");
    a.shot(&shots, "02-organizations").await;
    a.click("form[data-form=create-org] button[type=submit]").await;
    a.wait("the organization page", "return document.querySelector('#org-title')?.textContent === 'Acme Labs'").await;
    assert_eq!(a.js("return location.pathname", json!([])).await, "/orgs/acme-labs");

    // Add a repository.
    a.click("details.add-repo summary").await;
    a.type_into("form[data-form=add-repo] input[name=fullName]", "acme/web").await;
    a.type_into("form[data-form=add-repo] input[name=repoId]", "web").await;
    a.type_into("form[data-form=add-repo] input[name=remoteUrl]", "https://example.invalid/acme/web.git").await;
    a.click("form[data-form=add-repo] button[type=submit]").await;
    a.wait("the repository in the list", "return document.querySelector('#repos')?.textContent.includes('acme/web')")
        .await;
    a.wait(
        "the repository's sidebar group",
        "return document.querySelector('#task-list')?.textContent.includes('acme/web')",
    )
    .await;
    // An API error is shown as its message: the same repository again conflicts.
    a.type_into("form[data-form=add-repo] input[name=fullName]", "acme/web").await;
    a.type_into("form[data-form=add-repo] input[name=repoId]", "web").await;
    a.type_into("form[data-form=add-repo] input[name=remoteUrl]", "https://example.invalid/acme/web.git").await;
    a.click("form[data-form=add-repo] button[type=submit]").await;
    a.wait(
        "the conflict message",
        "return document.querySelector('form[data-form=add-repo] .form-error')?.textContent.length > 0",
    )
    .await;
    a.shot(&shots, "03-organization").await;

    // A task from a prompt, with the model picker offering the user's default, starred.
    a.click("#new-task").await;
    a.wait("the new-task form", "return !!document.querySelector('#nt-repo option[value=web]')").await;
    let starred =
        a.js("return document.querySelector('select[name=model] option:checked').textContent", json!([])).await;
    assert!(starred.as_str().unwrap().starts_with('★'), "{starred}");
    a.type_into("textarea[name=prompt]", "Fix the login page redirect loop").await;
    // The click lands where the button is once the title preview has arrived (WebDriver clicks at coordinates).
    a.wait("the title preview", "return document.querySelector('#nt-title')?.textContent.startsWith('fix: ')").await;
    a.shot(&shots, "04-new-task").await;
    a.click("form[data-form=new-task] button[type=submit]").await;
    a.wait(
        "the task view",
        "return location.pathname === '/orgs/acme-labs/repos/web/tasks/t1' && !!document.querySelector('#task-title')",
    )
    .await;
    // The reply streams: partial text shows while the turn runs, then becomes a message.
    a.wait(
        "streaming text",
        "const p = document.querySelector('.partial'); return p && !p.hidden && p.textContent.includes('Fix the login')",
    )
    .await;
    a.wait("the interrupt button while running", "return !document.querySelector('#interrupt').hidden").await;
    a.shot(&shots, "05-task-streaming").await;
    let agent_done = "return [...document.querySelectorAll('.items .msg-agent')].filter(m => m.textContent.includes('Done.')).length";
    a.wait("the finished reply", &format!("{agent_done} >= 1 && document.querySelector('.partial').hidden")).await;
    a.wait(
        "the sidebar row",
        "return document.querySelector('.task-row.current')?.textContent.includes('login page redirect loop')",
    )
    .await;

    // A follow-up.
    a.type_into("#composer", "Also add a test for it").await;
    a.click("form[data-form=send] button[type=submit]").await;
    a.wait(
        "the follow-up",
        "return [...document.querySelectorAll('.msg-user')].some(m => m.textContent.includes('Also add a test'))",
    )
    .await;
    assert_eq!(a.js("return document.querySelector('#composer').value", json!([])).await, "");
    a.wait("the second reply", &format!("{agent_done} >= 2")).await;

    // Steer the running turn (the guidance shows up in the reply), then interrupt it. The reply repeats the prompt, so
    // a long prompt makes a long turn (~5 s at the agent's pace): typing the steer and clicking interrupt on a loaded
    // machine (CI, two cores) must not race the turn's end.
    let long_prompt = "Explain the redirect loop in detail: where the session cookie is set, which middleware reads \
        it, why the session check runs before the OAuth callback handler, what the browser does on each hop, how the \
        fix will stop it from coming back, which files are involved and which tests should cover each of those cases, \
        including the expired cookie, the missing cookie, the tampered cookie and the second tab signing out";
    a.type_into("#composer", long_prompt).await;
    a.click("form[data-form=send] button[type=submit]").await;
    a.wait("the steer button", "return !document.querySelector('#steer').hidden").await;
    a.type_into("#composer", "keep it short").await;
    a.click("#steer").await;
    a.wait(
        "the steered reply",
        "return document.querySelector('#transcript').textContent.includes('[steer: keep it short]')",
    )
    .await;
    assert_eq!(a.js("return document.querySelector('#composer').value", json!([])).await, "");
    a.wait("the interrupt button", "return !document.querySelector('#interrupt').hidden").await;
    a.click("#interrupt").await;
    a.wait(
        "the interrupted note",
        "return [...document.querySelectorAll('.note')].some(n => n.textContent.includes('interrupted'))",
    )
    .await;
    a.wait("the idle composer", "return document.querySelector('#interrupt').hidden").await;

    // Rename.
    a.click("[data-action=rename]").await;
    a.clear("#rename-input").await;
    a.type_into("#rename-input", "Login redirect fix").await;
    a.click("form[data-form=rename] button[type=submit]").await;
    a.wait("the new title", "return document.querySelector('#task-title')?.textContent === 'Login redirect fix'").await;
    a.wait(
        "the renamed sidebar row",
        "return document.querySelector('.task-row.current')?.textContent.includes('Login redirect fix')",
    )
    .await;
    // Rename the session's tab.
    a.click("#rename-session").await;
    a.clear("#session-name").await;
    a.type_into("#session-name", "Main thread").await;
    a.click("form[data-form=rename-session] button[type=submit]").await;
    a.wait(
        "the renamed tab",
        "return document.querySelector('.tab[aria-selected=true]')?.textContent === 'Main thread'",
    )
    .await;
    // The session's mode and thought level selects show its current values.
    let shown = a
        .js(
            "return ['#session-mode', '#session-level'].map(s => document.querySelector(s).selectedOptions[0].textContent)",
            json!([]),
        )
        .await;
    assert!(
        shown
            .as_array()
            .unwrap()
            .iter()
            .all(|v| !v.as_str().unwrap().is_empty() && !v.as_str().unwrap().contains("object")),
        "{shown}"
    );
    // Steering with no running turn: the API's message is shown.
    a.js("document.querySelector('#steer').hidden = false", json!([])).await;
    a.type_into("#composer", "too late").await;
    a.click("#steer").await;
    a.wait("the steer error", "return document.querySelector('.toast-error')?.textContent.length > 0").await;
    a.clear("#composer").await;
    // Mode and thought level: a valid mode is saved; a level the server does not know shows its message.
    a.js("document.querySelectorAll('.toast').forEach(t => t.remove())", json!([])).await;
    a.js(
        "const m = document.querySelector('#session-mode'); m.value = 'plan'; m.dispatchEvent(new Event('change', { bubbles: true }))",
        json!([]),
    )
    .await;
    a.wait(
        "the saved mode",
        "return document.querySelector('#session-bar').dataset.html.includes('value=\"plan\" selected')",
    )
    .await;
    a.js(
        "const l = document.querySelector('#session-level'); l.add(new Option('extreme', 'extreme')); l.value = 'extreme'; \
         l.dispatchEvent(new Event('change', { bubbles: true }))",
        json!([]),
    )
    .await;
    a.wait("the refused level", "return document.querySelector('.toast-error')?.textContent.includes('thought level')")
        .await;
    // The only open session cannot be closed: the API's message shows in the confirmation.
    a.click("#close-session").await;
    a.click("#confirm-ok").await;
    a.wait("the close refusal", "return document.querySelector('#dialog .form-error')?.textContent.length > 0").await;
    a.js("document.querySelector('#dialog').close()", json!([])).await;
    a.shot(&shots, "06-task").await;

    // The organization's audit log lists the task's creation.
    a.goto(&format!("{}/orgs/acme-labs", s.base)).await;
    a.click("#audit-link").await;
    a.wait(
        "the audit log",
        "return location.pathname === '/orgs/acme-labs/audit' && [...document.querySelectorAll('.audit-kind')].some(k => k.textContent === 'task.created')",
    )
    .await;
    a.shot(&shots, "06b-audit").await;
    // Older events page in with "Load more" (here three at a time), with no event twice.
    a.goto(&format!("{}/orgs/acme-labs/audit?limit=3", s.base)).await;
    a.wait("a first page of three", "return document.querySelectorAll('.audit-row').length === 3").await;
    a.click("#audit-more").await;
    a.wait("a second page", "return document.querySelectorAll('.audit-row').length === 6").await;
    let ids =
        a.js("return [...document.querySelectorAll('.audit-row')].map(r => Number(r.dataset.id))", json!([])).await;
    let ids: Vec<i64> = ids.as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first, no repeats: {ids:?}");

    // A second person: signs up, is made a member, and sees the organization arrive live.
    let b = driver.browser().await;
    b.goto(&format!("{}/", s.base)).await;
    b.wait("the sign-in form", "return !!document.querySelector('form[data-form=signin]')").await;
    b.type_into("input[name=login]", "bob").await;
    b.click("form[data-form=signin] button[type=submit]").await;
    b.wait(
        "bob's empty organizations page",
        "return location.pathname === '/orgs' && document.querySelector('#conn')?.textContent === 'Live'",
    )
    .await;
    let alice = s.sign_in("alice").await;
    let bob = s.user_id(&s.sign_in("bob").await).await;
    let (st, body) = s
        .call("PUT", &format!("/v1/orgs/acme-labs/members/{bob}"), Some(&alice), Some(json!({ "role": "member" })))
        .await;
    assert_eq!(st, 200, "{body}");
    b.wait(
        "the organization in bob's switcher",
        "return !!document.querySelector('#org-select option[value=\"acme-labs\"]')",
    )
    .await;
    b.click(".org-card").await;
    b.wait(
        "alice's task in bob's sidebar",
        "return document.querySelector('#task-list')?.textContent.includes('Login redirect fix')",
    )
    .await;
    // A task created now appears in bob's sidebar without a reload, marked unread.
    let (st, body) = s
        .call(
            "POST",
            "/v1/orgs/acme-labs/repos/web/tasks",
            Some(&alice),
            Some(json!({ "prompt": "Add a dark mode toggle" })),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    b.wait(
        "the new task, unread, in bob's sidebar",
        "return [...document.querySelectorAll('.task-row')].some(r => r.textContent.includes('dark mode') && r.classList.contains('unread'))",
    )
    .await;
    b.shot(&shots, "07-member-sidebar").await;
    // Keyboard: arrows move between tasks, Enter opens one.
    b.js("document.querySelector('.task-row').focus()", json!([])).await;
    let first = b.js("return document.activeElement.dataset.task", json!([])).await;
    b.keys_to_active("\u{E015}").await; // ArrowDown
    let second = b.js("return document.activeElement.dataset.task", json!([])).await;
    assert_ne!(first, second, "ArrowDown moves to the next task");
    b.keys_to_active("\u{E007}").await; // Enter
    let want =
        format!("return location.pathname.endsWith('/tasks/{}')", second.as_str().unwrap().split('/').nth(1).unwrap());
    b.wait("the task opened from the keyboard", &want).await;
    b.wait("its transcript", "return document.querySelectorAll('.items .msg').length >= 1").await;

    // Presence: alice opens the same task and each sees the other there; when she leaves, her name goes.
    let path = b.js("return location.pathname", json!([])).await;
    a.goto(&format!("{}{}", s.base, path.as_str().unwrap())).await;
    let viewing =
        |who: &str| format!("return !!document.querySelector('#task-viewers')?.textContent.includes('{who}')");
    a.wait("bob among the task's viewers", &viewing("bob")).await;
    b.wait("alice among the task's viewers", &viewing("alice")).await;
    b.shot(&shots, "07b-presence").await;
    a.goto(&format!("{}/orgs/acme-labs", s.base)).await;
    b.wait("alice no longer viewing", "return !document.querySelector('#task-viewers')").await;

    // Sign out; a non-member signs in and sees nothing of the organization, even by its address.
    b.click("[data-action=sign-out]").await;
    b.wait("the sign-in form again", "return !!document.querySelector('form[data-form=signin]')").await;
    b.type_into("input[name=login]", "carol").await;
    b.click("form[data-form=signin] button[type=submit]").await;
    b.wait(
        "carol's organizations page",
        "return location.pathname === '/orgs' && !!document.querySelector('form[data-form=create-org]')",
    )
    .await;
    assert_eq!(
        b.js("return !!document.querySelector('#org-select option[value=\"acme-labs\"]')", json!([])).await,
        false
    );
    b.goto(&format!("{}/orgs/acme-labs", s.base)).await;
    b.wait(
        "the no-access page",
        "return document.querySelector('#main')?.textContent.includes('Organization not available')",
    )
    .await;
    let text = b.js("return document.body.innerText", json!([])).await;
    let text = text.as_str().unwrap();
    assert!(!text.contains("Login redirect fix") && !text.contains("acme/web"), "{text}");
    b.shot(&shots, "08-non-member").await;

    // A session revoked elsewhere ends here too: back to sign-in, saying why.
    let carol = s.sign_in("carol").await;
    let (st, body) = s.call("DELETE", "/v1/auth/sessions", Some(&carol), None).await;
    assert_eq!(st, 200, "{body}");
    b.wait(
        "the sign-in form after the session ended",
        "return location.pathname === '/sign-in' && document.querySelector('.notice')?.textContent.includes('session ended')",
    )
    .await;

    a.quit().await;
    b.quit().await;
    s.stop().await;
    drop(driver);
    eprintln!("browser walk took {:?}; screenshots in {}", began.elapsed(), shots.display());
}

#[actix_rt::test]
async fn a_thousand_tasks_stay_fast_in_the_sidebar() {
    let Some(driver) = Driver::start().await else { return };
    // Turns are held at their start: the tasks exist with running sessions, and no agent competes for the CPU.
    let (agent, _gate) = BuiltinAgent::with_gate(Duration::ZERO);
    let s = start(move |api, _| api.domain.runtime.provide(Arc::new(SessionAgent(Arc::new(agent))))).await;
    let alice = s.sign_in("alice").await;
    let (st, body) =
        s.call("POST", "/v1/orgs", Some(&alice), Some(json!({ "id": "big", "displayName": "Big Co" }))).await;
    assert_eq!(st, 201, "{body}");
    for repo in ["api", "web"] {
        let body =
            json!({ "repoId": repo, "fullName": format!("big/{repo}"), "remoteUrl": "https://example.invalid/x.git" });
        let (st, body) = s.call("POST", "/v1/orgs/big/repos", Some(&alice), Some(body)).await;
        assert_eq!(st, 201, "{body}");
    }
    let created = Instant::now();
    let calls = (0..1000).map(|i| {
        let (s, alice) = (&s, &alice);
        async move {
            let repo = if i % 2 == 0 { "api" } else { "web" };
            let body = json!({ "prompt": format!("Task number {i}: tidy module {i}") });
            let (st, body) = s.call("POST", &format!("/v1/orgs/big/repos/{repo}/tasks"), Some(alice), Some(body)).await;
            assert_eq!(st, 201, "{body}");
        }
    });
    futures_util::stream::iter(calls).buffer_unordered(16).collect::<Vec<()>>().await;
    eprintln!("1,000 tasks created in {:?}", created.elapsed());
    // Summaries reach the organization through outboxes, after the creations answered.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, org) = s.call("GET", "/v1/orgs/big", Some(&alice), None).await;
        if org["taskSummaries"].as_array().map_or(0, Vec::len) == 1000 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the organization lists {} tasks",
            org["taskSummaries"].as_array().map_or(0, Vec::len)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("... and all in the organization's snapshot after {:?}", created.elapsed());

    let b = driver.browser().await;
    b.goto(&format!("{}/sign-in", s.base)).await;
    b.type_into("input[name=login]", "alice").await;
    b.click("form[data-form=signin] button[type=submit]").await;
    b.wait("1,000 rows", "return document.querySelectorAll('#task-list .task-row').length === 1000").await;
    let first = sidebar_ms(&b).await;
    // A live update re-renders the whole list once.
    let (st, body) = s
        .call(
            "POST",
            "/v1/orgs/big/repos/web/tasks",
            Some(&alice),
            Some(json!({ "prompt": "The one thousand and first" })),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    b.wait("the 1,001st row", "return document.querySelectorAll('#task-list .task-row').length === 1001").await;
    let update = sidebar_ms(&b).await;
    // Style and layout of the whole list, which the measure above leaves to the browser.
    let layout = b
        .js(
            "const l = document.querySelector('#task-list'); const t = performance.now(); \
             l.innerHTML = l.innerHTML; l.getBoundingClientRect(); document.body.offsetHeight; \
             return performance.now() - t",
            json!([]),
        )
        .await;
    let layout = layout.as_f64().unwrap();
    eprintln!("sidebar at 1,000 tasks: first render {first:.1} ms, live update {update:.1} ms, re-parse + layout {layout:.1} ms");
    b.shot(&screenshot_dir(), "09-thousand-tasks").await;
    // Timings are printed, not asserted (a loaded 2-core CI machine makes any bound either loose or flaky): the
    // figures come from `cargo bench --bench web_app` on an idle machine (BENCHMARKS.md). What is asserted is that
    // the measure ran for the live update, i.e. the row arrived through a re-render.
    assert!(update > 0.0 && layout > 0.0, "update {update} ms, layout {layout} ms");
    // Keyboard navigation still moves row by row.
    b.js("document.querySelector('.task-row').focus()", json!([])).await;
    b.keys_to_active("\u{E015}\u{E015}").await;
    let idx =
        b.js("return [...document.querySelectorAll('.task-row')].indexOf(document.activeElement)", json!([])).await;
    assert_eq!(idx, 2);
    b.quit().await;
    s.stop().await;
}

/// The app's last `foundry:sidebar` measure (building and inserting the list for one snapshot), in ms.
async fn sidebar_ms(b: &Browser) -> f64 {
    let v = b
        .js("const m = performance.getEntriesByName('foundry:sidebar'); return m[m.length - 1].duration", json!([]))
        .await;
    v.as_f64().unwrap()
}
