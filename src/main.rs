//! `foundry serve`: the long-running service.

use std::net::SocketAddr;
use std::path::PathBuf;

use actix_web::{web, App, HttpServer};
use clap::{Parser, Subcommand};
use std::sync::Arc;

use foundry::actors::Domain;
use foundry::integrations::agent::{AgentBackend, BuiltinAgent, SandboxAgent};
use foundry::runtime::{Runtime, RuntimeConfig};

#[derive(Parser)]
#[command(name = "foundry", version, about = "Backend for teams running AI coding agents")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "FOUNDRY_BIND", default_value = "127.0.0.1:7070")]
        bind: SocketAddr,
        /// Directory holding every actor's database.
        #[arg(long, env = "FOUNDRY_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        /// Log filter (tracing-subscriber env-filter syntax).
        #[arg(long, env = "FOUNDRY_LOG", default_value = "info")]
        log: String,
        /// A sandbox-agent server to run sessions on (e.g. http://127.0.0.1:2468); the built-in agent if unset.
        #[arg(long, env = "FOUNDRY_AGENT_URL")]
        agent_url: Option<String>,
        /// The sandbox-agent agent id to use with --agent-url.
        #[arg(long, env = "FOUNDRY_AGENT", default_value = "claude")]
        agent: String,
    },
}

fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { bind, data_dir, log, agent_url, agent } => {
            tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new(log)).init();
            let backend = agent_url.map(|url| (SandboxAgent::new(&url, &agent), agent));
            actix_rt::System::new().block_on(serve(bind, data_dir, backend))
        }
    }
}

async fn serve(bind: SocketAddr, data_dir: PathBuf, backend: Option<(SandboxAgent, String)>) -> std::io::Result<()> {
    let runtime = Runtime::start(RuntimeConfig::new(data_dir)).map_err(std::io::Error::other)?;
    // Registers every domain kind, so recovery can reach all of them.
    let agent: Arc<dyn AgentBackend> = match &backend {
        Some((server, _)) => Arc::new(server.clone()),
        None => Arc::new(BuiltinAgent::default()),
    };
    let domain = Domain::with_agent(runtime.clone(), agent);
    if let Some((server, agent_id)) = &backend {
        match domain.refresh_models(server, agent_id).await {
            Ok(n) => tracing::info!(models = n, agent = %agent_id, "model catalog from sandbox-agent"),
            Err(e) => tracing::warn!(error = %e, "sandbox-agent catalog unavailable; using the built-in catalog"),
        }
    }
    let report = runtime.recover().await;
    if !report.failed.is_empty() {
        tracing::warn!(failed = report.failed.len(), "some actors could not resume outbox delivery");
    }
    let data = web::Data::new(runtime.clone());
    tracing::info!(%bind, "listening");
    // actix-web stops accepting and drains requests on SIGINT/SIGTERM; then the runtime drains and closes databases.
    HttpServer::new(move || App::new().app_data(data.clone()).configure(foundry::http::configure))
        .bind(bind)?
        .run()
        .await?;
    runtime.shutdown().await;
    Ok(())
}
