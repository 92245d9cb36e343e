//! ByteStream resource names. Plain string handling, shared by the server
//! (parsing) and the client (formatting) so the two can't disagree.
//!
//! REAPI names the digest function in the path for newer functions
//! (`blobs/blake3/{hash}/{size}`) and leaves it out for SHA-256
//! (`blobs/{hash}/{size}`), so a name without a function segment is SHA-256.
//! We also accept an explicit `sha256` segment, which some clients send.

use thiserror::Error;

use buildfleet_model::digest::{Digest, DigestError, DigestFunction};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ResourceNameError {
    #[error("resource name {name:?} is not of the form [{{instance}}/]{expected}")]
    Malformed {
        name: String,
        expected: &'static str,
    },
    #[error(
        "resource name {name:?} uses digest function {function:?}; only blake3 and sha256 are served"
    )]
    UnsupportedDigestFunction { name: String, function: String },
    #[error("resource name {name:?} has an invalid digest")]
    InvalidDigest {
        name: String,
        #[source]
        source: DigestError,
    },
}

const READ_FORM: &str = "blobs/[blake3/]{hash}/{size}";
const WRITE_FORM: &str = "uploads/{uuid}/blobs/[blake3/]{hash}/{size}";

/// `{instance}/blobs/blake3/{hash}/{size}` (SHA-256: `{instance}/blobs/{hash}/{size}`);
/// an empty instance drops its slash.
pub fn read_resource_name(instance: &str, digest: &Digest) -> String {
    format!("{}blobs/{}", instance_prefix(instance), blob_suffix(digest))
}

/// `{instance}/uploads/{uuid}/blobs/blake3/{hash}/{size}` (SHA-256 without
/// the function segment).
pub fn write_resource_name(instance: &str, upload_id: uuid::Uuid, digest: &Digest) -> String {
    format!(
        "{}uploads/{upload_id}/blobs/{}",
        instance_prefix(instance),
        blob_suffix(digest)
    )
}

fn blob_suffix(digest: &Digest) -> String {
    let function = match digest.function {
        DigestFunction::Sha256 => String::new(),
        other => format!("{}/", other.name()),
    };
    format!("{function}{}/{}", digest.to_hex(), digest.size_bytes)
}

fn instance_prefix(instance: &str) -> String {
    if instance.is_empty() {
        String::new()
    } else {
        format!("{instance}/")
    }
}

/// Parses a read resource name; the instance is ignored.
pub fn parse_read(name: &str) -> Result<Digest, ResourceNameError> {
    let segments: Vec<&str> = name.split('/').collect();
    let (digest, rest) = parse_blob_suffix(name, &segments, READ_FORM)?;
    // Whatever precedes `blobs` is the instance name, which may be empty.
    let _instance = rest;
    Ok(digest)
}

/// Parses a write resource name; the instance and upload id are ignored
/// beyond requiring their presence.
pub fn parse_write(name: &str) -> Result<Digest, ResourceNameError> {
    let segments: Vec<&str> = name.split('/').collect();
    let (digest, rest) = parse_blob_suffix(name, &segments, WRITE_FORM)?;
    match rest {
        [.., "uploads", upload_id] if !upload_id.is_empty() => Ok(digest),
        _ => Err(malformed(name, WRITE_FORM)),
    }
}

fn malformed(name: &str, expected: &'static str) -> ResourceNameError {
    ResourceNameError::Malformed {
        name: name.to_owned(),
        expected,
    }
}

/// Splits `…/blobs/[fn/]{hash}/{size}` off the end (instance names may
/// themselves contain slashes, so parse from the right).
fn parse_blob_suffix<'a>(
    name: &str,
    segments: &'a [&'a str],
    expected: &'static str,
) -> Result<(Digest, &'a [&'a str]), ResourceNameError> {
    let n = segments.len();
    if n < 3 {
        return Err(malformed(name, expected));
    }
    let (hash, size) = (segments[n - 2], segments[n - 1]);
    let (blobs_at, function) = match segments[n - 3] {
        "blobs" => (n - 3, DigestFunction::Sha256),
        function if n >= 4 && segments[n - 4] == "blobs" => {
            let Some(known) = DigestFunction::from_name(function) else {
                return Err(ResourceNameError::UnsupportedDigestFunction {
                    name: name.to_owned(),
                    function: function.to_owned(),
                });
            };
            (n - 4, known)
        }
        _ => return Err(malformed(name, expected)),
    };
    let digest = Digest::parse_parts_with(function, hash, size).map_err(|source| {
        ResourceNameError::InvalidDigest {
            name: name.to_owned(),
            source,
        }
    })?;
    Ok((digest, &segments[..blobs_at]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_back() {
        let d = Digest::of(b"abc");
        let id = uuid::Uuid::new_v4();
        assert_eq!(parse_read(&read_resource_name("", &d)).unwrap(), d);
        assert_eq!(parse_read(&read_resource_name("a/b", &d)).unwrap(), d);
        assert_eq!(parse_write(&write_resource_name("", id, &d)).unwrap(), d);
        assert_eq!(
            parse_write(&write_resource_name("main", id, &d)).unwrap(),
            d
        );
        assert!(read_resource_name("", &d).starts_with("blobs/blake3/"));
    }

    #[test]
    fn names_without_digest_function_are_sha256() {
        let d = Digest::of_with(DigestFunction::Sha256, b"abc");
        let hex = d.to_hex();
        assert_eq!(parse_read(&format!("inst/blobs/{hex}/3")).unwrap(), d);
        assert_eq!(
            parse_read(&format!("inst/blobs/sha256/{hex}/3")).unwrap(),
            d
        );
        assert_eq!(
            parse_write(&format!("inst/uploads/x-y/blobs/{hex}/3")).unwrap(),
            d
        );
        assert_eq!(
            read_resource_name("inst", &d),
            format!("inst/blobs/{hex}/3")
        );
        let id = uuid::Uuid::new_v4();
        assert_eq!(parse_write(&write_resource_name("", id, &d)).unwrap(), d);
    }

    #[test]
    fn rejects_bad_names() {
        let hex = Digest::of(b"abc").to_hex();
        assert!(matches!(
            parse_read(&format!("blobs/md5/{hex}/3")),
            Err(ResourceNameError::UnsupportedDigestFunction { .. })
        ));
        assert!(matches!(
            parse_read(&format!("blobs/{hex}/x")),
            Err(ResourceNameError::InvalidDigest { .. })
        ));
        assert!(matches!(
            parse_write(&format!("blobs/blake3/{hex}/3")),
            Err(ResourceNameError::Malformed { .. })
        ));
        assert!(parse_read("nonsense").is_err());
        assert!(parse_read(&format!("stuff/{hex}/3")).is_err());
    }
}
