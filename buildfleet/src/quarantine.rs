//! The pipeline's `quarantine:` file, read from the submitted working tree:
//! one test id per line (as the summary prints them), `#` comments.

use std::path::Path;

use anyhow::{bail, Context, Result};
use buildfleet_coordinator::pipeline::Pipeline;

pub fn read(pipeline: &Pipeline, work_dir: &Path) -> Result<Vec<String>> {
    let Some(rel) = &pipeline.quarantine else {
        return Ok(Vec::new());
    };
    let path = work_dir.join(rel);
    if !path.is_file() {
        bail!(
            "the pipeline's quarantine file `{rel}` does not exist in {} (create it, or remove `quarantine:`)",
            work_dir.display()
        );
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the quarantine file {}", path.display()))?;
    Ok(parse(&text))
}

fn parse(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_once('#').map_or(l, |(before, _)| before).trim())
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_one_per_line_without_comments_or_blanks() {
        let text = "# flaky since 2026-11\ntests.test_net::test_timeout  # owner: ops\n\n  a::b\n";
        assert_eq!(
            super::parse(text),
            vec!["tests.test_net::test_timeout", "a::b"]
        );
    }
}
