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
export GANTRY_TEMPORAL_CLI GANTRY_TEST_SERVER GANTRY_TEMPORAL_SERVER GANTRY_TEMPORAL_SQL_TOOL GANTRY_TEMPORAL_SCHEMA_DIR GANTRY_PG_BIN

npm run --silent build
npm run --silent typecheck
npm run --silent lint
mkdir -p .gantry
set +e
npx vitest run --reporter=default --reporter=json --outputFile.json=.gantry/vitest-report.json "$@"
code=$?
set -e
# One plain closing line with the counts, whatever the reporter printed above it.
node -e '
  const r = require(process.argv[1]);
  console.log(`vitest: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`);
' "$PWD/.gantry/vitest-report.json" 2>/dev/null || true
exit "$code"
