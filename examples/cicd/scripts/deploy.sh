#!/usr/bin/env bash
# Deploys this build's artifact (received from `build` at dist/app.pyz) to
# an environment, and checks the host serves exactly these bytes.
set -euo pipefail
env=$1
want="sha256:$(sha256sum dist/app.pyz | cut -d' ' -f1)"
echo "deploying app:$BUILDFLEET_SHORT_SHA ($want) to $env"
answer=$(curl -fsS -X POST --data-binary @dist/app.pyz \
  "$ENVIRONMENT/deploy/$env?version=$BUILDFLEET_SHORT_SHA")
echo "$answer"
got=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["digest"])' <<<"$answer")
[ "$got" = "$want" ] || { echo "the host took $got, not $want" >&2; exit 1; }
