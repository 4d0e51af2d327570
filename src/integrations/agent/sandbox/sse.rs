//! Server-sent events of `GET /v1/acp/{server}`: splitting the byte stream into numbered events, resuming after an
//! event id.

use serde_json::Value;

use super::SandboxError;

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SseEvent {
    pub(super) id: Option<u64>,
    pub(super) data: Option<String>,
}

impl SseEvent {
    pub(super) fn envelope(&self) -> Option<Value> {
        self.data.as_deref().and_then(|d| serde_json::from_str(d).ok())
    }
}

/// Bytes read but not yet split into events (a chunk may end mid-event, or mid-character).
#[derive(Debug, Default)]
pub(super) struct SseBuffer {
    bytes: Vec<u8>,
}

impl SseBuffer {
    pub(super) fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend(chunk.iter().filter(|b| **b != b'\r'));
    }

    pub(super) fn pop(&mut self) -> Option<SseEvent> {
        let end = self.bytes.windows(2).position(|w| w == b"\n\n")?;
        let raw: Vec<u8> = self.bytes.drain(..end + 2).collect();
        let (id, data) = parse_sse(&String::from_utf8_lossy(&raw));
        Some(SseEvent { id, data })
    }

    pub(super) fn has_event(&self) -> bool {
        self.bytes.windows(2).any(|w| w == b"\n\n")
    }
}

pub(super) struct SseStream {
    pub(super) res: reqwest::Response,
    pub(super) buf: SseBuffer,
    /// The last event id read (or the id the stream was opened after).
    pub(super) after: u64,
}

impl SseStream {
    /// The next event after `after` (events at or before it are skipped), or `None` when the stream ends.
    /// Cancel-safe: bytes of an unfinished read stay buffered.
    pub(super) async fn next(&mut self) -> Result<Option<SseEvent>, SandboxError> {
        loop {
            while let Some(event) = self.buf.pop() {
                match event.id {
                    Some(id) if id <= self.after => continue,
                    Some(id) => self.after = id,
                    None if event.data.is_none() => continue,
                    None => {}
                }
                return Ok(Some(event));
            }
            match self.res.chunk().await {
                Ok(Some(bytes)) => self.buf.push(&bytes),
                Ok(None) => return Ok(None),
                Err(e) => return Err(SandboxError::Unreachable(e.to_string())),
            }
        }
    }

    pub(super) fn has_buffered(&self) -> bool {
        self.buf.has_event()
    }
}

pub(super) fn parse_sse(raw: &str) -> (Option<u64>, Option<String>) {
    let mut id = None;
    let mut data: Option<String> = None;
    for line in raw.lines() {
        if let Some(v) = line.strip_prefix("id:") {
            id = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("data:") {
            let v = v.strip_prefix(' ').unwrap_or(v);
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(v);
                }
                None => data = Some(v.to_owned()),
            }
        }
    }
    (id, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sse_buffer_splits_events_across_chunks() {
        let mut buf = SseBuffer::default();
        let text = "id: 1\r\ndata: {\"t\":\"é\"}\r\n\r\nid: 2\ndata: x\n\n";
        let bytes = text.as_bytes();
        // Split inside the two-byte "é" and inside the separator.
        let split = text.find('é').unwrap() + 1;
        buf.push(&bytes[..split]);
        assert!(buf.pop().is_none() && !buf.has_event());
        buf.push(&bytes[split..]);
        assert!(buf.has_event());
        let first = buf.pop().unwrap();
        assert_eq!(first.id, Some(1));
        assert_eq!(first.envelope(), Some(json!({"t":"é"})));
        assert_eq!(buf.pop(), Some(SseEvent { id: Some(2), data: Some("x".into()) }));
        assert_eq!(buf.pop(), None);
    }
}
