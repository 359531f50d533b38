//! Token counting with a real Hugging Face tokenizer, on all cores, each distinct text once.
//!
//! Only counts are needed. BPE tokenizers of the configurations [`crate::bpe`] reproduces
//! (byte-level GPT-2, Qwen, Llama 3, DeepSeek V3, o200k; SentencePiece-style Llama 2) are
//! counted by its count-only path, checked against `tokenizers` on a validation corpus before
//! use and on up to 600 of each run's own texts (1 MiB of them at most); others (or with `--exact`) are encoded with
//! `tokenizers`' `encode_fast` (no offsets) and dropped. The checks use `tokenizers` built
//! with the vocabulary cut to the texts checked ([`crate::reference`]: the same tokens for
//! those texts, built in milliseconds), so a first analysis never waits 0.3-0.4 s for the
//! whole tokenizer when the fast path serves; the whole one is built only where it is needed
//! (no fast path, `--exact`, offsets for per-token timing). Which engine counted is logged and
//! kept in `summary.json` (`tokenizer_engine`). The tokenizer is parsed on first use, so a
//! re-analysis served from the caches never parses it.
//! Identical texts (the same prompt sent 10,000 times) are counted once: texts are keyed by a
//! 64-bit hash and the work list holds each distinct text one time.
//!
//! Literal special-token strings in captured text (`<|im_start|>`, `<s>`) are, by default,
//! counted the way an inference server counts them when it tokenizes the same string: as the
//! special token (1 token). `--special-text plain` counts them as the plain characters instead
//! (`Tokenizer::set_encode_special_tokens(true)`). See `docs/metrics.md`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use rayon::prelude::*;
use sha2::{Digest, Sha256};
use tokenizers::Tokenizer;

use crate::bpe::FastBpe;
use crate::keys::{text_hash, TextKey};

use crate::{Error, Result};

/// How literal special-token strings in text are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpecialText {
    /// As the special token, like the server tokenizing the same string.
    Special,
    /// As plain characters.
    Plain,
}

/// A tokenizer file, its stable id, and (built on first use) what counts with it.
pub struct Counter {
    bytes: Vec<u8>,
    special: SpecialText,
    id: String,
    /// SHA-256 of the decompressed file, hex: names its compiled form in the user's cache.
    digest: String,
    /// Where compiled tokenizers are kept ([`crate::store::user_cache::root`]); `None`: nowhere.
    cache_root: Option<PathBuf>,
    path: PathBuf,
    chat_template: Option<crate::template::ChatTemplate>,
    /// `--exact`: count with `tokenizers` even where the fast path applies.
    exact: bool,
    engine: OnceLock<std::result::Result<Engine, String>>,
    /// `tokenizers` over the whole file, built only when needed: to count where the fast path
    /// does not, for offsets (per-token timing, truncation) and for `--exact`.
    whole: OnceLock<std::result::Result<Tokenizer, String>>,
}

/// The count-only fast path where it applies, and what checks it.
struct Engine {
    fast: Option<FastBpe>,
    /// Cleared when the fast path disagrees with `tokenizers` on a sample of a run's texts.
    fast_ok: AtomicBool,
    /// Why `tokenizers` counts, when it does from the start.
    reference_because: Option<String>,
    /// What `tokenizers` references cut to the texts checked are built from
    /// ([`crate::reference`]); kept while the fast path serves.
    source: Option<crate::reference::Source>,
    /// Read from the user's cache rather than built from the file.
    from_cache: bool,
}

/// What a tokenizer compiles to: kept in the user's cache ([`crate::store::user_cache`]) for
/// the `analyze` build that made it, so later analyses with the same file skip parsing it,
/// building the fast path and self-checking it (0.25-0.35 s of a small run's first analysis).
#[derive(serde::Deserialize)]
enum Compiled {
    /// The fast path as it passed its self-check, and the source its run checks cut from.
    Fast {
        fast: Box<FastBpe>,
        source: crate::reference::Source,
    },
    /// No fast path: why (for the engine's label) and the warning that said so.
    Refused { because: String, warning: String },
}

/// [`Compiled`] borrowed, for writing (the same encoding).
#[derive(serde::Serialize)]
enum CompiledRef<'a> {
    Fast {
        fast: &'a FastBpe,
        source: &'a crate::reference::Source,
    },
    Refused {
        because: &'a str,
        warning: &'a str,
    },
}

/// The user-cache folder of compiled tokenizers, and the format of their files: bumped when
/// [`Compiled`] changes shape or meaning (a new build is a new key anyway).
const COMPILED_DIR: &str = "tokenizers";
const COMPILED_FORMAT: &str = "recap-compiled-tokenizer-2";

impl Engine {
    /// The engine counting now, for logs and `summary.json`.
    fn label(&self) -> String {
        match (&self.fast, self.fast_ok.load(Ordering::Relaxed)) {
            (Some(f), true) => format!("fast path ({})", f.describe()),
            (Some(_), false) => format!("{REFERENCE} (the fast path disagreed on a run's text)"),
            (None, _) => format!(
                "{REFERENCE} ({})",
                self.reference_because.as_deref().unwrap_or("no fast path")
            ),
        }
    }
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counter")
            .field("id", &self.id)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A cache key and its count.
type Counted = ((TextKey, bool), u32);

/// How [`Engine::label`] names `tokenizers` itself.
const REFERENCE: &str = "tokenizers";

/// Texts of [`crate::bpe::validation_corpus`] the fast path must count exactly like
/// `tokenizers` before it is used.
const SELF_CHECK_TEXTS: usize = 300;
/// Texts of each run (its own, from its first batches) that the fast path must also count
/// exactly like `tokenizers`, or `tokenizers` counts them all ([`RunCheck`]).
const RUN_CHECK_TEXTS: usize = 600;
/// Bytes of a run's texts the run checks cover at most (the cut reference indexes every
/// substring of up to 8 bytes of them).
const RUN_CHECK_BYTES: usize = 1 << 20;

impl Engine {
    fn none(why: String) -> Engine {
        Engine {
            fast: None,
            fast_ok: AtomicBool::new(false),
            reference_because: Some(why),
            source: None,
            from_cache: false,
        }
    }

    /// The engine of `counter`'s file: read from the user's cache when this build compiled it
    /// before, else [`Engine::build`] (and kept there).
    fn load(counter: &Counter) -> std::result::Result<Engine, String> {
        if counter.exact {
            return Ok(Engine::none("--exact".into()));
        }
        let cached = counter.cache_root.clone().zip(crate::store::user_cache::build_key());
        let Some((root, build)) = cached else {
            return Engine::build(&counter.bytes, counter.special, &counter.path).map(|(e, _)| e);
        };
        let mode = match counter.special {
            SpecialText::Special => "special",
            SpecialText::Plain => "plain",
        };
        let prefix = format!("{}-{mode}", &counter.digest[..16]);
        let key = format!("{COMPILED_FORMAT} {} {mode} {build}", counter.digest);
        let file = crate::store::user_cache::entry_path(&root, COMPILED_DIR, &prefix, &key);
        let start = std::time::Instant::now();
        let read = crate::store::user_cache::read(&file, &key, |body| {
            postcard::from_bytes::<Compiled>(body)
                .inspect_err(|e| tracing::debug!("{}: not read ({e}): rebuilt", file.display()))
                .ok()
        });
        if let Some(compiled) = read {
            tracing::debug!(
                "tokenizer compiled form read from {}: {:.3} s",
                file.display(),
                start.elapsed().as_secs_f64()
            );
            return Ok(match compiled {
                Compiled::Fast { fast, source } => Engine {
                    fast: Some(*fast),
                    fast_ok: AtomicBool::new(true),
                    reference_because: None,
                    source: Some(source),
                    from_cache: true,
                },
                Compiled::Refused { because, warning } => {
                    tracing::warn!("{warning}");
                    Engine {
                        from_cache: true,
                        ..Engine::none(because)
                    }
                }
            });
        }
        let (engine, warning) = Engine::build(&counter.bytes, counter.special, &counter.path)?;
        let body = match (&engine.fast, &engine.source, &engine.reference_because) {
            (Some(fast), Some(source), _) => postcard::to_stdvec(&CompiledRef::Fast { fast, source }),
            (_, _, Some(because)) => postcard::to_stdvec(&CompiledRef::Refused {
                because,
                warning: warning.as_deref().unwrap_or_default(),
            }),
            _ => return Ok(engine),
        };
        match body {
            Ok(body) => crate::store::user_cache::write(&file, &prefix, &key, &body),
            Err(e) => tracing::warn!("{}: not written: {e}", file.display()),
        }
        Ok(engine)
    }

    /// The fast path, self-checked against `tokenizers` cut to the validation corpus, or why
    /// there is none (and the warning that said so).
    fn build(bytes: &[u8], special: SpecialText, path: &Path) -> std::result::Result<(Engine, Option<String>), String> {
        let plain = special == SpecialText::Plain;
        let invalid = |e: String| format!("tokenizer {}: not a valid tokenizer.json: {e}", path.display());
        let mut lap = std::time::Instant::now();
        let mut step = |what: &str| {
            tracing::debug!("tokenizer {what}: {:.3} s", lap.elapsed().as_secs_f64());
            lap = std::time::Instant::now();
        };
        let json: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
        step("parsed");
        // The fast path and the index the checks cut references from: independent work.
        let (fast, source) = rayon::join(
            || FastBpe::from_json(&json, plain),
            || crate::reference::Source::of(&json),
        );
        step("fast path and reference index built");
        let fast = match fast {
            Ok(f) => f,
            Err(why) => {
                // Slower, still exact: said at normal verbosity, since it costs time.
                let warning = format!(
                    "{}: counting with `tokenizers`, the fast path does not reproduce this tokenizer: {why}",
                    path.display()
                );
                tracing::warn!("{warning}");
                return Ok((Engine::none(format!("no fast path: {why}")), Some(warning)));
            }
        };
        let source = source.map_err(invalid)?;
        // Freeing the parsed file (~300k allocations, 20 ms) need not hold up the self-check.
        rayon::spawn(move || drop(json));
        let corpus = crate::bpe::validation_corpus(SELF_CHECK_TEXTS, 0x5eed);
        let reference = encoding_specials(source.for_texts(&corpus).map_err(invalid)?, plain);
        step(&format!(
            "reference cut to the self-check's texts ({} tokens)",
            reference.get_vocab_size(false)
        ));
        let len = |text: &str, add: bool| reference.encode_fast(text, add).map(|e| e.len() as u32);
        // What the post-processor adds with `add_special_tokens` (a BOS, say).
        let added_special = match (len("", true), len("", false)) {
            (Ok(with), Ok(without)) => with.saturating_sub(without),
            _ => 0,
        };
        let fast = fast.with_added_special(added_special);
        let differs = corpus.par_iter().find_any(|t| {
            [false, true]
                .iter()
                .any(|&add| len(t, add).ok() != Some(fast.count(t, add)))
        });
        step("self-checked");
        if let Some(t) = differs {
            let warning = format!(
                "{}: the fast BPE counter disagrees with `tokenizers` on {t:?}; using `tokenizers`",
                path.display()
            );
            tracing::warn!("{warning}");
            return Ok((
                Engine::none("the fast path disagreed on its self-check".into()),
                Some(warning),
            ));
        }
        Ok((
            Engine {
                fast: Some(fast),
                fast_ok: AtomicBool::new(true),
                reference_because: None,
                source: Some(source),
                from_cache: false,
            },
            None,
        ))
    }
}

/// `tokenizer` with literal special-token strings encoded as the special token (`Special`) or
/// as text (`Plain`).
fn encoding_specials(mut tokenizer: Tokenizer, plain: bool) -> Tokenizer {
    tokenizer.set_encode_special_tokens(plain);
    tokenizer
}

impl Counter {
    /// Loads `tokenizer.json` (or `.json.gz`); a `tokenizer_config.json` beside it provides the
    /// chat template. The id is `<folder name>-<first 8 hex of sha256(tokenizer.json)>`.
    pub fn load(path: &Path, special: SpecialText) -> Result<Self> {
        let raw = std::fs::read(path).map_err(|source| Error::unreadable(path, source))?;
        let bytes = if path.extension().is_some_and(|e| e == "gz") {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .map_err(|e| Error::Input(format!("tokenizer {}: not a valid gzip file: {e}", path.display())))?;
            out
        } else {
            raw
        };
        let digest: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        let short = &digest[..8];
        let folder = path
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty() && n != ".")
            .unwrap_or_else(|| "tokenizer".into());
        let safe: String = folder
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let suffix = if special == SpecialText::Plain { "-plain" } else { "" };
        let chat_template = crate::template::ChatTemplate::find(path.parent().unwrap_or(Path::new(".")))?;
        Ok(Counter {
            bytes,
            special,
            id: format!("{safe}-{short}{suffix}"),
            digest,
            cache_root: crate::store::user_cache::root(),
            path: path.to_path_buf(),
            chat_template,
            exact: false,
            engine: OnceLock::new(),
            whole: OnceLock::new(),
        })
    }

    /// Keeps compiled tokenizers under `root` instead of the user's cache (`None`: nowhere).
    pub fn with_cache_root(mut self, root: Option<PathBuf>) -> Self {
        self.cache_root = root;
        self
    }

    /// `--exact`: counts with `tokenizers` itself, never the fast path (same counts, slower;
    /// for when a count must come from the reference implementation).
    pub fn with_exact(mut self, exact: bool) -> Self {
        self.exact = exact;
        self
    }

    /// Whether `cache`'s counts may be used: with `--exact`, only counts `tokenizers` made.
    pub fn accepts(&self, cache: &TokenCache) -> bool {
        !self.exact || cache.engine.as_deref().is_some_and(|e| e.starts_with(REFERENCE))
    }

    /// Which engine counts (`fast path (byte-level BPE, 3 splits)`, `tokenizers (--exact)`):
    /// parses the tokenizer if it was not yet.
    pub fn engine_label(&self) -> Result<String> {
        Ok(self.engine()?.label())
    }

    /// Stable id naming the analysis folder (`qwen3-1a2b3c4d`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The tokenizer file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The chat template from `tokenizer_config.json`, if any.
    pub fn chat_template(&self) -> Option<&crate::template::ChatTemplate> {
        self.chat_template.as_ref()
    }

    /// The byte offset where each token of `text` ends (no special tokens added), from
    /// `tokenizers` itself: per-token timing needs where tokens end, which the count-only fast
    /// path does not give.
    pub fn token_ends(&self, text: &str) -> Result<Vec<usize>> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        let enc = self
            .whole()?
            .encode(text, false)
            .map_err(|e| Error::Internal(format!("tokenizing: {e}")))?;
        Ok(enc.get_offsets().iter().map(|(_, end)| *end).collect())
    }

    /// Parses the tokenizer (once; later calls are free). Counting does this on demand, so a
    /// re-analysis whose counts are all cached never pays for it; call it first to fail fast
    /// on an invalid file. Without a fast path (`--exact`, or a configuration it does not
    /// take) the whole `tokenizers` counts, so it is built here too: a file only `tokenizers`
    /// rejects fails now, not at the first count.
    pub fn ready(&self) -> Result<()> {
        if self.engine()?.fast.is_none() {
            self.whole()?;
        }
        Ok(())
    }

    /// `tokenizers` over the whole file (built on first use).
    fn whole(&self) -> Result<&Tokenizer> {
        self.whole
            .get_or_init(|| {
                let start = std::time::Instant::now();
                let t = Tokenizer::from_bytes(&self.bytes)
                    .map(|t| encoding_specials(t, self.special == SpecialText::Plain))
                    .map_err(|e| format!("tokenizer {}: not a valid tokenizer.json: {e}", self.path.display()));
                tracing::info!("stage tokenizers built: {:.3} s", start.elapsed().as_secs_f64());
                t
            })
            .as_ref()
            .map_err(|e| Error::Input(e.clone()))
    }

    fn engine(&self) -> Result<&Engine> {
        self.engine
            .get_or_init(|| {
                let start = std::time::Instant::now();
                let e = Engine::load(self);
                let how = match &e {
                    Ok(e) if e.from_cache => "read from the cache",
                    _ => "loaded and self-checked",
                };
                tracing::info!("stage tokenizer {how}: {:.3} s", start.elapsed().as_secs_f64());
                e
            })
            .as_ref()
            .map_err(|e| Error::Input(e.clone()))
    }

    /// Whether counts come from the count-only byte-level BPE path ([`crate::bpe`]) rather
    /// than from `tokenizers` itself (they are identical; see the module).
    pub fn fast_path(&self) -> Result<bool> {
        let e = self.engine()?;
        Ok(e.fast.is_some() && e.fast_ok.load(Ordering::Relaxed))
    }

    /// Tokens in one text.
    pub fn count(&self, text: &str, add_special_tokens: bool) -> Result<u32> {
        let engine = self.engine()?;
        match &engine.fast {
            Some(f) if engine.fast_ok.load(Ordering::Relaxed) => Ok(f.count(text, add_special_tokens)),
            _ => self.count_reference(text, add_special_tokens),
        }
    }

    /// Special tokens the tokenizer adds around a pair of texts (`encode((a, b), true)` minus
    /// both texts' own tokens: `[CLS] a [SEP] b [SEP]` adds 3), as a cross-encoder reranker
    /// encodes a query with each document. From the post-processor of `tokenizer.json`.
    pub fn pair_special_tokens(&self) -> Result<u32> {
        use tokenizers::PostProcessor;
        Ok(self
            .whole()?
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(true) as u32))
    }

    /// Tokens in one text as the `tokenizers` crate counts them (`encode_fast(..).len()`),
    /// whatever the fast path: the reference it is checked against.
    pub fn count_reference(&self, text: &str, add_special_tokens: bool) -> Result<u32> {
        self.whole()?
            .encode_fast(text, add_special_tokens)
            .map(|e| e.len() as u32)
            .map_err(|e| Error::Internal(format!("tokenizing: {e}")))
    }

    /// The longest start of `text` that is at most `tokens` tokens (no special tokens added),
    /// cut where a token ends (and on a character boundary).
    pub fn truncate(&self, text: &str, tokens: u32) -> Result<String> {
        let enc = self
            .whole()?
            .encode(text, false)
            .map_err(|e| Error::Internal(format!("tokenizing: {e}")))?;
        let offsets = enc.get_offsets();
        if offsets.len() <= tokens as usize {
            return Ok(text.to_string());
        }
        let mut end = if tokens == 0 {
            0
        } else {
            offsets[tokens as usize - 1].1.min(text.len())
        };
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        Ok(text[..end].to_string())
    }

    /// Counts many texts in parallel, each distinct `(text, add_special_tokens)` once.
    /// Returns counts in input order. `progress` is bumped by the number of texts done.
    pub fn count_all(&self, texts: &[(&str, bool)], progress: &(dyn Fn(u64) + Sync)) -> Result<Vec<u32>> {
        self.count_all_cached(texts, &mut TokenCache::default(), progress)
    }

    /// Like [`Counter::count_all`], but texts already in `cache` (by hash) are not tokenized
    /// again, and new counts are added to it.
    pub fn count_all_cached(
        &self,
        texts: &[(&str, bool)],
        cache: &mut TokenCache,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Vec<u32>> {
        let keys: Vec<(TextKey, bool)> = texts.par_iter().map(|(t, s)| (text_hash(t), *s)).collect();
        self.count_keyed(
            &keys,
            &|i| Some(Cow::Borrowed(texts[i].0)),
            cache,
            &RunCheck::default(),
            progress,
        )?
        .ok_or_else(|| Error::Internal("a text went missing while counting".into()))
    }

    /// Counts texts named by their cache keys (`(hash, add_special_tokens)`); `text(i)` makes
    /// the `i`-th text and is called only for keys not yet in `cache`, once per distinct key,
    /// on all cores. `Ok(None)` when it cannot (the caller no longer has that text). A run
    /// counted in several calls shares one `check`, so the fast path is checked on a sample of
    /// its texts once, not per call.
    pub fn count_keyed<'t>(
        &self,
        keys: &[(TextKey, bool)],
        text: &(dyn Fn(usize) -> Option<Cow<'t, str>> + Sync),
        cache: &mut TokenCache,
        check: &RunCheck,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Option<Vec<u32>>> {
        let mut missing: HashMap<(TextKey, bool), usize> = HashMap::new();
        for (i, k) in keys.iter().enumerate() {
            if !cache.counts.contains_key(k) {
                missing.entry(*k).or_insert(i);
            }
        }
        let work: Vec<((TextKey, bool), usize)> = missing.into_iter().collect();
        if work.is_empty() {
            // Everything cached: the tokenizer need not even be parsed.
            return Ok(Some(keys.iter().map(|k| cache.counts[k]).collect()));
        }
        self.check_on(&work, text, check)?;
        cache.engine = Some(self.engine_label()?);
        // One text per task: rayon splits the work as threads go idle, so a batch of long
        // texts does not end with one core counting a last chunk of them alone.
        let counted: Option<Vec<Counted>> = work
            .par_iter()
            .map(|(k, i)| {
                let r = text(*i).map(|t| self.count(&t, k.1).map(|n| (*k, n))).transpose();
                progress(1);
                r
            })
            .collect::<Result<Option<Vec<_>>>>()?;
        let Some(counted) = counted else {
            return Ok(None);
        };
        cache.counts.extend(counted);
        Ok(Some(keys.iter().map(|k| cache.counts[k]).collect()))
    }
}

/// How many more of a run's texts the fast path is checked on ([`Counter::count_keyed`]):
/// [`RUN_CHECK_TEXTS`] texts and [`RUN_CHECK_BYTES`] of text per run, at most a third of each
/// from any one call, so a run counted in batches is sampled from several of them and a run of
/// long answers is not checked at the cost of counting it again.
#[derive(Debug)]
pub struct RunCheck {
    texts: std::sync::atomic::AtomicUsize,
    bytes: std::sync::atomic::AtomicUsize,
}

impl Default for RunCheck {
    fn default() -> Self {
        RunCheck {
            texts: std::sync::atomic::AtomicUsize::new(RUN_CHECK_TEXTS),
            bytes: std::sync::atomic::AtomicUsize::new(RUN_CHECK_BYTES),
        }
    }
}

impl RunCheck {
    /// Reserves up to a third of `total`'s budget, and at most `want`, from `left`.
    fn reserve(left: &std::sync::atomic::AtomicUsize, total: usize, want: usize) -> usize {
        let most = want.min(total.div_ceil(3));
        left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| Some(l - l.min(most)))
            .unwrap_or(0)
            .min(most)
    }

    /// Reserves texts to check among `available`.
    fn take(&self, available: usize) -> usize {
        Self::reserve(&self.texts, RUN_CHECK_TEXTS, available)
    }

    /// Reserves bytes of text to check, at most `want`; what is not used is given back.
    fn take_bytes(&self, want: usize) -> usize {
        Self::reserve(&self.bytes, RUN_CHECK_BYTES, want)
    }

    fn give_back_bytes(&self, unused: usize) {
        self.bytes.fetch_add(unused, Ordering::Relaxed);
    }
}

/// Token counts of texts by `(text_hash, add_special_tokens)`, for one tokenizer. Saved in the
/// analysis folder so re-analyzing a run with other SLOs or definitions skips tokenization.
#[derive(Debug, Default, Clone)]
pub struct TokenCache {
    counts: crate::store::tokens::Counts,
    /// The engine that counted the latest additions ([`Counter::engine_label`]), kept in the
    /// file's footer so a re-analysis served from it still says which engine counted.
    pub engine: Option<String>,
}

impl Counter {
    /// Checks the fast path against `tokenizers` on some of the texts about to be counted
    /// (evenly spread, the run's own, not a synthetic corpus), while `check` has texts left: on
    /// any difference it is switched off, with a warning naming the text, and `tokenizers`
    /// counts.
    fn check_on<'t>(
        &self,
        work: &[((TextKey, bool), usize)],
        text: &(dyn Fn(usize) -> Option<Cow<'t, str>> + Sync),
        check: &RunCheck,
    ) -> Result<()> {
        let engine = self.engine()?;
        let Some(fast) = engine.fast.as_ref().filter(|_| engine.fast_ok.load(Ordering::Relaxed)) else {
            return Ok(());
        };
        let take = check.take(work.len());
        if take == 0 {
            return Ok(());
        }
        let Some(source) = engine.source.as_ref() else {
            return Ok(());
        };
        let step = work.len().div_ceil(take).max(1);
        let mut budget = check.take_bytes(usize::MAX);
        let sample: Vec<(bool, Cow<'t, str>)> = work
            .iter()
            .step_by(step)
            .filter_map(|((_, add), i)| Some((*add, text(*i)?)))
            .filter(|(_, t)| {
                // A text too long for what is left of the budget is left out, not cut.
                let fits = t.len() <= budget;
                if fits {
                    budget -= t.len();
                }
                fits
            })
            .collect();
        check.give_back_bytes(budget);
        if sample.is_empty() {
            return Ok(());
        }
        let texts: Vec<&str> = sample.iter().map(|(_, t)| t.as_ref()).collect();
        let reference = source
            .for_texts(&texts)
            .map_err(|e| Error::Internal(format!("building the reference for a run check: {e}")))?;
        let reference = encoding_specials(reference, self.special == SpecialText::Plain);
        let differs = sample.par_iter().find_map_any(|(add, t)| {
            let want = reference.encode_fast(t.as_ref(), *add).ok()?.len() as u32;
            (fast.count(t, *add) != want).then(|| t.chars().take(80).collect::<String>())
        });
        if let Some(start) = differs {
            tracing::warn!(
                "{}: the fast path disagrees with `tokenizers` on a text of this run (starting {start:?}); counting with `tokenizers`",
                self.path.display()
            );
            engine.fast_ok.store(false, Ordering::Relaxed);
        }
        Ok(())
    }
}

impl TokenCache {
    /// Entries cached.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Whether `key` (`(text_hash, add_special_tokens)`) has a count.
    pub fn contains(&self, key: &(TextKey, bool)) -> bool {
        self.counts.contains_key(key)
    }

    /// Reads the cache at `path` ([`crate::store::tokens`]): empty when it cannot be used.
    pub fn load(path: &Path) -> Self {
        let (counts, engine) = crate::store::tokens::read(path);
        TokenCache { counts, engine }
    }

    /// Writes the cache to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::store::tokens::write(path, &self.counts, self.engine.as_deref())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn gpt2() -> Counter {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tokenizers/gpt2/tokenizer.json.gz");
        Counter::load(&p, SpecialText::Special).expect("gpt2 tokenizer loads")
    }

    #[test]
    fn a_compiled_tokenizer_read_back_from_the_cache_counts_like_tokenizers() {
        let dir = tempfile::tempdir().expect("tmp");
        let sp = dir.path().join("sp/tokenizer.json");
        std::fs::create_dir_all(sp.parent().expect("folder")).expect("mkdir");
        std::fs::write(
            &sp,
            serde_json::to_vec(&crate::bpe::tests::sentencepiece_json()).expect("json"),
        )
        .expect("write");
        let fixture = |n: &str| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../fixtures/tokenizers/{n}/tokenizer.json.gz"))
        };
        let mut texts = crate::bpe::tests::held_out_texts();
        texts.extend(["<|im_start|>user\nhi<|im_end|>", "a <|endoftext|> b", "<s> x </s>"].map(String::from));
        let cache = Some(dir.path().join("cache"));
        // Both alphabets (bytes, characters with byte fallback), one and three splits with the
        // look-ahead, NFC, and literal specials counted as text (debug builds are slow: four
        // configurations, not every family in both modes).
        let files = ["gpt2", "qwen3", "deepseek_v3"].map(fixture);
        let configurations = [
            (&files[0], SpecialText::Special),
            (&files[1], SpecialText::Plain),
            (&files[2], SpecialText::Special),
            (&sp, SpecialText::Special),
        ];
        for (path, special) in configurations {
            {
                let load = || {
                    Counter::load(path, special)
                        .expect("load")
                        .with_cache_root(cache.clone())
                };
                let built = load();
                assert!(
                    !built.engine().expect("engine").from_cache,
                    "{path:?}: nothing cached yet"
                );
                let read = load();
                let engine = read.engine().expect("engine");
                assert!(engine.from_cache, "{path:?} {special:?}: read back");
                assert_eq!(read.engine_label().ok(), built.engine_label().ok());
                // Against `tokenizers` itself on a sample, and against the engine as built on all.
                for (i, t) in texts.iter().enumerate() {
                    for add in [false, true] {
                        let n = read.count(t, add).expect("count");
                        assert_eq!(n, built.count(t, add).expect("count"), "{path:?} {special:?}: {t:?}");
                        if i % 32 == 0 {
                            assert_eq!(n, read.count_reference(t, add).expect("reference"), "{path:?}: {t:?}");
                        }
                    }
                }
                // The run checks cut their references from the source read back: they pass.
                let pairs: Vec<(&str, bool)> = texts.iter().map(|t| (t.as_str(), false)).collect();
                read.count_all(&pairs, &|_| {}).expect("count");
                assert!(read.fast_path().expect("engine"), "{path:?}: the run check passed");
            }
        }
        // One file per tokenizer and mode.
        let kept = std::fs::read_dir(dir.path().join("cache").join(COMPILED_DIR)).expect("cache folder");
        assert_eq!(kept.count(), configurations.len());
        // Without a cache nothing is read or written.
        let none = Counter::load(&files[0], SpecialText::Special)
            .expect("load")
            .with_cache_root(None);
        assert!(!none.engine().expect("engine").from_cache);
    }

    #[test]
    fn counts_real_tokens_and_names_the_id() {
        let c = gpt2();
        assert_eq!(c.count("Hello world", false).expect("count"), 2);
        assert!(c.id().starts_with("gpt2-"), "{}", c.id());
        assert_eq!(c.id().len(), "gpt2-".len() + 8);
    }

    #[test]
    fn exact_counts_with_tokenizers_and_refuses_fast_path_caches() {
        let fast = gpt2();
        let exact = gpt2().with_exact(true);
        let texts = crate::bpe::validation_corpus(200, 99);
        let pairs: Vec<(&str, bool)> = texts.iter().map(|t| (t.as_str(), false)).collect();
        let mut fast_cache = TokenCache::default();
        let a = fast.count_all_cached(&pairs, &mut fast_cache, &|_| {}).expect("count");
        let mut exact_cache = TokenCache::default();
        let b = exact
            .count_all_cached(&pairs, &mut exact_cache, &|_| {})
            .expect("count");
        assert_eq!(a, b);
        assert!(fast_cache
            .engine
            .as_deref()
            .is_some_and(|e| e.starts_with("fast path (byte-level BPE")));
        assert_eq!(exact_cache.engine.as_deref(), Some("tokenizers (--exact)"));
        assert!(!exact.fast_path().expect("engine"));
        assert!(!exact.accepts(&fast_cache) && exact.accepts(&exact_cache) && fast.accepts(&fast_cache));
        // The engine survives the cache file.
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("tokens.parquet");
        exact_cache.save(&path).expect("save");
        assert_eq!(TokenCache::load(&path).engine, exact_cache.engine);
    }

    #[test]
    fn literal_special_tokens_default_to_one_token_and_plain_splits_them() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tokenizers/gpt2/tokenizer.json.gz");
        let special = Counter::load(&p, SpecialText::Special).expect("load");
        let plain = Counter::load(&p, SpecialText::Plain).expect("load");
        let text = "a<|endoftext|>b";
        assert_eq!(special.count(text, false).expect("count"), 3);
        assert!(plain.count(text, false).expect("count") > 3);
        assert_ne!(special.id(), plain.id());
    }

    #[test]
    fn count_all_dedupes_and_keeps_order() {
        let c = gpt2();
        let texts = [
            ("one two three", false),
            ("x", false),
            ("one two three", false),
            ("", false),
        ];
        let seen = std::sync::atomic::AtomicU64::new(0);
        let n = c
            .count_all(&texts, &|k| {
                seen.fetch_add(k, std::sync::atomic::Ordering::Relaxed);
            })
            .expect("count");
        assert_eq!(n, vec![3, 1, 3, 0]);
        assert_eq!(
            seen.load(std::sync::atomic::Ordering::Relaxed),
            3,
            "distinct texts only"
        );
    }

    #[test]
    fn a_run_check_that_finds_a_difference_hands_counting_to_tokenizers() {
        // The fast path is GPT-2's; its run check is made to use Qwen3's reference, which
        // counts differently: the check must catch it, switch the fast path off, and the
        // counts must then be GPT-2's own from `tokenizers`.
        let c = gpt2();
        c.ready().expect("engine");
        let qwen = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tokenizers/qwen3/tokenizer.json.gz");
        let qwen = Counter::load(&qwen, SpecialText::Special).expect("qwen3");
        let json: serde_json::Value = serde_json::from_slice(&qwen.bytes).expect("json");
        let mut engine = c.engine.into_inner().expect("built").expect("engine");
        engine.source = Some(crate::reference::Source::of(&json).expect("index"));
        let c = Counter {
            engine: OnceLock::from(Ok(engine)),
            ..gpt2()
        };
        assert!(c.fast_path().expect("engine"));
        let texts = [
            "Hello   world, 12345 tokens!",
            "διαφορετικό κείμενο",
            "import numpy as np",
        ];
        let pairs: Vec<(&str, bool)> = texts.iter().map(|t| (*t, false)).collect();
        let n = c.count_all(&pairs, &|_| {}).expect("count");
        assert!(!c.fast_path().expect("engine"), "the check switched the fast path off");
        assert!(c.engine_label().expect("label").contains("disagreed on a run's text"));
        let whole = gpt2();
        let want: Vec<u32> = texts
            .iter()
            .map(|t| whole.count_reference(t, false).expect("ref"))
            .collect();
        assert_eq!(n, want);
    }

    #[test]
    fn cache_round_trips_and_skips_known_texts() {
        let c = gpt2();
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("tokens.parquet");
        let mut cache = TokenCache::default();
        let first = c
            .count_all_cached(&[("a b c", false), ("d", true)], &mut cache, &|_| {})
            .expect("count");
        cache.save(&path).expect("save");
        let mut loaded = TokenCache::load(&path);
        assert_eq!(loaded.len(), 2);
        let seen = std::sync::atomic::AtomicU64::new(0);
        let again = c
            .count_all_cached(
                &[("a b c", false), ("d", true), ("new text", false)],
                &mut loaded,
                &|k| {
                    seen.fetch_add(k, std::sync::atomic::Ordering::Relaxed);
                },
            )
            .expect("count");
        assert_eq!(&again[..2], &first[..]);
        assert_eq!(
            seen.load(std::sync::atomic::Ordering::Relaxed),
            1,
            "only the new text is tokenized"
        );
        assert!(TokenCache::load(&dir.path().join("missing.parquet")).is_empty());
        // A cache of the 64-bit-key format (before 128-bit keys) is ignored, not misread.
        let old = dir.path().join("old.parquet");
        let batch = arrow_array::RecordBatch::try_from_iter([
            (
                "text_hash",
                std::sync::Arc::new(arrow_array::UInt64Array::from(vec![1u64])) as arrow_array::ArrayRef,
            ),
            (
                "add_special_tokens",
                std::sync::Arc::new(arrow_array::BooleanArray::from(vec![false])) as _,
            ),
            (
                "tokens",
                std::sync::Arc::new(arrow_array::UInt32Array::from(vec![3u32])) as _,
            ),
        ])
        .expect("batch");
        crate::store::parquet::write_parquet(&old, &batch, &[]).expect("write");
        assert!(TokenCache::load(&old).is_empty());
    }

    #[test]
    fn bad_tokenizer_file_names_the_path() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("tokenizer.json");
        std::fs::write(&p, b"{not json").expect("write");
        // Parsed on first use: `ready` (which a first analysis calls before reading events)
        // and any count report it, naming the file.
        let c = Counter::load(&p, SpecialText::Special).expect("read");
        let e = c.ready().expect_err("invalid");
        assert!(e.to_string().contains("tokenizer.json"), "{e}");
        assert!(c.count("x", false).is_err());
        // JSON that only `tokenizers` can judge (no fast path takes it): `ready` still fails,
        // with and without `--exact`.
        std::fs::write(&p, br#"{"version": "1.0", "model": {"type": "NoSuchModel"}}"#).expect("write");
        for exact in [false, true] {
            let c = Counter::load(&p, SpecialText::Special).expect("read").with_exact(exact);
            let e = c.ready().expect_err("invalid for tokenizers");
            assert!(e.to_string().contains("tokenizer.json"), "{e}");
        }
        let missing = Counter::load(&dir.path().join("nope.json"), SpecialText::Special).expect_err("missing");
        assert!(missing.to_string().contains("nope.json"), "{missing}");
    }
}
