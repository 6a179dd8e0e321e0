#!/usr/bin/env node
'use strict';
// The installed `gantry` command: runs the compiled CLI (npm run build writes dist/).
const path = require('node:path');
// `gantry --version` answers without loading the CLI (its commands pull in the Temporal client, the worker and the
// step implementations: most of the start-up time; docs/performance.md). The same output as commander's.
const args = process.argv.slice(2);
const dist = path.join(__dirname, '..', 'dist');
if (args.length === 1 && (args[0] === '--version' || args[0] === '-V')) {
  process.stdout.write(`${require('../package.json').version}\n`);
  process.exit(0);
} else if (args.includes('status')) {
  // `gantry status <service> <version>` first tries the server's HTTP API without loading the Temporal SDK
  // (src/cli/quick-status.ts); whatever that does not answer whole, the full CLI answers instead.
  let quick;
  try {
    quick = require(quickStatusModule());
  } catch {
    quick = undefined;
  }
  if (quick) {
    quick.quickStatus(process.argv).then((code) => (code === undefined ? runCli() : process.exit(code)), () => runCli());
  } else {
    runCli();
  }
} else {
  runCli();
}

/**
 * The quick path as one file (dist/quick-status.bundle.js, scripts/build-cli-bundle.ts: ~15 ms less to load) when
 * it is at least as new as the compiled module (a `tsc` without the rest of `npm run build` leaves it older), else
 * the compiled module itself.
 */
function quickStatusModule() {
  const { statSync } = require('node:fs');
  const compiled = path.join(dist, 'src', 'cli', 'quick-status.js');
  const bundle = path.join(dist, 'quick-status.bundle.js');
  try {
    if (statSync(bundle).mtimeMs >= statSync(compiled).mtimeMs) return bundle;
  } catch {
    // no bundle (or no build at all): the compiled module, or the full CLI, which says to build
  }
  return compiled;
}

function runCli() {
  const entry = path.join(dist, 'src', 'starter.js');
  let cli;
  try {
    cli = require(entry);
  } catch (err) {
    if (err && err.code === 'MODULE_NOT_FOUND' && String(err.message).includes(entry)) {
      process.stderr.write(`gantry: ${entry} is missing. Build the CLI first: npm run build\n`);
      process.exit(1);
    }
    throw err;
  }
  cli.main(process.argv).then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`gantry: ${err && err.stack ? err.stack : String(err)}\n`);
      process.exit(1);
    },
  );
}
