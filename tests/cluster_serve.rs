//! `foundry serve --cluster` as real processes against a private PostgreSQL (issue 15, item 5): two nodes split the
//! 1,024 shards by rendezvous and both become ready; a node whose peer still holds its shards answers `/readyz` 503
//! `acquiring_shards` until it has them, and a node cut off from Postgres 503 `store_unreachable` once its leases
//! lapsed (and `not_owner` to calls); SIGTERM hands a node's shards over by releasing them, kill -9 lets them expire
//! first; what a killed node acknowledged is served by the next one, rebuilt from PostgreSQL's commit log after
//! the dead node's disk was deleted; and the cluster flags are checked before anything starts.

mod cluster_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use cluster_support::{nats::NatsServer, postgres::PgServer, proxy::Proxy};
use foundry::cluster::rendezvous;
use foundry::cluster::store::{HistoryRow, Store};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const FOUNDRY: &str = env!("CARGO_BIN_EXE_foundry");

/// Environment variables of `serve` that would change what these tests start.
const CLUSTER_ENV: &[&str] = &[
    "FOUNDRY_CLUSTER",
    "FOUNDRY_NODE_ID",
    "FOUNDRY_POSTGRES_URL",
    "FOUNDRY_CLUSTER_ADDR",
    "FOUNDRY_LEASE_TTL_SECS",
    "FOUNDRY_NATS_URL",
];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One `foundry serve --cluster` process.
struct Node {
    id: &'static str,
    child: Option<Child>,
    base: String,
    _data: tempfile::TempDir,
}

impl Node {
    fn start(id: &'static str, postgres_url: &str, ttl_secs: u64) -> Node {
        Node::start_with(id, postgres_url, ttl_secs, None)
    }

    /// As [`Node::start`], reaching the other nodes' actors through the NATS at `nats_url` if given.
    fn start_with(id: &'static str, postgres_url: &str, ttl_secs: u64, nats_url: Option<&str>) -> Node {
        let data = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut command = Command::new(FOUNDRY);
        command
            .args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--log", "warn", "--workers", "1"])
            .arg("--data-dir")
            .arg(data.path())
            .args(["--cluster", "--node-id", id, "--postgres-url", postgres_url])
            .args(["--lease-ttl-secs", &ttl_secs.to_string(), "--cluster-addr", &format!("127.0.0.1:{port}")]);
        if let Some(url) = nats_url {
            command.args(["--nats-url", url]);
        }
        for var in CLUSTER_ENV {
            command.env_remove(var);
        }
        let child = command.stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().unwrap();
        Node { id, child: Some(child), base: format!("http://127.0.0.1:{port}"), _data: data }
    }

    /// `/readyz`'s status code and body, once the server answers.
    async fn readyz(&self, client: &reqwest::Client) -> Option<(u16, Value)> {
        let res = client.get(format!("{}/readyz", self.base)).send().await.ok()?;
        Some((res.status().as_u16(), res.json().await.ok()?))
    }

    /// Waits until `/readyz` answers 200.
    async fn ready(&self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some((200, body)) = self.readyz(client).await {
                assert_eq!(body["status"], "ready", "{body}");
                return;
            }
            assert!(Instant::now() < deadline, "node {} did not become ready", self.id);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `foundry_cluster_shards_owned` from `/metrics` (the server must be up).
    async fn owned(&self, client: &reqwest::Client) -> u64 {
        let text = client.get(format!("{}/metrics", self.base)).send().await.unwrap().text().await.unwrap();
        metric(&text, "foundry_cluster_shards_owned").unwrap_or_else(|| panic!("no shards gauge in:\n{text}"))
    }

    fn signal(&self, signal: i32) {
        let child = self.child.as_ref().expect("running");
        // SAFETY: plain kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    }

    /// Waits for the process to end (it was signalled).
    async fn exited(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(30))).await.unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the process did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Waits until `cond` holds (a hang guard, not a timing assertion).
async fn until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the two nodes serve exactly the shards rendezvous gives each of them.
async fn split(client: &reqwest::Client, a: &Node, b: &Node) {
    let desired = rendezvous::assign(&[a.id, b.id]);
    let want_a = desired.iter().filter(|d| **d == Some(0)).count() as u64;
    assert!((400..=624).contains(&want_a), "rendezvous splits 1,024 shards roughly in half: {want_a}");
    a.ready(client).await;
    b.ready(client).await;
    until("the shards split by rendezvous", || async {
        (a.owned(client).await, b.owned(client).await) == (want_a, 1024 - want_a)
    })
    .await;
}

/// The history row of the latest acquisition of each shard.
fn latest(history: &[HistoryRow]) -> Vec<&HistoryRow> {
    let mut last: Vec<Option<&HistoryRow>> = vec![None; 1024];
    for row in history {
        let slot = &mut last[usize::from(row.shard.0)];
        if slot.is_none_or(|r| r.epoch < row.epoch) {
            *slot = Some(row);
        }
    }
    last.into_iter().map(|r| r.expect("every shard was acquired")).collect()
}

/// The acquisition just before `latest` of the same shard.
fn previous<'h>(history: &'h [HistoryRow], latest: &HistoryRow) -> &'h HistoryRow {
    history
        .iter()
        .find(|h| h.shard == latest.shard && h.epoch.0 + 1 == latest.epoch.0)
        .unwrap_or_else(|| panic!("no acquisition before {latest:?}"))
}

/// The shards rendezvous gives node `index` of `nodes`.
fn assigned(nodes: &[&str], index: usize) -> Vec<usize> {
    let desired = rendezvous::assign(nodes);
    (0..desired.len()).filter(|s| desired[*s] == Some(index)).collect()
}

#[actix_rt::test]
async fn two_nodes_split_the_shards_hand_them_over_on_sigterm_and_take_them_after_a_kill() {
    let Some(pg) = PgServer::start().await else { return };
    let client = foundry::integrations::http_client_builder().build().unwrap();

    // "a" alone, with 10 s leases, reaching Postgres through a proxy the test can freeze: it takes every shard.
    let proxy = Proxy::start(pg.addr());
    let mut a = Node::start("a", &pg.url_via(proxy.addr()), 10);
    a.ready(&client).await;
    assert_eq!(a.owned(&client).await, 1024);

    // "a" cut off from Postgres: its leases hold for up to 10 s more. "b" starts meanwhile and cannot be ready
    // before it holds the shards rendezvous gives it (all of them once "a" stops heartbeating), which only happens
    // when those leases expire.
    proxy.pause();
    let b = Node::start("b", &pg.url(), 3);
    let first = loop {
        if let Some(answer) = b.readyz(&client).await {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(first.0, 503, "{first:?}");
    assert_eq!(first.1["status"], "acquiring_shards", "{first:?}");
    assert_eq!(first.1["shards_owned"], 0, "{first:?}");
    b.ready(&client).await;
    until("b owns every shard", || async { b.owned(&client).await == 1024 }).await;
    // "a" stopped serving before Postgres let "b" have its shards (self-expiry comes first), so by now it is out.
    let (status, body) = a.readyz(&client).await.unwrap();
    assert_eq!((status, body["status"].as_str()), (503, Some("store_unreachable")), "{body}");
    assert_eq!(a.owned(&client).await, 0);
    let res =
        client.post(format!("{}/v1/auth/dev/sign-in", a.base)).json(&json!({ "login": "alice" })).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_owner", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("shard ") && message.contains("not served by this node"), "{message}");
    assert!(message.contains("retry"), "{message}");

    // A restarted "a" (3 s leases, no proxy) gets its half back from "b", handed over.
    a.signal(libc::SIGKILL);
    a.exited().await;
    drop(proxy);
    let mut a = Node::start("a", &pg.url(), 3);
    split(&client, &a, &b).await;

    // SIGTERM: "a" releases its shards after stopping their actors; "b" takes each one without waiting for expiry.
    a.signal(libc::SIGTERM);
    assert!(a.exited().await.success(), "graceful exit");
    until("b owns every shard after a left", || async { b.owned(&client).await == 1024 }).await;
    let store = Store::connect(&pg.url(), "cluster_serve test", Duration::from_secs(10)).await.unwrap();
    let history = store.history().await.unwrap();
    let latest_rows = latest(&history);
    for shard in assigned(&["a", "b"], 0) {
        let (now, before) = (latest_rows[shard], previous(&history, latest_rows[shard]));
        assert!(before.owner.starts_with("a/") && before.released_at.is_some(), "a released {shard}: {before:?}");
        assert!(now.owner.starts_with("b/") && now.prev_owner.is_none(), "b found {shard} free: {now:?}");
    }

    // kill -9: "b"'s leases are not released; "a" (restarted) takes them once they expired.
    let mut a = Node::start("a", &pg.url(), 3);
    split(&client, &a, &b).await;
    let mut b = b;
    b.signal(libc::SIGKILL);
    b.exited().await;
    until("a owns every shard after b died", || async { a.owned(&client).await == 1024 }).await;
    let history = store.history().await.unwrap();
    let latest_rows = latest(&history);
    for shard in assigned(&["a", "b"], 1) {
        let (now, before) = (latest_rows[shard], previous(&history, latest_rows[shard]));
        assert!(before.owner.starts_with("b/") && before.released_at.is_none(), "b never released {shard}: {before:?}");
        assert!(now.owner.starts_with("a/"), "a holds {shard}: {now:?}");
        assert_eq!(now.prev_owner.as_deref(), Some(before.owner.as_str()), "taken from b: {now:?}");
        let expired = now.prev_expires_at.expect("the lease taken over had an expiry");
        assert!(now.acquired_at >= expired, "{shard} taken only after b's lease expired: {now:?}");
    }
    a.ready(&client).await;
    a.signal(libc::SIGTERM);
    assert!(a.exited().await.success());
    let rows = store.shards().await.unwrap();
    assert!(rows.iter().all(|r| r.owner.is_none()), "every lease released at the end");
}

/// The fenced commit log end to end: what a node acknowledged survives the loss of that node and of its disk. "a"
/// alone signs a user in and creates an organization; it is killed (-9) and its data directory deleted; "b", a new
/// machine, takes every shard once "a"'s leases expired and rebuilds each actor from PostgreSQL: the same token still
/// signs the user in and the organization is there.
#[actix_rt::test]
async fn what_a_killed_node_acknowledged_is_served_by_the_next_one_from_postgres() {
    let Some(pg) = PgServer::start().await else { return };
    let client = foundry::integrations::http_client_builder().build().unwrap();
    let mut a = Node::start("a", &pg.url(), 3);
    a.ready(&client).await;
    let res =
        client.post(format!("{}/v1/auth/dev/sign-in", a.base)).json(&json!({ "login": "alice" })).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let token = res.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    let res = client
        .post(format!("{}/v1/orgs", a.base))
        .bearer_auth(&token)
        .json(&json!({ "id": "acme", "displayName": "Acme Corp" }))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{:?}", res.text().await);

    a.signal(libc::SIGKILL);
    a.exited().await;
    let a_data = a._data.path().to_owned();
    std::fs::remove_dir_all(&a_data).unwrap();
    let b = Node::start("b", &pg.url(), 3);
    b.ready(&client).await;
    until("b owns every shard", || async { b.owned(&client).await == 1024 }).await;
    let res = client.get(format!("{}/v1/orgs/acme", b.base)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 200, "the organization survived the loss of the node that created it");
    let org: Value = res.json().await.unwrap();
    assert_eq!(org["profile"]["displayName"], "Acme Corp", "{org}");
    assert_eq!(org["members"][0]["login"], "alice", "{org}");
    // The rebuilt actors go on committing on "b", through its own commit log.
    let res = client
        .post(format!("{}/v1/orgs", b.base))
        .bearer_auth(&token)
        .json(&json!({ "id": "beta", "displayName": "Beta" }))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{:?}", res.text().await);
    let text = client.get(format!("{}/metrics", b.base)).send().await.unwrap().text().await.unwrap();
    assert!(metric(&text, "foundry_cluster_log_appends_total").is_some_and(|n| n > 0), "b's commits are logged");
}

/// The product across nodes (issue 15): with two nodes splitting the shards and reaching each other through NATS,
/// every request works on either node, whichever serves the actors it needs (the auth directory, the user, each
/// organization and its repositories land on shards spread over both). Signed in on "a", the same token works on
/// "b"; organizations created on either are read, listed and changed on the other.
#[actix_rt::test]
async fn every_request_works_on_either_node_whichever_serves_its_actors() {
    let Some(pg) = PgServer::start().await else { return };
    let Some(nats) = NatsServer::start() else { return };
    let client = foundry::integrations::http_client_builder().build().unwrap();
    let a = Node::start_with("a", &pg.url(), 10, Some(&nats.url()));
    let b = Node::start_with("b", &pg.url(), 10, Some(&nats.url()));
    split(&client, &a, &b).await;

    let res =
        client.post(format!("{}/v1/auth/dev/sign-in", a.base)).json(&json!({ "login": "alice" })).send().await.unwrap();
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    let token = res.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    let send = |req: reqwest::RequestBuilder| {
        let token = token.clone();
        async move {
            let res = req.bearer_auth(token).send().await.unwrap();
            let status = res.status().as_u16();
            let body = res.json::<Value>().await.unwrap_or(Value::Null);
            (status, body)
        }
    };

    // Organizations whose shards fall on both nodes (ids hash to shards): create each through "a" or "b" in turn,
    // so that some call crosses in each direction whatever rendezvous decided.
    let ids = ["acme", "beta", "gamma", "delta", "epsilon", "zeta"];
    for (i, id) in ids.iter().enumerate() {
        let (via, other) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        // With an Idempotency-Key, as the README's quick start does: the key's records live with the actors, on
        // whichever node serves them; the same request again, through the other node, replays the first answer.
        let create = |node: &Node| {
            client
                .post(format!("{}/v1/orgs", node.base))
                .header("idempotency-key", format!("create-{id}"))
                .json(&json!({ "id": id, "displayName": format!("Org {id}") }))
        };
        let (status, body) = send(create(via)).await;
        assert_eq!(status, 201, "create {id} through {}: {body}", via.id);
        let (status, again) = send(create(other)).await;
        assert_eq!((status, &again), (201, &body), "the retry through {} replays the first answer", other.id);
        let (status, org) = send(client.get(format!("{}/v1/orgs/{id}", other.base))).await;
        assert_eq!(status, 200, "read {id} through {}: {org}", other.id);
        assert_eq!(org["profile"]["displayName"], format!("Org {id}"), "{org}");
        assert_eq!(org["members"][0]["login"], "alice", "{org}");
    }
    for node in [&a, &b] {
        let (status, list) = send(client.get(format!("{}/v1/orgs", node.base))).await;
        assert_eq!(status, 200, "{list}");
        let mut listed: Vec<&str> =
            list["organizations"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap()).collect();
        listed.sort_unstable();
        let mut want = ids.to_vec();
        want.sort_unstable();
        assert_eq!(listed, want, "listed through {}", node.id);
    }

    // A domain refusal crosses as itself: the same code and status whichever node answers.
    for node in [&a, &b] {
        let (status, body) =
            send(client.post(format!("{}/v1/orgs", node.base)).json(&json!({ "id": "acme", "displayName": "Again" })))
                .await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["error"]["code"], "conflict", "{body}");
        let (status, body) = send(client.get(format!("{}/v1/orgs/nope", node.base))).await;
        assert!(status == 403 || status == 404, "{status} {body}");
    }

    // Changes through one node are seen through the other: a repository added through "b" to each organization.
    for id in ids {
        let (status, body) = send(client.post(format!("{}/v1/orgs/{id}/repos", b.base)).json(&json!({
            "repoId": "app", "fullName": format!("{id}/app"), "remoteUrl": format!("https://example.invalid/{id}/app.git")
        })))
        .await;
        assert_eq!(status, 201, "{body}");
        let (status, repo) = send(client.get(format!("{}/v1/orgs/{id}/repos/app", a.base))).await;
        assert_eq!(status, 200, "{repo}");
        assert_eq!(repo["fullName"], format!("{id}/app"), "{repo}");
    }

    // WebSocket subscriptions work on either node too: each node's socket follows all six organizations (so some
    // are served by the other node, whose frames cross over NATS), and a change made through either node reaches both.
    let mut sockets = Vec::new();
    for node in [&a, &b] {
        let mut req = format!("{}/v1/ws", node.base.replace("http://", "ws://")).into_client_request().unwrap();
        req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        for id in ids {
            let frame = json!({ "type": "subscribe", "topic": "organization", "key": { "org": id } });
            ws.send(Message::Text(frame.to_string().into())).await.unwrap();
        }
        let mut first = std::collections::BTreeSet::new();
        while first.len() < ids.len() {
            let frame = ws_frame(&mut ws).await;
            assert_eq!(frame["type"], "organizationUpdated", "through {}: {frame}", node.id);
            first.insert(frame["key"]["org"].as_str().unwrap().to_owned());
        }
        sockets.push(ws);
    }
    for (i, id) in ids.iter().enumerate() {
        let via = if i % 2 == 0 { &b } else { &a };
        let (status, body) = send(client.post(format!("{}/v1/orgs/{id}/repos", via.base)).json(&json!({
            "repoId": "lib", "fullName": format!("{id}/lib"), "remoteUrl": format!("https://example.invalid/{id}/lib.git")
        })))
        .await;
        assert_eq!(status, 201, "{body}");
    }
    for (ws, node) in sockets.iter_mut().zip([&a, &b]) {
        let mut updated = std::collections::BTreeSet::new();
        while updated.len() < ids.len() {
            let frame = ws_frame(ws).await;
            let repos = frame["snapshot"]["repos"].as_array().cloned().unwrap_or_default();
            if repos.iter().any(|r| r["repoId"] == "lib") {
                updated.insert(frame["key"]["org"].as_str().unwrap().to_owned());
            }
        }
        assert_eq!(updated.len(), ids.len(), "through {}", node.id);
    }
    // Every subscription is a link on its socket's node; those to the other node's actors are served there.
    let mut upstreams = 0;
    for node in [&a, &b] {
        let text = client.get(format!("{}/metrics", node.base)).send().await.unwrap().text().await.unwrap();
        assert_eq!(metric(&text, "foundry_cluster_topic_links"), Some(ids.len() as u64), "{}:\n{text}", node.id);
        upstreams += metric(&text, "foundry_cluster_topic_upstreams").unwrap();
    }
    assert!(upstreams > 0, "some subscriptions crossed to the other node");
    drop(sockets);

    // A task created through "a" (the repository, its task and session actors share the organization's shard) is
    // listed and shown through "b".
    for id in ["acme", "beta"] {
        let (status, task) = send(
            client.post(format!("{}/v1/orgs/{id}/repos/app/tasks", a.base)).json(&json!({ "prompt": "Add a README" })),
        )
        .await;
        assert_eq!(status, 201, "{task}");
        let task_id = task["taskId"].as_str().unwrap();
        let (status, tasks) = send(client.get(format!("{}/v1/orgs/{id}/repos/app/tasks", b.base))).await;
        assert_eq!(status, 200, "{tasks}");
        let listed = tasks.as_array().unwrap();
        assert_eq!(listed.len(), 1, "{tasks}");
        assert_eq!(
            (listed[0]["taskId"].as_str(), listed[0]["title"].as_str()),
            (Some(task_id), Some("docs: add a README"))
        );
        let (status, detail) = send(client.get(format!("{}/v1/orgs/{id}/repos/app/tasks/{task_id}", b.base))).await;
        assert_eq!(status, 200, "{detail}");
        assert_eq!((detail["orgId"].as_str(), detail["prompt"].as_str()), (Some(id), Some("Add a README")), "{detail}");
    }

    // Both nodes sent calls to the other and served the other's: the transport carried requests both ways.
    for node in [&a, &b] {
        let text = client.get(format!("{}/metrics", node.base)).send().await.unwrap().text().await.unwrap();
        for name in ["foundry_cluster_remote_calls_total", "foundry_cluster_remote_served_total"] {
            assert!(metric(&text, name).is_some_and(|n| n > 0), "{} {name}:\n{text}", node.id);
        }
    }
}

/// The next text frame of a WebSocket as JSON, within 15 s.
async fn ws_frame<S>(ws: &mut S) -> Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let next = tokio::time::timeout(Duration::from_secs(15), ws.next()).await.expect("a frame within 15 s");
        match next.expect("the socket stays open").expect("a frame") {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Runs `serve` with `args` and expects it to refuse at once: non-zero exit, the message naming `flag`, nothing
/// created in the data directory.
fn refused(args: &[&str], flag: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data: PathBuf = dir.path().join("data");
    let mut command = Command::new(FOUNDRY);
    command.args(["serve", "--bind", "127.0.0.1:0", "--data-dir"]).arg(&data).args(args);
    for var in CLUSTER_ENV {
        command.env_remove(var);
    }
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(30));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{args:?} must be refused");
    assert!(stderr.contains(flag), "{args:?}: the message names {flag}: {stderr}");
    assert!(!Path::new(&data).exists(), "{args:?}: nothing was created");
}

#[test]
fn cluster_flags_are_checked_before_anything_starts() {
    refused(&["--cluster"], "--node-id");
    refused(&["--cluster", "--node-id", "n1"], "--postgres-url");
    refused(&["--cluster", "--node-id", "n 1", "--postgres-url", "postgresql://u@127.0.0.1:9/db"], "--node-id");
    refused(&["--cluster", "--node-id", "n1", "--postgres-url", "postgresql://[::1"], "--postgres-url");
    refused(
        &["--cluster", "--node-id", "n1", "--postgres-url", "postgresql://u@127.0.0.1:9/db", "--lease-ttl-secs", "1"],
        "--lease-ttl-secs",
    );
    refused(&["--node-id", "n1"], "--cluster");
    refused(&["--postgres-url", "postgresql://u@127.0.0.1:9/db"], "--cluster");
    // TLS settings that cannot work are refused before anything starts too.
    let pg = "postgresql://u@127.0.0.1:9/db";
    refused(&["--cluster", "--node-id", "n1", "--postgres-url", pg, "--nats-ca-file", "/etc/hostname"], "--nats-url");
    let nats = ["--nats-url", "tls://127.0.0.1:9", "--nats-ca-file", "/nonexistent/ca.pem"];
    refused(&[&["--cluster", "--node-id", "n1", "--postgres-url", pg][..], &nats[..]].concat(), "--nats-ca-file");
    let no_root = "postgresql://u@127.0.0.1:9/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem";
    refused(&["--cluster", "--node-id", "n1", "--postgres-url", no_root], "--postgres-url");
}
