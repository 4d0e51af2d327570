//! TypeScript declarations of the API's types, rendered from the schemas of the server's OpenAPI document (which
//! utoipa derives from the Rust request, response and WebSocket frame types, honouring their serde attributes): one
//! source of truth for the Rust client, the OpenAPI document and the web app. Committed as
//! `src/http/webapp/api.d.ts`; `tests/typescript.rs` fails when it is stale.
//!
//! The schemas use a small part of JSON Schema, each part rendered as the TypeScript that admits the same JSON:
//! `$ref` (the named type), `enum`/`const` (literal unions), `oneOf`/`anyOf` (unions; serde's tagged enums become
//! unions discriminated by their tag), `allOf` (intersections: serde's `flatten`), `type` (a list with `null` for
//! `Option`), objects (a property outside `required` is optional: `Option` and `skip_serializing_if` fields),
//! `additionalProperties` (maps) and the empty schema (any JSON: `any`).

use serde_json::{Map, Value};

/// The file's first lines.
const HEADER: &str =
    "// Generated from foundry's Rust types: the schemas of the OpenAPI document (docs/openapi.json), rendered by
// foundry-client's `typescript` module. Do not edit: `FOUNDRY_UPDATE_TYPES=1 cargo test --test typescript` rewrites
// it. Field and type descriptions are the Rust doc comments.
";

/// The declarations of every schema in `document`'s `components.schemas`, in name order.
pub fn declarations(document: &Value) -> String {
    let mut out = String::from(HEADER);
    let empty = Map::new();
    let schemas = document["components"]["schemas"].as_object().unwrap_or(&empty);
    for (name, schema) in schemas {
        out.push('\n');
        out.push_str(&doc_comment(schema, 0));
        if is_plain_object(schema) {
            out.push_str(&format!("export interface {name} {}\n", object(schema, 0)));
        } else {
            out.push_str(&format!("export type {name} = {};\n", render(schema, 0)));
        }
    }
    out
}

fn is_plain_object(schema: &Value) -> bool {
    schema["type"] == "object"
        && schema.get("properties").is_some()
        && ["oneOf", "anyOf", "allOf"].iter().all(|k| schema.get(*k).is_none())
}

fn doc_comment(schema: &Value, indent: usize) -> String {
    let Some(text) = description(schema) else { return String::new() };
    let pad = " ".repeat(indent);
    let text = text.replace("*/", "*\\/");
    let lines: Vec<&str> = text.lines().collect();
    if let [line] = lines.as_slice() {
        return format!("{pad}/** {line} */\n");
    }
    let mut out = format!("{pad}/**\n");
    for line in lines {
        out.push_str(&format!("{pad} *{}{line}\n", if line.is_empty() { "" } else { " " }));
    }
    out.push_str(&format!("{pad} */\n"));
    out
}

/// A schema's description, or that of the one non-null alternative of an `Option` (utoipa puts it there).
fn description(schema: &Value) -> Option<&str> {
    schema["description"].as_str().or_else(|| {
        let alternatives = schema["oneOf"].as_array()?;
        let mut described = alternatives.iter().filter_map(|s| s["description"].as_str());
        let first = described.next()?;
        (alternatives.len() == 2 && described.next().is_none()).then_some(first)
    })
}

/// The TypeScript type admitting what `schema` admits.
fn render(schema: &Value, indent: usize) -> String {
    if let Some(reference) = schema["$ref"].as_str() {
        return reference.rsplit('/').next().unwrap_or(reference).to_owned();
    }
    if let Some(value) = schema.get("const") {
        return literal(value);
    }
    if let Some(values) = schema["enum"].as_array() {
        return union(values.iter().map(literal).collect());
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(alternatives) = schema[key].as_array() {
            return union(alternatives.iter().map(|s| render(s, indent)).collect());
        }
    }
    if let Some(parts) = schema["allOf"].as_array() {
        let parts: Vec<String> = parts.iter().map(|s| grouped(render(s, indent))).collect();
        return parts.join(" & ");
    }
    match &schema["type"] {
        Value::String(t) => of_type(t, schema, indent),
        Value::Array(types) => {
            union(types.iter().filter_map(Value::as_str).map(|t| of_type(t, schema, indent)).collect())
        }
        // The empty schema: any JSON value.
        _ if schema.get("properties").is_some() => object(schema, indent),
        _ => "any".to_owned(),
    }
}

fn of_type(t: &str, schema: &Value, indent: usize) -> String {
    match t {
        "string" => "string".into(),
        "integer" | "number" => "number".into(),
        "boolean" => "boolean".into(),
        "null" => "null".into(),
        "array" => format!("{}[]", grouped(render(&schema["items"], indent))),
        "object" => object(schema, indent),
        _ => "any".into(),
    }
}

/// `{ name: T; optional?: U; [key: string]: V }`, one member per line.
fn object(schema: &Value, indent: usize) -> String {
    let empty = Map::new();
    let properties = schema["properties"].as_object().unwrap_or(&empty);
    let required: Vec<&str> =
        schema["required"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let extra = schema.get("additionalProperties").filter(|a| a.is_object());
    if properties.is_empty() {
        return match extra {
            Some(values) => format!("{{ [key: string]: {} }}", render(values, indent)),
            None => "{ [key: string]: any }".into(),
        };
    }
    let pad = " ".repeat(indent + 2);
    let mut out = String::from("{\n");
    for (name, property) in properties {
        out.push_str(&doc_comment(property, indent + 2));
        let optional = if required.contains(&name.as_str()) { "" } else { "?" };
        out.push_str(&format!("{pad}{}{optional}: {};\n", property_name(name), render(property, indent + 2)));
    }
    if let Some(values) = extra {
        out.push_str(&format!("{pad}[key: string]: {};\n", render(values, indent + 2)));
    }
    out.push_str(&" ".repeat(indent));
    out.push('}');
    out
}

fn property_name(name: &str) -> String {
    let identifier = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    if identifier {
        name.to_owned()
    } else {
        Value::String(name.to_owned()).to_string()
    }
}

fn literal(value: &Value) -> String {
    // A JSON string, number, boolean or null is the same literal in TypeScript.
    value.to_string()
}

/// `A | B`, without repeats, `null` last.
fn union(mut types: Vec<String>) -> String {
    let mut seen = std::collections::BTreeSet::new();
    types.retain(|t| seen.insert(t.clone()));
    if let Some(i) = types.iter().position(|t| t == "null") {
        let null = types.remove(i);
        types.push(null);
    }
    match types.len() {
        0 => "never".into(),
        _ => types.join(" | "),
    }
}

/// `t` parenthesised when it is a union or intersection (before `[]` or inside `&`).
fn grouped(t: String) -> String {
    let top_level_operator = {
        let mut depth = 0i32;
        t.chars().any(|c| {
            match c {
                '{' | '(' | '[' | '<' => depth += 1,
                '}' | ')' | ']' | '>' => depth -= 1,
                '|' | '&' if depth == 0 => return true,
                _ => {}
            }
            false
        })
    };
    if top_level_operator {
        format!("({t})")
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(schema: Value) -> String {
        render(&schema, 0)
    }

    #[test]
    fn each_schema_form_renders_as_the_typescript_admitting_the_same_json() {
        assert_eq!(one(json!({ "$ref": "#/components/schemas/TaskView" })), "TaskView");
        assert_eq!(one(json!({ "type": "string", "enum": ["a", "b"] })), r#""a" | "b""#);
        assert_eq!(one(json!({ "type": ["integer", "null"] })), "number | null");
        assert_eq!(one(json!({ "oneOf": [{ "type": "null" }, { "$ref": "#/x/Key" }] })), "Key | null");
        assert_eq!(one(json!({ "type": "array", "items": { "type": ["string", "null"] } })), "(string | null)[]");
        assert_eq!(
            one(json!({ "allOf": [{ "$ref": "#/a/A" }, { "oneOf": [{ "$ref": "#/a/B" }, { "$ref": "#/a/C" }] }] })),
            "A & (B | C)"
        );
        assert_eq!(one(json!({})), "any");
        assert_eq!(
            one(json!({ "type": "object", "additionalProperties": { "type": "string" } })),
            "{ [key: string]: string }"
        );
        let object = json!({
            "type": "object",
            "required": ["id"],
            "properties": { "id": { "type": "string", "description": "Who." }, "max-age": { "type": "integer" } },
        });
        assert_eq!(one(object), "{\n  /** Who. */\n  id: string;\n  \"max-age\"?: number;\n}");
    }

    #[test]
    fn declarations_are_interfaces_for_plain_objects_and_aliases_otherwise() {
        let doc = json!({ "components": { "schemas": {
            "Id": { "type": "string", "description": "An id.\n\nMore." },
            "Row": { "type": "object", "required": ["id"], "properties": { "id": { "$ref": "#/components/schemas/Id" } } },
        } } });
        let text = declarations(&doc);
        assert!(text.starts_with(HEADER));
        assert!(text.contains("/**\n * An id.\n *\n * More.\n */\nexport type Id = string;\n"), "{text}");
        assert!(text.contains("export interface Row {\n  id: Id;\n}\n"), "{text}");
    }
}
