//! Helpers shared by the plain-program benches (`runtime`, `domain`, `agent`): `name=value` / `BENCH_<NAME>` options,
//! temporary directories under `BENCH_TMP`, percentiles, millisecond formatting, a plain-text table printer and the
//! organization + repositories setup of the `Domain` benches.

// Each bench uses only a subset of these helpers; the rest would be dead code in that bench's crate.
#![allow(dead_code)]

pub mod service;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use foundry::actors::organization::{AddRepository, CreateOrganization, OrgKind};
use foundry::actors::Domain;

/// Command-line options: `name=value` pairs (falling back to `BENCH_<NAME>` environment variables) and an optional
/// bare word selecting sections (default `all`). Arguments starting with `--` are ignored: `cargo bench` passes
/// `--bench`.
pub struct Opts {
    pub section: String,
    kv: HashMap<String, String>,
}

impl Opts {
    pub fn parse() -> Opts {
        let mut section = "all".to_owned();
        let mut kv = HashMap::new();
        for arg in std::env::args().skip(1) {
            if arg.starts_with("--") {
                continue; // `cargo bench` passes `--bench`
            }
            if let Some((k, v)) = arg.split_once('=') {
                kv.insert(k.to_owned(), v.to_owned());
            } else {
                section = arg;
            }
        }
        Opts { section, kv }
    }

    /// The value of `name`: the argument, else the `BENCH_<NAME>` environment variable.
    pub fn raw(&self, name: &str) -> Option<String> {
        let env = std::env::var(format!("BENCH_{}", name.to_uppercase())).ok();
        self.kv.get(name).cloned().or(env)
    }

    pub fn get(&self, name: &str, default: u64) -> u64 {
        self.raw(name).and_then(|v| v.parse().ok()).unwrap_or(default)
    }

    /// A comma separated list of numbers (unparsable items are skipped).
    pub fn list(&self, name: &str, default: &[u64]) -> Vec<u64> {
        match self.raw(name) {
            Some(v) => v.split(',').filter_map(|p| p.trim().parse().ok()).collect(),
            None => default.to_vec(),
        }
    }

    /// Whether section `s` was selected (`all`, or a comma separated list naming it).
    pub fn runs(&self, s: &str) -> bool {
        self.section == "all" || self.section.split(',').any(|x| x == s)
    }
}

/// `BENCH_TMP`, else `/work/bench-tmp` if it can be created, else the system temp dir.
pub fn tmp_base() -> PathBuf {
    if let Ok(p) = std::env::var("BENCH_TMP") {
        return PathBuf::from(p);
    }
    let work = PathBuf::from("/work/bench-tmp");
    if std::fs::create_dir_all(&work).is_ok() {
        work
    } else {
        std::env::temp_dir()
    }
}

/// A fresh temporary directory under [`tmp_base`] whose name starts with `prefix`; deleted on drop.
pub fn tempdir(prefix: &str) -> tempfile::TempDir {
    let base = tmp_base();
    let _ = std::fs::create_dir_all(&base);
    tempfile::Builder::new().prefix(prefix).tempdir_in(base).expect("create temp dir")
}

static DEFERRED: std::sync::Mutex<Vec<tempfile::TempDir>> = std::sync::Mutex::new(Vec::new());

/// Keeps `dir` until [`remove_deferred`] (the end of the bench). Deleting thousands of files makes file creation on
/// this disk slow for the next ~35 s (ext4 without a journal skips inodes deleted in the last 5 s, 35 s while their
/// inode-table block is dirty, scanning past each one: measured 25 µs per create on a quiet disk, 600-900 µs right
/// after mass deletions), which would charge a scenario for the previous one's cleanup.
pub fn defer_removal(dir: tempfile::TempDir) {
    DEFERRED.lock().unwrap_or_else(|e| e.into_inner()).push(dir);
}

/// Deletes the directories kept by [`defer_removal`].
pub fn remove_deferred() {
    DEFERRED.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// Microseconds per empty-file creation (200 files in a fresh directory under [`tmp_base`], kept until the end):
/// printed with a bench's results so runs on this disk can be compared (see [`defer_removal`]).
pub fn disk_probe() -> f64 {
    let dir = tempdir("foundry-bench-probe-");
    let n = 200;
    let t = std::time::Instant::now();
    for i in 0..n {
        let _ = std::fs::File::create(dir.path().join(format!("f{i}")));
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    defer_removal(dir);
    us
}

/// The `p` quantile (0..=1) of ascending `sorted`, nearest rank; zero when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

/// Milliseconds with `decimals` digits after the point.
pub fn ms_with(d: Duration, decimals: usize) -> String {
    format!("{:.*}", decimals, d.as_secs_f64() * 1e3)
}

/// Milliseconds with three digits after the point.
pub fn ms(d: Duration) -> String {
    ms_with(d, 3)
}

/// Prints `title`, then a Markdown-style table with left-aligned columns as wide as their widest cell.
pub fn table(title: &str, header: &[&str], rows: &[Vec<String>]) {
    println!("\n{title}");
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells.iter().enumerate().map(|(i, c)| format!("{:<w$}", c, w = widths[i])).collect();
        println!("| {} |", parts.join(" | "));
    };
    line(header.iter().map(|s| s.to_string()).collect());
    println!("|{}|", widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("|"));
    for r in rows {
        line(r.clone());
    }
}

/// Creates organization `org` ("Acme Inc") and `repos` repositories `r0`, `r1`, ... in it through
/// `Domain::add_repository`, attributed to `user_id`.
pub async fn create_org_with_repos(domain: &Domain, org: &str, repos: usize, user_id: Option<&str>) {
    let create = CreateOrganization {
        login: org.into(),
        display_name: "Acme Inc".into(),
        kind: OrgKind::Organization,
        owner: None,
    };
    domain.orgs.mutate(&org.to_owned(), create).await.expect("create organization");
    for i in 0..repos {
        let add = AddRepository {
            repo_id: format!("r{i}"),
            full_name: format!("acme/repo-{i}"),
            remote_url: format!("https://github.com/acme/repo-{i}.git"),
            default_branch: "main".into(),
            user_id: user_id.map(Into::into),
        };
        domain.add_repository(org, add).await.expect("add repository");
    }
}
