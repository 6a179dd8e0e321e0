/**
 * The gantry worker: runs release workflows and their steps from the shared task queue. It keeps no state of
 * its own (everything lives in Temporal), so any number of workers can serve one task queue.
 *
 *   TEMPORAL_ADDRESS=… TEMPORAL_NAMESPACE=… node dist/src/worker.js
 *
 * Outside development it runs the prebuilt workflow bundle (`npm run build` writes it); with
 * GANTRY_DEV=1 it bundles the workflow sources at start.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { Worker, type NativeConnection, type WorkerOptions } from '@temporalio/worker';
import { TASK_QUEUE } from './shared/release';
import type { ReleaseActivities } from './activities/types';
import { createActivities } from './activities';
import { fileConfigSource, type ConfigSource } from './activities/resolve';
import { ConfigError } from './config/load';
import { connectWorker, ServerUnreachableError, temporalSettings } from './connection';

/** The workflow sources (`.ts` when run from source by tests, `.js` once compiled). */
export const WORKFLOWS_PATH = path.join(__dirname, 'workflows', `index${path.extname(__filename)}`);
/** Where `npm run build` writes the bundle (next to the compiled worker). */
export const DEFAULT_BUNDLE_PATH = path.resolve(__dirname, '..', 'workflow-bundle.js');

export interface ReleaseWorkerOptions {
  connection: NativeConnection;
  namespace: string;
  activities: ReleaseActivities;
  taskQueue?: string;
  /** Path to a prebuilt workflow bundle; when unset the sources are bundled at start. */
  workflowBundlePath?: string;
  /** Extra Worker options (tests tune concurrency, identity, …). */
  tuning?: Partial<Pick<WorkerOptions, 'identity' | 'maxConcurrentActivityTaskExecutions' | 'maxConcurrentWorkflowTaskExecutions' | 'shutdownGraceTime' | 'maxCachedWorkflows'>>;
}

export async function createReleaseWorker(opts: ReleaseWorkerOptions): Promise<Worker> {
  const workflowSource = opts.workflowBundlePath
    ? { workflowBundle: { codePath: opts.workflowBundlePath } }
    : { workflowsPath: WORKFLOWS_PATH };
  return Worker.create({
    connection: opts.connection,
    namespace: opts.namespace,
    taskQueue: opts.taskQueue ?? TASK_QUEUE,
    activities: opts.activities,
    ...workflowSource,
    shutdownGraceTime: '30s',
    ...opts.tuning,
  });
}

/** The bundle to use: GANTRY_WORKFLOW_BUNDLE, else the built one unless GANTRY_DEV=1. */
export function resolveWorkflowBundle(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.GANTRY_WORKFLOW_BUNDLE) return env.GANTRY_WORKFLOW_BUNDLE;
  if (env.GANTRY_DEV === '1') return undefined;
  return existsSync(DEFAULT_BUNDLE_PATH) ? DEFAULT_BUNDLE_PATH : undefined;
}

/**
 * The worker's release config: `--config` (file or directory) or GANTRY_CONFIG. It is loaded and validated
 * now, so a bad config stops the worker at start with the schema's message; every release reads it again.
 */
export function workerConfig(file: string | undefined, env: NodeJS.ProcessEnv = process.env): { source: ConfigSource; summary: string } {
  const target = file ?? env.GANTRY_CONFIG;
  if (!target) {
    throw new ConfigError('(none)', [
      'the worker owns the release config and was given none: start it with --config <file or directory> or set GANTRY_CONFIG ' +
        '(every worker on the task queue must have the same config; README: Running workers against a cluster)',
    ]);
  }
  const resolved = path.resolve(target);
  const source = fileConfigSource(resolved);
  const loaded = source.load();
  return { source, summary: `${loaded.source} (${Object.keys(loaded.config.services).sort().join(', ')})` };
}

/**
 * Run a worker until SIGINT/SIGTERM; in-flight activities get the shutdown grace time to finish, and Temporal
 * hands anything unfinished to another worker.
 */
export async function runWorker(activities: ReleaseActivities, opts: { address?: string; namespace?: string; taskQueue?: string } = {}): Promise<void> {
  const settings = temporalSettings(opts);
  const connection = await connectWorker(settings);
  try {
    const worker = await createReleaseWorker({
      connection,
      namespace: settings.namespace,
      activities,
      ...(opts.taskQueue ? { taskQueue: opts.taskQueue } : {}),
      workflowBundlePath: resolveWorkflowBundle(),
    });
    // Worker.run() installs SIGINT/SIGTERM handlers that start a graceful shutdown.
    process.stderr.write(`gantry worker: polling ${opts.taskQueue ?? TASK_QUEUE} on ${settings.address} (namespace ${settings.namespace})\n`);
    await worker.run();
    process.stderr.write('gantry worker: stopped\n');
  } finally {
    await connection.close();
  }
}

if (require.main === module) {
  // Real step implementations, assembled from their modules with the worker's own dependencies.
  Promise.resolve()
    .then(() => {
      const { source, summary } = workerConfig(undefined);
      process.stderr.write(`gantry worker: release config ${summary}\n`);
      return runWorker(createActivities({ config: source, env: process.env }));
    })
    .catch((err: unknown) => {
      const known = err instanceof ServerUnreachableError || err instanceof ConfigError;
      process.stderr.write(`${known ? (err as Error).message : err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
      process.exit(err instanceof ServerUnreachableError ? 69 : err instanceof ConfigError ? 3 : 1);
    });
}
