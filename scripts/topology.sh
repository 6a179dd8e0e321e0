#!/usr/bin/env bash
# The production topology of docker-compose.yml, without Docker, on loopback: Debian's PostgreSQL 15, the real
# Temporal server (built by scripts/provision.sh from the Go module proxy at the version compose pins), its schema
# set up by deploy/temporal/setup-schema.sh and the namespace and search attributes by
# deploy/temporal/setup-namespace.sh, exactly the scripts compose runs. Workers and the CLI then point at
# TEMPORAL_ADDRESS, as they would at compose's server.
#
#   eval "$(bash scripts/topology.sh up)"   # start (or resume) it; prints TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE
#   bash scripts/topology.sh status         # what runs, where the logs are
#   bash scripts/topology.sh server-stop [--kill]   # stop the Temporal server (--kill: SIGKILL, as a crash)
#   bash scripts/topology.sh server-start   # start it again on the same PostgreSQL
#   bash scripts/topology.sh env            # the shell assignments `up` printed, and PGHOST/PGPORT/PGUSER/PGPASSFILE
#   bash scripts/topology.sh down [--purge] # stop the server and PostgreSQL (--purge also deletes the data)
#
# The server is configured as the temporalio/server image configures itself: from environment variables through
# its embedded config template (DB=postgres12, POSTGRES_SEEDS, ... as in docker-compose.yml), with the dynamic config
# of deploy/temporal/dynamicconfig. The variables are written once to <dir>/temporal.env, so a restart uses the
# same ones.
#
# Settings (environment): GANTRY_TOPOLOGY_DIR (default /tmp/gantry-topology: PostgreSQL's data, logs, pid files),
# GANTRY_TOPOLOGY_PG_PORT (default 55432), TEMPORAL_NAMESPACE (default "default"), and the server's own port
# variables (FRONTEND_GRPC_PORT, default 7233; FRONTEND_HTTP_PORT, FRONTEND_MEMBERSHIP_PORT, HISTORY_GRPC_PORT,
# HISTORY_MEMBERSHIP_PORT, MATCHING_GRPC_PORT, MATCHING_MEMBERSHIP_PORT, WORKER_GRPC_PORT, WORKER_MEMBERSHIP_PORT).
# Ports must be below 32768: the server stores its membership ports in PostgreSQL as SMALLINT.
# PostgreSQL refuses to run as root: as root, it runs as the system user GANTRY_PG_USER (default gantry-pg,
# created if missing).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${GANTRY_TOPOLOGY_DIR:-${TMPDIR:-/tmp}/gantry-topology}"
PG_USER="${GANTRY_PG_USER:-gantry-pg}"
NAMESPACE="${TEMPORAL_NAMESPACE:-default}"
DB_USER=temporal
PORT_VARS=(FRONTEND_GRPC_PORT FRONTEND_HTTP_PORT FRONTEND_MEMBERSHIP_PORT HISTORY_GRPC_PORT HISTORY_MEMBERSHIP_PORT
  MATCHING_GRPC_PORT MATCHING_MEMBERSHIP_PORT WORKER_GRPC_PORT WORKER_MEMBERSHIP_PORT)

log() { printf 'topology: %s\n' "$*" >&2; }
die() { printf 'topology: error: %s\n' "$*" >&2; exit 1; }

cmd="${1:-}"; shift || true
kill_server=0; purge=0
for arg in "$@"; do
  case "$arg" in
    --kill) kill_server=1 ;;
    --purge) purge=1 ;;
    *) die "unknown option $arg (see: bash $0 --help)" ;;
  esac
done
case "$cmd" in
  up|down|status|env|server-start|server-stop) ;;
  -h|--help|help) sed -n '2,26p' "$0"; exit 0 ;;
  *) die "unknown command '${cmd}' (use up, down, status, env, server-start, server-stop; --help says more)" ;;
esac

[[ "$DIR" == /* ]] || DIR="$PWD/$DIR"
PG_DIR="$DIR/pg"
PG_DATA="$PG_DIR/data"
SERVER_ENV="$DIR/temporal.env"
SERVER_PID="$DIR/temporal.pid"
SERVER_LOG="$DIR/temporal.log"
PASSWORD_FILE="$DIR/postgres-password"
# What `up` wrote last, so later commands (and a restart) use the same ports unless told otherwise.
saved() { [[ -f "$SERVER_ENV" ]] && sed -n "s/^$1=//p" "$SERVER_ENV" || true; }
PG_PORT="${GANTRY_TOPOLOGY_PG_PORT:-$(saved DB_PORT)}"; PG_PORT="${PG_PORT:-55432}"

# --- binaries (scripts/provision.sh builds and prints them) -------------------------------------------------------
binaries() {
  if [[ -z "${GANTRY_TEMPORAL_SERVER:-}" || -z "${GANTRY_TEMPORAL_SQL_TOOL:-}" || -z "${GANTRY_TEMPORAL_SCHEMA_DIR:-}" \
        || -z "${GANTRY_TEMPORAL_CLI:-}" || -z "${GANTRY_PG_BIN:-}" ]]; then
    local assignments
    assignments="$(bash "$ROOT/scripts/provision.sh" --print-env)" \
      || die "scripts/provision.sh could not provide the Temporal server, its SQL tool and PostgreSQL (see above)"
    eval "$assignments"
  fi
  SERVER="$GANTRY_TEMPORAL_SERVER"; SQL_TOOL="$GANTRY_TEMPORAL_SQL_TOOL"; SCHEMA_DIR="$GANTRY_TEMPORAL_SCHEMA_DIR"
  CLI="$GANTRY_TEMPORAL_CLI"; PG_BIN="$GANTRY_PG_BIN"
  for f in "$SERVER" "$SQL_TOOL" "$CLI" "$PG_BIN/pg_ctl" "$PG_BIN/initdb" "$PG_BIN/postgres"; do
    [[ -x "$f" ]] || die "$f is missing; run bash scripts/provision.sh (it builds the Temporal server and checks PostgreSQL)"
  done
  [[ -d "$SCHEMA_DIR/temporal/versioned" ]] || die "no Temporal schema at $SCHEMA_DIR; run bash scripts/provision.sh"
}

# --- PostgreSQL -----------------------------------------------------------------------------------------------------
as_pg() {
  if [[ $(id -u) == 0 ]]; then (cd "$PG_DIR" && runuser -u "$PG_USER" -- "$@"); else (cd "$PG_DIR" && "$@"); fi
}

pg_running() { [[ -f "$PG_DATA/PG_VERSION" ]] && as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; }

pg_up() {
  mkdir -p "$DIR"
  if [[ $(id -u) == 0 ]]; then
    if ! id -u "$PG_USER" >/dev/null 2>&1; then
      useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$PG_USER" \
        || die "could not create the system user $PG_USER that PostgreSQL runs as (it refuses to run as root)"
      log "created the system user $PG_USER for PostgreSQL"
    fi
    chmod o+x "$DIR"   # mkdtemp makes 0700 directories; PostgreSQL's user only needs to pass through
    mkdir -p "$PG_DIR"; chown "$PG_USER" "$PG_DIR"; chmod 0700 "$PG_DIR"
    runuser -u "$PG_USER" -- test -w "$PG_DIR" \
      || die "$PG_USER cannot write $PG_DIR (a parent directory of $DIR is closed to it); choose another GANTRY_TOPOLOGY_DIR, e.g. under /tmp"
  else
    mkdir -p "$PG_DIR"; chmod 0700 "$PG_DIR"
  fi
  if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
    (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=\n' > "$PASSWORD_FILE")
    local pwfile="$PG_DIR/initdb-password"
    install -m 0600 "$PASSWORD_FILE" "$pwfile"
    [[ $(id -u) == 0 ]] && chown "$PG_USER" "$pwfile"
    log "initdb $PG_DATA (superuser $DB_USER, password in $PASSWORD_FILE)"
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U "$DB_USER" --pwfile="$pwfile" --auth=scram-sha-256 -E UTF8 --no-locale \
      >"$PG_DIR/initdb.log" 2>&1 || { cat "$PG_DIR/initdb.log" >&2; rm -f "$pwfile"; die "initdb failed (see above)"; }
    rm -f "$pwfile"
  fi
  [[ -s "$PASSWORD_FILE" ]] || die "$PASSWORD_FILE is missing, so nothing can log in to $PG_DATA; run '$0 down --purge' and '$0 up'"
  (umask 077; printf '127.0.0.1:%s:*:%s:%s\n' "$PG_PORT" "$DB_USER" "$(cat "$PASSWORD_FILE")" > "$DIR/pgpass")
  if pg_running; then
    log "PostgreSQL already running ($PG_DATA)"
  else
    log "starting PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT as $( [[ $(id -u) == 0 ]] && echo "$PG_USER" || id -un)"
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DIR/postgres.log" -w -t 60 \
        -o "-p $PG_PORT -k '$PG_DIR' -c listen_addresses=127.0.0.1" start >/dev/null \
      || { tail -n 30 "$PG_DIR/postgres.log" >&2 || true; die "PostgreSQL did not start (its log: $PG_DIR/postgres.log; is port $PG_PORT taken? set GANTRY_TOPOLOGY_PG_PORT)"; }
  fi
}

pg_down() {
  if pg_running; then
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null || die "PostgreSQL did not stop; see $PG_DIR/postgres.log"
    log "stopped PostgreSQL"
  fi
}

# --- the Temporal server --------------------------------------------------------------------------------------------
server_pid() { [[ -f "$SERVER_PID" ]] && cat "$SERVER_PID"; }
# Alive and not a zombie: the server is re-parented when this script exits, and its new parent may reap it late.
alive() { kill -0 "$1" 2>/dev/null && [[ "$(ps -o stat= -p "$1" 2>/dev/null)" != Z* ]]; }
server_running() { local pid; pid="$(server_pid)" && [[ -n "$pid" ]] && alive "$pid"; }
frontend_port() { saved FRONTEND_GRPC_PORT; }

write_server_env() {
  # The variables docker-compose.yml gives the temporal service, with loopback for the host names.
  {
    echo "DB=postgres12"
    echo "DB_PORT=$PG_PORT"
    echo "POSTGRES_USER=$DB_USER"
    echo "POSTGRES_PWD=$(cat "$PASSWORD_FILE")"
    echo "POSTGRES_SEEDS=127.0.0.1"
    echo "BIND_ON_IP=127.0.0.1"
    echo "DYNAMIC_CONFIG_FILE_PATH=$ROOT/deploy/temporal/dynamicconfig/gantry.yaml"
    local defaults=(7233 7243 6933 7234 6934 7235 6935 7239 6939) i
    for i in "${!PORT_VARS[@]}"; do
      local value="${!PORT_VARS[$i]:-$(saved "${PORT_VARS[$i]}")}"
      value="${value:-${defaults[$i]}}"
      # cluster_membership.rpc_port is SMALLINT in Temporal's PostgreSQL schema: a higher port stops the server.
      [[ "$value" =~ ^[0-9]+$ && $value -ge 1 && $value -le 32767 ]] \
        || die "${PORT_VARS[$i]}=$value: the server's ports must be between 1 and 32767 (PostgreSQL stores its membership ports as SMALLINT)"
      echo "${PORT_VARS[$i]}=$value"
    done
  } > "$SERVER_ENV.tmp"
  chmod 0600 "$SERVER_ENV.tmp"; mv -f "$SERVER_ENV.tmp" "$SERVER_ENV"
}

server_start() {
  [[ -f "$SERVER_ENV" ]] || die "no $SERVER_ENV: run '$0 up' first"
  pg_running || die "PostgreSQL is not running ($PG_DATA); run '$0 up'"
  local address="127.0.0.1:$(frontend_port)"
  if server_running; then
    log "Temporal server already running (pid $(server_pid)) on $address"
  else
    local vars; mapfile -t vars < "$SERVER_ENV"
    printf -- '--- %s: starting %s\n' "$(date -u +%FT%TZ)" "$SERVER" >> "$SERVER_LOG"
    # A clean environment: only the config variables (no TEMPORAL_CONFIG_DIR & co., which would switch the server
    # off its embedded template). setsid: the server outlives this script and the caller's terminal.
    (cd "$DIR" && exec env -i PATH=/usr/bin:/bin HOME="$DIR" "${vars[@]}" setsid "$SERVER" start >>"$SERVER_LOG" 2>&1 </dev/null) &
    echo $! > "$SERVER_PID"
    log "starting the Temporal server $("$SERVER" --version | awk '{print $NF}') (pid $!) on $address, on PostgreSQL 127.0.0.1:$PG_PORT"
  fi
  local deadline=$((SECONDS + 120))
  until "$CLI" operator cluster health --address "$address" 2>/dev/null | grep -q SERVING; do
    if ! server_running; then
      tail -n 40 "$SERVER_LOG" >&2 || true
      die "the Temporal server exited; above is the end of its log ($SERVER_LOG). If a port is in use, set FRONTEND_GRPC_PORT and the other port variables"
    fi
    (( SECONDS < deadline )) || die "the Temporal server at $address was not healthy within 2 minutes; see $SERVER_LOG"
    sleep 0.5
  done
  log "Temporal server healthy on $address"
}

server_stop() {
  if ! server_running; then rm -f "$SERVER_PID"; log "Temporal server not running"; return; fi
  local pid; pid="$(server_pid)"
  if [[ $kill_server == 1 ]]; then kill -KILL "$pid"; else kill -TERM "$pid"; fi
  local deadline=$((SECONDS + 30))
  while alive "$pid"; do
    if (( SECONDS >= deadline )); then kill -KILL "$pid" 2>/dev/null || true; fi
    sleep 0.2
  done
  rm -f "$SERVER_PID"
  log "Temporal server (pid $pid) $([[ $kill_server == 1 ]] && echo killed || echo stopped)"
}

print_env() {
  printf 'TEMPORAL_ADDRESS=%q\n' "127.0.0.1:$(frontend_port)"
  printf 'TEMPORAL_NAMESPACE=%q\n' "$NAMESPACE"
}

case "$cmd" in
  up)
    binaries
    pg_up
    log "setting up the schema with deploy/temporal/setup-schema.sh (its log: $DIR/schema.log)"
    # The SQL tool logs every statement; keep that in the log and show the script's own lines.
    if ! POSTGRES_SEEDS=127.0.0.1 DB_PORT="$PG_PORT" POSTGRES_USER="$DB_USER" SQL_PASSWORD="$(cat "$PASSWORD_FILE")" \
        SCHEMA_DIR="$SCHEMA_DIR" GANTRY_TEMPORAL_SQL_TOOL="$SQL_TOOL" sh "$ROOT/deploy/temporal/setup-schema.sh" >"$DIR/schema.log" 2>&1; then
      tail -n 30 "$DIR/schema.log" >&2
      die "deploy/temporal/setup-schema.sh failed (above: the end of $DIR/schema.log)"
    fi
    grep '^temporal-schema:' "$DIR/schema.log" >&2 || true
    server_running || write_server_env
    server_start
    address="127.0.0.1:$(frontend_port)"
    log "creating the namespace and search attributes with deploy/temporal/setup-namespace.sh"
    TEMPORAL_ADDRESS="$address" TEMPORAL_NAMESPACE="$NAMESPACE" GANTRY_TEMPORAL_CLI="$CLI" \
      sh "$ROOT/deploy/temporal/setup-namespace.sh" >&2 || die "deploy/temporal/setup-namespace.sh failed (see above)"
    log "up: Temporal on $address (namespace $NAMESPACE), PostgreSQL on 127.0.0.1:$PG_PORT; logs in $DIR"
    print_env
    ;;
  server-start) binaries; server_start ;;
  server-stop) server_stop ;;
  down)
    [[ -d "$DIR" ]] || { log "nothing at $DIR"; exit 0; }
    kill_server=0; server_stop
    if [[ -f "$PG_DATA/PG_VERSION" ]]; then binaries; pg_down; fi
    if [[ $purge == 1 ]]; then rm -rf "$DIR"; log "removed $DIR"; fi
    ;;
  env)
    [[ -f "$SERVER_ENV" ]] || die "no topology at $DIR: run '$0 up' first"
    print_env
    printf 'PGHOST=127.0.0.1\nPGPORT=%q\nPGUSER=%q\nPGPASSFILE=%q\n' "$PG_PORT" "$DB_USER" "$DIR/pgpass"
    ;;
  status)
    binaries
    if pg_running; then echo "PostgreSQL: running on 127.0.0.1:$PG_PORT ($PG_DATA; log $PG_DIR/postgres.log)"; else echo "PostgreSQL: stopped"; fi
    if server_running; then echo "Temporal server: running, pid $(server_pid), on 127.0.0.1:$(frontend_port) (log $SERVER_LOG)"; else echo "Temporal server: stopped"; fi
    ;;
esac
