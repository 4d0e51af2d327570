//! The service's operational routes over real HTTP: health, readiness (503 while shutting down) and Prometheus metrics.

mod support;

use actix_web::{web, App, HttpServer};
use foundry::actors::organization::{CreateOrganization, OrgKind};
use foundry::actors::Domain;

#[actix_rt::test]
async fn health_readiness_and_metrics_over_http() {
    let (rt, _dir) = support::runtime(2);
    let domain = Domain::without_agent(rt.clone());
    let org = CreateOrganization { login: "acme".into(), display_name: "Acme".into(), kind: OrgKind::Organization };
    domain.orgs.mutate(&"acme".to_owned(), org).await.unwrap();

    let data = web::Data::new(rt.clone());
    let server = HttpServer::new(move || App::new().app_data(data.clone()).configure(foundry::http::configure))
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    let base = format!("http://{addr}");
    let client = foundry::integrations::http_client_builder().build().unwrap();

    let health: serde_json::Value = client.get(format!("{base}/healthz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    let res = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = res.text().await.unwrap();
    assert!(text.contains("# TYPE foundry_live_actors gauge"), "{text}");
    assert!(text.contains("foundry_live_actors{kind=\"organization\"} 1"), "{text}");
    assert!(text.contains("foundry_activations_total{kind=\"organization\"} 1"), "{text}");
    assert!(text.contains("foundry_committed_mutations_total{kind=\"organization\"} 1"), "{text}");
    assert!(text.contains("foundry_mailbox_depth{kind=\"organization\"} 0"), "{text}");
    assert!(text.contains("foundry_live_actors{kind=\"task\"} 0"), "every domain kind is listed: {text}");

    rt.shutdown().await;
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    handle.stop(true).await;
}
