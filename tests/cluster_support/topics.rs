//! Topic watchers of the fault harness (issue 15: "topics never regress"): one WebSocket per node (`GET /v1/ws`),
//! each following a few organizations' `organization` topic with patches (small frames: the load changes those
//! organizations many times a second), every frame's version recorded per (node, topic). A connection that drops
//! (its node killed or stopping) is made again to the same node once it answers; its subscriptions are made again
//! too, and their first frame (a full snapshot) may repeat the version last seen on that node but never be lower. A
//! subscription refused (an `error` frame about it: its shard between owners) is asked again half a second later.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// What the watchers saw.
#[derive(Debug, Default, Clone)]
pub struct TopicReport {
    /// `organizationUpdated` / `organizationPatched` frames.
    pub frames: u64,
    /// A frame whose version is lower than the previous one of its (node, topic), on the same connection or the first
    /// of a later one.
    pub regressions: Vec<String>,
    /// Frames repeating the previous version (allowed: a snapshot after a reconnection).
    pub repeats: u64,
    /// Patches whose `base` was not the version the connection held (the client lost track: never expected).
    pub base_gaps: u64,
    /// Connections made (the first one per node included).
    pub connections: u64,
    /// Refused subscriptions, by code.
    pub errors: BTreeMap<String, u64>,
}

pub struct TopicWatch {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    report: Arc<Mutex<TopicReport>>,
}

impl TopicWatch {
    /// One watcher per node of `bases`, each following `orgs`, signed in with `token`.
    pub fn start(bases: &[String], token: &str, orgs: &[String]) -> TopicWatch {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let report = Arc::new(Mutex::new(TopicReport::default()));
        let tasks = bases
            .iter()
            .enumerate()
            .map(|(node, base)| {
                let url = format!("{}/v1/ws", base.replace("http://", "ws://"));
                let watcher =
                    Watcher { node, url, token: token.to_owned(), orgs: orgs.to_vec(), report: report.clone() };
                tokio::spawn(watcher.run(stopped.clone()))
            })
            .collect();
        TopicWatch { stop, tasks, report }
    }

    /// Stops every watcher (their sockets closed) and returns what they saw.
    pub async fn stop(self) -> TopicReport {
        let _ = self.stop.send(true);
        for task in self.tasks {
            task.await.unwrap();
        }
        self.report.lock().unwrap().clone()
    }
}

struct Watcher {
    node: usize,
    url: String,
    token: String,
    orgs: Vec<String>,
    report: Arc<Mutex<TopicReport>>,
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl Watcher {
    async fn run(self, mut stopped: tokio::sync::watch::Receiver<bool>) {
        // The last version seen per topic on this node, across its connections.
        let mut seen: BTreeMap<String, u64> = BTreeMap::new();
        while !*stopped.borrow() {
            let Some(mut ws) = self.connect().await else {
                tokio::select! {
                    _ = stopped.changed() => return,
                    _ = tokio::time::sleep(Duration::from_millis(250)) => continue,
                }
            };
            self.report.lock().unwrap().connections += 1;
            let mut due: Vec<(Instant, String)> = self.orgs.iter().map(|o| (Instant::now(), o.clone())).collect();
            // The version each topic is at on this connection.
            let mut held: BTreeMap<String, u64> = BTreeMap::new();
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            let mut pinged = Instant::now();
            loop {
                tokio::select! {
                    _ = stopped.changed() => {
                        let _ = ws.close(None).await;
                        return;
                    }
                    _ = tick.tick() => {
                        let now = Instant::now();
                        let (ready, later): (Vec<_>, Vec<_>) = due.drain(..).partition(|(at, _)| *at <= now);
                        due = later;
                        let mut failed = false;
                        for (_, org) in ready {
                            let frame = json!({"type": "subscribe", "topic": "organization", "key": {"org": org},
                                "patches": true});
                            failed |= ws.send(Message::Text(frame.to_string().into())).await.is_err();
                        }
                        // Silent clients are dropped after 45 s: a ping now and then keeps this one heard.
                        if pinged.elapsed() > Duration::from_secs(10) {
                            pinged = now;
                            failed |= ws.send(Message::Text(json!({"type": "ping"}).to_string().into())).await.is_err();
                        }
                        if failed {
                            break;
                        }
                    }
                    msg = ws.next() => match msg {
                        Some(Ok(Message::Text(text))) => {
                            let frame: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                            if let Some(org) = self.record(&frame, &mut held, &mut seen) {
                                due.push((Instant::now() + Duration::from_millis(500), org));
                            }
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => break,
                    }
                }
            }
        }
    }

    async fn connect(&self) -> Option<Socket> {
        let mut req = self.url.as_str().into_client_request().unwrap();
        req.headers_mut().insert("authorization", format!("Bearer {}", self.token).parse().unwrap());
        let attempt = tokio::time::timeout(Duration::from_secs(3), tokio_tungstenite::connect_async(req)).await;
        attempt.ok()?.ok().map(|(ws, _)| ws)
    }

    /// Records one server frame; the organization to subscribe to again, if the frame ended its subscription.
    fn record(
        &self,
        frame: &Value,
        held: &mut BTreeMap<String, u64>,
        seen: &mut BTreeMap<String, u64>,
    ) -> Option<String> {
        let kind = frame["type"].as_str().unwrap_or_default();
        let org = frame["key"]["org"].as_str().map(str::to_owned);
        let mut report = self.report.lock().unwrap();
        match kind {
            "organizationUpdated" | "organizationPatched" => {
                let (org, version) = (org?, frame["version"].as_u64()?);
                report.frames += 1;
                let node = self.node + 1;
                match held.get(&org) {
                    Some(&prev) => {
                        if version < prev {
                            report.regressions.push(format!("n{node} {org}: {version} after {prev}"));
                        }
                        if kind == "organizationPatched" && frame["base"].as_u64() != Some(prev) {
                            report.base_gaps += 1;
                        }
                    }
                    None => {
                        if let Some(&prev) = seen.get(&org).filter(|&&prev| version < prev) {
                            report.regressions.push(format!("n{node} {org}: {version} after {prev}, reconnected"));
                        }
                    }
                }
                if held.get(&org).or(seen.get(&org)) == Some(&version) {
                    report.repeats += 1;
                }
                held.insert(org.clone(), version);
                seen.insert(org, version);
                None
            }
            "error" => {
                *report.errors.entry(frame["code"].as_str().unwrap_or("?").to_owned()).or_insert(0) += 1;
                org.filter(|_| frame["topic"] == "organization")
            }
            "unsubscribed" => org,
            _ => None,
        }
    }
}
