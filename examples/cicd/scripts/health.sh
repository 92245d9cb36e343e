#!/usr/bin/env bash
# The environment's app answers /health with 200 and runs this commit.
set -euo pipefail
env=$1
port=$(curl -fsS "$ENVIRONMENT/ports" | python3 -c "import json,sys; print(json.load(sys.stdin)['$env'])")
curl -fsS "http://127.0.0.1:$port/health"
test "$(curl -fsS "http://127.0.0.1:$port/version")" = "$BUILDFLEET_SHORT_SHA"
