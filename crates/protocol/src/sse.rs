//! Incremental server-sent-events parsing (the WHATWG event-stream format).
//!
//! Upstream bytes arrive in chunks that split events, lines, `\r\n` pairs and UTF-8 sequences
//! anywhere. The parser keeps the unfinished tail and yields each event as soon as its blank
//! line arrives, so relaying stays event-by-event with no added buffering. Comment lines
//! (`: ping`) are surfaced too, because a gateway forwards them as keep-alives.

/// One parsed item of an event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    /// A dispatched event: its `event:` type if any, and its `data:` lines joined with `\n`.
    Event { event: Option<String>, data: String },
    /// A comment line, without the leading colon.
    Comment(String),
}

#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    event: PendingEvent,
}

/// The event being read: its lines so far.
#[derive(Debug, Default)]
struct PendingEvent {
    data: String,
    has_data: bool,
    event: Option<String>,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a chunk; completed items are appended to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseItem>) {
        self.buf.extend_from_slice(chunk);
        let Self { buf, event } = self;
        let mut start = 0;
        while let Some(found) = memchr::memchr2(b'\n', b'\r', &buf[start..]) {
            let line_end = start + found;
            let next = match buf[line_end] {
                // A lone `\r` at the end may be the first half of `\r\n`: wait for more bytes.
                b'\r' if line_end + 1 == buf.len() => break,
                b'\r' if buf[line_end + 1] == b'\n' => line_end + 2,
                _ => line_end + 1,
            };
            // Invalid UTF-8 is replaced, never refused; the strict check is the fast one.
            match std::str::from_utf8(&buf[start..line_end]) {
                Ok(line) => event.line(line, out),
                Err(_) => event.line(&String::from_utf8_lossy(&buf[start..line_end]), out),
            }
            start = next;
        }
        buf.drain(..start);
    }

    /// Ends the stream. A trailing event without its blank line is dispatched, as lenient
    /// clients do, because some servers close right after the last `data:` line.
    pub fn finish(&mut self, out: &mut Vec<SseItem>) {
        if !self.buf.is_empty() {
            let tail = std::mem::take(&mut self.buf);
            let line = String::from_utf8_lossy(&tail);
            self.event
                .line(line.strip_suffix('\r').unwrap_or(&line), out);
        }
        self.event.dispatch(out);
    }
}

impl PendingEvent {
    fn line(&mut self, line: &str, out: &mut Vec<SseItem>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if let Some(comment) = line.strip_prefix(':') {
            out.push(SseItem::Comment(
                comment.strip_prefix(' ').unwrap_or(comment).to_string(),
            ));
            return;
        }
        let (field, value) = match line.find(':') {
            Some(idx) => {
                let value = &line[idx + 1..];
                (&line[..idx], value.strip_prefix(' ').unwrap_or(value))
            }
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_string()),
            // `id` and `retry` carry nothing a relay of completions needs.
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseItem>) {
        if self.has_data {
            out.push(SseItem::Event {
                event: self.event.take(),
                data: std::mem::take(&mut self.data),
            });
        }
        self.has_data = false;
        self.event = None;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_whole(input: &[u8]) -> Vec<SseItem> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        p.feed(input, &mut out);
        p.finish(&mut out);
        out
    }

    fn parse_split(input: &[u8], cuts: &[usize]) -> Vec<SseItem> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        let mut last = 0;
        for &cut in cuts {
            p.feed(&input[last..cut], &mut out);
            last = cut;
        }
        p.feed(&input[last..], &mut out);
        p.finish(&mut out);
        out
    }

    fn ev(data: &str) -> SseItem {
        SseItem::Event {
            event: None,
            data: data.into(),
        }
    }

    #[test]
    fn openai_stream_with_keepalives_and_usage_chunk() {
        let input = b": ping\n\ndata: {\"a\":1}\n\n: keep-alive\ndata: {\"choices\":[],\"usage\":{}}\n\ndata: [DONE]\n\n";
        assert_eq!(
            parse_whole(input),
            vec![
                SseItem::Comment("ping".into()),
                ev("{\"a\":1}"),
                SseItem::Comment("keep-alive".into()),
                ev("{\"choices\":[],\"usage\":{}}"),
                ev("[DONE]"),
            ]
        );
    }

    #[test]
    fn crlf_cr_multiline_data_and_event_types() {
        let input = b"event: error\r\ndata: line1\r\ndata:line2\r\rdata: x\n\n";
        assert_eq!(
            parse_whole(input),
            vec![
                SseItem::Event {
                    event: Some("error".into()),
                    data: "line1\nline2".into()
                },
                ev("x"),
            ]
        );
    }

    #[test]
    fn an_event_is_not_dispatched_before_its_blank_line() {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        p.feed(b"data: {\"a\":", &mut out);
        p.feed(b"1}\n", &mut out);
        assert!(out.is_empty());
        p.feed(b"\n", &mut out);
        assert_eq!(out, vec![ev("{\"a\":1}")]);
    }

    #[test]
    fn unterminated_last_event_is_kept_at_eof() {
        assert_eq!(parse_whole(b"data: tail"), vec![ev("tail")]);
    }

    #[test]
    fn utf8_split_inside_a_character_survives() {
        let input = "data: héllo 🌍\n\n".as_bytes();
        for cut in 1..input.len() {
            assert_eq!(
                parse_split(input, &[cut]),
                vec![ev("héllo 🌍")],
                "cut at {cut}"
            );
        }
    }

    fn arb_stream() -> impl Strategy<Value = Vec<u8>> {
        let item = prop_oneof![
            "[ -~é🌍]{0,40}".prop_map(|d| format!("data: {d}\n\n")),
            "[ -~]{0,20}".prop_map(|c| format!(":{c}\n\n")),
            ("[a-z]{1,8}", "[ -~]{0,20}")
                .prop_map(|(e, d)| format!("event: {e}\r\ndata: {d}\r\n\r\n")),
            ("[ -~]{0,10}", "[ -~]{0,10}").prop_map(|(a, b)| format!("data:{a}\ndata: {b}\r\r")),
            Just("id: 7\nretry: 10\n\n".to_string()),
        ];
        prop::collection::vec(item, 0..12).prop_map(|items| items.concat().into_bytes())
    }

    proptest! {
        #[test]
        fn any_chunking_yields_the_same_items(
            input in arb_stream(),
            raw_cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..16),
        ) {
            let mut cuts: Vec<usize> = raw_cuts.iter().map(|i| i.index(input.len() + 1)).collect();
            cuts.sort_unstable();
            let whole = parse_whole(&input);
            prop_assert_eq!(parse_split(&input, &cuts), whole);
        }

        #[test]
        fn byte_at_a_time_equals_whole(input in arb_stream()) {
            let cuts: Vec<usize> = (1..input.len()).collect();
            prop_assert_eq!(parse_split(&input, &cuts), parse_whole(&input));
        }

        #[test]
        fn arbitrary_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_whole(&input);
        }
    }
}
