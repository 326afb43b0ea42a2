//! Server-sent events decoding (WHATWG `text/event-stream`): bytes in any split → the same events.
//!
//! Written here rather than taken from a crate: eventsource-stream 0.2.3 panics on a stream that
//! starts with a byte-order mark, and sse-stream 0.2.5 rejects spec-valid lines (`data` without a
//! colon, unknown fields, a repeated `event` line). Both were checked against this decoder's tests.

/// One dispatched event: its type (`message` when the stream named none) and its data lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

/// Incremental decoder; feed it body chunks as they arrive.
#[derive(Debug, Default)]
pub struct SseDecoder {
    /// Bytes of the line not yet terminated.
    line: Vec<u8>,
    /// The previous chunk ended in CR, so a leading LF belongs to that line ending.
    after_cr: bool,
    /// Whether the stream's first bytes were checked for a byte-order mark.
    bom_checked: bool,
    /// The stream's first bytes while they might still be a split byte-order mark.
    head: Vec<u8>,
    event: String,
    data: String,
    /// Whether any `data` field arrived for the pending event (an empty `data:` still counts).
    has_data: bool,
    /// A line passed `MAX_LINE`; the stream is broken.
    overflow: bool,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";
/// The longest line kept; a server streaming without line breaks must not grow memory without end.
pub const MAX_LINE: usize = 8 << 20;

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes a chunk; returns the events it completed, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        if self.bom_checked {
            return self.decode(bytes);
        }
        // The mark may arrive split over chunks: hold the first bytes until they can be told apart.
        self.head.extend_from_slice(bytes);
        if self.head.len() < BOM.len() && BOM.starts_with(&self.head) {
            return Vec::new();
        }
        self.bom_checked = true;
        let head = std::mem::take(&mut self.head);
        self.decode(head.strip_prefix(BOM).unwrap_or(&head))
    }

    fn decode(&mut self, mut bytes: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        if self.after_cr && !bytes.is_empty() {
            self.after_cr = false;
            if bytes[0] == b'\n' {
                bytes = &bytes[1..];
            }
        }
        while let Some(end) = bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.line.extend_from_slice(&bytes[..end]);
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, &mut out);
            let cr = bytes[end] == b'\r';
            bytes = &bytes[end + 1..];
            if cr {
                match bytes.first() {
                    Some(b'\n') => bytes = &bytes[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        self.line.extend_from_slice(bytes);
        if self.line.len() > MAX_LINE {
            self.overflow = true;
            self.line.clear();
        }
        out
    }

    /// Whether a line grew past `MAX_LINE` (its bytes were dropped).
    pub fn overflowed(&self) -> bool {
        self.overflow
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            if let Some(ev) = self.dispatch() {
                out.push(ev);
            }
            return;
        }
        // A line starting with a colon is a comment (keep-alives, provider notes).
        if line[0] == b':' {
            return;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        // Invalid UTF-8 becomes U+FFFD, as the spec's decoder does; the JSON layer judges what remains.
        let value = String::from_utf8_lossy(value);
        match name {
            b"event" => self.event = value.into_owned(),
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&value);
                self.has_data = true;
            }
            // `id` and `retry` steer browser reconnection, which a one-shot completion never does.
            _ => {}
        }
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = std::mem::take(&mut self.event);
        let data = std::mem::take(&mut self.data);
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        Some(SseEvent { event: if event.is_empty() { "message".into() } else { event }, data })
    }

    /// Bytes of an event that never got its terminating blank line (the stream ended mid-event).
    pub fn has_partial(&self) -> bool {
        !self.line.is_empty() || !self.head.is_empty() || self.has_data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8]) -> Vec<SseEvent> {
        SseDecoder::new().feed(input)
    }

    fn ev(event: &str, data: &str) -> SseEvent {
        SseEvent { event: event.into(), data: data.into() }
    }

    #[test]
    fn spec_examples() {
        assert_eq!(all(b"data: YHOO\ndata: +2\ndata: 10\n\n"), [ev("message", "YHOO\n+2\n10")]);
        assert_eq!(
            all(b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n"),
            [ev("message", "first event"), ev("message", "second event"), ev("message", " third event")]
        );
        assert_eq!(all(b"data\n\ndata\ndata\n\ndata:"), [ev("message", ""), ev("message", "\n")]);
        assert_eq!(all(b"event: ping\ndata: {}\n\n"), [ev("ping", "{}")]);
    }

    #[test]
    fn line_endings_bom_and_unknown_fields() {
        assert_eq!(
            all(b"\xEF\xBB\xBFdata: a\r\n\r\ndata: b\r\rfoo: x\nevent\ndata: c\n\n"),
            [ev("message", "a"), ev("message", "b"), ev("message", "c")]
        );
        // Only the first BOM is a mark; an event with no data is not dispatched.
        assert_eq!(all(b"event: x\n\n\xEF\xBB\xBFdata: y\n\n"), []);
        let mut d = SseDecoder::new();
        assert_eq!(d.feed(b"data: a\r"), []);
        assert_eq!(d.feed(b"\n"), []);
        assert_eq!(d.feed(b"\n"), [ev("message", "a")]);
        assert!(!d.has_partial());
        d.feed(b"data: cut");
        assert!(d.has_partial());
    }
}
