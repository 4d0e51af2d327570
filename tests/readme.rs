//! README.md is executable: its offline walk-through ("Try the whole loop offline") is run verbatim — the server
//! command as written (on a free port, in a temporary directory), then the shell block with `bash -euo pipefail`,
//! where every `curl -sf` must succeed and every `watch --until` must see its state — and the examples under
//! `examples/` run to completion, so neither can rot.
//!
//! The examples' binaries are built by `cargo test` (all targets); alone: `cargo build --examples && cargo test --test readme`.
//! Needs `git` and `bash` (under `CI=true` a missing one fails the test).

use std::path::PathBuf;
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
        ("connections", "bob left; 1 still here"),
    ];
    for (name, says) in cases {
        let out = Command::new(example(name)).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "examples/{name}.rs failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.to_lowercase().contains(says), "examples/{name}.rs printed:\n{stdout}");
    }
}
