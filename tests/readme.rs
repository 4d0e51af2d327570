//! README.md is executable: its offline walk-through ("Try the whole loop offline") is run verbatim — the server
//! command as written (on a free port, in a temporary directory), then the shell block with `bash -euo pipefail`,
//! where every `curl -sf` must succeed and every `watch --until` must see its state — and the examples under
//! `examples/` run to completion, so neither can rot. docs/writing-an-actor-kind.md quotes its example kind: each of its
//! code blocks must still be in the file it names, and every path it names must exist.
//!
//! The examples' binaries are built by `cargo test` (all targets); alone: `cargo build --examples && cargo test --test readme`.
//! Needs `git` and `bash` (under `CI=true` a missing one fails the test).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The built example, next to this test's executable (`target/<profile>/examples/<name>`).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().and_then(|deps| deps.parent()).unwrap().join("examples").join(name);
    assert!(
        path.exists(),
        "{} is not built: `cargo test` builds the examples (or `cargo build --examples` first)",
        path.display()
    );
    path
}

fn have(bin: &str) -> bool {
    let ok = Command::new(bin).arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{bin} is not installed (CI=true: not skipping)");
        println!("skipped: {bin} is not installed");
    }
    ok
}

/// The indented code blocks of README's section `title`, each as its lines (indent removed).
fn blocks(title: &str) -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find(&format!("\n## {title}\n")).unwrap_or_else(|| panic!("README has no section {title:?}"));
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut in_block = false;
    for line in section.lines() {
        match line.strip_prefix("    ") {
            Some(code) => {
                if !in_block {
                    out.push(Vec::new());
                }
                in_block = true;
                out.last_mut().unwrap().push(code.to_owned());
            }
            None => in_block = false,
        }
    }
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn the_offline_walk_through_runs_verbatim() {
    if !have("git") || !have("bash") {
        return;
    }
    let watch = example("watch");
    let blocks = blocks("Try the whole loop offline");
    assert_eq!(blocks.len(), 2, "the section has the server command and the walk-through: {blocks:?}");

    // The server, as README starts it, on a free port in a temporary directory (README's `./data`).
    let serve = blocks[0].join(" ");
    let args = serve.strip_prefix("cargo run --release -- ").unwrap_or_else(|| panic!("not a `cargo run`: {serve}"));
    let dir = tempfile::tempdir().unwrap();
    let (port, gh_port) = (free_port(), free_port());
    let mut server = Command::new(env!("CARGO_BIN_EXE_foundry"))
        .args(args.split_whitespace())
        .args(["--bind", &format!("127.0.0.1:{port}"), "--demo-github-port", &gh_port.to_string(), "--log", "warn"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The walk-through, with only the address and the example's location adapted.
    let script = blocks[1].join("\n");
    assert!(script.contains("127.0.0.1:7070") && script.contains("cargo run -q --release --example watch --"));
    let script = script
        .replace("127.0.0.1:7070", &format!("127.0.0.1:{port}"))
        .replace("cargo run -q --release --example watch --", &format!("{} --timeout 60", watch.display()));
    let started = Instant::now();
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "README's walk-through failed ({}):\n{stdout}\n{stderr}", out.status);
    // What the reader is told to look for is there.
    for want in
        ["\"taskId\":\"t1\"", "+++ b/README.md", "\"state\":\"merged\"", "Merge pull request", "status=archived"]
    {
        assert!(stdout.contains(want), "{want:?} missing from the walk-through's output:\n{stdout}");
    }
    eprintln!("README walk-through: {:?}", started.elapsed());
}

#[test]
fn the_examples_run() {
    let cases = [
        ("counter", "counter"),
        ("domain", "status update please (s1)"),
        ("schedules", "schedules left: 0"),
        ("lifecycle", "recreated fresh: counter 101"),
        ("bookmarks", "snapshot folded from patches equals getshelf: true"),
        ("inspector", "update refused: only reads are allowed"),
        ("connections", "bob left; 1 still here"),
    ];
    for (name, says) in cases {
        let out = Command::new(example(name)).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "examples/{name}.rs failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.to_lowercase().contains(says), "examples/{name}.rs printed:\n{stdout}");
    }
}

const GUIDE: &str = "docs/writing-an-actor-kind.md";

/// The guide's fenced code blocks: (info string, code). The info string is the language, then the quoted file.
fn fenced_blocks(guide: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut open: Option<(String, Vec<&str>)> = None;
    for line in guide.lines() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => open = Some((info.trim().to_owned(), Vec::new())),
            (Some(_), Some(_)) => {
                let (info, lines) = open.take().unwrap();
                out.push((info, lines.join("\n")));
            }
            (Some((_, lines)), None) => lines.push(line),
            (None, None) => {}
        }
    }
    out
}

/// Where `guide` no longer matches the repository: a code block that does not name a file of the repository or is
/// not in that file verbatim, an unclosed block, or a path in backticks that does not exist. `read` gives a
/// repository file's text.
fn guide_drift(guide: &str, read: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let mut problems = Vec::new();
    if guide.lines().filter(|l| l.starts_with("```")).count() % 2 == 1 {
        problems.push("a code block is not closed".to_owned());
    }
    for (info, code) in fenced_blocks(guide) {
        let first = code.lines().next().unwrap_or_default();
        let Some((lang, file)) = info.split_once(' ') else {
            problems.push(format!("the block starting {first:?} names no file (```{info})"));
            continue;
        };
        if !["rust", "sql"].contains(&lang) {
            problems.push(format!("the block starting {first:?} is {lang}, not rust or sql"));
        }
        match read(file) {
            None => problems.push(format!("the block starting {first:?} quotes {file}, which does not exist")),
            Some(text) if !text.contains(&code) => {
                problems.push(format!("the block starting {first:?} is no longer in {file} as quoted"))
            }
            Some(_) => {}
        }
    }
    let prose: String = guide.split("```").step_by(2).collect();
    for path in prose.split('`').skip(1).step_by(2).filter(|span| is_repo_path(span)) {
        if !Path::new(env!("CARGO_MANIFEST_DIR")).join(path).exists() {
            problems.push(format!("the guide names {path}, which does not exist"));
        }
    }
    problems
}

/// Whether a span in backticks names a file or directory of the repository (not a placeholder such as `<kind>`).
fn is_repo_path(span: &str) -> bool {
    const ROOTS: &[&str] = &["src/", "tests/", "examples/", "migrations/", "docs/", "client/"];
    const FILES: &[&str] = &["README.md", "ARCHITECTURE.md", "diesel.toml", "build.rs"];
    (ROOTS.iter().any(|r| span.starts_with(r)) || FILES.contains(&span)) && !span.contains(['<', '*', ' '])
}

fn repo_file(path: &str) -> Option<String> {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).ok()
}

#[test]
fn the_guide_quotes_its_example_verbatim() {
    let guide = repo_file(GUIDE).unwrap();
    let problems = guide_drift(&guide, repo_file);
    assert!(problems.is_empty(), "{GUIDE} drifted from the code it quotes:\n{}", problems.join("\n"));

    // Every step of the guide still shows its code.
    let code: String = fenced_blocks(&guide).into_iter().map(|(_, code)| code + "\n").collect();
    for step in [
        "CHECK (id = 1)",
        "diesel::table!",
        "thiserror::Error",
        "impl Entity for",
        "impl Read for",
        "impl Mutation for",
        "tx.patch(",
        "tx.send(",
        "impl Delivery for",
        "impl Scheduled for",
        "read_existing",
        "support::observe_file",
    ] {
        assert!(code.contains(step), "no code block of {GUIDE} shows {step:?}");
    }
    for doc in ["README.md", "ARCHITECTURE.md"] {
        assert!(repo_file(doc).unwrap().contains(GUIDE), "{doc} does not link {GUIDE}");
    }
}

/// The check notices a quoted line changed in the guide, a block that names no file, and a path that is gone.
#[test]
fn a_drifted_guide_is_reported() {
    let guide = repo_file(GUIDE).unwrap();
    let kind = r#"const KIND: &'static str = "bookmarks";"#;
    assert!(guide.contains(kind));
    let cases = [
        (
            guide.replace(kind, r#"const KIND: &'static str = "bookmark";"#),
            "is no longer in examples/bookmarks/kind.rs",
        ),
        (guide.replacen("```rust examples/bookmarks/kind.rs", "```rust", 1), "names no file"),
        (guide.replacen("```rust examples/bookmarks/kind.rs", "```rust examples/bookmark.rs", 1), "does not exist"),
        (guide.replacen("`src/actors/error.rs`", "`src/actors/errors.rs`", 1), "names src/actors/errors.rs"),
    ];
    for (drifted, says) in cases {
        assert_ne!(drifted, guide, "the case for {says:?} changed nothing");
        let problems = guide_drift(&drifted, repo_file);
        assert!(problems.len() == 1 && problems[0].contains(says), "expected {says:?}, got {problems:?}");
    }
}
