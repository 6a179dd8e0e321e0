#!/usr/bin/env bash
# The test command (README): provisions what is missing, builds, lints, then runs every test against real
# servers. Idempotent: a second run skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."

[[ -d node_modules/@temporalio/worker ]] || npm ci --ignore-scripts --no-audit --no-fund
bash scripts/provision.sh
# The release lab's system parts (podman, registry, sshd, busybox-static; needs root), or a check that names the fix.
if [[ $(id -u) == 0 ]]; then bash scripts/lab/provision.sh; else bash scripts/lab/provision.sh --check; fi
eval "$(bash scripts/provision.sh --print-env 2>/dev/null)"
export GANTRY_TEMPORAL_CLI GANTRY_TEST_SERVER

npm run --silent build
npm run --silent typecheck
npm run --silent lint
npx vitest run "$@"
