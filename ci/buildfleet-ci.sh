#!/usr/bin/env bash
# Delegates a CI job to a buildfleet fleet: the shell part of the GitHub
# Action (ci/github/action.yml) and of the GitLab CI template
# (ci/gitlab/buildfleet.gitlab-ci.yml), one script so both behave alike.
#
# It installs the `buildfleet` binary if there is none on PATH, submits the
# pipeline with the job's context (ref, commit, event and actor come from
# the CI's own variables), streams the run's log, writes its JUnit report
# and downloads its artifacts for the CI to keep — and exits exactly as
# `buildfleet submit` did: 0 only when the run is green.
#
# Settings (environment):
#   BUILDFLEET_COORDINATOR, BUILDFLEET_CACHE   the fleet (required)
#   BUILDFLEET_TOKEN        a client token for the fleet, from the CI's
#                           secret store (never a runner or admin token)
#   BUILDFLEET_PIPELINE     the pipeline file (default: buildfleet.yaml)
#   BUILDFLEET_OUT          where the JUnit report and artifacts go
#                           (default: buildfleet-out)
#   BUILDFLEET_ARGS         more `buildfleet submit` arguments (word-split)
#   BUILDFLEET_VERSION      the release to install when none is on PATH
#   BUILDFLEET_DOWNLOAD_URL where that release is (default: GitHub releases)
set -euo pipefail

: "${BUILDFLEET_COORDINATOR:?set BUILDFLEET_COORDINATOR to the coordinator URL of the fleet}"
: "${BUILDFLEET_CACHE:?set BUILDFLEET_CACHE to the cache URL of the fleet}"
pipeline=${BUILDFLEET_PIPELINE:-buildfleet.yaml}
out=${BUILDFLEET_OUT:-buildfleet-out}
mkdir -p "$out"

if ! command -v buildfleet >/dev/null; then
  version=${BUILDFLEET_VERSION:?no buildfleet on PATH: set BUILDFLEET_VERSION (or put the binary on PATH)}
  url=${BUILDFLEET_DOWNLOAD_URL:-https://github.com/buildfleet/buildfleet/releases/download/v$version/buildfleet-linux-$(uname -m)}
  echo "installing buildfleet $version from $url"
  mkdir -p "$out/bin"
  curl -fsSL -o "$out/bin/buildfleet" "$url"
  chmod +x "$out/bin/buildfleet"
  export PATH="$PWD/$out/bin:$PATH"
fi

log="$out/submit.log"
status=0
# shellcheck disable=SC2086 # BUILDFLEET_ARGS is a list of arguments by design
buildfleet submit "$pipeline" --junit "$out/junit.xml" ${BUILDFLEET_ARGS:-} | tee "$log" || status=$?

run=$(sed -n 's/^run \(run-[0-9a-f]*\) submitted.*/\1/p' "$log" | head -1)
if [ -n "$run" ]; then
  if [ -n "${GITHUB_OUTPUT:-}" ]; then
    { echo "run-id=$run"; echo "junit=$out/junit.xml"; echo "artifacts=$out/artifacts"; } >> "$GITHUB_OUTPUT"
  fi
  echo "$run" > "$out/run-id"
  # Artifacts of a red run are kept too: they are what shows why.
  if ! buildfleet artifacts "$run" --out "$out/artifacts"; then
    echo "buildfleet: no artifacts downloaded for $run (none declared, or the cache lost them)"
  fi
fi
exit "$status"
