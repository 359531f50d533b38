//! Count-only BPE: the token counts `tokenizers` gives, several times faster, for the BPE
//! configurations the widely used models ship: byte-level BPE behind any sequence of regex
//! `Split`s (GPT-2, cl100k/Llama 3, o200k/GPT-4o/gpt-oss, DeepSeek V3/R1, Qwen 2/3) and
//! SentencePiece-style BPE over characters with byte fallback (Llama 2, Mistral v1-v3).
//!
//! Counting needs no ids, offsets or `Encoding`s, so this path keeps none. It mirrors
//! `tokenizers` step by step, compiled from `tokenizer.json` rather than special-cased per
//! family:
//! 1. split the text on added tokens that match the raw text, leftmost-longest (specials kept
//!    as text under `--special-text plain`);
//! 2. normalize each piece (none, NFC, or SentencePiece's `▁` prefix and spaces);
//! 3. split again on added tokens that match normalized text;
//! 4. apply each `Split` pre-tokenizer in turn to every piece (`Isolated`: matches and the text
//!    between them are pieces; `Removed` + `invert`: only matches), with the `regex` crate's
//!    engine (`regex-automata`): a lazy DFA anchored where the last match ended while matches
//!    follow each other, an unanchored search across gaps, no search at all of an ASCII piece
//!    by a split no ASCII text can match; the one look-ahead these patterns use,
//!    `\s+(?!\S)`, is resolved by asking the original `fancy-regex` pattern only on whitespace
//!    runs that need it;
//! 5. count each word's BPE merges with the same priority queue as `tokenizers` (lowest rank,
//!    then leftmost; O(n log n), so a 100,000-character word stays fast), memoized per thread
//!    for short words ([`Memo`]).
//!
//! [`FastBpe::from_json`] accepts only the configurations it reproduces exactly and says why
//! it refuses the others; [`crate::tokenize::Counter`] then counts with `tokenizers` itself,
//! and also checks this path against it on [`validation_corpus`] texts and on a sample of the
//! run's own texts before trusting it. The tokenize bench checks 100 % identity per family.

use std::borrow::Cow;
use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use regex_automata::{hybrid, meta, Anchored, Input};
use serde_json::Value;
use unicode_normalization_alignments::UnicodeNormalization;

/// The GPT-2 pre-tokenizer pattern `ByteLevel { use_regex: true }` applies.
const GPT2_PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// The only look-ahead these patterns use; the DFA pattern replaces it with plain `\s+`.
const LOOKAHEAD: &str = r"\s+(?!\S)|\s+";
/// Words memoized per thread; once full, a memo keeps what it has and stops learning (bounds
/// memory). The words that repeat most are met early, so they stay; clearing it instead made
/// every word miss again after each clear (a code corpus has more distinct words than this).
const MEMO_LIMIT: usize = 1 << 19;
/// Longer words are not memoized: they rarely repeat, and a memo of long keys costs memory.
const MEMO_MAX_WORD: usize = 256;
/// Words of at most this many symbols are merged by a scan instead of a priority queue
/// (cheaper when a word is a few pairs long; the queue keeps long words O(n log n)).
const SHORT_WORD: usize = 16;
/// SentencePiece's meta symbol for a space.
const SPIECE_SPACE: char = '\u{2581}';

type Hasher = ahash::RandomState;

/// Per-thread answers keyed by a word's bytes (its token count, or a look-ahead's end). Keys
/// of up to 15 bytes, nearly every word, are packed into a `u128` with their length: one
/// integer compare per probe, no allocation and no pointer to follow (boxed keys spent 9 % of
/// a GPT-4o count in `memcmp`); longer keys are boxed. In front of the map, a small
/// direct-mapped table of recent packed keys stays in the CPU's cache, where the map (megabytes
/// once warm) misses it on nearly every probe: the words that repeat most are answered there.
struct Memo {
    recent: Box<[(u128, u32)]>,
    short: HashMap<u128, u32, Hasher>,
    long: HashMap<Box<[u8]>, u32, Hasher>,
}

/// Slots of [`Memo::recent`] (a power of two: 512 KiB, within a core's L2 cache here).
const RECENT: usize = 1 << 14;
/// No packed key: its length byte would be 255.
const VACANT: u128 = u128::MAX;

impl Default for Memo {
    fn default() -> Memo {
        Memo {
            recent: vec![(VACANT, 0); RECENT].into_boxed_slice(),
            short: HashMap::default(),
            long: HashMap::default(),
        }
    }
}

impl Memo {
    fn packed(key: &[u8]) -> Option<u128> {
        let mut bytes = [0u8; 16];
        bytes
            .get_mut(..key.len())
            .filter(|_| key.len() < 16)?
            .copy_from_slice(key);
        bytes[15] = key.len() as u8;
        Some(u128::from_le_bytes(bytes))
    }

    /// The answer for `key`, computed by `make` and kept when it is not known yet.
    fn get_or(&mut self, key: &[u8], make: impl FnOnce() -> u32) -> u32 {
        match Memo::packed(key) {
            Some(k) => {
                // Fibonacci hashing of the key's two halves folded together.
                let folded = (k as u64) ^ ((k >> 64) as u64).rotate_left(29);
                let slot = (folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - RECENT.trailing_zeros())) as usize;
                if self.recent[slot].0 == k {
                    return self.recent[slot].1;
                }
                let n = if self.len() < MEMO_LIMIT {
                    *self.short.entry(k).or_insert_with(make)
                } else {
                    self.short.get(&k).copied().unwrap_or_else(make)
                };
                self.recent[slot] = (k, n);
                n
            }
            None => match self.long.get(key) {
                Some(n) => *n,
                None => {
                    let n = make();
                    // Long keys take up to 256 bytes each: fewer of them.
                    if self.len() < MEMO_LIMIT && self.long.len() < MEMO_LIMIT / 16 {
                        self.long.insert(key.into(), n);
                    }
                    n
                }
            },
        }
    }

    fn len(&self) -> usize {
        self.short.len() + self.long.len()
    }
}

/// How the text between added tokens is normalized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Normalize {
    /// As it is (no normalizer, or an empty `Sequence`).
    None,
    /// Unicode NFC.
    Nfc,
    /// `Prepend("▁")` then `Replace(" ", "▁")`: SentencePiece's view of spaces.
    SentencePiece,
}

/// One `Split` pre-tokenizer. Kept on disk as its pattern and behaviour, compiled again when
/// read.
struct Split {
    /// The pattern as the file gives it.
    source: String,
    /// The pattern with `\s+(?!\S)` read as `\s+`, for the `regex` crate's engine.
    pattern: meta::Regex,
    /// The same pattern as a lazy DFA alone, for anchored searches: a pre-token is a few
    /// bytes, and the meta engine's layers around the DFA cost about as much as its scan.
    /// `None` where it cannot be built (the meta engine serves alone).
    dfa: Option<hybrid::dfa::DFA>,
    /// No match starts with an ASCII character, so an ASCII piece has none (DeepSeek V3's
    /// CJK split): read off the DFA's start states, and the piece is not searched.
    skips_ascii: bool,
    /// The original pattern, when it has the `\s+(?!\S)` look-ahead the DFA pattern drops.
    original: Option<fancy_regex::Regex>,
    /// Text between matches is a piece too (`Isolated`); else it is dropped (`Removed` with
    /// `invert`, which keeps the matches).
    keep_gaps: bool,
    /// The pattern has no end or word-boundary assertion (`$`, `\z`, `\b`, ...), so the
    /// look-ahead can be resolved on a prefix of the text ([`Split::resolve_lookahead`]).
    prefix_exact: bool,
}

/// How a word becomes its first symbols, before merges.
#[derive(serde::Serialize, serde::Deserialize)]
enum Alphabet {
    /// Byte-level BPE: every byte is a token (GPT-2's byte-to-character map).
    Bytes(#[serde(with = "per_byte")] [u32; 256]),
    /// Characters (SentencePiece-style): a character not in the vocabulary becomes its bytes'
    /// `<0xXX>` tokens (`byte_fallback`), else `unk` (consecutive ones fused with `fuse_unk`),
    /// else nothing.
    Chars {
        ids: HashMap<char, u32, Hasher>,
        #[serde(with = "per_byte::option")]
        byte_tokens: Option<[u32; 256]>,
        unk: Option<u32>,
        fuse_unk: bool,
    },
}

/// Added tokens matched on the raw or on the normalized text. Kept on disk as its patterns,
/// compiled again when read.
struct AddedTokens {
    patterns: Vec<String>,
    matcher: aho_corasick::AhoCorasick,
    /// Per pattern: counted as text instead of split off (a special token under
    /// `--special-text plain`).
    as_text: Vec<bool>,
}

impl AddedTokens {
    fn new(patterns: Vec<String>, as_text: Vec<bool>) -> Result<Option<AddedTokens>, String> {
        if patterns.is_empty() {
            return Ok(None);
        }
        let matcher = aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .build(&patterns)
            .map_err(|e| format!("added tokens: {e}"))?;
        Ok(Some(AddedTokens {
            patterns,
            matcher,
            as_text,
        }))
    }

    /// Calls `piece` for the text between added tokens and returns how many added tokens were
    /// split off.
    fn split(this: Option<&Self>, text: &str, mut piece: impl FnMut(&str)) -> u32 {
        let mut n = 0;
        let mut start = 0;
        if let Some(a) = this {
            for m in a.matcher.find_iter(text) {
                if a.as_text[m.pattern().as_usize()] {
                    continue;
                }
                piece(&text[start..m.start()]);
                n += 1;
                start = m.end();
            }
        }
        piece(&text[start..]);
        n
    }
}

/// A BPE tokenizer reduced to what counting needs. Serializable, so that a tokenizer compiled
/// and self-checked once is read back by later analyses ([`crate::tokenize`]) instead of being
/// built from `tokenizer.json` again.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct FastBpe {
    /// Tells threads' [`Local`] state apart per instance; a new one for each read.
    #[serde(skip, default = "next_instance")]
    instance: u64,
    /// Added tokens matched on the raw text (`normalized: false`).
    raw_added: Option<AddedTokens>,
    /// Added tokens matched on normalized text (`normalized: true`).
    normalized_added: Option<AddedTokens>,
    normalize: Normalize,
    splits: Vec<Split>,
    alphabet: Alphabet,
    /// `(left, right)` ids -> `(rank, merged id)`.
    #[serde(with = "crate::store::user_cache::packed::map")]
    merges: HashMap<u64, (u32, u32), Hasher>,
    /// Whole words found in the vocabulary count as one token (`ignore_merges`).
    whole_words: Option<HashMap<Vec<u8>, u32, Hasher>>,
    /// SentencePiece-style text without a pre-tokenizer is one long word; when no token of
    /// the vocabulary holds a `▁` after another character, no merge can cross the start of a
    /// `▁` run, so the text is merged word by word between them (same count, and the words
    /// are short enough to memoize).
    space_words: bool,
    /// Tokens the post-processor adds when asked to add special tokens (a BOS, say).
    added_special: u32,
    /// Which engine this is, for reports (`byte-level BPE, 3 splits`).
    describe: String,
}

impl std::fmt::Debug for FastBpe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastBpe")
            .field("engine", &self.describe)
            .field("merges", &self.merges.len())
            .finish_non_exhaustive()
    }
}

/// Serde for a token per byte (serde derives arrays up to 32 only).
mod per_byte {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(a: &[u32; 256], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(a)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u32; 256], D::Error> {
        let v = Vec::<u32>::deserialize(d)?;
        v.try_into()
            .map_err(|v: Vec<u32>| serde::de::Error::invalid_length(v.len(), &"256 tokens"))
    }

    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(a: &Option<[u32; 256]>, s: S) -> Result<S::Ok, S::Error> {
            match a {
                Some(a) => s.serialize_some(&a[..]),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u32; 256]>, D::Error> {
            Option::<Vec<u32>>::deserialize(d)?
                .map(|v| {
                    v.try_into()
                        .map_err(|v: Vec<u32>| serde::de::Error::invalid_length(v.len(), &"256 tokens"))
                })
                .transpose()
        }
    }
}

/// A number no other [`FastBpe`] of this process has.
fn next_instance() -> u64 {
    static INSTANCES: AtomicU64 = AtomicU64::new(0);
    INSTANCES.fetch_add(1, Ordering::Relaxed)
}

impl serde::Serialize for Split {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (&self.source, self.keep_gaps).serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Split {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Split, D::Error> {
        let (source, keep_gaps) = <(String, bool)>::deserialize(d)?;
        Split::new(&source, keep_gaps).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for AddedTokens {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (&self.patterns, &self.as_text).serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for AddedTokens {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<AddedTokens, D::Error> {
        let (patterns, as_text) = <(Vec<String>, Vec<bool>)>::deserialize(d)?;
        AddedTokens::new(patterns, as_text)
            .map_err(serde::de::Error::custom)?
            .ok_or_else(|| serde::de::Error::custom("added tokens without patterns"))
    }
}

/// One thread's state for one [`FastBpe`] instance.
struct Local {
    instance: u64,
    /// Counts of words already seen.
    memo: Memo,
    /// This thread's search caches, one per split: a `regex::Regex` shared by threads hands
    /// its cache out through a pool whose fast path belongs to one thread, and the others took
    /// its lock once per pre-token (16 % of the time on 2 threads).
    caches: Vec<SearchCache>,
    /// Look-ahead resolutions already made, per split ([`Split::resolve_lookahead`]).
    lookahead: Vec<Memo>,
}

thread_local! {
    static LOCAL: RefCell<Local> = RefCell::new(Local {
        instance: u64::MAX,
        memo: Memo::default(),
        caches: Vec::new(),
        lookahead: Vec::new(),
    });
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

/// [`byte_chars`] the other way: a byte-level vocabulary's character to the byte it stands for.
pub(crate) fn bytes_of_chars() -> HashMap<char, u8> {
    byte_chars().iter().enumerate().map(|(b, c)| (*c, b as u8)).collect()
}

/// The two tokens a `merges` entry joins, written `"left right"` or `["left", "right"]`.
pub(crate) fn merge_pair(m: &Value) -> Option<(&str, &str)> {
    match m {
        Value::String(s) => s.split_once(' '),
        Value::Array(pair) => match pair.as_slice() {
            [Value::String(a), Value::String(b)] => Some((a.as_str(), b.as_str())),
            _ => None,
        },
        _ => None,
    }
}

fn key(left: u32, right: u32) -> u64 {
    (u64::from(left) << 32) | u64::from(right)
}

fn kind(v: &Value) -> Option<&str> {
    v.get("type").and_then(Value::as_str)
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    s.chars().take(120).collect()
}

/// The normalizer, or why it is not supported.
fn normalizer(n: Option<&Value>) -> Result<Normalize, String> {
    let Some(n) = n.filter(|n| !n.is_null()) else {
        return Ok(Normalize::None);
    };
    let steps: Vec<&Value> = match (kind(n), n.get("normalizers")) {
        (Some("Sequence"), Some(Value::Array(list))) => list.iter().collect(),
        _ => vec![n],
    };
    let prepend = |v: &Value| kind(v) == Some("Prepend") && v.get("prepend").and_then(Value::as_str) == Some("▁");
    let replace = |v: &Value| {
        kind(v) == Some("Replace")
            && v.pointer("/pattern/String").and_then(Value::as_str) == Some(" ")
            && v.get("content").and_then(Value::as_str) == Some("▁")
    };
    match steps.as_slice() {
        [] => Ok(Normalize::None),
        [one] if kind(one) == Some("NFC") => Ok(Normalize::Nfc),
        [p, r] if prepend(p) && replace(r) => Ok(Normalize::SentencePiece),
        _ => Err(format!("normalizer {} is not supported", short(n))),
    }
}

impl Split {
    fn new(source: &str, keep_gaps: bool) -> Result<Split, String> {
        // Any other look-around or a back-reference makes this fail to compile: refused.
        let dfa_source = source.replace(LOOKAHEAD, r"\s+");
        let pattern = meta::Regex::new(&dfa_source)
            .map_err(|e| format!("split pattern does not compile without its look-ahead: {e}"))?;
        // With a Unicode `\b` the lazy DFA stops at non-ASCII bytes and the meta engine
        // resumes (`find`).
        let dfa = hybrid::dfa::DFA::builder()
            .configure(hybrid::dfa::Config::new().unicode_word_boundary(true))
            .build(&dfa_source)
            .ok();
        let skips_ascii = dfa.as_ref().is_some_and(no_ascii_start);
        let original = if source.contains(LOOKAHEAD) {
            Some(fancy_regex::Regex::new(source).map_err(|e| format!("split pattern: {e}"))?)
        } else {
            None
        };
        // From the parsed pattern, not its text: a `$` inside a class (DeepSeek V3's
        // punctuation class has one) is no end assertion. A pattern that does not parse here
        // gets no prefix resolution (slower, still exact).
        let rest = source.replace(LOOKAHEAD, "");
        let prefix_exact = regex_syntax::Parser::new()
            .parse(&rest)
            .is_ok_and(|hir| hir.properties().look_set().is_empty());
        Ok(Split {
            source: source.to_string(),
            pattern,
            dfa,
            skips_ascii,
            original,
            keep_gaps,
            prefix_exact,
        })
    }

    /// A `Split` pre-tokenizer entry.
    fn from_json(v: &Value) -> Result<Split, String> {
        let invert = v.get("invert").and_then(Value::as_bool).unwrap_or(false);
        let keep_gaps = match (v.get("behavior").and_then(Value::as_str), invert) {
            (Some("Isolated"), false) => true,
            (Some("Removed"), true) => false,
            _ => return Err(format!("pre-tokenizer split {} is not supported", short(v))),
        };
        let source = match (v.pointer("/pattern/Regex"), v.pointer("/pattern/String")) {
            (Some(Value::String(re)), _) => re.clone(),
            (_, Some(Value::String(s))) => regex::escape(s),
            _ => return Err(format!("pre-tokenizer split {} has no pattern", short(v))),
        };
        Split::new(&source, keep_gaps)
    }

    /// Where the original pattern's match starting at `start` ends, given the DFA pattern's
    /// match `[start, end)`. They differ only on a whitespace run of two or more characters
    /// followed by a non-space, where `\s+(?!\S)` leaves the last space to the next word;
    /// only then is the original pattern run, on the run and the one character after it: the
    /// alternatives before the look-ahead have no look-around (and, when `prefix_exact`, no
    /// end or word-boundary assertion), so they match that prefix of the text exactly when
    /// they match the text, and the look-ahead sees one character. The
    /// result depends only on those characters, so it is memoized (`seen`): indentation runs
    /// repeat on every line of code.
    fn resolve_lookahead(&self, s: &str, start: usize, end: usize, seen: &mut Memo) -> usize {
        let Some(original) = &self.original else {
            return end;
        };
        let run = &s[start..end];
        // Cheapest tests first: most matches are words, which fail the first.
        if run.len() < 2 || !run.starts_with(char::is_whitespace) {
            return end;
        }
        let Some(next) = s[end..].chars().next().filter(|c| !c.is_whitespace()) else {
            return end;
        };
        if run.chars().nth(1).is_none() || !run.chars().all(char::is_whitespace) {
            return end;
        }
        if !self.prefix_exact {
            return match original.find_from_pos(s, start) {
                Ok(Some(m)) if m.start() == start => m.end(),
                _ => end,
            };
        }
        let hay = &s[..end + next.len_utf8()];
        let key = &hay.as_bytes()[start..];
        let resolve = || match original.find_from_pos(hay, start) {
            Ok(Some(m)) if m.start() == start => (m.end() - start) as u32,
            _ => (end - start) as u32,
        };
        let n = if key.len() <= MEMO_MAX_WORD {
            seen.get_or(key, resolve)
        } else {
            resolve()
        };
        start + n as usize
    }

    /// The first match at or after `pos`, as the `regex` crate's leftmost-first search finds
    /// it. While matches follow each other without gaps (`contiguous`: patterns that cover
    /// the text), the search is anchored at `pos`: the same match when one starts there, found
    /// by one forward scan instead of a forward and a reverse one.
    fn find(&self, cache: &mut SearchCache, s: &str, pos: usize, contiguous: &mut bool) -> Option<(usize, usize)> {
        let input = Input::new(s).range(pos..);
        if *contiguous {
            let anchored = input.clone().anchored(Anchored::Yes);
            let found = match (&self.dfa, &mut cache.dfa) {
                (Some(dfa), Some(c)) => dfa.try_search_fwd(c, &anchored).map_err(drop),
                _ => Err(()),
            };
            match found {
                Ok(Some(end)) => return Some((pos, end.offset())),
                Ok(None) => {}
                // No lazy DFA, or it stopped (a non-ASCII byte by a Unicode `\b`).
                Err(()) => {
                    if let Some(m) = self.pattern.search_with(&mut cache.meta, &anchored) {
                        return Some((m.start(), m.end()));
                    }
                }
            }
        }
        let m = self.pattern.search_with(&mut cache.meta, &input)?;
        *contiguous = m.start() == pos;
        Some((m.start(), m.end()))
    }
}

/// One thread's search state for one [`Split`].
struct SearchCache {
    meta: meta::Cache,
    dfa: Option<hybrid::dfa::Cache>,
}

impl SearchCache {
    fn of(split: &Split) -> SearchCache {
        SearchCache {
            meta: split.pattern.create_cache(),
            dfa: split.dfa.as_ref().map(hybrid::dfa::DFA::create_cache),
        }
    }
}

/// Whether no match of `dfa` can start before an ASCII byte or at the end of the text, after
/// any byte: then no search of an ASCII text finds one.
fn no_ascii_start(dfa: &hybrid::dfa::DFA) -> bool {
    let mut cache = dfa.create_cache();
    // The 257 look-behinds share a handful of start states: each is stepped through once (this
    // runs at every load, on the small-run path).
    let mut starts = Vec::new();
    for behind in std::iter::once(None).chain((0..=255u8).map(Some)) {
        let config = regex_automata::util::start::Config::new()
            .anchored(Anchored::Yes)
            .look_behind(behind);
        let Ok(start) = dfa.start_state(&mut cache, &config) else {
            return false;
        };
        if !starts.contains(&start) {
            starts.push(start);
        }
    }
    let dead = |next: Result<hybrid::LazyStateID, _>| next.is_ok_and(|id: hybrid::LazyStateID| id.is_dead());
    starts.into_iter().all(|start| {
        !start.is_match()
            && dead(dfa.next_eoi_state(&mut cache, start))
            && (0..128u8).all(|b| dead(dfa.next_state(&mut cache, start, b)))
    })
}

/// Whether token `t` holds a `▁` right after another character (a merge that made it
/// crossed the start of a `▁` run).
fn crosses_space(t: &str) -> bool {
    let mut after_other = false;
    for c in t.chars() {
        if c == SPIECE_SPACE && after_other {
            return true;
        }
        after_other = c != SPIECE_SPACE;
    }
    false
}

/// The pre-tokenizer's splits and whether it is byte-level, or why it is not supported.
fn pre_tokenizer(pre: &Value) -> Result<(Vec<Split>, bool), String> {
    let byte_level = |v: &Value| {
        if kind(v) != Some("ByteLevel") {
            return None;
        }
        if v.get("add_prefix_space").and_then(Value::as_bool) != Some(false) {
            return Some(Err(format!("pre-tokenizer {} adds a prefix space", short(v))));
        }
        Some(Ok(v.get("use_regex").and_then(Value::as_bool).unwrap_or(true)))
    };
    let steps: Vec<&Value> = match (kind(pre), pre.get("pretokenizers")) {
        _ if pre.is_null() => Vec::new(),
        (Some("Sequence"), Some(Value::Array(seq))) => seq.iter().collect(),
        _ => vec![pre],
    };
    let mut splits = Vec::new();
    let mut bytes = false;
    for (i, step) in steps.iter().enumerate() {
        if let Some(use_regex) = byte_level(step) {
            // Byte-level comes last: it maps bytes to characters after every split.
            if i + 1 != steps.len() {
                return Err(format!("pre-tokenizer {} is followed by more steps", short(step)));
            }
            if use_regex? {
                splits.push(Split::new(GPT2_PATTERN, true)?);
            }
            bytes = true;
        } else if kind(step) == Some("Split") {
            splits.push(Split::from_json(step)?);
        } else {
            return Err(format!("pre-tokenizer {} is not supported", short(step)));
        }
    }
    Ok((splits, bytes))
}

impl FastBpe {
    /// Builds the fast path from a parsed `tokenizer.json`, or says why this tokenizer has
    /// none. `plain_specials` mirrors `Tokenizer::set_encode_special_tokens(true)`; what the
    /// post-processor adds is set with [`FastBpe::with_added_special`].
    pub fn from_json(json: &Value, plain_specials: bool) -> Result<FastBpe, String> {
        for field in ["truncation", "padding"] {
            if !json.get(field).is_none_or(Value::is_null) {
                return Err(format!("{field} is configured"));
            }
        }
        let normalize = normalizer(json.get("normalizer"))?;
        let (splits, bytes) = pre_tokenizer(json.get("pre_tokenizer").unwrap_or(&Value::Null))?;
        if bytes && normalize == Normalize::SentencePiece {
            return Err("a SentencePiece normalizer before a byte-level pre-tokenizer".into());
        }

        let model = json.get("model").ok_or("no model")?;
        if kind(model) != Some("BPE") {
            return Err("model is not BPE".into());
        }
        if !model.get("dropout").is_none_or(Value::is_null) {
            return Err("BPE dropout is set".into());
        }
        for affix in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if model.get(affix).and_then(Value::as_str).is_some_and(|s| !s.is_empty()) {
                return Err(format!("{affix} is set"));
            }
        }
        let vocab = model.get("vocab").and_then(Value::as_object).ok_or("no vocab")?;
        let mut ids: HashMap<&str, u32> = HashMap::with_capacity(vocab.len());
        for (token, id) in vocab {
            let id = id
                .as_u64()
                .and_then(|i| u32::try_from(i).ok())
                .ok_or("vocab id is not a u32")?;
            ids.insert(token.as_str(), id);
        }
        let to_byte = bytes_of_chars();
        // A token's bytes as a word shows them: decoded from the byte-level map, or as is.
        let word_bytes = |token: &str| -> Option<Vec<u8>> {
            if bytes {
                token.chars().map(|c| to_byte.get(&c).copied()).collect()
            } else {
                Some(token.as_bytes().to_vec())
            }
        };
        let byte_fallback = model.get("byte_fallback").and_then(Value::as_bool) == Some(true);
        let alphabet = if bytes {
            if byte_fallback {
                return Err("byte_fallback is set on a byte-level model".into());
            }
            let mut byte_ids = [0u32; 256];
            for (b, c) in byte_chars().iter().enumerate() {
                byte_ids[b] = *ids
                    .get(c.to_string().as_str())
                    .ok_or_else(|| format!("byte {b:#04x} has no token"))?;
            }
            Alphabet::Bytes(byte_ids)
        } else {
            let chars = ids
                .iter()
                .filter_map(|(t, id)| {
                    let mut cs = t.chars();
                    match (cs.next(), cs.next()) {
                        (Some(c), None) => Some((c, *id)),
                        _ => None,
                    }
                })
                .collect();
            let byte_tokens = if byte_fallback {
                let mut out = [0u32; 256];
                for (b, slot) in out.iter_mut().enumerate() {
                    // `tokenizers` falls back only when every byte of a character has its
                    // token; a vocabulary missing some is not reproduced here.
                    *slot = *ids
                        .get(format!("<{b:#04X}>").as_str())
                        .ok_or_else(|| format!("byte_fallback without a token for byte {b:#04X}"))?;
                }
                Some(out)
            } else {
                None
            };
            let unk = match model.get("unk_token").and_then(Value::as_str) {
                None => None,
                Some(u) => Some(
                    *ids.get(u)
                        .ok_or_else(|| format!("unk_token {u:?} is not in the vocab"))?,
                ),
            };
            Alphabet::Chars {
                ids: chars,
                byte_tokens,
                unk,
                fuse_unk: model.get("fuse_unk").and_then(Value::as_bool) == Some(true),
            }
        };
        let list = model.get("merges").and_then(Value::as_array).ok_or("no merges")?;
        let mut merges = HashMap::with_capacity_and_hasher(list.len(), Hasher::default());
        for (rank, m) in list.iter().enumerate() {
            let (left, right) = merge_pair(m).ok_or_else(|| format!("merge {m}"))?;
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
            Some(ids.iter().filter_map(|(t, id)| Some((word_bytes(t)?, *id))).collect())
        } else {
            None
        };

        let (mut raw, mut normalized) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
        for t in json.get("added_tokens").and_then(Value::as_array).into_iter().flatten() {
            let flag = |k: &str| t.get(k).and_then(Value::as_bool).unwrap_or(false);
            if flag("single_word") || flag("lstrip") || flag("rstrip") {
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
            let (patterns, as_text) = if flag("normalized") { &mut normalized } else { &mut raw };
            patterns.push(content.to_string());
            as_text.push(plain_specials && flag("special"));
        }
        let space_words = splits.is_empty()
            && normalize == Normalize::SentencePiece
            && whole_words.is_none()
            && !vocab.keys().any(|t| crosses_space(t));
        let describe = format!(
            "{} BPE{}{}{}",
            if bytes { "byte-level" } else { "character" },
            match splits.len() {
                0 => String::new(),
                1 => ", 1 split".to_string(),
                n => format!(", {n} splits"),
            },
            match (normalize, &alphabet) {
                (Normalize::SentencePiece, _) => ", SentencePiece spaces".to_string(),
                (Normalize::Nfc, _) => ", NFC".to_string(),
                (
                    _,
                    Alphabet::Chars {
                        byte_tokens: Some(_), ..
                    },
                ) => ", byte fallback".to_string(),
                _ => String::new(),
            },
            if space_words { ", words at ▁" } else { "" }
        );
        Ok(FastBpe {
            instance: next_instance(),
            raw_added: AddedTokens::new(raw.0, raw.1)?,
            normalized_added: AddedTokens::new(normalized.0, normalized.1)?,
            normalize,
            splits,
            alphabet,
            merges,
            whole_words,
            space_words,
            added_special: 0,
            describe,
        })
    }

    /// The same counter for a post-processor that adds `n` tokens with `add_special_tokens`
    /// (a BOS, say: measured on `tokenizers` itself, which runs the post-processor).
    pub fn with_added_special(mut self, n: u32) -> Self {
        self.added_special = n;
        self
    }

    /// What this engine is (`byte-level BPE, 3 splits`), for logs and `summary.json`.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// Tokens in `text`, as `Tokenizer::encode(text, add_special_tokens).len()`.
    pub fn count(&self, text: &str, add_special_tokens: bool) -> u32 {
        let specials = if add_special_tokens { self.added_special } else { 0 };
        LOCAL.with(|local| {
            let mut local = local.borrow_mut();
            if local.instance != self.instance {
                *local = Local {
                    instance: self.instance,
                    memo: Memo::default(),
                    caches: self.splits.iter().map(SearchCache::of).collect(),
                    lookahead: self.splits.iter().map(|_| Memo::default()).collect(),
                };
            }
            let local = &mut *local;
            let mut words = 0;
            let added = AddedTokens::split(self.raw_added.as_ref(), text, |piece| {
                words += self.count_piece(piece, local);
            });
            specials + added + words
        })
    }

    /// A piece between raw added tokens: normalized, split on normalized added tokens, then
    /// pre-tokenized and counted.
    fn count_piece(&self, piece: &str, local: &mut Local) -> u32 {
        if piece.is_empty() {
            return 0;
        }
        let text: Cow<'_, str> = match self.normalize {
            Normalize::None => Cow::Borrowed(piece),
            Normalize::Nfc if piece.is_ascii() => Cow::Borrowed(piece),
            Normalize::Nfc => Cow::Owned(piece.nfc().map(|(c, _)| c).collect()),
            Normalize::SentencePiece => {
                let mut s = String::with_capacity(piece.len() + 3);
                s.push(SPIECE_SPACE);
                s.extend(piece.chars().map(|c| if c == ' ' { SPIECE_SPACE } else { c }));
                Cow::Owned(s)
            }
        };
        let mut words = 0;
        let added = AddedTokens::split(self.normalized_added.as_ref(), &text, |p| {
            words += self.split_count(0, p, local);
        });
        added + words
    }

    /// Applies split `level` and those after it to `s`, then counts each word.
    fn split_count(&self, level: usize, s: &str, local: &mut Local) -> u32 {
        if s.is_empty() {
            return 0;
        }
        let Some(split) = self.splits.get(level) else {
            if self.space_words {
                return self.space_words_count(s, &mut local.memo);
            }
            return self.count_word(&mut local.memo, s);
        };
        if split.skips_ascii && s.is_ascii() {
            return if split.keep_gaps {
                self.split_count(level + 1, s, local)
            } else {
                0
            };
        }
        let mut n = 0;
        let mut pos = 0;
        let mut contiguous = true;
        while pos < s.len() {
            let Some((start, end)) = split.find(&mut local.caches[level], s, pos, &mut contiguous) else {
                if split.keep_gaps {
                    n += self.split_count(level + 1, &s[pos..], local);
                }
                break;
            };
            if start > pos && split.keep_gaps {
                n += self.split_count(level + 1, &s[pos..start], local);
            }
            let end = split.resolve_lookahead(s, start, end, &mut local.lookahead[level]);
            if end <= start {
                // An empty match: never loop without progress.
                let next = s[start..].chars().next().map_or(1, char::len_utf8);
                if split.keep_gaps {
                    n += self.split_count(level + 1, &s[start..start + next], local);
                }
                pos = start + next;
                contiguous = false;
                continue;
            }
            n += self.split_count(level + 1, &s[start..end], local);
            pos = end;
        }
        n
    }

    /// Counts `s` word by word, each word starting where a `▁` run starts ([`FastBpe::space_words`]).
    fn space_words_count(&self, s: &str, memo: &mut Memo) -> u32 {
        let (mut n, mut start, mut after_other) = (0, 0, false);
        for (i, c) in s.char_indices() {
            let space = c == SPIECE_SPACE;
            if space && after_other {
                n += self.count_word(memo, &s[start..i]);
                start = i;
            }
            after_other = !space;
        }
        n + self.count_word(memo, &s[start..])
    }

    fn count_word(&self, memo: &mut Memo, word: &str) -> u32 {
        let bytes = word.as_bytes();
        if bytes.len() <= 1 && matches!(self.alphabet, Alphabet::Bytes(_)) {
            return bytes.len() as u32;
        }
        if bytes.len() > MEMO_MAX_WORD {
            return self.merge_count(word);
        }
        memo.get_or(bytes, || self.merge_count(word))
    }

    /// The first symbols of a word, before any merge, as `tokenizers`' `merge_word` builds them.
    fn symbols(&self, word: &str) -> Vec<u32> {
        match &self.alphabet {
            Alphabet::Bytes(ids) => word.bytes().map(|b| ids[usize::from(b)]).collect(),
            Alphabet::Chars {
                ids,
                byte_tokens,
                unk,
                fuse_unk,
            } => {
                let mut out = Vec::with_capacity(word.len());
                // A pending unknown: added before the next known character, or at the end.
                let mut pending_unk = false;
                for c in word.chars() {
                    if let Some(id) = ids.get(&c) {
                        if pending_unk {
                            out.extend(*unk);
                            pending_unk = false;
                        }
                        out.push(*id);
                    } else if let Some(bt) = byte_tokens {
                        let mut buf = [0u8; 4];
                        out.extend(c.encode_utf8(&mut buf).bytes().map(|b| bt[usize::from(b)]));
                    } else if unk.is_some() {
                        if pending_unk && !fuse_unk {
                            out.extend(*unk);
                        }
                        pending_unk = true;
                    }
                }
                if pending_unk {
                    out.extend(*unk);
                }
                out
            }
        }
    }

    /// [`FastBpe::merge_count`] for a short word: a scan of the pairs per merge instead of a
    /// queue. The same merges in the same order: the lowest rank, leftmost first (a queue
    /// entry made stale by a neighbour's merge can never be taken, since a merged token is
    /// its parts' concatenation and the neighbour's text changed).
    fn merge_count_short(&self, mut syms: Vec<u32>) -> u32 {
        loop {
            let mut best: Option<(u32, usize, u32)> = None;
            for i in 0..syms.len() - 1 {
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
            if syms.len() < 2 {
                return syms.len() as u32;
            }
        }
    }

    /// BPE on one word: repeatedly merge the lowest-rank adjacent pair (leftmost first), with
    /// the priority queue `tokenizers` uses (stale entries skipped the same way); the symbols
    /// left are the tokens.
    fn merge_count(&self, word: &str) -> u32 {
        if let Some(whole) = &self.whole_words {
            let key_bytes = word.as_bytes();
            if whole.contains_key(key_bytes) {
                return 1;
            }
        }
        let mut syms = self.symbols(word);
        let n = syms.len();
        if n < 2 {
            return n as u32;
        }
        if n <= SHORT_WORD {
            return self.merge_count_short(syms);
        }
        const NONE: u32 = u32::MAX;
        let mut prev: Vec<u32> = (0..n as u32).map(|i| i.wrapping_sub(1)).collect();
        prev[0] = NONE;
        let mut next: Vec<u32> = (1..=n as u32).collect();
        next[n - 1] = NONE;
        let mut alive = vec![true; n];
        let mut left = n as u32;
        let mut heap = BinaryHeap::with_capacity(n);
        for i in 0..n - 1 {
            if let Some(&(rank, merged)) = self.merges.get(&key(syms[i], syms[i + 1])) {
                heap.push(Reverse((rank, i as u32, merged)));
            }
        }
        while let Some(Reverse((_, pos, merged))) = heap.pop() {
            let p = pos as usize;
            if !alive[p] || next[p] == NONE {
                continue;
            }
            let r = next[p] as usize;
            match self.merges.get(&key(syms[p], syms[r])) {
                Some(&(_, id)) if id == merged => {}
                _ => continue,
            }
            syms[p] = merged;
            alive[r] = false;
            left -= 1;
            next[p] = next[r];
            if next[p] != NONE {
                prev[next[p] as usize] = pos;
            }
            if prev[p] != NONE {
                let q = prev[p] as usize;
                if let Some(&(rank, m)) = self.merges.get(&key(syms[q], syms[p])) {
                    heap.push(Reverse((rank, prev[p], m)));
                }
            }
            if next[p] != NONE {
                if let Some(&(rank, m)) = self.merges.get(&key(syms[p], syms[next[p] as usize])) {
                    heap.push(Reverse((rank, pos, m)));
                }
            }
        }
        left
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
pub(crate) mod tests {
    use std::path::Path;

    use crate::tokenize::{Counter, SpecialText};

    fn counter(name: &str, special: SpecialText) -> Counter {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/tokenizers")
            .join(name)
            .join("tokenizer.json.gz");
        Counter::load(&p, special).expect("tokenizer loads")
    }

    /// Texts the fast path was not tuned on (another seed than the self-check), the committed
    /// datasets' lines, hand-picked edge cases, and worst cases for merge counting.
    pub(crate) fn held_out_texts() -> Vec<String> {
        let mut texts = super::validation_corpus(400, 0xC0FFEE);
        for f in ["default.jsonl", "small.jsonl", "sessions.jsonl"] {
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
                "<s>Hello</s> <unk>",
                "e\u{301}",
                "HELLO World's CamelCase IT'S 12345678 ÀÉ",
                "中文日本語のテキスト１２３",
            ]
            .map(str::to_string),
        );
        // Worst cases: one long word, long whitespace, long digits, emoji, CJK.
        for unit in ["a", " ", "7", "😀", "語", "ab", "\n"] {
            texts.push(unit.repeat(3_000));
        }
        texts
    }

    fn assert_same_counts(name: &str, c: &Counter, texts: &[String], special: SpecialText) {
        for t in texts {
            for add in [false, true] {
                assert_eq!(
                    c.count(t, add).expect("count"),
                    c.count_reference(t, add).expect("count"),
                    "{name} {special:?} add_special={add} on {:?}",
                    t.chars().take(80).collect::<String>()
                );
            }
        }
    }

    /// The fast path against `tokenizers` for every family in `fixtures/tokenizers`, both
    /// special modes, with and without added special tokens.
    #[test]
    fn counts_equal_tokenizers_for_every_committed_family() {
        let texts = held_out_texts();
        for name in ["gpt2", "qwen3", "deepseek_v3", "gpt4o"] {
            for special in [SpecialText::Special, SpecialText::Plain] {
                let c = counter(name, special);
                assert!(c.fast_path().expect("engine"), "{name} should take the fast path");
                assert_same_counts(name, &c, &texts, special);
            }
        }
    }

    /// Families whose files cannot be committed (Llama 2 and 3, gpt-oss: licences or size),
    /// from `RECAP_TOKENIZER_DIRS` (folders with `tokenizer.json`, `:`-separated), as
    /// `bench/families.sh` fetches them.
    #[test]
    #[ignore = "needs RECAP_TOKENIZER_DIRS (bench/b11_families.sh fetches the files)"]
    fn counts_equal_tokenizers_for_fetched_families() {
        let dirs = std::env::var("RECAP_TOKENIZER_DIRS").expect("RECAP_TOKENIZER_DIRS is set");
        let texts = held_out_texts();
        for dir in dirs.split(':').filter(|d| !d.is_empty()) {
            for special in [SpecialText::Special, SpecialText::Plain] {
                let c = Counter::load(&Path::new(dir).join("tokenizer.json"), special).expect("tokenizer loads");
                assert!(c.fast_path().expect("engine"), "{dir} should take the fast path");
                assert_same_counts(dir, &c, &texts, special);
            }
        }
    }

    /// A SentencePiece-style BPE (Llama 2's configuration: `▁` for spaces, byte fallback,
    /// fused `<unk>`, a BOS added) trained here on a small corpus, against `tokenizers`.
    /// A SentencePiece-style BPE (Llama 2's configuration: `▁` for spaces, byte fallback, a
    /// BOS added by the post-processor) trained here on the validation corpus.
    pub(crate) fn sentencepiece_json() -> serde_json::Value {
        let corpus = super::validation_corpus(300, 7).join(" ") + " the server model latency river stone";
        let words: Vec<Vec<String>> = corpus
            .split(' ')
            .filter(|w| !w.is_empty())
            .map(|w| std::iter::once('▁').chain(w.chars()).map(String::from).collect())
            .collect();
        let mut vocab: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
        vocab.extend((0..=255u8).map(|b| format!("<{b:#04X}>")));
        // Every character but a few, so some fall back to bytes.
        let mut chars: Vec<String> = words.iter().flatten().cloned().collect();
        chars.sort();
        chars.dedup();
        let missing = ["😀", "ไ", "ß"];
        chars.retain(|c| !missing.contains(&c.as_str()));
        vocab.extend(chars);
        let mut merges: Vec<(String, String)> = Vec::new();
        let mut words: Vec<Vec<String>> = words
            .into_iter()
            .map(|w| w.into_iter().filter(|c| !missing.contains(&c.as_str())).collect())
            .collect();
        for _ in 0..400 {
            let mut pairs: std::collections::BTreeMap<(String, String), usize> = Default::default();
            for w in &words {
                for p in w.windows(2) {
                    *pairs.entry((p[0].clone(), p[1].clone())).or_default() += 1;
                }
            }
            let Some(((a, b), _)) = pairs
                .into_iter()
                .max_by_key(|(k, n)| (*n, std::cmp::Reverse(k.clone())))
            else {
                break;
            };
            let ab = format!("{a}{b}");
            for w in &mut words {
                let mut i = 0;
                while i + 1 < w.len() {
                    if w[i] == a && w[i + 1] == b {
                        w[i] = ab.clone();
                        w.remove(i + 1);
                    }
                    i += 1;
                }
            }
            if !vocab.contains(&ab) {
                vocab.push(ab);
            }
            merges.push((a, b));
        }
        let vocab: serde_json::Map<String, serde_json::Value> = vocab
            .into_iter()
            .enumerate()
            .map(|(i, t)| (t, serde_json::json!(i)))
            .collect();
        let added = |id: u32, content: &str| {
            serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true})
        };
        let json = serde_json::json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": [added(0, "<unk>"), added(1, "<s>"), added(2, "</s>")],
            "normalizer": {"type": "Sequence", "normalizers": [
                {"type": "Prepend", "prepend": "▁"},
                {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}
            ]},
            "pre_tokenizer": null,
            "post_processor": {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
            "decoder": null,
            "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                "vocab": vocab, "merges": merges.iter().map(|(a, b)| format!("{a} {b}")).collect::<Vec<_>>()}
        });
        json
    }

    #[test]
    fn counts_equal_tokenizers_for_sentencepiece_bpe() {
        let json = sentencepiece_json();
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, json.to_string()).expect("write");
        let mut texts = held_out_texts();
        texts.truncate(texts.len() - 7); // whole-text words: keep the debug-build run short
        texts.push("x".repeat(2_000));
        for special in [SpecialText::Special, SpecialText::Plain] {
            let c = Counter::load(&path, special).expect("tokenizer loads");
            assert!(
                c.fast_path().expect("engine"),
                "the SentencePiece BPE should take the fast path"
            );
            let label = c.engine_label().expect("engine");
            assert!(label.contains("words at ▁"), "no merge crosses a ▁ run: {label}");
            assert_same_counts("sentencepiece", &c, &texts, special);
        }
        // A merge across the start of a `▁` run (a vocabulary trained without splitting at
        // spaces has them): the text is merged as one word again, and still counted exactly.
        let mut crossing = json.clone();
        let n = crossing["model"]["vocab"].as_object().map_or(0, serde_json::Map::len);
        crossing["model"]["vocab"]["e▁"] = serde_json::json!(n);
        if let Some(m) = crossing["model"]["merges"].as_array_mut() {
            m.push(serde_json::json!("e ▁"));
        }
        std::fs::write(&path, crossing.to_string()).expect("write");
        let c = Counter::load(&path, SpecialText::Special).expect("tokenizer loads");
        assert!(c.fast_path().expect("engine"));
        assert!(!c.engine_label().expect("engine").contains("words at"));
        assert_same_counts("sentencepiece-crossing", &c, &texts[..100], SpecialText::Special);
        // Without byte fallback, unknown characters become one fused `<unk>`.
        let mut no_fallback = json.clone();
        no_fallback["model"]["byte_fallback"] = serde_json::json!(false);
        std::fs::write(&path, no_fallback.to_string()).expect("write");
        let c = Counter::load(&path, SpecialText::Special).expect("tokenizer loads");
        assert!(c.fast_path().expect("engine"));
        assert_same_counts("sentencepiece-unk", &c, &texts[..200], SpecialText::Special);
    }

    #[test]
    fn anchored_searches_find_what_the_regex_crate_finds() {
        // Patterns that cover the text (anchored searches) and sparse ones (unanchored after a
        // failed anchored try), on texts with digits, CJK, code and every space run.
        let texts = super::validation_corpus(300, 7);
        for (source, skips_ascii) in [
            (super::GPT2_PATTERN, false),
            (r"\p{N}{1,3}", false),
            (r"[一-龥぀-ゟ゠-ヿ]+", true),
            (
                r"[!\x22#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
                false,
            ),
            (r"x*", false),
            // Only an empty match at the end is ASCII-free, and it still matches there.
            (r"é|$", false),
            // Not provable with a Unicode `\b` (the lazy DFA stops after a non-ASCII byte), so
            // searched: never skipping is always exact.
            (r"\bé", false),
            (r"é+", true),
            // A Unicode `\b`: the lazy DFA stops at non-ASCII bytes, the meta engine resumes.
            (r"\w+\b|\s+", false),
        ] {
            let split = super::Split::new(source, true).expect("compiles");
            assert_eq!(split.skips_ascii, skips_ascii, "{source}");
            let reference = regex::Regex::new(&source.replace(super::LOOKAHEAD, r"\s+")).expect("compiles");
            let mut cache = super::SearchCache::of(&split);
            for t in &texts {
                if split.skips_ascii && t.is_ascii() {
                    assert!(reference.find(t).is_none(), "{source} skips {t:?}");
                    continue;
                }
                let (mut pos, mut contiguous) = (0, true);
                while pos < t.len() {
                    let want = reference.find_at(t, pos).map(|m| (m.start(), m.end()));
                    let got = split.find(&mut cache, t, pos, &mut contiguous);
                    assert_eq!(got, want, "{source} on {t:?} from {pos}");
                    let Some((start, end)) = got else { break };
                    pos = if end > start {
                        end
                    } else {
                        start + t[start..].chars().next().map_or(1, char::len_utf8)
                    };
                }
            }
        }
    }

    #[test]
    fn the_word_memo_keeps_each_key_apart() {
        // Keys that differ only in length, trailing zero bytes, or past the packed limit, and
        // enough of them that the recent table's slots collide.
        let mut keys: Vec<Vec<u8>> = vec![b"".to_vec(), b"a".to_vec(), b"a\0".to_vec(), b"a\0\0".to_vec()];
        keys.extend((0..40_000u32).map(|i| format!(" w{i}").into_bytes()));
        keys.extend((0..50).map(|i| vec![b'x'; 10 + i]));
        let answer = |k: &[u8]| k.len() as u32 * 100_000 + k.iter().map(|b| u32::from(*b)).sum::<u32>();
        let mut memo = super::Memo::default();
        for round in 0..2 {
            for k in &keys {
                let mut made = false;
                let n = memo.get_or(k, || {
                    made = true;
                    answer(k)
                });
                assert_eq!(n, answer(k), "{k:?}");
                assert_eq!(made, round == 0, "{k:?} computed only the first time");
            }
        }
        assert_eq!(memo.len(), keys.len());
    }

    #[test]
    fn look_ahead_resolved_on_a_prefix_equals_the_original_pattern_on_the_text() {
        let texts = [
            "a  b",
            "x \t\n  y",
            "  z",
            "end   ",
            "a \u{3000}\u{3000}b",
            "if x:\n        return y\n",
        ];
        for (source, prefix_exact) in [
            (r"'s| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+", true),
            (r"\w+\b|[^\w\s]+|\s+(?!\S)|\s+", false),
            // A `$` in a class (DeepSeek V3) is no end assertion; a real one is.
            (r"[!#$%]+[A-Za-z]+|\p{L}+|\s+(?!\S)|\s+", true),
            (r"\p{L}+$|\p{L}+|\s+(?!\S)|\s+", false),
        ] {
            let split = super::Split::new(source, true).expect("compiles");
            assert_eq!(split.prefix_exact, prefix_exact, "{source}");
            let original = fancy_regex::Regex::new(source).expect("compiles");
            let mut seen = super::Memo::default();
            for _ in 0..2 {
                // Twice: the second time from the memo.
                for t in texts {
                    let mut pos = 0;
                    while let Some(m) = split.pattern.find(regex_automata::Input::new(t).range(pos..)) {
                        let end = split.resolve_lookahead(t, m.start(), m.end(), &mut seen);
                        let want = original.find_from_pos(t, m.start()).ok().flatten().map(|o| o.end());
                        assert_eq!(Some(end), want, "{source} on {t:?} at {}", m.start());
                        pos = end.max(m.start() + 1);
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
        let why = super::FastBpe::from_json(&json, false).expect_err("lowercase normalizer");
        assert!(why.contains("normalizer"), "{why}");
        let json = serde_json::json!({
            "pre_tokenizer": {"type": "Metaspace"},
            "model": {"type": "BPE", "vocab": {}, "merges": []}
        });
        let why = super::FastBpe::from_json(&json, false).expect_err("metaspace");
        assert!(why.contains("pre-tokenizer"), "{why}");
        // A look-around other than `\s+(?!\S)|\s+` cannot be resolved on the DFA.
        let json = serde_json::json!({
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": "a(?=b)|\\s+"}, "behavior": "Isolated", "invert": false},
                {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}
            ]},
            "model": {"type": "BPE", "vocab": {}, "merges": []}
        });
        let why = super::FastBpe::from_json(&json, false).expect_err("look-ahead");
        assert!(why.contains("does not compile"), "{why}");
    }
}
