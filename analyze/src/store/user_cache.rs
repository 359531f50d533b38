//! The user's cache folder, and the files in it any analysis may reuse: what a tokenizer
//! compiles to ([`crate::tokenize`]), so the second analysis with a tokenizer does not parse
//! and self-check it again.
//!
//! Root: `$RECAP_CACHE`, else `$XDG_CACHE_HOME/recap`, else `~/.cache/recap`. A file here is a
//! cache under the one failure policy of [`crate::store`]: one that is missing, stale, cut
//! short or damaged is rebuilt, one that cannot be written is skipped. Each file names the key
//! it was built for and carries a checksum of its body, both checked on every read, so a file
//! is used only for exactly what made it.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Environment variable naming the cache root (`off` keeps nothing).
pub const ROOT_VAR: &str = "RECAP_CACHE";
/// First bytes of every file written here.
const MAGIC: &[u8; 8] = b"RECAPC01";
/// Files of one name prefix (one tokenizer in one mode) kept for other builds of `analyze`.
const KEEP_OTHERS: usize = 2;

/// The cache root, or `None` when there is none (no home folder) or it is turned off.
pub fn root() -> Option<PathBuf> {
    match std::env::var_os(ROOT_VAR) {
        Some(d) if d == "off" => None,
        Some(d) if !d.is_empty() => Some(PathBuf::from(d)),
        _ => std::env::var_os("XDG_CACHE_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|c| c.join("recap")),
    }
}

/// Identifies the running `analyze` build: its executable's size and modification time (a
/// rebuild changes them) and version. What a cache entry computed with one build (a compiled
/// tokenizer and its self-check) is trusted only by that build.
pub fn build_key() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let meta = std::fs::metadata(&exe).ok()?;
    let mtime = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(format!(
        "{} {} {}.{:09}",
        env!("CARGO_PKG_VERSION"),
        meta.len(),
        mtime.as_secs(),
        mtime.subsec_nanos()
    ))
}

/// 64 bits of XXH3 (the 128-bit variant, which the workspace already builds).
fn checksum(bytes: &[u8]) -> u64 {
    twox_hash::XxHash3_128::oneshot(bytes) as u64
}

/// A cache file's path: `<root>/<folder>/<prefix>-<hash of key>.bin`.
pub fn entry_path(root: &Path, folder: &str, prefix: &str, key: &str) -> PathBuf {
    let h = checksum(key.as_bytes());
    root.join(folder).join(format!("{prefix}-{h:016x}.bin"))
}

/// `decode` of the body of the file at `path` when it was written for `key` and is whole;
/// else `None` (said at debug level: a miss is normal).
pub fn read<T>(path: &Path, key: &str, decode: impl FnOnce(&[u8]) -> Option<T>) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    let body = split(&bytes, key);
    if body.is_none() {
        tracing::debug!("{}: written for another key, or damaged: rebuilt", path.display());
    }
    // Decoded in place: a compiled tokenizer is ~10 MB, and a copy of it cost a few ms.
    decode(body?)
}

/// The body of `bytes` if they are a whole file for `key`.
fn split<'a>(bytes: &'a [u8], key: &str) -> Option<&'a [u8]> {
    let rest = bytes.strip_prefix(MAGIC)?;
    let (len, rest) = rest.split_first_chunk::<8>()?;
    let len = usize::try_from(u64::from_le_bytes(*len)).ok()?;
    let (written_key, rest) = rest.split_at_checked(len)?;
    let (sum, body) = rest.split_first_chunk::<8>()?;
    (written_key == key.as_bytes() && u64::from_le_bytes(*sum) == checksum(body)).then_some(body)
}

/// Writes `body` for `key` at `path` (whole or not at all: a temporary file renamed), and
/// removes files of the same prefix beyond the [`KEEP_OTHERS`] newest, so rebuilding `analyze`
/// does not grow the folder. A failure is a warning: the next analysis builds it again.
pub fn write(path: &Path, prefix: &str, key: &str, body: &[u8]) {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let r = (|| -> std::io::Result<()> {
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        f.write_all(MAGIC)?;
        f.write_all(&(key.len() as u64).to_le_bytes())?;
        f.write_all(key.as_bytes())?;
        f.write_all(&checksum(body).to_le_bytes())?;
        f.write_all(body)?;
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = r {
        let _ = std::fs::remove_file(&tmp);
        tracing::warn!("cache {} not written: {e}", path.display());
        return;
    }
    prune(path, prefix);
}

/// Removes files of `prefix` beside `kept` beyond the [`KEEP_OTHERS`] most recently written.
fn prune(kept: &Path, prefix: &str) {
    let Some(dir) = kept.parent() else { return };
    let Ok(list) = std::fs::read_dir(dir) else { return };
    let mut others: Vec<(std::time::SystemTime, PathBuf)> = list
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p != kept
                && p.extension().is_some_and(|x| x == "bin")
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{prefix}-")))
        })
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .collect();
    others.sort_by_key(|o| std::cmp::Reverse(o.0));
    for (_, p) in others.into_iter().skip(KEEP_OTHERS) {
        let _ = std::fs::remove_file(p);
    }
}

/// Serde for long tables of fixed-size numbers in a cache body (`#[serde(with = "packed")]`):
/// one little-endian byte string instead of one varint per number, so that reading a
/// compiled tokenizer's 150k-entry tables back is a copy, not 500k decoded numbers (half of
/// what reading it cost).
pub(crate) mod packed {
    use serde::{Deserializer, Serializer};

    /// A value of fixed size in bytes.
    pub trait Fixed: Sized {
        const SIZE: usize;
        fn put(&self, out: &mut Vec<u8>);
        /// From exactly `SIZE` bytes.
        fn get(b: &[u8]) -> Self;
    }

    macro_rules! fixed_int {
        ($($t:ty),*) => {$(
            impl Fixed for $t {
                const SIZE: usize = std::mem::size_of::<$t>();
                fn put(&self, out: &mut Vec<u8>) {
                    out.extend_from_slice(&self.to_le_bytes());
                }
                fn get(b: &[u8]) -> Self {
                    let mut a = [0; std::mem::size_of::<$t>()];
                    a.copy_from_slice(b);
                    <$t>::from_le_bytes(a)
                }
            }
        )*};
    }
    fixed_int!(u8, u32, u64);

    impl<A: Fixed, B: Fixed> Fixed for (A, B) {
        const SIZE: usize = A::SIZE + B::SIZE;
        fn put(&self, out: &mut Vec<u8>) {
            self.0.put(out);
            self.1.put(out);
        }
        fn get(b: &[u8]) -> Self {
            (A::get(&b[..A::SIZE]), B::get(&b[A::SIZE..]))
        }
    }

    impl<T: Fixed, const N: usize> Fixed for [T; N] {
        const SIZE: usize = T::SIZE * N;
        fn put(&self, out: &mut Vec<u8>) {
            self.iter().for_each(|t| t.put(out));
        }
        fn get(b: &[u8]) -> Self {
            std::array::from_fn(|i| T::get(&b[i * T::SIZE..(i + 1) * T::SIZE]))
        }
    }

    pub fn serialize<T: Fixed, S: Serializer>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
        let mut out = Vec::with_capacity(v.len() * T::SIZE);
        v.iter().for_each(|t| t.put(&mut out));
        s.serialize_bytes(&out)
    }

    pub fn deserialize<'de, T: Fixed, D: Deserializer<'de>>(d: D) -> Result<Vec<T>, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<T: Fixed> serde::de::Visitor<'_> for Visit<T> {
            type Value = Vec<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(f, "a byte string of {}-byte values", T::SIZE)
            }
            fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> Result<Vec<T>, E> {
                if !b.len().is_multiple_of(T::SIZE) {
                    return Err(E::invalid_length(b.len(), &self));
                }
                Ok(b.chunks_exact(T::SIZE).map(T::get).collect())
            }
        }
        d.deserialize_bytes(Visit(std::marker::PhantomData))
    }

    /// A hash map as its entries, packed; read back into a map of exactly their number
    /// (serde's own grows it from a capped guess, rehashing on the way).
    pub mod map {
        use std::collections::HashMap;
        use std::hash::{BuildHasher, Hash};

        use serde::{Deserializer, Serializer};

        use super::Fixed;

        pub fn serialize<K: Fixed, V: Fixed, H, S: Serializer>(m: &HashMap<K, V, H>, s: S) -> Result<S::Ok, S::Error> {
            let mut out = Vec::with_capacity(m.len() * <(K, V)>::SIZE);
            for (k, v) in m {
                k.put(&mut out);
                v.put(&mut out);
            }
            s.serialize_bytes(&out)
        }

        pub fn deserialize<'de, K, V, H, D>(d: D) -> Result<HashMap<K, V, H>, D::Error>
        where
            K: Fixed + Eq + Hash,
            V: Fixed,
            H: BuildHasher + Default,
            D: Deserializer<'de>,
        {
            let entries: Vec<(K, V)> = super::deserialize(d)?;
            let mut m = HashMap::with_capacity_and_hasher(entries.len(), H::default());
            m.extend(entries);
            Ok(m)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_read_back_only_for_its_key_and_whole() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = entry_path(dir.path(), "t", "abc-special", "key 1");
        write(&path, "abc-special", "key 1", b"body bytes");
        assert_eq!(
            read(&path, "key 1", |b| Some(b.to_vec())).as_deref(),
            Some(&b"body bytes"[..])
        );
        assert_eq!(read(&path, "key 2", |b| Some(b.to_vec())), None, "another key");
        let whole = std::fs::read(&path).expect("read");
        for cut in [0, 8, 20, whole.len() - 1] {
            std::fs::write(&path, &whole[..cut]).expect("write");
            assert_eq!(read(&path, "key 1", |b| Some(b.to_vec())), None, "cut at {cut}");
        }
        let mut flipped = whole.clone();
        *flipped.last_mut().expect("bytes") ^= 1;
        std::fs::write(&path, &flipped).expect("write");
        assert_eq!(read(&path, "key 1", |b| Some(b.to_vec())), None, "a flipped body bit");
    }

    #[test]
    fn packed_tables_read_back_equal_and_a_ragged_one_is_refused() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Tables {
            #[serde(with = "packed")]
            keys: Vec<[(u8, u64); 2]>,
            #[serde(with = "packed::map")]
            map: std::collections::HashMap<u64, (u32, u32)>,
        }
        let t = Tables {
            keys: vec![[(1, u64::MAX), (8, 0x0102_0304_0506_0708)], [(0, 0), (3, 7)]],
            map: [(u64::MAX - 1, (0, u32::MAX)), (5, (6, 7))].into_iter().collect(),
        };
        let bytes = postcard::to_stdvec(&t).expect("encode");
        // One byte string each (a length and 36 bytes; 16 per map entry), not a varint a number.
        assert_eq!(bytes.len(), 1 + 2 * 18 + 1 + 2 * 16, "{bytes:?}");
        assert_eq!(postcard::from_bytes::<Tables>(&bytes).expect("decode"), t);
        // 35 bytes are not a whole number of 18-byte entries.
        let ragged: Vec<u8> = [&[35u8][..], &bytes[1..36], &bytes[37..]].concat();
        assert!(postcard::from_bytes::<Tables>(&ragged).is_err());
    }

    #[test]
    fn other_builds_beyond_two_are_removed() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut paths = Vec::new();
        for build in 0..5 {
            let key = format!("build {build}");
            let path = entry_path(dir.path(), "t", "abc-plain", &key);
            write(&path, "abc-plain", &key, b"x");
            // Distinct modification times, oldest first.
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000 + build);
            std::fs::File::options()
                .write(true)
                .open(&path)
                .expect("open")
                .set_modified(t)
                .expect("set mtime");
            paths.push(path);
        }
        let other = entry_path(dir.path(), "t", "abc-special", "build 0");
        write(&other, "abc-special", "build 0", b"y");
        let left: Vec<bool> = paths.iter().map(|p| p.exists()).collect();
        // The last write kept itself and the two newest of the others; another prefix is untouched.
        assert_eq!(left, [false, false, true, true, true]);
        assert!(other.exists());
    }
}
