//! Test harness for cluster mode: a private PostgreSQL server (`postgres.rs`), a private NATS server (`nats.rs`) and
//! a fault-injecting TCP proxy (`proxy.rs`) to put between a node and a server.
#![allow(dead_code)]

pub mod nats;
pub mod postgres;
pub mod proxy;
