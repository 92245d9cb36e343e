//! Caching on the runner: step results (the action cache) and dependency
//! caches, and the explanations given for every miss.
//!
//! Everything here is also used by `buildfleet cache explain`, which must
//! compute exactly the keys a runner would, so there is one implementation.

pub mod action;
pub mod dependency;
mod error;
pub mod explain;
mod records;

pub use error::CachingError;
pub use records::RecordError;

/// The platform part of every key: results and dependency trees built on
/// one OS or architecture are not reused on another.
pub fn platform() -> String {
    format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH)
}
