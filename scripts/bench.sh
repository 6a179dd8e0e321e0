#!/usr/bin/env bash
# `npm run bench [-- <part>] [options]`: gantry's benchmarks (bench/main.ts, docs/performance.md). Not part of the
# tests. Provisions what is missing (npm packages, the Temporal CLI; for the lab release also the lab's Debian
# packages, which needs root) and builds the CLI and workflow bundle when they are stale.
#   npm run bench                                  the quick parts: overhead, floor, latency, scale, script, swap
#   npm run bench -- overhead --runs 50 --warmup 10 --strict
#   npm run bench -- scale --n 10000
#   npm run bench -- script --pairs 5
#   npm run bench -- help                          every part and option
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
bash scripts/provision.sh
eval "$(bash scripts/provision.sh --print-env 2>/dev/null)"
export GANTRY_TEMPORAL_CLI GANTRY_TEST_SERVER

part=${1:-all}
case "$part" in -*) part=all ;; esac
if [[ $part == all || $part == script || $part == swap ]] && ! bash scripts/lab/provision.sh --check >/dev/null 2>&1; then
  [[ $(id -u) == 0 ]] || { echo "bench: the lab release needs the lab's Debian packages: run \`sudo bash scripts/lab/provision.sh\` once, then rerun" >&2; exit 1; }
  bash scripts/lab/provision.sh
fi
if [[ ! -f dist/workflow-bundle.js || ! -f dist/src/starter.js || -n $(find src scripts bench -newer dist/workflow-bundle.js -name '*.ts' -print -quit) ]]; then
  echo "bench: building (npm run build)…" >&2
  npm run --silent build >/dev/null
fi

exec npx tsx bench/main.ts "$@"
