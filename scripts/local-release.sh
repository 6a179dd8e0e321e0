#!/usr/bin/env bash
# README's first command: a real release of the lab's sample service on this machine.
#
#   bash scripts/local-release.sh [--approve-as NAME] [--bad] [--keep]
#
# Provisions what is missing (npm packages, the Temporal CLI, the lab's Debian packages: needs root), builds,
# starts a clean release lab (.gantry/lab: bare git repo, registry, Podman API, sshd as the production host,
# webhook receiver) and `gantry dev` (Temporal dev server + Web UI, data in .gantry/local, and a worker), then
# releases the sample service with `gantry start hello 1.0.0 --wait`: at the gate it prints the Web UI address
# and the approve command, and waits for an approval (from another terminal or the Web UI). Every run starts
# from a clean lab and an empty dev server, so it can be repeated. It also makes `gantry` work by name (a link to
# bin/gantry in /usr/local/bin or ~/.local/bin, whichever is on PATH and writable), or says what to run.
#
#   --approve-as NAME  approve automatically as NAME when the gate opens (non-interactive runs), signed with the
#                      lab's key for NAME (.gantry/lab/keys/NAME); NAME must be an approver: alice or bob
#
# Decisions are signed: the lab generates SSH keys for its people (operator, who starts releases; alice and bob,
# who approve) and lists them in the worker's allowed signers. The release is started as `operator`.
#   --bad              after 1.0.0, release the lab's broken revision 1.1.0 (/health answers 404) and watch
#                      production roll back to 1.0.0
#   --keep             leave the lab and the dev server running afterwards, to look around in the Web UI and
#                      with gantry status/history (`bash scripts/local-release.sh --stop` stops them)
#   --stop             stop a lab and dev server left running by --keep, then exit
# Exit code: 0 when the release went as intended (with --bad: 1.0.0 released, 1.1.0 rolled back); otherwise the
# release's exit code (docs/cli.md), 1 for a setup failure, 2 for a bad option.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

approve_as=""; bad=0; keep=0; stop=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --approve-as) [[ $# -ge 2 ]] || { echo "local-release: --approve-as needs a name (alice or bob)" >&2; exit 2; }; approve_as=$2; shift ;;
    --approve-as=*) approve_as=${1#*=} ;;
    --bad) bad=1 ;;
    --keep) keep=1 ;;
    --stop) stop=1 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "local-release: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$approve_as" in ""|alice|bob) ;; *) echo "local-release: --approve-as $approve_as: the lab's approvers are alice and bob" >&2; exit 2 ;; esac

say() { printf '\033[1mlocal-release:\033[0m %s\n' "$*" >&2; }
die() { printf 'local-release: error: %s\n' "$*" >&2; exit 1; }

STATE="$ROOT/.gantry"
LAB_DIR="$STATE/lab"
DEV_DIR="$STATE/local"
PIDS="$STATE/local-release.pids"
TEMPORAL_PORT="${GANTRY_LOCAL_PORT:-7233}"
UI_PORT="${GANTRY_LOCAL_UI_PORT:-8233}"
mkdir -p "$STATE"

stop_background() {
  [[ -f $PIDS ]] || return 0
  while read -r pid; do
    [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null || true
  done < "$PIDS"
  while read -r pid; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  done < "$PIDS"
  rm -f "$PIDS"
}

if [[ $stop == 1 ]]; then stop_background; say "stopped"; exit 0; fi
[[ -f $PIDS ]] && { say "stopping what an earlier --keep run left running"; stop_background; }

# --- provision (each step is idempotent and fast when already done) ---------------------------------------------
t0=$(date +%s)
bash scripts/install-deps.sh
bash scripts/provision.sh
if ! bash scripts/lab/provision.sh --check >/dev/null 2>&1; then
  [[ $(id -u) == 0 ]] || die "the lab needs Debian packages (podman, docker-registry, openssh-server…): run \`sudo bash scripts/lab/provision.sh\` once, then rerun"
  bash scripts/lab/provision.sh
fi
eval "$(bash scripts/provision.sh --print-env 2>/dev/null)"
export GANTRY_TEMPORAL_CLI
if [[ ! -f dist/workflow-bundle.js || -n $(find src scripts -newer dist/workflow-bundle.js -name '*.ts' -print -quit) ]]; then
  say "building…"
  npm run --silent build >/dev/null
fi

# --- `gantry` by name ---------------------------------------------------------------------------------------------
# gantry's messages (and this script's) name the command `gantry`. Make that name run this checkout, as `npm link`
# would: a symlink to bin/gantry in a directory already on PATH (/usr/local/bin when it is writable, as for root,
# else ~/.local/bin). Idempotent; a `gantry` that is not a link to some checkout's bin/gantry (or the bin/gantry.js
# of earlier versions, which it replaces) is left alone.
GANTRY_BIN="$ROOT/bin/gantry"
gantry_cmd="bin/gantry"
on_path() { case ":$PATH:" in *":$1:"*) return 0 ;; *) return 1 ;; esac; }
runs_this_checkout() { [[ -n $1 && $(readlink -f "$1" 2>/dev/null) == "$(readlink -f "$GANTRY_BIN")" ]]; }
link_gantry() {
  local found dir target
  found=$(command -v gantry 2>/dev/null || true)
  if runs_this_checkout "$found"; then gantry_cmd=gantry; return 0; fi
  for dir in /usr/local/bin "$HOME/.local/bin"; do
    on_path "$dir" || continue
    target="$dir/gantry"
    if [[ -e $target || -L $target ]] && ! [[ -L $target && $(readlink "$target") =~ /bin/gantry(\.js)?$ ]]; then continue; fi
    { mkdir -p "$dir" && [[ -w $dir ]] && ln -sfn "$GANTRY_BIN" "$target"; } 2>/dev/null || continue
    hash -r
    found=$(command -v gantry 2>/dev/null || true)
    if runs_this_checkout "$found"; then
      say "linked $target → bin/gantry: \`gantry\` now runs this checkout by name, from any directory"
      gantry_cmd=gantry
      return 0
    fi
  done
  if [[ -n $found ]]; then
    say "\`gantry\` on your PATH is $found, not this checkout; to use this one by name: sudo ln -sfn $GANTRY_BIN /usr/local/bin/gantry"
  else
    say "\`gantry\` is not on your PATH and no directory on it is writable here; to use it by name, run: sudo ln -sfn $GANTRY_BIN /usr/local/bin/gantry"
    say "(or: mkdir -p ~/.local/bin && ln -sfn $GANTRY_BIN ~/.local/bin/gantry, with ~/.local/bin on PATH); until then \`gantry\` means \`bin/gantry\` here"
  fi
}
link_gantry
say "provisioned in $(( $(date +%s) - t0 ))s"

# A clean lab and an empty dev server every run: the demo releases 1.0.0 (and 1.1.0) again, from scratch.
node dist/scripts/lab/lab.js cleanup --dir "$LAB_DIR" --purge >/dev/null 2>&1 || true
rm -rf "$DEV_DIR" "$LAB_DIR"

# --- start the lab and gantry dev in the background ---------------------------------------------------------------
cleanup() {
  local code=$?
  if [[ $keep == 1 ]]; then
    say "left running (--keep): the Web UI at http://127.0.0.1:$UI_PORT; stop with \`bash scripts/local-release.sh --stop\`"
  else
    say "stopping the dev server and the lab (data stays in .gantry/; --keep leaves them running)"
    stop_background
  fi
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

: > "$PIDS"
# background NAME LOG READY-LINE SECONDS COMMAND…: start COMMAND with its output in LOG and wait for READY-LINE.
background() {
  local name=$1 log=$2 ready=$3 seconds=$4 pid
  shift 4
  "$@" > "$log" 2>&1 &
  pid=$!
  echo "$pid" >> "$PIDS"
  for _ in $(seq 1 $((seconds * 2))); do
    grep -q "$ready" "$log" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; die "$name did not start (log above)"; }
    sleep 0.5
  done
  die "$name did not start within ${seconds}s; see ${log#"$ROOT"/}"
}

say "starting the lab (log: .gantry/lab.log)…"
background "the lab" "$STATE/lab.log" 'The lab is up' 150 node dist/scripts/lab/lab.js start --dir "$LAB_DIR"
# The worker resolves the lab's webhook URL from the environment (a secret reference in the config).
eval "export $(sed -n "s/^The worker needs: export //p" "$STATE/lab.log")"
CONFIG="$LAB_DIR/gantry.yaml"

say "starting gantry dev: Temporal dev server + Web UI + worker (log: .gantry/dev.log)…"
background "gantry dev" "$STATE/dev.log" 'Running the worker here' 120 \
  bin/gantry dev --port "$TEMPORAL_PORT" --ui-port "$UI_PORT" --state-dir "$DEV_DIR" --config "$CONFIG"
export TEMPORAL_ADDRESS="127.0.0.1:$TEMPORAL_PORT" TEMPORAL_NAMESPACE=default GANTRY_UI_URL="http://127.0.0.1:$UI_PORT"
say "ready in $(( $(date +%s) - t0 ))s; Web UI: $GANTRY_UI_URL"

# --- the release(s) ----------------------------------------------------------------------------------------------
# release <good|broken>: point the lab repo's main at that revision and release its version with gantry start.
release() {
  local revision=$1 picked version code
  # The broken revision answers its version but lost /health. use-revision switches the worker's config to one
  # that checks only /version on staging (the worker reads its config again for every release), so it reaches
  # production, as a release that only breaks under production traffic would, and health rolls it back.
  picked=$(node dist/scripts/lab/lab.js use-revision "$revision" --dir "$LAB_DIR")
  version=$(node -e 'process.stdout.write(JSON.parse(process.argv[1]).version)' "$picked")
  say "releasing hello $version (the lab repository's $revision revision), started and signed by the lab's operator"
  local args=(start hello "$version" --config "$CONFIG" --wait --requested-by operator --key "$LAB_DIR/keys/operator")
  if [[ -n $approve_as ]]; then
    args+=(--approve-as "$approve_as" --approve-key "$LAB_DIR/keys/$approve_as" --reason "approved by scripts/local-release.sh --approve-as")
  else
    say "to approve from another terminal: TEMPORAL_ADDRESS=$TEMPORAL_ADDRESS $gantry_cmd approve hello $version --as alice --key $LAB_DIR/keys/alice"
    say "or in the Web UI: paste the output of the same command with --print into More Actions → Send a Signal → approve"
  fi
  set +e
  bin/gantry "${args[@]}"
  code=$?
  set -e
  prod_port=$(node -e 'process.stdout.write(String(require(process.argv[1]).productionPort))' "$LAB_DIR/lab.json")
  say "hello $version: exit $code; production answers /version: $(curl -s "http://127.0.0.1:$prod_port/version" || echo '(nothing)')"
  say "the on-call view: TEMPORAL_ADDRESS=$TEMPORAL_ADDRESS $gantry_cmd history hello $version"
  return "$code"
}

code=0
release good || code=$?
if [[ $bad == 1 && $code == 0 ]]; then
  code=0
  release broken || code=$?
  if [[ $code == 10 ]]; then
    say "as intended: 1.1.0 failed its production health check and production was rolled back to 1.0.0"
    code=0
  else
    say "1.1.0 was expected to end rolled_back (exit 10) but exited $code"
    [[ $code == 0 ]] && code=1
  fi
fi
say "done in $(( $(date +%s) - t0 ))s"
exit "$code"
