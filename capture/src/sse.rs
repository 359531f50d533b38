//! Incremental server-sent-events framing.
//!
//! Bytes arrive in arbitrary reads; [`SseParser::feed`] turns them into complete events as soon
//! as their terminating blank line arrives, following the WHATWG event-stream rules that matter
//! for LLM servers: `\n`, `\r\n` and `\r` line ends (also split across reads), `:` comments,
//! multi-line `data:` joined by `\n`, one optional space after the colon, the `event:` name
//! kept (servers name error events so), other fields ignored.
//! Data stays bytes: UTF-8 is checked later, so a bad event becomes a recorded protocol error
//! rather than a lost stream.

use std::ops::Range;

/// One dispatched event: its `data` and how many raw bytes of the stream it spanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The event's data lines joined with `\n` (no trailing newline).
    pub data: Vec<u8>,
    /// The event's `event:` field (the last one, as the spec says), if it had one.
    pub name: Option<Vec<u8>>,
    /// Raw stream bytes from the end of the previous event through this one's blank line,
    /// including comments and framing. A blank line ends at its first line-end byte, so the
    /// LF of a closing CRLF counts toward the next event, however the stream was split.
    pub raw_bytes: usize,
    /// The event (or one of its lines) outgrew the parser's cap: its data was discarded
    /// (`data` is empty) and only its size is known. The stream goes on after it.
    pub oversized: bool,
}

/// One dispatched event as [`SseEvents`] holds it: borrowed from its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseEventRef<'a> {
    /// [`SseEvent::data`].
    pub data: &'a [u8],
    /// [`SseEvent::name`].
    pub name: Option<&'a [u8]>,
    /// [`SseEvent::raw_bytes`].
    pub raw_bytes: usize,
    /// [`SseEvent::oversized`].
    pub oversized: bool,
}

impl SseEventRef<'_> {
    /// The event, owned.
    pub fn to_owned_event(&self) -> SseEvent {
        SseEvent {
            data: self.data.to_vec(),
            name: self.name.map(<[u8]>::to_vec),
            raw_bytes: self.raw_bytes,
            oversized: self.oversized,
        }
    }
}

/// Dispatched events, their data back to back in one buffer that the reader clears and
/// refills read after read: framing allocates nothing per event (an allocation per event's
/// data, freed by another thread, cost B3 ~400 instructions per event). The parser writes an
/// event's data lines straight into that buffer, after the dispatched events' data (`open`
/// on): each byte of data is copied once (through a buffer of the parser's own it was copied
/// twice: B3 ~40 instructions per event). What lies past `open` when the reader clears or
/// takes the buffer is the next event's beginning: it stays.
#[derive(Debug, Default)]
pub struct SseEvents {
    data: Vec<u8>,
    events: Vec<Framed>,
    /// Where the data of the event not dispatched yet begins (`data.len()` when it has none).
    open: usize,
}

#[derive(Debug)]
struct Framed {
    data: Range<usize>,
    name: Option<Vec<u8>>,
    raw_bytes: usize,
    oversized: bool,
}

/// Data capacity a cleared buffer keeps ([`clear_data`]): a huge event's buffer is not held
/// for the rest of its stream.
const KEEP_DATA_CAPACITY: usize = 1 << 20;

/// Empties a data buffer, keeping its capacity up to [`KEEP_DATA_CAPACITY`].
fn clear_data(data: &mut Vec<u8>) {
    if data.capacity() > KEEP_DATA_CAPACITY {
        *data = Vec::new();
    } else {
        data.clear();
    }
}

impl SseEvents {
    /// How many events there are.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The bytes of all their data.
    pub fn data_bytes(&self) -> usize {
        self.open
    }

    /// The events, in stream order.
    pub fn iter(&self) -> impl Iterator<Item = SseEventRef<'_>> {
        self.iter_in(&self.data).map(|(_, e)| e)
    }

    /// The events in `data`, the buffer [`Self::take_data`] took, each with where its data
    /// lies there.
    pub fn iter_in<'a>(&'a self, data: &'a [u8]) -> impl Iterator<Item = (Range<usize>, SseEventRef<'a>)> {
        self.events.iter().map(move |e| {
            let event = SseEventRef {
                data: data.get(e.data.clone()).unwrap_or_default(),
                name: e.name.as_deref(),
                raw_bytes: e.raw_bytes,
                oversized: e.oversized,
            };
            (e.data.clone(), event)
        })
    }

    /// Takes the events' data, back to back, out of the buffer (the events stay, and
    /// [`Self::iter_in`] reads them there): a reader that keeps every event's data hands the
    /// buffer on instead of copying each. `None` while over half the buffer is spare room,
    /// which whoever holds the data would hold too: the caller copies then. The next read's
    /// buffer starts with room for half as much again as this one's data (exactly as much
    /// made half the reads regrow it: B3 whole, ~70 instructions per row).
    #[inline]
    pub fn take_data(&mut self) -> Option<Vec<u8>> {
        let len = self.open;
        if len == 0 || len < self.data.capacity() / 2 {
            return None;
        }
        // The open event's beginning moves to the new buffer.
        let mut next = Vec::with_capacity(len + len / 2);
        next.extend_from_slice(self.data.get(len..).unwrap_or_default());
        let mut taken = std::mem::replace(&mut self.data, next);
        taken.truncate(len);
        self.open = 0;
        Some(taken)
    }

    /// Gives back a buffer [`Self::take_data`] took, unused.
    pub fn put_back_data(&mut self, mut data: Vec<u8>) {
        self.open = data.len();
        data.extend_from_slice(&self.data);
        self.data = data;
    }

    /// The events, owned.
    pub fn to_vec(&self) -> Vec<SseEvent> {
        self.iter().map(|e| e.to_owned_event()).collect()
    }

    /// Forgets the events, keeping the buffers for the next read (and the open event's
    /// beginning).
    #[inline]
    pub fn clear(&mut self) {
        self.events.clear();
        if self.open == self.data.len() {
            clear_data(&mut self.data);
        } else if self.data.capacity() > KEEP_DATA_CAPACITY {
            self.data = self.data.get(self.open..).unwrap_or_default().to_vec();
        } else {
            self.data.drain(..self.open);
        }
        self.open = 0;
    }

    /// The open event's data so far.
    #[inline]
    fn open_len(&self) -> usize {
        self.data.len() - self.open
    }

    /// Appends to the open event's data.
    #[inline]
    fn extend_open(&mut self, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
    }

    /// Drops the open event's data.
    #[inline]
    fn drop_open(&mut self) {
        self.data.truncate(self.open);
    }

    /// Dispatches the open event.
    #[inline]
    fn push(&mut self, name: Option<Vec<u8>>, raw_bytes: usize, oversized: bool) {
        let start = self.open;
        self.open = self.data.len();
        self.events.push(Framed {
            data: start..self.open,
            name,
            raw_bytes,
            oversized,
        });
    }
}

/// Default cap on the bytes one event may buffer ([`SseParser::with_max_event_bytes`]).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 32 << 20;

/// Streaming parser state; feed it every body chunk, then call [`SseParser::finish`].
#[derive(Debug)]
pub struct SseParser {
    line: Vec<u8>,
    name: Option<Vec<u8>>,
    has_data: bool,
    raw_bytes: usize,
    skip_lf: bool,
    max_event_bytes: usize,
    oversized: bool,
    discarding_line: bool,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::with_max_event_bytes(DEFAULT_MAX_EVENT_BYTES)
    }
}

impl SseParser {
    /// A parser at the start of a stream, with the default event size cap.
    pub fn new() -> Self {
        Self::default()
    }

    /// A parser that buffers at most `max` bytes of one event (its data plus the line being
    /// read): a server that never ends a line or an event cannot exhaust memory; the event
    /// comes out [`SseEvent::oversized`] at its end.
    pub fn with_max_event_bytes(max: usize) -> Self {
        SseParser {
            line: Vec::new(),
            name: None,
            has_data: false,
            raw_bytes: 0,
            skip_lf: false,
            max_event_bytes: max.max(1),
            oversized: false,
            discarding_line: false,
        }
    }

    /// Drops what the current event buffered once it passes the cap.
    fn check_cap(&mut self, out: &mut SseEvents) {
        if self.line.len() + out.open_len() > self.max_event_bytes {
            if !self.line.is_empty() {
                self.discarding_line = true;
            }
            self.line.clear();
            out.drop_open();
            self.oversized = true;
            self.has_data = true;
        }
    }

    /// Consumes `input`, appending every event completed by it to `out`.
    pub fn feed(&mut self, mut input: &[u8], out: &mut SseEvents) {
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
                    if !self.discarding_line {
                        self.line.extend_from_slice(input);
                        self.check_cap(out);
                    }
                    self.raw_bytes += input.len();
                    return;
                }
                Some(i) => {
                    self.raw_bytes += i + 1;
                    self.skip_lf = input[i] == b'\r';
                    if self.discarding_line {
                        // The end of a line already dropped for its size.
                        self.discarding_line = false;
                    } else if self.line.is_empty() {
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
    pub fn finish(&mut self, out: &mut SseEvents) {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.end_line(&line, out);
        }
        self.dispatch(out);
        self.raw_bytes = 0;
    }

    fn end_line(&mut self, line: &[u8], out: &mut SseEvents) {
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
            if field == b"data" && !self.oversized {
                if self.has_data {
                    out.extend_open(b"\n");
                }
                // Where the event's data will be read.
                out.extend_open(value);
                self.has_data = true;
                self.check_cap(out);
            } else if field == b"event" {
                self.name = Some(value.to_vec());
            }
        }
    }

    fn dispatch(&mut self, out: &mut SseEvents) {
        if self.has_data {
            out.push(self.name.take(), self.raw_bytes, self.oversized);
            self.raw_bytes = 0;
            self.has_data = false;
            self.oversized = false;
        } else {
            // An event with no data is not dispatched (the spec), nor is its name kept.
            self.name = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The data buffer is handed on whole, the events read there, unless most of it is spare
    /// room; the next read's buffer has room for at least as much again.
    #[test]
    fn a_read_hands_on_its_data_buffer_unless_it_is_mostly_room() {
        let mut p = SseParser::new();
        let mut out = SseEvents::default();
        p.feed(b"data: one\n\nevent: e\ndata: two\ndata: lines\n\n", &mut out);
        let data = out.take_data().expect("a full buffer is handed on");
        let at: Vec<Range<usize>> = out.iter_in(&data).map(|(at, _)| at).collect();
        assert_eq!(at, [0..3, 3..12]);
        let events: Vec<SseEventRef<'_>> = out.iter_in(&data).map(|(_, e)| e).collect();
        assert_eq!((events[0].data, events[0].name), (&b"one"[..], None));
        assert_eq!((events[1].data, events[1].name), (&b"two\nlines"[..], Some(&b"e"[..])));
        assert_eq!(data, b"onetwo\nlines");
        assert!(out.data.capacity() >= data.len() && out.data.is_empty());
        out.clear();
        out.put_back_data(Vec::with_capacity(4096));
        p.feed(b"data: small\n\n", &mut out);
        assert_eq!(out.take_data(), None, "5 bytes in 4 KiB stay");
        assert_eq!(
            out.iter().map(|e| e.data.to_vec()).collect::<Vec<_>>(),
            [b"small".to_vec()]
        );
    }

    /// An event cut by the end of a read is finished by the next, whether the reader took
    /// the buffer or cleared it in between.
    #[test]
    fn an_event_cut_by_a_read_survives_its_buffer_being_taken_or_cleared() {
        for take in [true, false] {
            let mut p = SseParser::new();
            let mut out = SseEvents::default();
            // The second event's first line is complete: its data waits in the buffer.
            p.feed(b"data: one one one\n\ndata: two\n", &mut out);
            let taken = take.then(|| out.take_data()).flatten();
            assert_eq!(taken.is_some(), take, "the buffer is mostly data");
            let first: Vec<Vec<u8>> = match &taken {
                Some(d) => out.iter_in(d).map(|(_, e)| e.data.to_vec()).collect(),
                None => out.iter().map(|e| e.data.to_vec()).collect(),
            };
            assert_eq!(first, [b"one one one".to_vec()], "take {take}");
            assert_eq!(
                taken.map(|d| d.len()),
                take.then_some(11),
                "only whole events are taken"
            );
            out.clear();
            p.feed(b"data: lines\n\n", &mut out);
            let second: Vec<Vec<u8>> = out.iter().map(|e| e.data.to_vec()).collect();
            assert_eq!(second, [b"two\nlines".to_vec()], "take {take}");
        }
    }

    /// A cleared buffer does not keep a huge event's room, even with the next event begun
    /// in it.
    #[test]
    fn a_huge_events_room_is_not_kept_past_a_clear() {
        let mut p = SseParser::new();
        let mut out = SseEvents::default();
        let huge = format!("data: {}\n\ndata: next\n", "x".repeat(2 * KEEP_DATA_CAPACITY));
        p.feed(huge.as_bytes(), &mut out);
        assert_eq!(out.len(), 1);
        out.clear();
        assert!(out.data.capacity() <= KEEP_DATA_CAPACITY, "{}", out.data.capacity());
        p.feed(b"\n", &mut out);
        assert_eq!(out.to_vec().first().map(|e| e.data.clone()), Some(b"next".to_vec()));
    }

    fn parse_in_reads(reads: &[&[u8]]) -> Vec<String> {
        let mut p = SseParser::new();
        let mut out = SseEvents::default();
        for r in reads {
            p.feed(r, &mut out);
        }
        p.finish(&mut out);
        out.to_vec()
            .into_iter()
            .map(|e| String::from_utf8_lossy(&e.data).into_owned())
            .collect()
    }

    #[test]
    fn an_oversized_event_is_flagged_and_the_stream_goes_on() {
        let huge = format!("data: {}\n\ndata: {{}}\n\n", "x".repeat(100));
        for split in [1usize, 7, 50, 200] {
            let mut p = SseParser::with_max_event_bytes(16);
            let mut out = SseEvents::default();
            for chunk in huge.as_bytes().chunks(split) {
                p.feed(chunk, &mut out);
            }
            p.finish(&mut out);
            let out = out.to_vec();
            assert_eq!(out.len(), 2, "split {split}: {out:?}");
            assert!(out[0].oversized && out[0].data.is_empty(), "split {split}");
            assert_eq!(out[0].raw_bytes, 108, "split {split}: size still counted");
            assert!(!out[1].oversized);
            assert_eq!(out[1].data, b"{}");
        }
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
    fn the_event_name_is_kept_per_event() {
        let stream = b"event: error\ndata: {\"e\":1}\n\nevent: lonely\n\ndata: x\n\n";
        for cut in 0..stream.len() {
            let (a, b) = stream.split_at(cut);
            let mut p = SseParser::new();
            let mut out = SseEvents::default();
            p.feed(a, &mut out);
            p.feed(b, &mut out);
            p.finish(&mut out);
            let out = out.to_vec();
            let names: Vec<Option<&[u8]>> = out.iter().map(|e| e.name.as_deref()).collect();
            assert_eq!(names, [Some(&b"error"[..]), None], "cut at {cut}");
        }
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
        let mut out = SseEvents::default();
        p.feed(stream, &mut out);
        p.finish(&mut out);
        let out = out.to_vec();
        let total: usize = out.iter().map(|e| e.raw_bytes).sum();
        // An event ends at its blank line's CR; the LF after it counts toward the next event
        // (here none), whether or not it arrived in the same read.
        assert_eq!(total, stream.len() - 1);
        assert_eq!(out[1].raw_bytes, "data: bb\r\n\r".len());
    }

    #[test]
    fn non_utf8_bytes_are_kept() {
        let mut p = SseParser::new();
        let mut out = SseEvents::default();
        p.feed(b"data: \xff\xfe\n\n", &mut out);
        assert_eq!(out.to_vec()[0].data, b"\xff\xfe");
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
