//! `foundry serve`: the long-running service. With no flags it runs on an embedded default: data in `./data`, the
//! built-in agent, bound to loopback with dev sign-in enabled. GitHub (sync, OAuth sign-in, webhooks) is enabled by
//! its flags. Users' GitHub OAuth tokens are stored sealed under the token key (`--token-key-file`, else
//! `<data>/token-key`, generated with mode 0600).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use foundry::actors::github_data::GitHubService;
use foundry::actors::task::GitTokens;
use foundry::actors::Domain;
use foundry::cluster::ClusterNode;
use foundry::http::{Api, AuthSettings, RateLimit, RateLimits};
use foundry::integrations::agent::{AgentBackend, BuiltinAgent, SandboxAgent};
use foundry::integrations::github::app::{AppClient, GitHubApp};
use foundry::integrations::github::client::{GitHubApi, GitHubClient};
use foundry::integrations::github::oauth::{GitHubOAuth, OAuthConfig};
use foundry::integrations::sandbox::{ProcessService, SandboxProcesses};
use foundry::integrations::workspace::{
    AppTokens, LocalShell, Runner, SandboxServers, SandboxShell, Shell, StaticToken, TokenSource, Workspaces,
};
use foundry::runtime::{Runtime, RuntimeConfig};
use foundry::secrets::TokenCipher;

#[derive(Parser)]
#[command(name = "foundry", version, about = "Backend for teams running AI coding agents")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP/WebSocket service.
    Serve(Box<Serve>),
    /// The command runner `serve` starts for itself (workspace commands start there): reads requests on stdin.
    #[command(hide = true)]
    RunCommands,
}

#[derive(Args)]
struct Serve {
    /// Address to listen on.
    #[arg(long, env = "FOUNDRY_BIND", default_value = "127.0.0.1:7070")]
    bind: SocketAddr,
    /// Directory holding every actor's database.
    #[arg(long, env = "FOUNDRY_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Log filter (tracing-subscriber env-filter syntax).
    #[arg(long, env = "FOUNDRY_LOG", default_value = "info")]
    log: String,
    /// Log lines as `text` (coloured only on a terminal) or `json` (one object per line, for log shippers).
    #[arg(long, env = "FOUNDRY_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Delay between the words of the built-in agent's replies, in milliseconds: raise it (e.g. 150) to watch replies
    /// stream and to steer or interrupt a turn by hand.
    #[arg(long, env = "FOUNDRY_BUILTIN_AGENT_PACE_MS", default_value_t = 5)]
    builtin_agent_pace_ms: u64,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "FOUNDRY_WORKERS")]
    workers: Option<usize>,
    /// Most actors open at once (each holds two file descriptors); beyond it the least recently used idle actors
    /// are passivated. Default: sized from the open-files limit, at most 4,096.
    #[arg(long, env = "FOUNDRY_MAX_LIVE", value_parser = clap::value_parser!(u64).range(8..))]
    max_live: Option<u64>,
    /// Seconds an actor stays open after its last message before it passivates (closes its database, frees its
    /// memory). Default: 300.
    #[arg(long, env = "FOUNDRY_IDLE_TIMEOUT_SECS", value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout_secs: Option<u64>,
    /// Most agent turns running at once; sessions beyond it wait in line (first come, first served), their prompts
    /// queued, without holding a live actor.
    #[arg(long, env = "FOUNDRY_MAX_TURNS", default_value_t = foundry::actors::session::DEFAULT_MAX_TURNS as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_turns: u64,
    /// A sandbox-agent server to run sessions on (e.g. http://127.0.0.1:2468); the built-in agent if unset.
    #[arg(long, env = "FOUNDRY_AGENT_URL")]
    agent_url: Option<String>,
    /// The sandbox-agent agent id to use with --agent-url.
    #[arg(long, env = "FOUNDRY_AGENT", default_value = "claude")]
    agent: String,
    /// Where task workspaces live: `local` (under the data directory, git runs on this host) or `sandbox-agent` (on
    /// the --agent-url server's machine, git runs through its process API, next to the agent).
    #[arg(long, env = "FOUNDRY_SANDBOX", default_value = "local", value_parser = ["local", "sandbox-agent"])]
    sandbox: String,
    /// A sandbox-agent binary: without --agent-url, foundry starts one server per task itself (free loopback port,
    /// its own HOME under <data-dir>/sandboxes/homes, installed agents shared), which runs that task's git and agent,
    /// plus one shared server for the model catalog and sandbox processes. Implies --sandbox sandbox-agent.
    #[arg(long, env = "FOUNDRY_SANDBOX_AGENT_BIN")]
    sandbox_agent_bin: Option<PathBuf>,
    /// With --sandbox sandbox-agent: the directory on the agent server's machine holding workspaces and repository
    /// mirrors (default: /tmp/foundry-<id of this data directory>).
    #[arg(long, env = "FOUNDRY_SANDBOX_ROOT")]
    sandbox_root: Option<String>,
    /// This server's public URL (for the OAuth callback; https makes the session cookie Secure).
    #[arg(long, env = "FOUNDRY_PUBLIC_URL")]
    public_url: Option<String>,
    /// Turn off dev sign-in (otherwise enabled when, and only when, bound to a loopback address).
    #[arg(long, env = "FOUNDRY_NO_DEV_SIGN_IN")]
    no_dev_sign_in: bool,
    /// Session token lifetime, in hours.
    #[arg(long, env = "FOUNDRY_SESSION_TTL_HOURS", default_value_t = 720)]
    session_ttl_hours: u64,
    /// GitHub REST API base URL.
    #[arg(long, env = "FOUNDRY_GITHUB_API_URL", default_value = "https://api.github.com")]
    github_api_url: String,
    /// GitHub web base URL (OAuth authorize and token exchange).
    #[arg(long, env = "FOUNDRY_GITHUB_WEB_URL", default_value = "https://github.com")]
    github_web_url: String,
    /// Token the GitHub sync uses (an installation token or a personal access token); no sync without it.
    #[arg(long, env = "FOUNDRY_GITHUB_TOKEN", hide_env_values = true)]
    github_token: Option<String>,
    /// GitHub App id: the sync authenticates as the App's installation on each account (with the private key file;
    /// instead of --github-token).
    #[arg(long, env = "FOUNDRY_GITHUB_APP_ID")]
    github_app_id: Option<String>,
    /// Path of the GitHub App's private key (the PEM GitHub hands out; PKCS#8 also accepted).
    #[arg(long, env = "FOUNDRY_GITHUB_APP_PRIVATE_KEY_FILE")]
    github_app_private_key_file: Option<PathBuf>,
    /// OAuth app client id (enables "Sign in with GitHub" together with the secret).
    #[arg(long, env = "FOUNDRY_GITHUB_CLIENT_ID")]
    github_client_id: Option<String>,
    /// OAuth app client secret.
    #[arg(long, env = "FOUNDRY_GITHUB_CLIENT_SECRET", hide_env_values = true)]
    github_client_secret: Option<String>,
    /// The whole loop offline: a local GitHub-compatible server in this process (sample repositories with real git
    /// history under <data-dir>/demo-github) takes GitHub's place for the sync, pull requests and webhooks.
    #[arg(long, env = "FOUNDRY_DEMO")]
    demo: bool,
    /// With --demo: the loopback port of the demo GitHub server (default: the bind port + 1).
    #[arg(long, env = "FOUNDRY_DEMO_GITHUB_PORT")]
    demo_github_port: Option<u16>,
    /// Token that opens `/metrics` to non-loopback scrapers (`Authorization: Bearer <token>`); without it `/metrics`
    /// answers loopback clients only.
    #[arg(long, env = "FOUNDRY_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    /// Secret of the GitHub webhook (enables `POST /v1/webhooks/github`).
    #[arg(long, env = "FOUNDRY_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,
    /// File holding the key (64 hex digits, mode 0600) that seals the users' GitHub OAuth tokens at rest; must exist.
    /// Default: <data-dir>/token-key, generated on first start. Tokens sealed under another key cannot be read (those
    /// users sign in with GitHub again).
    #[arg(long, env = "FOUNDRY_TOKEN_KEY_FILE")]
    token_key_file: Option<PathBuf>,
    /// Requests per minute one session token may make (API routes and WebSocket upgrades), sustained; above it
    /// the answer is 429 with Retry-After. 0: no limit.
    #[arg(long, env = "FOUNDRY_RATE_LIMIT_PER_TOKEN", default_value_t = 1200)]
    rate_limit_per_token: u32,
    /// Requests one session token may make at once, above its sustained rate.
    #[arg(long, env = "FOUNDRY_RATE_LIMIT_TOKEN_BURST", default_value_t = 300)]
    rate_limit_token_burst: u32,
    /// Sign-in requests (dev sign-in, GitHub OAuth start and callback) per minute per client address, sustained.
    /// 0: no limit.
    #[arg(long, env = "FOUNDRY_RATE_LIMIT_SIGN_IN", default_value_t = 60)]
    rate_limit_sign_in: u32,
    /// Sign-in requests one client address may make at once, above its sustained rate.
    #[arg(long, env = "FOUNDRY_RATE_LIMIT_SIGN_IN_BURST", default_value_t = 30)]
    rate_limit_sign_in_burst: u32,
    /// Behind a reverse proxy that appends the client's address to X-Forwarded-For: take the client address (for
    /// the sign-in limit) from its last entry instead of the TCP peer. Without such a proxy, clients could pick it.
    #[arg(long, env = "FOUNDRY_TRUST_FORWARDED_FOR")]
    trust_forwarded_for: bool,
    /// A server admin's login (repeat the flag, or separate logins with commas in the variable): they may use the
    /// runtime inspector (`/v1/admin`, the web app's Inspector page). Matched against the GitHub login a user
    /// signed in with, and against dev sign-in logins while dev sign-in is on. None by default, `--demo` included.
    #[arg(long = "server-admin", env = "FOUNDRY_SERVER_ADMINS", value_delimiter = ',')]
    server_admins: Vec<String>,
    /// Messages each live actor's trace keeps for the inspector; 0 turns tracing off.
    #[arg(long, env = "FOUNDRY_TRACE_SIZE", default_value_t = foundry::runtime::system::DEFAULT_TRACE_SIZE)]
    trace_size: usize,
    /// Cluster mode (preview): this node serves only the shards whose leases it holds in PostgreSQL
    /// (--postgres-url), among the nodes sharing that database; needs --node-id. Calls for other shards answer 503
    /// `not_owner` unless --nats-url names the NATS the nodes forward them through.
    #[arg(long, env = "FOUNDRY_CLUSTER")]
    cluster: bool,
    /// With --cluster: this node's stable name (1 to 64 of A-Z a-z 0-9 . _ -); shards are assigned by it, so a
    /// restarted node gets the same shards back.
    #[arg(long, env = "FOUNDRY_NODE_ID")]
    node_id: Option<String>,
    /// With --cluster: the PostgreSQL holding the shard leases (`postgresql://user:password@host:port/db`).
    #[arg(long, env = "FOUNDRY_POSTGRES_URL", hide_env_values = true)]
    postgres_url: Option<String>,
    /// With --cluster: where other nodes reach this one, recorded with the node in PostgreSQL (for operators; the
    /// transport goes through NATS).
    #[arg(long, env = "FOUNDRY_CLUSTER_ADDR")]
    cluster_addr: Option<String>,
    /// With --cluster: lease length in seconds (renewed every 3/10 of it; a node stops serving a shard 1/5 of it
    /// before its lease would expire). Default: 10.
    #[arg(long, env = "FOUNDRY_LEASE_TTL_SECS", value_parser = clap::value_parser!(u64).range(2..=600))]
    lease_ttl_secs: Option<u64>,
    /// With --cluster: the NATS server(s) nodes send each other requests through (`nats://host:4222`, commas for
    /// several). Without it, a call for an actor another node serves answers 503 `not_owner`.
    #[arg(long, env = "FOUNDRY_NATS_URL")]
    nats_url: Option<String>,
    /// With --nats-url: a CA certificate (PEM) the NATS server's certificate must chain to; the connection then
    /// requires TLS (a `tls://` URL requires it too, trusting the system's roots). PostgreSQL's TLS is set in its
    /// URL: `?sslmode=require&sslrootcert=/path/ca.pem`.
    #[arg(long, env = "FOUNDRY_NATS_CA_FILE")]
    nats_ca_file: Option<PathBuf>,
    /// With --cluster: PostgreSQL connections of the commit log (batches of appends in flight at once). More help
    /// only when PostgreSQL's commit is slow (a distant synchronous standby). Default: 1.
    #[arg(long, env = "FOUNDRY_LOG_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..=64))]
    log_connections: Option<u64>,
}

fn main() -> std::io::Result<()> {
    let args = match Cli::parse().command {
        Command::Serve(args) => *args,
        Command::RunCommands => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            return rt.block_on(foundry::integrations::workspace::serve_runner());
        }
    };
    let filter = tracing_subscriber::EnvFilter::new(&args.log);
    if args.log_format == "json" {
        tracing_subscriber::fmt().json().with_env_filter(filter).init();
    } else {
        // Colour codes only for a person at a terminal, never into files or pipes.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
        tracing_subscriber::fmt().with_ansi(ansi).with_env_filter(filter).init();
    }
    actix_rt::System::new().block_on(serve(args))
}

fn auth_settings(args: &Serve) -> std::io::Result<AuthSettings> {
    let github = match (&args.github_client_id, &args.github_client_secret) {
        (Some(id), Some(secret)) => Some(Arc::new(GitHubOAuth::new(OAuthConfig {
            client_id: id.clone(),
            client_secret: secret.clone(),
            web_base: args.github_web_url.trim_end_matches('/').to_owned(),
            api_base: args.github_api_url.trim_end_matches('/').to_owned(),
            redirect_uri: args
                .public_url
                .as_ref()
                .map(|u| format!("{}/v1/auth/github/callback", u.trim_end_matches('/'))),
            scopes: foundry::integrations::github::oauth::SIGN_IN_SCOPES.into(),
        }))),
        (None, None) => None,
        _ => return Err(std::io::Error::other("--github-client-id and --github-client-secret go together")),
    };
    let dev_sign_in = args.bind.ip().is_loopback() && !args.no_dev_sign_in;
    if dev_sign_in {
        tracing::warn!("dev sign-in is enabled (loopback bind): anyone on this machine can sign in as anyone");
    }
    Ok(AuthSettings {
        dev_sign_in,
        session_ttl: Duration::from_secs(args.session_ttl_hours.max(1) * 3600),
        secure_cookies: args.public_url.as_deref().is_some_and(|u| u.starts_with("https://")),
        github,
        dev_github: None,
    })
}

/// The `--server-admin` logins, checked and lowercased (logins match case-insensitively).
fn server_admins(given: &[String]) -> std::io::Result<Vec<String>> {
    let mut admins: Vec<String> = Vec::new();
    for login in given.iter().map(|l| l.trim()).filter(|l| !l.is_empty()) {
        foundry::actors::validate::login("server-admin", login)
            .map_err(|e| std::io::Error::other(format!("--server-admin {login:?}: {e}")))?;
        let login = login.to_lowercase();
        if !admins.contains(&login) {
            admins.push(login);
        }
    }
    if admins.len() > foundry::http::MAX_SERVER_ADMINS {
        return Err(std::io::Error::other(format!(
            "at most {} --server-admin logins",
            foundry::http::MAX_SERVER_ADMINS
        )));
    }
    if !admins.is_empty() {
        tracing::info!(admins = %admins.join(","), "server admins may use the runtime inspector");
    }
    Ok(admins)
}

/// The cluster configuration of `--cluster` and its flags (`None` without it), refused with the flag to fix.
fn cluster_config(args: &Serve) -> std::io::Result<Option<foundry::cluster::ClusterConfig>> {
    use foundry::cluster::{ClusterConfig, ConfigError};
    let err = |msg: String| std::io::Error::other(msg);
    if !args.cluster {
        let given = [
            ("--node-id", args.node_id.is_some()),
            ("--postgres-url", args.postgres_url.is_some()),
            ("--cluster-addr", args.cluster_addr.is_some()),
            ("--lease-ttl-secs", args.lease_ttl_secs.is_some()),
            ("--nats-url", args.nats_url.is_some()),
            ("--nats-ca-file", args.nats_ca_file.is_some()),
            ("--log-connections", args.log_connections.is_some()),
        ];
        let given: Vec<&str> = given.iter().filter(|(_, g)| *g).map(|(flag, _)| *flag).collect();
        if !given.is_empty() {
            let verb = if given.len() == 1 { "applies" } else { "apply" };
            return Err(err(format!("{} {verb} only with --cluster (FOUNDRY_CLUSTER)", given.join(", "))));
        }
        return Ok(None);
    }
    let node_id = args.node_id.clone().ok_or_else(|| err("--cluster needs --node-id (FOUNDRY_NODE_ID)".into()))?;
    let url =
        args.postgres_url.clone().ok_or_else(|| err("--cluster needs --postgres-url (FOUNDRY_POSTGRES_URL)".into()))?;
    let ttl = Duration::from_secs(args.lease_ttl_secs.unwrap_or(10));
    let mut config = ClusterConfig::new(node_id, url).with_ttl(ttl);
    if let Some(addr) = &args.cluster_addr {
        if addr.is_empty() || addr.len() > 256 || addr.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err(format!("--cluster-addr {addr:?}: 1 to 256 characters, no spaces")));
        }
        config.addr = Some(addr.clone());
    }
    if let Some(ca) = &args.nats_ca_file {
        if args.nats_url.is_none() {
            return Err(err("--nats-ca-file applies only with --nats-url (FOUNDRY_NATS_URL)".into()));
        }
        if let Err(e) =
            std::fs::metadata(ca)
                .and_then(|m| if m.is_file() { Ok(()) } else { Err(std::io::Error::other("not a file")) })
        {
            return Err(err(format!("--nats-ca-file {}: {e}", ca.display())));
        }
        config.nats_ca_file = Some(ca.clone());
    }
    if let Some(n) = args.log_connections {
        config.log_connections = usize::try_from(n).unwrap_or(1);
    }
    config.validate().map_err(|e| match e {
        ConfigError::NodeId(_) => err(format!("--node-id: {e}")),
        ConfigError::LogConnections(_) => err(format!("--log-connections: {e}")),
        // The URL itself is not repeated: it may hold a password.
        ConfigError::PostgresUrl(_) => err(format!("--postgres-url: {e}")),
        ConfigError::Timing(_) => err(format!("--lease-ttl-secs: {e}")),
    })?;
    Ok(Some(config))
}

/// Task workspaces: where they live and how git reaches them.
fn workspaces(args: &Serve, servers: Option<Arc<SandboxServers>>, runner: Arc<Runner>) -> std::io::Result<Workspaces> {
    if let (Some(servers), None) = (servers, &args.agent_url) {
        return Ok(Workspaces::per_task(servers));
    }
    let shell: Arc<dyn Shell> = match args.sandbox.as_str() {
        "sandbox-agent" => {
            let url = args
                .agent_url
                .as_deref()
                .ok_or_else(|| std::io::Error::other("--sandbox sandbox-agent needs --agent-url"))?;
            let root = match &args.sandbox_root {
                Some(root) => root.clone(),
                None => {
                    use sha2::Digest;
                    let dir = std::path::absolute(&args.data_dir)?;
                    let digest = sha2::Sha256::digest(dir.to_string_lossy().as_bytes());
                    let id: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
                    format!("/tmp/foundry-{id}")
                }
            };
            Arc::new(SandboxShell::new(url, &root))
        }
        _ => Arc::new(LocalShell::with_runner(std::path::absolute(args.data_dir.join("sandboxes"))?, runner)),
    };
    Ok(Workspaces::new(shell))
}

/// The GitHub API the sync and pull requests use (if any), and where git gets its tokens.
type GitHubAccess = (Option<Arc<dyn GitHubApi>>, Arc<dyn TokenSource>);

/// The GitHub API the sync uses: a static token's, a GitHub App's, or none; and where git gets its tokens.
fn github_api(args: &Serve) -> std::io::Result<GitHubAccess> {
    let app = match (&args.github_app_id, &args.github_app_private_key_file) {
        (Some(id), Some(path)) => Some((id, path)),
        (None, None) => None,
        _ => {
            return Err(std::io::Error::other("--github-app-id and --github-app-private-key-file go together"));
        }
    };
    match (&args.github_token, app) {
        (Some(_), Some(_)) => Err(std::io::Error::other(
            "--github-token and --github-app-id are exclusive: the sync authenticates either with a token or as an App",
        )),
        (Some(token), None) => Ok((
            Some(Arc::new(GitHubClient::new(&args.github_api_url, token))),
            Arc::new(StaticToken(Some(token.clone()))),
        )),
        (None, Some((id, path))) => {
            let pem = std::fs::read_to_string(path).map_err(|e| {
                std::io::Error::other(format!("cannot read the GitHub App private key {}: {e}", path.display()))
            })?;
            let app = GitHubApp::new(id, &pem, &args.github_api_url)
                .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
            tracing::info!(app_id = %app.app_id(), "GitHub sync authenticates as a GitHub App");
            let app = Arc::new(app);
            Ok((Some(Arc::new(AppClient::new(app.clone()))), Arc::new(AppTokens(app))))
        }
        (None, None) => Ok((None, Arc::new(StaticToken(None)))),
    }
}

async fn serve(args: Serve) -> std::io::Result<()> {
    // Checked before anything starts: a cluster flag without its companions is a configuration error to fix now.
    let cluster_config = cluster_config(&args)?;
    if cluster_config.is_some() && args.token_key_file.is_none() {
        // Each node would make its own key: tokens sealed on one node could not be opened where the actor moves.
        tracing::warn!(
            "cluster mode without --token-key-file: give every node the same key file, or OAuth tokens \
                        stored through one node cannot be read once their user's actor moves to another"
        );
    }
    // Started first, while this process has few descriptors open: workspace commands start there (see
    // `integrations/workspace/runner.rs`), so their cost does not grow with the live actors' open files.
    let runner = Arc::new(Runner::new(std::env::current_exe()?, vec!["run-commands".to_owned()]));
    runner.warm_up().await.map_err(std::io::Error::other)?;
    let mut auth = auth_settings(&args)?;
    let server_admins = server_admins(&args.server_admins)?;
    // Loaded before anything else starts: a missing or unreadable key is a configuration error to fix now.
    let cipher = match &args.token_key_file {
        Some(path) => TokenCipher::load(path),
        None => TokenCipher::load_or_create(&args.data_dir.join(foundry::secrets::KEY_FILE_NAME)),
    }
    .map_err(std::io::Error::other)?;
    tracing::info!(key_id = cipher.key_id(), "OAuth tokens are sealed with the token key");
    let (mut github, mut tokens) = github_api(&args)?;
    let servers = match &args.sandbox_agent_bin {
        Some(bin) => Some(Arc::new(SandboxServers::new(bin, std::path::absolute(args.data_dir.join("sandboxes"))?))),
        None => None,
    };
    // The sessions' agent server: the given one, else (with --sandbox-agent-bin) a shared one foundry starts; a task
    // with its own server runs its turns there.
    let agent_url = match (&args.agent_url, &servers) {
        (Some(url), _) => Some(url.clone()),
        (None, Some(servers)) => Some(servers.url_for("_shared").await.map_err(std::io::Error::other)?),
        (None, None) => None,
    };
    let workspaces = workspaces(&args, servers.clone(), runner)?;
    let mut webhook_secret = args.webhook_secret.as_ref().map(|s| s.as_bytes().to_vec());
    let demo = if args.demo {
        if github.is_some() {
            return Err(std::io::Error::other("--demo brings its own GitHub: drop --github-token / --github-app-id"));
        }
        let port = args.demo_github_port.unwrap_or_else(|| args.bind.port().wrapping_add(1));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let hook = format!("http://{}/v1/webhooks/github", loopback(args.bind));
        let demo = foundry::demo::start(addr, &args.data_dir, &hook)
            .await
            .map_err(|e| std::io::Error::other(format!("demo GitHub on {addr}: {e}")))?;
        let url = demo.server.base_url();
        tracing::info!(%url, owner = foundry::demo::DEMO_OWNER, "demo GitHub serving the sample repositories");
        github = Some(Arc::new(GitHubClient::new(&url, &demo.token)));
        tokens = Arc::new(StaticToken(Some(demo.token.clone())));
        webhook_secret = Some(demo.webhook_secret.as_bytes().to_vec());
        if auth.dev_sign_in {
            auth.dev_github = Some(demo.dev_sign_in());
        }
        Some(demo)
    } else {
        None
    };
    let mut config = RuntimeConfig::new(args.data_dir.clone());
    if let Some(max_live) = args.max_live {
        config.max_live = max_live as usize;
    }
    config.idle_timeout = args.idle_timeout_secs.map(Duration::from_secs);
    config.trace_size = args.trace_size;
    // Cluster mode: the lease manager starts before the runtime (whose router it is) and the HTTP server, and
    // registers this node at once; shards are acquired from its first round on.
    let mut cluster = match cluster_config {
        Some(c) => {
            let node = ClusterNode::start(c, args.nats_url.as_deref())
                .await
                .map_err(|e| std::io::Error::other(format!("cluster mode (--cluster): {e}")))?;
            tracing::info!(node = node.status().node_id(), "cluster mode: taking part through PostgreSQL");
            config.router = Some(node.router());
            config.commit_log = Some(node.commit_log());
            config.transport = node.transport();
            Some(node)
        }
        None => None,
    };
    let runtime = Runtime::start(config).map_err(std::io::Error::other)?;
    runtime.provide(Arc::new(foundry::actors::session::TurnPermits::new(args.max_turns as usize)));
    runtime.provide(Arc::new(cipher));
    if let Some(api) = github {
        runtime.provide(Arc::new(GitHubService(api)));
    }
    tracing::info!(provider = workspaces.provider(), "task workspaces");
    runtime.provide(Arc::new(workspaces));
    runtime.provide(Arc::new(GitTokens(tokens)));
    let backend = agent_url.as_ref().map(|url| SandboxAgent::new(url, &args.agent));
    if let Some(url) = &agent_url {
        // Tasks run their sandbox processes on the same sandbox-agent server as the sessions.
        runtime.provide(Arc::new(ProcessService(Arc::new(SandboxProcesses::new(url)))));
    }
    let agent: Arc<dyn AgentBackend> = match &backend {
        Some(server) => Arc::new(server.clone()),
        None => Arc::new(BuiltinAgent::new(std::time::Duration::from_millis(args.builtin_agent_pace_ms))),
    };
    // Registers every domain kind, so recovery can reach all of them.
    let domain = Domain::with_agent(runtime.clone(), agent);
    if let Some(server) = &backend {
        match domain.refresh_models(server, &args.agent).await {
            Ok(n) => tracing::info!(models = n, agent = %args.agent, "model catalog from sandbox-agent"),
            Err(e) => tracing::warn!(error = %e, "sandbox-agent catalog unavailable; using the built-in catalog"),
        }
    }
    match &mut cluster {
        // Outboxes resume per shard, as this node gains each one (this one's recovery index would be refused for
        // every shard not held yet).
        Some(node) => node.attach(&runtime),
        None => {
            let report = runtime.recover().await;
            if !report.failed.is_empty() {
                tracing::warn!(failed = report.failed.len(), "some actors could not resume outbox delivery");
            }
        }
    }
    let mut api = Api::new(domain, auth);
    api.cluster = cluster.as_ref().map(ClusterNode::status);
    api.webhook_secret = webhook_secret;
    api.github_app_id = args.github_app_id.clone();
    api.metrics_token = args.metrics_token.clone().filter(|t| !t.is_empty());
    api.server_admins = server_admins;
    api.set_rate_limits(RateLimits {
        token: RateLimit { per_minute: args.rate_limit_per_token, burst: args.rate_limit_token_burst },
        sign_in: RateLimit { per_minute: args.rate_limit_sign_in, burst: args.rate_limit_sign_in_burst },
        trust_forwarded_for: args.trust_forwarded_for,
    });
    let workers = args.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let api = Arc::new(api);
    // On SIGINT/SIGTERM: WebSockets close, the server stops accepting and drains requests; then the runtime drains
    // its mailboxes and closes databases. Listened to before the server can answer anyone.
    let signals = foundry::http::StopSignals::listen()?;
    let (server, addr) = foundry::http::server(api.clone(), args.bind, workers)?;
    tracing::info!(%addr, "listening");
    actix_rt::spawn(foundry::http::stop_on_signals(api, server.handle(), signals));
    server.await?;
    // Each shard's actors stop (drained through the runtime) before its lease is released, so the peer that takes it
    // over finds nobody still serving it; the runtime's own shutdown then closes whatever belongs to no held shard.
    if let Some(node) = cluster {
        match node.shutdown().await {
            Ok(report) => {
                tracing::info!(released = report.released, left_to_expire = report.left_to_expire, "left the cluster")
            }
            Err(e) => tracing::warn!(error = %e, "leaving the cluster failed; this node's leases will expire"),
        }
    }
    runtime.shutdown().await;
    if let Some(servers) = servers {
        servers.stop_all().await;
    }
    if let Some(demo) = demo {
        demo.server.stop().await;
    }
    Ok(())
}

/// Where this server is reached on this machine (a wildcard bind is reached on loopback).
fn loopback(bind: SocketAddr) -> SocketAddr {
    if bind.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], bind.port()))
    } else {
        bind
    }
}
