//! Text that looks like text and counts exactly: prompts composed of vocabulary words, each of
//! which the tokenizer keeps as one token.
//!
//! vLLM's `random` dataset samples token ids and decodes them; the decoded text re-tokenizes to
//! another length. Here the unit is a *piece* (` word`, ` Word`, `.`, `,`) that counts as one
//! token on its own with the user's tokenizer; pieces are separate pre-tokens for byte-level
//! BPE (a space-led letter run, a punctuation mark), so N pieces are N tokens. That is checked,
//! never assumed: [`Fit`] counts the whole prompt the way the server will and adds or removes
//! pieces at its end until the count is exact.

use rand::seq::IndexedRandom;
use rand::Rng;

use crate::{Error, Result};

/// English words, most frequent first (see the file's header).
const WORDS: &str = include_str!("words.txt");
/// The text a piece is counted after ([`Composer::new`]).
const ANCHOR: &str = "The";
/// Words at least this many of which must be single tokens for the tokenizer to be usable.
const MIN_WORDS: usize = 64;

/// The pieces a tokenizer keeps as single tokens.
#[derive(Debug, Clone)]
pub struct Composer {
    /// ` word` pieces.
    words: Vec<String>,
    /// ` Word` pieces that start a sentence.
    starts: Vec<String>,
    /// `.` and `,` where they are single tokens.
    period: Option<&'static str>,
    comma: Option<&'static str>,
}

impl Composer {
    /// Keeps the words `count` (tokens of a text alone, no special tokens) says are one token.
    pub fn new(count: &(dyn Fn(&str) -> Result<u32> + Sync)) -> Result<Composer> {
        use rayon::prelude::*;
        let vocabulary: Vec<&str> = WORDS.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
        // A piece is one token where it is used: after other text. Counting it alone would
        // refuse every word of a SentencePiece-style tokenizer, whose normalizer prepends `▁`
        // to the text (` word` alone is `▁▁word`, two tokens; after a word it is `▁word`).
        // For byte-level BPE the piece is its own pre-token either way.
        let anchor = count(ANCHOR)?;
        let single = |piece: &str| count(&format!("{ANCHOR}{piece}")).map(|n| n == anchor + 1);
        let words: Vec<String> = vocabulary
            .par_iter()
            .map(|w| {
                let p = format!(" {w}");
                single(&p).map(|ok| ok.then_some(p))
            })
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .collect();
        if words.len() < MIN_WORDS {
            return Err(Error::Input(format!(
                "the tokenizer keeps only {} of {} common English words as one token (at least {MIN_WORDS} are needed to compose exact prompts)",
                words.len(),
                vocabulary.len()
            )));
        }
        let starts: Vec<String> = words[..words.len().min(400)]
            .par_iter()
            .map(|w| {
                let mut cs = w.chars();
                let cap: String = cs
                    .next()
                    .into_iter()
                    .chain(cs.next().map(|c| c.to_ascii_uppercase()))
                    .chain(cs)
                    .collect();
                single(&cap).map(|ok| ok.then_some(cap))
            })
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .collect();
        let period = if single(".")? { Some(".") } else { None };
        let comma = if single(",")? { Some(",") } else { None };
        Ok(Composer {
            words,
            starts,
            period,
            comma,
        })
    }

    /// Single-token words found.
    pub fn vocabulary(&self) -> usize {
        self.words.len()
    }

    /// `n` pieces of sentence-like text (`n` tokens if the tokenizer adds them up, which
    /// [`Fit`] checks). The first piece is space-led, so texts concatenate on piece boundaries.
    pub fn pieces<'c, R: Rng>(&'c self, rng: &mut R, n: usize) -> Vec<&'c str> {
        let mut out = Vec::with_capacity(n);
        let mut left_in_sentence = 0usize;
        let mut after_comma = false;
        while out.len() < n {
            if left_in_sentence == 0 {
                left_in_sentence = rng.random_range(6..=18);
                let start = self.starts.choose(rng).or_else(|| self.words.choose(rng));
                out.extend(start.map(String::as_str));
                continue;
            }
            left_in_sentence -= 1;
            if left_in_sentence == 0 {
                match self.period {
                    Some(p) => out.push(p),
                    None => out.extend(self.words.choose(rng).map(String::as_str)),
                }
                continue;
            }
            // Never two marks in a row: `,,` is one pre-token, not two tokens.
            match self.comma {
                Some(c) if left_in_sentence > 2 && !after_comma && rng.random_ratio(1, 12) => {
                    out.push(c);
                    after_comma = true;
                }
                _ => {
                    out.extend(self.words.choose(rng).map(String::as_str));
                    after_comma = false;
                }
            }
        }
        out.truncate(n);
        out
    }

    /// One single-token word, for adjusting a count by one.
    pub fn word<R: Rng>(&self, rng: &mut R) -> &str {
        self.words.choose(rng).map_or(" the", String::as_str)
    }
}

/// Texts made of a fixed head and a tail of pieces, adjusted until a count is exact.
pub struct Fit<'c> {
    composer: &'c Composer,
    /// Rounds of count-and-adjust before giving up.
    pub max_rounds: usize,
}

impl<'c> Fit<'c> {
    /// A fitter drawing extra words from `composer`.
    pub fn new(composer: &'c Composer) -> Self {
        Fit {
            composer,
            max_rounds: 32,
        }
    }

    /// `head` followed by `tail`, with pieces appended or removed at the end until `count` of
    /// the text is `target`. Returns the text and the tail it ended with, or `None` if it does
    /// not converge (the caller names the row). `tail` is never cut below `keep` pieces.
    pub fn fit<R: Rng>(
        &self,
        rng: &mut R,
        head: &str,
        mut tail: Vec<&'c str>,
        keep: usize,
        target: u32,
        count: &dyn Fn(&str) -> Result<u32>,
    ) -> Result<Option<(String, Vec<&'c str>)>> {
        let mut text = String::with_capacity(head.len() + tail.len() * 8);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..self.max_rounds {
            // A text never ends in a mark: what follows it (a template's `<|im_end|>`) could
            // join it into one pre-token and make the count depend on the ending.
            while tail.len() > keep && tail.last().is_some_and(|p| !p.starts_with(' ')) {
                tail.pop();
            }
            text.clear();
            text.push_str(head);
            tail.iter().for_each(|p| text.push_str(p));
            let n = count(&text)?;
            if !seen.insert((n, tail.len())) {
                // Back where it was: the tokenizer does not add these pieces up here; go on
                // from another word.
                tail.push(self.composer.word(rng));
                continue;
            }
            match n.cmp(&target) {
                std::cmp::Ordering::Equal => return Ok(Some((text, tail))),
                std::cmp::Ordering::Less => {
                    for _ in 0..target - n {
                        tail.push(self.composer.word(rng));
                    }
                }
                std::cmp::Ordering::Greater => {
                    let drop = (n - target) as usize;
                    if tail.len() < keep + drop {
                        return Ok(None);
                    }
                    tail.truncate(tail.len() - drop);
                }
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn pieces_are_sentences_of_single_token_words() {
        let c = crate::tokenize::tests::gpt2();
        let count = |t: &str| c.count(t, false);
        let composer = Composer::new(&count).expect("gpt2 has the words");
        assert!(composer.vocabulary() > 1500, "{}", composer.vocabulary());
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let p = composer.pieces(&mut rng, 300);
        let text = p.concat();
        assert!(text.starts_with(' ') && text.contains(". "), "{text}");
        assert_eq!(c.count_reference(&text, false).expect("count"), 300);
        let fit = Fit::new(&composer);
        let out = fit
            .fit(&mut rng, "Question:", p, 0, 123, &|t| c.count(t, false))
            .expect("counts")
            .expect("converges")
            .0;
        assert_eq!(c.count_reference(&out, false).expect("count"), 123);
        assert!(out.starts_with("Question: "));
    }
}
