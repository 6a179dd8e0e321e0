/**
 * `npm run bench`: what gantry's release machinery costs on top of the activities it runs.
 *
 * On one dev server and one worker (one bundle holding both workflows), in one run, interleaved so machine noise
 * falls on both alike:
 *   - release: releaseWorkflow with no-op activities (results with attempt 1), started as `gantry start` starts
 *     it (search attributes set, so the workflow upserts its stage), approval sent at start;
 *   - bare: bench/bare-workflow.ts calling the same number of no-op activities in sequence.
 * Each sample is start → result, measured by the client. Prints both medians and their ratio against the target.
 *
 *   npm run bench -- [--runs 30] [--warmup 5] [--target 1.15] [--strict] [--verbose (every sample)]
 *
 * Exits 0 whether or not the target is met, unless --strict (then 1 on a miss).
 */
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as pause } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import { DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import type { ReleaseActivities } from '../src/activities/types';
import { approveUpdate, releaseWorkflowId, startSearchAttributes } from '../src/shared/release';
import { sampleInput, startRequestFor } from '../test/helpers/fixtures';
import { devServerEnv } from '../test/helpers/servers';
import type { BareActivities } from './bare-workflow';
import type { bareWorkflow } from './workflows';
import type { releaseWorkflow } from '../src/workflows';

const TASK_QUEUE = 'gantry-bench';

const { values: opts } = parseArgs({
  options: {
    runs: { type: 'string', default: '30' },
    warmup: { type: 'string', default: '5' },
    target: { type: 'string', default: '1.15' },
    strict: { type: 'boolean', default: false },
    verbose: { type: 'boolean', default: false },
  },
});

function positiveInt(name: string, raw: string, min: number): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) {
    throw new Error(`--${name} must be a whole number ≥ ${min}, got "${raw}"; e.g. npm run bench -- --${name} ${Math.max(min, 10)}`);
  }
  return n;
}

/**
 * "Approval sent at start", given that the gate refuses votes before it opens (it must: an early approval
 * would approve a build nobody has smoke-tested). The approval is issued at start and waits for the earliest
 * moment the gate can take it: the smoke step's completion, which the no-op smoke activity reports. It then
 * goes out as the `approve` update; the first try is normally refused with "not open yet" and resent after a
 * millisecond: an update that reaches the workflow in the same task as the smoke result is validated before
 * that result is applied (the SDK runs signal and update jobs first), so it only counts once the task that
 * opens the gate is done. That is one refused update per release, counted and printed. Polling the gate
 * from start instead would put a stream of refused updates (each a workflow task) on the same worker during
 * the measurement and measure the poll interval rather than the workflow.
 */
class ApprovalAtStart {
  private readonly smokeDone = new Map<string, () => void>();
  refusals = 0;

  /** Called by the no-op smoke activity. */
  smokePassed(workflowId: string): void {
    this.smokeDone.get(workflowId)?.();
  }

  async send(client: Client, workflowId: string): Promise<void> {
    await new Promise<void>((resolve) => this.smokeDone.set(workflowId, resolve));
    this.smokeDone.delete(workflowId);
    const handle = client.workflow.getHandle<typeof releaseWorkflow>(workflowId);
    for (let attempt = 1; ; attempt++) {
      try {
        await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice', reason: 'bench' }] });
        return;
      } catch (err) {
        const why = err instanceof WorkflowUpdateFailedError ? err.cause?.message ?? '' : '';
        if (!why.includes('not open yet') || attempt >= 200) throw err;
        this.refusals += 1;
        await pause(1);
      }
    }
  }
}

/** Release steps that do nothing and answer like a successful first attempt. */
function noopActivities(approval: ApprovalAtStart, calls: { n: number }): ReleaseActivities & BareActivities {
  const digest = `sha256:${'0'.repeat(64)}`;
  const checks = [{ name: 'health', url: 'http://127.0.0.1/health', ok: true, status: 200, detail: '200' }];
  const counted = <T>(v: T): Promise<T> => {
    calls.n += 1;
    return Promise.resolve(v);
  };
  return {
    resolvePlan: (r) => counted({ attempt: 1, input: sampleInput({ version: r.version }) }),
    preflight: () => counted({ attempt: 1, commit: 'c'.repeat(40), checks: [] }),
    tag: (r) => counted({ attempt: 1, tag: `v${r.release.version}`, commit: r.commit, created: true }),
    build: (r) => counted({ attempt: 1, image: `${r.image.registry}/${r.image.name}:${r.tag}`, digest, imageRef: `${r.image.registry}/${r.image.name}@${digest}`, built: true }),
    deploy: (r) => counted({ attempt: 1, environment: r.environment, targets: [{ target: 'bench', previousImage: null, image: r.imageRef, changed: true }] }),
    smoke: (r) => {
      approval.smokePassed(r.release.workflowId);
      return counted({ attempt: 1, checks });
    },
    health: () => counted({ attempt: 1, checks }),
    rollback: () => counted({ attempt: 1, restored: [], healthy: true }),
    announce: () => counted({ attempt: 1, webhookSent: false, auditLogged: false }),
    recordEnd: () => counted({ attempt: 1, webhookSent: false, auditLogged: false }),
    noop: () => counted({ attempt: 1 }),
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

async function main(): Promise<number> {
  const runs = positiveInt('runs', opts.runs, 1);
  const warmup = positiveInt('warmup', opts.warmup, 0);
  const target = Number(opts.target);
  if (!(target > 0)) throw new Error(`--target must be a positive ratio such as 1.15, got "${opts.target}"`);

  Runtime.install({ logger: new DefaultLogger('ERROR'), telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' } } } });
  process.stdout.write('bench: starting a dev server and bundling the workflows…\n');
  const env = await devServerEnv();
  try {
    const approval = new ApprovalAtStart();
    const calls = { n: 0 };
    const worker = await Worker.create({
      connection: env.nativeConnection,
      namespace: env.namespace ?? 'default',
      taskQueue: TASK_QUEUE,
      workflowsPath: path.join(__dirname, 'workflows.ts'),
      activities: noopActivities(approval, calls),
    });
    const client = env.client;
    let seq = 0;

    const release = async (): Promise<{ ms: number; activities: number }> => {
      seq += 1;
      const input = sampleInput({ version: `1.0.${seq}` });
      const workflowId = releaseWorkflowId(input.service, input.version);
      const before = calls.n;
      const t0 = performance.now();
      const handle = await client.workflow.start<typeof releaseWorkflow>('releaseWorkflow', {
        taskQueue: TASK_QUEUE,
        workflowId,
        args: [startRequestFor(input)],
        typedSearchAttributes: startSearchAttributes(input),
      });
      const [status] = await Promise.all([handle.result(), approval.send(client, workflowId)]);
      const ms = performance.now() - t0;
      if (status.outcome !== 'succeeded') throw new Error(`bench release ${workflowId} ended ${status.outcome ?? 'without outcome'}: ${status.message}`);
      return { ms, activities: calls.n - before };
    };

    const bare = async (activityCount: number): Promise<number> => {
      seq += 1;
      const t0 = performance.now();
      const handle = await client.workflow.start<typeof bareWorkflow>('bareWorkflow', {
        taskQueue: TASK_QUEUE,
        workflowId: `bench-bare-${seq}`,
        args: [activityCount],
      });
      const attempts = await handle.result();
      const ms = performance.now() - t0;
      if (attempts !== activityCount) throw new Error(`bare workflow ran ${attempts} activities, expected ${activityCount}`);
      return ms;
    };

    return await worker.runUntil(async () => {
      // The first release tells how many activities a release runs; the baseline runs exactly as many.
      const { activities: perRelease } = await release();
      process.stdout.write(`bench: a release runs ${perRelease} activities; warming up (${warmup} of each)…\n`);
      for (let i = 0; i < warmup; i++) {
        await release();
        await bare(perRelease);
      }
      approval.refusals = 0;

      process.stdout.write(`bench: measuring ${runs} of each, interleaved…\n`);
      const releaseMs: number[] = [];
      const bareMs: number[] = [];
      for (let i = 0; i < runs; i++) {
        // Alternate which goes first so neither always runs on a warmer worker.
        if (i % 2 === 0) {
          releaseMs.push((await release()).ms);
          bareMs.push(await bare(perRelease));
        } else {
          bareMs.push(await bare(perRelease));
          releaseMs.push((await release()).ms);
        }
        if (opts.verbose) process.stdout.write(`  run ${i + 1}: release ${releaseMs[i]!.toFixed(1)} ms, bare ${bareMs[i]!.toFixed(1)} ms\n`);
      }

      const mr = median(releaseMs);
      const mb = median(bareMs);
      const ratio = mr / mb;
      const pass = ratio <= target;
      const row = (name: string, xs: number[]): string =>
        `  ${name.padEnd(34)} median ${median(xs).toFixed(1).padStart(7)} ms   p90 ${percentile(xs, 90).toFixed(1).padStart(7)} ms   min ${Math.min(...xs).toFixed(1).padStart(7)} ms\n`;
      process.stdout.write(`\nrelease overhead, ${runs} runs each, ${perRelease} no-op activities per workflow\n`);
      process.stdout.write(row('releaseWorkflow (approval at start)', releaseMs));
      process.stdout.write(row('bareWorkflow', bareMs));
      process.stdout.write(`  approval updates refused as "not open yet" and resent: ${approval.refusals} over ${runs} releases\n`);
      process.stdout.write(`  ratio (median release / median bare): ${ratio.toFixed(3)}   target ≤ ${target}   ${pass ? 'PASS' : 'FAIL'}\n`);
      return pass || !opts.strict ? 0 : 1;
    });
  } finally {
    await env.teardown();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
