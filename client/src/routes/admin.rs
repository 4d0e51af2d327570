//! The runtime inspector (`/v1/admin/*`), for server admins: the runtime, a kind's live actors, one actor's state,
//! tables, rows, read-only SQL and trace. Keys are the actors' encoded keys (sent as one path segment).

use reqwest::Method;

use super::seg;
use crate::client::json;
use crate::types::{
    ActorDetail, ActorPage, ActorsQuery, DumpQuery, QueryAnswer, QueryBody, RuntimeView, TableDump, TraceView,
};
use crate::{Client, Result};

fn actor_path(kind: &str, key: &str) -> String {
    format!("/v1/admin/kinds/{}/actors/{}", seg(kind), seg(key))
}

impl Client {
    /// `GET /v1/admin/runtime`: the runtime and every actor kind.
    pub async fn admin_runtime(&self) -> Result<RuntimeView> {
        self.call(Method::GET, "/v1/admin/runtime", None).await
    }

    /// `GET /v1/admin/kinds/{kind}/actors`: a page of the kind's live actors (`nextAfter` as `after` for the next).
    pub async fn admin_actors(&self, kind: &str, query: &ActorsQuery) -> Result<ActorPage> {
        let mut params = Vec::new();
        if let Some(after) = &query.after {
            params.push(format!("after={}", seg(after)));
        }
        if let Some(limit) = query.limit {
            params.push(format!("limit={limit}"));
        }
        let query = if params.is_empty() { String::new() } else { format!("?{}", params.join("&")) };
        self.call(Method::GET, &format!("/v1/admin/kinds/{}/actors{query}", seg(kind)), None).await
    }

    /// `GET /v1/admin/kinds/{kind}/actors/{key}`: one actor's state and tables (activating it if it passivated).
    pub async fn admin_actor(&self, kind: &str, key: &str) -> Result<ActorDetail> {
        self.call(Method::GET, &actor_path(kind, key), None).await
    }

    /// `GET /v1/admin/kinds/{kind}/actors/{key}/tables/{table}`: a page of one table's rows.
    pub async fn admin_table(&self, kind: &str, key: &str, table: &str, query: &DumpQuery) -> Result<TableDump> {
        let mut params = Vec::new();
        if let Some(offset) = query.offset {
            params.push(format!("offset={offset}"));
        }
        if let Some(limit) = query.limit {
            params.push(format!("limit={limit}"));
        }
        let query = if params.is_empty() { String::new() } else { format!("?{}", params.join("&")) };
        self.call(Method::GET, &format!("{}/tables/{}{query}", actor_path(kind, key), seg(table)), None).await
    }

    /// `POST /v1/admin/kinds/{kind}/actors/{key}/query`: one read-only statement on a copy of its database.
    pub async fn admin_query(&self, kind: &str, key: &str, body: &QueryBody) -> Result<QueryAnswer> {
        self.call(Method::POST, &format!("{}/query", actor_path(kind, key)), json(body)).await
    }

    /// `GET /v1/admin/kinds/{kind}/actors/{key}/trace`: its recent messages, newest first.
    pub async fn admin_trace(&self, kind: &str, key: &str) -> Result<TraceView> {
        self.call(Method::GET, &format!("{}/trace", actor_path(kind, key)), None).await
    }
}
