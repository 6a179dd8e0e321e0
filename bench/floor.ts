/**
 * `npm run bench -- floor`: what the Temporal server itself costs per activity, the floor under gantry's
 * per-step orchestration. A bare workflow (bench/bare-workflow.ts) runs K no-op activities in sequence on a dev
 * server; each activity's round trip is the time from one activity's completion to the next one's, as the
 * server recorded it (a workflow task to decide, the activity dispatched, run, completed).
 *
 * It compares the servers and workers one can run: the dev server as `gantry dev` starts it (SQLite in a file),
 * in memory, and with eager activity dispatch enabled on the server (system.enableActivityEagerExecution:
 * the activity comes back with the workflow task's completion instead of through a poll); and the SDK's
 * default worker options against gantry's.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { DefaultLogger, Runtime, Worker, type WorkerOptions } from '@temporalio/worker';
import { SEARCH_ATTRIBUTES } from '../src/shared/release';
import { requireBinary, TEMPORAL_CLI } from '../test/helpers/servers';
import type { bareWorkflow } from './workflows';
import { breakdownOf } from './lib/history';
import { median, row } from './lib/stats';

export interface ServerVariant {
  name: string;
  /** SQLite file (as `gantry dev`), else in memory. */
  file: boolean;
  dynamicConfig: Record<string, string>;
}

/** One task queue partition: a poll and a task always meet at once, instead of being forwarded between four. */
export const ONE_PARTITION = { 'matching.numTaskqueueReadPartitions': '1', 'matching.numTaskqueueWritePartitions': '1' };

export const SERVER_VARIANTS: ServerVariant[] = [
  { name: 'SQLite file', file: true, dynamicConfig: {} },
  { name: 'in memory', file: false, dynamicConfig: {} },
  { name: 'SQLite file + eager activities (as gantry dev)', file: true, dynamicConfig: { 'system.enableActivityEagerExecution': 'true' } },
  { name: 'SQLite file + 1 task queue partition', file: true, dynamicConfig: ONE_PARTITION },
  { name: 'SQLite file + 1 partition + eager', file: true, dynamicConfig: { ...ONE_PARTITION, 'system.enableActivityEagerExecution': 'true' } },
];

/** A dev server like `gantry dev`'s (search attributes, updates on), in memory or in a file, with extra dynamic config. */
export async function benchServer(variant: Pick<ServerVariant, 'file' | 'dynamicConfig'> & { httpPort?: number }): Promise<{ env: TestWorkflowEnvironment; dispose(): Promise<void> }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-bench-server-'));
  const env = await TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: 'existing-path', path: requireBinary(TEMPORAL_CLI, 'The Temporal CLI (dev server)') },
      ip: '127.0.0.1',
      searchAttributes: [...SEARCH_ATTRIBUTES],
      ...(variant.file ? { dbFilename: path.join(dir, 'temporal.db') } : {}),
      extraArgs: [
        '--log-level', 'error',
        ...Object.entries({ 'frontend.enableUpdateWorkflowExecution': 'true', ...variant.dynamicConfig })
          .flatMap(([k, v]) => ['--dynamic-config-value', `${k}=${v}`]),
        ...(variant.httpPort ? ['--http-port', String(variant.httpPort)] : []),
      ],
    },
  });
  return { env, dispose: async () => { await env.teardown(); rmSync(dir, { recursive: true, force: true }); } };
}

export interface FloorResult {
  /** Per activity: one completion to the next (server times). */
  roundTripMs: number[];
  /** Per activity: scheduled → started. */
  queueMs: number[];
  /** Client-measured start → result of the whole workflow. */
  workflowMs: number[];
}

/** Run `runs` bare workflows of `activities` no-op activities on `env` with a worker of the given options. */
export async function measureFloor(env: TestWorkflowEnvironment, opts: { runs: number; warmup: number; activities: number; worker?: Partial<WorkerOptions> }): Promise<FloorResult> {
  const taskQueue = `bench-floor-${Math.random().toString(36).slice(2, 8)}`;
  const worker = await Worker.create({
    connection: env.nativeConnection,
    namespace: 'default',
    taskQueue,
    workflowsPath: path.join(__dirname, 'workflows.ts'),
    activities: { noop: () => Promise.resolve({ attempt: 1 }) },
    ...opts.worker,
  });
  const result: FloorResult = { roundTripMs: [], queueMs: [], workflowMs: [] };
  let seq = 0;
  await worker.runUntil(async () => {
    for (let i = 0; i < opts.warmup + opts.runs; i++) {
      seq += 1;
      const t0 = performance.now();
      const handle = await env.client.workflow.start<typeof bareWorkflow>('bareWorkflow', { taskQueue, workflowId: `${taskQueue}-${seq}`, args: [opts.activities] });
      await handle.result();
      const total = performance.now() - t0;
      if (i < opts.warmup) continue;
      result.workflowMs.push(total);
      const b = await breakdownOf(handle);
      for (const a of b.activities.slice(1)) result.roundTripMs.push(a.gapBeforeMs + (a.queueMs ?? 0) + (a.runMs ?? 0));
      for (const a of b.activities) if (a.queueMs !== undefined) result.queueMs.push(a.queueMs);
    }
  });
  return result;
}

/** The worker options gantry's worker runs with on top of the SDK's defaults (src/worker.ts), for comparison. */
export const WORKER_VARIANTS: { name: string; options: Partial<WorkerOptions> }[] = [
  { name: 'SDK defaults', options: {} },
];

export async function floorBench(opts: { runs: number; warmup: number; activities: number; write: (line: string) => void }): Promise<Record<string, number>> {
  const figures: Record<string, number> = {};
  opts.write(`floor: ${opts.runs} bare workflows of ${opts.activities} no-op activities per variant (after ${opts.warmup} warm-up)`);
  for (const variant of SERVER_VARIANTS) {
    const server = await benchServer(variant);
    try {
      for (const w of WORKER_VARIANTS) {
        const r = await measureFloor(server.env, { ...opts, worker: w.options });
        const label = `${variant.name}, ${w.name}`;
        opts.write(row(`${label}: activity round trip`, r.roundTripMs, 62));
        opts.write(row(`${label}: scheduled → started`, r.queueMs, 62));
        figures[`floor.${variant.name}.${w.name}`] = median(r.roundTripMs);
      }
    } finally {
      await server.dispose();
    }
  }
  return figures;
}

if (require.main === module) {
  Runtime.install({ logger: new DefaultLogger('ERROR'), telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' } } } });
  floorBench({ runs: Number(process.argv[2] ?? 10), warmup: 3, activities: 9, write: (l) => void process.stdout.write(`${l}\n`) }).then(
    () => process.exit(0),
    (e: unknown) => { process.stderr.write(`${String(e)}\n`); process.exit(1); },
  );
}
