//! Issue 12, protocol-level garbage, over a raw TCP socket. Where foundry's code sees the request (a path whose
//! percent-encoding is malformed or decodes to a control character or to bytes that are not UTF-8) the answer is the
//! usual JSON error, 400 `invalid_path`, before any route runs. Where actix-http's HTTP/1 parser answers before any
//! of our code runs (raw control bytes in the request line or a header, a garbage request line, a duplicate or
//! malformed `Content-Length`, a request head over the limit) it answers with an empty body and closes the
//! connection: ARCHITECTURE.md ("Protocol errors") says why that cannot carry JSON. These tests pin both.

mod support;

use serde_json::Value;
use support::web::{start, TestServer};

struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// Writes `request` byte for byte and reads the answer until the server closes the connection.
async fn raw(s: &TestServer, request: Vec<u8>) -> Answer {
    let addr = s.addr;
    let out = actix_rt::task::spawn_blocking(move || support::web::raw_exchange(addr, &request)).await.unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete response head");
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("a status line");
    Answer { status, head, body: out[split + 4..].to_vec() }
}

fn get(target: &[u8]) -> Vec<u8> {
    [b"GET ".as_slice(), target, b" HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"].concat()
}

fn post(headers: &str, body: &str) -> Vec<u8> {
    format!("POST /v1/auth/dev/sign-in HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n{headers}Connection: close\r\n\r\n{body}").into_bytes()
}

/// The parser's own answer: `status`, an empty body, and the connection closed.
fn assert_parser_refusal(a: &Answer, status: u16, case: &str) {
    assert_eq!(a.status, status, "{case}: {}", a.head);
    assert!(a.body.is_empty(), "{case}: no body from the parser: {:?}", String::from_utf8_lossy(&a.body));
    let head = a.head.to_ascii_lowercase();
    assert!(head.contains("content-length: 0"), "{case}: {head}");
    assert!(head.contains("connection: close"), "{case}: {head}");
}

#[actix_rt::test]
async fn paths_that_cannot_name_anything_get_a_json_400_before_any_route() {
    let s = start(|_, _| {}).await;
    let token = s.sign_in("alice").await;
    for target in [
        "/v1/orgs/%00",
        "/v1/orgs/a%01b",
        "/v1/orgs/a%0Ab",
        "/v1/orgs/%7F",
        "/v1/orgs/%ZZ",
        "/v1/orgs/%4",
        "/v1/orgs/%FF",
        "/healthz%00",
        "/orgs/%00",
        "/nowhere/%00",
    ] {
        // Signed in or not: the path is refused before authentication and routing.
        for auth in [String::new(), format!("Authorization: Bearer {token}\r\n")] {
            let request = format!("GET {target} HTTP/1.1\r\nHost: test\r\n{auth}Connection: close\r\n\r\n");
            let a = raw(&s, request.into_bytes()).await;
            assert_eq!(a.status, 400, "{target}: {}", a.head);
            assert!(a.head.to_ascii_lowercase().contains("content-type: application/json"), "{target}: {}", a.head);
            let body: Value = serde_json::from_slice(&a.body).expect("a JSON body");
            assert_eq!(body["error"]["code"], "invalid_path", "{target}: {body}");
            assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
        }
    }
    // Nothing of it reached an actor: no organization database exists.
    assert!(
        !s.dir.path().join("organization").exists()
            || std::fs::read_dir(s.dir.path().join("organization")).unwrap().next().is_none()
    );
    // A percent-encoded ordinary character still names what it spells.
    let a = raw(&s, get(b"/health%7A")).await;
    assert_eq!(a.status, 200, "{}", a.head);
    s.stop().await;
}

#[actix_rt::test]
async fn what_the_http_parser_refuses_before_our_code_runs() {
    let s = start(|_, _| {}).await;
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("a raw NUL in the path", get(b"/v1/orgs/\x00"), 400),
        ("a raw control byte in the path", get(b"/v1/orgs/a\x01b"), 400),
        ("a raw DEL in the path", get(b"/v1/orgs/a\x7fb"), 400),
        ("a garbage request line", b"GARBAGE\r\n\r\n".to_vec(), 400),
        ("a request line without a version", b"GET /healthz\r\nHost: test\r\n\r\n".to_vec(), 400),
        ("an unknown HTTP version", b"GET /healthz HTTP/9.9\r\nHost: test\r\n\r\n".to_vec(), 400),
        ("a control byte in a header", b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-A: a\x01b\r\n\r\n".to_vec(), 400),
        ("no Host on HTTP/1.1", b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(), 400),
        ("a duplicate Content-Length", post("Content-Length: 2\r\nContent-Length: 2\r\n", "{}"), 400),
        ("a Content-Length that is not a number", post("Content-Length: two\r\n", "{}"), 400),
        ("a signed Content-Length", post("Content-Length: +2\r\n", "{}"), 400),
        ("a negative Content-Length", post("Content-Length: -1\r\n", "{}"), 400),
        (
            "Content-Length with chunked encoding",
            post("Content-Length: 2\r\nTransfer-Encoding: chunked\r\n", "{}"),
            400,
        ),
        (
            "a request head over 128 KiB",
            [b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Big: ".as_slice(), &vec![b'a'; 140_000], b"\r\n\r\n"].concat(),
            431,
        ),
        (
            "more than 96 headers",
            [
                b"GET /healthz HTTP/1.1\r\nHost: test\r\n".as_slice(),
                &(0..100).flat_map(|i| format!("X-H{i}: 1\r\n").into_bytes()).collect::<Vec<u8>>(),
                b"\r\n",
            ]
            .concat(),
            431,
        ),
    ];
    for (case, request, status) in cases {
        let a = raw(&s, request).await;
        assert_parser_refusal(&a, status, case);
    }
    // The server is unharmed: a well-formed request right after is answered as usual.
    let a = raw(&s, get(b"/healthz")).await;
    assert_eq!(a.status, 200, "{}", a.head);
    s.stop().await;
}
