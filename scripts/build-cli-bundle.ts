/**
 * Writes dist/quick-status.bundle.js (`npm run build`): `gantry status`'s quick path (src/cli/quick-status.ts) and
 * everything it loads, as one file. Loading its ~60 modules one by one took 35 ms of a ~125 ms `gantry status`,
 * most of it finding and reading files; one file takes ~20 ms (docs/performance.md). bin/gantry.js loads the bundle
 * when it is at least as new as the compiled module, and the compiled module otherwise. The Temporal SDK stays out:
 * the quick path never connects over gRPC.
 */
import { statSync } from 'node:fs';
import path from 'node:path';
import { buildSync } from 'esbuild';

const dist = path.resolve(__dirname, '..');
const QUICK_STATUS_BUNDLE = path.join(dist, 'quick-status.bundle.js');

function main(): void {
  buildSync({
    entryPoints: [path.join(dist, 'src', 'cli', 'quick-status.js')],
    outfile: QUICK_STATUS_BUNDLE,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    minifyWhitespace: true,
    minifySyntax: true,
    external: ['@temporalio/client', '@temporalio/worker'],
    logLevel: 'warning',
  });
  process.stdout.write(`quick status bundle: ${QUICK_STATUS_BUNDLE} (${(statSync(QUICK_STATUS_BUNDLE).size / 1024).toFixed(0)} KiB)\n`);
}

main();
