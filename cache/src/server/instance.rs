//! Instance names. REAPI lets one server host several logical caches, named
//! by an instance string on every request.
//!
//! Policy: the **CAS is shared** by all instances. A blob is named by its
//! content, so sharing can only save space and uploads; it lets no instance
//! see anything it could not have produced itself from the hash. The
//! **action cache and the index are partitioned**: their keys are chosen by
//! clients, and one instance's `main/linux` entry must not answer another's.

/// The metadata key for `key` within `instance`. The instance is length
/// prefixed so no (instance, key) pair can collide with another, whatever
/// bytes either contains, and so a prefix scan within one instance never
/// strays into another.
pub(crate) fn instance_key(instance: &str, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + instance.len() + key.len());
    // Instance names longer than 4 GiB cannot arrive in a gRPC message.
    out.extend_from_slice(&(instance.len() as u32).to_be_bytes());
    out.extend_from_slice(instance.as_bytes());
    out.extend_from_slice(key);
    out
}

/// The key within its instance, from a full metadata key.
pub(crate) fn strip_instance(full: &[u8]) -> Option<&[u8]> {
    let len = u32::from_be_bytes(full.get(..4)?.try_into().ok()?) as usize;
    full.get(4 + len..)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_never_collide_and_prefixes_stay_inside_one() {
        assert_ne!(instance_key("a", b"bc"), instance_key("ab", b"c"));
        assert!(!instance_key("ab", b"c").starts_with(&instance_key("a", b"")));
        assert!(instance_key("a", b"key").starts_with(&instance_key("a", b"k")));
        assert_eq!(
            strip_instance(&instance_key("x/y", b"key")),
            Some(&b"key"[..])
        );
    }
}
