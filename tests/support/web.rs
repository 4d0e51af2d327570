//! A running foundry HTTP server on a temporary data directory, and a small JSON client for it.

use std::sync::Arc;

use actix_web::dev::ServerHandle;
use foundry::actors::Domain;
use foundry::http::{Api, AuthSettings};
use foundry::runtime::Runtime;
use serde_json::Value;

pub struct TestServer {
    pub base: String,
    pub addr: std::net::SocketAddr,
    pub api: Arc<Api>,
    pub rt: Runtime,
    pub client: reqwest::Client,
    handle: ServerHandle,
    pub dir: tempfile::TempDir,
}

/// Makes dev sign-in go through the local GitHub `gh` (as `serve --demo` does): a login signs in as the GitHub user of
/// that name there, with a real OAuth code exchange and a stored token. With `admin_of_owner`, each such user is first
/// made an admin of `gh`'s organization (so they may connect it).
pub fn sign_in_through(api: &mut Api, gh: &foundry::integrations::github::fake::FakeGitHub, admin_of_owner: bool) {
    gh.configure_oauth_app("dev-client", "dev-secret");
    api.auth.dev_github = Some(foundry::demo::dev_sign_in_via(gh, ("dev-client", "dev-secret"), admin_of_owner));
}

/// Starts a server (dev sign-in on) after `configure` adjusts the api.
pub async fn start(configure: impl FnOnce(&mut Api, &str)) -> TestServer {
    let (rt, dir) = super::runtime(2);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let mut api = Api::new(Domain::new(rt.clone()), AuthSettings { dev_sign_in: true, ..AuthSettings::default() });
    configure(&mut api, &base);
    let api = Arc::new(api);
    let server = foundry::http::server_on(api.clone(), listener, 2).unwrap();
    let handle = server.handle();
    actix_rt::spawn(server);
    let client =
        foundry::integrations::http_client_builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    TestServer { base, addr, api, rt, client, handle, dir }
}

impl TestServer {
    /// The typed API client of this server, not signed in.
    pub fn api_client(&self) -> foundry_client::Client {
        foundry_client::Client::with_http(self.client.clone(), &self.base).unwrap()
    }

    /// The typed API client, signed in (dev sign-in) as `login`.
    pub async fn client_as(&self, login: &str) -> foundry_client::Client {
        self.api_client().signed_in_as(login).await.unwrap()
    }

    /// Dev sign-in; returns the session token.
    pub async fn sign_in(&self, login: &str) -> String {
        let (status, body) =
            self.call("POST", "/v1/auth/dev/sign-in", None, Some(serde_json::json!({ "login": login }))).await;
        assert_eq!(status, 200, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    /// The user id behind a token.
    pub async fn user_id(&self, token: &str) -> String {
        let (status, body) = self.call("GET", "/v1/auth/whoami", Some(token), None).await;
        assert_eq!(status, 200, "{body}");
        body["userId"].as_str().unwrap().to_owned()
    }

    /// One JSON request; the status and the body (`null` when empty or not JSON).
    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Like [`TestServer::call`], with extra request headers; also returns the response headers.
    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn stop(self) {
        self.api.close_connections();
        self.handle.stop(true).await;
        self.rt.shutdown().await;
    }
}

/// Writes `request` byte for byte to `addr` (clients normalise paths and escapes away; the server must cope with
/// requests that do not) and reads the answer until the server closes the connection. The server may answer and
/// close before it has read everything (a head over the limit); a reset after the answer ends the read too.
pub fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    let _ = conn.write_all(request);
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if !out.is_empty() && e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading the answer: {e}"),
        }
    }
    out
}
