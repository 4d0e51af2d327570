//! Provisionings of one repository that arrive together share the mirror's fetches (a burst of new tasks does not
//! fetch once per task), and every workspace still starts from the remote as it was when its provisioning asked.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use foundry::integrations::workspace::{
    Cmd, CmdOutput, GitAuth, LocalShell, Shell, WorkspaceError, WorkspaceSpec, Workspaces,
};
use futures_util::future::BoxFuture;

/// The local shell, counting the `git fetch`es it runs.
struct CountingShell {
    inner: LocalShell,
    fetches: Arc<AtomicUsize>,
}

impl Shell for CountingShell {
    fn provider(&self) -> &'static str {
        self.inner.provider()
    }
    fn root(&self) -> &str {
        self.inner.root()
    }
    fn run(&self, cmd: Cmd) -> BoxFuture<'_, Result<CmdOutput, WorkspaceError>> {
        if cmd.program == "git" && cmd.args.iter().any(|a| a == "fetch") {
            self.fetches.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.run(cmd)
    }
}

fn git(cwd: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git").args(args).current_dir(cwd).output().expect("git is needed");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn git_available() -> bool {
    let ok = std::process::Command::new("git").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "git is not installed (CI=true: not skipping)");
        println!("skipped: git is not installed");
    }
    ok
}

/// Commits `file` to `main` of the bare remote through a scratch clone.
fn commit_to_remote(scratch: &Path, file: &str) {
    std::fs::write(scratch.join(file), file).unwrap();
    git(scratch, &["add", file]);
    git(scratch, &["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", file]);
    git(scratch, &["push", "-q", "origin", "main"]);
}

#[actix_rt::test]
async fn a_burst_of_provisionings_shares_fetches_and_each_sees_the_remote_as_it_asked() {
    if !git_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("remote.git");
    git(dir.path(), &["init", "-q", "--bare", "-b", "main", remote.to_str().unwrap()]);
    let scratch = dir.path().join("scratch");
    git(dir.path(), &["clone", "-q", remote.to_str().unwrap(), scratch.to_str().unwrap()]);
    git(&scratch, &["checkout", "-q", "-b", "main"]);
    commit_to_remote(&scratch, "first.txt");

    let fetches = Arc::new(AtomicUsize::new(0));
    let shell = CountingShell { inner: LocalShell::new(dir.path().join("sandboxes")), fetches: fetches.clone() };
    let workspaces = Workspaces::new(Arc::new(shell));
    let url = format!("file://{}", remote.display());
    let spec = |i: usize| WorkspaceSpec {
        id: format!("acme.web.t{i}"),
        remote_url: url.clone(),
        base_branch: "main".into(),
        branch: format!("task-{i}"),
    };
    let auth = GitAuth::default();
    let quiet = |_: &str| {};

    const BURST: usize = 12;
    let provisions = (0..BURST).map(|i| {
        let (workspaces, spec, auth) = (&workspaces, spec(i), auth.clone());
        async move { workspaces.provision(&spec, &auth, &quiet).await }
    });
    for done in futures_util::future::join_all(provisions).await {
        let cwd = done.unwrap().cwd;
        assert!(Path::new(&cwd).join("first.txt").exists(), "{cwd} lacks the remote's commit");
    }
    let burst_fetches = fetches.load(Ordering::SeqCst);
    eprintln!("{burst_fetches} fetches for {BURST} provisionings");
    assert!((1..BURST).contains(&burst_fetches), "{burst_fetches} fetches for {BURST} provisionings");

    // A commit pushed before the next provisioning asks is in its workspace: sharing never serves a stale mirror.
    commit_to_remote(&scratch, "second.txt");
    let cwd = workspaces.provision(&spec(BURST), &auth, &quiet).await.unwrap().cwd;
    assert!(Path::new(&cwd).join("second.txt").exists(), "the later workspace missed a commit made before it asked");
    assert_eq!(fetches.load(Ordering::SeqCst), burst_fetches + 1, "the later provisioning fetched on its own");
}
