//! Blobs far larger than the memory allowed for them move in pieces: a
//! runner uploads outputs and its log spool from disk while its peak memory
//! barely moves, and a cache process takes and serves them through staged
//! files likewise. Measured from `/proc` (each side's own process).

mod procs;

use std::io::Write;

use buildfleet_cache::{CasClient, Digest};

/// This process's peak resident memory (VmHWM), in bytes.
fn peak_rss() -> u64 {
    status_bytes(std::process::id(), "VmHWM:")
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

/// A field of `/proc/PID/status` (in kB there), in bytes.
fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"));
    kib * 1024
}

/// Bytes the process has read through `read`-family calls (files, not
/// sockets): the evidence of how much of a blob a read touched.
fn bytes_read(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("rchar in /proc/PID/io")
}

/// The `n`th MiB of a large test blob, made on demand so the test never
/// holds the blob either.
fn piece(n: u64) -> Vec<u8> {
    (0..1u32 << 20)
        .map(|j| (j ^ (n as u32).wrapping_mul(2_654_435_761)) as u8)
        .collect()
}

/// Streams `mib` MiB pieces (the last byte flipped when `corrupt`) as one
/// ByteStream write of `digest`; the server's answer.
async fn write_blob(
    channel: tonic::transport::Channel,
    digest: Digest,
    mib: u64,
    corrupt: bool,
) -> Result<i64, tonic::Status> {
    use buildfleet_proto::bytestream::byte_stream_client::ByteStreamClient;
    use buildfleet_proto::bytestream::WriteRequest;
    let name = buildfleet_cache::write_resource_name("", uuid::Uuid::new_v4(), &digest);
    let requests = futures::stream::iter((0..mib).map(move |n| {
        let mut data = piece(n);
        if corrupt && n + 1 == mib {
            data[(1 << 20) - 1] ^= 1;
        }
        WriteRequest {
            resource_name: if n == 0 { name.clone() } else { String::new() },
            write_offset: (n << 20) as i64,
            finish_write: n + 1 == mib,
            data: data.into(),
        }
    }));
    ByteStreamClient::new(channel)
        .write(requests)
        .await
        .map(|r| r.into_inner().committed_size)
}

/// Reads `limit` bytes of `digest` from `offset` over ByteStream.
async fn read_blob(
    channel: tonic::transport::Channel,
    digest: Digest,
    offset: u64,
    limit: u64,
) -> Result<Vec<u8>, tonic::Status> {
    use buildfleet_proto::bytestream::byte_stream_client::ByteStreamClient;
    use buildfleet_proto::bytestream::ReadRequest;
    let mut stream = ByteStreamClient::new(channel)
        .read(ReadRequest {
            resource_name: buildfleet_cache::read_resource_name("", &digest),
            read_offset: offset as i64,
            read_limit: limit as i64,
        })
        .await?
        .into_inner();
    let mut got = Vec::new();
    while let Some(chunk) = stream.message().await? {
        got.extend_from_slice(&chunk.data);
    }
    Ok(got)
}

/// The cache takes a blob through a ByteStream write into a staged file,
/// never into memory: a hostile 256 MiB write that does not match its
/// digest is refused at its end, a true one is stored, and the cache
/// process's peak memory moves by a fraction of either. A ranged read of
/// one MiB reads about one MiB from disk (measured from the process's own
/// read counter), and a whole read is served from the file in pieces.
#[test]
fn the_cache_streams_a_256_mib_blob_in_and_out_with_bounded_memory() {
    const MIB: u64 = 256;
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    let (cache, url) = procs::server(&["cache", "--data", d]);
    let pid = cache.0.id();
    let mut hasher = buildfleet_model::DigestFunction::Blake3.hasher();
    for n in 0..MIB {
        hasher.update(&piece(n));
    }
    let digest: Digest = hasher.finalize();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let channel = rt.block_on(async {
        tonic::transport::Endpoint::from_shared(url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap()
    });
    let before = status_bytes(pid, "VmHWM:");

    let refused = rt
        .block_on(write_blob(channel.clone(), digest, MIB, true))
        .expect_err("a write whose bytes do not match its digest is refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("digest mismatch"), "{refused:?}");
    let cas = rt.block_on(CasClient::connect(&url)).unwrap();
    assert_eq!(
        rt.block_on(cas.find_missing(&[digest])).unwrap(),
        vec![digest],
        "nothing of the refused write was stored"
    );
    let committed = rt
        .block_on(write_blob(channel.clone(), digest, MIB, false))
        .unwrap();
    assert_eq!(committed, (MIB << 20) as i64);
    assert!(rt.block_on(cas.find_missing(&[digest])).unwrap().is_empty());
    let grew = status_bytes(pid, "VmHWM:").saturating_sub(before);
    eprintln!("two 256 MiB writes: cache peak memory +{} KiB", grew >> 10);
    assert!(
        grew < 64 << 20,
        "taking two 256 MiB writes raised the cache's peak memory by {} MiB",
        grew >> 20
    );

    let read_before = bytes_read(pid);
    let range = rt
        .block_on(read_blob(channel.clone(), digest, 200 << 20, 1 << 20))
        .unwrap();
    let read = bytes_read(pid) - read_before;
    assert_eq!(range, piece(200), "the range's bytes");
    eprintln!("1 MiB ranged read: {} KiB read from disk", read >> 10);
    assert!(
        read < 4 << 20,
        "a 1 MiB ranged read of a 256 MiB blob read {} KiB from disk",
        read >> 10
    );

    let before = status_bytes(pid, "VmHWM:");
    let whole = rt
        .block_on(read_blob(channel.clone(), digest, 0, 0))
        .unwrap();
    let grew = status_bytes(pid, "VmHWM:").saturating_sub(before);
    assert_eq!(whole.len() as u64, MIB << 20);
    assert!(whole[(100 << 20)..(101 << 20)] == piece(100)[..]);
    drop(whole);
    eprintln!("256 MiB whole read: cache peak memory +{} KiB", grew >> 10);
    assert!(
        grew < 64 << 20,
        "serving 256 MiB raised the cache's peak memory by {} MiB",
        grew >> 20
    );
}

/// The `n`th MiB of client `c`'s blob: one shared random MiB, stamped with
/// the client and the piece, so every piece of every blob differs and
/// making one costs a copy, not a loop.
fn stamped(base: &[u8], c: u64, n: u64) -> Vec<u8> {
    let mut p = base.to_vec();
    p[..8].copy_from_slice(&c.to_le_bytes());
    p[8..16].copy_from_slice(&n.to_le_bytes());
    p
}

/// Eight clients each upload a 1 GiB blob over ByteStream at once and then
/// read it back whole; the cache's peak resident memory over its whole
/// life stays under 256 MiB (read from `/proc/PID/status`), and every
/// byte comes back.
#[test]
fn eight_clients_move_1_gib_each_through_a_cache_under_256_mib() {
    use buildfleet_proto::bytestream::byte_stream_client::ByteStreamClient;
    use buildfleet_proto::bytestream::{ReadRequest, WriteRequest};
    const CLIENTS: u64 = 8;
    const MIB: u64 = 1024;
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    let (cache, url) = procs::server(&["cache", "--data", d]);
    let pid = cache.0.id();
    let base: Vec<u8> = {
        let mut h = buildfleet_model::DigestFunction::Blake3.hasher();
        h.update(b"seed");
        let seed = h.finalize().hash;
        (0..1usize << 20)
            .map(|i| seed[i % 32] ^ (i >> 5) as u8)
            .collect()
    };
    let base = std::sync::Arc::new(base);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let digests: Vec<Digest> = (0..CLIENTS)
        .map(|c| {
            let mut h = buildfleet_model::DigestFunction::Blake3.hasher();
            for n in 0..MIB {
                h.update(&stamped(&base, c, n));
            }
            h.finalize()
        })
        .collect();
    rt.block_on(async {
        let mut clients = Vec::new();
        for (c, digest) in digests.iter().copied().enumerate() {
            let (url, base) = (url.clone(), base.clone());
            clients.push(tokio::spawn(async move {
                let channel = buildfleet_proto::transport::tune(
                    tonic::transport::Endpoint::from_shared(url).unwrap(),
                )
                .connect()
                .await
                .unwrap();
                let name = buildfleet_cache::write_resource_name("", uuid::Uuid::new_v4(), &digest);
                let pieces = futures::stream::iter((0..MIB).map(move |n| WriteRequest {
                    resource_name: if n == 0 { name.clone() } else { String::new() },
                    write_offset: (n << 20) as i64,
                    finish_write: n + 1 == MIB,
                    data: stamped(&base, c as u64, n).into(),
                }));
                let mut bs = ByteStreamClient::new(channel);
                bs.write(pieces).await.expect("the write is taken");
                let mut stream = bs
                    .read(ReadRequest {
                        resource_name: buildfleet_cache::read_resource_name("", &digest),
                        read_offset: 0,
                        read_limit: 0,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let mut h = buildfleet_model::DigestFunction::Blake3.hasher();
                while let Some(chunk) = stream.message().await.unwrap() {
                    h.update(&chunk.data);
                }
                assert_eq!(h.finalize(), digest, "client {c} read back its blob");
            }));
        }
        for client in clients {
            client.await.unwrap();
        }
    });
    let peak = status_bytes(pid, "VmHWM:");
    eprintln!(
        "8 × 1 GiB up and down: cache peak memory {} MiB",
        peak >> 20
    );
    assert!(
        peak < 256 << 20,
        "the cache's peak resident memory was {} MiB",
        peak >> 20
    );
}
