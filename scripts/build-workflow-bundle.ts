/** Writes the prebuilt workflow bundle the worker loads outside development (`npm run build`). */
import { writeFileSync } from 'node:fs';
import { bundleWorkflowCode } from '@temporalio/worker';
import { DEFAULT_BUNDLE_PATH, WORKFLOWS_PATH } from '../src/worker';

async function main(): Promise<void> {
  const { code } = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH });
  writeFileSync(DEFAULT_BUNDLE_PATH, code);
  process.stdout.write(`workflow bundle: ${DEFAULT_BUNDLE_PATH} (${(code.length / 1024).toFixed(0)} KiB)\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${String(err)}\n`);
  process.exit(1);
});
