//! The service's operational routes over real HTTP: health, readiness (503 while shutting down) and Prometheus metrics.

mod support;

use foundry::actors::organization::{CreateOrganization, OrgKind};

#[actix_rt::test]
async fn health_readiness_and_metrics_over_http() {
    let s = support::web::start(|_, _| {}).await;
    let org = CreateOrganization {
        login: "acme".into(),
        display_name: "Acme".into(),
        kind: OrgKind::Organization,
        owner: None,
    };
    s.api.domain.orgs.mutate(&"acme".to_owned(), org).await.unwrap();
    let base = &s.base;
    let client = &s.client;

    let health: serde_json::Value = client.get(format!("{base}/healthz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    let (st, _) = s.call("GET", "/v1/me", None, None).await;
    assert_eq!(st, 401);
    let token = s.sign_in("alice").await;
    let (st, _) = s.call("GET", "/v1/me", Some(&token), None).await;
    assert_eq!(st, 200);

    let res = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = res.text().await.unwrap();
    assert!(text.contains("# TYPE foundry_live_actors gauge"), "{text}");
    assert!(text.contains("foundry_live_actors{kind=\"organization\"} 1"), "{text}");
    assert!(text.contains("foundry_activations_total{kind=\"organization\"} 1"), "{text}");
    assert!(text.contains("foundry_committed_mutations_total{kind=\"organization\"} 1"), "{text}");
    assert!(text.contains("foundry_mailbox_depth{kind=\"organization\"} 0"), "{text}");
    assert!(text.contains("foundry_live_actors{kind=\"task\"} 0"), "every domain kind is listed: {text}");
    assert!(text.contains("# TYPE foundry_ws_sessions gauge\nfoundry_ws_sessions 0"), "{text}");
    assert!(text.contains("# TYPE foundry_turns_running gauge\nfoundry_turns_running 0\n"), "{text}");
    assert!(text.contains("# TYPE foundry_turns_waiting gauge\nfoundry_turns_waiting 0\n"), "{text}");
    assert!(text.contains("foundry_http_responses_total{class=\"2xx\"} 2"), "sign-in and /me: {text}");
    assert!(text.contains("foundry_http_responses_total{class=\"4xx\"} 1"), "{text}");

    // With a metrics token, the token is required (also from loopback).
    let s2 = support::web::start(|api, _| api.metrics_token = Some("scrape-me".into())).await;
    let res = client.get(format!("{}/metrics", s2.base)).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let res = client.get(format!("{}/metrics", s2.base)).bearer_auth("scrape-me").send().await.unwrap();
    assert_eq!(res.status(), 200);
    s2.stop().await;

    s.rt.shutdown().await;
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let (st, body) = s.call("GET", "/v1/me", Some(&token), None).await;
    assert_eq!((st, body["error"]["code"].as_str()), (503, Some("shutting_down")), "{body}");
    s.stop().await;
}
