//! foundry: the backend for teams running AI coding agents on their repositories.
//!
//! [`runtime`] is the actor framework (typed messages on actix, one SQLite database per actor); [`actors`] is the
//! domain on it; [`http`] is the web layer; [`integrations`] reach outside systems behind traits; [`secrets`] seals
//! what must be stored encrypted; [`cluster`] is cluster mode's shard ownership in PostgreSQL (in progress). See
//! ARCHITECTURE.md for the map.

pub mod actors;
pub mod cluster;
pub mod demo;
pub mod http;
pub mod integrations;
pub mod runtime;
pub mod secrets;
