//! foundry: the backend for teams running AI coding agents on their repositories.
//!
//! [`runtime`] is the actor framework (typed messages on actix, one SQLite database per actor); [`http`] is the web
//! layer. See ARCHITECTURE.md for the map.

pub mod actors;
pub mod http;
pub mod runtime;
