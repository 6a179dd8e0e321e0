/**
 * The gantry worker: runs release workflows and their steps from the shared task queue. It keeps no state of
 * its own (everything lives in Temporal), so any number of workers can serve one task queue.
 *
 *   TEMPORAL_ADDRESS=… TEMPORAL_NAMESPACE=… node dist/src/worker.js
 *
 * Outside development it runs the prebuilt workflow bundle (`npm run build` writes it); with
 * GANTRY_DEV=1 it bundles the workflow sources at start.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { setFlagsFromString } from 'node:v8';
import type { Logger, LogLevel } from '@temporalio/common';
import { bundleWorkflowCode, Worker, type NativeConnection, type WorkerOptions } from '@temporalio/worker';
import { TASK_QUEUE } from './shared/release';
import type { ReleaseActivities } from './activities/types';
import { createActivities } from './activities';
import { fileConfigSource, type ConfigSource } from './activities/resolve';
import { ConfigError } from './config/load';
import { UsageError } from './client/errors';
import { connectWorker, ServerUnreachableError, temporalSettings } from './connection';
import { instrumentActivities } from './telemetry/activities';
import { setupTelemetry, type Telemetry } from './telemetry';
import { telemetrySettings, type TelemetrySettings } from './telemetry/settings';
import { bundleHasTracing, tracingWorkerOptions, type Tracing } from './telemetry/tracing';

/** The workflow sources (`.ts` when run from source by tests, `.js` once compiled). */
export const WORKFLOWS_PATH = path.join(__dirname, 'workflows', `index${path.extname(__filename)}`);
/**
 * Workflow modules the reusable V8 context evaluates once, when the worker starts, and shares with every release
 * (the SDK's `preloadModules`): the signature curves and their tables (src/workflows/curves.ts). Only pure modules
 * belong here; everything else is evaluated for each release, so no release sees another's state.
 */
export const WORKFLOW_PRELOAD_MODULES = [path.join(__dirname, 'workflows', `curves${path.extname(__filename)}`)];

/** The options every bundle of the workflows is made with: the prebuilt one, one made at start, the tests'. */
export function workflowBundleOptions(): { workflowsPath: string; preloadModules: string[] } {
  return { workflowsPath: WORKFLOWS_PATH, preloadModules: WORKFLOW_PRELOAD_MODULES };
}

/** Where `npm run build` writes the bundle (next to the compiled worker). */
export const DEFAULT_BUNDLE_PATH = path.resolve(__dirname, '..', 'workflow-bundle.js');

/**
 * How many workflows a worker keeps in memory (`--max-cached-workflows`, GANTRY_MAX_CACHED_WORKFLOWS). A release
 * parked at the gate for days needs no memory: once more than this many are open, the least recently used is
 * evicted and replayed from its history when a message (approval, decision, timer) arrives. The worker's memory
 * is then its idle ~200 MB, the cached releases and the garbage replays leave: the workflow thread's heap is
 * bounded from the cache size (workflowHeapMb), so that garbage is collected instead of growing the heap. With 200
 * (and WORKER_NODE_FLAGS, WORKER_ENV) the scale bench's worker held 10,000 parked in 294 MB idle (285 MB with 100).
 * Every message to an evicted release costs one replay (~50 ms of CPU), and the cache must also hold the releases
 * that message sets going until they end: an approved release runs four more workflow tasks (production, health,
 * announce). With 100, 50 approvals in flight and their deploys did not fit, so each approved release was evicted
 * between its steps and replayed at almost every one (3.8 replays an approval, 217 ms of CPU, 4.8/s falling); with
 * 200, one replay (73 ms, 12.2/s steady) (docs/performance.md). A worker whose releases get many messages at once
 * gains from a bigger cache still, where it has the memory.
 */
export const DEFAULT_MAX_CACHED_WORKFLOWS = 200;

/**
 * The V8 heap the workflow thread may use, in MB, for a cache of `maxCachedWorkflows`: room for the SDK and
 * the bundle, and 1 MB for each cached release (a cached release's share of the worker's RSS, garbage included;
 * a cache of 100 ran in 128 MB, and the bound for it is 164 MB). Without a bound, V8 lets the heap grow with the garbage every replay leaves
 * (300 parked on a cache of 100: 517 MB RSS, against 401 MB with this bound), so a small cache alone did not
 * keep the worker small. Only the workflow thread is bounded: the main thread's heap is sized when node starts.
 * A heap limit given to node (`--max-old-space-size`, in NODE_OPTIONS or on its command line) is left as it is.
 */
export function workflowHeapMb(maxCachedWorkflows: number): number {
  return WORKFLOW_HEAP_BASE_MB + maxCachedWorkflows * WORKFLOW_HEAP_PER_CACHED_MB;
}
const WORKFLOW_HEAP_BASE_MB = 64;
const WORKFLOW_HEAP_PER_CACHED_MB = 1;

/**
 * Workflow tasks a worker runs at once for a cache of `maxCachedWorkflows`: the SDK's 40, but at most half the
 * cache. A task for a release that is not cached waits, holding its slot, until Core evicts a cached release
 * that has no task in flight; with more slots than that, every cached release can be busy and the tasks wait on
 * each other and on evictions (Core: buffer_resp_on_full_cache, reconcile_buffered). The SDK's own check that
 * slots ≤ cache only applies when maxConcurrentWorkflowTaskExecutions is given, not to its default of 40.
 */
export function workflowTaskSlots(maxCachedWorkflows: number): number {
  return Math.max(2, Math.min(SDK_WORKFLOW_TASK_SLOTS, Math.floor(maxCachedWorkflows / 2)));
}
const SDK_WORKFLOW_TASK_SLOTS = 40;

/** Whether node was started with this V8 flag of its own (which the workflow thread then inherits). */
function nodeFlagGiven(flag: string, env: NodeJS.ProcessEnv = process.env): boolean {
  return [...process.execArgv, ...(env.NODE_OPTIONS ?? '').split(/\s+/)].some((a) => a === flag || a.startsWith(`${flag}=`));
}
const heapLimitGiven = (): boolean => nodeFlagGiven('--max-old-space-size');

/**
 * The workflow thread's young generation, in MB per semi-space (V8's default is 16 MB on 64-bit). Replays make
 * short-lived garbage; with V8's default, each thread keeps up to 3 × 16 MB of it between scavenges. 1,000 parked on
 * the default cache: 435 MB RSS idle with V8's default, 369 MB with this, for ~8% more CPU per release
 * (docs/performance.md). A `--max-semi-space-size` given to node is left as it is.
 */
export const WORKFLOW_SEMI_SPACE_MB = 4;
const semiSpaceGiven = (): boolean => nodeFlagGiven('--max-semi-space-size');

/**
 * The node flags a worker process is best started with: the same young generation for the main thread, which is
 * sized before any of gantry's code runs (1,000 parked: 369 MB idle with the workflow thread's alone, 265 MB with
 * both). The Dockerfile's CMD passes them (test/compose.test.ts checks it), and so does the scale bench.
 */
export const WORKER_NODE_FLAGS = [`--max-semi-space-size=${WORKFLOW_SEMI_SPACE_MB}`] as const;

/**
 * The environment a worker process is best started with: glibc's malloc with two arenas instead of up to eight a
 * core. The worker's threads (Core's, the workflow thread, libuv's) each take an arena otherwise, and the memory
 * freed in one stays resident there. Read by glibc when the process starts, so it cannot be set from here: the
 * Dockerfile's ENV sets it (test/compose.test.ts checks it), and so does the scale bench for its worker.
 */
export const WORKER_ENV = { MALLOC_ARENA_MAX: '2' } as const;

/**
 * A cache size from a flag or the environment: a whole number ≥ 2 (the SDK's smallest working cache).
 * Anything else is a usage error (exit 2) naming the flag and the default.
 */
export function parseMaxCachedWorkflows(raw: string, source = '--max-cached-workflows'): number {
  const n = /^\s*\d+\s*$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n < 2) {
    throw new UsageError(`${source} "${raw}" is not a cache size: give a whole number of workflows, at least 2 ` +
      `(default ${DEFAULT_MAX_CACHED_WORKFLOWS}), e.g. ${source.startsWith('--') ? `${source} 200` : `${source}=200`}.`);
  }
  return n;
}

/** The cache size a worker runs with: the flag's, else GANTRY_MAX_CACHED_WORKFLOWS, else the default. */
export function maxCachedWorkflowsFrom(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): number {
  if (flag !== undefined) return parseMaxCachedWorkflows(flag);
  const fromEnv = env.GANTRY_MAX_CACHED_WORKFLOWS;
  if (fromEnv !== undefined && fromEnv !== '') return parseMaxCachedWorkflows(fromEnv, 'GANTRY_MAX_CACHED_WORKFLOWS');
  return DEFAULT_MAX_CACHED_WORKFLOWS;
}

/**
 * The traced variant of a bundle (built with TRACING_WORKFLOW_MODULES from src/telemetry/tracing.ts):
 * `workflow-bundle.js` → `workflow-bundle.traced.js`. A tracing worker uses it when the bundle itself is untraced.
 */
export function tracedBundlePath(bundlePath: string): string {
  return bundlePath.replace(/(\.js)?$/, '.traced.js');
}

export interface ReleaseWorkerOptions {
  connection: NativeConnection;
  namespace: string;
  activities: ReleaseActivities;
  taskQueue?: string;
  /** Path to a prebuilt workflow bundle; when unset the sources are bundled at start. */
  workflowBundlePath?: string;
  /** Extra Worker options (tests tune concurrency, identity, …). */
  tuning?: Partial<Pick<WorkerOptions, 'identity' | 'maxConcurrentActivityTaskExecutions' | 'maxConcurrentWorkflowTaskExecutions' | 'shutdownGraceTime' | 'maxCachedWorkflows' |
    'workflowTaskPollerBehavior' | 'activityTaskPollerBehavior' | 'workflowThreadPoolSize' | 'nonStickyToStickyPollRatio' | 'reuseV8Context'>>;
  /** Trace releases (from setupTelemetry): the OpenTelemetry interceptors and the workflow span sink. */
  tracing?: Tracing;
  /** Where notes about the worker's set-up go. @default stderr */
  note?: (line: string) => void;
}

/**
 * The workflow code to run. A tracing worker needs the workflow interceptors in its bundle: it uses the bundle
 * given if it has them, else its traced variant (tracedBundlePath), else bundles the sources at start.
 */
function workflowSource(bundlePath: string | undefined, traced: boolean, note: (line: string) => void): Pick<WorkerOptions, 'workflowBundle' | 'workflowsPath'> {
  if (!bundlePath) return { workflowsPath: WORKFLOWS_PATH };
  if (!traced) return { workflowBundle: { codePath: bundlePath } };
  for (const candidate of [bundlePath, tracedBundlePath(bundlePath)]) {
    if (existsSync(candidate) && bundleHasTracing(readFileSync(candidate, 'utf8'))) return { workflowBundle: { codePath: candidate } };
  }
  note(`the workflow bundle ${bundlePath} has no tracing interceptors and ${tracedBundlePath(bundlePath)} does not exist: ` +
    'bundling the workflow sources with them now (`npm run build` writes the traced bundle)');
  return { workflowsPath: WORKFLOWS_PATH };
}

/**
 * The bundler's logger: webpack's report of a clean build (dozens of lines of modules and sizes) is dropped;
 * its warnings and errors, and the bundler's own, go to `write`.
 */
export function bundlerLogger(write: (text: string) => void): Logger {
  const webpackWarning = /\bWARNING in\b|compiled with \d+ warnings?/;
  const log = (level: LogLevel, message: string): void => {
    if (level === 'WARN' || level === 'ERROR' || webpackWarning.test(message)) write(message);
  };
  return {
    log,
    trace: (m) => log('TRACE', m),
    debug: (m) => log('DEBUG', m),
    info: (m) => log('INFO', m),
    warn: (m) => log('WARN', m),
    error: (m) => log('ERROR', m),
  };
}

/**
 * Bundle the workflow sources now, quietly (the SDK would log webpack's whole report through the Runtime's
 * logger), with the given workflow interceptor modules.
 */
async function bundleSources(workflowModules: string[] | undefined, note: (line: string) => void): Promise<string> {
  const { code } = await bundleWorkflowCode({
    ...workflowBundleOptions(),
    ...(workflowModules && workflowModules.length > 0 ? { workflowInterceptorModules: workflowModules } : {}),
    logger: bundlerLogger(note),
  });
  return code;
}

export async function createReleaseWorker(opts: ReleaseWorkerOptions): Promise<Worker> {
  const note = opts.note ?? ((line: string) => void process.stderr.write(`gantry worker: ${line}\n`));
  const maxCachedWorkflows = opts.tuning?.maxCachedWorkflows ?? DEFAULT_MAX_CACHED_WORKFLOWS;
  // The workflow thread is a new V8 isolate: it takes the heap limit in force when Worker.create starts it
  // (this process's own heap is sized already and does not change). A cache of 0 (no cache) keeps V8's default.
  if (maxCachedWorkflows > 0 && !heapLimitGiven()) setFlagsFromString(`--max-old-space-size=${workflowHeapMb(maxCachedWorkflows)}`);
  if (!semiSpaceGiven()) setFlagsFromString(`--max-semi-space-size=${WORKFLOW_SEMI_SPACE_MB}`);
  const tracing: Partial<ReturnType<typeof tracingWorkerOptions>> = opts.tracing ? tracingWorkerOptions(opts.tracing) : {};
  const source = workflowSource(opts.workflowBundlePath, opts.tracing !== undefined, note);
  // Without a prebuilt bundle the sources are bundled here rather than by Worker.create, to keep webpack's
  // report off the terminal. The bundle then carries the workflow interceptors, so the Worker is given none.
  const workflowCode = source.workflowsPath ? { workflowBundle: { code: await bundleSources(tracing.interceptors?.workflowModules, note) } } : source;
  const interceptors = tracing.interceptors && source.workflowsPath ? { interceptors: { ...tracing.interceptors, workflowModules: [] } } : {};
  return Worker.create({
    connection: opts.connection,
    namespace: opts.namespace,
    taskQueue: opts.taskQueue ?? TASK_QUEUE,
    // Every step attempt records its duration and result (docs/metrics.md); with tracing, its step on its span.
    activities: instrumentActivities(opts.activities),
    ...workflowCode,
    ...tracing,
    ...interceptors,
    shutdownGraceTime: '30s',
    maxCachedWorkflows,
    ...(maxCachedWorkflows > 0 ? { maxConcurrentWorkflowTaskExecutions: workflowTaskSlots(maxCachedWorkflows) } : {}),
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

export interface RunWorkerOptions {
  address?: string;
  namespace?: string;
  taskQueue?: string;
  /** Metrics endpoint and tracing (`--metrics`, `--otel`). @default from the environment: telemetrySettings({}) */
  telemetry?: TelemetrySettings;
  /** Workflows kept in memory (`--max-cached-workflows`). @default maxCachedWorkflowsFrom(undefined): GANTRY_MAX_CACHED_WORKFLOWS or DEFAULT_MAX_CACHED_WORKFLOWS (200) */
  maxCachedWorkflows?: number;
}

/**
 * Run a worker until SIGINT/SIGTERM; in-flight activities get the shutdown grace time to finish, and Temporal
 * hands anything unfinished to another worker. Telemetry is set up first: the Runtime that serves metrics must
 * exist before the first connection.
 */
export async function runWorker(activities: ReleaseActivities, opts: RunWorkerOptions = {}): Promise<void> {
  const settings = temporalSettings({
    ...(opts.address ? { address: opts.address } : {}),
    ...(opts.namespace ? { namespace: opts.namespace } : {}),
  });
  const telemetry: Telemetry = setupTelemetry(opts.telemetry ?? telemetrySettings({}));
  try {
    const connection = await connectWorker(settings);
    try {
      const bundlePath = resolveWorkflowBundle();
      if (!bundlePath) process.stderr.write('gantry worker: bundling the workflow sources (no prebuilt bundle; `npm run build` writes one)…\n');
      const worker = await createReleaseWorker({
        connection,
        namespace: settings.namespace,
        activities,
        ...(opts.taskQueue ? { taskQueue: opts.taskQueue } : {}),
        workflowBundlePath: bundlePath,
        ...(telemetry.tracing ? { tracing: telemetry.tracing } : {}),
        tuning: { maxCachedWorkflows: opts.maxCachedWorkflows ?? maxCachedWorkflowsFrom(undefined) },
      });
      // Worker.run() installs SIGINT/SIGTERM handlers that start a graceful shutdown.
      for (const line of telemetry.describe()) process.stderr.write(`gantry worker: ${line}\n`);
      const cached = worker.options.maxCachedWorkflows;
      const slots = worker.options.tuner.workflowTaskSlotSupplier;
      process.stderr.write(`gantry worker: keeping up to ${cached} workflows in memory (--max-cached-workflows); ` +
        `workflow heap ${heapLimitGiven() ? 'as node was told (--max-old-space-size)' : `≤ ${workflowHeapMb(cached)} MB`}` +
        `${slots.type === 'fixed-size' ? `, ${slots.numSlots} workflow tasks at a time` : ''}` +
        `, young generation ${semiSpaceGiven() ? 'as node was told (--max-semi-space-size)' : `${WORKFLOW_SEMI_SPACE_MB} MB semi-spaces`}\n`);
      process.stderr.write(`gantry worker: polling ${opts.taskQueue ?? TASK_QUEUE} on ${settings.address} (namespace ${settings.namespace})\n`);
      await worker.run();
      process.stderr.write('gantry worker: stopped\n');
    } finally {
      await connection.close();
    }
  } finally {
    await telemetry.shutdown();
  }
}

if (require.main === module) {
  // Real step implementations, assembled from their modules with the worker's own dependencies.
  Promise.resolve()
    .then(() => {
      const { source, summary } = workerConfig(undefined);
      const maxCachedWorkflows = maxCachedWorkflowsFrom(undefined);
      process.stderr.write(`gantry worker: release config ${summary}\n`);
      return runWorker(createActivities({ config: source, env: process.env }), { maxCachedWorkflows });
    })
    .catch((err: unknown) => {
      const known = err instanceof ServerUnreachableError || err instanceof ConfigError || err instanceof UsageError;
      process.stderr.write(`${known ? (err as Error).message : err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
      process.exit(err instanceof ServerUnreachableError ? 69 : err instanceof ConfigError ? 3 : err instanceof UsageError ? 2 : 1);
    });
}
