#!/usr/bin/env bash
# A smoke test of the deployed app: its version, its health and one price.
set -euo pipefail
env=$1
port=$(curl -fsS "$ENVIRONMENT/ports" | python3 -c "import json,sys; print(json.load(sys.stdin)['$env'])")
base="http://127.0.0.1:$port"
echo "version: $(curl -fsS "$base/version")"
test "$(curl -fsS "$base/price/1000")" = 1200
curl -fsS "$base/health"
