//! A runner uploads outputs and its log spool from disk in pieces: a file
//! several times larger than the memory the upload may take goes to a
//! real cache process while this process's peak memory barely moves
//! (measured from `/proc/self/status`, since the cache runs elsewhere).

mod procs;

use std::io::Write;

use buildfleet_cache::{CasClient, Digest};

/// This process's peak resident memory (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status");
    kib * 1024
}

#[test]
fn a_file_far_larger_than_the_upload_may_hold_is_uploaded_with_bounded_memory() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    let (_cache, url) = procs::server(&["cache", "--data", d]);
    // 192 MiB written in 1 MiB pieces, never held whole here.
    let file = data.path().join("big.bin");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    let mut hasher = buildfleet_model::DigestFunction::Blake3.hasher();
    for i in 0..192u32 {
        let piece: Vec<u8> = (0..1 << 20).map(|j| (j as u32 ^ i) as u8).collect();
        hasher.update(&piece);
        out.write_all(&piece).unwrap();
    }
    out.flush().unwrap();
    drop(out);
    let expected: Digest = hasher.finalize();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cas = rt.block_on(CasClient::connect(&url)).unwrap();
    let before = peak_rss();
    let digest = rt.block_on(cas.upload_file(&file)).unwrap();
    let grew = peak_rss().saturating_sub(before);
    assert_eq!(digest, expected);
    assert!(
        rt.block_on(cas.find_missing(&[digest])).unwrap().is_empty(),
        "the cache holds it under its digest"
    );
    assert!(
        grew < 48 << 20,
        "uploading 192 MiB raised peak memory by {} MiB",
        grew >> 20
    );
}
