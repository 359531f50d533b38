//! Count-only byte-level BPE: the token counts `tokenizers` gives for byte-level BPE
//! vocabularies (GPT-2, Qwen, Llama 3, DeepSeek, o200k-style), several times faster.
//!
//! Counting needs no ids, offsets or `Encoding`s, so this path keeps none: it splits the text
//! on added tokens exactly as `tokenizers` does (leftmost-longest, specials skipped in
//! `--special-text plain`), applies the NFC normalizer where the text is not ASCII, splits
//! pre-tokens with the `regex` crate's DFA (the pattern's one look-ahead, `\s+(?!\S)`, is
//! resolved by asking the original `fancy-regex` pattern only on whitespace runs that need
//! it), and counts each pre-token's BPE merges, memoized per thread.
//!
//! [`FastBpe::from_json`] accepts only the configurations it reproduces exactly and says why
//! it refuses the others; [`crate::tokenize::Counter`] then counts with `tokenizers` itself,
//! and also checks this path against it on [`validation_corpus`] texts before using it. The
//! tokenize bench checks 20,000 texts in both special-text modes.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use unicode_normalization_alignments::UnicodeNormalization;

/// The GPT-2 pre-tokenizer pattern `ByteLevel { use_regex: true }` applies.
const GPT2_PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// The only look-ahead these patterns use; the DFA pattern replaces it with plain `\s+`.
const LOOKAHEAD: &str = r"\s+(?!\S)|\s+";
/// Pre-tokens memoized per thread before the memo is cleared (bounds memory).
const MEMO_LIMIT: usize = 1 << 18;

type Hasher = ahash::RandomState;
/// Counts of pre-tokens (raw bytes) already merged.
type Memo = HashMap<Box<[u8]>, u32, Hasher>;

/// A byte-level BPE tokenizer reduced to what counting needs.
pub struct FastBpe {
    instance: u64,
    added: Option<aho_corasick::AhoCorasick>,
    /// Per added-token pattern index: counted as text instead of split off (a special token
    /// under `--special-text plain`).
    added_as_text: Vec<bool>,
    nfc: bool,
    pattern: regex::Regex,
    original: fancy_regex::Regex,
    byte_ids: [u32; 256],
    /// `(left, right)` ids -> `(rank, merged id)`.
    merges: HashMap<u64, (u32, u32), Hasher>,
    /// Whole pre-tokens found in the vocabulary count as one token (`ignore_merges`).
    whole_words: Option<HashMap<Vec<u8>, u32, Hasher>>,
    /// Tokens the post-processor adds when asked to add special tokens (a BOS, say).
    added_special: u32,
}

impl std::fmt::Debug for FastBpe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastBpe")
            .field("pattern", &self.pattern.as_str())
            .field("merges", &self.merges.len())
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// Counts of pre-tokens already seen by this thread, for one [`FastBpe`] instance.
    static MEMO: RefCell<(u64, Memo)> = RefCell::new((u64::MAX, Memo::default()));
}

/// GPT-2's reversible map from bytes to printable characters, which byte-level vocabularies
/// are written in.
fn byte_chars() -> [char; 256] {
    let mut printable: Vec<u32> = (u32::from(b'!')..=u32::from(b'~'))
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut extra = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + extra);
            extra += 1;
        }
    }
    let mut out = ['\0'; 256];
    for (b, c) in printable.iter().zip(&chars) {
        out[*b as usize] = char::from_u32(*c).unwrap_or('\0');
    }
    out
}

fn key(left: u32, right: u32) -> u64 {
    (u64::from(left) << 32) | u64::from(right)
}

/// The split pattern of a supported pre-tokenizer, or why it is not supported.
fn split_pattern(pre: &Value) -> Result<String, String> {
    let byte_level = |v: &Value, regex: bool| {
        v.get("type").and_then(Value::as_str) == Some("ByteLevel")
            && v.get("add_prefix_space").and_then(Value::as_bool) == Some(false)
            && v.get("use_regex").and_then(Value::as_bool).unwrap_or(true) == regex
    };
    if byte_level(pre, true) {
        return Ok(GPT2_PATTERN.to_string());
    }
    let seq = match (pre.get("type").and_then(Value::as_str), pre.get("pretokenizers")) {
        (Some("Sequence"), Some(Value::Array(seq))) => seq,
        _ => return Err(format!("pre-tokenizer {} is not byte-level", short(pre))),
    };
    match seq.as_slice() {
        [split, bl] if byte_level(bl, false) => {
            let ok = split.get("type").and_then(Value::as_str) == Some("Split")
                && split.get("behavior").and_then(Value::as_str) == Some("Isolated")
                && split.get("invert").and_then(Value::as_bool) == Some(false);
            match (
                ok,
                split
                    .get("pattern")
                    .and_then(|p| p.get("Regex"))
                    .and_then(Value::as_str),
            ) {
                (true, Some(re)) => Ok(re.to_string()),
                _ => Err(format!("pre-tokenizer split {} is not supported", short(split))),
            }
        }
        _ => Err(format!("pre-tokenizer sequence {} is not supported", short(pre))),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    s.chars().take(120).collect()
}

impl FastBpe {
    /// Builds the fast path from a parsed `tokenizer.json`, or says why this tokenizer has
    /// none. `plain_specials` mirrors `Tokenizer::set_encode_special_tokens(true)`;
    /// `added_special` is what the post-processor adds with `add_special_tokens`.
    pub fn from_json(json: &Value, plain_specials: bool, added_special: u32) -> Result<FastBpe, String> {
        for field in ["truncation", "padding"] {
            if !json.get(field).is_none_or(Value::is_null) {
                return Err(format!("{field} is configured"));
            }
        }
        let nfc = match json.get("normalizer") {
            None | Some(Value::Null) => false,
            Some(n) if n.get("type").and_then(Value::as_str) == Some("NFC") => true,
            Some(n) => return Err(format!("normalizer {} is not supported", short(n))),
        };
        let pattern_src = split_pattern(json.get("pre_tokenizer").unwrap_or(&Value::Null))?;
        // Any other look-around or a back-reference makes this fail to compile: refused.
        let pattern = regex::Regex::new(&pattern_src.replace(LOOKAHEAD, r"\s+"))
            .map_err(|e| format!("split pattern does not compile without its look-ahead: {e}"))?;
        let original = fancy_regex::Regex::new(&pattern_src).map_err(|e| format!("split pattern: {e}"))?;

        let model = json.get("model").ok_or("no model")?;
        if model.get("type").and_then(Value::as_str) != Some("BPE") {
            return Err("model is not BPE".into());
        }
        if !model.get("dropout").is_none_or(Value::is_null) {
            return Err("BPE dropout is set".into());
        }
        if model.get("byte_fallback").and_then(Value::as_bool) == Some(true) {
            return Err("byte_fallback is set".into());
        }
        for affix in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if model.get(affix).and_then(Value::as_str).is_some_and(|s| !s.is_empty()) {
                return Err(format!("{affix} is set"));
            }
        }
        let to_byte: HashMap<char, u8> = byte_chars().iter().enumerate().map(|(b, c)| (*c, b as u8)).collect();
        let decode = |token: &str| -> Option<Vec<u8>> { token.chars().map(|c| to_byte.get(&c).copied()).collect() };
        let vocab = model.get("vocab").and_then(Value::as_object).ok_or("no vocab")?;
        let mut ids: HashMap<&str, u32> = HashMap::with_capacity(vocab.len());
        for (token, id) in vocab {
            let id = id
                .as_u64()
                .and_then(|i| u32::try_from(i).ok())
                .ok_or("vocab id is not a u32")?;
            ids.insert(token.as_str(), id);
        }
        let mut byte_ids = [0u32; 256];
        for (b, c) in byte_chars().iter().enumerate() {
            byte_ids[b] = *ids
                .get(c.to_string().as_str())
                .ok_or_else(|| format!("byte {b:#04x} has no token"))?;
        }
        let list = model.get("merges").and_then(Value::as_array).ok_or("no merges")?;
        let mut merges = HashMap::with_capacity_and_hasher(list.len(), Hasher::default());
        for (rank, m) in list.iter().enumerate() {
            let (left, right) = match m {
                Value::String(s) => s.split_once(' ').ok_or_else(|| format!("merge {s:?}"))?,
                Value::Array(pair) => match pair.as_slice() {
                    [Value::String(a), Value::String(b)] => (a.as_str(), b.as_str()),
                    _ => return Err(format!("merge {m}")),
                },
                _ => return Err(format!("merge {m}")),
            };
            let id = |t: &str| {
                ids.get(t)
                    .copied()
                    .ok_or_else(|| format!("merge token {t:?} is not in the vocab"))
            };
            let merged = id(&format!("{left}{right}"))?;
            // The first (lowest-rank) occurrence of a pair wins, as in `tokenizers`.
            merges
                .entry(key(id(left)?, id(right)?))
                .or_insert((rank as u32, merged));
        }
        let whole_words = if model.get("ignore_merges").and_then(Value::as_bool) == Some(true) {
            Some(ids.iter().filter_map(|(t, id)| Some((decode(t)?, *id))).collect())
        } else {
            None
        };

        let mut patterns = Vec::new();
        let mut added_as_text = Vec::new();
        for t in json.get("added_tokens").and_then(Value::as_array).into_iter().flatten() {
            let flag = |k: &str| t.get(k).and_then(Value::as_bool).unwrap_or(false);
            if flag("single_word") || flag("lstrip") || flag("rstrip") || flag("normalized") {
                return Err(format!(
                    "added token {} has flags this path does not reproduce",
                    short(t)
                ));
            }
            let content = t
                .get("content")
                .and_then(Value::as_str)
                .ok_or("added token without content")?;
            if content.is_empty() {
                continue;
            }
            patterns.push(content.to_string());
            added_as_text.push(plain_specials && flag("special"));
        }
        let added = if patterns.is_empty() {
            None
        } else {
            Some(
                aho_corasick::AhoCorasick::builder()
                    .match_kind(aho_corasick::MatchKind::LeftmostLongest)
                    .build(&patterns)
                    .map_err(|e| format!("added tokens: {e}"))?,
            )
        };
        static INSTANCES: AtomicU64 = AtomicU64::new(0);
        Ok(FastBpe {
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
            added,
            added_as_text,
            nfc,
            pattern,
            original,
            byte_ids,
            merges,
            whole_words,
            added_special,
        })
    }

    /// Tokens in `text`, as `Tokenizer::encode(text, add_special_tokens).len()`.
    pub fn count(&self, text: &str, add_special_tokens: bool) -> u32 {
        let mut n = if add_special_tokens { self.added_special } else { 0 };
        let mut start = 0;
        if let Some(ac) = &self.added {
            for m in ac.find_iter(text) {
                if self.added_as_text[m.pattern().as_usize()] {
                    continue;
                }
                n += self.count_piece(&text[start..m.start()]);
                n += 1;
                start = m.end();
            }
        }
        n + self.count_piece(&text[start..])
    }

    /// A piece between added tokens: normalized, split into pre-tokens, each counted.
    fn count_piece(&self, piece: &str) -> u32 {
        if piece.is_empty() {
            return 0;
        }
        let text: Cow<'_, str> = if self.nfc && !piece.is_ascii() {
            Cow::Owned(piece.nfc().map(|(c, _)| c).collect())
        } else {
            Cow::Borrowed(piece)
        };
        let s = text.as_ref();
        MEMO.with(|memo| {
            let mut memo = memo.borrow_mut();
            if memo.0 != self.instance || memo.1.len() > MEMO_LIMIT {
                *memo = (self.instance, Memo::default());
            }
            let memo = &mut memo.1;
            let mut n = 0;
            let mut pos = 0;
            while pos < s.len() {
                let Some(m) = self.pattern.find_at(s, pos) else {
                    n += self.count_word(memo, &s.as_bytes()[pos..]);
                    break;
                };
                if m.start() > pos {
                    // Text no alternative matches is a pre-token of its own (`Isolated`).
                    n += self.count_word(memo, &s.as_bytes()[pos..m.start()]);
                }
                let end = self.resolve_lookahead(s, m.start(), m.end());
                if end <= m.start() {
                    // Defensive: never loop without progress.
                    let next = s[m.start()..].chars().next().map_or(1, char::len_utf8);
                    n += self.count_word(memo, &s.as_bytes()[m.start()..m.start() + next]);
                    pos = m.start() + next;
                    continue;
                }
                n += self.count_word(memo, &s.as_bytes()[m.start()..end]);
                pos = end;
            }
            n
        })
    }

    /// Where the original pattern's match starting at `start` ends, given the DFA pattern's
    /// match `[start, end)`. They differ only on a whitespace run of two or more characters
    /// followed by a non-space, where `\s+(?!\S)` leaves the last space to the next word;
    /// only then is the original pattern run (from `start`, so it sees the same context).
    fn resolve_lookahead(&self, s: &str, start: usize, end: usize) -> usize {
        let run = &s[start..end];
        let mut chars = run.chars();
        let two_or_more = chars.next().is_some() && chars.next().is_some();
        let followed = s[end..].chars().next().is_some_and(|c| !c.is_whitespace());
        if !(two_or_more && followed && run.chars().all(char::is_whitespace)) {
            return end;
        }
        match self.original.find_from_pos(s, start) {
            Ok(Some(m)) if m.start() == start => m.end(),
            _ => end,
        }
    }

    fn count_word(&self, memo: &mut Memo, word: &[u8]) -> u32 {
        if word.len() <= 1 {
            return word.len() as u32;
        }
        if let Some(n) = memo.get(word) {
            return *n;
        }
        let n = self.merge_count(word);
        memo.insert(word.into(), n);
        n
    }

    /// BPE on one pre-token: repeatedly merge the lowest-rank adjacent pair (leftmost first),
    /// as `tokenizers`' priority queue does; the symbols left are the tokens.
    fn merge_count(&self, word: &[u8]) -> u32 {
        if let Some(whole) = &self.whole_words {
            if whole.contains_key(word) {
                return 1;
            }
        }
        let mut syms: Vec<u32> = word.iter().map(|b| self.byte_ids[usize::from(*b)]).collect();
        loop {
            let mut best: Option<(u32, usize, u32)> = None;
            for i in 0..syms.len().saturating_sub(1) {
                if let Some(&(rank, merged)) = self.merges.get(&key(syms[i], syms[i + 1])) {
                    if best.is_none_or(|(r, _, _)| rank < r) {
                        best = Some((rank, i, merged));
                    }
                }
            }
            let Some((_, i, merged)) = best else {
                return syms.len() as u32;
            };
            syms[i] = merged;
            syms.remove(i + 1);
        }
    }
}

/// Deterministic texts that exercise every branch of byte-level pre-tokenization: prose in
/// several scripts, decomposed accents (NFC), digits, contractions in any case, punctuation
/// runs, code with tabs, indentation and CRLF, runs of spaces before words and digits, emoji,
/// literal special and added tokens. Used to check the fast path against `tokenizers`.
pub fn validation_corpus(n: usize, seed: u64) -> Vec<String> {
    const PIECES: &[&str] = &[
        "the",
        "The",
        "model",
        " server",
        "latency",
        "naïve",
        "cafe\u{301}",
        "über",
        "Ångström",
        "日本語の文章",
        "中文测试",
        "한국어",
        "русский текст",
        "ελληνικά",
        "עברית",
        "العربية",
        "हिन्दी",
        "ไทย",
        "😀",
        "👩‍💻",
        "🇫🇷",
        "2024",
        "3.14159",
        "1,000,000",
        "0x1F",
        "it's",
        "IT'S",
        "we'll",
        "they'RE",
        "I'd",
        "don't",
        "'s",
        "''",
        "...",
        "?!",
        "—",
        "–",
        "«quote»",
        "\"q\"",
        "(x)",
        "[1]",
        "{ }",
        "fn main() {",
        "    return x;",
        "\tindent",
        "\r\n",
        "\n\n",
        "\n",
        "\r",
        "   ",
        "  ",
        " ",
        "\u{a0}",
        "\u{3000}",
        "\u{2009}",
        "x=1;",
        "a+b",
        "<|im_start|>",
        "<|im_end|>",
        "<think>",
        "</think>",
        "<|endoftext|>",
        "<tool_call>",
        "<|fim_prefix|>",
        "https://example.com/a?b=c",
        "user@example.com",
        "#include <stdio.h>",
        "$HOME",
        "%d",
        "C++",
        "ÀÉÎÕÜ",
        "e\u{300}\u{301}",
        "\u{1e9b}\u{323}",
        "ﬁ",
        "Ⅻ",
        "①",
        "½",
        "\u{200b}",
        "\u{feff}",
        "\u{0}",
        "\u{7f}",
        "\u{301}",
        "ß",
        "İstanbul",
        "ǅ",
        "  12",
        " 7",
        "\t\t",
        " \n ",
        "\n  x",
        "end.  ",
        "A1B2C3",
        "x²",
        "µs",
    ];
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..n)
        .map(|_| {
            let len = 1 + (next() % 40) as usize;
            let mut s = String::new();
            for _ in 0..len {
                let r = next();
                match r % 10 {
                    0 => s.push(' '),
                    1 => {
                        // Any scalar value from a few interesting planes.
                        let c = match (r >> 8) % 4 {
                            0 => (r >> 16) % 0x80,
                            1 => 0x80 + (r >> 16) % 0x780,
                            2 => 0x3000 + (r >> 16) % 0x7000,
                            _ => 0x1F000 + (r >> 16) % 0x1000,
                        } as u32;
                        s.push(char::from_u32(c).unwrap_or('?'));
                    }
                    _ => s.push_str(PIECES[((r >> 8) % PIECES.len() as u64) as usize]),
                }
            }
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::tokenize::{Counter, SpecialText};

    fn counter(name: &str, special: SpecialText) -> Counter {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/tokenizers")
            .join(name)
            .join("tokenizer.json.gz");
        Counter::load(&p, special).expect("tokenizer loads")
    }

    /// The fast path against `tokenizers` on texts it was not tuned on (another seed than the
    /// self-check), the committed datasets' lines, and hand-picked edge cases; both special
    /// modes, with and without added special tokens.
    #[test]
    fn counts_equal_tokenizers_on_gpt2_and_qwen3() {
        let mut texts = super::validation_corpus(500, 0xC0FFEE);
        for f in ["default.jsonl", "small.jsonl"] {
            let p = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../fixtures/datasets")
                .join(f);
            let data = std::fs::read_to_string(&p).expect("dataset");
            texts.extend(data.lines().map(str::to_string));
        }
        texts.extend(
            [
                "",
                " ",
                "  ",
                "a  b",
                "a   1",
                "x \n y",
                "\n\n\nz",
                "end   ",
                "\t\tfn",
                "  <|im_start|>  ",
                "<|im_start|>user\nhi<|im_end|>",
                "<think>\n\n</think>\n\n",
                "a<|endoftext|>b",
                "e\u{301}",
            ]
            .map(str::to_string),
        );
        for name in ["gpt2", "qwen3"] {
            for special in [SpecialText::Special, SpecialText::Plain] {
                let c = counter(name, special);
                assert!(c.fast_path().expect("engine"), "{name} should take the fast path");
                for t in &texts {
                    for add in [false, true] {
                        assert_eq!(
                            c.count(t, add).expect("count"),
                            c.count_reference(t, add).expect("count"),
                            "{name} {special:?} add_special={add} on {t:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn unsupported_configurations_are_refused_with_a_reason() {
        let json = serde_json::json!({
            "normalizer": {"type": "Lowercase"},
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
            "model": {"type": "BPE", "vocab": {}, "merges": []}
        });
        let why = super::FastBpe::from_json(&json, false, 0).expect_err("lowercase normalizer");
        assert!(why.contains("normalizer"), "{why}");
        let json = serde_json::json!({
            "pre_tokenizer": {"type": "Metaspace"},
            "model": {"type": "BPE", "vocab": {}, "merges": []}
        });
        let why = super::FastBpe::from_json(&json, false, 0).expect_err("metaspace");
        assert!(why.contains("byte-level"), "{why}");
        // A look-around other than `\s+(?!\S)|\s+` cannot be resolved on the DFA.
        let json = serde_json::json!({
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": "a(?=b)|\\s+"}, "behavior": "Isolated", "invert": false},
                {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}
            ]},
            "model": {"type": "BPE", "vocab": {}, "merges": []}
        });
        let why = super::FastBpe::from_json(&json, false, 0).expect_err("look-ahead");
        assert!(why.contains("does not compile"), "{why}");
    }
}
