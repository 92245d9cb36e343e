//! Why a cache missed, in words: the difference between what a step (or a
//! dependency cache) is keyed by now and the nearest earlier entry.

use buildfleet_cache::{diff, CasClient, Change};

use super::records::{ActionRecord, Manifest};

/// Paths listed before "and N more".
const MAX_PATHS: usize = 8;

/// Differences between two action records, input paths included when both
/// input trees can still be listed.
pub async fn action_miss(cas: &CasClient, old: &ActionRecord, new: &ActionRecord) -> String {
    let mut reasons = Vec::new();
    if old.schema != new.schema {
        reasons.push(format!(
            "the record format changed (schema {} → {})",
            old.schema, new.schema
        ));
    }
    if old.platform != new.platform {
        reasons.push(format!("platform {} → {}", old.platform, new.platform));
    }
    if old.command != new.command {
        reasons.push("the command changed".to_owned());
    }
    for (name, value) in &new.env {
        match old.env.get(name) {
            None => reasons.push(format!("env {name} was added")),
            Some(v) if v != value => reasons.push(format!("env {name} changed")),
            _ => {}
        }
    }
    for name in old.env.keys().filter(|n| !new.env.contains_key(*n)) {
        reasons.push(format!("env {name} was removed"));
    }
    if old.shard_count != new.shard_count || old.shard_index != new.shard_index {
        reasons.push(format!(
            "shard {}/{} → {}/{}",
            old.shard_index, old.shard_count, new.shard_index, new.shard_count
        ));
    }
    if old.outputs != new.outputs {
        reasons.push("the declared outputs changed".to_owned());
    }
    if old.input_globs != new.input_globs {
        reasons.push("the `inputs` globs changed".to_owned());
    }
    if old.input_root != new.input_root {
        reasons.push(input_changes(cas, old, new).await);
    }
    if reasons.is_empty() {
        // Same digest, yet a miss: the entry or its blobs were evicted.
        return "an identical earlier result is no longer complete in the cache (evicted)"
            .to_owned();
    }
    reasons.join("; ")
}

async fn input_changes(cas: &CasClient, old: &ActionRecord, new: &ActionRecord) -> String {
    let old_listings = match cas.tree_listings(&old.input_root).await {
        Ok(l) => l,
        Err(_) => {
            return "inputs changed (the earlier input tree is no longer in the cache to compare)"
                .to_owned()
        }
    };
    let new_listings = match cas.tree_listings(&new.input_root).await {
        Ok(l) => l,
        Err(e) => {
            return format!("inputs changed (the current input tree could not be listed: {e})")
        }
    };
    match diff(
        &old_listings,
        &old.input_root,
        &new_listings,
        &new.input_root,
    ) {
        Ok(changes) => describe_paths(&changes),
        Err(e) => format!("inputs changed (could not compare the trees: {e})"),
    }
}

fn describe_paths(changes: &[Change]) -> String {
    if changes.is_empty() {
        return "inputs changed".to_owned();
    }
    let listed: Vec<String> = changes
        .iter()
        .take(MAX_PATHS)
        .map(|c| format!("{} ({})", c.path, c.kind.name()))
        .collect();
    let more = changes.len().saturating_sub(MAX_PATHS);
    let mut text = format!(
        "input {} {}",
        plural(changes.len(), "path"),
        listed.join(", ")
    );
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    text
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        word.to_owned()
    } else {
        format!("{word}s")
    }
}

/// Differences between a dependency cache's current key inputs and the
/// nearest earlier entry's.
pub fn dependency_miss(old: &Manifest, new: &Manifest) -> String {
    let mut reasons = Vec::new();
    if old.version != new.version {
        reasons.push(format!("version {:?} → {:?}", old.version, new.version));
    }
    if old.platform != new.platform {
        reasons.push(format!("platform {} → {}", old.platform, new.platform));
    }
    for (path, digest) in &new.key_files {
        match old.key_files.iter().find(|(p, _)| p == path) {
            None => reasons.push(format!("key file {path} was added")),
            Some((_, d)) if d != digest => reasons.push(format!("key file {path} changed")),
            _ => {}
        }
    }
    for (path, _) in &old.key_files {
        if !new.key_files.iter().any(|(p, _)| p == path) {
            reasons.push(format!("key file {path} was removed"));
        }
    }
    if reasons.is_empty() {
        return "an entry with this key existed but its content is no longer complete in the cache (evicted)".to_owned();
    }
    reasons.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use buildfleet_cache::{ChangeKind, Digest};

    fn manifest(version: &str, files: &[(&str, &[u8])]) -> Manifest {
        Manifest {
            name: "deps".into(),
            version: version.into(),
            platform: "linux-x86_64".into(),
            key_files: files
                .iter()
                .map(|(p, c)| (p.to_string(), Digest::of(c)))
                .collect(),
            paths: Vec::new(),
        }
    }

    #[test]
    fn dependency_misses_name_the_changed_key_file_and_version() {
        let old = manifest(
            "1",
            &[("requirements.txt", b"a==1"), ("constraints.txt", b"c")],
        );
        let new = manifest(
            "1",
            &[("requirements.txt", b"a==2"), ("constraints.txt", b"c")],
        );
        assert_eq!(
            dependency_miss(&old, &new),
            "key file requirements.txt changed"
        );
        let bumped = manifest("2", &[("requirements.txt", b"a==1")]);
        assert_eq!(
            dependency_miss(&old, &bumped),
            "version \"1\" → \"2\"; key file constraints.txt was removed"
        );
        assert!(dependency_miss(&old, &old).contains("evicted"));
    }

    #[test]
    fn path_lists_are_capped_with_a_count() {
        let changes: Vec<Change> = (0..10)
            .map(|i| Change {
                path: format!("f{i}"),
                kind: ChangeKind::Modified,
            })
            .collect();
        let text = describe_paths(&changes);
        assert!(
            text.starts_with("input paths f0 (changed), f1 (changed)"),
            "{text}"
        );
        assert!(text.ends_with("and 2 more"), "{text}");
        assert_eq!(describe_paths(&changes[..1]), "input path f0 (changed)");
    }
}
