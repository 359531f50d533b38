//! `tokenizers` itself, built for given texts: the reference the fast path is checked
//! against, without the cost of building the whole tokenizer.
//!
//! Building `tokenizers` from a 150k-token `tokenizer.json` takes 0.3-0.4 s on one core: most
//! of a small run's first analysis. But BPE on a word only ever forms tokens that are
//! substrings of that word, by merges whose parts and result are such substrings. So a
//! `tokenizers` built from the same file with the vocabulary cut to a superset of the tokens
//! that occur as substrings of the texts (and the merges among them) encodes those texts
//! exactly as the whole one does: same tokens, same counts. The cut keeps every added token,
//! byte-fallback token and `unk`, and a token when its first and last (up to) 8 bytes occur in
//! the texts, in each form the texts can take on the way (as written, NFC, SentencePiece's
//! `▁` for spaces); a byte-level vocabulary's tokens are decoded to their bytes first. Built
//! for a few hundred texts it holds a few thousand tokens and builds in milliseconds.
//!
//! Ids are not kept: an added token beyond the cut vocabulary is numbered anew. Counts and
//! the tokens themselves are; `counts_equal_the_whole_tokenizer` checks that claim, token by
//! token and offset by offset, against the whole tokenizer on the held-out corpus for every
//! committed family and a SentencePiece one.

use std::collections::HashSet;

use serde_json::{Map, Value};
use tokenizers::Tokenizer;
use unicode_normalization_alignments::UnicodeNormalization;

/// Bytes of a token's start and end looked up in the texts.
const ENDS: usize = 8;

/// What a cut reference is built from: the file without its vocabulary and merges, and those
/// indexed, so that each cut is a few lookups per token. Plain data, so that it is kept on disk
/// with the compiled tokenizer ([`crate::tokenize`]) and a later analysis need not parse the
/// file to check against it.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Source {
    /// `tokenizer.json` without `model.vocab` and `model.merges`, as JSON text.
    rest: String,
    /// The vocabulary's tokens, one after another: one string rather than one per token, so
    /// that reading it back from the cache allocates once, not 150k times (most of what the
    /// compiled tokenizer cost to read).
    tokens: String,
    /// Where each token ends in `tokens`.
    #[serde(with = "crate::store::user_cache::packed")]
    token_ends: Vec<u32>,
    /// Each token's id.
    #[serde(with = "crate::store::user_cache::packed")]
    ids: Vec<u32>,
    /// Per token, where its keys end in `keys`: none for a token kept whatever the texts
    /// (added, byte-fallback, unknown), else the keys of its first and last bytes, as written
    /// and (byte-level vocabularies) decoded.
    #[serde(with = "crate::store::user_cache::packed")]
    key_ends: Vec<u32>,
    #[serde(with = "crate::store::user_cache::packed")]
    keys: Vec<[(u8, u64); 2]>,
    /// The merges in rank order as indices into the vocabulary (left, right, result); one
    /// naming a token not in the vocabulary is left out (it never forms).
    #[serde(with = "crate::store::user_cache::packed")]
    merges: Vec<[u32; 3]>,
    /// The normalizer puts SentencePiece's `▁` for spaces.
    spaced: bool,
}

impl Source {
    /// Indexes a parsed file (on any thread, while the fast path is built from it too).
    pub fn of(json: &Value) -> Result<Source, String> {
        let file = json.as_object().ok_or("not a JSON object")?;
        let model = file.get("model").and_then(Value::as_object).ok_or("no model")?;
        let vocab = model.get("vocab").and_then(Value::as_object).ok_or("no vocab")?;
        let byte_fallback = model.get("byte_fallback").and_then(Value::as_bool) == Some(true);
        let unk = model.get("unk_token").and_then(Value::as_str);
        let added: HashSet<&str> = file
            .get("added_tokens")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|t| t.get("content")?.as_str()).collect())
            .unwrap_or_default();
        let from_byte_chars = crate::bpe::bytes_of_chars();
        let ends = |b: &[u8]| {
            let n = b.len().min(ENDS);
            [Substrings::key(&b[..n]), Substrings::key(&b[b.len() - n..])]
        };
        let mut tokens = String::new();
        let mut token_ends = Vec::with_capacity(vocab.len());
        let mut ids = Vec::with_capacity(vocab.len());
        let mut key_ends = Vec::with_capacity(vocab.len());
        let mut keys = Vec::with_capacity(vocab.len());
        let mut index: std::collections::HashMap<&str, u32, ahash::RandomState> =
            std::collections::HashMap::with_capacity_and_hasher(vocab.len(), ahash::RandomState::default());
        for (t, id) in vocab {
            let id = id
                .as_u64()
                .and_then(|i| u32::try_from(i).ok())
                .ok_or_else(|| format!("vocab id of {t:?} is not a u32"))?;
            index.insert(t.as_str(), ids.len() as u32);
            tokens.push_str(t);
            token_ends.push(u32::try_from(tokens.len()).map_err(|_| "vocabulary over 4 GiB")?);
            ids.push(id);
            let always = added.contains(t.as_str())
                || Some(t.as_str()) == unk
                || (byte_fallback && t.len() == 6 && t.starts_with("<0x") && t.ends_with('>'))
                || t.is_empty();
            if !always {
                keys.push(ends(t.as_bytes()));
                let decoded: Option<Vec<u8>> = t.chars().map(|c| from_byte_chars.get(&c).copied()).collect();
                if let Some(d) = decoded.filter(|d| !d.is_empty() && d.as_slice() != t.as_bytes()) {
                    keys.push(ends(&d));
                }
            }
            key_ends.push(keys.len() as u32);
        }
        let mut joined = String::new();
        let merges = model
            .get("merges")
            .and_then(Value::as_array)
            .map(|all| {
                all.iter()
                    .filter_map(|m| {
                        crate::bpe::merge_pair(m).and_then(|(l, r)| {
                            joined.clear();
                            joined.push_str(l);
                            joined.push_str(r);
                            Some([*index.get(l)?, *index.get(r)?, *index.get(joined.as_str())?])
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let spaced = ["normalizer", "pre_tokenizer"]
            .iter()
            .any(|k| file.get(*k).is_some_and(|n| n.to_string().contains('\u{2581}')));
        // Not a clone of the file: its vocabulary and merges are most of it.
        let mut rest: Map<String, Value> = file
            .iter()
            .filter(|(k, _)| *k != "model")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let model_rest: Map<String, Value> = model
            .iter()
            .filter(|(k, _)| *k != "vocab" && *k != "merges")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        rest.insert("model".into(), Value::Object(model_rest));
        let rest = serde_json::to_string(&rest).map_err(|e| e.to_string())?;
        Ok(Source {
            rest,
            tokens,
            token_ends,
            ids,
            key_ends,
            keys,
            merges,
            spaced,
        })
    }

    /// A `tokenizers` tokenizer that encodes each of `texts` exactly as the whole file's does.
    pub fn for_texts<S: AsRef<str>>(&self, texts: &[S]) -> Result<Tokenizer, String> {
        let seen = Substrings::of(texts, self.spaced);
        let kept: Vec<bool> = (0..self.ids.len())
            .map(|i| {
                let forms = range(&self.key_ends, i)
                    .and_then(|r| self.keys.get(r))
                    .unwrap_or_default();
                forms.is_empty() || forms.iter().any(|[a, b]| seen.0.contains(a) && seen.0.contains(b))
            })
            .collect();
        let vocab: Map<String, Value> = (0..self.ids.len())
            .filter(|i| kept[*i])
            .map(|i| (self.token(i).to_string(), Value::from(self.ids[i])))
            .collect();
        let is_kept = |i: &u32| kept.get(*i as usize).copied().unwrap_or(false);
        let merges: Vec<Value> = self
            .merges
            .iter()
            .filter(|m| m.iter().all(is_kept))
            .map(|[l, r, _]| {
                let token = |i: &u32| Value::from(self.token(*i as usize));
                Value::Array(vec![token(l), token(r)])
            })
            .collect();
        let mut cut: Map<String, Value> = serde_json::from_str(&self.rest).map_err(|e| e.to_string())?;
        let model = cut.get_mut("model").and_then(Value::as_object_mut).ok_or("no model")?;
        model.insert("vocab".into(), Value::Object(vocab));
        model.insert("merges".into(), Value::Array(merges));
        let bytes = serde_json::to_vec(&Value::Object(cut)).map_err(|e| e.to_string())?;
        Tokenizer::from_bytes(&bytes).map_err(|e| e.to_string())
    }

    /// Token `i` of the vocabulary (empty where the cache file was not written by `of`).
    fn token(&self, i: usize) -> &str {
        range(&self.token_ends, i)
            .and_then(|r| self.tokens.get(r))
            .unwrap_or_default()
    }
}

/// Where entry `i` of a table of concatenated entries lies, given where each entry ends.
fn range(ends: &[u32], i: usize) -> Option<std::ops::Range<usize>> {
    let end = *ends.get(i)? as usize;
    let start = if i == 0 { 0 } else { *ends.get(i - 1)? as usize };
    (start <= end).then_some(start..end)
}

/// Every substring of up to [`ENDS`] bytes of the texts, in each form they can take.
struct Substrings(HashSet<(u8, u64), ahash::RandomState>);

impl Substrings {
    /// `spaced`: also with SentencePiece's `▁` for each space and before the text.
    fn of<S: AsRef<str>>(texts: &[S], spaced: bool) -> Substrings {
        let mut set = HashSet::default();
        let mut add = |s: &[u8]| {
            for i in 0..s.len() {
                for len in 1..=ENDS.min(s.len() - i) {
                    set.insert(Self::key(&s[i..i + len]));
                }
            }
        };
        for t in texts {
            let t = t.as_ref();
            let nfc: String = t.nfc().map(|(c, _)| c).collect();
            let forms: &[&str] = if nfc == t { &[t] } else { &[t, &nfc] };
            for form in forms {
                add(form.as_bytes());
                if spaced {
                    add(format!("\u{2581}{}", form.replace(' ', "\u{2581}")).as_bytes());
                }
            }
        }
        Substrings(set)
    }

    /// Up to 8 bytes as a (length, value) key.
    fn key(b: &[u8]) -> (u8, u64) {
        let mut v = [0u8; 8];
        v[..b.len()].copy_from_slice(b);
        (b.len() as u8, u64::from_le_bytes(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::path::Path;

    fn json_of(name: &str) -> Value {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/tokenizers")
            .join(name)
            .join("tokenizer.json.gz");
        let mut bytes = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(p).expect("open"))
            .read_to_end(&mut bytes)
            .expect("gunzip");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[test]
    fn counts_equal_the_whole_tokenizer() {
        let texts = crate::bpe::tests::held_out_texts();
        let named = ["gpt2", "qwen3", "deepseek_v3", "gpt4o"].map(|n| (n, json_of(n)));
        let sentencepiece = ("sentencepiece", crate::bpe::tests::sentencepiece_json());
        for (name, json) in named.into_iter().chain([sentencepiece]) {
            let whole = Tokenizer::from_bytes(serde_json::to_vec(&json).expect("bytes")).expect("whole");
            let source = Source::of(&json).expect("index");
            // Cut for all the texts, and for each batch (as run checks cut it).
            let all = source.for_texts(&texts).expect("cut");
            let vocab = (whole.get_vocab_size(true), all.get_vocab_size(true));
            assert!(vocab.1 < vocab.0, "{name}: the cut is smaller: {vocab:?}");
            for batch in texts.chunks(100) {
                let cut = source.for_texts(batch).expect("cut");
                for t in batch {
                    for add in [false, true] {
                        // Token by token (the strings: an added token beyond the cut vocabulary
                        // is numbered anew, which changes its id, not what it counts).
                        let want = whole.encode(t.as_str(), add).expect("whole");
                        let got = cut.encode(t.as_str(), add).expect("cut");
                        assert_eq!(got.get_tokens(), want.get_tokens(), "{name}: {t:?}");
                        assert_eq!(got.get_offsets(), want.get_offsets(), "{name}: {t:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_cut_for_other_texts_differs() {
        // The cut is what makes it cheap, and it can be seen: built for one text, another
        // text encodes differently (which is why the cut is always built for the texts checked).
        let json = json_of("gpt2");
        let source = Source::of(&json).expect("index");
        let cut = source.for_texts(&["hello there"]).expect("cut");
        let whole = Tokenizer::from_bytes(serde_json::to_vec(&json_of("gpt2")).expect("bytes")).expect("whole");
        let other = "a completely different sentence";
        assert_ne!(
            cut.encode_fast(other, false).map(|e| e.len()).ok(),
            Some(whole.encode_fast(other, false).expect("whole").len())
        );
        assert!(cut.get_vocab_size(false) < 200, "{}", cut.get_vocab_size(false));
    }
}
