//! ACP envelopes: telling our answers from the agent's requests, answering its permission requests, and mapping
//! `session/update` notifications to [`AgentEvent`]s.

use serde_json::{json, Value};

use super::super::AgentEvent;

/// Whether `envelope` is the answer to our request `id` (not a request of the agent's with the same id).
pub(super) fn is_answer(envelope: &Value, id: u64) -> bool {
    envelope.get("method").is_none() && envelope.get("id").and_then(Value::as_u64) == Some(id)
}

/// The answer to an agent's `session/request_permission`: the first "allow" option it offers (once before always),
/// or a cancelled outcome if it offers none.
pub(super) fn permission_answer(envelope: &Value) -> Option<Value> {
    if envelope["method"] != "session/request_permission" || envelope.get("id").is_none() {
        return None;
    }
    let options = envelope["params"]["options"].as_array().cloned().unwrap_or_default();
    let pick = ["allow_once", "allow_always"]
        .iter()
        .find_map(|kind| options.iter().find(|o| o["kind"] == *kind))
        .and_then(|o| o["optionId"].as_str());
    let outcome = match pick {
        Some(option) => json!({ "outcome": "selected", "optionId": option }),
        None => json!({ "outcome": "cancelled" }),
    };
    Some(json!({ "jsonrpc": "2.0", "id": envelope["id"], "result": { "outcome": outcome } }))
}

/// Maps one ACP envelope from the stream to agent events: `session/update` notifications (message chunks, tool calls
/// and their updates) and the mock agent's `mock/echo` of a prompt.
pub(super) fn map_envelope(envelope: &Value) -> Vec<AgentEvent> {
    let method = envelope["method"].as_str().unwrap_or_default();
    let params = &envelope["params"];
    match method {
        "session/update" => {
            let update = &params["update"];
            match update["sessionUpdate"].as_str().unwrap_or_default() {
                "agent_message_chunk" => {
                    let text = update["content"]["text"].as_str().unwrap_or_default();
                    vec![AgentEvent::TextDelta { text: text.to_owned() }]
                }
                "tool_call" => vec![AgentEvent::ToolCall {
                    id: update["toolCallId"].as_str().unwrap_or_default().to_owned(),
                    name: update["title"].as_str().or(update["kind"].as_str()).unwrap_or("tool").to_owned(),
                    input: update["rawInput"].clone(),
                }],
                "tool_call_update" if update["status"] == "completed" => vec![AgentEvent::ToolResult {
                    id: update["toolCallId"].as_str().unwrap_or_default().to_owned(),
                    output: update["content"].to_string(),
                }],
                _ => Vec::new(),
            }
        }
        "mock/echo" => {
            let message = &params["message"];
            if message["method"] == "session/prompt" {
                let text: Vec<&str> = message["params"]["prompt"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["text"].as_str())
                    .collect();
                vec![AgentEvent::TextDelta { text: format!("echo: {}", text.join(" ")) }]
            } else {
                Vec::new()
            }
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::sse::parse_sse;
    use super::*;

    #[test]
    fn sse_events_parse_and_map() {
        let (id, data) = parse_sse("event: message\nid: 7\ndata: {\"a\":1}\n\n");
        assert_eq!((id, data.as_deref()), (Some(7), Some("{\"a\":1}")));
        let chunk = json!({"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"s","update":{
            "sessionUpdate":"agent_message_chunk","content":{"type":"text","text":"Hel"}}}});
        assert_eq!(map_envelope(&chunk), vec![AgentEvent::TextDelta { text: "Hel".into() }]);
        let echo = json!({"jsonrpc":"2.0","method":"mock/echo","params":{"message":{"method":"session/prompt",
            "params":{"prompt":[{"type":"text","text":"hi"}]}}}});
        assert_eq!(map_envelope(&echo), vec![AgentEvent::TextDelta { text: "echo: hi".into() }]);
        assert!(map_envelope(&json!({"id":1,"result":{}})).is_empty());
        let ask = json!({"jsonrpc":"2.0","id":7,"method":"session/request_permission","params":{"sessionId":"s",
            "toolCall":{"toolCallId":"t"},"options":[{"optionId":"no","kind":"reject_once","name":"No"},
            {"optionId":"always","kind":"allow_always","name":"Always"},{"optionId":"once","kind":"allow_once","name":"Once"}]}});
        assert_eq!(
            permission_answer(&ask),
            Some(json!({"jsonrpc":"2.0","id":7,"result":{"outcome":{"outcome":"selected","optionId":"once"}}}))
        );
        let none = json!({"jsonrpc":"2.0","id":8,"method":"session/request_permission","params":{"options":[]}});
        assert_eq!(permission_answer(&none).unwrap()["result"]["outcome"]["outcome"], "cancelled");
        assert_eq!(permission_answer(&chunk), None);
    }

    #[test]
    fn answers_are_told_from_agent_requests() {
        assert!(is_answer(&json!({"jsonrpc":"2.0","id":5,"result":{}}), 5));
        assert!(is_answer(&json!({"jsonrpc":"2.0","id":5,"error":{"code":-32601}}), 5));
        assert!(!is_answer(&json!({"jsonrpc":"2.0","id":5,"method":"fs/read_text_file"}), 5));
        assert!(!is_answer(&json!({"jsonrpc":"2.0","id":6,"result":{}}), 5));
    }
}
