//! Test harness for cluster mode: a private PostgreSQL server (`postgres.rs`) and a fault-injecting TCP proxy
//! (`proxy.rs`) to put between a node and a server.
#![allow(dead_code)]

pub mod postgres;
pub mod proxy;
