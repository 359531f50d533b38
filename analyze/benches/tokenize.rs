//! Token-counting throughput: `analyze`'s counter against the `tokenizers` crate encoding the
//! same texts in a plain loop (1 thread) and with rayon `par_iter` (all threads), in one
//! invocation, so the ratios hold on a noisy machine. Then the exactness check of the
//! count-only BPE path: 20,000 texts of `bpe::validation_corpus`, both special-text modes,
//! with and without added special tokens, counted by both engines; any difference fails.
//!
//! `cargo bench --workspace --bench tokenize -- [TOKENIZER] [TEXTS] [BYTES_PER_TEXT]`
//! (default: the bundled Qwen3 tokenizer, 5,000 distinct texts of about 3 KB).

use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use recap_analyze::tokenize::{Counter, SpecialText};

const WORDS: &[&str] = &[
    "the",
    "model",
    "server",
    "latency",
    "throughput",
    "request",
    "token",
    "stream",
    "batch",
    "cache",
    "memory",
    "kernel",
    "attention",
    "prefill",
    "decode",
    "schedule",
    "queue",
    "answer",
    "question",
    "river",
    "mountain",
    "because",
    "however",
    "therefore",
    "quickly",
    "carefully",
    "measure",
    "record",
    "analyze",
    "percentile",
    "2024",
    "3.14",
    "GPU",
    "CPU",
    "naïve",
    "café",
    "über",
    "日本語",
    "données",
    "x=1;",
    "fn main()",
    "{ }",
];

fn texts(n: usize, bytes: usize) -> Vec<String> {
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..n)
        .map(|i| {
            let mut s = format!("Text {i}: ");
            while s.len() < bytes {
                s.push_str(WORDS[(next() % WORDS.len() as u64) as usize]);
                s.push(if next() % 11 == 0 { '\n' } else { ' ' });
            }
            s
        })
        .collect()
}

fn load_plain(path: &Path) -> tokenizers::Tokenizer {
    recap_tests::sim::load_tokenizer(path).expect("tokenizer")
}

/// Tokens in `texts` by the `tokenizers` crate with rayon `par_iter`: the baseline.
fn par_encode(tokenizer: &tokenizers::Tokenizer, texts: &[String]) -> u64 {
    texts
        .par_iter()
        .map(|s| tokenizer.encode_fast(s.as_str(), false).expect("encode").len() as u64)
        .sum()
}

/// Tokens in `texts` by `analyze`'s counter.
fn analyze_count(counter: &Counter, texts: &[(&str, bool)]) -> u64 {
    counter
        .count_all(texts, &|_| {})
        .expect("count")
        .iter()
        .map(|c| u64::from(*c))
        .sum()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tokenizers/qwen3/tokenizer.json.gz");
    let path = args.first().map(PathBuf::from).unwrap_or(default);
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5000);
    let size: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3000);
    let corpus = texts(n, size);
    let mb = corpus.iter().map(String::len).sum::<usize>() as f64 / 1e6;
    let plain = load_plain(&path);
    let counter = Counter::load(&path, SpecialText::Special).expect("counter");
    let threads = rayon::current_num_threads();
    println!(
        "{} texts, {mb:.1} MB, tokenizer {}, {threads} threads",
        corpus.len(),
        path.display()
    );

    // Warm up once, then alternate the contenders for three rounds and keep each one's best
    // time, so neither benefits from running second on a warm machine.
    let _ = plain.encode_fast(corpus[0].as_str(), false);
    let refs: Vec<(&str, bool)> = corpus.iter().map(|s| (s.as_str(), false)).collect();
    let (mut loop_s, mut par_s, mut ours_s) = (f64::INFINITY, f64::INFINITY, f64::INFINITY);
    let (mut loop_tokens, mut par_tokens, mut ours) = (0u64, 0u64, 0u64);
    for _ in 0..3 {
        let t = Instant::now();
        loop_tokens = corpus
            .iter()
            .map(|s| plain.encode_fast(s.as_str(), false).expect("encode").len() as u64)
            .sum();
        loop_s = loop_s.min(t.elapsed().as_secs_f64());

        let t = Instant::now();
        par_tokens = par_encode(&plain, &corpus);
        par_s = par_s.min(t.elapsed().as_secs_f64());

        let t = Instant::now();
        ours = analyze_count(&counter, &refs);
        ours_s = ours_s.min(t.elapsed().as_secs_f64());
    }

    assert_eq!(loop_tokens, par_tokens);
    assert_eq!(loop_tokens, ours, "identical counts");
    let rate = |s: f64| loop_tokens as f64 / s;
    println!(
        "plain loop, 1 thread      {:>12.0} tokens/s  {:>6.2} MB/s",
        rate(loop_s),
        mb / loop_s
    );
    println!(
        "rayon par_iter, {threads} thr     {:>12.0} tokens/s  {:>6.2} MB/s",
        rate(par_s),
        mb / par_s
    );
    println!(
        "analyze count_all          {:>12.0} tokens/s  {:>6.2} MB/s",
        rate(ours_s),
        mb / ours_s
    );
    println!("analyze engine: {}", counter.engine_label().expect("engine"));
    println!("ratio analyze / plain loop      {:.2}x", loop_s / ours_s);
    println!("ratio analyze / rayon par_iter  {:.2}x", par_s / ours_s);

    // The word-list texts above repeat a few dozen words, so the fast path's per-thread memo
    // of pre-tokens nearly always hits. The validation corpus (many scripts, random code
    // points, emoji, code) is the opposite case: most pre-tokens are new.
    let corpus = recap_analyze::bpe::validation_corpus(20_000, 0xB7);
    let varied: Vec<(&str, bool)> = corpus.iter().map(|s| (s.as_str(), false)).collect();
    let (mut par_v, mut ours_v) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..3 {
        let t = Instant::now();
        let a = par_encode(&plain, &corpus);
        par_v = par_v.min(t.elapsed().as_secs_f64());
        let fresh = Counter::load(&path, SpecialText::Special).expect("counter");
        fresh.ready().expect("engine");
        let t = Instant::now();
        let b = analyze_count(&fresh, &varied);
        ours_v = ours_v.min(t.elapsed().as_secs_f64());
        assert_eq!(a, b, "identical counts on the varied corpus");
    }
    let vmb = corpus.iter().map(String::len).sum::<usize>() as f64 / 1e6;
    println!(
        "varied corpus ({} texts, {vmb:.1} MB, memo empty at start): rayon par_iter {:.2} MB/s, analyze {:.2} MB/s, ratio {:.2}x",
        corpus.len(),
        vmb / par_v,
        vmb / ours_v,
        par_v / ours_v
    );
    for special in [SpecialText::Special, SpecialText::Plain] {
        let c = Counter::load(&path, special).expect("counter");
        let checked: Vec<usize> = corpus
            .par_iter()
            .map(|t| {
                [false, true]
                    .iter()
                    .filter(|&&add| c.count(t, add).expect("count") != c.count_reference(t, add).expect("count"))
                    .count()
            })
            .collect();
        let differ = checked.iter().filter(|d| **d > 0).count();
        println!(
            "exactness, special text {special:?}: {} of {} texts x 2 (with/without added special tokens) identical to tokenizers",
            corpus.len() - differ,
            corpus.len()
        );
        assert_eq!(differ, 0, "the fast path must give identical counts");
    }

    // Worst cases for a BPE counter: one 100,000-character word (merges), long whitespace,
    // emoji, invalid UTF-8 (as the replacement character the capture stores), CJK. Each is
    // counted by both engines; the counts must be equal and the time is printed.
    let worst: Vec<(&str, String)> = vec![
        ("100k x 'a'", "a".repeat(100_000)),
        ("100k spaces then a word", " ".repeat(100_000) + "word"),
        ("25k emoji", "\u{1F600}".repeat(25_000)),
        ("100k U+FFFD", "\u{FFFD}".repeat(100_000)),
        ("100k CJK", "語".repeat(100_000)),
        ("100k digits", "7".repeat(100_000)),
    ];
    for (name, text) in &worst {
        let t = Instant::now();
        let reference = plain.encode_fast(text.as_str(), false).expect("encode").len() as u32;
        let ref_s = t.elapsed().as_secs_f64();
        let fresh = Counter::load(&path, SpecialText::Special).expect("counter");
        fresh.ready().expect("engine");
        let t = Instant::now();
        let ours = fresh.count(text, false).expect("count");
        let ours_s = t.elapsed().as_secs_f64();
        println!(
            "worst case {name:24}: tokenizers {reference} tokens in {:.3} s, analyze {ours} in {:.3} s",
            ref_s, ours_s
        );
        assert_eq!(reference, ours, "worst case {name}: identical counts");
    }
}
