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
            let agent: Arc<dyn AgentBackend> = match agent_url {
                Some(url) => Arc::new(SandboxAgent::new(&url, &agent)),
                None => Arc::new(BuiltinAgent::default()),
            };
            actix_rt::System::new().block_on(serve(bind, data_dir, agent))
        }
    }
}

async fn serve(bind: SocketAddr, data_dir: PathBuf, agent: Arc<dyn AgentBackend>) -> std::io::Result<()> {
    let runtime = Runtime::start(RuntimeConfig::new(data_dir)).map_err(std::io::Error::other)?;
    // Registers every domain kind, so recovery can reach all of them.
    let _domain = Domain::with_agent(runtime.clone(), agent);
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
