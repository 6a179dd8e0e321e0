#!/usr/bin/env bash
# `npm run bench`: the release workflow's overhead over a bare workflow (bench/release-overhead.ts), on a dev
# server started from the provisioned Temporal CLI. Not part of the tests. Arguments pass through:
#   npm run bench -- --runs 50 --warmup 10 --strict
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
bash scripts/provision.sh
eval "$(bash scripts/provision.sh --print-env 2>/dev/null)"
export GANTRY_TEMPORAL_CLI GANTRY_TEST_SERVER

exec npx tsx bench/release-overhead.ts "$@"
