//! The items of `split: { files: GLOB }` steps, found in the submitted
//! snapshot itself — the exact tree the runners materialise, `.gitignore`
//! already applied — so every shard's list names files it will have.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use buildfleet_cache::{Digest, Listings, Snapshot};
use buildfleet_coordinator::pipeline::{Pipeline, Split};

/// Matching files per split step, sorted.
pub fn for_pipeline(pipeline: &Pipeline, snap: &Snapshot) -> Result<BTreeMap<String, Vec<String>>> {
    let split_steps: Vec<_> = pipeline
        .steps()
        .filter_map(|s| match &s.split {
            Some(Split::Files(glob)) => Some((s.name.clone(), glob.clone())),
            _ => None,
        })
        .collect();
    if split_steps.is_empty() {
        return Ok(BTreeMap::new());
    }
    let listings = snap
        .listings()
        .context("reading the snapshot's directories")?;
    let mut files = Vec::new();
    collect(&listings, &snap.root, "", &mut files);
    let mut out = BTreeMap::new();
    for (step, glob) in split_steps {
        let matcher = globset::Glob::new(&glob)
            .with_context(|| format!("step `{step}`: split glob `{glob}`"))?
            .compile_matcher();
        let items: Vec<String> = files
            .iter()
            .filter(|f| matcher.is_match(f))
            .cloned()
            .collect();
        out.insert(step, items);
    }
    Ok(out)
}

fn collect(listings: &Listings, dir: &Digest, prefix: &str, out: &mut Vec<String>) {
    let Some(listing) = listings.get(dir) else {
        return;
    };
    for f in &listing.files {
        out.push(format!("{prefix}{}", f.name));
    }
    for d in &listing.directories {
        collect(listings, &d.digest, &format!("{prefix}{}/", d.name), out);
    }
    out.sort();
}
