#!/bin/sh
# One-shot (compose service temporal-schema): create Temporal's two PostgreSQL databases and bring their schemas
# up to the version the server image expects. Safe on every `docker compose up`: existing databases are kept and
# only missing migrations are applied.
#
# Outside compose (scripts/topology.sh), point it at the tool and the schema of the server you run:
# GANTRY_TEMPORAL_SQL_TOOL (default temporal-sql-tool on PATH, as in the admin-tools image) and SCHEMA_DIR
# (default the image's /etc/temporal/schema/postgresql/v12); scripts/provision.sh --print-env prints both.
set -eu
: "${POSTGRES_SEEDS:?POSTGRES_SEEDS (the PostgreSQL host) must be set}"
: "${POSTGRES_USER:?POSTGRES_USER must be set}"
: "${SQL_PASSWORD:?SQL_PASSWORD (the PostgreSQL password) must be set}"
DB_PORT="${DB_PORT:-5432}"
SCHEMA_DIR="${SCHEMA_DIR:-/etc/temporal/schema/postgresql/v12}"
SQL_TOOL="${GANTRY_TEMPORAL_SQL_TOOL:-temporal-sql-tool}"
for dir in temporal visibility; do
  if [ ! -d "$SCHEMA_DIR/$dir/versioned" ]; then
    echo "temporal-schema: no schema at $SCHEMA_DIR/$dir/versioned; set SCHEMA_DIR to the server's schema/postgresql/v12 directory" >&2
    exit 1
  fi
done

sql() { "$SQL_TOOL" --plugin postgres12 --ep "$POSTGRES_SEEDS" -u "$POSTGRES_USER" -p "$DB_PORT" "$@"; }

for pair in temporal:temporal temporal_visibility:visibility; do
  db="${pair%%:*}"
  dir="${pair#*:}"
  # The tool answers success for a database that exists already, so this cannot tell created from kept.
  if out="$(sql --db "$db" create 2>&1)"; then
    echo "temporal-schema: database $db present (created if it was missing)"
  elif printf '%s' "$out" | grep -qi 'already exists'; then
    echo "temporal-schema: database $db exists"
  else
    printf '%s\n' "$out" >&2
    echo "temporal-schema: could not create database $db on $POSTGRES_SEEDS:$DB_PORT; check that PostgreSQL is up there (under compose: the postgresql service) and the password (POSTGRES_PASSWORD)" >&2
    exit 1
  fi
  sql --db "$db" setup-schema -v 0.0
  sql --db "$db" update-schema -d "$SCHEMA_DIR/$dir/versioned"
done
echo "temporal-schema: done"
