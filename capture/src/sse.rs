//! Incremental server-sent-events framing.
//!
//! Bytes arrive in arbitrary reads; [`SseParser::feed`] turns them into complete events as soon
//! as their terminating blank line arrives, following the WHATWG event-stream rules that matter
//! for LLM servers: `\n`, `\r\n` and `\r` line ends (also split across reads), `:` comments,
//! multi-line `data:` joined by `\n`, one optional space after the colon, other fields ignored.
//! Data stays bytes: UTF-8 is checked later, so a bad event becomes a recorded protocol error
//! rather than a lost stream.

/// One dispatched event: its `data` and how many raw bytes of the stream it spanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The event's data lines joined with `\n` (no trailing newline).
    pub data: Vec<u8>,
    /// Raw stream bytes from the end of the previous event through this one's blank line,
    /// including comments and framing. A blank line ends at its first line-end byte, so the
    /// LF of a closing CRLF counts toward the next event, however the stream was split.
    pub raw_bytes: usize,
}

/// Streaming parser state; feed it every body chunk, then call [`SseParser::finish`].
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    raw_bytes: usize,
    skip_lf: bool,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes `input`, appending every event completed by it to `out`.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<SseEvent>) {
        while !input.is_empty() {
            if self.skip_lf {
                // The LF of a CRLF, whether it arrived in the same read as its CR or the next:
                // the line ended at the CR, so the LF counts after it (toward the next event)
                // and byte counts do not depend on read boundaries.
                self.skip_lf = false;
                if input[0] == b'\n' {
                    self.raw_bytes += 1;
                    input = &input[1..];
                    continue;
                }
            }
            match memchr::memchr2(b'\n', b'\r', input) {
                None => {
                    self.line.extend_from_slice(input);
                    self.raw_bytes += input.len();
                    return;
                }
                Some(i) => {
                    self.raw_bytes += i + 1;
                    self.skip_lf = input[i] == b'\r';
                    if self.line.is_empty() {
                        // The whole line is in this read: no copy.
                        self.end_line(&input[..i], out);
                    } else {
                        let mut line = std::mem::take(&mut self.line);
                        line.extend_from_slice(&input[..i]);
                        self.end_line(&line, out);
                        line.clear();
                        self.line = line;
                    }
                    input = &input[i + 1..];
                }
            }
        }
    }

    /// Ends the stream: an unterminated last line or event (no trailing blank line) is still
    /// dispatched, since servers that omit it still meant it.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.end_line(&line, out);
        }
        self.dispatch(out);
        self.raw_bytes = 0;
    }

    fn end_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] != b':' {
            let (field, value) = match memchr::memchr(b':', line) {
                Some(c) => {
                    let v = &line[c + 1..];
                    (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
                }
                None => (line, &[][..]),
            };
            if field == b"data" {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        if self.has_data {
            out.push(SseEvent {
                data: std::mem::take(&mut self.data),
                raw_bytes: self.raw_bytes,
            });
            self.raw_bytes = 0;
            self.has_data = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_reads(reads: &[&[u8]]) -> Vec<String> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for r in reads {
            p.feed(r, &mut out);
        }
        p.finish(&mut out);
        out.into_iter()
            .map(|e| String::from_utf8_lossy(&e.data).into_owned())
            .collect()
    }

    #[test]
    fn simple_events_and_done() {
        let got = parse_in_reads(&[b"data: {\"a\":1}\n\ndata: [DONE]\n\n"]);
        assert_eq!(got, ["{\"a\":1}", "[DONE]"]);
    }

    #[test]
    fn event_split_across_reads_at_every_byte() {
        let stream = b"data: hello\r\n\r\n: keepalive\n\ndata: a\ndata: b\n\ndata:[DONE]\r\n\r\n";
        let whole = parse_in_reads(&[stream]);
        assert_eq!(whole, ["hello", "a\nb", "[DONE]"]);
        for cut in 0..stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(parse_in_reads(&[a, b]), whole, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(parse_in_reads(&bytes), whole);
    }

    #[test]
    fn crlf_split_between_reads_is_one_line_end() {
        assert_eq!(
            parse_in_reads(&[b"data: x\r", b"\n\r", b"\ndata: y\r\n\r\n"]),
            ["x", "y"]
        );
    }

    #[test]
    fn lone_cr_line_endings() {
        assert_eq!(parse_in_reads(&[b"data: x\r\rdata: y\r\r"]), ["x", "y"]);
    }

    #[test]
    fn comments_and_other_fields_are_ignored() {
        let got = parse_in_reads(&[b": ping\n\nevent: message\nid: 7\nretry: 10\ndata: z\n\n"]);
        assert_eq!(got, ["z"]);
    }

    #[test]
    fn multi_line_data_is_joined_with_newline() {
        assert_eq!(
            parse_in_reads(&[b"data: {\ndata:  \"k\": 1\ndata: }\n\n"]),
            ["{\n \"k\": 1\n}"]
        );
    }

    #[test]
    fn no_trailing_newline_still_dispatches() {
        assert_eq!(parse_in_reads(&[b"data: a\n\ndata: [DONE]"]), ["a", "[DONE]"]);
        assert_eq!(parse_in_reads(&[b"data: a\n\ndata: [DONE]\n"]), ["a", "[DONE]"]);
    }

    #[test]
    fn empty_data_field_is_an_event_but_no_data_is_not() {
        assert_eq!(parse_in_reads(&[b"data:\n\n\n\n"]), [""]);
    }

    #[test]
    fn raw_bytes_cover_the_whole_stream() {
        let stream = b": c\n\ndata: a\n\ndata: bb\r\n\r\n";
        let mut p = SseParser::new();
        let mut out = Vec::new();
        p.feed(stream, &mut out);
        p.finish(&mut out);
        let total: usize = out.iter().map(|e| e.raw_bytes).sum();
        // An event ends at its blank line's CR; the LF after it counts toward the next event
        // (here none), whether or not it arrived in the same read.
        assert_eq!(total, stream.len() - 1);
        assert_eq!(out[1].raw_bytes, "data: bb\r\n\r".len());
    }

    #[test]
    fn non_utf8_bytes_are_kept() {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        p.feed(b"data: \xff\xfe\n\n", &mut out);
        assert_eq!(out[0].data, b"\xff\xfe");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// A valid stream: events of data lines (no line breaks inside), with a random line
        /// ending per line and optional comment lines.
        fn stream() -> impl Strategy<Value = (Vec<String>, Vec<u8>)> {
            let line_end = prop_oneof![Just("\n"), Just("\r\n"), Just("\r")];
            let event = (
                prop::collection::vec("[ -~]{0,20}", 1..4),
                prop::option::of("[ -~]{0,10}"),
                line_end,
            );
            prop::collection::vec(event, 0..12).prop_map(|events| {
                let mut bytes = Vec::new();
                let mut expected = Vec::new();
                for (lines, comment, end) in events {
                    if let Some(c) = comment {
                        bytes.extend_from_slice(format!(":{c}{end}").as_bytes());
                    }
                    for l in &lines {
                        bytes.extend_from_slice(format!("data:{l}{end}").as_bytes());
                    }
                    bytes.extend_from_slice(end.as_bytes());
                    // One optional space after the colon is not part of the value.
                    let values: Vec<&str> = lines.iter().map(|l| l.strip_prefix(' ').unwrap_or(l)).collect();
                    expected.push(values.join("\n"));
                }
                (expected, bytes)
            })
        }

        proptest! {
            #[test]
            fn any_split_into_reads_yields_the_same_events((expected, bytes) in stream(), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8)) {
                let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
                points.sort_unstable();
                let mut reads: Vec<&[u8]> = Vec::new();
                let mut prev = 0;
                for p in points {
                    reads.push(&bytes[prev..p]);
                    prev = p;
                }
                reads.push(&bytes[prev..]);
                prop_assert_eq!(parse_in_reads(&reads), expected);
            }
        }
    }
}
