//! Issue 12: property tests over the request edge, with a small seeded generator (no fuzzing crate). Key escaping is
//! safe and injective; id validation agrees with the documented rule; every route, fed generated paths, headers and
//! bodies, never answers 5xx, always answers errors as documented JSON, and a refused request creates no file.
//!
//! Each test prints its seed. Reproduce a failure with `FOUNDRY_PROP_SEED=<seed>`; run longer with
//! `FOUNDRY_PROP_CASES=<n>` (the HTTP property runs a tenth of that, at least its default).

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

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
/// suffix added to it (`.sqlite3-wal`, a workspace's `.partial`).
fn assert_safe_component(name: &str, of: &dyn std::fmt::Debug) {
    assert!(!name.is_empty(), "{of:?} -> empty name");
    assert!(name != "." && name != "..", "{of:?} -> {name:?}");
    assert!(!name.contains('/') && !name.contains('\0'), "{of:?} -> {name:?}");
    assert!(!name.chars().any(char::is_control), "{of:?} -> {name:?} has a control character");
    assert!(name.len() + ".sqlite3-wal".len() <= 255, "{of:?} -> {} bytes", name.len());
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
        assert_safe_component(&stem, &encoded);
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
            assert_safe_component(&name, &task);
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
        assert_safe_component(&name, task);
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
