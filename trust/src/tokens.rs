//! The token file: names, roles and BLAKE3 hashes of bearer tokens. Only
//! hashes are stored, so the file (or a backup of it, or a Kubernetes
//! Secret mounted for the chart) gives no one a usable token.
//!
//! A fast hash is right here, unlike for passwords: tokens are 256 random
//! bits made by [`new_token`], so there is nothing to guess that a slow
//! hash would protect.

use std::collections::HashMap;

use marked_yaml::Spanned;

use crate::role::{Caller, Role};

/// Every token starts with this, so secret scanners (and people) can tell
/// a leaked buildfleet token from other random strings.
pub const TOKEN_PREFIX: &str = "bft_";

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read the token file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// What a token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub name: String,
    pub role: Role,
    pub cache_write: bool,
}

impl Grant {
    pub fn caller(&self) -> Caller {
        Caller {
            name: self.name.clone(),
            role: self.role,
            cache_write: self.cache_write,
            authenticated: true,
        }
    }
}

/// The tokens a server accepts, by hash.
#[derive(Debug, Clone, Default)]
pub struct TokenSet {
    by_hash: HashMap<[u8; 32], Grant>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tokens: Vec<Entry>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: Spanned<String>,
    role: Role,
    hash: Spanned<String>,
    #[serde(default)]
    cache_write: bool,
}

impl TokenSet {
    /// Parses a token file's text; `path` names it in messages. Refuses a
    /// file that would lock everyone out (no tokens) or that is ambiguous
    /// (one hash twice, one name with two roles).
    pub fn parse(path: &str, text: &str) -> Result<TokenSet, TokenFileError> {
        let invalid = |message: String| TokenFileError::Invalid {
            path: path.to_owned(),
            message,
        };
        let file: File = marked_yaml::from_yaml(0, text).map_err(|e| invalid(e.to_string()))?;
        if file.tokens.is_empty() {
            return Err(invalid(
                "no tokens: every caller would be refused (make one with `buildfleet token new`)"
                    .into(),
            ));
        }
        let at = |s: &Spanned<String>| {
            s.span()
                .start()
                .map(|m| format!("line {}", m.line()))
                .unwrap_or_else(|| "?".into())
        };
        let mut set = TokenSet::default();
        let mut roles: HashMap<String, Role> = HashMap::new();
        for e in file.tokens {
            let name = e.name.as_str();
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(invalid(format!(
                    "{}: a token name must be non-empty without spaces, not `{name}`",
                    at(&e.name)
                )));
            }
            let hash = parse_hash(&e.hash).map_err(|m| invalid(format!("{}: {m}", at(&e.hash))))?;
            if let Some(role) = roles.insert(name.to_owned(), e.role) {
                if role != e.role {
                    return Err(invalid(format!(
                        "{}: `{name}` is both {role} and {} (one name, one role; old and new tokens of one name may coexist while rotating)",
                        at(&e.name),
                        e.role
                    )));
                }
            }
            let grant = Grant {
                name: name.to_owned(),
                role: e.role,
                cache_write: e.cache_write,
            };
            if set.by_hash.insert(hash, grant).is_some() {
                return Err(invalid(format!(
                    "{}: this hash is listed twice",
                    at(&e.hash)
                )));
            }
        }
        Ok(set)
    }

    /// Reads and parses a token file.
    pub fn load(path: &std::path::Path) -> Result<TokenSet, TokenFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
            path: shown.clone(),
            source,
        })?;
        TokenSet::parse(&shown, &text)
    }

    /// Adds a token (the embedded fleet makes its own).
    pub fn insert(&mut self, token: &str, grant: Grant) {
        self.by_hash.insert(hash_of(token), grant);
    }

    /// What `token` grants, if it is one of ours.
    pub fn find(&self, token: &str) -> Option<&Grant> {
        self.by_hash.get(&hash_of(token))
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

fn hash_of(token: &str) -> [u8; 32] {
    *blake3::hash(token.as_bytes()).as_bytes()
}

/// A stored hash that is not one.
#[derive(Debug, thiserror::Error)]
enum BadHash {
    #[error("a hash is `blake3:` and 64 hex digits (from `buildfleet token new`), not `{0}`")]
    NoPrefix(String),
    #[error("`{0}` is not `blake3:` and 64 hex digits")]
    NotHex(String),
}

fn parse_hash(text: &str) -> Result<[u8; 32], BadHash> {
    let hex = text
        .strip_prefix("blake3:")
        .ok_or_else(|| BadHash::NoPrefix(text.to_owned()))?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex, &mut out).map_err(|_| BadHash::NotHex(text.to_owned()))?;
    Ok(out)
}

/// The stored form of a token: what goes in the token file.
pub fn stored_hash(token: &str) -> String {
    format!("blake3:{}", blake3::hash(token.as_bytes()).to_hex())
}

/// A new token: the prefix and 256 bits from the OS's random source.
pub fn new_token() -> Result<String, std::io::Error> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(format!("{TOKEN_PREFIX}{}", hex::encode(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(entries: &[(&str, &str, &str)]) -> String {
        let mut s = String::from("tokens:\n");
        for (name, role, token) in entries {
            s += &format!(
                "  - name: {name}\n    role: {role}\n    hash: {}\n",
                stored_hash(token)
            );
        }
        s
    }

    #[test]
    fn a_token_is_found_by_its_hash_and_others_are_not() {
        let set = TokenSet::parse(
            "t.yaml",
            &file(&[("ci", "client", "bft_one"), ("r1", "runner", "bft_two")]),
        )
        .unwrap();
        assert_eq!(set.find("bft_one").unwrap().role, Role::Client);
        assert_eq!(set.find("bft_two").unwrap().name, "r1");
        assert!(set.find("bft_three").is_none());
        assert!(set.find("").is_none());
    }

    #[test]
    fn the_file_holds_no_token_only_its_hash() {
        let text = file(&[("ci", "client", "bft_secretvalue")]);
        assert!(!text.contains("bft_secretvalue"));
    }

    #[test]
    fn bad_files_say_what_and_where() {
        let cases = [
            ("tokens: []\n", "no tokens"),
            (
                "tokens:\n  - name: a\n    role: client\n    hash: abc\n",
                "line 4: a hash is `blake3:`",
            ),
            (
                "tokens:\n  - name: a\n    role: king\n    hash: blake3:00\n",
                "king",
            ),
            (
                "tokens:\n  - name: a\n    role: client\n    hash: blake3:00\n    extra: 1\n",
                "extra",
            ),
        ];
        for (text, want) in cases {
            let e = TokenSet::parse("t.yaml", text).unwrap_err().to_string();
            assert!(
                e.starts_with("t.yaml: ") && e.contains(want),
                "{text:?} → {e}"
            );
        }
        let twice = file(&[("a", "client", "x"), ("b", "client", "x")]);
        let e = TokenSet::parse("t.yaml", &twice).unwrap_err().to_string();
        assert!(e.contains("listed twice"), "{e}");
        let two_roles = file(&[("a", "client", "x"), ("a", "admin", "y")]);
        let e = TokenSet::parse("t.yaml", &two_roles)
            .unwrap_err()
            .to_string();
        assert!(e.contains("both client and admin"), "{e}");
    }

    #[test]
    fn rotation_keeps_old_and_new_tokens_of_one_name() {
        let set = TokenSet::parse(
            "t.yaml",
            &file(&[("ci", "client", "old"), ("ci", "client", "new")]),
        )
        .unwrap();
        assert_eq!(set.find("old").unwrap().name, "ci");
        assert_eq!(set.find("new").unwrap().name, "ci");
    }

    #[test]
    fn new_tokens_are_prefixed_and_distinct() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64);
        assert_ne!(a, b);
    }
}
