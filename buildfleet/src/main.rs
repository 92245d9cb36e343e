//! `buildfleet`: every role in one binary. Exit 0 only when every step of the
//! pipeline succeeded; 1 when it failed; 2 for bad usage or an invalid file.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use buildfleet::cli::{CacheArgs, CacheCommand, Cli, Command, RunArgs, SubmitArgs, TokenCommand};
use buildfleet::exit;
use buildfleet::fleet::{EmbeddedFleet, FleetOptions};
use buildfleet::submit::{project_name, submit_and_watch, RunEnd, SubmitOptions};
use buildfleet_coordinator::scheduler::SchedulerConfig;
use buildfleet_coordinator::CoordinatorConfig;
use buildfleet_trust::ClientTrust;
use clap::Parser;

fn main() -> ExitCode {
    // The shard supervisor is started by runners, not people: no clap, no
    // runtime, no logging — it must be small and start fast.
    if std::env::args_os().nth(1).as_deref()
        == Some(std::ffi::OsStr::new(
            buildfleet_runner::supervisor::SUBCOMMAND,
        ))
    {
        let code = buildfleet_runner::supervisor::main(std::env::args_os().skip(2));
        std::process::exit(code);
    }
    let cli = Cli::parse();
    let default_log = match cli.command {
        Command::Run(_)
        | Command::Validate { .. }
        | Command::Submit(_)
        | Command::Logs(_)
        | Command::Runs(_)
        | Command::Runners(_)
        | Command::Artifacts(_)
        | Command::Rerun(_)
        | Command::Approve(_)
        | Command::Reject(_)
        | Command::Token(_) => "warn",
        _ => "info",
    };
    buildfleet::logging::init(default_log);
    let code = match cli.command {
        Command::Validate { file } => validate(&file),
        Command::Token(TokenCommand::New(args)) => {
            buildfleet::token::new(args).unwrap_or_else(|e| {
                eprintln!("error: {e:#}");
                exit::FAILED
            })
        }
        _ => match cli
            .client_trust()
            .and_then(|trust| tokio_main(cli.command, trust))
        {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                exit::FAILED
            }
        },
    };
    ExitCode::from(code as u8)
}

fn validate(file: &std::path::Path) -> i32 {
    match buildfleet_coordinator::pipeline::parse_file(file) {
        Ok(p) => {
            let steps = p.steps().count();
            println!(
                "{}: valid ({} stages, {steps} steps)",
                file.display(),
                p.stages.len()
            );
            exit::GREEN
        }
        Err(e) => {
            eprintln!("{e}");
            exit::USAGE
        }
    }
}

/// `trust` is what this process presents to the fleet (`run` makes its own).
fn tokio_main(cmd: Command, trust: ClientTrust) -> Result<i32> {
    let trust = || -> Result<ClientTrust> { Ok(trust.clone()) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("buildfleet")
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        match cmd {
            Command::Run(args) => run(args).await,
            Command::Submit(args) => submit(args, &trust()?).await,
            Command::Logs(args) => buildfleet::logs::print(args, &trust()?).await,
            Command::Runs(args) => buildfleet::listing::runs(args, &trust()?).await,
            Command::Runners(args) => buildfleet::listing::runners(args, &trust()?).await,
            Command::Artifacts(args) => buildfleet::artifacts::download(args, &trust()?).await,
            Command::Rerun(args) => buildfleet::decide::rerun(args, &trust()?).await,
            Command::Approve(args) => buildfleet::decide::approve(args, &trust()?).await,
            Command::Reject(args) => buildfleet::decide::reject(args, &trust()?).await,
            Command::Coordinator(args) => buildfleet::roles::coordinator(args, trust()?)
                .await
                .map(|_| exit::GREEN),
            Command::Cache(CacheArgs {
                command: Some(CacheCommand::Explain(args)),
                ..
            }) => buildfleet::explain::run(args, &trust()?).await,
            Command::Cache(args) => buildfleet::roles::cache(args).await.map(|_| exit::GREEN),
            Command::Runner(args) => buildfleet::roles::runner(args, trust()?)
                .await
                .map(|_| exit::GREEN),
            Command::Validate { .. } | Command::Token(_) => {
                unreachable!("handled before the runtime starts")
            }
        }
    })
}

fn exit_code(end: RunEnd) -> i32 {
    match end {
        RunEnd::Finished(status) if buildfleet::progress::is_green(&status) => exit::GREEN,
        RunEnd::Finished(_) => exit::FAILED,
        RunEnd::Invalid(msg) => {
            eprintln!("{msg}");
            exit::USAGE
        }
    }
}

async fn run(args: RunArgs) -> Result<i32> {
    // Parse and validate before anything is started or bound.
    if let Err(e) = buildfleet_coordinator::pipeline::parse_file(&args.file) {
        eprintln!("{e}");
        return Ok(exit::USAGE);
    }
    let work_dir = match &args.dir {
        Some(d) => d.clone(),
        None => buildfleet::submit::pipeline_dir(&args.file),
    };
    let data_dir = args
        .data
        .clone()
        .unwrap_or_else(buildfleet::fleet::default_data_dir);
    if let Some(msg) = buildfleet::fleet::data_inside_inputs(&data_dir, &work_dir) {
        eprintln!("{msg}");
        return Ok(exit::USAGE);
    }
    buildfleet::fleet::check_data_dir(&data_dir)?;
    let runners = args
        .runners
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get() as u32));
    let dashboard = match &args.dashboard {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the dashboard to {addr}"))?,
        ),
        None => None,
    };
    let dashboard_addr = dashboard.as_ref().and_then(|l| l.local_addr().ok());
    let fleet = EmbeddedFleet::start(FleetOptions {
        data_dir,
        cache_limits: buildfleet_cache::StoreLimits {
            max_bytes: args.cache_max_size,
        },
        runners,
        coordinator: {
            let mut config = CoordinatorConfig {
                scheduler: SchedulerConfig {
                    label_wait: args.sched.label_wait,
                    ..SchedulerConfig::default()
                },
                ..CoordinatorConfig::default()
            };
            args.policy.apply(&mut config);
            config
        },
        kill_grace: args.sched.kill_grace,
        min_free_disk: args.min_free_disk,
        runner_labels: Vec::new(),
        supervisor: buildfleet::roles::supervisor(),
        step_users: args
            .step_user
            .clone()
            .unwrap_or(buildfleet_runner::step_users::StepUsers::Runner),
        dashboard,
    })
    .await?;
    let mut stdout = std::io::stdout().lock();
    // Said first, so a person (or a script) can reach this fleet while the
    // run is under way: `buildfleet approve … --coordinator URL`.
    writeln!(
        stdout,
        "embedded fleet: coordinator {} cache {} token-file {}",
        fleet.coordinator_url,
        fleet.cache_url,
        fleet.token_file.display()
    )?;
    if let Some(addr) = dashboard_addr {
        writeln!(
            stdout,
            "dashboard: http://{addr}/ (log in with the token in {})",
            fleet.token_file.display()
        )?;
    }
    let outcome = submit_and_watch(
        SubmitOptions {
            pipeline_file: &args.file,
            work_dir: &work_dir,
            coordinator_url: &fleet.coordinator_url,
            cache_url: &fleet.cache_url,
            trust: &fleet.client,
            idempotency_key: None,
            no_cache: args.flags.no_cache,
            project: project_name(args.flags.project.as_deref(), &work_dir),
            junit: args.flags.junit.as_deref(),
            fail_on_flaky: args.flags.fail_on_flaky,
            context: buildfleet::context::detect(&args.flags.context(), &work_dir, &|name| {
                std::env::var(name).ok()
            }),
            vars: args.flags.vars.iter().cloned().collect(),
        },
        &mut stdout,
    )
    .await;
    stdout.flush()?;
    drop(stdout);
    fleet.shutdown().await;
    Ok(exit_code(outcome?))
}

async fn submit(args: SubmitArgs, trust: &ClientTrust) -> Result<i32> {
    let work_dir = args
        .dir
        .clone()
        .unwrap_or_else(|| buildfleet::submit::pipeline_dir(&args.file));
    let mut stdout = std::io::stdout().lock();
    let outcome = submit_and_watch(
        SubmitOptions {
            pipeline_file: &args.file,
            work_dir: &work_dir,
            coordinator_url: &args.coordinator,
            cache_url: &args.cache,
            trust,
            idempotency_key: args.idempotency_key,
            no_cache: args.flags.no_cache,
            project: project_name(args.flags.project.as_deref(), &work_dir),
            junit: args.flags.junit.as_deref(),
            fail_on_flaky: args.flags.fail_on_flaky,
            context: buildfleet::context::detect(&args.flags.context(), &work_dir, &|name| {
                std::env::var(name).ok()
            }),
            vars: args.flags.vars.iter().cloned().collect(),
        },
        &mut stdout,
    )
    .await?;
    Ok(exit_code(outcome))
}
