//! Operational routes: liveness (`/healthz`), readiness (`/readyz`: 503 while shutting down, and in cluster mode
//! until the node holds its shards or when it lost them with Postgres) and Prometheus metrics (`/metrics`: per actor
//! kind, plus HTTP and WebSocket counters, and the shard leases in cluster mode; loopback clients only, or holders of
//! the metrics token).

use std::fmt::Write;
use std::net::IpAddr;
use std::sync::atomic::Ordering;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::{ApiError, HttpStats};
use crate::cluster::{ClusterStatus, Readiness};
use crate::runtime::Runtime;

#[derive(Serialize)]
struct Health {
    status: &'static str,
    live_actors: usize,
    /// Cluster mode: the shards this node serves now.
    #[serde(skip_serializing_if = "Option::is_none")]
    shards_owned: Option<usize>,
}

async fn healthz(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let api = super::api(&req)?;
    let live_actors = api.domain.runtime.live_actors();
    Ok(HttpResponse::Ok().json(Health { status: "ok", live_actors, shards_owned: None }))
}

/// Ready while the runtime accepts calls; 503 once it is shutting down (load balancers stop sending traffic). In
/// cluster mode also 503 while the node is still acquiring its shards, has lost them with Postgres, or has left.
async fn readyz(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let api = super::api(&req)?;
    let rt = &api.domain.runtime;
    let shards_owned = api.cluster.as_ref().map(ClusterStatus::shards_served);
    let status = if rt.is_shutting_down() {
        "shutting_down"
    } else {
        api.cluster.as_ref().map_or(Readiness::Ready, ClusterStatus::readiness).as_str()
    };
    let health = Health { status, live_actors: rt.live_actors(), shards_owned };
    Ok(if status == Readiness::Ready.as_str() {
        HttpResponse::Ok().json(health)
    } else {
        HttpResponse::ServiceUnavailable().json(health)
    })
}

/// Prometheus text exposition of the runtime's counters, per actor kind.
pub fn render_metrics(rt: &Runtime) -> String {
    type Metric = (&'static str, &'static str, &'static str, fn(&crate::runtime::KindStats, u64) -> u64);
    const METRICS: &[Metric] = &[
        ("foundry_live_actors", "gauge", "Live actors.", |s, _| s.live.load(Ordering::Relaxed) as u64),
        ("foundry_mailbox_depth", "gauge", "Calls in flight (queued or running) to live actors.", |_, d| d),
        ("foundry_messages_total", "counter", "Messages handled.", |s, _| s.messages.load(Ordering::Relaxed)),
        ("foundry_transactions_total", "counter", "Write transactions committed.", |s, _| {
            s.transactions.load(Ordering::Relaxed)
        }),
        ("foundry_committed_mutations_total", "counter", "Mutations committed.", |s, _| {
            s.committed_mutations.load(Ordering::Relaxed)
        }),
        ("foundry_activations_total", "counter", "Actor activations.", |s, _| s.activations.load(Ordering::Relaxed)),
        ("foundry_activation_failures_total", "counter", "Failed activations.", |s, _| {
            s.activation_failures.load(Ordering::Relaxed)
        }),
        ("foundry_passivations_total", "counter", "Actors stopped (idle, evicted or shut down).", |s, _| {
            s.passivations.load(Ordering::Relaxed)
        }),
        ("foundry_restarts_total", "counter", "Restarts after a panic.", |s, _| s.restarts.load(Ordering::Relaxed)),
        ("foundry_destroyed_total", "counter", "Actors destroyed (database deleted).", |s, _| {
            s.destroyed.load(Ordering::Relaxed)
        }),
    ];
    let mut rows: Vec<(&'static str, Vec<u64>)> = Vec::new();
    rt.for_each_kind(|kind, stats, depth| rows.push((kind, METRICS.iter().map(|m| (m.3)(stats, depth)).collect())));
    rows.sort_by_key(|(kind, _)| *kind);
    let mut out = String::new();
    for (i, (name, kind, help, _)) in METRICS.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (actor_kind, values) in &rows {
            let _ = writeln!(out, "{name}{{kind=\"{actor_kind}\"}} {}", values[i]);
        }
    }
    let _ = writeln!(
        out,
        "# HELP foundry_topic_channels Topic channels with subscribers.\n# TYPE foundry_topic_channels gauge\n\
         foundry_topic_channels {}",
        rt.topic_channels()
    );
    let _ = writeln!(
        out,
        "# HELP foundry_connections Topic subscribers the actors know (connections).\n\
         # TYPE foundry_connections gauge\nfoundry_connections {}",
        rt.connection_count()
    );
    if let Some(gate) = rt.service::<crate::actors::session::TurnPermits>() {
        let gauges = [
            ("foundry_turns_running", "Agent turns running (each holds a turn permit).", gate.running()),
            ("foundry_turns_waiting", "Sessions waiting for a turn permit.", gate.waiting()),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
    }
    out
}

/// The web layer's own gauges and counters, appended to [`render_metrics`].
pub fn render_http_metrics(stats: &HttpStats, out: &mut String) {
    let rows: [(&str, &str, &str, u64); 5] = [
        ("foundry_ws_sessions", "gauge", "Open WebSocket sessions.", stats.ws_sessions.load(Ordering::Relaxed)),
        ("foundry_ws_sessions_total", "counter", "WebSocket sessions opened.", stats.ws_opened.load(Ordering::Relaxed)),
        ("foundry_ws_frames_sent_total", "counter", "Snapshot frames sent.", stats.ws_frames.load(Ordering::Relaxed)),
        ("foundry_ws_dropped_total", "counter", "WebSocket clients dropped (dead, too slow or oversize frames).", {
            stats.ws_dropped.load(Ordering::Relaxed)
        }),
        ("foundry_http_rate_limited_total", "counter", "Requests refused by a rate limit.", {
            stats.rate_limited.load(Ordering::Relaxed)
        }),
    ];
    for (name, kind, help, value) in rows {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    }
    let name = "foundry_http_responses_total";
    let _ = writeln!(out, "# HELP {name} API responses by status class.\n# TYPE {name} counter");
    for (i, class) in ["2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
        let _ = writeln!(out, "{name}{{class=\"{class}\"}} {}", stats.responses[i].load(Ordering::Relaxed));
    }
}

/// Cluster mode's gauges and counters (shard leases), appended to [`render_metrics`].
pub fn render_cluster_metrics(cluster: &ClusterStatus, out: &mut String) {
    let stats = cluster.stats();
    let (renewals, renew_time) = stats.renewals();
    let rows: [(&str, &str, &str, u64); 4] = [
        ("foundry_cluster_shards_owned", "gauge", "Shards this node serves now.", cluster.shards_served() as u64),
        ("foundry_cluster_shards_acquired_total", "counter", "Shard leases acquired.", stats.acquired()),
        (
            "foundry_cluster_shards_lost_total",
            "counter",
            "Shard leases given up: handed off, expired, refused or \
          stopped.",
            stats.lost(),
        ),
        (
            "foundry_cluster_lease_renew_failures_total",
            "counter",
            "Lease renewals that failed (an error, or no answer \
          within the call timeout).",
            stats.renew_failures(),
        ),
    ];
    for (name, kind, help, value) in rows {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    }
    let log = cluster.log_stats();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let log_rows: [(&str, &str, u64); 7] = [
        ("foundry_cluster_log_appends_total", "Commit log entries appended (fenced, durable).", load(&log.appends)),
        ("foundry_cluster_log_bytes_total", "Bytes of commit log entries appended.", load(&log.bytes)),
        ("foundry_cluster_log_fenced_total", "Appends refused by the lease fence (not the owner).", load(&log.fenced)),
        ("foundry_cluster_log_failures_total", "Appends that failed otherwise (PostgreSQL unreachable, an error).", {
            load(&log.failed)
        }),
        ("foundry_cluster_log_transactions_total", "PostgreSQL transactions carrying appends.", load(&log.batches)),
        ("foundry_cluster_log_wake_writes_total", "Writes that changed an actor's wake state (fdy_actor_wake).", {
            load(&log.wake_writes)
        }),
        ("foundry_cluster_log_wake_only_total", "Of those, writes of the wake state alone (no entry).", {
            load(&log.wake_only)
        }),
    ];
    for (name, help, value) in log_rows {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
    }
    if let Some(t) = cluster.transport_stats() {
        let rows: [(&str, &str, u64); 6] = [
            ("foundry_cluster_remote_calls_total", "Requests sent to the node serving a shard (NATS).", load(&t.sent)),
            (
                "foundry_cluster_remote_no_responders_total",
                "Of those, answered \"nobody serves this shard\" (retried until a node does).",
                load(&t.no_responders),
            ),
            ("foundry_cluster_remote_served_total", "Requests from other nodes served here.", load(&t.served)),
            (
                "foundry_cluster_remote_direct_total",
                "Requests sent straight to the node last heard serving the shard.",
                load(&t.direct),
            ),
            (
                "foundry_cluster_remote_stale_hints_total",
                "Of those, not served there (or unanswered): sent to the shard's queue group instead.",
                load(&t.stale_hints),
            ),
            (
                "foundry_cluster_remote_moved_total",
                "Requests given up on a previous owner once another node announced it serves the shard.",
                load(&t.moved),
            ),
        ];
        for (name, help, value) in rows {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        }
    }
    let name = "foundry_cluster_log_append_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Round trips of the commit log's PostgreSQL transactions (each carries a batch of appends).\n\
         # TYPE {name} summary\n{name}_sum {}\n{name}_count {}",
        load(&log.batch_micros) as f64 / 1e6,
        load(&log.batches)
    );
    let name = "foundry_cluster_lease_renew_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Round trips of successful lease renewals (one statement renews all of the node's leases).\n\
         # TYPE {name} summary\n{name}_sum {}\n{name}_count {renewals}",
        renew_time.as_secs_f64()
    );
}

/// Who may read `/metrics`: with a token configured, a caller presenting it (`Authorization: Bearer`); without one,
/// loopback clients only (the counters describe the whole service, so they are not for anyone who reaches the port).
fn metrics_allowed(peer: Option<IpAddr>, token: Option<&str>, authorization: Option<&str>) -> Result<(), ApiError> {
    match token {
        Some(token) => {
            let given = authorization.and_then(|h| h.strip_prefix("Bearer ")).unwrap_or("");
            // Digests compared with no early exit: the time taken must not tell how much of a guess was right.
            use sha2::{Digest, Sha256};
            let (a, b) = (Sha256::digest(given.as_bytes()), Sha256::digest(token.as_bytes()));
            if a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0 {
                Ok(())
            } else {
                Err(ApiError::unauthenticated("/metrics needs the metrics token (Authorization: Bearer <token>)"))
            }
        }
        None if peer.is_some_and(|ip| ip.is_loopback()) => Ok(()),
        None => Err(ApiError::forbidden(
            "/metrics answers loopback clients only; start the server with --metrics-token to scrape it remotely",
        )),
    }
}

async fn metrics(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let api = super::api(&req)?;
    let authorization = req.headers().get("authorization").and_then(|h| h.to_str().ok());
    metrics_allowed(req.peer_addr().map(|a| a.ip()), api.metrics_token.as_deref(), authorization)?;
    let mut text = render_metrics(&api.domain.runtime);
    render_http_metrics(&api.stats, &mut text);
    if let Some(cluster) = &api.cluster {
        render_cluster_metrics(cluster, &mut text);
        let (links, upstreams) = api.domain.runtime.link_counts();
        let gauges = [
            (
                "foundry_cluster_topic_links",
                "Connections of this node's subscribers (each linked to its actor's node).",
                links,
            ),
            (
                "foundry_cluster_topic_upstreams",
                "Connections this node serves for other nodes' subscribers.",
                upstreams,
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                text,
                "# HELP {name} {help}
# TYPE {name} gauge
{name} {value}"
            );
        }
    }
    Ok(HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(text))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_for_loopback_or_token_holders() {
        let lo: Option<IpAddr> = Some([127, 0, 0, 1].into());
        let lan: Option<IpAddr> = Some([10, 0, 0, 7].into());
        assert!(metrics_allowed(lo, None, None).is_ok());
        assert!(metrics_allowed(Some(std::net::Ipv6Addr::LOCALHOST.into()), None, None).is_ok());
        assert_eq!(metrics_allowed(lan, None, None).unwrap_err().code, "forbidden");
        assert_eq!(metrics_allowed(None, None, None).unwrap_err().code, "forbidden");
        // With a token, the token decides, wherever the caller is.
        assert!(metrics_allowed(lan, Some("s3cret"), Some("Bearer s3cret")).is_ok());
        for wrong in [None, Some("Bearer s3cre"), Some("Bearer s3cret2"), Some("s3cret"), Some("Basic s3cret")] {
            assert_eq!(metrics_allowed(lo, Some("s3cret"), wrong).unwrap_err().code, "unauthenticated", "{wrong:?}");
        }
    }
}
