//! Digests on the wire: `buildfleet.v1.Digest` is BLAKE3 throughout;
//! REAPI digests carry no function of their own, so the request decides.

use buildfleet_model::{Digest, DigestError, DigestFunction};

use super::WireError;
use crate::{reapi, v1};

/// Our own protocol is BLAKE3 throughout.
impl TryFrom<&v1::Digest> for Digest {
    type Error = DigestError;
    fn try_from(d: &v1::Digest) -> Result<Self, Self::Error> {
        Digest::from_wire(DigestFunction::Blake3, &d.hash, d.size_bytes)
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

/// A REAPI digest under the function its request named. Servers must pass
/// the request's function: a client-supplied SHA-256 digest read as BLAKE3
/// would address another blob.
pub fn from_reapi(d: &reapi::Digest, function: DigestFunction) -> Result<Digest, DigestError> {
    Digest::from_wire(function, &d.hash, d.size_bytes)
}

/// A digest as a REAPI message carries it.
pub fn to_reapi(d: Digest) -> reapi::Digest {
    reapi::Digest {
        hash: d.to_hex(),
        size_bytes: d.wire_size(),
    }
}

/// A submitted input root: required, and read case-insensitively (the
/// submitting side may be any client), stored canonical.
pub fn input_root(d: Option<&v1::Digest>) -> Result<Digest, WireError> {
    let d = d.ok_or(WireError::Missing(
        "input_root (upload the working tree first)",
    ))?;
    Digest::from_wire(
        DigestFunction::Blake3,
        &d.hash.to_ascii_lowercase(),
        d.size_bytes,
    )
    .map_err(|source| WireError::Digest {
        field: "input_root",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_round_trip_and_reject_negative_sizes() {
        let d = Digest::of(b"some bytes");
        let wire = to_reapi(d);
        assert_eq!(wire.hash, d.to_hex());
        assert_eq!(wire.size_bytes, 10);
        assert_eq!(from_reapi(&wire, DigestFunction::Blake3), Ok(d));
        let ours: v1::Digest = d.into();
        assert_eq!(Digest::try_from(ours), Ok(d));
        let negative = reapi::Digest {
            hash: d.to_hex(),
            size_bytes: -3,
        };
        assert_eq!(
            from_reapi(&negative, DigestFunction::Blake3),
            Err(DigestError::NegativeSize { size: -3 })
        );
        let sha = Digest::of_with(DigestFunction::Sha256, b"abc");
        assert_eq!(from_reapi(&to_reapi(sha), DigestFunction::Sha256), Ok(sha));
    }

    #[test]
    fn input_roots_are_required_checked_and_made_canonical() {
        assert_eq!(
            input_root(None),
            Err(WireError::Missing(
                "input_root (upload the working tree first)"
            ))
        );
        let bad = v1::Digest {
            hash: "abc".into(),
            size_bytes: 1,
        };
        let err = input_root(Some(&bad)).unwrap_err().to_string();
        assert!(err.contains("64 lowercase hex"), "{err}");
        let d = Digest::of(b"abc");
        let upper = v1::Digest {
            hash: d.to_hex().to_uppercase(),
            size_bytes: 3,
        };
        assert_eq!(input_root(Some(&upper)), Ok(d));
    }
}
