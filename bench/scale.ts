/**
 * `npm run bench -- scale [--n 200] [--max-cached-workflows <default>] [--concurrency 50] [--worker-options <json>]`:
 * parked releases cost no memory. One worker process (bench/scale-worker.ts: gantry's release worker with the
 * prebuilt bundle and no-op steps) on a dev server; N releases are started and run to the approval gate; the
 * worker's RSS is read from /proc; then all are approved by update (the `approve` update, as `gantry approve` sends
 * it) and the rate is printed, and the time until every release has ended.
 *
 * Parking keeps at most `concurrency` releases between their start and the gate, and approving at most that many
 * approvals in flight, never more than half the cache: releases that run faster than the worker keeps them
 * cached evict each other and replay their history at every step (1,000 started at once on a cache of 100), which
 * measures the thrashing rather than what a parked release costs. The approved releases' own deploys need room in
 * the cache too: Core's counts, printed per release parked and per release approved (workflow tasks, replays,
 * evictions), show when they do not get it (50 approvals in flight on a cache of 100: 3.8 replays an approval,
 * 217 ms of worker CPU; on 200: one replay, 73 ms).
 *
 * Targets (docs/performance.md): 10,000 parked at ≤ 400 MB worker RSS, approving all at ≥ 100/s.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as pause } from 'node:timers/promises';
import { WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError } from '@temporalio/client';
import { approveUpdate, releaseWorkflowId, startSearchAttributes } from '../src/shared/release';
import { sampleInput, startRequestFor } from '../test/helpers/fixtures';
import type { releaseWorkflow } from '../src/workflows';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { benchServer, ONE_PARTITION } from './floor';
import { pool, rssOf, spawnProcess } from './lib/proc';
import { WORKER_ENV } from '../src/worker';
import { freePort } from '../src/lab/daemon';

export interface ScaleOptions {
  n: number;
  maxCachedWorkflows: number;
  concurrency: number;
  /** Approve only the first this many (a sample for the rate; the rest stay parked). @default n */
  approve?: number;
  /** Further Worker options for the worker process (JSON), to measure pollers, slots and threads. */
  workerOptions?: string;
  /** node's flags for the worker process: by default the Dockerfile's (src/worker.ts WORKER_NODE_FLAGS). */
  nodeFlags: readonly string[];
  write: (line: string) => void;
}

/** CPU seconds (user + system) a process has used so far, from /proc (Linux): a rate on a shared machine moves
 * with its load, the worker's CPU per release much less. */
function cpuSecondsOf(pid: number): number {
  // Fields after the command's closing parenthesis: state is the 3rd field, utime and stime the 14th and 15th.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}
const CLOCK_TICKS = 100;

/** The worker's last report of its main thread's heap. */
function lastMemoryOf(output: string): string {
  const at = output.lastIndexOf('\nmemory ');
  return at < 0 ? 'memory: not reported' : output.slice(at + 1).split('\n')[0]!;
}

/** Core's counters in the worker, from its Prometheus text (scale-worker.ts GANTRY_BENCH_METRICS). */
interface CoreCounts {
  /** Workflow tasks the worker has completed. */
  tasks: number;
  /** Tasks for a release that was not in the cache: each a replay of its whole history. */
  misses: number;
  /** Releases evicted from a full cache to make room for another. */
  evictions: number;
}

async function coreCountsOf(url: string): Promise<CoreCounts | undefined> {
  try {
    const text = await (await fetch(url, { signal: AbortSignal.timeout(5_000) })).text();
    // A counter's value summed over its labels (one series per workflow type or task queue).
    const sum = (name: string): number => [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+]+)$`, 'gm'))]
      .reduce((t, m) => t + Number(m[1]), 0);
    return {
      tasks: sum('temporal_workflow_task_execution_latency_count'),
      misses: sum('temporal_sticky_cache_miss'),
      evictions: sum('temporal_sticky_cache_total_forced_eviction'),
    };
  } catch {
    return undefined; // the figures below say they are missing; the bench's own figures do not depend on them
  }
}

/** "8.0 workflow tasks, 0.1 of them replays (cache misses), 0.8 evictions" for each of `count` releases. */
function perRelease(before: CoreCounts | undefined, after: CoreCounts | undefined, count: number): string {
  if (!before || !after || count === 0) return "Core's task counts unavailable (its metrics did not answer)";
  const per = (k: keyof CoreCounts): string => ((after[k] - before[k]) / count).toFixed(1);
  return `${per('tasks')} workflow tasks, ${per('misses')} of them replays of the whole history (cache misses), ${per('evictions')} evictions`;
}

/** The worker's last printed counts: releases that passed smoke (at the gate) and that ended. */
function progressOf(output: string): { smoke: number; done: number } {
  const at = output.lastIndexOf('\nsmoke ');
  const m = at < 0 ? null : /^smoke (\d+) done (\d+)$/m.exec(output.slice(at + 1));
  return m ? { smoke: Number(m[1]), done: Number(m[2]) } : { smoke: 0, done: 0 };
}

/** How long the worker idles with every release parked before its RSS is read. */
const SETTLE_MS = 30_000;

/** How long the worker's counts may stand still before the bench gives up and says why. */
const PATIENCE_MS = 120_000;

/**
 * What running releases are stuck on, from Temporal: a pending step that keeps failing (a step the worker lacks, say),
 * else the first running release's pending steps. For the error of a bench that stopped making progress.
 */
async function whyStuck(client: TestWorkflowEnvironment['client']): Promise<string> {
  let first: string | undefined;
  for await (const wf of client.workflow.list({ query: 'ExecutionStatus = "Running"', pageSize: 20 })) {
    const d = await client.workflow.getHandle(wf.workflowId).describe();
    const pending = d.raw.pendingActivities ?? [];
    const failing = pending.find((a) => a.lastFailure?.message);
    if (failing) return `${wf.workflowId}: step ${failing.activityType?.name ?? '?'} attempt ${failing.attempt ?? '?'} failed: ${failing.lastFailure!.message}`;
    first ??= `${wf.workflowId}: pending steps ${pending.map((a) => a.activityType?.name).join(', ') || 'none'}`;
    if (first && pending.length === 0) break;
  }
  return first ?? 'no release is running';
}

/**
 * The worker as it runs in production: compiled (dist/bench/scale-worker.js, built with the CLI by `npm run build`),
 * so its RSS is gantry's and not the TypeScript loader's; under tsx only when the compiled one is missing or older.
 */
function scaleWorkerEntry(): string[] {
  const source = path.join(__dirname, 'scale-worker.ts');
  const compiled = path.resolve(__dirname, '..', 'dist', 'bench', 'scale-worker.js');
  if (existsSync(compiled) && statSync(compiled).mtimeMs >= statSync(source).mtimeMs) return [compiled];
  return ['--import', 'tsx', source];
}

export async function scaleBench(opts: ScaleOptions): Promise<{ code: number; figures: Record<string, number> }> {
  const { n, write } = opts;
  // Eager activities and one partition: parking 10,000 releases is ~130,000 tasks; the server's floor is not
  // what this bench measures (bench floor does).
  const server = await benchServer({ file: false, dynamicConfig: { ...ONE_PARTITION, 'system.enableActivityEagerExecution': 'true' } });
  const taskQueue = 'gantry-bench-scale';
  const entry = scaleWorkerEntry();
  // The Dockerfile's environment for the worker (src/worker.ts WORKER_ENV), unless the bench's own sets it.
  const metricsAddress = `127.0.0.1:${await freePort()}`;
  const metricsUrl = `http://${metricsAddress}/metrics`;
  const workerEnv = { ...WORKER_ENV, ...process.env, GANTRY_BENCH_METRICS: metricsAddress };
  const worker = spawnProcess(process.execPath, [...opts.nodeFlags, ...entry, server.env.address, taskQueue, String(opts.maxCachedWorkflows),
    ...(opts.workerOptions ? [opts.workerOptions] : [])], { env: workerEnv });
  try {
    await worker.waitFor(/^ready cache=(\d+)$/m, 120_000);
    const pid = worker.child.pid!;
    await pause(1000);
    const idle = rssOf(pid);
    const window = Math.max(1, Math.min(opts.concurrency, Math.floor(opts.maxCachedWorkflows / 2)));
    const options = /^options (.*)$/m.exec(worker.output())?.[1];
    if (opts.workerOptions) write(`scale: worker options ${options ?? '?'}`);
    write(`scale: worker pid ${pid} (${entry[0] === '--import' ? 'under tsx: build for the compiled figure' : 'compiled'}, node ${opts.nodeFlags.join(' ') || 'without flags'}, ` +
      `${Object.keys(WORKER_ENV).map((k) => `${k}=${workerEnv[k as keyof typeof WORKER_ENV] ?? ''}`).join(' ')}), cache ${opts.maxCachedWorkflows} workflows, idle RSS ${idle.rssMb.toFixed(0)} MB; parking ${n} releases, ${window} at a time…`);
    const client = server.env.client;
    // Wait until the worker's count reaches `target`; fail with what the releases are stuck on if it stands still.
    let moved = { count: -1, at: performance.now() };
    const reach = async (count: () => number, target: number, what: string): Promise<void> => {
      for (let c = count(); c < target; c = count()) {
        if (c !== moved.count) moved = { count: c, at: performance.now() };
        else if (performance.now() - moved.at > PATIENCE_MS) {
          throw new Error(`no release ${what} for ${PATIENCE_MS / 1000} s (${c} so far): ${await whyStuck(client)}`);
        }
        await pause(20);
      }
    };
    const versions = Array.from({ length: n }, (_, i) => `3.${Math.floor(i / 1000)}.${i % 1000}`);
    const requestedBy = sampleInput().requestedBy;

    const t0 = performance.now();
    const cpu0 = cpuSecondsOf(pid);
    const core0 = await coreCountsOf(metricsUrl);
    let started = 0;
    let last = 0;
    await pool(versions, window, async (version) => {
      // At most `window` releases between their start and the gate.
      await reach(() => progressOf(worker.output()).smoke, started - window + 1, 'reached the gate');
      started += 1;
      const input = { service: 'hello', version, requestedBy };
      await client.workflow.start<typeof releaseWorkflow>('releaseWorkflow', {
        taskQueue,
        workflowId: releaseWorkflowId('hello', version),
        args: [startRequestFor({ ...sampleInput({ version }), ...input })],
        typedSearchAttributes: startSearchAttributes(input),
      });
      const { smoke } = progressOf(worker.output());
      if (smoke - last >= Math.max(100, n / 10)) {
        last = smoke;
        write(`  ${smoke}/${n} at the gate after ${((performance.now() - t0) / 1000).toFixed(0)} s (RSS ${rssOf(pid).rssMb.toFixed(0)} MB; ${lastMemoryOf(worker.output())})`);
      }
    });
    const startedS = (performance.now() - t0) / 1000;
    await reach(() => progressOf(worker.output()).smoke, n, 'reached the gate');
    const parkS = (performance.now() - t0) / 1000;
    const parkCpuMs = ((cpuSecondsOf(pid) - cpu0) * 1000) / n;
    await pause(3000); // the gate opens in the task after smoke; let the worker settle
    const parked = rssOf(pid);
    const coreParked = await coreCountsOf(metricsUrl);
    write(`  ${n} parked in ${parkS.toFixed(1)} s (all started after ${startedS.toFixed(1)} s); worker RSS ${parked.rssMb.toFixed(0)} MB (peak ${parked.peakMb.toFixed(0)} MB); ` +
      `${(n / parkS).toFixed(1)}/s, worker CPU ${parkCpuMs.toFixed(0)} ms a release; a release to the gate: ${perRelease(core0, coreParked, n)}`);
    // Parked releases wait for hours: their worker's memory is what it holds once it has been idle a while (V8
    // collects and returns its garbage heap when idle), not the peak of the parking run.
    await pause(SETTLE_MS);
    const settled = rssOf(pid);
    write(`  worker RSS ${settled.rssMb.toFixed(0)} MB after ${SETTLE_MS / 1000} s idle with ${n} parked (${lastMemoryOf(worker.output())})`);

    let refusedEarly = 0;
    let timedOut = 0;
    let approvedCount = 0;
    const toApprove = versions.slice(0, Math.min(n, opts.approve ?? n));
    const a0 = performance.now();
    const cpuA = cpuSecondsOf(pid);
    const coreA = await coreCountsOf(metricsUrl);
    await pool(toApprove, window, async (version) => {
      const handle = client.workflow.getHandle<typeof releaseWorkflow>(releaseWorkflowId('hello', version));
      for (let attempt = 1; ; attempt++) {
        try {
          // One update id per release: a retry after a timed-out call is the same update, never a second vote.
          await handle.executeUpdate(approveUpdate, { updateId: `bench-approve-${version}`, args: [{ approver: 'alice', reason: 'bench scale' }] });
          break;
        } catch (err) {
          if (err instanceof WorkflowUpdateRPCTimeoutOrCancelledError && attempt < 20) {
            timedOut += 1;
            continue;
          }
          const why = err instanceof WorkflowUpdateFailedError ? err.cause?.message ?? '' : '';
          if (!why.includes('not open yet') || attempt >= 100) throw err;
          refusedEarly += 1;
          await pause(50);
        }
      }
      approvedCount += 1;
      if (approvedCount % Math.max(100, Math.floor(toApprove.length / 10)) === 0 && approvedCount < toApprove.length) {
        const s = (performance.now() - a0) / 1000;
        write(`  ${approvedCount}/${toApprove.length} approved after ${s.toFixed(0)} s: ${(approvedCount / s).toFixed(1)}/s (RSS ${rssOf(pid).rssMb.toFixed(0)} MB)`);
      }
    });
    const approveS = (performance.now() - a0) / 1000;
    const rate = toApprove.length / approveS;
    const approveCpuMs = ((cpuSecondsOf(pid) - cpuA) * 1000) / toApprove.length;
    const approved = rssOf(pid);
    write(`  approved ${toApprove.length < n ? `${toApprove.length} of the ${n}` : `all ${n}`} by update in ${approveS.toFixed(1)} s: ${rate.toFixed(1)}/s (${window} at a time` +
      `${refusedEarly ? `; ${refusedEarly} arrived before their gate opened and were resent` : ''}` +
      `${timedOut ? `; ${timedOut} calls timed out waiting for the worker and were retried with the same update id` : ''}); ` +
      `worker RSS ${approved.rssMb.toFixed(0)} MB, CPU ${approveCpuMs.toFixed(0)} ms an approval (with the deploys it set off meanwhile)`);
    await reach(() => progressOf(worker.output()).done, toApprove.length, 'ended');
    const doneS = (performance.now() - a0) / 1000;
    const end = rssOf(pid);
    const coreEnd = await coreCountsOf(metricsUrl);
    write(`  every approved release ended (production deploy, health, announce) ${doneS.toFixed(1)} s after the first approval; ` +
      `worker RSS ${end.rssMb.toFixed(0)} MB, peak ${end.peakMb.toFixed(0)} MB`);
    // A parked release that is not cached needs one replay for its approval; more than that is the cache
    // evicting releases between their steps (too small a cache for the approvals in flight and their deploys).
    write(`  an approved release, from the approval to its end: ${perRelease(coreA, coreEnd, toApprove.length)} ` +
      `(one is the floor for a release that waited out of the cache, as at least ${Math.max(0, Math.min(toApprove.length, n - opts.maxCachedWorkflows))} of these ${toApprove.length} did; ` +
      'more is the cache evicting releases between their steps)');
    const rssPass = n < 10_000 || settled.rssMb <= 400;
    write(`  targets: 10,000 parked at ≤ 400 MB RSS (idle)${n < 10_000 ? ` (run with --n 10000 to check; ${n} parked here)` : `: ${rssPass ? 'PASS' : 'MISS'}`}; ` +
      `approving at ≥ 100/s: ${rate >= 100 ? 'PASS' : 'MISS'}`);
    return {
      code: 0,
      figures: { 'scale.n': n, 'scale.idleRssMb': idle.rssMb, 'scale.parkedRssMb': parked.rssMb, 'scale.settledRssMb': settled.rssMb, 'scale.peakRssMb': end.peakMb, 'scale.parkS': parkS, 'scale.parkCpuMs': parkCpuMs, 'scale.approvePerS': rate, 'scale.approveCpuMs': approveCpuMs, 'scale.doneS': doneS,
        ...(coreA && coreEnd ? { 'scale.approveReplays': (coreEnd.misses - coreA.misses) / toApprove.length } : {}) },
    };
  } finally {
    await worker.stop();
    await server.dispose();
  }
}
