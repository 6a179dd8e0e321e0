/**
 * The worker process of `npm run bench -- scale`: gantry's release worker (src/worker.ts createReleaseWorker, the
 * prebuilt bundle as in production) with no-op steps, in a process of its own so its RSS is the worker's alone.
 * Run by bench/scale.ts as `node dist/bench/scale-worker.js <address> <task-queue> <max-cached-workflows> [<tuning>]`
 * (compiled by `npm run build`, as `gantry worker` runs; under tsx the loader alone adds ~60 MB of RSS),
 * where <tuning> is a JSON object of further Worker options to measure (`--worker-options` of the bench), over the
 * ones createReleaseWorker derives from the cache size. GANTRY_WORKFLOW_BUNDLE runs another bundle than dist's.
 * Prints `ready` once polling, then `smoke N done M` as releases reach the gate and end (batched, every 100 ms).
 * With GANTRY_BENCH_METRICS=<host:port> it also serves Core's metrics there (Prometheus text), from which the bench
 * counts workflow tasks and cache misses (each miss a replay of the release's history).
 */
import { NativeConnection, DefaultLogger, Runtime } from '@temporalio/worker';
import { createReleaseWorker, DEFAULT_BUNDLE_PATH, parseMaxCachedWorkflows, type ReleaseWorkerOptions } from '../src/worker';
import { noopReleaseActivities } from './lib/noop-activities';
import { existsSync } from 'node:fs';
import path from 'node:path';

async function main(): Promise<void> {
  const [address, taskQueue, cache, tuning] = process.argv.slice(2);
  if (!address || !taskQueue || !cache) throw new Error('usage: scale-worker.ts <address> <task-queue> <max-cached-workflows> [<tuning JSON>]');
  const metrics = process.env.GANTRY_BENCH_METRICS;
  Runtime.install({
    logger: new DefaultLogger('ERROR'),
    telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' } }, ...(metrics ? { metrics: { prometheus: { bindAddress: metrics } } } : {}) },
  });
  // Compiled, src/worker.js sits in dist/ beside the bundle; under tsx, DEFAULT_BUNDLE_PATH points beside src/.
  const compiled = __filename.endsWith('.js');
  const bundle = process.env.GANTRY_WORKFLOW_BUNDLE ?? (compiled ? DEFAULT_BUNDLE_PATH : path.resolve(__dirname, '..', 'dist', path.basename(DEFAULT_BUNDLE_PATH)));
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
    tuning: { maxCachedWorkflows: parseMaxCachedWorkflows(cache), ...(tuning ? JSON.parse(tuning) as ReleaseWorkerOptions['tuning'] : {}) },
    note: () => undefined,
  });
  let reported = '';
  let ticks = 0;
  const timer = setInterval(() => {
    // Every 2 s, the main thread's heap (the workflow thread's is not visible from here) and off-heap memory.
    if (ticks++ % 20 === 0) {
      const m = process.memoryUsage();
      const mb = (b: number): number => Math.round(b / 1048576);
      process.stdout.write(`memory main-heap ${mb(m.heapUsed)}/${mb(m.heapTotal)} MB, external ${mb(m.external)} MB, array buffers ${mb(m.arrayBuffers)} MB\n`);
    }
    const line = `smoke ${smoke} done ${done}`;
    if (line !== reported) process.stdout.write(`${line}\n`);
    reported = line;
  }, 100);
  const o = worker.options;
  process.stdout.write(`options ${JSON.stringify({ workflowThreadPoolSize: o.workflowThreadPoolSize, reuseV8Context: o.reuseV8Context, tuner: o.tuner, workflowTaskPollerBehavior: o.workflowTaskPollerBehavior, activityTaskPollerBehavior: o.activityTaskPollerBehavior })}\n`);
  process.stdout.write(`ready cache=${o.maxCachedWorkflows}\n`);
  await worker.run();
  clearInterval(timer);
  await connection.close();
}

main().then(
  () => process.exit(0),
  (e: unknown) => { process.stderr.write(`scale-worker: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`); process.exit(1); },
);
