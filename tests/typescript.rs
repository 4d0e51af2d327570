//! The web app's TypeScript declarations (`src/http/webapp/api.d.ts`): the committed file is what foundry-client's
//! `typescript` module renders from the OpenAPI document's schemas (`FOUNDRY_UPDATE_TYPES=1 cargo test --test
//! typescript` rewrites it), and it declares every schema, the WebSocket frames among them. CI type-checks app.js
//! against it (`.ci/typecheck-webapp`).

use std::path::Path;

const UPDATE_ENV: &str = "FOUNDRY_UPDATE_TYPES";

fn generated() -> String {
    let doc: serde_json::Value = serde_json::from_str(&foundry::http::openapi::document_json()).unwrap();
    foundry_client::typescript::declarations(&doc)
}

#[test]
fn the_committed_declarations_are_what_the_types_generate() {
    let generated = generated();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http/webapp/api.d.ts");
    if std::env::var(UPDATE_ENV).is_ok_and(|v| v == "1") {
        std::fs::write(&path, &generated).unwrap();
        eprintln!("rewrote {}", path.display());
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        let line = committed.lines().zip(generated.lines()).position(|(a, b)| a != b);
        let at = line.map_or_else(|| "its end".to_owned(), |n| format!("line {}", n + 1));
        panic!(
            "src/http/webapp/api.d.ts is stale (first difference at {at}): the API's types changed. Regenerate it \
             with `{UPDATE_ENV}=1 cargo test --test typescript` and commit it with the change."
        );
    }
}

#[test]
fn every_schema_is_declared_with_the_websocket_frames_among_them() {
    let doc: serde_json::Value = serde_json::from_str(&foundry::http::openapi::document_json()).unwrap();
    let text = generated();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in schemas.keys() {
        let declared = [format!("export type {name} ="), format!("export interface {name} {{")];
        assert!(declared.iter().any(|d| text.contains(d.as_str())), "{name} is not declared");
    }
    for name in ["ServerFrame", "ClientFrame", "PatchOp", "TopicKey", "TaskView", "SessionDetail", "Error"] {
        assert!(schemas.contains_key(name), "{name} is a schema of the document");
    }
    // Tagged enums are unions discriminated by their tag; flattened structs are intersections.
    assert!(text.contains(r#"type: "sessionPatched";"#), "{text}");
    assert!(text.contains(r#"op: "append";"#));
    assert!(text.contains("export type TaskView = TaskDetail & {"), "serde's flatten");
}
