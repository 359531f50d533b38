//! Per-token timing: every output token gets the time of the output event that delivered its
//! last byte, so one recording answers what each peer calls inter-token latency when a chunk
//! carries several tokens (speculative decoding, stream intervals, parsers that batch).
//!
//! Tokens are the tokenizer's, over the content and reasoning channels (tool-call arguments
//! are not timed per token), found with `tokenizers`' byte offsets; a chunk that ends inside a
//! token completes no token, and its time is not a token's.

use recap_schemas::summary::ItlDefinition;

/// Tokens completed by each output event: a token counts for the first event whose
/// cumulative bytes (`ends[i]`, content and reasoning) reach the token's end offset.
pub fn tokens_per_event(ends: &[(u32, u32)], content_token_ends: &[usize], reasoning_token_ends: &[usize]) -> Vec<u32> {
    let mut per = vec![0_u32; ends.len()];
    for (token_ends, channel) in [(content_token_ends, 0), (reasoning_token_ends, 1)] {
        let mut event = 0;
        for &end in token_ends {
            let reach = |i: usize| {
                let (c, r) = ends[i];
                (if channel == 0 { c } else { r }) as usize
            };
            while event < ends.len() && reach(event) < end {
                event += 1;
            }
            // A token past the last event's bytes cannot be: the texts are those bytes.
            if let Some(n) = per.get_mut(event) {
                *n += 1;
            }
        }
    }
    per
}

/// The output events that completed tokens: `(time, tokens)`, in order.
fn token_events(times: &[i64], per_event: &[u32]) -> Vec<(i64, u32)> {
    times
        .iter()
        .zip(per_event)
        .filter(|(_, k)| **k > 0)
        .map(|(t, k)| (*t, *k))
        .collect()
}

/// One request's ITL samples (ns) under `def` (`docs/metrics.md`, "Per-token timing"): with
/// `T_j`, `k_j` the time and token count of the j-th token-completing event and `g_j = T_j -
/// T_(j-1)`: `split` gives `k_j` samples `g_j / k_j` for j >= 2; `divided` one sample
/// `g_j / k_j`; `first-gets-gap` gives each token after the first the gap to the token before
/// it (`g_j` for the first token of an event, 0 for the others); `mean` one sample
/// `(T_last - T_1) / (N - 1)`; `chunk` none (the chunk gaps are `icl_ms`).
pub fn itl_samples(times: &[i64], per_event: &[u32], def: ItlDefinition) -> Vec<i64> {
    let ev = token_events(times, per_event);
    let gaps = || ev.windows(2).map(|w| (w[1].0 - w[0].0, w[1].1));
    match def {
        ItlDefinition::Chunk => Vec::new(),
        ItlDefinition::Split => gaps()
            .flat_map(|(g, k)| std::iter::repeat_n(g / i64::from(k), k as usize))
            .collect(),
        ItlDefinition::Divided => gaps().map(|(g, k)| g / i64::from(k)).collect(),
        ItlDefinition::FirstGetsGap => {
            let first_extra = ev.first().map_or(0, |(_, k)| k.saturating_sub(1) as usize);
            std::iter::repeat_n(0, first_extra)
                .chain(gaps().flat_map(|(g, k)| std::iter::once(g).chain(std::iter::repeat_n(0, k as usize - 1))))
                .collect()
        }
        ItlDefinition::Mean => {
            let n: u32 = ev.iter().map(|(_, k)| k).sum();
            match (ev.first(), ev.last()) {
                (Some(f), Some(l)) if n > 1 => vec![(l.0 - f.0) / i64::from(n - 1)],
                _ => Vec::new(),
            }
        }
    }
}

/// The time of the event that completed the second output token.
pub fn second_token_ns(times: &[i64], per_event: &[u32]) -> Option<i64> {
    let mut seen = 0;
    for (t, k) in times.iter().zip(per_event) {
        seen += k;
        if seen >= 2 {
            return Some(*t);
        }
    }
    None
}

/// Output tokens per token-completing event.
pub fn tokens_per_chunk(per_event: &[u32]) -> Option<f64> {
    let events = per_event.iter().filter(|k| **k > 0).count();
    (events > 0).then(|| f64::from(per_event.iter().sum::<u32>()) / events as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_definition_by_hand() {
        // Events at 100, 130, 150, 190 ns completing 2, 3, 0 (part of a token), 1 tokens.
        let times = [100, 130, 150, 190];
        let per = [2, 3, 0, 1];
        assert_eq!(itl_samples(&times, &per, ItlDefinition::Split), [10, 10, 10, 60]);
        assert_eq!(itl_samples(&times, &per, ItlDefinition::Divided), [10, 60]);
        assert_eq!(
            itl_samples(&times, &per, ItlDefinition::FirstGetsGap),
            [0, 30, 0, 0, 60]
        );
        // (190 - 100) / (6 - 1) = 18.
        assert_eq!(itl_samples(&times, &per, ItlDefinition::Mean), [18]);
        assert!(itl_samples(&times, &per, ItlDefinition::Chunk).is_empty());
        assert_eq!(second_token_ns(&times, &per), Some(100));
        assert_eq!(second_token_ns(&[5, 9], &[1, 1]), Some(9));
        assert_eq!(tokens_per_chunk(&per), Some(2.0));
    }

    #[test]
    fn a_token_split_across_chunks_belongs_to_the_chunk_with_its_last_byte() {
        // Content "Hello world" in chunks "Hel" | "lo wo" | "rld": tokens end at 5 ("Hello")
        // and 11 (" world"). Cumulative content ends 3, 8, 11; no reasoning.
        let ends = [(3, 0), (8, 0), (11, 0)];
        assert_eq!(tokens_per_event(&ends, &[5, 11], &[]), [0, 1, 1]);
        // Reasoning first, then content, in separate events.
        let ends = [(0, 4), (0, 9), (6, 9)];
        assert_eq!(tokens_per_event(&ends, &[6], &[4, 9]), [1, 1, 1]);
    }
}
