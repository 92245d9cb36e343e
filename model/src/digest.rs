//! Content addresses. Our own tools hash with BLAKE3 because snapshots hash
//! whole working trees on every submit and BLAKE3 is several times faster;
//! SHA-256 is accepted as well because it is what Bazel-family clients use
//! by default. The function is part of the address: the same bytes under
//! BLAKE3 and under SHA-256 are two different blobs.

use std::fmt;

use sha2::Digest as _;
use thiserror::Error;

/// The hash functions this cache serves. Both produce 32-byte hashes, so a
/// [`Digest`] stays `Copy` and fixed-size.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum DigestFunction {
    /// BLAKE3: what buildfleet's own tools hash with.
    Blake3,
    /// SHA-256: the REAPI default of Bazel-family clients.
    Sha256,
}

impl DigestFunction {
    /// Every function served, in the order Capabilities announces them.
    pub const ALL: [DigestFunction; 2] = [DigestFunction::Sha256, DigestFunction::Blake3];

    /// The lowercase name REAPI resource names use (`blobs/blake3/...`).
    pub fn name(self) -> &'static str {
        match self {
            DigestFunction::Blake3 => "blake3",
            DigestFunction::Sha256 => "sha256",
        }
    }

    /// Parses a resource-name segment; `None` for functions we don't serve.
    pub fn from_name(name: &str) -> Option<DigestFunction> {
        DigestFunction::ALL.into_iter().find(|f| f.name() == name)
    }

    /// A stable one-byte tag for storage keys. Never renumber: persisted
    /// keys depend on it.
    pub fn tag(self) -> u8 {
        match self {
            DigestFunction::Blake3 => b'b',
            DigestFunction::Sha256 => b's',
        }
    }

    /// The inverse of [`DigestFunction::tag`].
    pub fn from_tag(tag: u8) -> Option<DigestFunction> {
        DigestFunction::ALL.into_iter().find(|f| f.tag() == tag)
    }

    /// An incremental hasher, for data that arrives in pieces.
    pub fn hasher(self) -> DigestHasher {
        match self {
            DigestFunction::Blake3 => DigestHasher::Blake3(Box::new(blake3::Hasher::new())),
            DigestFunction::Sha256 => DigestHasher::Sha256(sha2::Sha256::new(), 0),
        }
    }
}

impl fmt::Display for DigestFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Hashes data fed in pieces with one [`DigestFunction`].
#[derive(Clone)]
pub enum DigestHasher {
    /// The BLAKE3 hasher (boxed: it is large).
    Blake3(Box<blake3::Hasher>),
    /// The hasher and the number of bytes fed so far.
    Sha256(sha2::Sha256, u64),
}

impl DigestHasher {
    /// Feeds the next piece.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            DigestHasher::Blake3(h) => {
                h.update(data);
            }
            DigestHasher::Sha256(h, n) => {
                h.update(data);
                *n += data.len() as u64;
            }
        }
    }

    /// The digest of everything fed, with its length as the size.
    pub fn finalize(self) -> Digest {
        match self {
            DigestHasher::Blake3(h) => Digest {
                function: DigestFunction::Blake3,
                hash: *h.finalize().as_bytes(),
                size_bytes: h.count(),
            },
            DigestHasher::Sha256(h, n) => Digest {
                function: DigestFunction::Sha256,
                hash: h.finalize().into(),
                size_bytes: n,
            },
        }
    }
}

/// The address of a blob: the function that hashed it, its hash, and its
/// length. The length is part of the address so a reader can size buffers
/// and a store can reject truncated uploads without hashing.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    /// The function that made `hash`.
    pub function: DigestFunction,
    /// The raw 32-byte hash.
    pub hash: [u8; 32],
    /// The blob's length in bytes.
    pub size_bytes: u64,
}

/// Why a textual or wire digest could not be accepted.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DigestError {
    /// The hash is not the canonical lowercase hex of 32 bytes.
    #[error("digest hash {hash:?} is not 64 lowercase hex characters")]
    InvalidHash {
        /// The hash as given.
        hash: String,
    },
    /// A wire size below zero.
    #[error("digest size {size} is negative")]
    NegativeSize {
        /// The size as given.
        size: i64,
    },
    /// A textual size that is not a number.
    #[error("digest size {size:?} is not a number")]
    InvalidSize {
        /// The size as given.
        size: String,
    },
    /// A message that must carry a digest has none.
    #[error("digest is missing")]
    Missing,
    /// A function prefix (`sha256:`) this build does not know.
    #[error("digest function {name:?} is not one this cache serves")]
    UnknownFunction {
        /// The prefix as given.
        name: String,
    },
}

impl Digest {
    /// Hashes `data` with BLAKE3, our own tools' function. The size is taken
    /// from the data so the two can't disagree.
    pub fn of(data: &[u8]) -> Digest {
        Digest::of_with(DigestFunction::Blake3, data)
    }

    /// Hashes everything `reader` yields with BLAKE3, in 256 KiB pieces:
    /// a file of any size is hashed without being held in memory.
    pub fn of_reader(reader: &mut impl std::io::Read) -> std::io::Result<Digest> {
        let mut hasher = DigestFunction::Blake3.hasher();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return Ok(hasher.finalize()),
                Ok(n) => hasher.update(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Hashes `data` with `function`.
    pub fn of_with(function: DigestFunction, data: &[u8]) -> Digest {
        let hash = match function {
            DigestFunction::Blake3 => *blake3::hash(data).as_bytes(),
            DigestFunction::Sha256 => sha2::Sha256::digest(data).into(),
        };
        Digest {
            function,
            hash,
            size_bytes: data.len() as u64,
        }
    }

    /// The BLAKE3 empty blob: every store reports it present without storing
    /// it, so empty files never cost a round trip.
    pub fn empty() -> Digest {
        Digest::empty_with(DigestFunction::Blake3)
    }

    /// The empty blob under `function`.
    pub fn empty_with(function: DigestFunction) -> Digest {
        Digest::of_with(function, &[])
    }

    /// True for the well-known empty blob of the digest's own function.
    pub fn is_empty_blob(&self) -> bool {
        self.size_bytes == 0 && *self == Digest::empty_with(self.function)
    }

    /// A fixed-size binary form for storage keys: function tag, hash, size
    /// (big endian, so keys of one function and hash sort by size).
    pub fn key_bytes(&self) -> [u8; 41] {
        let mut key = [0u8; 41];
        key[0] = self.function.tag();
        key[1..33].copy_from_slice(&self.hash);
        key[33..].copy_from_slice(&self.size_bytes.to_be_bytes());
        key
    }

    /// The inverse of [`Digest::key_bytes`]; `None` for foreign bytes.
    pub fn from_key_bytes(key: &[u8]) -> Option<Digest> {
        if key.len() != 41 {
            return None;
        }
        Some(Digest {
            function: DigestFunction::from_tag(key[0])?,
            hash: key[1..33].try_into().ok()?,
            size_bytes: u64::from_be_bytes(key[33..].try_into().ok()?),
        })
    }

    /// Lowercase hex, the form REAPI resource names and messages use.
    pub fn to_hex(&self) -> String {
        hex::encode(self.hash)
    }

    /// Parses a BLAKE3 digest; see [`Digest::parse_with`].
    pub fn parse(hash_hex: &str, size_bytes: u64) -> Result<Digest, DigestError> {
        Digest::parse_with(DigestFunction::Blake3, hash_hex, size_bytes)
    }

    /// Accepts only the canonical lowercase form so one blob has one name.
    pub fn parse_with(
        function: DigestFunction,
        hash_hex: &str,
        size_bytes: u64,
    ) -> Result<Digest, DigestError> {
        let invalid = || DigestError::InvalidHash {
            hash: hash_hex.to_owned(),
        };
        let mut hash = [0u8; 32];
        if !decode_lower_hex(hash_hex.as_bytes(), &mut hash) {
            return Err(invalid());
        }
        Ok(Digest {
            function,
            hash,
            size_bytes,
        })
    }

    /// Parses the two halves of a BLAKE3 resource name (`{hash}/{size}`).
    pub fn parse_parts(hash_hex: &str, size: &str) -> Result<Digest, DigestError> {
        Digest::parse_parts_with(DigestFunction::Blake3, hash_hex, size)
    }

    /// Parses the two halves of a resource name under `function`.
    pub fn parse_parts_with(
        function: DigestFunction,
        hash_hex: &str,
        size: &str,
    ) -> Result<Digest, DigestError> {
        let size_bytes = size.parse::<u64>().map_err(|_| DigestError::InvalidSize {
            size: size.to_owned(),
        })?;
        Digest::parse_with(function, hash_hex, size_bytes)
    }

    /// A digest as a wire message carries it: hex hash and a signed size.
    /// Wire adapters (`buildfleet_proto::convert`) call this so every
    /// message kind checks digests the same way.
    pub fn from_wire(
        function: DigestFunction,
        hash: &str,
        size: i64,
    ) -> Result<Digest, DigestError> {
        let size = u64::try_from(size).map_err(|_| DigestError::NegativeSize { size })?;
        Digest::parse_with(function, hash, size)
    }

    /// The size as a wire message carries it. Blobs beyond `i64::MAX`
    /// bytes cannot exist on disk; saturate rather than wrap.
    pub fn wire_size(&self) -> i64 {
        i64::try_from(self.size_bytes).unwrap_or(i64::MAX)
    }

    /// The hash with its function as a prefix when it is not BLAKE3
    /// (`sha256:…`): the `hash` of the stored (serde) form.
    fn prefixed_hex(&self) -> String {
        match self.function {
            DigestFunction::Blake3 => self.to_hex(),
            function => format!("{function}:{}", self.to_hex()),
        }
    }
}

/// Stored as `{ hash, size_bytes }`, BLAKE3 hashes bare and others with
/// their function as a prefix: the same shape (and, for BLAKE3, the same
/// bytes) as the `{ hash: String, size_bytes }` records written before
/// digests had a type, so stored runs stay readable.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredDigest {
    hash: String,
    size_bytes: u64,
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        StoredDigest {
            hash: self.prefixed_hex(),
            size_bytes: self.size_bytes,
        }
        .serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let stored = StoredDigest::deserialize(d)?;
        let (function, hex) = match stored.hash.split_once(':') {
            None => (DigestFunction::Blake3, stored.hash.as_str()),
            Some((name, hex)) => match DigestFunction::from_name(name) {
                Some(f) => (f, hex),
                None => {
                    return Err(serde::de::Error::custom(DigestError::UnknownFunction {
                        name: name.to_owned(),
                    }))
                }
            },
        };
        Digest::parse_with(function, hex, stored.size_bytes).map_err(serde::de::Error::custom)
    }
}

/// BLAKE3 digests print as `{hash}/{size}`; others carry their function as a
/// prefix (`sha256:{hash}/{size}`) so logs never confuse the two.
impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.function {
            DigestFunction::Blake3 => write!(f, "{}/{}", self.to_hex(), self.size_bytes),
            function => write!(f, "{function}:{}/{}", self.to_hex(), self.size_bytes),
        }
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// Each byte's value as a lowercase hex digit; 0xff for anything else.
const HEX_VALUE: [u8; 256] = {
    let mut table = [0xff_u8; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// Decodes 64 lowercase hex digits in one pass over a table. A batch
/// request names a thousand digests, and checking then decoding them
/// with the `hex` crate was a twentieth of a BatchUpdateBlobs.
fn decode_lower_hex(hex: &[u8], out: &mut [u8; 32]) -> bool {
    if hex.len() != 64 {
        return false;
    }
    let mut seen = 0u8;
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let (high, low) = (HEX_VALUE[pair[0] as usize], HEX_VALUE[pair[1] as usize]);
        seen |= high | low;
        *byte = (high << 4) | low;
    }
    // Digits are below 16; a non-digit (0xff) sets the high bits.
    seen < 16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_blob_has_the_well_known_blake3_hash() {
        let empty = Digest::empty();
        assert_eq!(
            empty.to_hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        assert_eq!(empty.size_bytes, 0);
        assert!(empty.is_empty_blob());
        assert!(!Digest::of(b"x").is_empty_blob());
    }

    #[test]
    fn display_and_parse_round_trip() {
        let d = Digest::of(b"hello");
        assert_eq!(d.to_string(), format!("{}/5", d.to_hex()));
        assert_eq!(Digest::parse(&d.to_hex(), 5).unwrap(), d);
        assert_eq!(Digest::parse_parts(&d.to_hex(), "5").unwrap(), d);
    }

    #[test]
    fn parse_rejects_non_canonical_hashes() {
        let d = Digest::of(b"hello");
        let upper = d.to_hex().to_uppercase();
        assert!(matches!(
            Digest::parse(&upper, 5),
            Err(DigestError::InvalidHash { .. })
        ));
        assert!(Digest::parse("abc", 5).is_err());
        assert!(Digest::parse(&"g".repeat(64), 5).is_err());
        assert_eq!(
            Digest::parse_parts(&d.to_hex(), "-1"),
            Err(DigestError::InvalidSize { size: "-1".into() })
        );
    }

    #[test]
    fn the_hex_table_judges_every_byte_in_every_place_like_the_hex_crate() {
        let valid = Digest::of(b"hello").to_hex().into_bytes();
        for place in 0..valid.len() {
            for byte in 0..=255u8 {
                let mut hex = valid.clone();
                hex[place] = byte;
                let mut ours = [0u8; 32];
                let accepted = decode_lower_hex(&hex, &mut ours);
                let lowercase = hex.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
                let mut reference = [0u8; 32];
                let decodes = hex::decode_to_slice(&hex, &mut reference).is_ok();
                assert_eq!(accepted, lowercase && decodes, "byte {byte:#x} at {place}");
                if accepted {
                    assert_eq!(ours, reference, "byte {byte:#x} at {place}");
                }
            }
        }
        let mut out = [0u8; 32];
        assert!(!decode_lower_hex(&valid[..63], &mut out), "too short");
    }

    #[test]
    fn wire_sizes_are_checked_and_saturated() {
        let d = Digest::of(b"some bytes");
        assert_eq!(d.wire_size(), 10);
        assert_eq!(
            Digest::from_wire(DigestFunction::Blake3, &d.to_hex(), 10),
            Ok(d)
        );
        assert_eq!(
            Digest::from_wire(DigestFunction::Blake3, &d.to_hex(), -3),
            Err(DigestError::NegativeSize { size: -3 })
        );
        let huge = Digest {
            size_bytes: u64::MAX,
            ..d
        };
        assert_eq!(huge.wire_size(), i64::MAX);
    }

    #[test]
    fn the_stored_form_keeps_the_function_and_reads_bare_blake3_records() {
        #[derive(serde::Serialize)]
        struct Before {
            hash: String,
            size_bytes: u64,
        }
        let blake = Digest::of(b"abc");
        let sha = Digest::of_with(DigestFunction::Sha256, b"abc");
        for d in [blake, sha] {
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d, "{json}");
        }
        assert!(serde_json::to_string(&sha).unwrap().contains("sha256:"));
        // A record written when input roots were `{ hash: String, size }`.
        let before = serde_json::to_string(&Before {
            hash: blake.to_hex(),
            size_bytes: 3,
        })
        .unwrap();
        assert_eq!(serde_json::from_str::<Digest>(&before).unwrap(), blake);
        let bad = r#"{"hash":"md5:00","size_bytes":1}"#;
        let err = serde_json::from_str::<Digest>(bad).unwrap_err().to_string();
        assert!(err.contains("md5"), "{err}");
    }

    #[test]
    fn sha256_digests_are_distinct_from_blake3_ones() {
        let sha = Digest::of_with(DigestFunction::Sha256, b"abc");
        assert_eq!(
            sha.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(sha.function, DigestFunction::Sha256);
        assert_ne!(sha, Digest::of(b"abc"));
        assert!(sha.to_string().starts_with("sha256:"));
        let empty = Digest::empty_with(DigestFunction::Sha256);
        assert_eq!(
            empty.to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(empty.is_empty_blob());
        // A BLAKE3 empty hash read as SHA-256 is not the empty blob.
        let confused = Digest {
            function: DigestFunction::Sha256,
            ..Digest::empty()
        };
        assert!(!confused.is_empty_blob());
        assert_eq!(
            Digest::from_wire(DigestFunction::Sha256, &sha.to_hex(), 3),
            Ok(sha)
        );
    }

    #[test]
    fn incremental_hashers_match_one_shot_hashing() {
        for function in DigestFunction::ALL {
            let mut h = function.hasher();
            h.update(b"hello ");
            h.update(b"world");
            assert_eq!(h.finalize(), Digest::of_with(function, b"hello world"));
            assert_eq!(DigestFunction::from_name(function.name()), Some(function));
            assert_eq!(DigestFunction::from_tag(function.tag()), Some(function));
            let d = Digest::of_with(function, b"key");
            assert_eq!(Digest::from_key_bytes(&d.key_bytes()), Some(d));
        }
    }
}
