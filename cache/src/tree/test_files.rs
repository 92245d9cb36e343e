//! Writing fixture trees for the tree module's tests.

/// Writes `data` at `rel` under `root`, creating parent directories.
pub fn write(root: &std::path::Path, rel: &str, data: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}
