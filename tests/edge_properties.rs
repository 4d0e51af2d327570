//! Issue 12: property tests over the request edge, with a small seeded generator (no fuzzing crate). Key escaping is
//! safe and injective; id validation agrees with the documented rule; every route, fed generated paths, headers and
//! bodies, never answers 5xx, always answers errors as documented JSON, and a refused request creates no file.
//!
//! Each test prints its seed. Reproduce a failure with `FOUNDRY_PROP_SEED=<seed>`; run longer with
//! `FOUNDRY_PROP_CASES=<n>` (the HTTP property runs a tenth of that, at least its default).

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use foundry::actors::task::workspace::workspace_id;
use foundry::actors::{validate, RepoKey, SessionKey, TaskKey};
use foundry::runtime::key::file_stem;
use foundry::runtime::EntityKey;
use serde_json::{json, Value};
use support::web::{start, TestServer};

// ---------------------------------------------------------------------------------------------------------------
// The generator

/// xorshift64*: tiny, seedable, good enough to spread cases; the same seed gives the same cases.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        // A zero state would stay zero.
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15 | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The seed of a test: `FOUNDRY_PROP_SEED` (decimal or 0x-hex), else fresh; printed either way.
fn seed(test: &str) -> u64 {
    let seed = match std::env::var("FOUNDRY_PROP_SEED") {
        Ok(s) => {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("FOUNDRY_PROP_SEED must be a u64, got {s:?}"))
        }
        Err(_) => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            now.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32)
        }
    };
    eprintln!("{test}: FOUNDRY_PROP_SEED={seed}");
    seed
}

/// `FOUNDRY_PROP_CASES`, else `default`.
fn cases(default: usize) -> usize {
    std::env::var("FOUNDRY_PROP_CASES").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(default)
}

/// Pieces strings are built from: id characters, separators, escapes and their lookalikes, dot names, controls,
/// whitespace, non-ASCII (incl. a zero-width space and an emoji), characters special to paths, URLs and shells.
const PIECES: &[&str] = &[
    "a", "Z", "0", "9", "x", "t1", "s1", "acme", "r1", "-", "_", ".", "..", "/", "\\", "%", "%2F", "%2f", "%25", "%2E",
    "%00", "~", " ", "\0", "\n", "\r", "\t", "\u{7}", "\u{1b}", "\u{7f}", "\u{85}", "\u{a0}", "é", "ü", "日", "🦀",
    "\u{200b}", "İ", "K", ":", "?", "#", "&", "=", "+", "@", "{", "}", "*", "\"", "'", "<", ">", "|", "$",
];
const ID_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";

/// A string of any shape: empty, dot names, short mixes of [`PIECES`], ids of boundary lengths (some with one bad
/// character), and very long ones.
fn text(rng: &mut Rng) -> String {
    match rng.below(10) {
        0 => rng.pick(&["", ".", "..", "...", "%2E", "%2E%2E", ".%2E", "/", "%", "\0"]).to_string(),
        1..=4 => (0..1 + rng.below(8)).map(|_| *rng.pick(PIECES)).collect(),
        5..=7 => {
            let any = 1 + rng.below(120);
            let len = *rng.pick(&[1, 2, 3, 39, 99, 100, 101, any]);
            let mut s: String = (0..len).map(|_| *rng.pick(ID_CHARS) as char).collect();
            if rng.chance(40) {
                let at = rng.below(len + 1);
                let at = (0..=at).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
                let piece = *rng.pick(PIECES);
                s.insert_str(at, piece);
            }
            s
        }
        8 => (0..150 + rng.below(3000)).map(|_| *rng.pick(PIECES)).collect(),
        _ => (0..150 + rng.below(400)).map(|_| *rng.pick(ID_CHARS) as char).collect(),
    }
}

/// A variant of `s` that a careless encoding could confuse with it: case swapped, a `/` or `%` written as its
/// escape (or the reverse), a dot doubled, a character appended.
fn lookalike(rng: &mut Rng, s: &str) -> String {
    match rng.below(6) {
        0 => s
            .chars()
            .map(|c| if c.is_ascii_lowercase() { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
            .collect(),
        1 => s.replacen('/', "%2F", 1).replacen('.', "%2E", 1),
        2 => s.replacen("%2F", "/", 1).replacen("%25", "%", 1),
        3 => s.replacen('.', "..", 1),
        4 => format!("{s}{}", rng.pick(PIECES)),
        _ => s.replacen('%', "%25", 1),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// 1. Key escaping

/// A file name component that cannot leave its directory or trouble a POSIX file system, with room for the longest
/// suffix added to it: an actor database's `.sqlite3-wal`, a workspace's `.partial`.
fn assert_safe_component(name: &str, suffix: &str, of: &dyn std::fmt::Debug) {
    assert!(!name.is_empty(), "{of:?} -> empty name");
    assert!(name != "." && name != "..", "{of:?} -> {name:?}");
    assert!(!name.contains('/') && !name.contains('\0'), "{of:?} -> {name:?}");
    assert!(!name.chars().any(char::is_control), "{of:?} -> {name:?} has a control character");
    assert!(name.len() + suffix.len() <= 255, "{of:?} -> {} bytes (+ {suffix})", name.len());
}

#[test]
fn key_escaping_is_safe_injective_and_round_trips() {
    let mut rng = Rng::new(seed("key_escaping"));
    let n = cases(4000);
    // Stem -> the encoded key it came from: a second key on one stem is a collision.
    let mut stems: HashMap<String, String> = HashMap::new();
    let mut workspaces: HashMap<String, TaskKey> = HashMap::new();
    let mut stem_of = |encoded: &str| {
        let stem = file_stem(encoded).unwrap_or_else(|e| panic!("{encoded:?} has no file name: {e}"));
        assert_safe_component(&stem, ".sqlite3-wal", &encoded);
        if let Some(other) = stems.insert(stem.clone(), encoded.to_owned()) {
            assert_eq!(other, encoded, "two keys share the file name {stem:?}");
        }
    };
    let mut checked = 0usize;
    for _ in 0..n {
        let a = text(&mut rng);
        let b = if rng.chance(50) { lookalike(&mut rng, &a) } else { text(&mut rng) };
        for s in [&a, &b] {
            // Plain keys (organization, user, audit log ...): the text is the key.
            assert_eq!(&String::decode(&s.encode()).unwrap(), s);
            if s.is_empty() {
                assert!(file_stem(s).is_err(), "the empty key must have no file");
            } else {
                stem_of(s);
            }
            checked += 1;
        }
        // Compound keys from any text round-trip, and every kind's file name is safe and its own.
        let parts = [a.clone(), b.clone(), text(&mut rng), text(&mut rng)];
        let repo = RepoKey::new(parts[0].clone(), parts[1].clone());
        let task = repo.task(parts[2].clone());
        let session = task.session(parts[3].clone());
        assert_eq!(RepoKey::decode(&repo.encode()).unwrap(), repo);
        assert_eq!(TaskKey::decode(&task.encode()).unwrap(), task);
        assert_eq!(SessionKey::decode(&session.encode()).unwrap(), session);
        for encoded in [repo.encode(), task.encode(), session.encode()] {
            stem_of(&encoded);
        }
        // A task's workspace directory, for tasks whose ids the domain accepts.
        let valid = |s: &str| validate::id("id", s).is_ok();
        if valid(&task.org) && valid(&task.repo) && valid(&task.task) {
            let name = workspace_id(&task);
            assert_safe_component(&name, ".partial", &task);
            if let Some(other) = workspaces.insert(name.clone(), task.clone()) {
                assert_eq!(other, task, "two tasks share the workspace {name:?}");
            }
        }
        checked += 4;
    }
    // The generator reaches what it must, or the property says little.
    let valid_tasks = workspaces.len();
    assert!(valid_tasks > n / 200, "only {valid_tasks} tasks with valid ids in {n} cases");
    eprintln!("key_escaping: {checked} keys, {} distinct file names, {valid_tasks} workspace names", stems.len());
}

/// Found by the property above (`FOUNDRY_PROP_SEED=1`): a task's workspace directory is named after its three ids,
/// and ids the domain accepts could spell a name longer than a file name may be (100 + 100 + 100 characters, up to
/// three times that once escaped), so provisioning such a task could never succeed. Long names now keep a prefix
/// plus a hash; names that fit are unchanged.
#[test]
fn long_valid_ids_give_a_workspace_directory_that_can_exist() {
    let seed_case = TaskKey {
        org: ".C_eEFaV1zwENzC5qEjGYumUDJmIlV3zxxkpftefl8wCWzTKtq3eFjKGOKz3Z7BTCicSKeChMX3Eu-XpVjrbv.1jsajG.00cPWiK"
            .into(),
        repo: ".C_eEFaV1zwENzC5qEjGYumUDJmIlV3zxxkpftefl8wCWzTKtq3eFjKGOKz3Z7BTCicSKeChMX3Eu-XpVjrbv.1jsajG.00cPWiK"
            .into(),
        task: "5J.d44g9SiVm7XYzMgc-OBFPnzyQGfhs9HQ7LIxXJjVILdMQYjFSyGN3w45DXgXeAhDCdmoDvzhK9Z50SPa5GEDXuAVWEsqZABlW"
            .into(),
    };
    let escapes = TaskKey { org: "_".repeat(100), repo: ".".repeat(100), task: "a_".repeat(50) };
    let dir = tempfile::tempdir().unwrap();
    for task in [&seed_case, &escapes] {
        for part in [&task.org, &task.repo, &task.task] {
            validate::id("id", part).unwrap();
        }
        let name = workspace_id(task);
        assert_safe_component(&name, ".partial", task);
        let other = TaskKey { task: format!("{}x", &task.task[..99]), ..task.clone() };
        assert_ne!(workspace_id(&other), name, "long names stay distinct");
        std::fs::create_dir(dir.path().join(&name)).expect("the workspace directory can be created");
        std::fs::create_dir(dir.path().join(format!("{name}.partial"))).expect("and its clone's temporary one");
    }
    // Names that fit are what they were (existing workspaces keep their directory).
    let short = TaskKey { org: "acme".into(), repo: "my_repo.x".into(), task: "t1".into() };
    assert_eq!(workspace_id(&short), "acme.my_5frepo_2ex.t1");
}

// ---------------------------------------------------------------------------------------------------------------
// 2. Validation

/// docs/API.md, "Identifiers and names", written again here: 1-100 characters of `[A-Za-z0-9._-]`, not `.` or `..`.
fn documented_id_rule(s: &str) -> bool {
    let n = s.chars().count();
    (1..=100).contains(&n)
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
        && s != "."
        && s != ".."
}

#[test]
fn every_id_kind_agrees_with_the_documented_rule() {
    type Rule = fn(&'static str, &str) -> foundry::actors::DomainResult<()>;
    let kinds: [(&str, Rule); 6] = [
        ("org_id", validate::org_id),
        ("repo_id", validate::repo_id),
        ("task_id", validate::task_id),
        ("session_id", validate::session_id),
        ("user_id", validate::user_id),
        ("login", validate::login),
    ];
    let mut rng = Rng::new(seed("id_rule"));
    let n = cases(4000);
    let (mut accepted, mut refused) = (0usize, 0usize);
    for _ in 0..n {
        let base = text(&mut rng);
        let s = if rng.chance(50) { base } else { lookalike(&mut rng, &base) };
        let want = documented_id_rule(&s);
        for (kind, rule) in &kinds {
            match rule("field", &s) {
                Ok(()) => assert!(want, "{kind} accepts {s:?}, which the documented rule refuses"),
                Err(e) => {
                    assert!(!want, "{kind} refuses {s:?}, which the documented rule accepts: {e}");
                    assert_eq!(e.code(), "invalid_input", "{kind} {s:?}");
                }
            }
        }
        if want {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    // Both sides of the rule are exercised in earnest.
    assert!(accepted > n / 10 && refused > n / 10, "{accepted} accepted, {refused} refused of {n}");
    eprintln!("id_rule: {n} strings x {} kinds ({accepted} valid, {refused} invalid)", kinds.len());
}

// ---------------------------------------------------------------------------------------------------------------
// 3. The HTTP edge

/// Every route the app registers (checked against src/http/ below), as `(method, path pattern)`.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/"),
    ("GET", "/sign-in"),
    ("GET", "/settings"),
    ("GET", "/orgs"),
    ("GET", "/orgs/{rest:.*}"),
    ("GET", "/admin"),
    ("GET", "/admin/{rest:.*}"),
    ("GET", "/app.js"),
    ("GET", "/inspector.js"),
    ("GET", "/app.css"),
    ("GET", "/icon.svg"),
    ("GET", "/favicon.ico"),
    ("POST", "/v1/auth/dev/sign-in"),
    ("GET", "/v1/auth/github/start"),
    ("GET", "/v1/auth/github/callback"),
    ("POST", "/v1/auth/sign-out"),
    ("GET", "/v1/auth/whoami"),
    ("GET", "/v1/auth/sessions"),
    ("DELETE", "/v1/auth/sessions"),
    ("DELETE", "/v1/auth/sessions/{session}"),
    ("GET", "/v1/me"),
    ("PATCH", "/v1/me"),
    ("PUT", "/v1/me/default-model"),
    ("PUT", "/v1/me/starter-repo"),
    ("GET", "/v1/models"),
    ("PUT", "/v1/me/active-organization"),
    ("GET", "/v1/openapi.json"),
    ("GET", "/v1/orgs"),
    ("POST", "/v1/orgs"),
    ("GET", "/v1/orgs/{org}"),
    ("GET", "/v1/orgs/{org}/members"),
    ("POST", "/v1/orgs/{org}/members"),
    ("PUT", "/v1/orgs/{org}/members/{user}"),
    ("DELETE", "/v1/orgs/{org}/members/{user}"),
    ("GET", "/v1/orgs/{org}/repos"),
    ("POST", "/v1/orgs/{org}/repos"),
    ("GET", "/v1/orgs/{org}/repos/{repo}"),
    ("GET", "/v1/orgs/{org}/repos/{repo}/tasks"),
    ("GET", "/v1/orgs/{org}/audit"),
    ("GET", "/v1/orgs/{org}/github"),
    ("POST", "/v1/orgs/{org}/github/connect"),
    ("POST", "/v1/orgs/{org}/github/sync"),
    ("POST", "/v1/orgs/{org}/admin/{op}"),
    ("GET", "/v1/orgs/{org}/repos/{repo}/tasks/{task}/processes"),
    ("POST", "/v1/orgs/{org}/repos/{repo}/tasks/{task}/processes"),
    ("GET", "/v1/orgs/{org}/repos/{repo}/tasks/{task}/processes/{process}"),
    ("DELETE", "/v1/orgs/{org}/repos/{repo}/tasks/{task}/processes/{process}"),
    ("GET", "/v1/orgs/{org}/repos/{repo}/tasks/{task}/processes/{process}/logs"),
    ("POST", "/v1/orgs/{org}/repos/{repo}/tasks/{task}/processes/{process}/{op}"),
    ("POST", "/v1/orgs/{org}/repos/{repo}/tasks"),
    ("POST", "/v1/orgs/{org}/repos/{repo}/task-names"),
    ("GET", "/v1/orgs/{org}/repos/{repo}/tasks/{task}"),
    ("PATCH", "/v1/orgs/{org}/repos/{repo}/tasks/{task}"),
    ("PUT", "/v1/orgs/{org}/repos/{repo}/tasks/{task}/active-session"),
    ("GET", "/v1/orgs/{org}/repos/{repo}/tasks/{task}/diff"),
    ("POST", "/v1/orgs/{org}/repos/{repo}/tasks/{task}/sessions"),
    ("POST", "/v1/orgs/{org}/repos/{repo}/tasks/{task}/{action}"),
    ("GET", "/v1/orgs/{org}/repos/{repo}/tasks/{task}/sessions/{session}"),
    ("PATCH", "/v1/orgs/{org}/repos/{repo}/tasks/{task}/sessions/{session}"),
    ("DELETE", "/v1/orgs/{org}/repos/{repo}/tasks/{task}/sessions/{session}"),
    ("POST", "/v1/orgs/{org}/repos/{repo}/tasks/{task}/sessions/{session}/messages"),
    ("POST", "/v1/orgs/{org}/repos/{repo}/tasks/{task}/sessions/{session}/steer"),
    ("POST", "/v1/orgs/{org}/repos/{repo}/tasks/{task}/sessions/{session}/interrupt"),
    ("POST", "/v1/orgs/{org}/repos/{repo}/tasks/{task}/sessions/{session}/stop"),
    ("PUT", "/v1/orgs/{org}/repos/{repo}/tasks/{task}/sessions/{session}/draft"),
    ("PUT", "/v1/orgs/{org}/repos/{repo}/tasks/{task}/sessions/{session}/unread"),
    ("POST", "/v1/webhooks/github"),
    ("GET", "/v1/ws"),
    ("GET", "/v1/admin/runtime"),
    ("GET", "/v1/admin/kinds/{kind}/actors"),
    ("GET", "/v1/admin/kinds/{kind}/actors/{key}"),
    ("GET", "/v1/admin/kinds/{kind}/actors/{key}/tables/{table}"),
    ("POST", "/v1/admin/kinds/{kind}/actors/{key}/query"),
    ("GET", "/v1/admin/kinds/{kind}/actors/{key}/trace"),
];

#[test]
fn the_route_table_is_every_registered_route() {
    let table: BTreeSet<(String, String)> = ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(table.len(), ROUTES.len(), "a route is listed twice");
    let registered = support::routes::registered();
    // The scan finds what it must (else a refactor of the registrations would make this vacuous).
    assert!(registered.len() > 50, "{registered:?}");
    let missing: Vec<_> = registered.difference(&table).collect();
    let stale: Vec<_> = table.difference(&registered).collect();
    assert!(missing.is_empty(), "routes registered in src/http/ but missing from ROUTES: {missing:?}");
    assert!(stale.is_empty(), "routes in ROUTES that src/http/ no longer registers: {stale:?}");
}

/// Values a path parameter takes besides generated text, so requests also reach past the existence checks.
fn known_values(param: &str, ids: &Ids) -> Vec<String> {
    let v = |items: &[&str]| items.iter().map(|s| s.to_string()).collect();
    match param {
        "org" => v(&["acme", "nope"]),
        "repo" => v(&["r1"]),
        "task" => v(&["t1", "t99"]),
        "session" => vec!["s1".into(), ids.alice_session.clone()],
        "user" => vec![ids.alice.clone(), ids.bob.clone()],
        "op" => v(&["full-sync", "clear-github", "rebuild", "stop", "kill"]),
        "action" => {
            v(&["push", "pull-request", "merge", "revert", "provision", "archive", "unarchive", "unread", "switch"])
        }
        "rest:.*" => v(&["acme", "acme/r1/t1", ""]),
        "kind" => v(&["organization", "repository", "task", "session", "user", "tally", "nope"]),
        "key" => v(&["acme", "acme%2Fr1", "acme%2Fr1%2Ft1", "acme%2Fr1%2Ft1%2Fs1", "ghost", "app"]),
        "table" => v(&["_foundry_outbox", "_foundry_topics", "nope"]),
        _ => vec![],
    }
}

struct Ids {
    alice: String,
    bob: String,
    alice_session: String,
}

/// A path segment as a client would write it: unreserved bytes as they are (sometimes escaped anyway), everything
/// else percent-encoded, now and then with malformed escapes mixed in.
fn encode_segment(rng: &mut Rng, s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if (b.is_ascii_alphanumeric() || b"-._~".contains(&b)) && !rng.chance(3) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if rng.chance(5) {
        let junk = *rng.pick(&["%", "%G1", "%4", "%zz", "%%", "%2"]);
        out.push_str(junk);
    }
    out
}

fn path_for(rng: &mut Rng, pattern: &str, ids: &Ids) -> String {
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').unwrap() + open;
        let param = &rest[open + 1..close];
        let known = known_values(param, ids);
        let value = if !known.is_empty() && rng.chance(70) {
            rng.pick(&known).clone()
        } else if param == "rest:.*" {
            (0..1 + rng.below(3))
                .map(|_| {
                    let t = text(rng);
                    encode_segment(rng, &t)
                })
                .collect::<Vec<_>>()
                .join("/")
        } else {
            let t = text(rng);
            encode_segment(rng, &t)
        };
        out.push_str(&value);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    if rng.chance(15) {
        let (k, v) = (text(rng), text(rng));
        let k = *rng.pick(&["limit", "before", "repo", "task", "path", "redirect", "code", "state", &k]);
        out.push_str(&format!("?{}={}", encode_segment(rng, k), encode_segment(rng, &v)));
    }
    out
}

/// Field names the bodies of the routes use, and a few no route has.
const FIELDS: &[&str] = &[
    "login",
    "name",
    "email",
    "model",
    "status",
    "id",
    "displayName",
    "kind",
    "role",
    "repoId",
    "fullName",
    "remoteUrl",
    "defaultBranch",
    "prompt",
    "title",
    "branch",
    "sessionId",
    "force",
    "target",
    "path",
    "command",
    "args",
    "cwd",
    "env",
    "text",
    "guidance",
    "dropQueued",
    "attachments",
    "unread",
    "mode",
    "thoughtLevel",
    "organizationId",
    "sql",
    "limit",
    "timeoutMs",
    "bogus",
    "__proto__",
    "",
];

fn json_value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth > 3 { 5 } else { 8 }) {
        0 => Value::Null,
        1 => json!(rng.chance(50)),
        2 => json!(*rng.pick(&[0i64, -1, 1, i64::MAX, i64::MIN, 100, 101, 500, 501])),
        3 => json!(*rng.pick(&[0.5f64, -1e300, 1e300, 3.0])),
        4 => {
            let known = *rng.pick(&[
                "x",
                "member",
                "admin",
                "owner",
                "organization",
                "user",
                "starred",
                "acme",
                "r1",
                "s1",
                "ls",
                "main",
                "SELECT 1",
                "SELECT * FROM _foundry_topics",
                "DELETE FROM _foundry_topics",
            ]);
            if rng.chance(50) {
                json!(known)
            } else {
                json!(text(rng))
            }
        }
        5 => Value::Array((0..rng.below(4)).map(|_| json_value(rng, depth + 1)).collect()),
        _ => object(rng, depth + 1),
    }
}

fn object(rng: &mut Rng, depth: usize) -> Value {
    let mut map = serde_json::Map::new();
    for _ in 0..rng.below(4) {
        let key = if rng.chance(90) { rng.pick(FIELDS).to_string() } else { text(rng) };
        map.insert(key, json_value(rng, depth));
    }
    Value::Object(map)
}

/// A body: none, an object of route-like fields, any JSON, deep nesting, a huge string, truncated or non-JSON bytes.
fn body(rng: &mut Rng) -> Vec<u8> {
    match rng.below(20) {
        0..=2 => Vec::new(),
        3..=10 => object(rng, 0).to_string().into_bytes(),
        11..=12 => json_value(rng, 0).to_string().into_bytes(),
        13 => {
            let depth = *rng.pick(&[10, 127, 129, 5000]);
            format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
        }
        14 => {
            let field = *rng.pick(FIELDS);
            let len = *rng.pick(&[70_000, 300_000]);
            json!({ field: "y".repeat(len) }).to_string().into_bytes()
        }
        15 => {
            let mut b = object(rng, 0).to_string().into_bytes();
            b.truncate(rng.below(b.len().max(1)));
            b
        }
        16 => vec![0xff, 0xfe, b'{', 0x00, b'}'],
        _ => text(rng).into_bytes(),
    }
}

struct Answer {
    status: u16,
    body: Vec<u8>,
}

/// Writes one request byte for byte (clients normalise `.`/`..` segments and escapes away; the server must cope with
/// those that do not) and reads the answer until the server closes the connection.
fn send(addr: std::net::SocketAddr, request: Vec<u8>) -> Answer {
    let out = support::web::raw_exchange(addr, &request);
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete response head");
    let head = String::from_utf8_lossy(&out[..split]).to_ascii_lowercase();
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("a status line");
    let mut body = out[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Answer { status, body }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&raw[..eol]).ok().and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
        let Some(size) = size.filter(|&n| n > 0) else { break };
        let start = eol + 2;
        out.extend_from_slice(&raw[start..(start + size).min(raw.len())]);
        raw = &raw[(start + size + 2).min(raw.len())..];
    }
    out
}

/// Every file under the data directory; a database's `-wal`/`-shm`/`-journal` companions count as the database
/// (they come and go as its actor opens and closes).
fn files(root: &Path) -> BTreeSet<String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
                let rel = ["-wal", "-shm", "-journal"]
                    .iter()
                    .fold(rel, |r, s| r.strip_suffix(s).map(str::to_owned).unwrap_or(r));
                out.insert(rel);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

/// Waits until the data directory stops changing (the background work of an accepted request has landed).
async fn settle(root: &Path) -> BTreeSet<String> {
    support::until_stable("the data directory", || files(root)).await
}

/// The error codes docs/API.md lists (every `` `snake_case` `` word in its errors section and beyond).
fn documented_codes() -> BTreeSet<String> {
    let docs = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/API.md")).unwrap();
    docs.split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .map(str::to_owned)
        .collect()
}

/// alice owns acme (repository r1, task t1 with session s1); bob is signed in, not a member.
async fn world(s: &TestServer) -> (String, String) {
    let alice = s.sign_in("alice").await;
    let bob = s.sign_in("bob").await;
    let (st, body) =
        s.call("POST", "/v1/orgs", Some(&alice), Some(json!({ "id": "acme", "displayName": "Acme" }))).await;
    assert_eq!(st, 201, "{body}");
    let repo = json!({ "repoId": "r1", "fullName": "acme/r1", "remoteUrl": "https://example.invalid/acme/r1.git" });
    let (st, body) = s.call("POST", "/v1/orgs/acme/repos", Some(&alice), Some(repo)).await;
    assert_eq!(st, 201, "{body}");
    let (st, body) =
        s.call("POST", "/v1/orgs/acme/repos/r1/tasks", Some(&alice), Some(json!({ "prompt": "Fix it" }))).await;
    assert_eq!(st, 201, "{body}");
    (alice, bob)
}

#[actix_rt::test]
async fn every_route_answers_generated_requests_safely() {
    let mut rng = Rng::new(seed("http_edge"));
    let n = cases(3000) / 10;
    // alice is a server admin too, so requests reach past the inspector's admin check.
    let s = start(|api, _| api.server_admins = vec!["alice".to_owned()]).await;
    let (mut alice, bob) = world(&s).await;
    let (_, who) = s.call("GET", "/v1/auth/whoami", Some(&alice), None).await;
    let ids = Ids {
        alice: s.user_id(&alice).await,
        bob: s.user_id(&bob).await,
        alice_session: who["sessionId"].as_str().unwrap_or("s1").to_owned(),
    };
    let documented = documented_codes();
    let root = s.dir.path().to_owned();
    let mut before = settle(&root).await;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
    for case in 0..n {
        let &(route_method, pattern) = rng.pick(ROUTES);
        let method = if rng.chance(90) { route_method } else { *rng.pick(&methods) };
        let path = path_for(&mut rng, pattern, &ids);
        let token = match rng.below(20) {
            0 => None,
            1 => Some(bob.clone()),
            2 => Some(text(&mut rng).chars().filter(|c| c.is_ascii_graphic()).collect()),
            _ => Some(alice.clone()),
        };
        let body = body(&mut rng);
        let ctype = *rng.pick(&[
            Some("application/json"),
            Some("application/json"),
            Some("application/json"),
            Some("application/json; charset=utf-8"),
            Some("application/merge-patch+json"),
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("application/json; charset=\"\u{e9}\""),
            None,
        ]);
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", s.addr);
        if let Some(token) = &token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        if let Some(ctype) = ctype {
            head.push_str(&format!("Content-Type: {ctype}\r\n"));
        }
        if rng.chance(10) {
            let key: String = text(&mut rng).chars().filter(|c| !c.is_control()).collect();
            head.push_str(&format!("Idempotency-Key: {key}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let request = [head.into_bytes(), body.clone()].concat();
        let what = format!(
            "case {case}: {method} {path} (token: {}, content-type: {ctype:?}, body: {:?})",
            token.as_deref().map_or("none", |t| if *t == alice {
                "alice"
            } else if *t == bob {
                "bob"
            } else {
                "junk"
            }),
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
        let addr = s.addr;
        let answer = actix_rt::task::spawn_blocking(move || send(addr, request)).await.unwrap();
        assert!(answer.status < 500, "{what}: answered {} {}", answer.status, String::from_utf8_lossy(&answer.body));
        let key = if answer.status >= 400 && method != "HEAD" {
            let v: Value = serde_json::from_slice(&answer.body).unwrap_or_else(|_| {
                panic!(
                    "{what}: {} with a body that is not JSON: {:?}",
                    answer.status,
                    String::from_utf8_lossy(&answer.body)
                )
            });
            let code = v["error"]["code"].as_str().unwrap_or_else(|| panic!("{what}: no error.code in {v}"));
            assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: no error.message in {v}");
            assert!(documented.contains(code), "{what}: code {code:?} is not in docs/API.md");
            format!("{} {code}", answer.status)
        } else {
            answer.status.to_string()
        };
        *seen.entry(key).or_default() += 1;
        if (400..500).contains(&answer.status) {
            let after = files(&root);
            let created: Vec<_> = after.difference(&before).collect();
            assert!(created.is_empty(), "{what}: refused ({}), yet created {created:?}", answer.status);
        } else {
            // Accepted: let its background work land before the next refused request is judged.
            before = settle(&root).await;
        }
        // An accepted sign-out (or a revocation of this session) signs alice out: sign in again.
        let (st, _) = s.call("GET", "/v1/auth/whoami", Some(&alice), None).await;
        if st == 401 {
            alice = s.sign_in("alice").await;
            before = settle(&root).await;
        }
    }
    eprintln!("http_edge: {n} requests; answers: {seen:?}");
    let refused: usize = seen.iter().filter(|(k, _)| k.starts_with('4')).map(|(_, n)| n).sum();
    assert!(refused > n / 2, "the generator should mostly produce refusals: {seen:?}");
    s.stop().await;
}

/// Found by the property above (`FOUNDRY_PROP_SEED=1796258550838603547`, case 113): the webhook's route answered
/// another method than POST with an empty 405, the only route whose refusal was not JSON.
#[actix_rt::test]
async fn the_webhook_route_refuses_other_methods_with_json() {
    let s = start(|_, _| {}).await;
    for method in ["OPTIONS", "GET", "PUT", "DELETE"] {
        let request = format!(
            "{method} /v1/webhooks/github HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: text/plain\r\n\
             Content-Length: 4\r\n\r\n#a9\n",
            s.addr
        );
        let addr = s.addr;
        let answer = actix_rt::task::spawn_blocking(move || send(addr, request.into_bytes())).await.unwrap();
        let v: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        assert_eq!((answer.status, v["error"]["code"].as_str()), (404, Some("route_not_found")), "{method}: {v}");
    }
    s.stop().await;
}
