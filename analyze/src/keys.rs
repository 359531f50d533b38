//! Content keys: the names analyze gives texts so that work done on a text (its token count,
//! its place in the caches) is found again without the text.
//!
//! A key is a value, not a file: the storage layer ([`crate::store`]) writes keys, the
//! tokenizer ([`crate::tokenize`]) looks counts up by them, reassembly ([`crate::reassemble`])
//! hashes each output text once.

/// A text's key in the caches: 128-bit XXH3, so that two different texts of a run (or of the
/// hundreds of runs one cache folder may see) practically never share a key (a 64-bit key
/// reaches even odds of one collision around 5 billion texts; 128 bits never will).
pub type TextKey = u128;

/// XXH3-128 of `text`: a stable key for identical texts (and for the token-count cache).
pub fn text_hash(text: &str) -> TextKey {
    twox_hash::XxHash3_128::oneshot(text.as_bytes())
}

/// A key derived from another under a `seed` (another key), e.g. a chat input's count key
/// from its messages' key and the template that renders them: XXH3-128 of both keys' bytes.
pub fn derived_key(seed: TextKey, key: TextKey) -> TextKey {
    let mut bytes = [0_u8; 32];
    bytes[..16].copy_from_slice(&seed.to_le_bytes());
    bytes[16..].copy_from_slice(&key.to_le_bytes());
    twox_hash::XxHash3_128::oneshot(&bytes)
}

/// A key as the caches store it (`FixedSizeBinary(16)`, little-endian).
pub fn key_bytes(key: TextKey) -> [u8; 16] {
    key.to_le_bytes()
}

/// A stored key back; `None` for a value of another width.
pub fn key_from_bytes(bytes: &[u8]) -> Option<TextKey> {
    Some(TextKey::from_le_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_survives_its_stored_form_and_derived_keys_depend_on_both_parts() {
        let (a, b) = (text_hash("a"), text_hash("b"));
        assert_eq!(key_from_bytes(&key_bytes(a)), Some(a));
        assert_eq!(key_from_bytes(&[0; 15]), None);
        assert_ne!(derived_key(a, b), derived_key(b, a));
        // XXH3-128 of the empty input, from the reference implementation's test vectors.
        assert_eq!(text_hash(""), 0x99aa06d3014798d86001c324468d497f);
    }
}
