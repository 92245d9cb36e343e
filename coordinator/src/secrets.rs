//! The coordinator's secret store: one file per secret in a configured
//! directory (`NAME` holds the value), with an optional expiry in
//! `NAME.expires` (RFC 3339). Read at each submission, so rotating a file
//! takes effect without a restart.
//!
//! Expired credentials are the seed's first failure: a run that needs an
//! expired or missing secret must fail before any step starts, naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Where secrets come from and how early an expiry is warned about.
#[derive(Debug, Clone)]
pub struct SecretConfig {
    pub dir: Option<PathBuf>,
    pub warn_within: Duration,
    /// Shorter values are refused: masking `abc` would hide every `abc`
    /// in every log while hiding nothing worth hiding, and a value that
    /// short is guessable anyway.
    pub min_length: usize,
}

/// The default for [`SecretConfig::min_length`].
pub const DEFAULT_MIN_SECRET_LENGTH: usize = 8;

impl Default for SecretConfig {
    fn default() -> Self {
        SecretConfig {
            dir: None,
            warn_within: Duration::from_secs(7 * 24 * 3600),
            min_length: DEFAULT_MIN_SECRET_LENGTH,
        }
    }
}

/// What a run's secrets resolved to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    pub values: BTreeMap<String, String>,
    /// Per secret that cannot be used: why (missing, expired, unreadable).
    pub unusable: BTreeMap<String, String>,
    /// Secrets that work today but expire within the warning window.
    pub expiring: Vec<String>,
    /// When each usable secret that has an expiry stops working.
    pub expires: BTreeMap<String, SystemTime>,
}

fn when(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A usable secret: its value, a warning if it expires soon, its expiry.
type Usable = (String, Option<String>, Option<SystemTime>);

/// Why a secret cannot be used. The message names the secret, since it is
/// what a step that needs it fails with.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret {name} is not in the secret store ({})", dir.display())]
    Missing {
        name: String,
        dir: std::path::PathBuf,
    },
    #[error("secret {name} cannot be read: {source}")]
    Unreadable {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("secret {name}: expiry `{text}` in {} is not an RFC 3339 time: {reason}", path.display())]
    BadExpiry {
        name: String,
        text: String,
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("secret {name}: expiry cannot be read: {source}")]
    ExpiryUnreadable {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("secret {name} expired at {}", when(*at))]
    Expired { name: String, at: SystemTime },
    #[error("secret {name} is {length} characters long, shorter than the minimum of {min} (too short to mask safely or to be secret)")]
    TooShort {
        name: String,
        length: usize,
        min: usize,
    },
}

fn read_one(
    dir: &Path,
    name: &str,
    now: SystemTime,
    warn_within: Duration,
    min_length: usize,
) -> Result<Usable, SecretError> {
    let name_of = || name.to_owned();
    let path = dir.join(name);
    let mut value = match std::fs::read_to_string(&path) {
        Ok(v) => v,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SecretError::Missing {
                name: name_of(),
                dir: dir.to_path_buf(),
            })
        }
        Err(source) => {
            return Err(SecretError::Unreadable {
                name: name_of(),
                source,
            })
        }
    };
    if value.ends_with('\n') {
        value.pop();
    }
    let length = value.chars().count();
    if length < min_length {
        return Err(SecretError::TooShort {
            name: name_of(),
            length,
            min: min_length,
        });
    }
    let expires_path = dir.join(format!("{name}.expires"));
    let expires = match std::fs::read_to_string(&expires_path) {
        Ok(text) => Some(humantime::parse_rfc3339_weak(text.trim()).map_err(|e| {
            SecretError::BadExpiry {
                name: name_of(),
                text: text.trim().to_owned(),
                path: expires_path.clone(),
                reason: e.to_string(),
            }
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(SecretError::ExpiryUnreadable {
                name: name_of(),
                source,
            })
        }
    };
    match expires {
        Some(at) if at <= now => Err(SecretError::Expired {
            name: name_of(),
            at,
        }),
        Some(at) if at <= now + warn_within => {
            let left = at.duration_since(now).unwrap_or_default();
            let left = humantime::format_duration(Duration::from_secs(left.as_secs()));
            Ok((
                value,
                Some(format!("secret {name} expires at {} (in {left})", when(at))),
                Some(at),
            ))
        }
        Some(at) => Ok((value, None, Some(at))),
        None => Ok((value, None, None)),
    }
}

impl SecretConfig {
    pub fn resolve(&self, names: &BTreeSet<String>, now: SystemTime) -> Resolved {
        let mut out = Resolved::default();
        for name in names {
            let Some(dir) = &self.dir else {
                out.unusable.insert(
                    name.clone(),
                    format!("secret {name} is needed, but the coordinator has no secret store (--secrets-dir)"),
                );
                continue;
            };
            match read_one(dir, name, now, self.warn_within, self.min_length) {
                Ok((value, warning, expires)) => {
                    out.values.insert(name.clone(), value);
                    out.expiring.extend(warning);
                    if let Some(at) = expires {
                        out.expires.insert(name.clone(), at);
                    }
                }
                Err(why) => {
                    out.unusable.insert(name.clone(), why.to_string());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_expiry_and_warnings() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("OK"), "v1\n").unwrap();
        std::fs::write(d.join("OLD"), "v2").unwrap();
        std::fs::write(d.join("OLD.expires"), "2026-01-01T00:00:00Z\n").unwrap();
        std::fs::write(d.join("SOON"), "v3").unwrap();
        std::fs::write(d.join("SOON.expires"), "2026-06-03T00:00:00Z").unwrap();
        std::fs::write(d.join("BAD"), "v4").unwrap();
        std::fs::write(d.join("BAD.expires"), "next tuesday").unwrap();
        std::fs::write(d.join("TINY"), "x\n").unwrap();
        let cfg = SecretConfig {
            dir: Some(d.to_path_buf()),
            warn_within: Duration::from_secs(3 * 24 * 3600),
            min_length: 2,
        };
        let now = humantime::parse_rfc3339("2026-06-01T00:00:00Z").unwrap();
        let names: BTreeSet<String> = ["OK", "OLD", "SOON", "BAD", "GONE", "TINY"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let r = cfg.resolve(&names, now);
        assert_eq!(r.values["OK"], "v1");
        assert_eq!(r.values["SOON"], "v3");
        assert_eq!(
            r.unusable["OLD"],
            "secret OLD expired at 2026-01-01T00:00:00Z"
        );
        assert!(r.unusable["BAD"].contains("not an RFC 3339 time"));
        assert!(r.unusable["GONE"].contains("not in the secret store"));
        assert_eq!(
            r.unusable["TINY"],
            "secret TINY is 1 characters long, shorter than the minimum of 2 (too short to mask safely or to be secret)"
        );
        assert_eq!(
            r.expiring,
            ["secret SOON expires at 2026-06-03T00:00:00Z (in 2days)"]
        );
        assert_eq!(
            r.expires.keys().collect::<Vec<_>>(),
            ["SOON"],
            "usable secrets with an expiry keep it"
        );
        let none = SecretConfig::default().resolve(&names, now);
        assert!(none.unusable["OK"].contains("no secret store"));
    }
}
