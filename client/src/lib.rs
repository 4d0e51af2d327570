//! foundry-client: a typed client of foundry's HTTP API (`/v1`) and WebSocket topics (`/v1/ws`).
//!
//! The request and response types are the server's own (`foundry::http::wire`, re-exported as [`types`]): the client
//! serialises what the handlers parse and parses what they serialise, so the two cannot drift apart unnoticed. Every
//! refusal is an [`ApiError`] with the server's stable code. Creating calls return a [`Creating`] request that takes
//! an `Idempotency-Key`; [`Client::events`] opens the WebSocket, whose frames arrive as [`types::ServerFrame`]s, and
//! [`TopicState`] folds a topic's snapshot and patches into its current state. [`typescript`] renders the same types
//! as TypeScript declarations for the web app (`src/http/webapp/api.d.ts`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), foundry_client::ClientError> {
//! use foundry_client::types::{CreateTaskBody, RepoKey};
//! use foundry_client::{Client, Subscribe, TopicState};
//!
//! let client = Client::new("http://127.0.0.1:8080")?.with_token("fdy_...");
//! let repo = RepoKey::new("acme", "web");
//! let body = CreateTaskBody { prompt: "Fix the login page".into(), ..Default::default() };
//! let created = client.create_task(&repo, &body).idempotency_key("7f9c2a").await?;
//! let session = repo.task(&created.task_id).session(&created.session_id);
//! let mut events = client.subscribe(Subscribe::session(&session).after(created.session_version).patches()).await?;
//! let mut state = TopicState::<foundry_client::types::SessionDetail>::new();
//! while let Some(frame) = events.next().await? {
//!     if state.apply(&frame)? {
//!         println!("{:?}", state.snapshot()?.map(|s| s.status));
//!     }
//! }
//! # Ok(()) }
//! ```

mod client;
mod error;
mod events;
mod routes;
pub mod typescript;

pub use client::{Answer, Client, Creating};
pub use error::{ApiError, ClientError, FoldError};
pub use events::{Events, Subscribe, TopicState};

/// The API's request and response bodies, topic keys and WebSocket frames: the server's own types.
pub mod types {
    pub use foundry::http::wire::*;
}

/// The result of every call.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
