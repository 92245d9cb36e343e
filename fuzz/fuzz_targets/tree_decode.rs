//! Directory blobs (`cache/src/tree/encoding.rs`): any bytes are decoded
//! without panicking; a listing that decodes holds only names that cannot
//! escape or alias, and its canonical encoding decodes to the same listing.
#![no_main]

use buildfleet_cache::{Digest, DirectoryListing};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let digest = Digest::of(data);
    let Ok(listing) = DirectoryListing::decode(&digest, data) else {
        return;
    };
    let names = listing
        .files
        .iter()
        .map(|f| &f.name)
        .chain(listing.directories.iter().map(|d| &d.name))
        .chain(listing.symlinks.iter().map(|s| &s.name));
    for name in names {
        assert!(
            !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0']),
            "name {name:?} was let through"
        );
    }
    let encoded = listing.encode();
    let again = DirectoryListing::decode(&Digest::of(&encoded), &encoded)
        .expect("a canonical encoding decodes");
    assert_eq!(
        sorted(again),
        sorted(listing),
        "canonical encoding round-trips"
    );
});

fn sorted(mut l: DirectoryListing) -> DirectoryListing {
    l.files.sort_by(|a, b| a.name.cmp(&b.name));
    l.directories.sort_by(|a, b| a.name.cmp(&b.name));
    l.symlinks.sort_by(|a, b| a.name.cmp(&b.name));
    l
}
