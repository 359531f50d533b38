//! A single-pass scanner for the shape nearly every streamed chunk has, so the hot path does
//! not run serde over fields it throws away (B3: serde was 5.2k of 13.3k instructions per
//! event row).
//!
//! It answers `None` ("not sure") for anything outside that shape, and the caller then runs
//! the serde reader, which stays the definition: duplicate or escaped keys, a `usage` with
//! unexpected fields' types, `error`, a top-level `message`, `timings`, several choices, a
//! lone surrogate, a number where a string belongs, trailing bytes, deep nesting. Whatever it
//! does answer equals what the serde reader gives for the same text (the differential
//! property in `capture/tests/properties` checks this on the fuzz corpus and on every
//! one-byte edit of real servers' chunks).

use std::ops::Range;

use super::{clamp_u32, Delta};

/// The bytes that end a run of plain string bytes: a quote, a backslash, a control byte.
static STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = true;
        c += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Nesting below which skipped values are followed (serde's own limit is 128).
const MAX_DEPTH: u32 = 64;

/// [`super::parse_with`]'s result when the scanner is sure of it, with the span of the string
/// token (quotes included) its `content` was read from, if any.
pub(super) fn parse(json: &str, want_id: bool) -> Option<(Delta, Option<Range<usize>>)> {
    let mut s = Scanner {
        s: json,
        b: json.as_bytes(),
        i: 0,
    };
    // Filled in place: returning these structs by value cost a copy per level.
    let mut top = Top::default();
    s.top(want_id, &mut top)?;
    s.ws();
    if s.i != s.b.len() {
        return None;
    }
    let mut d = Delta::default();
    let mut hole = None;
    if top.has_choice {
        let c = top.choice;
        d.choice_index = Some(clamp_u32(c.index).unwrap_or(0));
        let m = if c.has_delta {
            Some(c.delta)
        } else {
            c.has_message.then_some(c.message)
        };
        let mut content = None;
        if let Some(m) = m {
            content = m.content;
            d.reasoning = m.reasoning_content.or(m.reasoning).map(Str::owned);
            d.role = m.role.map(Str::owned);
            d.tool_calls_json = m.tool_calls.map(str::to_owned);
        }
        if let Some(s) = content.or(c.text) {
            hole = Some(s.at..s.at + s.raw.len() + 2);
            d.content = Some(s.owned());
        }
        d.finish_reason = c.finish_reason.map(Str::owned);
    }
    if let Some(u) = top.usage {
        d.usage_prompt_tokens = clamp_u32(u.prompt_tokens);
        d.usage_completion_tokens = clamp_u32(u.completion_tokens);
        d.usage_reasoning_tokens = clamp_u32(u.reasoning_tokens);
        d.usage_cached_tokens = clamp_u32(u.cached_tokens);
    }
    if want_id {
        d.id = top.id.filter(|i| !i.raw.is_empty()).map(Str::owned);
    }
    Some((d, hole))
}

/// The string token starting at `at` (its opening quote), when it is one the scanner accepts
/// and it ends exactly at `end`: where its text lies in `json` if it holds no escape (nothing
/// copied), else the text decoded.
pub(super) fn string_at(json: &str, at: usize, end: usize) -> Option<Result<Range<usize>, String>> {
    let mut s = Scanner {
        s: json,
        b: json.as_bytes(),
        i: at,
    };
    let token = s.string()?;
    if s.i != end {
        return None;
    }
    Some(match token.escaped {
        false => Ok(at + 1..end - 1),
        true => Err(token.owned()),
    })
}

/// A string's text between its quotes, escapes checked but not decoded: most are skipped or
/// hold none, and the structs stay small.
#[derive(Clone, Copy)]
struct Str<'a> {
    raw: &'a str,
    escaped: bool,
    /// Where its opening quote is in the text.
    at: usize,
}

impl Str<'_> {
    fn owned(self) -> String {
        if !self.escaped {
            return self.raw.to_owned();
        }
        let mut out = String::with_capacity(self.raw.len());
        let mut rest = self.raw;
        while let Some(at) = rest.find('\\') {
            out.push_str(&rest[..at]);
            let (ch, len) = unescape(&rest.as_bytes()[at + 1..]);
            out.push(ch);
            rest = &rest[at + 1 + len..];
        }
        out.push_str(rest);
        out
    }
}

/// The character of one escape (the bytes after its backslash, already checked by
/// [`Scanner::escape`]) and the number of bytes it took.
fn unescape(b: &[u8]) -> (char, usize) {
    match b[0] {
        b'b' => ('\u{8}', 1),
        b'f' => ('\u{c}', 1),
        b'n' => ('\n', 1),
        b'r' => ('\r', 1),
        b't' => ('\t', 1),
        b'u' => {
            let hi = hex4(&b[1..5]).unwrap_or(0);
            if (0xD800..0xDC00).contains(&hi) {
                let lo = hex4(&b[7..11]).unwrap_or(0);
                let code = 0x10000 + ((u32::from(hi) - 0xD800) << 10) + (u32::from(lo).wrapping_sub(0xDC00) & 0x3FF);
                (char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER), 11)
            } else {
                (char::from_u32(u32::from(hi)).unwrap_or(char::REPLACEMENT_CHARACTER), 5)
            }
        }
        c => (char::from(c), 1),
    }
}

fn hex4(h: &[u8]) -> Option<u16> {
    h.iter().try_fold(0u16, |v, &c| {
        Some(v << 4 | u16::try_from((c as char).to_digit(16)?).ok()?)
    })
}

#[derive(Default)]
struct Top<'a> {
    /// `choices` held one choice (`choice`).
    has_choice: bool,
    choice: Choice<'a>,
    usage: Option<Usage>,
    id: Option<Str<'a>>,
}

#[derive(Default)]
struct Choice<'a> {
    index: Option<u64>,
    /// A non-null `delta` (`delta`) and `message` (`message`) were read.
    has_delta: bool,
    has_message: bool,
    delta: Message<'a>,
    message: Message<'a>,
    text: Option<Str<'a>>,
    finish_reason: Option<Str<'a>>,
}

#[derive(Default, Clone, Copy)]
struct Message<'a> {
    content: Option<Str<'a>>,
    reasoning_content: Option<Str<'a>>,
    reasoning: Option<Str<'a>>,
    role: Option<Str<'a>>,
    /// The raw JSON text of a non-null `tool_calls`.
    tool_calls: Option<&'a str>,
}

#[derive(Default)]
struct Usage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    reasoning_tokens: Option<u64>,
    cached_tokens: Option<u64>,
}

/// The seen-bit of a top-level key that is only checked for `null`.
fn key_bit(key: &[u8]) -> u32 {
    match key {
        b"error" => 16,
        b"message" => 32,
        _ => 64,
    }
}

/// Marks a key as seen; `None` when it was already (serde rejects a duplicate field).
fn first(seen: &mut u32, bit: u32) -> Option<()> {
    (*seen & bit == 0).then(|| *seen |= bit)
}

struct Scanner<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// JSON's four whitespace bytes.
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// After a member: `true` at `,` (another follows), `false` at the closing byte.
    fn next_member(&mut self, close: u8) -> Option<bool> {
        self.ws();
        let c = self.peek()?;
        self.i += 1;
        match c {
            b',' => Some(true),
            c if c == close => Some(false),
            _ => None,
        }
    }

    /// Whether the next value is `null` (consumed if so).
    fn null(&mut self) -> bool {
        self.ws();
        if self.b[self.i..].starts_with(b"null") {
            self.i += 4;
            true
        } else {
            false
        }
    }

    /// Iterates an object's members: `f` gets each key (unescaped, else the scan gives up)
    /// with the scanner at its value.
    fn object(&mut self, mut f: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            self.ws();
            let key = self.string()?;
            if key.escaped {
                return None;
            }
            let key = key.raw.as_bytes();
            self.eat(b':')?;
            f(self, key)?;
            if !self.next_member(b'}')? {
                return Some(());
            }
        }
    }

    fn top(&mut self, want_id: bool, top: &mut Top<'a>) -> Option<()> {
        let mut seen = 0;
        self.object(|s, key| {
            match key {
                b"choices" => {
                    first(&mut seen, 1)?;
                    if !s.null() {
                        top.has_choice = s.choices(&mut top.choice)?;
                    }
                }
                b"usage" => {
                    first(&mut seen, 2)?;
                    if !s.null() {
                        top.usage = Some(s.usage()?);
                    }
                }
                // Errors, old-style error objects and llama.cpp's timings (once per request)
                // go to the serde reader.
                b"error" | b"message" | b"timings" => {
                    first(&mut seen, key_bit(key))?;
                    if !s.null() {
                        return None;
                    }
                }
                b"id" if want_id => {
                    first(&mut seen, 4)?;
                    if !s.null() {
                        top.id = Some(s.string_value()?);
                    }
                }
                b"object" if want_id => {
                    first(&mut seen, 8)?;
                    if !s.null() {
                        s.string_value()?;
                    }
                }
                _ => s.skip(0)?,
            }
            Some(())
        })
    }

    /// `choices`: one choice object (`true`), or none; several go to the serde reader.
    fn choices(&mut self, c: &mut Choice<'a>) -> Option<bool> {
        self.eat(b'[')?;
        self.ws();
        if self.peek()? == b']' {
            self.i += 1;
            return Some(false);
        }
        self.choice(c)?;
        self.ws();
        (self.peek()? == b']').then(|| self.i += 1)?;
        Some(true)
    }

    fn choice(&mut self, c: &mut Choice<'a>) -> Option<()> {
        let mut seen = 0;
        self.object(|s, key| {
            match key {
                b"index" => {
                    first(&mut seen, 1)?;
                    c.index = s.opt_u64()?;
                }
                b"delta" => {
                    first(&mut seen, 2)?;
                    c.has_delta = s.opt_message(&mut c.delta)?;
                }
                b"message" => {
                    first(&mut seen, 4)?;
                    c.has_message = s.opt_message(&mut c.message)?;
                }
                b"text" => {
                    first(&mut seen, 8)?;
                    c.text = s.opt_string()?;
                }
                b"finish_reason" => {
                    first(&mut seen, 16)?;
                    c.finish_reason = s.opt_string()?;
                }
                _ => s.skip(0)?,
            }
            Some(())
        })
    }

    /// A `null` (`false`) or a message object, read into `m` (`true`).
    fn opt_message(&mut self, m: &mut Message<'a>) -> Option<bool> {
        if self.null() {
            return Some(false);
        }
        let mut seen = 0;
        self.object(|s, key| {
            match key {
                b"content" => {
                    first(&mut seen, 1)?;
                    m.content = s.opt_string()?;
                }
                b"reasoning_content" => {
                    first(&mut seen, 2)?;
                    m.reasoning_content = s.opt_string()?;
                }
                b"reasoning" => {
                    first(&mut seen, 4)?;
                    m.reasoning = s.opt_string()?;
                }
                b"role" => {
                    first(&mut seen, 8)?;
                    m.role = s.opt_string()?;
                }
                b"tool_calls" => {
                    first(&mut seen, 16)?;
                    if !s.null() {
                        let start = s.i;
                        s.skip(0)?;
                        m.tool_calls = Some(s.s.get(start..s.i)?);
                    }
                }
                _ => s.skip(0)?,
            }
            Some(())
        })?;
        Some(true)
    }

    fn usage(&mut self) -> Option<Usage> {
        let mut u = Usage::default();
        let mut seen = 0;
        self.object(|s, key| {
            match key {
                b"prompt_tokens" => {
                    first(&mut seen, 1)?;
                    u.prompt_tokens = s.opt_u64()?;
                }
                b"completion_tokens" => {
                    first(&mut seen, 2)?;
                    u.completion_tokens = s.opt_u64()?;
                }
                b"completion_tokens_details" => {
                    first(&mut seen, 4)?;
                    u.reasoning_tokens = s.opt_detail(b"reasoning_tokens")?;
                }
                b"prompt_tokens_details" => {
                    first(&mut seen, 8)?;
                    u.cached_tokens = s.opt_detail(b"cached_tokens")?;
                }
                _ => s.skip(0)?,
            }
            Some(())
        })?;
        Some(u)
    }

    /// A `null` or an object whose one wanted field is a count.
    fn opt_detail(&mut self, name: &[u8]) -> Option<Option<u64>> {
        if self.null() {
            return Some(None);
        }
        let mut v = None;
        let mut seen = 0;
        self.object(|s, key| {
            if key == name {
                first(&mut seen, 1)?;
                v = s.opt_u64()?;
            } else {
                s.skip(0)?;
            }
            Some(())
        })?;
        Some(v)
    }

    /// `null` or a non-negative integer that fits a u64 (what serde's `Option<u64>` takes).
    fn opt_u64(&mut self) -> Option<Option<u64>> {
        if self.null() {
            return Some(None);
        }
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        let digits = &self.b[start..self.i];
        // No leading zeros (not JSON), no fraction or exponent (serde: not a u64), at most 19
        // digits (always fits).
        if digits.is_empty() || digits.len() > 19 || (digits.len() > 1 && digits[0] == b'0') {
            return None;
        }
        if let Some(b'.' | b'e' | b'E') = self.peek() {
            return None;
        }
        Some(Some(digits.iter().fold(0u64, |v, d| v * 10 + u64::from(d - b'0'))))
    }

    fn opt_string(&mut self) -> Option<Option<Str<'a>>> {
        if self.null() {
            return Some(None);
        }
        self.string_value().map(Some)
    }

    /// A string value (whitespace first).
    fn string_value(&mut self) -> Option<Str<'a>> {
        self.ws();
        self.string()
    }

    /// A string at `"`: its raw text, escapes checked.
    fn string(&mut self) -> Option<Str<'a>> {
        if self.peek()? != b'"' {
            return None;
        }
        let at = self.i;
        self.i += 1;
        let start = self.i;
        let mut escaped = false;
        loop {
            let end = self.plain_run()?;
            if self.b[end] == b'"' {
                self.i = end + 1;
                // Cut at ASCII bytes of a `&str`: on character boundaries.
                let raw = self.s.get(start..end)?;
                return Some(Str { raw, escaped, at });
            }
            escaped = true;
            self.i = end + 1;
            self.escape()?;
        }
    }

    /// From `self.i`, the index of the next `"` or `\`; `None` at a control byte (serde's
    /// error) or the end of the text. A byte loop over a table: the strings of a chunk are a
    /// few bytes long, where `memchr`'s set-up costs more than it saves.
    fn plain_run(&self) -> Option<usize> {
        let mut at = self.i;
        while !STOP[usize::from(*self.b.get(at)?)] {
            at += 1;
        }
        (self.b[at] >= 0x20).then_some(at)
    }

    /// Checks one escape after its backslash; a lone surrogate gives up.
    fn escape(&mut self) -> Option<()> {
        let c = self.peek()?;
        self.i += 1;
        match c {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(()),
            b'u' => {
                let hi = self.hex4()?;
                match hi {
                    0xD800..=0xDBFF => {
                        if !self.b[self.i..].starts_with(b"\\u") {
                            return None;
                        }
                        self.i += 2;
                        let lo = self.hex4()?;
                        (0xDC00..=0xDFFF).contains(&lo).then_some(())
                    }
                    0xDC00..=0xDFFF => None,
                    _ => Some(()),
                }
            }
            _ => None,
        }
    }

    fn hex4(&mut self) -> Option<u16> {
        let v = hex4(self.b.get(self.i..self.i + 4)?)?;
        self.i += 4;
        Some(v)
    }

    /// Skips one value (whitespace first), checking its grammar as serde would.
    fn skip(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.object(|s, _| s.skip(depth + 1)),
            b'[' => {
                self.i += 1;
                self.ws();
                if self.peek()? == b']' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.skip(depth + 1)?;
                    if !self.next_member(b']')? {
                        return Some(());
                    }
                }
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number(),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.b[self.i..].starts_with(word).then(|| self.i += word.len())
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.some_digits()?;
        }
        Some(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.i;
        self.digits();
        (self.i > start).then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shapes the scanner exists for are answered by it, not by the serde reader.
    #[test]
    fn common_chunks_take_the_scanner() {
        for (json, want_id) in [
            (
                r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":" the"},"logprobs":null,"finish_reason":null}]}"#,
                false,
            ),
            (
                r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
                true,
            ),
            (
                r#"{"id":"6c","choices":[{"index":0,"delta":{"role":null,"content":"a\n\u00e9","reasoning_content":null,"tool_calls":null},"logprobs":null,"finish_reason":null,"matched_stop":null}],"usage":null}"#,
                true,
            ),
            (
                r#"{"id":"c","choices":[],"usage":{"prompt_tokens":12,"total_tokens":40,"completion_tokens":28,"prompt_tokens_details":{"cached_tokens":4}}}"#,
                false,
            ),
            (
                r#"{"id":"c","choices":[{"index":0,"text":" w","logprobs":null,"finish_reason":"length"}]}"#,
                false,
            ),
        ] {
            let (d, _) = parse(json, want_id).unwrap_or_else(|| panic!("scanner gave up on {json}"));
            assert_eq!(d, super::super::parse_serde(json, want_id).expect("valid"), "{json}");
        }
    }

    #[test]
    fn unsure_shapes_go_to_serde() {
        for json in [
            r#"{"error":{"message":"x"}}"#,
            r#"{"choices":[{"index":0},{"index":1}]}"#,
            r#"{"choices":[],"choices":[]}"#,
            r#"{"choices":null,"error":null,"error":null}"#,
            r#"{"ch\u006fices":[]}"#,
            r#"{"choices":[{"delta":{"content":"\ud800"}}]}"#,
            r#"{"choices":[{"index":1.0}]}"#,
            r#"{"choices":[]} x"#,
            r#"{"timings":{"prompt_ms":1.5}}"#,
        ] {
            assert!(parse(json, true).is_none(), "{json}");
        }
    }
}
