//! The commands that watch a fleet rather than change it — `logs`, `runs`,
//! `runners` — and where every role's spans go.

use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct LogsArgs {
    pub run: String,
    /// Only this step (else every step of the run).
    pub step: Option<String>,
    /// Only this shard of the step (else every shard).
    #[arg(long, requires = "step")]
    pub shard: Option<u32>,
    /// Follow the run's log as it streams (masked and capped like any
    /// watcher's), until the run ends.
    #[arg(short = 'f', long)]
    pub follow: bool,
    #[arg(long, env = "BUILDFLEET_COORDINATOR")]
    pub coordinator: String,
    /// Where whole logs are read from (not needed with `-f`).
    #[arg(long, env = "BUILDFLEET_CACHE", required_unless_present = "follow")]
    pub cache: Option<String>,
}

/// How a listing is printed.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// JSON for scripts (field names are stable).
    Json,
}

/// What every listing takes.
#[derive(Args, Debug)]
pub struct ListingArgs {
    #[arg(long, env = "BUILDFLEET_COORDINATOR")]
    pub coordinator: String,
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RunsArgs {
    #[command(subcommand)]
    pub command: Option<RunsCommand>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    #[arg(long, env = "BUILDFLEET_COORDINATOR")]
    pub coordinator: Option<String>,
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Subcommand, Debug)]
pub enum RunsCommand {
    /// One run: its steps and shards, their states, times and cache use.
    Show {
        run: String,
        #[command(flatten)]
        listing: ListingArgs,
    },
}

/// Where spans go.
#[derive(Args, Debug, Clone, Default)]
pub struct TraceArgs {
    /// Export this role's spans over OTLP/gRPC to URL (e.g.
    /// `http://otel-collector:4317`); one trace per run, joined across
    /// the coordinator, runners and cache. Off when unset.
    #[arg(long, value_name = "URL", env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

impl TraceArgs {
    /// Starts the exporter, if one was asked for (inside the runtime).
    pub fn start(
        &self,
        service: &'static str,
    ) -> anyhow::Result<Option<buildfleet_trace::Exporter>> {
        self.otlp_endpoint
            .as_deref()
            .map(|url| buildfleet_trace::Exporter::start(url, service))
            .transpose()
            .map_err(Into::into)
    }
}
