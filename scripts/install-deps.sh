#!/usr/bin/env bash
# npm packages, installed when missing or older than the lock. `npm install` rather than `npm ci`: the lock
# holds only the Linux builds of SWC's optional per-platform packages (the others cannot be resolved from this
# machine's registry), and `npm ci` refuses such a lock. Versions still come from package-lock.json.
# Install scripts are not run: the Temporal core bridge and SWC ship prebuilt binaries in their packages.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=node_modules/.gantry-lock-stamp
if [[ -f $stamp && $stamp -nt package-lock.json && $stamp -nt package.json ]]; then
  exit 0
fi
echo "install-deps: npm install (from package-lock.json)…" >&2
npm install --ignore-scripts --no-audit --no-fund --loglevel=error
touch "$stamp"
