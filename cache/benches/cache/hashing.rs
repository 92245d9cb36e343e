//! BLAKE3 over the node-deps tree: our snapshot (walk, hash, encode the
//! Merkle tree) against the `b3sum` tool on the same files.

use std::process::Command;

use buildfleet_cache::snapshot;

use crate::dataset::{b3sum, count_files, Dataset};
use crate::{ms, reps, time, verdict, Timings};

pub fn run(data: &Dataset) {
    let reps = reps(5);
    let b3sum = b3sum();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let tree = data.tree.display().to_string();
    let version = Command::new(&b3sum)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    println!(
        "\n== BLAKE3 hashing of node_modules (median of {reps}, interleaved; page cache warm) =="
    );
    println!("b3sum: {} ({version})", b3sum.display());
    // `find` walks like our snapshot does; b3sum hashes what it is handed.
    // One b3sum process (its own threads are only used within large
    // files), and one per core in parallel over the file list.
    let variants = [
        format!(
            "find {tree} -type f -print0 | xargs -0 {} --num-threads {cores} > /dev/null",
            b3sum.display()
        ),
        format!(
            "find {tree} -type f -print0 | xargs -0 -P {cores} -n 1000 {} --num-threads 1 > /dev/null",
            b3sum.display()
        ),
    ];
    for v in &variants {
        println!("  b3sum command: {v}");
    }
    let files = count_files(&data.tree);
    let snap = snapshot(&data.tree).expect("warm-up snapshot");
    let bytes = snap.total_bytes as f64;
    println!(
        "files: {files} ({} in the snapshot), {:.1} MB",
        snap.file_count,
        bytes / 1e6
    );

    let mut ours = Timings::new();
    let mut theirs: Vec<Timings> = variants.iter().map(|_| Timings::new()).collect();
    for rep in 0..reps {
        let run_ours = |t: &mut Timings| {
            let (d, s) = time(|| snapshot(&data.tree).expect("snapshot"));
            assert_eq!(s.root, snap.root);
            t.push(d);
        };
        if rep % 2 == 0 {
            run_ours(&mut ours);
        }
        for (v, t) in variants.iter().zip(theirs.iter_mut()) {
            let (d, status) = time(|| Command::new("sh").args(["-c", v]).status().expect("sh"));
            assert!(status.success(), "{v} failed");
            t.push(d);
        }
        if rep % 2 == 1 {
            run_ours(&mut ours);
        }
    }
    let rate = |t: &Timings| bytes / t.median().as_secs_f64() / 1e9;
    println!("| what | median | GB/s |");
    println!("| --- | ---: | ---: |");
    println!(
        "| buildfleet snapshot (walk + hash + Merkle encode) | {:.0} ms | {:.2} |",
        ms(ours.median()),
        rate(&ours)
    );
    let labels = ["b3sum, one process", "b3sum, one process per core"];
    for (label, t) in labels.iter().zip(&theirs) {
        println!("| {label} | {:.0} ms | {:.2} |", ms(t.median()), rate(t));
    }
    let best = theirs.iter().map(rate).fold(0.0f64, f64::max);
    let ratio = rate(&ours) / best;
    println!(
        "aim: ≥90% of the best b3sum throughput: {:.0}% {}",
        ratio * 100.0,
        verdict(ratio >= 0.9)
    );
}
