//! The web app's team and workspace screens in a real headless Chromium (see `support::browser`): members invited
//! by login, roles changed, an admin operation, leaving; the settings page (name, default model, sign-in sessions);
//! the new-task form's title/branch preview agreeing with creation; Markdown replies; drafts saved as you type and
//! restored on another device; unread cleared when viewed; a dropped network shown as offline and recovered by
//! reconnecting and resubscribing; and a task with a real git workspace: changed files and their diff, a pull
//! request published and merged on the local GitHub-compatible server, sandbox processes with their logs, archive;
//! the runtime inspector for a server admin (kinds, live actors, one actor's topics, trace, tables and a read-only
//! query) and its refusal for anyone else.
//!
//! Needs `chromium` + `chromedriver`, `git`, and the sandbox-agent binary (`SANDBOX_AGENT_BIN`, for processes):
//! each missing one skips the test that needs it, saying why, except under `CI=true`, where it fails.

mod support;

use std::sync::Arc;
use std::time::Duration;

use foundry::actors::github_data::GitHubService;
use foundry::actors::session::SessionAgent;
use foundry::actors::task::GitTokens;
use foundry::integrations::agent::BuiltinAgent;
use foundry::integrations::github::client::GitHubClient;
use foundry::integrations::github::fake::{FakeGitHub, Fixture};
use foundry::integrations::sandbox::{ProcessService, SandboxProcesses};
use foundry::integrations::workspace::{LocalShell, StaticToken, Workspaces};
use serde_json::{json, Value};
use support::browser::{screenshot_dir, Driver, Flaky};
use support::eventually_some;
use support::web::{start, TestServer};

async fn ok(s: &TestServer, method: &str, path: &str, token: &str, body: Option<Value>) -> Value {
    let (st, res) = s.call(method, path, Some(token), body).await;
    assert!((200..300).contains(&st), "{method} {path}: {st} {res}");
    res
}

/// The first session's overlay of `task` for the token's user.
async fn overlay(s: &TestServer, token: &str, task: &str) -> Value {
    let t = ok(s, "GET", &format!("/v1/orgs/acme/repos/web/tasks/{task}"), token, None).await;
    t["overlay"]["sessions"].as_array().unwrap().iter().find(|o| o["sessionId"] == "s1").cloned().unwrap_or_default()
}

#[actix_rt::test]
async fn members_settings_previews_drafts_and_reconnects_in_the_browser() {
    let Some(driver) = Driver::start().await else { return };
    let s = start(|api, _| {
        let agent = BuiltinAgent::new(Duration::from_millis(2));
        api.domain.runtime.provide(Arc::new(SessionAgent(Arc::new(agent))));
    })
    .await;
    let shots = screenshot_dir();
    let alice = s.sign_in("alice").await;
    let bob_token = s.sign_in("bob").await;
    let bob = s.user_id(&bob_token).await;
    ok(&s, "POST", "/v1/orgs", &alice, Some(json!({ "id": "acme", "displayName": "Acme" }))).await;
    let repo = json!({ "repoId": "web", "fullName": "acme/web", "remoteUrl": "https://example.invalid/acme/web.git" });
    ok(&s, "POST", "/v1/orgs/acme/repos", &alice, Some(repo)).await;

    // Members: an unknown login is refused with the API's message; a known one (any case) is added.
    // (Alice's browser reaches the server through a connection that can drop, for the end of the walk.)
    let net = Flaky::start(s.addr);
    let a = driver.browser().await;
    a.signed_in(&net.base, &alice, "/orgs/acme").await;
    a.wait("the member list", "return document.querySelector('#members')?.textContent.includes('alice')").await;
    a.type_into("form[data-form=invite] input[name=login]", "nobody-here").await;
    a.click("form[data-form=invite] button[type=submit]").await;
    a.wait(
        "the unknown-login message",
        "return document.querySelector('form[data-form=invite] .form-error').textContent.includes('nobody has signed in')",
    )
    .await;
    a.clear("form[data-form=invite] input[name=login]").await;
    a.type_into("form[data-form=invite] input[name=login]", "BOB").await;
    a.click("form[data-form=invite] button[type=submit]").await;
    let bob_row = format!("#members li[data-user=\"{bob}\"]");
    a.wait("bob in the member list", &format!("return !!document.querySelector({})", json!(bob_row))).await;

    // Roles: made an admin from the row's select.
    a.click(&format!("{bob_row} select option[value=admin]")).await;
    eventually_some("bob's admin role", || async {
        let members = ok(&s, "GET", "/v1/orgs/acme/members", &alice, None).await;
        members.as_array().unwrap().iter().any(|m| m["userId"] == bob.as_str() && m["role"] == "admin").then_some(())
    })
    .await;

    // Bob, now an admin, sees the administration card, runs an operation, then leaves.
    let b = driver.browser().await;
    b.signed_in(&s.base, &bob_token, "/orgs/acme").await;
    b.wait("bob's administration card", "return document.querySelector('#admin-card')?.hidden === false").await;
    b.click("[data-action=admin-op][data-op=rebuild]").await;
    b.click("#confirm-ok").await;
    b.wait(
        "the operation's confirmation",
        "return [...document.querySelectorAll('.toast')].some(t => t.textContent.includes('Rebuild: done'))",
    )
    .await;
    b.click(&format!("{bob_row} [data-action=leave-org]")).await;
    b.click("#confirm-ok").await;
    b.wait("bob's organizations page", "return location.pathname === '/orgs'").await;
    let members = ok(&s, "GET", "/v1/orgs/acme/members", &alice, None).await;
    assert!(!members.as_array().unwrap().iter().any(|m| m["userId"] == bob.as_str()), "{members}");
    a.wait("bob gone from alice's list", &format!("return !document.querySelector({})", json!(bob_row))).await;
    a.shot(&shots, "09-members").await;
    b.quit().await;

    // Settings: name, default model, sign-in sessions.
    a.click("#user-link").await;
    a.wait(
        "the settings page",
        "return location.pathname === '/settings' && !!document.querySelector('#settings-model option')",
    )
    .await;
    a.clear("form[data-form=profile] input[name=name]").await;
    a.type_into("form[data-form=profile] input[name=name]", "Alice Liddell").await;
    a.click("form[data-form=profile] button[type=submit]").await;
    a.wait(
        "the new name in the top bar",
        "return document.querySelector('#user-name').textContent === 'Alice Liddell'",
    )
    .await;
    let me = ok(&s, "GET", "/v1/me", &alice, None).await;
    let models = ok(&s, "GET", "/v1/models", &alice, None).await;
    let model = models.as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).find(|m| *m != me["defaultModel"]);
    let model = model.expect("a second model in the catalog").to_owned();
    a.click(&format!("#settings-model option[value=\"{model}\"]")).await;
    a.click("form[data-form=default-model] button[type=submit]").await;
    eventually_some("the new default model", || async {
        (ok(&s, "GET", "/v1/me", &alice, None).await["defaultModel"] == model.as_str()).then_some(())
    })
    .await;
    a.wait(
        "this browser among the sign-in sessions",
        "return document.querySelector('#auth-sessions')?.textContent.includes('this browser')",
    )
    .await;
    a.shot(&shots, "10-settings").await;

    // New task: the preview asks the server, so it is what creation assigns.
    a.goto(&format!("{}/orgs/acme/new", net.base)).await;
    a.wait("the new-task form", "return !!document.querySelector('#nt-repo option[value=web]')").await;
    let picked = a.js("return document.querySelector('select[name=model]').value", json!([])).await;
    assert_eq!(picked, model.as_str(), "the user's default model is preselected");
    a.type_into("textarea[name=prompt]", "Fix the login crash on Safari").await;
    a.wait(
        "the derived names",
        "return document.querySelector('#nt-branch')?.textContent === 'fix/fix-the-login-crash-on-safari' && document.querySelector('#nt-title').textContent === 'fix: fix the login crash on Safari'",
    )
    .await;
    a.shot(&shots, "11-new-task").await;
    a.click("form[data-form=new-task] button[type=submit]").await;
    a.wait("the task view", "return location.pathname.includes('/tasks/') && !!document.querySelector('#task-title')")
        .await;
    let tasks = ok(&s, "GET", "/v1/orgs/acme/repos/web/tasks", &alice, None).await;
    assert_eq!(tasks[0]["branch"], "fix/fix-the-login-crash-on-safari", "{tasks}");
    a.goto(&format!("{}/orgs/acme/new", net.base)).await;
    a.type_into("textarea[name=prompt]", "Fix the login crash on Safari").await;
    a.wait(
        "the next free branch",
        "return document.querySelector('#nt-branch')?.textContent === 'fix/fix-the-login-crash-on-safari-2'",
    )
    .await;
    a.click("form[data-form=new-task] details summary").await;
    a.type_into("input[name=branch]", "fix/fix-the-login-crash-on-safari").await;
    a.wait(
        "the taken branch refused",
        "return document.querySelector('#nt-preview')?.textContent.includes('already has a task')",
    )
    .await;

    // Markdown replies; the user's own text stays as typed.
    let created = ok(
        &s,
        "POST",
        "/v1/orgs/acme/repos/web/tasks",
        &alice,
        Some(json!({ "prompt": "Explain `parse_args` and **why** it fails" })),
    )
    .await;
    let task = created["taskId"].as_str().unwrap().to_owned();
    let task_url = format!("/orgs/acme/repos/web/tasks/{task}");
    a.goto(&format!("{}{task_url}", net.base)).await;
    a.wait(
        "the agent's reply rendered as Markdown",
        "return document.querySelector('.msg-agent .msg-md code')?.textContent === 'parse_args' && document.querySelector('.msg-agent .msg-md strong')?.textContent === 'why'",
    )
    .await;
    let user_text = a.js("return document.querySelector('.msg-user .msg-text').textContent", json!([])).await;
    assert_eq!(user_text, "Explain `parse_args` and **why** it fails");

    // Drafts: saved as you type, restored on another device, cleared by sending.
    a.type_into("#composer", "half a thought").await;
    eventually_some("the saved draft", || async {
        (overlay(&s, &alice, &task).await["draft"]["text"] == "half a thought").then_some(())
    })
    .await;
    let other_device = s.sign_in("alice").await;
    let c = driver.browser().await;
    ok(&s, "POST", &format!("/v1/orgs/acme/repos/web/tasks/{task}/unread"), &alice, None).await;
    assert_eq!(overlay(&s, &alice, &task).await["unread"], true);
    c.signed_in(&s.base, &other_device, &task_url).await;
    c.wait("the draft restored", "return document.querySelector('#composer')?.value === 'half a thought'").await;
    eventually_some("unread cleared by viewing", || async {
        (overlay(&s, &alice, &task).await["unread"] == false).then_some(())
    })
    .await;
    c.quit().await;
    a.click("form[data-form=send] button[type=submit]").await;
    eventually_some("the draft cleared by sending", || async {
        (overlay(&s, &alice, &task).await["draft"]["text"] == "").then_some(())
    })
    .await;

    // A dropped network: shown as offline, then reconnected and resubscribed; what changed meanwhile arrives.
    net.set_up(false);
    a.wait("the offline banner", "return document.querySelector('#conn').textContent.startsWith('Offline')").await;
    let path = format!("/v1/orgs/acme/repos/web/tasks/{task}");
    ok(&s, "PATCH", &path, &alice, Some(json!({ "title": "Renamed while offline" }))).await;
    a.shot(&shots, "12-offline").await;
    net.set_up(true);
    a.wait("live again", "return document.querySelector('#conn').textContent === 'Live'").await;
    a.wait(
        "the change made while offline",
        "return document.querySelector('#task-title')?.textContent === 'Renamed while offline'",
    )
    .await;

    a.quit().await;
    s.stop().await;
}

const TOKEN: &str = "ghs_web_app_workspace_token";

#[actix_rt::test]
async fn a_task_workspace_in_the_browser() {
    let git = std::process::Command::new("git").arg("--version").output().is_ok_and(|o| o.status.success());
    if !git {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "git is not installed (CI=true: not skipping)");
        eprintln!("skipped: git is not installed");
        return;
    }
    let Some(sandbox) = support::sandbox::start(false).await else { return };
    let Some(driver) = Driver::start().await else { return };
    let git_root = tempfile::tempdir().unwrap();
    let fixture = Fixture::new("acme");
    let fake = FakeGitHub::start_with_git(fixture, TOKEN, git_root.path().to_path_buf()).await;
    let app_js = b"export function greet(name) {\n  return `Hello ${name}`;\n}\n".to_vec();
    fake.create_repo("web", "main", &[("README.md", b"# Web\n".to_vec()), ("src/app.js", app_js)]);
    let sandboxes = tempfile::tempdir().unwrap();
    let (gh, root, agent_url) = (fake.base_url(), sandboxes.path().to_path_buf(), sandbox.url.clone());
    let github = fake.clone();
    let s = start(move |api, _| {
        // alice signs in through the local GitHub as an admin of `acme` there, so she may connect it.
        support::web::sign_in_through(api, &github, true);
        let rt = &api.domain.runtime;
        rt.provide(Arc::new(GitHubService(Arc::new(GitHubClient::new(&gh, TOKEN)))));
        rt.provide(Arc::new(Workspaces::new(Arc::new(LocalShell::new(root)))));
        rt.provide(Arc::new(GitTokens(Arc::new(StaticToken(Some(TOKEN.into()))))));
        rt.provide(Arc::new(SessionAgent(Arc::new(BuiltinAgent::new(Duration::from_millis(2))))));
        rt.provide(Arc::new(ProcessService(Arc::new(SandboxProcesses::new(&agent_url)))));
    })
    .await;
    let shots = screenshot_dir();
    let alice = s.sign_in("alice").await;
    ok(&s, "POST", "/v1/orgs", &alice, Some(json!({ "id": "acme", "displayName": "Acme" }))).await;
    let connect = json!({ "login": "acme", "kind": "organization" });
    ok(&s, "POST", "/v1/orgs/acme/github/connect", &alice, Some(connect)).await;
    let repo = eventually_some("the synced repository", || async {
        let repos = ok(&s, "GET", "/v1/orgs/acme/repos", &alice, None).await;
        repos.as_array().unwrap().iter().find(|r| r["fullName"] == "acme/web").map(|r| r["repoId"].clone())
    })
    .await;
    let repo = repo.as_str().unwrap().to_owned();
    let body = json!({ "prompt": "Edit src/app.js to greet people politely" });
    let created = ok(&s, "POST", &format!("/v1/orgs/acme/repos/{repo}/tasks"), &alice, Some(body)).await;
    let task = created["taskId"].as_str().unwrap().to_owned();

    // The changed file and its diff.
    let a = driver.browser().await;
    a.signed_in(&s.base, &alice, &format!("/orgs/acme/repos/{repo}/tasks/{task}")).await;
    a.wait(
        "the changed file",
        "return [...document.querySelectorAll('#inspector .file .path')].some(p => p.textContent === 'src/app.js')",
    )
    .await;
    a.wait(
        "the agent's turn done",
        "return [...document.querySelectorAll('.msg-agent')].some(m => m.textContent.includes('Done.'))",
    )
    .await;
    a.click("#inspector [data-action=diff][data-path=\"src/app.js\"]").await;
    a.wait("the diff", "return document.querySelectorAll('#dialog .dl.add').length > 0").await;
    a.shot(&shots, "13-diff").await;
    a.click("#dialog [data-action=close-dialog]").await;

    // Pull request: published, then merged, on the local GitHub; the badges follow live.
    a.click("[data-action=publish-pr]").await;
    a.wait("the open pull request", "return !!document.querySelector('.pr-link .pr-open')").await;
    a.wait("the sidebar's badge", "return !!document.querySelector('.task-row.current .pr-open')").await;
    a.shot(&shots, "14-pull-request").await;
    a.click("[data-action=merge]").await;
    a.wait("the merged badge", "return !!document.querySelector('.pr-link .pr-merged')").await;
    let merges = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(fake.git_dir("web").unwrap())
        .args(["log", "--merges", "--format=%s", "main"])
        .output()
        .unwrap();
    assert!(!merges.stdout.is_empty(), "a merge commit on main of the GitHub side");

    // Sandbox processes: run, exit code, logs.
    a.type_into("form[data-form=run-process] input[name=commandLine]", "sh -c 'echo hello from the sandbox; exit 3'")
        .await;
    a.click("form[data-form=run-process] button[type=submit]").await;
    a.wait(
        "the exited process",
        "return document.querySelector('#process-list .process .badge')?.textContent === 'exit 3'",
    )
    .await;
    a.click("#process-list [data-action=process-logs]").await;
    a.wait(
        "its output",
        "return document.querySelector('#process-log')?.textContent.includes('hello from the sandbox')",
    )
    .await;
    a.shot(&shots, "15-process-logs").await;
    a.click("#dialog [data-action=close-dialog]").await;
    a.click("#process-list [data-action=process-remove]").await;
    a.wait("the process removed", "return !document.querySelector('#process-list .process')").await;

    // Archive, with confirmation: gone from the sidebar unless archived tasks are shown.
    a.click("[data-action=archive]").await;
    a.click("#confirm-ok").await;
    a.wait("the archived status", "return document.querySelector('.pill')?.textContent.includes('Archived')").await;
    a.wait("the task hidden from the sidebar", "return !document.querySelector('.task-row.current')").await;
    a.click(".sidebar-foot input").await;
    a.wait("shown with archived tasks", "return !!document.querySelector('.task-row.current')").await;

    a.quit().await;
    s.stop().await;
    drop(sandbox);
}

#[actix_rt::test]
async fn the_runtime_inspector_in_the_browser() {
    let Some(driver) = Driver::start().await else { return };
    let s = start(|api, _| api.server_admins = vec!["root".to_owned()]).await;
    let shots = screenshot_dir();
    let root = s.sign_in("root").await;
    let bob = s.sign_in("bob").await;
    let tallies = s.rt.registry::<support::Tally>();
    let a = "a".to_owned();
    for by in 1..=3 {
        tallies.mutate(&a, support::Add::new(by)).await.unwrap();
    }

    // The admin finds the inspector in the top bar, then the kind, the live actor and its state.
    let b = driver.browser().await;
    b.signed_in(&s.base, &root, "/orgs").await;
    b.wait("the inspector's link", "return document.querySelector('#inspector-link')?.hidden === false").await;
    b.click("#inspector-link").await;
    b.wait("the kinds", "return !!document.querySelector('#inspect-kinds tr[data-kind=tally]')").await;
    b.click("#inspect-kinds tr[data-kind=tally] a").await;
    b.wait("actor a among the live ones", "return !!document.querySelector('#inspect-actors tr[data-key=a]')").await;
    b.click("#inspect-actors tr[data-key=a] a").await;
    b.wait("a's topic", "return document.querySelector('#inspect-topics')?.textContent.includes('tally')").await;
    b.wait("a's trace", "return document.querySelector('#inspect-trace-rows')?.textContent.includes('Add')").await;

    // A read-only query answers; a write is refused with the server's reason and changes nothing.
    b.clear("#inspect-sql textarea").await;
    b.type_into("#inspect-sql textarea", "SELECT value FROM tally").await;
    b.click("#inspect-sql button[type=submit]").await;
    b.wait("the query's answer", "return document.querySelector('#inspect-result td')?.textContent === '6'").await;
    b.clear("#inspect-sql textarea").await;
    b.type_into("#inspect-sql textarea", "DELETE FROM entries").await;
    b.click("#inspect-sql button[type=submit]").await;
    b.wait(
        "the refusal",
        "return document.querySelector('#inspect-result .form-error')?.textContent.includes('only reads')",
    )
    .await;
    b.click("[data-inspect=table][data-table=entries]").await;
    b.wait("a page of entries", "return document.querySelector('#inspect-dump')?.textContent.includes('add 2')").await;
    b.shot(&shots, "12-inspector").await;
    assert_eq!(tallies.read(&a, support::GetValue).await.unwrap(), 6);
    b.quit().await;

    // Anyone else: no link, and the page says why.
    let c = driver.browser().await;
    c.signed_in(&s.base, &bob, "/admin").await;
    c.wait(
        "the refusal",
        "return document.querySelector('#runtime-inspector')?.textContent.includes('only server admins')",
    )
    .await;
    assert_eq!(c.js("return document.querySelector('#inspector-link').hidden", json!([])).await, true);
    c.quit().await;
    s.stop().await;
}
