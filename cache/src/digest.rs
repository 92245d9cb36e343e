//! Content addresses. BLAKE3 was chosen over SHA-256 because snapshots hash
//! whole working trees on every submit and BLAKE3 is several times faster.

use std::fmt;

use buildfleet_proto::{reapi, v1};
use thiserror::Error;

/// The address of a blob: its BLAKE3 hash and length. The length is part of
/// the address so a reader can size buffers and a store can reject truncated
/// uploads without hashing.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    pub hash: [u8; 32],
    pub size_bytes: u64,
}

/// Why a textual or wire digest could not be accepted.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("digest hash {hash:?} is not 64 lowercase hex characters")]
    InvalidHash { hash: String },
    #[error("digest size {size} is negative")]
    NegativeSize { size: i64 },
    #[error("digest size {size:?} is not a number")]
    InvalidSize { size: String },
    #[error("digest is missing")]
    Missing,
}

impl Digest {
    /// Hashes `data`. The size is taken from the data so the two can't disagree.
    pub fn of(data: &[u8]) -> Digest {
        Digest {
            hash: *blake3::hash(data).as_bytes(),
            size_bytes: data.len() as u64,
        }
    }

    /// The empty blob: every store reports it present without storing it, so
    /// empty files never cost a round trip.
    pub fn empty() -> Digest {
        Digest::of(&[])
    }

    /// True for the well-known empty blob.
    pub fn is_empty_blob(&self) -> bool {
        self.size_bytes == 0 && *self == Digest::empty()
    }

    /// Lowercase hex, the form REAPI resource names and messages use.
    pub fn to_hex(&self) -> String {
        hex::encode(self.hash)
    }

    /// Accepts only the canonical lowercase form so one blob has one name.
    pub fn parse(hash_hex: &str, size_bytes: u64) -> Result<Digest, DigestError> {
        let invalid = || DigestError::InvalidHash {
            hash: hash_hex.to_owned(),
        };
        if hash_hex.len() != 64
            || !hash_hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(invalid());
        }
        let mut hash = [0u8; 32];
        hex::decode_to_slice(hash_hex, &mut hash).map_err(|_| invalid())?;
        Ok(Digest { hash, size_bytes })
    }

    /// Parses the two halves of a resource name (`{hash}/{size}`).
    pub fn parse_parts(hash_hex: &str, size: &str) -> Result<Digest, DigestError> {
        let size_bytes = size.parse::<u64>().map_err(|_| DigestError::InvalidSize {
            size: size.to_owned(),
        })?;
        Digest::parse(hash_hex, size_bytes)
    }

    fn from_wire(hash: &str, size: i64) -> Result<Digest, DigestError> {
        let size = u64::try_from(size).map_err(|_| DigestError::NegativeSize { size })?;
        Digest::parse(hash, size)
    }

    fn wire_size(&self) -> i64 {
        // Blobs beyond i64::MAX bytes cannot exist on disk; saturate rather than wrap.
        i64::try_from(self.size_bytes).unwrap_or(i64::MAX)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.to_hex(), self.size_bytes)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl TryFrom<&reapi::Digest> for Digest {
    type Error = DigestError;
    fn try_from(d: &reapi::Digest) -> Result<Self, Self::Error> {
        Digest::from_wire(&d.hash, d.size_bytes)
    }
}

impl TryFrom<reapi::Digest> for Digest {
    type Error = DigestError;
    fn try_from(d: reapi::Digest) -> Result<Self, Self::Error> {
        Digest::try_from(&d)
    }
}

impl From<Digest> for reapi::Digest {
    fn from(d: Digest) -> Self {
        reapi::Digest {
            hash: d.to_hex(),
            size_bytes: d.wire_size(),
        }
    }
}

impl TryFrom<&v1::Digest> for Digest {
    type Error = DigestError;
    fn try_from(d: &v1::Digest) -> Result<Self, Self::Error> {
        Digest::from_wire(&d.hash, d.size_bytes)
    }
}

impl TryFrom<v1::Digest> for Digest {
    type Error = DigestError;
    fn try_from(d: v1::Digest) -> Result<Self, Self::Error> {
        Digest::try_from(&d)
    }
}

impl From<Digest> for v1::Digest {
    fn from(d: Digest) -> Self {
        v1::Digest {
            hash: d.to_hex(),
            size_bytes: d.wire_size(),
        }
    }
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
    fn wire_conversions_round_trip_and_reject_negative_sizes() {
        let d = Digest::of(b"some bytes");
        let wire: reapi::Digest = d.into();
        assert_eq!(wire.hash, d.to_hex());
        assert_eq!(wire.size_bytes, 10);
        assert_eq!(Digest::try_from(&wire).unwrap(), d);

        let ours: v1::Digest = d.into();
        assert_eq!(Digest::try_from(ours).unwrap(), d);

        let negative = reapi::Digest {
            hash: d.to_hex(),
            size_bytes: -3,
        };
        assert_eq!(
            Digest::try_from(negative),
            Err(DigestError::NegativeSize { size: -3 })
        );
    }
}
