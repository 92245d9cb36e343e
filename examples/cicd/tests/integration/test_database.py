"""Against the real PostgreSQL server the step's `services:` started: its
port is in BUILDFLEET_SERVICE_DB_PORT, and the step only runs once
`pg_isready` said yes."""

import os
import subprocess

from app import pricing


def psql(sql: str) -> str:
    port = os.environ["BUILDFLEET_SERVICE_DB_PORT"]
    out = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "-d", "postgres",
         "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
        check=True, capture_output=True, text=True,
    )
    return out.stdout.strip()


def test_prices_survive_a_round_trip_through_the_database():
    psql("CREATE TABLE IF NOT EXISTS prices (sku text PRIMARY KEY, cents int NOT NULL)")
    psql("INSERT INTO prices VALUES ('book', 1000) ON CONFLICT (sku) DO UPDATE SET cents = 1000")
    cents = int(psql("SELECT cents FROM prices WHERE sku = 'book'"))
    assert pricing.with_tax(cents) == 1200


def test_the_server_is_postgres():
    assert psql("SELECT version()").startswith("PostgreSQL")
