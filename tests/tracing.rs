//! Observability: a span per handled message carrying kind, key and message name, and log lines for activation,
//! passivation, restart and migration. One test only: the capturing subscriber is the process-wide default (activation
//! opens and migrates databases on the blocking pool, which a thread-local default would not see), so no other test
//! in this binary may log into it.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use foundry::runtime::CallError;
use support::*;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::fmt::MakeWriter;

/// An in-memory log sink.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Lines of `text` that contain every one of `parts`.
fn lines_with<'t>(text: &'t str, parts: &[&str]) -> Vec<&'t str> {
    text.lines().filter(|l| parts.iter().all(|p| l.contains(p))).collect()
}

#[track_caller]
fn assert_logged(text: &str, what: &str, parts: &[&str]) {
    assert!(!lines_with(text, parts).is_empty(), "no {what} line containing all of {parts:?} in:\n{text}");
}

/// The fields of every closed span named `name`, as fmt prints them between the braces of `name{...}:`.
fn closed_spans<'t>(text: &'t str, name: &str) -> Vec<&'t str> {
    let open = format!("{name}{{");
    text.lines()
        .filter(|l| l.contains(" close "))
        .filter_map(|l| {
            // The span may be nested (`outer{..}:name{..}:`): take the occurrence that starts a span.
            let (at, _) = l.match_indices(&open).find(|(i, _)| matches!(l[..*i].chars().last(), Some(' ' | ':')))?;
            let start = at + open.len();
            let end = start + l[start..].find("}:")?;
            // Only the close of `name` itself, not of a span nested inside it (`name{..}:inner{..}: close`).
            let rest = &l[end + 2..];
            (!rest[..rest.find(" close")?].contains('{')).then(|| &l[start..end])
        })
        .collect()
}

/// The message name recorded in a `message` span: fmt prints a field called `message` bare (`... Add`); any other
/// field name would print as `name="Add"`. Either way it is the last field.
fn message_name_of(fields: &str) -> &str {
    let last = fields.rsplit(' ').next().unwrap_or("");
    let value = last.rsplit_once('=').map_or(last, |(_, v)| v);
    value.trim_matches('"')
}

#[actix_rt::test]
async fn handled_messages_get_spans_and_lifecycle_events_are_logged() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(capture.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_span_events(FmtSpan::CLOSE)
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber in this test binary");

    let (rt, _dir) = runtime(0);
    let reg = rt.registry::<Tally>();
    let k = "traced-key".to_owned();
    assert_eq!(reg.mutate(&k, Add::new(2)).await.unwrap(), 2);
    assert_eq!(reg.read(&k, GetValue).await.unwrap(), 2);
    let err = reg.mutate(&k, Add::panicking()).await.unwrap_err();
    assert!(matches!(err, CallError::Panicked { .. }), "{err:?}");
    assert_eq!(reg.read(&k, GetValue).await.unwrap(), 2, "the panicking mutation was rolled back");
    assert!(reg.passivate(&k).await, "idle actor passivates");
    assert!(!reg.is_live(&k));
    rt.shutdown().await;
    let text = capture.text();

    // One `message` span per handled message (2 mutations, 2 reads), each with kind, key and message name.
    let spans = closed_spans(&text, "message");
    assert_eq!(spans.len(), 4, "message spans {spans:?} in:\n{text}");
    for fields in &spans {
        assert!(fields.contains("kind=\"tally\""), "span without kind: {fields:?}");
        assert!(fields.contains("key=traced-key"), "span without key: {fields:?}");
    }
    let mut names: Vec<&str> = spans.iter().map(|f| message_name_of(f)).collect();
    names.sort_unstable();
    assert_eq!(names, ["Add", "Add", "GetValue", "GetValue"], "message names of {spans:?}");
    // Mutations are applied in a `commit` span per batch (one each here: the panicking one is rolled back alone),
    // each inside an `apply` span naming the mutation.
    let applies = closed_spans(&text, "apply");
    assert_eq!(applies, ["msg=\"Add\"", "msg=\"Add\""], "apply spans in:\n{text}");
    let commits = closed_spans(&text, "commit");
    assert_eq!(commits.len(), 2, "commit spans {commits:?} in:\n{text}");
    for fields in &commits {
        assert!(fields.contains("kind=\"tally\"") && fields.contains("key=traced-key"), "{fields:?}");
        assert!(fields.contains("batch=1"), "{fields:?}");
    }

    // Lifecycle events.
    assert_logged(&text, "tally migration", &["INFO", "migration applied", "2026-01-01-000000_create_tally"]);
    assert_logged(&text, "runtime migration", &["INFO", "migration applied", "00000000000000_foundry_runtime"]);
    assert_logged(&text, "activation", &["DEBUG", "activated", "kind=\"tally\"", "key=traced-key"]);
    assert_logged(
        &text,
        "restart",
        &["WARN", "actor restarted from its database", "kind=\"tally\"", "key=traced-key", "poisoned mutation"],
    );
    assert_logged(
        &text,
        "passivation",
        &["DEBUG", "actor stopped", "kind=\"tally\"", "key=traced-key", "reason=\"passivated\""],
    );
    assert_logged(&text, "runtime start", &["INFO", "runtime started"]);
    assert_logged(&text, "runtime stop", &["INFO", "runtime stopped"]);
    // Each happened once.
    for once in ["activated", "actor restarted from its database", "actor stopped", "create_tally"] {
        assert_eq!(lines_with(&text, &[once]).len(), 1, "{once:?} logged more than once:\n{text}");
    }
}
