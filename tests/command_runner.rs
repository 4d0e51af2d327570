//! The command runner (`foundry run-commands`) that `serve`'s workspace commands start in: output, exit codes, cwd
//! and environment come through; timeouts and dropped calls kill the command; commands really start in the runner
//! (their parent is the runner process); and a runner that died is replaced by the next call.

use std::time::{Duration, Instant};

use foundry::integrations::workspace::{Cmd, LocalShell, Runner, Shell, WorkspaceError};

fn runner() -> std::sync::Arc<Runner> {
    std::sync::Arc::new(Runner::new(env!("CARGO_BIN_EXE_foundry"), vec!["run-commands".to_owned()]))
}

fn sh(script: &str) -> Cmd {
    Cmd {
        program: "sh".into(),
        args: vec!["-c".into(), script.into()],
        timeout: Duration::from_secs(20),
        ..Cmd::default()
    }
}

fn alive(pid: u32) -> bool {
    // A zombie is as good as gone: it no longer runs.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

async fn wait_gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(Instant::now() < deadline, "process {pid} is still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn read_pid(path: &std::path::Path) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(pid) = std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok()) {
            return pid;
        }
        assert!(Instant::now() < deadline, "the command never wrote its pid");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[actix_rt::test]
async fn commands_run_in_the_runner_with_their_output_cwd_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let runner = runner();
    let shell = LocalShell::with_runner(dir.path(), runner.clone());
    let runner_pid = runner.process_id().await.unwrap().unwrap();

    let out = shell.run(sh("echo out; echo err >&2; exit 3")).await.unwrap();
    assert_eq!((out.code, out.stdout.as_str(), out.stderr.as_str()), (3, "out\n", "err\n"));

    let cwd = dir.path().join("a/b");
    let mut cmd = sh("pwd; echo \"$FOUNDRY_TEST_VALUE\"; echo $PPID");
    cmd.cwd = Some(cwd.to_string_lossy().into_owned());
    cmd.env = vec![("FOUNDRY_TEST_VALUE".into(), "x y".into())];
    let out = shell.run(cmd).await.unwrap();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], cwd.to_string_lossy(), "the cwd (created if missing)");
    assert_eq!(lines[1], "x y");
    assert_eq!(lines[2], runner_pid.to_string(), "the command's parent is the runner, not this process");

    // Many at once, each answered with its own output.
    let calls = (0..24).map(|i| shell.run(sh(&format!("sleep 0.1; echo {i}"))));
    let outs = futures_util::future::join_all(calls).await;
    for (i, out) in outs.into_iter().enumerate() {
        assert_eq!(out.unwrap().stdout, format!("{i}\n"));
    }

    let missing = shell.run(Cmd { program: "/nonexistent/program".into(), ..Cmd::default() }).await;
    assert!(matches!(missing, Err(WorkspaceError::Unreachable(ref m)) if m.contains("cannot run")), "{missing:?}");
}

#[actix_rt::test]
async fn a_timeout_or_a_dropped_call_kills_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let shell = LocalShell::with_runner(dir.path(), runner());

    let pid_file = dir.path().join("timeout.pid");
    let mut cmd = sh(&format!("echo $$ > {}; exec sleep 30", pid_file.display()));
    cmd.timeout = Duration::from_millis(500);
    let res = shell.run(cmd).await;
    assert!(matches!(res, Err(WorkspaceError::Git { ref message, .. }) if message.contains("timed out")), "{res:?}");
    wait_gone(read_pid(&pid_file).await).await;

    let pid_file = dir.path().join("dropped.pid");
    let cmd = sh(&format!("echo $$ > {}; exec sleep 30", pid_file.display()));
    let call = shell.run(cmd);
    assert!(tokio::time::timeout(Duration::from_millis(500), call).await.is_err(), "the call should still run");
    wait_gone(read_pid(&pid_file).await).await;
}

#[actix_rt::test]
async fn a_runner_that_died_is_replaced_by_the_next_call() {
    let dir = tempfile::tempdir().unwrap();
    let runner = runner();
    let shell = LocalShell::with_runner(dir.path(), runner.clone());
    let first = runner.process_id().await.unwrap().unwrap();
    // SAFETY: kill(2) on the runner, our own child.
    unsafe { libc::kill(first as i32, libc::SIGKILL) };
    wait_gone(first).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let out = loop {
        match shell.run(sh("echo again")).await {
            Ok(out) => break out,
            // A call racing the runner's death fails as unreachable; the next one starts a new runner.
            Err(WorkspaceError::Unreachable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(out.stdout, "again\n");
    let second = runner.process_id().await.unwrap().unwrap();
    assert_ne!(first, second, "a new runner process");
}
