//! What people do to a run that exists: `buildfleet approve RUN STEP` and
//! `buildfleet reject RUN STEP --reason …` (a decision on a step waiting
//! for approval, recorded with who made it), and `buildfleet rerun RUN
//! STEP` (one step again, with that run's inputs and artifacts).

use anyhow::Result;

use buildfleet_trust::ClientTrust;

use crate::cli::{DecideArgs, RejectArgs};

pub async fn approve(args: DecideArgs, trust: &ClientTrust) -> Result<i32> {
    decide(args.target, true, &args.reason, trust).await
}

pub async fn reject(args: RejectArgs, trust: &ClientTrust) -> Result<i32> {
    if args.reason.trim().is_empty() {
        eprintln!("error: `--reason` must say why the step is rejected");
        return Ok(crate::exit::USAGE);
    }
    decide(args.target, false, &args.reason, trust).await
}

/// The actor named, else `$USER`.
fn actor_of(given: Option<String>) -> String {
    given
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_default()
}

async fn decide(
    target: crate::cli::StepOfRun,
    approve: bool,
    reason: &str,
    trust: &ClientTrust,
) -> Result<i32> {
    let (run, step) = (&target.run, &target.step);
    let actor = actor_of(target.actor);
    let mut client = crate::wire::Coordinator::connect(&target.coordinator, trust).await?;
    match client.decide(run, step, approve, &actor, reason).await {
        Ok(()) => {
            let verb = if approve { "approved" } else { "rejected" };
            println!("{verb} step `{step}` of run {run} as {actor}");
            Ok(crate::exit::GREEN)
        }
        Err(s)
            if matches!(
                s.code(),
                tonic::Code::NotFound
                    | tonic::Code::FailedPrecondition
                    | tonic::Code::PermissionDenied
                    | tonic::Code::Unauthenticated
            ) =>
        {
            eprintln!("error: {}", s.message());
            Ok(crate::exit::USAGE)
        }
        Err(s) => Err(anyhow::Error::new(s).context("sending the decision")),
    }
}

/// `buildfleet rerun RUN STEP`: the new run is watched like a submission,
/// and its end decides the exit status.
pub async fn rerun(args: crate::cli::RerunArgs, trust: &ClientTrust) -> Result<i32> {
    let args = args.target;
    let actor = actor_of(args.actor);
    let mut client = crate::wire::Coordinator::connect(&args.coordinator, trust).await?;
    let run_id = match client.rerun(&args.run, &args.step, &actor).await {
        Ok(id) => id,
        Err(s)
            if matches!(
                s.code(),
                tonic::Code::NotFound | tonic::Code::InvalidArgument
            ) =>
        {
            eprintln!("error: {}", s.message());
            return Ok(crate::exit::USAGE);
        }
        Err(s) => return Err(anyhow::Error::new(s).context("asking for the re-run")),
    };
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    writeln!(
        out,
        "run {run_id} submitted: a re-run of step `{}` of run {}",
        args.step, args.run
    )?;
    let status =
        crate::submit::watch_to_end(&args.coordinator, trust, client, &run_id, &mut out).await?;
    Ok(if crate::progress::is_green(&status) {
        crate::exit::GREEN
    } else {
        crate::exit::FAILED
    })
}
