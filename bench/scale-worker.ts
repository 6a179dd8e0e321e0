/**
 * The worker process of `npm run bench -- scale`: gantry's release worker (src/worker.ts createReleaseWorker, the
 * prebuilt bundle as in production) with no-op steps, in a process of its own so its RSS is the worker's alone.
 * Run by bench/scale.ts as `node --import tsx bench/scale-worker.ts <address> <task-queue> <max-cached-workflows>`.
 * Prints `ready` once polling, then `smoke N` / `done N` as releases reach the gate and end (batched, every 100 ms).
 */
import { NativeConnection, DefaultLogger, Runtime } from '@temporalio/worker';
import { createReleaseWorker, DEFAULT_BUNDLE_PATH, parseMaxCachedWorkflows } from '../src/worker';
import { noopReleaseActivities } from './lib/noop-activities';
import { existsSync } from 'node:fs';
import path from 'node:path';

async function main(): Promise<void> {
  const [address, taskQueue, cache] = process.argv.slice(2);
  if (!address || !taskQueue || !cache) throw new Error('usage: scale-worker.ts <address> <task-queue> <max-cached-workflows>');
  Runtime.install({ logger: new DefaultLogger('ERROR'), telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' } } } });
  const bundle = path.resolve(__dirname, '..', 'dist', path.basename(DEFAULT_BUNDLE_PATH));
  if (!existsSync(bundle)) throw new Error(`${bundle} is missing: run npm run build first`);
  let smoke = 0;
  let done = 0;
  const connection = await NativeConnection.connect({ address });
  const worker = await createReleaseWorker({
    connection,
    namespace: 'default',
    taskQueue,
    workflowBundlePath: bundle,
    activities: noopReleaseActivities({
      onSmoke: () => void (smoke += 1),
      onCall: (name) => { if (name === 'announce') done += 1; },
    }),
    tuning: { maxCachedWorkflows: parseMaxCachedWorkflows(cache) },
    note: () => undefined,
  });
  let reported = '';
  const timer = setInterval(() => {
    const line = `smoke ${smoke} done ${done}`;
    if (line !== reported) process.stdout.write(`${line}\n`);
    reported = line;
  }, 100);
  process.stdout.write(`ready cache=${worker.options.maxCachedWorkflows}\n`);
  await worker.run();
  clearInterval(timer);
  await connection.close();
}

main().then(
  () => process.exit(0),
  (e: unknown) => { process.stderr.write(`scale-worker: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`); process.exit(1); },
);
