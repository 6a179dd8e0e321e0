/**
 * `npm run bench -- scale [--n 200] [--max-cached-workflows 500] [--concurrency 50]`: parked releases cost no
 * memory. One worker process (bench/scale-worker.ts: gantry's release worker with the prebuilt bundle and no-op
 * steps) on a dev server; N releases are started and run to the approval gate; the worker's RSS is read from
 * /proc; then all are approved by update (the `approve` update, as `gantry approve` sends it) and the rate is
 * printed, and the time until every release has ended.
 *
 * Targets (docs/performance.md): 10,000 parked at ≤ 400 MB worker RSS, approving all at ≥ 100/s.
 */
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as pause } from 'node:timers/promises';
import { WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError } from '@temporalio/client';
import { approveUpdate, releaseWorkflowId, startSearchAttributes } from '../src/shared/release';
import { sampleInput, startRequestFor } from '../test/helpers/fixtures';
import type { releaseWorkflow } from '../src/workflows';
import { benchServer, ONE_PARTITION } from './floor';
import { pool, rssOf, spawnProcess } from './lib/proc';

export interface ScaleOptions {
  n: number;
  maxCachedWorkflows: number;
  concurrency: number;
  write: (line: string) => void;
}

export async function scaleBench(opts: ScaleOptions): Promise<{ code: number; figures: Record<string, number> }> {
  const { n, write } = opts;
  // Eager activities and one partition: parking 10,000 releases is ~130,000 tasks; the server's floor is not
  // what this bench measures (bench floor does).
  const server = await benchServer({ file: false, dynamicConfig: { ...ONE_PARTITION, 'system.enableActivityEagerExecution': 'true' } });
  const taskQueue = 'gantry-bench-scale';
  const worker = spawnProcess(process.execPath, ['--import', 'tsx', path.join(__dirname, 'scale-worker.ts'), server.env.address, taskQueue, String(opts.maxCachedWorkflows)]);
  try {
    await worker.waitFor(/^ready cache=(\d+)$/m, 120_000);
    const pid = worker.child.pid!;
    await pause(1000);
    const idle = rssOf(pid);
    write(`scale: worker pid ${pid}, cache ${opts.maxCachedWorkflows} workflows, idle RSS ${idle.rssMb.toFixed(0)} MB; parking ${n} releases…`);
    const client = server.env.client;
    const versions = Array.from({ length: n }, (_, i) => `3.${Math.floor(i / 1000)}.${i % 1000}`);
    const requestedBy = sampleInput().requestedBy;

    const t0 = performance.now();
    await pool(versions, opts.concurrency, async (version) => {
      const input = { service: 'hello', version, requestedBy };
      await client.workflow.start<typeof releaseWorkflow>('releaseWorkflow', {
        taskQueue,
        workflowId: releaseWorkflowId('hello', version),
        args: [startRequestFor({ ...sampleInput({ version }), ...input })],
        typedSearchAttributes: startSearchAttributes(input),
      });
    });
    const startedS = (performance.now() - t0) / 1000;
    let last = 0;
    for (;;) {
      const m = await worker.waitFor(/^smoke (\d+) done \d+$/m, 600_000);
      const smoked = Number(m[1]);
      if (smoked >= n) break;
      if (smoked - last >= Math.max(100, n / 10)) {
        write(`  ${smoked}/${n} at the gate after ${((performance.now() - t0) / 1000).toFixed(0)} s (RSS ${rssOf(pid).rssMb.toFixed(0)} MB)`);
        last = smoked;
      }
      await pause(200);
    }
    const parkS = (performance.now() - t0) / 1000;
    await pause(3000); // the gate opens in the task after smoke; let the worker settle
    const parked = rssOf(pid);
    write(`  ${n} parked in ${parkS.toFixed(1)} s (all started after ${startedS.toFixed(1)} s); worker RSS ${parked.rssMb.toFixed(0)} MB (peak ${parked.peakMb.toFixed(0)} MB)`);

    let refusedEarly = 0;
    let timedOut = 0;
    const a0 = performance.now();
    await pool(versions, opts.concurrency, async (version) => {
      const handle = client.workflow.getHandle<typeof releaseWorkflow>(releaseWorkflowId('hello', version));
      for (let attempt = 1; ; attempt++) {
        try {
          // One update id per release: a retry after a timed-out call is the same update, never a second vote.
          await handle.executeUpdate(approveUpdate, { updateId: `bench-approve-${version}`, args: [{ approver: 'alice', reason: 'bench scale' }] });
          return;
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
    });
    const approveS = (performance.now() - a0) / 1000;
    const rate = n / approveS;
    const approved = rssOf(pid);
    write(`  approved all ${n} by update in ${approveS.toFixed(1)} s: ${rate.toFixed(0)}/s (${opts.concurrency} at a time` +
      `${refusedEarly ? `; ${refusedEarly} arrived before their gate opened and were resent` : ''}` +
      `${timedOut ? `; ${timedOut} calls timed out waiting for the worker and were retried with the same update id` : ''}); worker RSS ${approved.rssMb.toFixed(0)} MB`);
    for (;;) {
      const m = await worker.waitFor(/^smoke \d+ done (\d+)$/m, 600_000);
      if (Number(m[1]) >= n) break;
      await pause(200);
    }
    const doneS = (performance.now() - a0) / 1000;
    const end = rssOf(pid);
    write(`  every release ended (production deploy, health, announce) ${doneS.toFixed(1)} s after the first approval; ` +
      `worker RSS ${end.rssMb.toFixed(0)} MB, peak ${end.peakMb.toFixed(0)} MB`);
    const rssPass = n < 10_000 || parked.rssMb <= 400;
    write(`  targets: 10,000 parked at ≤ 400 MB RSS${n < 10_000 ? ` (run with --n 10000 to check; ${n} parked here)` : `: ${rssPass ? 'PASS' : 'MISS'}`}; ` +
      `approving at ≥ 100/s: ${rate >= 100 ? 'PASS' : 'MISS'}`);
    return {
      code: 0,
      figures: { 'scale.n': n, 'scale.idleRssMb': idle.rssMb, 'scale.parkedRssMb': parked.rssMb, 'scale.peakRssMb': end.peakMb, 'scale.parkS': parkS, 'scale.approvePerS': rate, 'scale.doneS': doneS },
    };
  } finally {
    await worker.stop();
    await server.dispose();
  }
}
