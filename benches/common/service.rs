//! Helpers of the benches that drive `foundry serve` as a process (`scale`, `load`): free ports, git remotes to clone
//! from, and what the server holds (`/proc`, `/metrics`).

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn git(args: &[&str], cwd: &Path) {
    let out = Command::new("git").args(args).current_dir(cwd).output().expect("git is needed");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A bare repository `<dir>/remotes/<name>.git` with one commit on `main`.
pub fn bare_remote(dir: &Path, name: &str) -> PathBuf {
    let remote = dir.join(format!("remotes/{name}.git"));
    let seed = dir.join(format!("remotes/{name}-seed"));
    std::fs::create_dir_all(&seed).unwrap();
    git(&["init", "-q", "--bare", "-b", "main", remote.to_str().unwrap()], dir);
    git(&["init", "-q", "-b", "main"], &seed);
    std::fs::write(seed.join("README.md"), format!("# {name}\n")).unwrap();
    git(&["add", "README.md"], &seed);
    git(&["-c", "user.name=b", "-c", "user.email=b@example.com", "commit", "-q", "-m", "init"], &seed);
    git(&["push", "-q", remote.to_str().unwrap(), "main"], &seed);
    remote
}

pub fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

pub fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

/// The sum of a `/metrics` family over its labels (or its one unlabelled value).
pub async fn metric(client: &reqwest::Client, base: &str, name: &str) -> u64 {
    let text = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && (l[name.len()..].starts_with('{') || l[name.len()..].starts_with(' ')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
