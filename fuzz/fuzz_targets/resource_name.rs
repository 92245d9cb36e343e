//! ByteStream resource names (`cache/src/resource_name.rs`): any text is
//! parsed without panicking, and a name that parses formats back to one
//! that parses to the same digest.
#![no_main]

use buildfleet_cache::{parse_read, parse_write, read_resource_name, write_resource_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(name) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(digest) = parse_read(name) {
        for instance in ["", "main", "a/b"] {
            let again = read_resource_name(instance, &digest);
            assert_eq!(parse_read(&again), Ok(digest), "{name:?} → {again:?}");
        }
    }
    if let Ok(digest) = parse_write(name) {
        let again = write_resource_name("main", uuid_of(data), &digest);
        assert_eq!(parse_write(&again), Ok(digest), "{name:?} → {again:?}");
    }
});

/// Some upload id; its value does not matter to parsing.
fn uuid_of(data: &[u8]) -> uuid::Uuid {
    let mut bytes = [0u8; 16];
    for (slot, byte) in bytes.iter_mut().zip(data) {
        *slot = *byte;
    }
    uuid::Uuid::from_bytes(bytes)
}
