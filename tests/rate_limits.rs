//! Issue 12, per-client rate limits: a session token over its limit gets 429 `rate_limited` with `Retry-After`
//! (whole seconds, at least 1) on API routes and WebSocket upgrades alike, other tokens are unaffected, and after the
//! wait it is served again; sign-in is limited per client address (the TCP peer, or with `trust_forwarded_for` the
//! address the proxy appended to X-Forwarded-For); the refusals are counted on `/metrics`.

mod support;

use std::time::Duration;

use foundry::http::{RateLimit, RateLimits};
use serde_json::{json, Value};
use support::web::{start, TestServer};

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

/// The `Retry-After` of a 429 `rate_limited`, in seconds.
fn retry_after(status: u16, headers: &reqwest::header::HeaderMap, body: &Value) -> u64 {
    assert_eq!((status, code(body)), (429, "rate_limited"), "{body}");
    let secs: u64 = headers["retry-after"].to_str().unwrap().parse().expect("whole seconds");
    assert!(secs >= 1, "Retry-After {secs}");
    secs
}

/// Requests `/v1/auth/whoami` with `token` until one is refused; returns how many passed and that refusal's wait.
async fn exhaust(s: &TestServer, token: &str) -> (usize, u64) {
    for passed in 0..100 {
        let (st, headers, body) = s.call_with("GET", "/v1/auth/whoami", Some(token), None, &[]).await;
        if st != 200 {
            return (passed, retry_after(st, &headers, &body));
        }
    }
    panic!("never limited");
}

#[actix_rt::test]
async fn a_token_over_its_limit_waits_and_other_tokens_do_not() {
    let limits = RateLimits {
        token: RateLimit { per_minute: 60, burst: 3 },
        sign_in: RateLimit::OFF,
        trust_forwarded_for: false,
    };
    let s = start(move |api, _| api.set_rate_limits(limits)).await;
    let alice = s.sign_in("alice").await;
    let bob = s.sign_in("bob").await;

    let (passed, wait) = exhaust(&s, &alice).await;
    assert_eq!(passed, 3, "the burst is served");
    // Any authenticated route, and a WebSocket upgrade, are refused the same way, before the token is even checked.
    let (st, headers, body) = s.call_with("GET", "/v1/me", Some(&alice), None, &[]).await;
    retry_after(st, &headers, &body);
    let res = s
        .client
        .get(format!("{}/v1/ws", s.base))
        .bearer_auth(&alice)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    let (st, headers) = (res.status().as_u16(), res.headers().clone());
    retry_after(st, &headers, &res.json().await.unwrap());
    let (st, headers, body) = s.call_with("GET", "/v1/auth/whoami", Some("fdy_not-even-a-token"), None, &[]).await;
    assert_eq!((st, code(&body)), (401, "unauthenticated"), "another token has its own bucket: {body} {headers:?}");

    // Another user's token is served meanwhile.
    let (st, _) = s.call("GET", "/v1/me", Some(&bob), None).await;
    assert_eq!(st, 200);

    // After the wait it is told, alice is served again.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let (st, body) = s.call("GET", "/v1/me", Some(&alice), None).await;
    assert_eq!(st, 200, "{body}");

    let metrics = s.client.get(format!("{}/metrics", s.base)).send().await.unwrap().text().await.unwrap();
    let refused = metrics
        .lines()
        .find_map(|l| l.strip_prefix("foundry_http_rate_limited_total "))
        .expect("the counter is exported");
    assert_ne!(refused, "0", "{metrics}");
    s.stop().await;
}

async fn sign_in(s: &TestServer, login: &str, forwarded: Option<&str>) -> (u16, reqwest::header::HeaderMap, Value) {
    let headers: Vec<(&str, &str)> = forwarded.map(|f| ("x-forwarded-for", f)).into_iter().collect();
    s.call_with("POST", "/v1/auth/dev/sign-in", None, Some(json!({ "login": login })), &headers).await
}

#[actix_rt::test]
async fn sign_in_is_limited_per_client_address() {
    let limits = RateLimits {
        token: RateLimit::OFF,
        sign_in: RateLimit { per_minute: 60, burst: 2 },
        trust_forwarded_for: false,
    };
    let s = start(move |api, _| api.set_rate_limits(limits)).await;
    let (st, _, first) = sign_in(&s, "alice", None).await;
    assert_eq!(st, 200);
    let (st, _, _) = sign_in(&s, "bob", Some("203.0.113.7")).await;
    assert_eq!(st, 200);
    // Without trust in a proxy, X-Forwarded-For changes nothing: it is the same client.
    let (st, headers, body) = sign_in(&s, "carol", Some("198.51.100.1")).await;
    let wait = retry_after(st, &headers, &body);
    // Signed-in clients are not held back by the sign-in limit.
    let token = first["token"].as_str().unwrap();
    let (st, _) = s.call("GET", "/v1/me", Some(token), None).await;
    assert_eq!(st, 200);
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let (st, _, body) = sign_in(&s, "carol", None).await;
    assert_eq!(st, 200, "{body}");
    s.stop().await;

    // Behind a proxy (trusted): the address it appended is the client, whatever the client claimed before it.
    let limits = RateLimits { trust_forwarded_for: true, ..limits };
    let s = start(move |api, _| api.set_rate_limits(limits)).await;
    for _ in 0..2 {
        let (st, _, _) = sign_in(&s, "alice", Some("203.0.113.7")).await;
        assert_eq!(st, 200);
    }
    let (st, headers, body) = sign_in(&s, "alice", Some("10.9.9.9, 203.0.113.7")).await;
    retry_after(st, &headers, &body);
    let (st, _, body) = sign_in(&s, "bob", Some("203.0.113.8")).await;
    assert_eq!(st, 200, "another client: {body}");
    s.stop().await;
}
