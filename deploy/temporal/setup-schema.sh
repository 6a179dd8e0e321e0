#!/bin/sh
# One-shot (compose service temporal-schema): create Temporal's two PostgreSQL databases and bring their schemas
# up to the version the server image expects. Safe on every `docker compose up`: existing databases are kept and
# only missing migrations are applied.
set -eu
: "${POSTGRES_SEEDS:?POSTGRES_SEEDS (the PostgreSQL host) must be set}"
: "${POSTGRES_USER:?POSTGRES_USER must be set}"
: "${SQL_PASSWORD:?SQL_PASSWORD (the PostgreSQL password) must be set}"
DB_PORT="${DB_PORT:-5432}"
SCHEMA_DIR="${SCHEMA_DIR:-/etc/temporal/schema/postgresql/v12}"

sql() { temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -u "$POSTGRES_USER" -p "$DB_PORT" "$@"; }

for pair in temporal:temporal temporal_visibility:visibility; do
  db="${pair%%:*}"
  dir="${pair#*:}"
  if out="$(sql --db "$db" create 2>&1)"; then
    echo "temporal-schema: created database $db"
  elif printf '%s' "$out" | grep -qi 'already exists'; then
    echo "temporal-schema: database $db exists"
  else
    printf '%s\n' "$out" >&2
    echo "temporal-schema: could not create database $db on $POSTGRES_SEEDS:$DB_PORT; check the postgresql service and POSTGRES_PASSWORD" >&2
    exit 1
  fi
  sql --db "$db" setup-schema -v 0.0
  sql --db "$db" update-schema -d "$SCHEMA_DIR/$dir/versioned"
done
echo "temporal-schema: done"
