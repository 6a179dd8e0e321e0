/** Writes the prebuilt workflow bundle the worker loads outside development (`npm run build`). */
import { writeFileSync } from 'node:fs';
import { bundleWorkflowCode } from '@temporalio/worker';
import { bundlerLogger, DEFAULT_BUNDLE_PATH, workflowBundleOptions } from '../src/worker';

async function main(): Promise<void> {
  // Only webpack's warnings and errors: its report of a clean build would fill the terminal of a first run.
  const { code } = await bundleWorkflowCode({ ...workflowBundleOptions(), logger: bundlerLogger((text) => process.stderr.write(`${text}\n`)) });
  writeFileSync(DEFAULT_BUNDLE_PATH, code);
  process.stdout.write(`workflow bundle: ${DEFAULT_BUNDLE_PATH} (${(code.length / 1024).toFixed(0)} KiB)\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${String(err)}\n`);
  process.exit(1);
});
