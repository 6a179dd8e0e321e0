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
 *   npm run bench -- overhead [--runs 30] [--warmup 5] [--target 1.15] [--strict] [--verbose (every sample)]
 *
 * Exits 0 whether or not the target is met, unless --strict (then 1 on a miss). Run by bench/main.ts.
 */
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as pause } from 'node:timers/promises';
import { WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import { Worker } from '@temporalio/worker';
import type { ReleaseActivities } from '../src/activities/types';
import { approveUpdate, releaseWorkflowId, startSearchAttributes } from '../src/shared/release';
import { sampleInput, startRequestFor } from '../test/helpers/fixtures';
import { noopReleaseActivities } from './lib/noop-activities';
import { median, row } from './lib/stats';
import { devServerEnv } from '../test/helpers/servers';
import type { BareActivities } from './bare-workflow';
import type { bareWorkflow } from './workflows';
import type { releaseWorkflow } from '../src/workflows';

const TASK_QUEUE = 'gantry-bench';

export interface OverheadOptions {
  runs: number;
  warmup: number;
  target: number;
  strict: boolean;
  verbose: boolean;
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

/** Release steps that do nothing (bench/lib/noop-activities.ts); smoke reports to the approval at start. */
function noopActivities(approval: ApprovalAtStart, calls: { n: number }): ReleaseActivities & BareActivities {
  return noopReleaseActivities({ onCall: () => void (calls.n += 1), onSmoke: (workflowId) => approval.smokePassed(workflowId) });
}

/** The release workflow against the bare one; returns the medians and ratio, and whether the target was met. */
export async function overheadBench(opts: OverheadOptions): Promise<{ code: number; figures: Record<string, number> }> {
  const { runs, warmup, target } = opts;
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
      const line = (name: string, xs: number[]): string => `${row(name, xs, 36)}\n`;
      process.stdout.write(`\nrelease overhead, ${runs} runs each, ${perRelease} no-op activities per workflow\n`);
      process.stdout.write(line('releaseWorkflow (approval at start)', releaseMs));
      process.stdout.write(line('bareWorkflow', bareMs));
      process.stdout.write(`  approval updates refused as "not open yet" and resent: ${approval.refusals} over ${runs} releases\n`);
      process.stdout.write(`  ratio (median release / median bare): ${ratio.toFixed(3)}   target ≤ ${target}   ${pass ? 'PASS' : 'FAIL'}\n`);
      return { code: pass || !opts.strict ? 0 : 1, figures: { 'overhead.release': mr, 'overhead.bare': mb, 'overhead.ratio': ratio } };
    });
  } finally {
    await env.teardown();
  }
}
