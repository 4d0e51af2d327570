//! The OpenAPI document (`/v1/openapi.json`, docs/openapi.json): the committed copy is what the code generates, it
//! names exactly the routes the server registers, it is well-formed OpenAPI 3.1 whose references all resolve, the
//! server serves it without a session, its security claims hold against the real server, and its request rules
//! admit only what the server's own checks accept.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

const UPDATE_ENV: &str = "FOUNDRY_UPDATE_OPENAPI";

fn committed_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json")
}

fn document() -> Value {
    serde_json::from_str(&foundry::http::openapi::document_json()).expect("the document is JSON")
}

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch"];

/// Every `(METHOD, path)` the document describes.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if item.get(*method).is_some() {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(op) = item.get(*method) {
                out.push((method.to_uppercase(), path.clone(), op));
            }
        }
    }
    out
}

#[test]
fn the_committed_document_is_what_the_code_generates() {
    let generated = foundry::http::openapi::document_json();
    let path = committed_path();
    if std::env::var(UPDATE_ENV).is_ok_and(|v| v == "1") {
        std::fs::write(&path, &generated).unwrap();
        eprintln!("rewrote {}", path.display());
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        let line = committed.lines().zip(generated.lines()).position(|(a, b)| a != b);
        let at = line.map_or_else(|| "its end".to_owned(), |n| format!("line {}", n + 1));
        panic!(
            "docs/openapi.json is stale (first difference at {at}): the API changed. Regenerate it with \
             `{UPDATE_ENV}=1 cargo test --test openapi` and commit it with the change."
        );
    }
}

#[test]
fn every_registered_route_is_documented_and_nothing_else() {
    let registered: BTreeSet<(String, String)> =
        support::routes::registered().into_iter().filter(|(_, path)| path.starts_with("/v1/")).collect();
    // The scan must find the routes this test is about (else a refactor of the route table makes it vacuous).
    for known in [("GET", "/v1/openapi.json"), ("POST", "/v1/orgs/{org}/repos/{repo}/tasks"), ("GET", "/v1/ws")] {
        assert!(registered.contains(&(known.0.to_owned(), known.1.to_owned())), "the scan misses {known:?}");
    }
    let documented = documented(&document());
    let missing: Vec<_> = registered.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&registered).collect();
    assert!(missing.is_empty(), "routes without a #[utoipa::path] in src/http/openapi.rs's list: {missing:?}");
    assert!(extra.is_empty(), "documented routes the server does not register: {extra:?}");
}

/// Resolves a local `$ref` (`#/components/...`).
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r.clone());
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn the_document_is_complete_openapi_3_1() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 100, "the document uses references");
    for r in &all {
        assert!(resolve(&doc, r).is_some(), "unresolved reference {r}");
    }
    let mut ids = BTreeSet::new();
    for (method, path, op) in operations(&doc) {
        let what = format!("{method} {path}");
        let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{what}: no operationId"));
        assert!(ids.insert(id.to_owned()), "{what}: operationId {id} is used twice");
        assert!(op["tags"].as_array().is_some_and(|t| !t.is_empty()), "{what}: no tag");
        let responses = op["responses"].as_object().unwrap_or_else(|| panic!("{what}: no responses"));
        assert!(
            responses.keys().any(|s| s.starts_with('2') || s == "101" || s == "302"),
            "{what}: no success response"
        );
        // Every error response is the JSON error body.
        for (status, response) in responses {
            let response = match response.get("$ref").and_then(Value::as_str) {
                Some(r) => resolve(&doc, r).unwrap(),
                None => response,
            };
            if status.starts_with('4') || status.starts_with('5') {
                let schema = &response["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(schema, "#/components/schemas/Error", "{what} {status}");
            }
        }
        // The path's segments and the operation's path parameters are the same names.
        let segments: BTreeSet<String> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(str::to_owned)
            .collect();
        let params: BTreeSet<String> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "path")
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(segments, params, "{what}: path parameters");
        for p in op["parameters"].as_array().into_iter().flatten().filter(|p| p["in"] == "path") {
            assert_eq!(p["required"], true, "{what}: path parameter {}", p["name"]);
        }
        // What every route of its shape answers (see src/http/openapi.rs).
        let secured = op.get("security").is_some();
        assert!(!secured || responses.contains_key("401"), "{what}: 401");
        for (status, applies) in [
            ("413", op.get("requestBody").is_some() && path != "/v1/webhooks/github"),
            ("500", path != "/v1/openapi.json"),
        ] {
            assert_eq!(responses.contains_key(status), applies, "{what}: {status}");
        }
        // Every JSON body is strict (`deny_unknown_fields` on every body type: docs/API.md, "Request bodies").
        if let Some(body) = op.get("requestBody").filter(|_| path != "/v1/webhooks/github") {
            let schema = &body["content"]["application/json"]["schema"];
            let schema = resolve(&doc, schema["$ref"].as_str().unwrap_or_else(|| panic!("{what}: {schema}"))).unwrap();
            assert_eq!(schema["additionalProperties"], false, "{what}: the body admits unknown fields");
        }
        // A route without segments may still answer 404 (a feature that is off, a login nobody signed in with).
        assert!(segments.is_empty() || responses.contains_key("404"), "{what}: 404");
    }
}

#[actix_rt::test]
async fn the_server_serves_the_document_without_a_session() {
    let s = support::web::start(|_, _| {}).await;
    let res = s.client.get(format!("{}/v1/openapi.json", s.base)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(res.text().await.unwrap(), foundry::http::openapi::document_json());
    s.stop().await;
}

/// A concrete path for a template: every segment a well-formed id nobody created.
fn concrete(path: &str, op: &Value) -> String {
    path.split('/')
        .map(|segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => {
                let param = op["parameters"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap();
                // An enumerated segment (an action, an operation) takes its first value.
                param["schema"]["enum"][0].as_str().unwrap_or("nobody").to_owned()
            }
            None => segment.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[actix_rt::test]
async fn what_the_document_says_about_sessions_holds_for_every_route() {
    let s = support::web::start(|_, _| {}).await;
    let doc = document();
    let mut checked = BTreeMap::new();
    for (method, path, op) in operations(&doc) {
        let url = concrete(&path, op);
        let (status, body) = s.call(&method, &url, None, None).await;
        if op.get("security").is_some() {
            assert_eq!(status, 401, "{method} {url} without a session: {body}");
            assert_eq!(body["error"]["code"], "unauthenticated", "{method} {url}");
        } else {
            assert_ne!(status, 401, "{method} {url} is public: {body}");
        }
        checked.insert(format!("{method} {path}"), status);
    }
    assert!(checked.len() > 50, "{checked:?}");
    s.stop().await;
}

/// A string schema of the document, resolved, as (min, max, pattern).
fn string_rule(doc: &Value, schema: &Value) -> (usize, usize, Option<regex_lite::Regex>) {
    let schema = match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => resolve(doc, r).unwrap(),
        None => schema,
    };
    let min = schema["minLength"].as_u64().unwrap_or(0) as usize;
    let max = schema["maxLength"].as_u64().expect("a bounded string") as usize;
    let pattern = schema["pattern"].as_str().map(|p| regex_lite::Regex::new(p).unwrap_or_else(|e| panic!("{p}: {e}")));
    (min, max, pattern)
}

fn admits(rule: &(usize, usize, Option<regex_lite::Regex>), value: &str) -> bool {
    let chars = value.chars().count();
    chars >= rule.0 && chars <= rule.1 && rule.2.as_ref().is_none_or(|p| p.is_match(value))
}

/// Candidate strings: the edge cases of every rule, then random strings over an alphabet of what the rules treat
/// differently (separators, dots, whitespace Rust trims and what it does not, control characters, non-ASCII).
fn candidates() -> Vec<String> {
    let mut out: Vec<String> = [
        "",
        ".",
        "..",
        "...",
        "a",
        "a.b",
        "-a",
        "a-",
        "_",
        "a/b",
        "a//b",
        "/a",
        "a/",
        "a/.b",
        "a.lock",
        "@",
        "a@{b",
        " a",
        "a ",
        " ",
        "\t",
        "\u{a0}",
        "\u{feff}",
        "\u{2028}x",
        "x\u{85}",
        "\u{3000}",
        "\u{7f}",
        "\u{9f}",
        "é",
        ".git/config",
        "src/.git",
        "a/../b",
        "ok/path.rs",
        "feat/login-page",
        "x".repeat(100).as_str(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    out.push("x".repeat(101));
    out.push("y".repeat(201));
    out.extend(["a@b", "@b", "a@", "a@b@c", "a b@c", "a@\u{85}", "a@b.c"].map(String::from));
    const ALPHABET: &[char] = &[
        'a', 'Z', '7', '.', '_', '-', '/', '@', '{', '~', ':', '\\', ' ', '\t', '\n', '\r', '\0', '\u{7f}', '\u{85}',
        '\u{a0}', '\u{1680}', '\u{2000}', '\u{200b}', '\u{2028}', '\u{3000}', '\u{feff}', 'é', '日',
    ];
    // A fixed xorshift: the same candidates every run.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let len = (next() % 8) as usize;
        out.push((0..len).map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize]).collect());
    }
    out
}

#[test]
fn each_request_rule_admits_only_what_the_servers_check_accepts() {
    use foundry::actors::validate;
    let doc = document();
    let schema = |name: &str| doc["components"]["schemas"][name].clone();
    type Check = fn(&str) -> bool;
    let rules: [(&str, Check); 8] = [
        ("Id", |v| validate::id("f", v).is_ok()),
        ("Email", |v| validate::email("f", v).is_ok()),
        ("DisplayName", |v| validate::display_name("f", v).is_ok()),
        ("Label", |v| validate::name("f", v, 100).is_ok()),
        ("RemoteUrl", |v| validate::name("f", v, 2000).is_ok()),
        ("Text", |v| validate::text("f", v).is_ok()),
        ("Branch", |v| validate::branch(v).is_ok()),
        ("FilePath", |v| foundry::integrations::workspace::validate_path(v).is_ok()),
    ];
    let candidates = candidates();
    for (name, check) in rules {
        let rule = string_rule(&doc, &schema(name));
        let mut admitted = 0;
        for value in &candidates {
            if admits(&rule, value) {
                admitted += 1;
                assert!(check(value), "{name} admits {value:?}, which the server refuses");
            }
        }
        assert!(admitted > 10, "{name} admits almost nothing ({admitted})");
    }
    // The process command: not blank.
    let command = string_rule(&doc, &schema("ProcessSpec")["properties"]["command"]);
    for value in &candidates {
        if admits(&command, value) {
            assert!(!value.trim().is_empty(), "the command rule admits {value:?}");
        }
    }
}

#[test]
fn bounds_written_as_numbers_are_the_constants_the_checks_use() {
    use foundry::actors::user::{
        MAX_ATTACHMENT_LINE_BYTES, MAX_ATTACHMENT_PATH_CHARS, MAX_AVATAR_URL_CHARS, MAX_DRAFT_ATTACHMENTS,
        MAX_DRAFT_TEXT_BYTES, MAX_EMAIL_CHARS, MAX_ID_CHARS,
    };
    let doc = document();
    let s = &doc["components"]["schemas"];
    let attachment = &s["DraftAttachment"]["properties"];
    assert_eq!(attachment["id"]["maxLength"], MAX_ID_CHARS);
    assert_eq!(attachment["filePath"]["maxLength"], MAX_ATTACHMENT_PATH_CHARS);
    assert_eq!(attachment["lineContent"]["maxLength"], MAX_ATTACHMENT_LINE_BYTES);
    assert_eq!(s["DraftBody"]["properties"]["text"]["maxLength"], MAX_DRAFT_TEXT_BYTES / 4);
    assert_eq!(s["DraftBody"]["properties"]["attachments"]["maxItems"], MAX_DRAFT_ATTACHMENTS);
    assert_eq!(s["ProfileBody"]["properties"]["avatarUrl"]["maxLength"], MAX_AVATAR_URL_CHARS);
    assert_eq!(s["Email"]["maxLength"], MAX_EMAIL_CHARS);
    let param = |method: &str, path: &str, name: &str| {
        let op = &doc["paths"][path][method];
        op["parameters"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap()["schema"].clone()
    };
    let key = param("post", "/v1/orgs", "Idempotency-Key");
    assert_eq!(key["maxLength"], foundry::http::idempotency::MAX_KEY_LEN);
    assert_eq!(param("get", "/v1/orgs/{org}/audit", "limit")["maximum"], 500);
}

#[actix_rt::test]
async fn the_bounds_hold_at_the_server() {
    let s = support::web::start(|_, _| {}).await;
    let token = s.sign_in("alice").await;
    let limit = |n: u32| format!("/v1/orgs/acme/audit?limit={n}");
    let (status, body) =
        s.call("POST", "/v1/orgs", Some(&token), Some(serde_json::json!({"id": "acme", "displayName": "Acme"}))).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(s.call("GET", &limit(500), Some(&token), None).await.0, 200);
    assert_eq!(s.call("GET", &limit(501), Some(&token), None).await.0, 400);
    assert_eq!(s.call("GET", &limit(0), Some(&token), None).await.0, 400);
    s.stop().await;
}
