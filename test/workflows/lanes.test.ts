/**
 * Lanes on a real dev server, with a real worker running the real lane workflow and the real lane activities.
 * The holders are a stand-in release workflow (the release workflow's lane handling is written elsewhere): it
 * answers the `status` query with its `lanes`, releases the environment or ends when the test signals it.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, Worker } from '@temporalio/worker';
import { createLaneActivities } from '../../src/activities/lanes';
import {
  initialLaneState,
  LANE_WORKFLOW_TYPE,
  laneEnqueueUpdate,
  laneLeaveSignal,
  laneQuery,
  laneWorkflowId,
  MAX_LANE_QUEUE,
  type LaneState,
  type LaneView,
} from '../../src/shared/lanes';
import { releaseWorkflowId, TASK_QUEUE } from '../../src/shared/release';
import { devServerEnv, requireBinary, TEMPORAL_CLI } from '../helpers/servers';
import { quietRuntime } from './harness';

quietRuntime();
const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '..', '..');

/** The stand-in holder and the lane, bundled together (written under .scratch/, which git ignores). */
const STAND_IN = `
import { ApplicationFailure, condition, defineQuery, defineSignal, setHandler } from '@temporalio/workflow';
export { laneWorkflow } from '../src/workflows/lane';

type LaneState = { state: 'waiting' | 'held' | 'released'; since: string };
export async function laneHolderStandIn(environment: string): Promise<string> {
  const lanes: Record<string, LaneState> = { [environment]: { state: 'waiting', since: new Date().toISOString() } };
  let finish: string | undefined;
  let changed = 0;
  setHandler(defineQuery<{ lanes: Record<string, LaneState>; changed: number }>('status'), () => ({ lanes, changed }));
  setHandler(defineSignal('gantry-lane-changed'), () => { changed += 1; });
  setHandler(defineSignal('test-release'), () => { lanes[environment] = { state: 'released', since: new Date().toISOString() }; });
  setHandler(defineSignal<[string]>('test-finish'), (how) => { finish = how; });
  await condition(() => finish !== undefined);
  if (finish === 'fail') throw ApplicationFailure.create({ message: 'the stand-in release failed', nonRetryable: true });
  return finish!;
}
`;

let env: TestWorkflowEnvironment;
let worker: Worker;
let running: Promise<void>;
let scratch: string;

beforeAll(async () => {
  requireBinary(TEMPORAL_CLI, 'The Temporal CLI');
  scratch = path.join(ROOT, '.scratch', `lanes-${randomUUID().slice(0, 8)}`);
  mkdirSync(scratch, { recursive: true });
  const entry = path.join(scratch, 'workflows.ts');
  writeFileSync(entry, STAND_IN.replace(/'\.\.\/src\//g, "'../../src/"));
  const noop = (): void => undefined;
  const [e, bundle] = await Promise.all([
    devServerEnv(),
    bundleWorkflowCode({ workflowsPath: entry, logger: { log: noop, trace: noop, debug: noop, info: noop, warn: noop, error: noop } }),
  ]);
  env = e;
  worker = await Worker.create({
    connection: env.nativeConnection, namespace: 'default', taskQueue: TASK_QUEUE, workflowBundle: bundle,
    activities: createLaneActivities(),
  });
  running = worker.run();
}, 180_000);

afterAll(async () => {
  worker?.shutdown();
  await running;
  await env?.teardown();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

let n = 0;
function uniqueService(): string {
  n += 1;
  return `lane${n}-${randomUUID().slice(0, 6)}`;
}

interface Holder {
  handle: WorkflowHandle;
  version: string;
  runId: string;
}

async function holder(service: string, version: string, environment = 'production'): Promise<Holder> {
  const handle = await env.client.workflow.start('laneHolderStandIn', {
    taskQueue: TASK_QUEUE, workflowId: releaseWorkflowId(service, version), args: [environment],
  });
  return { handle, version, runId: handle.firstExecutionRunId };
}

/** What a release does to queue: the real laneEnqueue activity's update-with-start, run here as a client. */
async function enqueue(service: string, h: Holder, environment = 'production'): Promise<LaneView> {
  const acts = createLaneActivities({ client: () => env.client });
  return acts.laneEnqueue({ service, environment, workflowId: h.handle.workflowId, runId: h.runId, version: h.version, requestedBy: 'dave' });
}

const lane = (service: string, environment = 'production') => env.client.workflow.getHandle(laneWorkflowId(service, environment));

async function waitForLane(service: string, ok: (v: LaneView) => boolean, what: string, timeoutMs = 20_000): Promise<LaneView> {
  const until = Date.now() + timeoutMs;
  let last: LaneView | undefined;
  for (;;) {
    try {
      last = await lane(service).query(laneQuery);
      if (ok(last)) return last;
    } catch {
      // not started yet
    }
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}; lane: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const heldBy = (version: string) => (v: LaneView) => v.holder?.version === version;
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('lanes', () => {
  it('grants the lane to the first release, and to the second only once the first ended', async () => {
    const svc = uniqueService();
    const a = await holder(svc, '1.4.0');
    const b = await holder(svc, '1.5.0');
    const first = await enqueue(svc, a);
    expect(first.position).toBe(0);
    const second = await enqueue(svc, b);
    expect(second.position).toBe(1);
    expect(second.holder?.version).toBe('1.4.0');
    expect(second.queue.map((e) => e.version)).toEqual(['1.5.0']);
    // Both were told the lane changed when it was granted.
    await pause(2500);
    expect((await lane(svc).query(laneQuery)).holder?.version).toBe('1.4.0');
    await a.handle.signal('test-finish', 'done');
    const v = await waitForLane(svc, heldBy('1.5.0'), '1.5.0 to hold the lane');
    expect(v.queue).toEqual([]);
    expect(v.recent?.at(-1)).toEqual(expect.objectContaining({ version: '1.4.0', ended: 'completed' }));
    const told = await b.handle.query<{ changed: number }>('status');
    expect(told.changed).toBeGreaterThanOrEqual(1);
    await b.handle.signal('test-finish', 'done');
  });

  it('passes the lane on when the holder is cancelled, fails, or is terminated with the temporal CLI', async () => {
    const svc = uniqueService();
    const [a, b, c, d] = await Promise.all(['2.0.0', '2.1.0', '2.2.0', '2.3.0'].map((v) => holder(svc, v)));
    for (const h of [a!, b!, c!, d!]) await enqueue(svc, h);
    await a!.handle.cancel();
    let v = await waitForLane(svc, heldBy('2.1.0'), 'the lane to pass after a cancellation');
    expect(v.recent?.at(-1)?.ended).toBe('cancelled');
    await b!.handle.signal('test-finish', 'fail');
    v = await waitForLane(svc, heldBy('2.2.0'), 'the lane to pass after a failure');
    expect(v.recent?.at(-1)?.ended).toBe('failed');
    await run(TEMPORAL_CLI, ['workflow', 'terminate', '--address', env.address, '--namespace', 'default', '-w', c!.handle.workflowId, '--reason', 'test']);
    v = await waitForLane(svc, heldBy('2.3.0'), 'the lane to pass after a terminate');
    expect(v.recent?.at(-1)?.ended).toBe('terminated');
    await d!.handle.signal('test-finish', 'done');
  });

  it('passes the lane on when the holder\'s status says it released the environment', async () => {
    const svc = uniqueService();
    const a = await holder(svc, '3.0.0');
    const b = await holder(svc, '3.1.0');
    await enqueue(svc, a);
    await enqueue(svc, b);
    await a.handle.signal('test-release');
    const v = await waitForLane(svc, heldBy('3.1.0'), 'the lane to pass after the holder released it');
    expect(v.recent?.at(-1)?.ended).toBe('released');
    // The first release still runs (it released production, it is not done).
    expect((await a.handle.describe()).status.name).toBe('RUNNING');
    await Promise.all([a, b].map((h) => h.handle.signal('test-finish', 'done')));
  });

  it('keeps three waiting releases in the order they queued', async () => {
    const svc = uniqueService();
    const hs = await Promise.all(['4.0.0', '4.1.0', '4.2.0', '4.3.0'].map((v) => holder(svc, v)));
    for (const h of hs) await enqueue(svc, h);
    let v = await lane(svc).query(laneQuery);
    expect(v.holder?.version).toBe('4.0.0');
    expect(v.queue.map((e) => e.version)).toEqual(['4.1.0', '4.2.0', '4.3.0']);
    // Queuing again answers with the same place, and changes nothing.
    expect((await enqueue(svc, hs[2]!)).position).toBe(2);
    for (const [i, next] of ['4.1.0', '4.2.0', '4.3.0'].entries()) {
      await hs[i]!.handle.signal('test-finish', 'done');
      v = await waitForLane(svc, heldBy(next), `${next} to hold the lane`);
    }
    await hs[3]!.handle.signal('test-finish', 'done');
    await waitForLane(svc, (x) => !x.holder && x.queue.length === 0, 'the lane to be free');
  });

  it('does not pass the lane on a forged leave: it checks the holder itself', async () => {
    const svc = uniqueService();
    const a = await holder(svc, '5.0.0');
    const b = await holder(svc, '5.1.0');
    await enqueue(svc, a);
    await enqueue(svc, b);
    await lane(svc).signal(laneLeaveSignal, { workflowId: a.handle.workflowId, runId: a.runId });
    await lane(svc).signal(laneLeaveSignal, { workflowId: 'release-other-1.0.0', runId: 'nonsense' });
    await pause(3000);
    const v = await lane(svc).query(laneQuery);
    expect(v.holder?.version).toBe('5.0.0');
    expect(v.queue.map((e) => e.version)).toEqual(['5.1.0']);
    // A true leave (the holder released) is acted on at once.
    await a.handle.signal('test-release');
    await lane(svc).signal(laneLeaveSignal, { workflowId: a.handle.workflowId, runId: a.runId });
    await waitForLane(svc, heldBy('5.1.0'), 'the lane to pass after a true leave', 5000);
    await Promise.all([a, b].map((h) => h.handle.signal('test-finish', 'done')));
  });

  it('refuses a bad enqueue with its reason', async () => {
    const svc = uniqueService();
    const a = await holder(svc, '6.0.0');
    await enqueue(svc, a);
    const refused = async (req: Record<string, unknown>): Promise<string> => {
      const err = await lane(svc).executeUpdate(laneEnqueueUpdate, { args: [req as never] }).then(() => undefined, (e: unknown) => e);
      if (!(err instanceof WorkflowUpdateFailedError)) throw new Error(`expected a refusal, got ${String(err)}`);
      return err.cause?.message ?? err.message;
    };
    const base = { service: svc, environment: 'production', workflowId: releaseWorkflowId(svc, '6.1.0'), runId: randomUUID(), version: '6.1.0' };
    expect(await refused({ ...base, workflowId: 'release-other-6.1.0' })).toMatch(/is not release release-.*-6\.1\.0; only releases of/);
    expect(await refused({ ...base, service: 'other' })).toMatch(/this is the lane of .*\/production, not other\/production/);
    expect(await refused({ ...base, runId: undefined })).toMatch(/"runId" is missing/);
    expect(await refused({ ...base, version: 'latest' })).toMatch(/not a semantic version/);
    expect(await refused({ ...base, extra: 1 })).toMatch(/unknown field\(s\) extra/);
    const v = await lane(svc).query(laneQuery);
    expect(v.queue).toEqual([]);
    await a.handle.signal('test-finish', 'done');
  });

  it('refuses enqueues beyond the queue bound, saying what to do', async () => {
    expect(MAX_LANE_QUEUE).toBe(200);
    const svc = uniqueService();
    const state: LaneState = { ...initialLaneState(svc, 'production', new Date().toISOString()), maxQueue: 1 };
    await env.client.workflow.start(LANE_WORKFLOW_TYPE, { taskQueue: TASK_QUEUE, workflowId: laneWorkflowId(svc, 'production'), args: [state] });
    const hs = await Promise.all(['8.0.0', '8.1.0', '8.2.0'].map((v) => holder(svc, v)));
    await enqueue(svc, hs[0]!);
    await enqueue(svc, hs[1]!);
    const err = await enqueue(svc, hs[2]!).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowUpdateFailedError);
    expect((err as WorkflowUpdateFailedError).cause?.message).toMatch(/already has 1 releases waiting; let some finish or cancel/);
    await Promise.all(hs.map((h) => h.handle.signal('test-finish', 'done')));
  });

  it('keeps holder, queue and record across continue-as-new, and completes when idle', async () => {
    const svc = uniqueService();
    const state: LaneState = { ...initialLaneState(svc, 'production', new Date().toISOString()), maxHistory: 40, idleMs: 5000 };
    const started = await env.client.workflow.start(LANE_WORKFLOW_TYPE, { taskQueue: TASK_QUEUE, workflowId: laneWorkflowId(svc, 'production'), args: [state] });
    const hs = await Promise.all(['7.0.0', '7.1.0', '7.2.0', '7.3.0'].map((v) => holder(svc, v)));
    for (const h of hs) await enqueue(svc, h);
    await hs[0]!.handle.signal('test-finish', 'done');
    await waitForLane(svc, heldBy('7.1.0'), '7.1.0 to hold the lane');
    // Enough history for the lane to continue as new at least once.
    for (let i = 0; i < 8; i++) await lane(svc).signal(laneLeaveSignal, { workflowId: hs[2]!.handle.workflowId, runId: hs[2]!.runId });
    const d = await waitFor(async () => {
      const desc = await lane(svc).describe();
      return desc.runId !== started.firstExecutionRunId ? desc : undefined;
    }, 'the lane to continue as new');
    expect(d.status.name).toBe('RUNNING');
    const v = await lane(svc).query(laneQuery);
    expect(v.holder?.version).toBe('7.1.0');
    expect(v.queue.map((e) => e.version)).toEqual(['7.2.0', '7.3.0']);
    expect(v.recent?.map((r) => r.version)).toEqual(['7.0.0']);
    for (const h of hs.slice(1)) await h.handle.signal('test-finish', 'done');
    await waitFor(async () => ((await lane(svc).describe()).status.name === 'COMPLETED' ? true : undefined), 'the idle lane to complete', 30_000);
    // The next release brings it back.
    const again = await holder(svc, '7.4.0');
    expect((await enqueue(svc, again)).position).toBe(0);
    await again.handle.signal('test-finish', 'done');
  });
});

async function waitFor<T>(fn: () => Promise<T | undefined>, what: string, timeoutMs = 20_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await pause(200);
  }
}
