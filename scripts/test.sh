#!/usr/bin/env bash
# The test command (README): provisions what is missing (npm packages, the Temporal servers, the release lab's
# Debian packages, Chromium), builds, type-checks, lints, then runs every test against real components.
# Idempotent: a second run skips what is already installed. Extra arguments go to vitest (e.g. a test path).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
bash scripts/provision.sh --browser
bash scripts/lab/provision.sh
eval "$(bash scripts/provision.sh --print-env 2>/dev/null)"
export GANTRY_TEMPORAL_CLI GANTRY_TEST_SERVER

npm run --silent build
npm run --silent typecheck
npm run --silent lint
npx vitest run "$@"
