//! `buildfleet approve RUN STEP` and `buildfleet reject RUN STEP --reason
//! …`: a person's decision on a step waiting for approval, recorded with
//! who made it.

use anyhow::Result;

use crate::cli::{DecideArgs, RejectArgs};

pub async fn approve(args: DecideArgs) -> Result<i32> {
    decide(
        &args.coordinator,
        &args.run,
        &args.step,
        true,
        args.actor,
        &args.reason,
    )
    .await
}

pub async fn reject(args: RejectArgs) -> Result<i32> {
    if args.reason.trim().is_empty() {
        eprintln!("error: `--reason` must say why the step is rejected");
        return Ok(crate::exit::USAGE);
    }
    decide(
        &args.coordinator,
        &args.run,
        &args.step,
        false,
        args.actor,
        &args.reason,
    )
    .await
}

async fn decide(
    coordinator: &str,
    run: &str,
    step: &str,
    approve: bool,
    actor: Option<String>,
    reason: &str,
) -> Result<i32> {
    let actor = actor
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_default();
    let mut client = crate::wire::Coordinator::connect(coordinator).await?;
    match client.decide(run, step, approve, &actor, reason).await {
        Ok(()) => {
            let verb = if approve { "approved" } else { "rejected" };
            println!("{verb} step `{step}` of run {run} as {actor}");
            Ok(crate::exit::GREEN)
        }
        Err(s)
            if matches!(
                s.code(),
                tonic::Code::NotFound | tonic::Code::FailedPrecondition
            ) =>
        {
            eprintln!("error: {}", s.message());
            Ok(crate::exit::USAGE)
        }
        Err(s) => Err(anyhow::Error::new(s).context("sending the decision")),
    }
}
