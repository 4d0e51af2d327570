//! The multi-process harness's load and checker (issue 15, "Goals, measured by that harness"): a paced, bounded
//! generator of operations round-robin over the nodes (repository creations, `POST /v1/orgs/{org}/repos` with repoId
//! = op id, the op id as `Idempotency-Key`; or a small mutation, [`OpKind`]), each retried on another node until
//! acknowledged or given up, every answer journaled; then the checks once the cluster is quiet: every acknowledged
//! op present exactly once through a node and in each organization rebuilt straight from PostgreSQL's commit log,
//! nothing applied twice, the outbox effects of each creation there exactly once and the organization's summaries
//! agreeing with its repositories (`effects.rs`, `rebuild.rs`), topic versions never going back (`topics.rs`), and
//! the log's audit (per actor, snapshots and log entries alike: txids contiguous, epochs non-decreasing, each entry
//! written by the holder of its epoch, none written after a later epoch of its shard was acquired).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foundry::runtime::ShardId;
use serde_json::{json, Value};

use super::effects::NodeEffects;
use super::rebuild::{AuditCounts, Rebuilt};
use super::topics::TopicReport;

/// What each operation of a load does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OpKind {
    /// `POST /v1/orgs/{org}/repos`: a new repository actor, an audit entry and the organization's row (201).
    #[default]
    CreateRepo,
    /// `PUT /v1/me/default-model` as one of [`Target::users`] in turn, flipping between the first two catalog models
    /// ([`Target::models`]) so every op changes the one profile row of an existing user actor (200). No audit entry,
    /// no outbox, no new actor: the cheapest real mutation (every organization-level mutation also appends to the
    /// audit log through the outbox). Setting a value is idempotent: retries need no key.
    SetDefaultModel,
}

/// What the generator sends and how hard it tries.
#[derive(Clone, Copy, Debug)]
pub struct LoadConfig {
    /// Operations started per second (open loop: each is due at its time, whatever the answers do).
    pub rate: f64,
    /// Most operations in flight; beyond it the generator waits (and is late).
    pub max_in_flight: usize,
    pub duration: Duration,
    /// How long an operation is retried before it is given up (unacknowledged).
    pub retry_for: Duration,
    /// Bound on one attempt; a node that does not answer within it is skipped for a while.
    pub attempt_timeout: Duration,
    /// Every n-th operation's first acknowledgement is thrown away and the operation retried on another node, as if
    /// the answer had been lost on the way (0: never): the retry must be answered by a replay, never a conflict.
    pub lose_answer_every: u64,
    /// Send each op's id as its `Idempotency-Key` (a retry is then answered by a replay). In cluster mode a keyed
    /// creation is served only by the node serving the organization (the idempotency messages do not travel between
    /// nodes): the others answer 503 `not_owner` and the op moves on to the next node at once. Unkeyed, every node
    /// forwards the creation to the organization's node, but a retry after a lost answer is answered 409.
    pub keyed: bool,
    pub op: OpKind,
}

/// Where the load goes.
pub struct Target {
    pub bases: Vec<String>,
    pub token: String,
    pub orgs: Vec<String>,
    /// Prefix of this run's op ids.
    pub prefix: String,
    /// Tokens of the users [`OpKind::SetDefaultModel`] changes (op `n` is user `n % len`'s).
    pub users: Vec<String>,
    /// The two model ids [`OpKind::SetDefaultModel`] alternates between.
    pub models: Vec<String>,
}

impl Target {
    /// The creating load's target: no users for small mutations.
    pub fn new(bases: Vec<String>, token: String, orgs: Vec<String>, prefix: impl Into<String>) -> Target {
        Target { bases, token, orgs, prefix: prefix.into(), users: Vec::new(), models: Vec::new() }
    }
}

#[derive(Clone, Debug)]
pub struct Ack {
    pub at: Instant,
    /// When the acknowledged attempt was sent (a failover is measured from faults to acks of attempts sent after).
    pub attempt_sent: Instant,
    pub node: usize,
    pub replayed: bool,
}

#[derive(Clone, Debug)]
pub struct OpRecord {
    pub op: String,
    pub org: String,
    pub sent: Instant,
    pub ack: Option<Ack>,
    pub attempts: u32,
    /// 409 `conflict` answers: the repository already existed, i.e. an earlier attempt of this op had applied it and
    /// the retry was not recognised (applied twice, as far as the client can tell).
    pub conflicts: u32,
    /// Acknowledgements thrown away on purpose ([`LoadConfig::lose_answer_every`]).
    pub lost_answers: u32,
    /// 503 `not_owner` answers (the node did not serve the organization and did not forward the op).
    pub not_owner: u32,
    /// The answer that ended the op without an ack (unexpected status), or the last retryable failure.
    pub error: Option<String>,
}

#[derive(Default)]
pub struct Journal {
    pub ops: Vec<OpRecord>,
    /// Operations started more than 50 ms after they were due (the in-flight bound held them back).
    pub late_starts: usize,
    /// Operations due in the window but never sent (still held back by the in-flight bound when it ended).
    pub not_sent: usize,
    pub started: Option<Instant>,
    pub ended: Option<Instant>,
}

impl Journal {
    pub fn acked(&self) -> impl Iterator<Item = (&OpRecord, &Ack)> {
        self.ops.iter().filter_map(|o| o.ack.as_ref().map(|a| (o, a)))
    }
}

/// Signs `login` in through the first node that answers (dev sign-in), within `limit`.
pub async fn sign_in(client: &reqwest::Client, bases: &[String], login: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    for i in 0.. {
        let base = &bases[i % bases.len()];
        let res = client
            .post(format!("{base}/v1/auth/dev/sign-in"))
            .json(&json!({ "login": login }))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if let Ok(res) = res {
            if res.status() == 200 {
                let body: Value = res.json().await.unwrap();
                return body["token"].as_str().unwrap().to_owned();
            }
        }
        assert!(Instant::now() < deadline, "no node signed {login} in");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    unreachable!()
}

/// Two model ids of the catalog for [`OpKind::SetDefaultModel`]: one that `token`'s user does not have as its
/// default first, then its default, so that every op (the first one of each new user too) changes its row.
pub async fn two_models(client: &reqwest::Client, base: &str, token: &str) -> Vec<String> {
    let get = |path: &str| {
        let req = client.get(format!("{base}{path}")).bearer_auth(token).timeout(Duration::from_secs(10));
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let catalog = get("/v1/models").await;
    let current = get("/v1/me").await["defaultModel"].as_str().expect("the app snapshot's default model").to_owned();
    let ids = catalog.as_array().expect("the model catalog").iter().filter_map(|m| m["id"].as_str());
    let other = ids.into_iter().find(|id| *id != current).expect("a catalog of at least two models").to_owned();
    vec![other, current]
}

/// Creates `orgs` (idempotently, retried over the nodes), within `limit` each.
pub async fn create_orgs(client: &reqwest::Client, bases: &[String], token: &str, orgs: &[String], limit: Duration) {
    for (n, org) in orgs.iter().enumerate() {
        let deadline = Instant::now() + limit;
        let mut last: String;
        for i in n.. {
            let base = &bases[i % bases.len()];
            let res = client
                .post(format!("{base}/v1/orgs"))
                .bearer_auth(token)
                // No Idempotency-Key: in cluster mode a keyed creation works only on the node serving both the user
                // and the organization (see `LoadConfig::keyed`). A retry answered 409 finds the organization made.
                .json(&json!({ "id": org, "displayName": format!("Org {org}") }))
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            match res {
                Ok(r) if r.status() == 201 || r.status() == 409 => break,
                Ok(r) if r.status().is_client_error() && r.status() != 429 => {
                    panic!("creating {org}: {} {:?}", r.status(), r.text().await)
                }
                Ok(r) => last = format!("{} {:?}", r.status(), r.text().await),
                Err(e) => last = e.to_string(),
            }
            assert!(Instant::now() < deadline, "{org} could not be created: {last}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Nodes that did not answer an attempt recently, skipped by the round-robin (a load balancer's health check).
struct Suspects(Mutex<Vec<Option<Instant>>>);

impl Suspects {
    fn pick(&self, from: usize) -> usize {
        let s = self.0.lock().unwrap();
        let now = Instant::now();
        (0..s.len()).map(|k| (from + k) % s.len()).find(|&i| s[i].is_none_or(|until| until < now)).unwrap_or(from)
    }

    fn mark(&self, node: usize) {
        self.0.lock().unwrap()[node] = Some(Instant::now() + Duration::from_secs(2));
    }
}

/// Runs the load for `cfg.duration`, then waits for every operation in flight to end (acked or given up).
pub async fn run_load(client: reqwest::Client, target: Arc<Target>, cfg: LoadConfig) -> Journal {
    let journal = Arc::new(Mutex::new(Journal::default()));
    let permits = Arc::new(tokio::sync::Semaphore::new(cfg.max_in_flight));
    let suspects = Arc::new(Suspects(Mutex::new(vec![None; target.bases.len()])));
    let start = Instant::now();
    journal.lock().unwrap().started = Some(start);
    let period = Duration::from_secs_f64(1.0 / cfg.rate);
    let mut n: u64 = 0;
    loop {
        let due = start + period * n as u32;
        let end = start + cfg.duration;
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        // The window is wall time: ops the in-flight bound held back past its end are not sent at all, so a cluster
        // slower than the rate shows as fewer ops, not as a longer run.
        let Ok(Ok(permit)) = tokio::time::timeout_at(end.into(), permits.clone().acquire_owned()).await else { break };
        if Instant::now() > due + Duration::from_millis(50) {
            journal.lock().unwrap().late_starts += 1;
        }
        let op = format!("{}-{n}", target.prefix);
        // Every organization in turn, and each one's first node shifted by one per round: all pairs come up.
        let (orgs, nodes) = (target.orgs.len(), target.bases.len());
        let org = target.orgs[n as usize % orgs].clone();
        let lose = cfg.lose_answer_every > 0 && n % cfg.lose_answer_every == cfg.lose_answer_every - 1;
        let (client, target, suspects, journal) = (client.clone(), target.clone(), suspects.clone(), journal.clone());
        let first = suspects.pick((n as usize + n as usize / orgs) % nodes);
        tokio::spawn(async move {
            let rec = one_op(&client, &target, &suspects, (n, op), org, first, cfg, lose).await;
            journal.lock().unwrap().ops.push(rec);
            drop(permit);
        });
        n += 1;
    }
    journal.lock().unwrap().not_sent = ((cfg.duration.as_secs_f64() * cfg.rate) as usize).saturating_sub(n as usize);
    let _all = permits.acquire_many(cfg.max_in_flight as u32).await.unwrap();
    let mut journal = std::mem::take(&mut *journal.lock().unwrap());
    journal.ended = Some(Instant::now());
    journal.ops.sort_by_key(|o| o.sent);
    journal
}

/// One operation outside the paced load (its first attempt to node `first`), journaled the same way.
pub async fn send_op(
    client: &reqwest::Client,
    target: &Target,
    op: String,
    org: String,
    first: usize,
    cfg: LoadConfig,
) -> OpRecord {
    let suspects = Suspects(Mutex::new(vec![None; target.bases.len()]));
    one_op(client, target, &suspects, (0, op), org, first, cfg, false).await
}

#[allow(clippy::too_many_arguments)]
async fn one_op(
    client: &reqwest::Client,
    target: &Target,
    suspects: &Suspects,
    (n, op): (u64, String),
    org: String,
    first: usize,
    cfg: LoadConfig,
    lose: bool,
) -> OpRecord {
    let sent = Instant::now();
    let mut rec = OpRecord {
        op: op.clone(),
        org: org.clone(),
        sent,
        ack: None,
        attempts: 0,
        conflicts: 0,
        lost_answers: 0,
        not_owner: 0,
        error: None,
    };
    let (body, token, done) = match cfg.op {
        OpKind::CreateRepo => {
            let repo = format!("https://example.invalid/bench/{op}.git");
            (json!({ "repoId": op, "fullName": format!("bench/{op}"), "remoteUrl": repo }), &target.token, 201)
        }
        OpKind::SetDefaultModel => {
            let users = target.users.len() as u64;
            let model = &target.models[((n / users) % 2) as usize];
            (json!({ "model": model }), &target.users[(n % users) as usize], 200)
        }
    };
    let mut node = first;
    loop {
        let attempt_sent = Instant::now();
        rec.attempts += 1;
        let base = &target.bases[node];
        let mut req = match cfg.op {
            OpKind::CreateRepo => client.post(format!("{base}/v1/orgs/{org}/repos")),
            OpKind::SetDefaultModel => client.put(format!("{base}/v1/me/default-model")),
        };
        req = req.bearer_auth(token).json(&body).timeout(cfg.attempt_timeout);
        if cfg.keyed {
            req = req.header("idempotency-key", &op);
        }
        let res = req.send().await;
        let mut pause = Duration::from_millis(100);
        match res {
            Ok(res) => {
                let status = res.status().as_u16();
                let replayed = res.headers().contains_key("idempotent-replayed");
                let answer: Value = res.json().await.unwrap_or(Value::Null);
                let code = answer["error"]["code"].as_str().unwrap_or("").to_owned();
                match status {
                    _ if status == done && lose && rec.lost_answers == 0 => rec.lost_answers += 1,
                    _ if status == done => {
                        rec.ack = Some(Ack { at: Instant::now(), attempt_sent, node, replayed });
                        return rec;
                    }
                    409 if code == "conflict" => {
                        rec.conflicts += 1;
                        rec.error = Some(format!("409 conflict from node {node}"));
                        return rec;
                    }
                    503 if code == "not_owner" => {
                        rec.not_owner += 1;
                        rec.error = Some(format!("{status} {code}"));
                        // Another node may serve it now: asking the next one costs no wait.
                        if !rec.not_owner.is_multiple_of(3) {
                            pause = Duration::ZERO;
                        }
                    }
                    409 | 429 | 500..=599 => rec.error = Some(format!("{status} {code}")),
                    _ => {
                        rec.error = Some(format!("{status} {code}: {answer}"));
                        return rec;
                    }
                }
            }
            Err(e) => {
                suspects.mark(node);
                rec.error = Some(if e.is_timeout() { "timeout".into() } else { "connection".into() });
            }
        }
        if Instant::now() + pause >= sent + cfg.retry_for {
            return rec;
        }
        tokio::time::sleep(pause).await;
        node = suspects.pick((node + 1) % target.bases.len());
    }
}

/// Each organization's repository ids read through the node at `base` (retried until `limit`).
pub async fn read_through(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    orgs: &[String],
    limit: Duration,
) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for org in orgs {
        let deadline = Instant::now() + limit;
        loop {
            let res = client
                .get(format!("{base}/v1/orgs/{org}/repos"))
                .bearer_auth(token)
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            if let Ok(res) = res {
                if res.status() == 200 {
                    let rows: Vec<Value> = res.json().await.unwrap();
                    let ids = rows.iter().map(|r| r["repoId"].as_str().unwrap().to_owned()).collect();
                    out.insert(org.clone(), ids);
                    break;
                }
            }
            assert!(Instant::now() < deadline, "{org}'s repositories unreadable through {base}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    out
}

/// The commit log's audit: what it found, and how many entries it read.
#[derive(Debug, Default)]
pub struct LogAudit {
    pub entries: usize,
    pub actors: usize,
    /// Gaps, epochs going back, entries written by a node that did not hold their epoch.
    pub violations: Vec<String>,
    /// Entries appended more than a second after a later epoch of their shard had been acquired: a commit the fence
    /// should have refused (a second covers an append and a takeover racing for the same row lock).
    pub late_commits: Vec<String>,
}

pub async fn audit_log(pg: &tokio_postgres::Client) -> LogAudit {
    let rows = pg
        .query(
            // An actor's entries are its first (or latest compaction's) snapshot, then the log after it.
            "WITH l AS (
                 SELECT kind, key, txid, epoch, owner, appended_at AS at FROM fdy_actor_log
                 UNION ALL SELECT kind, key, txid, epoch, owner, taken_at FROM fdy_actor_snapshot)
             SELECT l.kind, l.key, l.txid, l.epoch, l.owner, h.owner,
                    EXTRACT(EPOCH FROM (l.at - nh.acquired_at))::float8
               FROM l
               JOIN fdy_actor_head a ON a.kind = l.kind AND a.key = l.key
               LEFT JOIN fdy_shard_history h ON h.shard = a.shard AND h.epoch = l.epoch
               LEFT JOIN fdy_shard_history nh ON nh.shard = a.shard AND nh.epoch = l.epoch + 1
              ORDER BY l.kind, l.key, l.txid",
            &[],
        )
        .await
        .unwrap();
    let mut audit = LogAudit { entries: rows.len(), ..LogAudit::default() };
    let mut last: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    for r in rows {
        let (kind, key, txid, epoch, writer, holder, after_next): (
            String,
            String,
            i64,
            i64,
            String,
            Option<String>,
            Option<f64>,
        ) = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6));
        let id = format!("{kind}/{key}#{txid}");
        if holder.as_deref() != Some(writer.as_str()) {
            audit.violations.push(format!("{id}: written by {writer} under epoch {epoch} held by {holder:?}"));
        }
        if let Some(late) = after_next.filter(|s| *s > 1.0) {
            audit.late_commits.push(format!("{id}: appended by {writer} {late:.1} s after epoch {} began", epoch + 1));
        }
        let actor = (kind, key);
        if let Some((prev_txid, prev_epoch)) = last.get(&actor) {
            if txid != prev_txid + 1 {
                audit.violations.push(format!("{id}: follows {prev_txid}"));
            }
            if epoch < *prev_epoch {
                audit.violations.push(format!("{id}: epoch {epoch} after {prev_epoch}"));
            }
        }
        last.insert(actor, (txid, epoch));
    }
    audit.actors = last.len();
    audit
}

/// A connection straight to PostgreSQL (no proxy), driven on the current runtime.
pub async fn pg_client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// The current lease holder (`node/boot`) of each of `shards`.
pub async fn owners(pg: &tokio_postgres::Client, shards: &[ShardId]) -> BTreeMap<u16, Option<String>> {
    let ids: Vec<i32> = shards.iter().map(|s| i32::from(s.0)).collect();
    let rows = pg.query("SELECT shard, owner FROM fdy_shard WHERE shard = ANY($1)", &[&ids]).await.unwrap();
    rows.iter().map(|r| (r.get::<_, i32>(0) as u16, r.get(1))).collect()
}

/// What the checker found, against the journal.
#[derive(Debug, Default)]
pub struct Verdict {
    pub sent: usize,
    pub acked: usize,
    pub given_up: usize,
    /// Acknowledged but absent: through the node, from the log.
    pub lost_via_node: Vec<String>,
    pub lost_via_log: Vec<String>,
    /// Present more than once in an organization, or answered 409 conflict on a retry.
    pub applied_twice: Vec<String>,
    /// Present but never sent by this run.
    pub unknown: Vec<String>,
    /// Sent, not acknowledged, yet applied (allowed: at most once).
    pub unacked_applied: usize,
    /// Organizations whose state through the node differs from the one rebuilt from the log.
    pub node_vs_log: Vec<String>,
    pub replays: usize,
    pub lost_answers: usize,
    pub not_owner: usize,
    pub errors: BTreeMap<String, usize>,
    /// Outbox effects: repositories without their `repository.added` audit entry, with more than one, and entries
    /// naming a repository the organization does not have (`node: ...` through the node, `log: ...` rebuilt).
    pub audit_missing: Vec<String>,
    pub audit_duplicated: Vec<String>,
    pub audit_orphans: Vec<String>,
    /// Where the organization's summary of a repository disagrees with the repository (`node:` / `log:`).
    pub summaries_differing: Vec<String>,
    /// How long the audit entries read through the node took to match (`None`: not within the bound).
    pub effects_settled_in: Option<Duration>,
    /// Topic watchers (`None`: none ran).
    pub topics: Option<TopicReport>,
}

impl Verdict {
    pub fn clean(&self) -> bool {
        self.lost_via_node.is_empty()
            && self.lost_via_log.is_empty()
            && self.applied_twice.is_empty()
            && self.unknown.is_empty()
            && self.node_vs_log.is_empty()
            && self.audit_missing.is_empty()
            && self.audit_duplicated.is_empty()
            && self.audit_orphans.is_empty()
            && self.summaries_differing.is_empty()
            && self.topics.as_ref().is_none_or(|t| t.regressions.is_empty())
    }

    /// Compares each organization's `repository.added` entries in `audit` with its repositories in `repos`.
    fn audit_against(&mut self, from: &str, repos: &BTreeMap<String, Vec<String>>, audit: &AuditCounts) {
        for (org, ids) in repos {
            let counts = audit.get(org).cloned().unwrap_or_default();
            for id in ids {
                match counts.get(id).copied().unwrap_or(0) {
                    0 => self.audit_missing.push(format!("{from}: {org}/{id}")),
                    1 => {}
                    n => self.audit_duplicated.push(format!("{from}: {org}/{id} ×{n}")),
                }
            }
            for (id, n) in counts.iter().filter(|(id, _)| !ids.contains(id)) {
                self.audit_orphans.push(format!("{from}: {org}/{id} ×{n}"));
            }
        }
    }
}

/// Everything the checker compares with the journal.
pub struct Observed<'a> {
    /// Each organization's repository ids read through a node.
    pub via_node: &'a BTreeMap<String, Vec<String>>,
    pub effects: &'a NodeEffects,
    pub rebuilt: &'a Rebuilt,
    pub topics: Option<TopicReport>,
}

pub fn check(journal: &Journal, seen: Observed<'_>) -> Verdict {
    let (via_node, via_log) = (seen.via_node, &seen.rebuilt.repos);
    let mut v = Verdict { sent: journal.ops.len(), ..Verdict::default() };
    v.audit_against("node", via_node, &seen.effects.audit);
    v.audit_against("log", via_log, &seen.rebuilt.audit);
    v.summaries_differing.extend(seen.effects.summaries_differing.iter().map(|d| format!("node: {d}")));
    v.summaries_differing.extend(seen.rebuilt.summaries_differing.iter().map(|d| format!("log: {d}")));
    v.effects_settled_in = seen.effects.settled_in;
    v.topics = seen.topics;
    let sent: BTreeMap<&str, &OpRecord> = journal.ops.iter().map(|o| (o.op.as_str(), o)).collect();
    for (org, ids) in via_node {
        let mut seen = BTreeSet::new();
        for id in ids {
            if !seen.insert(id) {
                v.applied_twice.push(format!("{org}/{id} listed twice"));
            }
            match sent.get(id.as_str()) {
                None => v.unknown.push(format!("{org}/{id}")),
                Some(o) if o.org != *org => v.unknown.push(format!("{org}/{id} (sent to {})", o.org)),
                Some(o) if o.ack.is_none() => v.unacked_applied += 1,
                Some(_) => {}
            }
        }
        let mut sorted = ids.clone();
        sorted.sort();
        if via_log.get(org) != Some(&sorted) {
            v.node_vs_log.push(org.clone());
        }
    }
    let present =
        |state: &BTreeMap<String, Vec<String>>, o: &OpRecord| state.get(&o.org).is_some_and(|ids| ids.contains(&o.op));
    for o in &journal.ops {
        v.lost_answers += o.lost_answers as usize;
        v.not_owner += o.not_owner as usize;
        if o.conflicts > 0 {
            v.applied_twice.push(format!("{} answered 409 conflict on a retry", o.op));
        }
        match &o.ack {
            Some(a) => {
                v.acked += 1;
                v.replays += usize::from(a.replayed);
                if !present(via_node, o) {
                    v.lost_via_node.push(o.op.clone());
                }
                if !present(via_log, o) {
                    v.lost_via_log.push(o.op.clone());
                }
            }
            None => {
                v.given_up += 1;
                *v.errors.entry(o.error.clone().unwrap_or_default()).or_default() += 1;
            }
        }
    }
    v
}

/// Percentile `p` (0..=100) of `sorted`.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Per affected shard: from `at` to the first acknowledgement of an op on that shard sent after `at` (`None`: none).
pub fn failover(journal: &Journal, at: Instant, shards: &BTreeSet<u16>) -> BTreeMap<u16, Option<Duration>> {
    let mut out: BTreeMap<u16, Option<Duration>> = shards.iter().map(|s| (*s, None)).collect();
    for (o, a) in journal.acked() {
        let shard = foundry::runtime::shard_of(&o.org).0;
        if let Some(slot) = out.get_mut(&shard) {
            if a.attempt_sent >= at {
                let d = a.at - at;
                if slot.is_none_or(|best| d < best) {
                    *slot = Some(d);
                }
            }
        }
    }
    out
}

/// The longest stretch without any acknowledgement on one shard, per shard of the load (while it ran): its length
/// and the instant it began (the ack before it, or the start of the load).
pub fn max_ack_gap(journal: &Journal) -> BTreeMap<u16, (Duration, Instant)> {
    let mut acks: BTreeMap<u16, Vec<Instant>> = BTreeMap::new();
    for (o, a) in journal.acked() {
        acks.entry(foundry::runtime::shard_of(&o.org).0).or_default().push(a.at);
    }
    let (start, end) = (journal.started.unwrap(), journal.ended.unwrap());
    acks.into_iter()
        .map(|(shard, mut times)| {
            times.sort();
            let mut prev = start;
            let mut gap = (Duration::ZERO, start);
            for t in times.iter().chain(std::iter::once(&end)) {
                let d = t.saturating_duration_since(prev);
                if d > gap.0 {
                    gap = (d, prev);
                }
                prev = *t;
            }
            (shard, gap)
        })
        .collect()
}
