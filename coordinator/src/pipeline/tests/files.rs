//! Reading pipelines from disk.

use super::*;

#[test]
fn parse_file_reports_an_unreadable_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.yaml");
    let errors = parse_file(&path).unwrap_err();
    assert_eq!(errors.len(), 1);
    let error = &errors.0[0];
    assert_eq!(error.file, path.display().to_string());
    assert_eq!((error.line, error.column), (0, 0));
    assert!(
        error.message.starts_with("cannot read the pipeline file"),
        "{error}"
    );
    assert!(error
        .to_string()
        .starts_with(&format!("{}: cannot read", path.display())));
}

#[test]
fn parse_file_reads_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("buildfleet.yaml");
    std::fs::write(&good, one_step(&["run: make"])).unwrap();
    assert_eq!(parse_file(&good).unwrap().steps().count(), 1);

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, one_step(&["run: make", "shards: x"])).unwrap();
    let errors = parse_file(&bad).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors.0[0].file, bad.display().to_string());
    assert_eq!((errors.0[0].line, errors.0[0].column), (7, 17));
}
