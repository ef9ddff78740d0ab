//! An incremental server-sent-events decoder (PROTOCOLS.md §5, the WHATWG event-stream rules).
//!
//! Owns only the framing: bytes in, events out. Feed it network reads of any size; it keeps the
//! unfinished line between calls and decodes a line only once it is whole, so a multibyte UTF-8
//! character split across two reads is never mangled (a line terminator byte can never occur
//! inside a multibyte sequence). Never here: I/O, JSON, or any knowledge of what the data means.

/// Longest line we buffer before giving up: a peer that never sends a newline must not make us
/// hold unbounded memory. Real chat chunks are a few hundred bytes.
pub const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, when the server named the event type (OpenAI never does).
    pub event: Option<String>,
    /// All `data:` lines of the event joined with `\n`.
    pub data: String,
}

/// The stream broke the framing rules in a way we refuse to buffer through.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error(
        "server-sent event line longer than {MAX_LINE_BYTES} bytes without a line break; \
         the server is not speaking text/event-stream"
    )]
    LineTooLong,
}

/// Incremental decoder. One per HTTP response.
#[derive(Debug, Default)]
pub struct SseDecoder {
    /// Bytes of the line being received (no terminator yet).
    line: Vec<u8>,
    /// Data of the event being assembled, each line followed by `\n` (trimmed at dispatch).
    data: String,
    /// At least one `data` field was seen in the current event.
    has_data: bool,
    event: Option<String>,
    /// The previous read ended in `\r`: a `\n` opening the next read belongs to that terminator.
    after_cr: bool,
    /// Bytes were seen already, so a later U+FEFF is content and not a byte-order mark.
    started: bool,
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one network read; returns the events it completed, in order.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut events = Vec::new();
        let mut rest = chunk;
        if self.after_cr && !rest.is_empty() {
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
            self.after_cr = false;
        }
        while let Some(pos) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.line.extend_from_slice(&rest[..pos]);
            let terminator = rest[pos];
            rest = &rest[pos + 1..];
            if terminator == b'\r' {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, &mut events);
        }
        self.line.extend_from_slice(rest);
        if self.line.len() > MAX_LINE_BYTES {
            self.line = Vec::new();
            return Err(SseError::LineTooLong);
        }
        Ok(events)
    }

    /// True when bytes or fields of an unfinished event are buffered. At the end of a stream
    /// such an event is discarded (the spec's rule), which callers may want to report.
    pub fn has_partial_event(&self) -> bool {
        !self.line.is_empty() || self.has_data
    }

    fn process_line(&mut self, raw: &[u8], events: &mut Vec<SseEvent>) {
        let mut line = String::from_utf8_lossy(raw);
        if !self.started {
            self.started = true;
            if let Some(stripped) = line.strip_prefix('\u{feff}') {
                line = std::borrow::Cow::Owned(stripped.to_owned());
            }
        }
        if line.is_empty() {
            self.dispatch(events);
            return;
        }
        if line.starts_with(':') {
            return; // comment (keep-alives, e.g. OpenRouter's ": PROCESSING")
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_owned()),
            // `id` and `retry` matter only to browsers that reconnect; we never resume a stream.
            _ => {}
        }
    }

    fn dispatch(&mut self, events: &mut Vec<SseEvent>) {
        let event = self.event.take();
        if !self.has_data {
            return;
        }
        self.has_data = false;
        let mut data = std::mem::take(&mut self.data);
        if data.ends_with('\n') {
            data.pop();
        }
        events.push(SseEvent { event, data });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(chunks: &[&[u8]]) -> Vec<String> {
        let mut decoder = SseDecoder::new();
        let mut out = Vec::new();
        for chunk in chunks {
            for event in decoder.feed(chunk).expect("small lines") {
                out.push(event.data);
            }
        }
        out
    }

    #[test]
    fn one_event_per_blank_line() {
        assert_eq!(
            decode_all(&[b"data: a\n\ndata: b\n\n"]),
            vec!["a".to_owned(), "b".to_owned()]
        );
    }

    #[test]
    fn crlf_and_cr_separators() {
        assert_eq!(
            decode_all(&[b"data: a\r\n\r\ndata: b\r\n\r\n"]),
            vec!["a", "b"]
        );
        assert_eq!(decode_all(&[b"data: a\r\rdata: b\r\r"]), vec!["a", "b"]);
        // Mixed terminators in one stream.
        assert_eq!(decode_all(&[b"data: a\r\n\ndata: b\n\r\n"]), vec!["a", "b"]);
    }

    #[test]
    fn crlf_split_between_reads_is_one_terminator() {
        // "\r" ends a read and "\n" starts the next: one line end, not an empty line.
        assert_eq!(
            decode_all(&[b"data: a\r", b"\ndata: b\r\n\r\n"]),
            vec!["a\nb"]
        );
        assert_eq!(decode_all(&[b"data: a\r\n\r", b"\n"]), vec!["a"]);
    }

    #[test]
    fn multi_line_data_joins_with_newline() {
        assert_eq!(
            decode_all(&[b"data: {\"a\":\ndata: 1}\n\n"]),
            vec!["{\"a\":\n1}"]
        );
        // An empty data line contributes an empty line.
        assert_eq!(decode_all(&[b"data: x\ndata\ndata: y\n\n"]), vec!["x\n\ny"]);
    }

    #[test]
    fn comments_are_ignored() {
        assert_eq!(
            decode_all(&[b": keep-alive\n\n: PROCESSING\ndata: a\n\n"]),
            vec!["a"]
        );
    }

    #[test]
    fn exactly_one_space_after_the_colon_is_dropped() {
        assert_eq!(decode_all(&[b"data:a\n\n"]), vec!["a"]);
        assert_eq!(decode_all(&[b"data:  a\n\n"]), vec![" a"]);
        assert_eq!(decode_all(&[b"data: \n\n"]), vec![""]);
    }

    #[test]
    fn other_fields_do_not_touch_data() {
        let mut decoder = SseDecoder::new();
        let events = decoder
            .feed(b"event: delta\nid: 7\nretry: 10\nfoo: bar\ndata: x\n\n")
            .expect("small");
        assert_eq!(
            events,
            vec![SseEvent {
                event: Some("delta".into()),
                data: "x".into()
            }]
        );
    }

    #[test]
    fn event_without_data_is_not_dispatched() {
        assert!(decode_all(&[b"event: ping\n\n\n\n"]).is_empty());
    }

    #[test]
    fn unfinished_event_is_held_back() {
        let mut decoder = SseDecoder::new();
        assert!(decoder.feed(b"data: a\n").expect("small").is_empty());
        assert!(decoder.has_partial_event());
        assert_eq!(decoder.feed(b"\n").expect("small").len(), 1);
        assert!(!decoder.has_partial_event());
    }

    #[test]
    fn byte_order_mark_at_start_is_dropped() {
        assert_eq!(decode_all(&[b"\xEF\xBB\xBFdata: a\n\n"]), vec!["a"]);
    }

    #[test]
    fn every_split_point_of_multibyte_text() {
        // 2-, 3- and 4-byte characters, and an emoji with a zero-width joiner.
        let text = "data: {\"content\":\"é€𝄞 👩\u{200d}💻 ß\"}\n\ndata: [DONE]\n\n";
        let bytes = text.as_bytes();
        for split in 0..=bytes.len() {
            let got = decode_all(&[&bytes[..split], &bytes[split..]]);
            assert_eq!(
                got,
                vec!["{\"content\":\"é€𝄞 👩\u{200d}💻 ß\"}", "[DONE]"],
                "split at byte {split}"
            );
        }
        // And byte by byte.
        let single: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(decode_all(&single).len(), 2);
    }

    #[test]
    fn endless_line_is_refused() {
        let mut decoder = SseDecoder::new();
        let block = vec![b'x'; 1024 * 1024];
        let mut result = Ok(Vec::new());
        for _ in 0..5 {
            result = decoder.feed(&block);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(SseError::LineTooLong));
    }
}
