/**
 * A release worker in a process of its own, for test/workflows/flood.test.ts: a flood of signals can crash a
 * Temporal TypeScript worker process on Node 20 (see that file), and a crash in the test's own process would take
 * the test runner down with it. Runs the workflow bundle at `bundleFile` over the step doubles, answering the resolve step with
 * the release input in `inputFile`; prints "ready" once polling.
 *
 *   node --import tsx test/workflows/flood-worker.ts <address> <taskQueue> <bundleFile> <inputFile>
 */
import { readFileSync } from 'node:fs';
import { NativeConnection } from '@temporalio/worker';
import { createReleaseWorker } from '../../src/worker';
import type { ReleaseInput } from '../../src/shared/release';
import { fakeActivities } from '../helpers/fake-activities';
import { quietRuntime } from './harness';

async function main(): Promise<void> {
  const [address, taskQueue, bundleFile, inputFile] = process.argv.slice(2);
  if (!address || !taskQueue || !bundleFile || !inputFile) throw new Error('usage: flood-worker.ts <address> <taskQueue> <bundleFile> <inputFile>');
  quietRuntime();
  const input = JSON.parse(readFileSync(inputFile, 'utf8')) as ReleaseInput;
  const connection = await NativeConnection.connect({ address });
  // Created the way gantry's worker is (src/worker.ts).
  const worker = await createReleaseWorker({
    connection,
    namespace: 'default',
    taskQueue,
    workflowBundlePath: bundleFile,
    activities: { ...fakeActivities(), resolvePlan: async () => ({ attempt: 1, input }) },
    note: () => undefined,
  });
  process.once('SIGTERM', () => worker.shutdown());
  const running = worker.run();
  process.stdout.write('ready\n');
  await running;
  await connection.close();
}

main().catch((err: unknown) => {
  process.stderr.write(`flood worker: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
