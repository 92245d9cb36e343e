//! `buildfleet logs RUN STEP [--shard N]`: a shard's whole log, read from
//! the cache by the digest its runner stored — including everything a log
//! cap kept out of the live stream.

use std::io::Write;

use anyhow::{bail, Context, Result};
use buildfleet_cache::CasClient;

use crate::cli::LogsArgs;

pub async fn print(args: LogsArgs, trust: &buildfleet_trust::ClientTrust) -> Result<i32> {
    let mut coordinator = crate::wire::Coordinator::connect(&args.coordinator, trust).await?;
    let status = coordinator
        .get(&args.run)
        .await
        .with_context(|| format!("looking up run {}", args.run))?;
    let Some(step) = status.steps.iter().find(|s| s.name == args.step) else {
        let names: Vec<&str> = status.steps.iter().map(|s| s.name.as_str()).collect();
        eprintln!(
            "error: run {} has no step `{}` (steps: {})",
            args.run,
            args.step,
            names.join(", ")
        );
        return Ok(crate::exit::USAGE);
    };
    let Some(shard) = step.shards.iter().find(|s| s.index == args.shard) else {
        eprintln!(
            "error: step `{}` has {} shard(s); there is no shard {}",
            step.name,
            step.shards.len(),
            args.shard
        );
        return Ok(crate::exit::USAGE);
    };
    let Some(digest) = shard.full_log else {
        bail!(
            "shard {} of `{}` has no stored log (it did not run, or its runner could not store it)",
            args.shard,
            step.name
        );
    };
    let cas = CasClient::connect_with(&args.cache, trust).await?;
    let log = cas
        .read_blob(&digest)
        .await
        .with_context(|| format!("reading log {digest} from the cache"))?;
    std::io::stdout().write_all(&log)?;
    Ok(crate::exit::GREEN)
}
