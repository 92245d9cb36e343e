#!/usr/bin/env bash
# A throwaway PostgreSQL server for the `integration` step's service: a
# fresh cluster, listening on 127.0.0.1 at $BUILDFLEET_SERVICE_DB_PORT,
# trusting local connections, removed when the service is stopped.
# PostgreSQL refuses to run as root, so as root it runs as `postgres`
# (its data then lives under /tmp, where that user can reach it).
set -euo pipefail
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
[ -n "$bin" ] || bin=$(dirname "$(command -v initdb)")
data=$(mktemp -d /tmp/buildfleet-pg.XXXXXX)
as=()
if [ "$(id -u)" = 0 ]; then
  chown postgres "$data"
  as=(runuser -u postgres --)
fi
"${as[@]}" "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 >/dev/null
"${as[@]}" "$bin/postgres" -D "$data" -h 127.0.0.1 -p "$BUILDFLEET_SERVICE_DB_PORT" -k "$data" &
server=$!
stop() { kill -TERM "$server" 2>/dev/null || true; wait "$server" || true; rm -rf "$data"; exit 0; }
trap stop TERM INT
wait "$server"
