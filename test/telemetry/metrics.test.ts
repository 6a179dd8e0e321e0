/**
 * `gantry worker --metrics`: a real dev server and a worker put together as src/worker.ts does, with the Runtime
 * serving Prometheus on a free loopback port. After a release runs, the endpoint has the SDK's worker metrics and
 * gantry's own. The Runtime is process-wide and installed once, so these tests live in their own file (vitest
 * runs each file in its own process).
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, Worker } from '@temporalio/worker';
import { setupTelemetry, telemetrySettings, type Telemetry } from '../../src/telemetry';
import { METRIC } from '../../src/telemetry/names';
import { createReleaseWorker } from '../../src/worker';
import { devServerEnv } from '../helpers/servers';
import { freePort } from '../helpers/ports';
import { matching, scrape, scrapeUntil, valueOf, type Sample } from './prometheus';
import { QUIET_RUNTIME, releaseActivities, releaseInput, runRelease, uniqueTaskQueue } from './release';

let telemetry: Telemetry;
let url: string;
let env: TestWorkflowEnvironment;

const noop = (): void => undefined;
const quietLogger = { log: noop, trace: noop, debug: noop, info: noop, warn: noop, error: noop };

beforeAll(async () => {
  // Before anything connects: the Runtime serving the metrics must be the first one in the process.
  telemetry = setupTelemetry(telemetrySettings({ metrics: `127.0.0.1:${await freePort()}` }, {}), { runtime: QUIET_RUNTIME });
  url = telemetry.metricsUrl!;
  env = await devServerEnv();
});

afterAll(async () => {
  await env?.teardown();
  await telemetry?.shutdown();
});

const STEPS_RUN = ['resolve', 'preflight', 'tag', 'build', 'deployStaging', 'smoke', 'deployProduction', 'health', 'announce'] as const;

describe('a worker started with --metrics, after a release succeeds', () => {
  let taskQueue: string;

  beforeAll(async () => {
    const input = releaseInput();
    let tagAttempts = 0;
    // The tag step fails its first attempt and succeeds on the retry: two attempts, one of them a retry.
    const { activities } = releaseActivities(input, { failWhile: { tag: () => ++tagAttempts === 1 } });
    taskQueue = uniqueTaskQueue('release');
    const worker = await createReleaseWorker({ connection: env.nativeConnection, namespace: 'default', taskQueue, activities });
    const { status } = await worker.runUntil(runRelease(env, taskQueue, input));
    expect(status.outcome).toBe('succeeded');
    // Values reach the endpoint as tasks complete: wait for the workflow's completion and the last step's attempt.
    await scrapeUntil(url, (s) => {
      valueOf(s, 'temporal_workflow_completed', { task_queue: taskQueue, workflow_type: 'releaseWorkflow' });
      valueOf(s, METRIC.stepAttempt, { taskQueue, step: 'announce', result: 'ok' });
    });
  });

  it('serves the SDK\'s worker metrics for the release workflow and its activities', async () => {
    const samples = await scrape(url);
    expect(valueOf(samples, 'temporal_workflow_completed', { task_queue: taskQueue, workflow_type: 'releaseWorkflow' })).toBe(1);
    expect(valueOf(samples, 'temporal_worker_start', { task_queue: taskQueue })).toBeGreaterThanOrEqual(1);
    expect(valueOf(samples, 'temporal_activity_execution_latency_count', { task_queue: taskQueue, activity_type: 'deploy' })).toBe(2);
    expect(valueOf(samples, 'temporal_activity_execution_latency_count', { task_queue: taskQueue, activity_type: 'tag' })).toBe(2);
    expect(matching(samples, 'temporal_workflow_task_execution_latency_count', { task_queue: taskQueue }).length).toBeGreaterThan(0);
  });

  it('counts every attempt of every step by result and records how long each took, in seconds', async () => {
    const samples = await scrape(url);
    for (const step of STEPS_RUN.filter((s) => s !== 'tag')) {
      expect(valueOf(samples, METRIC.stepAttempt, { taskQueue, step, service: 'hello', result: 'ok', retry: 'false' }), step).toBe(1);
      expect(valueOf(samples, `${METRIC.stepAttemptDuration}_count`, { taskQueue, step, service: 'hello', result: 'ok' }), step).toBe(1);
      const seconds = valueOf(samples, `${METRIC.stepAttemptDuration}_sum`, { taskQueue, step, result: 'ok' });
      expect(seconds, step).toBeGreaterThanOrEqual(0);
      expect(seconds, `${step} took ${seconds}: not seconds`).toBeLessThan(30);
    }
    // The failed first attempt and the retry that succeeded.
    expect(valueOf(samples, METRIC.stepAttempt, { taskQueue, step: 'tag', result: 'error', retry: 'false' })).toBe(1);
    expect(valueOf(samples, METRIC.stepAttempt, { taskQueue, step: 'tag', result: 'ok', retry: 'true' })).toBe(1);
    // One activity, two steps: the step label tells staging from production; the SDK adds the activity type.
    for (const step of ['deployStaging', 'deployProduction']) {
      expect(matching(samples, METRIC.stepAttempt, { taskQueue, step })[0]?.labels.activityType).toBe('deploy');
    }
    expect(matching(samples, METRIC.stepAttempt, { taskQueue, step: 'rollback' })).toEqual([]);
  });

  it('buckets step durations for seconds to an hour, not the exporter\'s millisecond defaults', async () => {
    const bounds = matching(await scrape(url), `${METRIC.stepAttemptDuration}_bucket`, { taskQueue, step: 'build' }).map((s) => s.labels.le);
    expect(bounds).toEqual(expect.arrayContaining(['0.1', '1', '60', '3600', '+Inf']));
    expect(bounds).not.toContain('5000');
  });

  // The release workflow itself emits these (src/workflows/run.ts, messages.ts, release.ts through
  // src/workflows/metrics.ts; the test below proves the helpers on their own).
  it('counts the release\'s outcome, duration, gate wait, approval and steps from the release workflow', async () => {
    const samples = await scrape(url);
    const wf = { taskQueue, workflowType: 'releaseWorkflow', service: 'hello' };
    expect(valueOf(samples, METRIC.releaseSuccess, wf)).toBe(1);
    expect(matching(samples, METRIC.releaseFailure, wf)).toEqual([]);
    expect(valueOf(samples, `${METRIC.releaseDuration}_count`, { ...wf, outcome: 'succeeded' })).toBe(1);
    expect(valueOf(samples, `${METRIC.gateWait}_count`, { ...wf, result: 'approved' })).toBe(1);
    expect(valueOf(samples, METRIC.manualApproval, { ...wf, vote: 'approve' })).toBe(1);
    for (const step of STEPS_RUN) {
      expect(valueOf(samples, `${METRIC.stepDuration}_count`, { ...wf, step, result: 'succeeded' }), step).toBe(1);
    }
    expect(valueOf(samples, `${METRIC.stepAttempts}_sum`, { ...wf, step: 'tag', result: 'succeeded' })).toBe(2);
    expect(matching(samples, METRIC.rollback, wf)).toEqual([]);
  });
});

describe('the workflow-side metric helpers', () => {
  let samples: Sample[];
  const service = 'fixture-svc';
  let taskQueue: string;

  beforeAll(async () => {
    taskQueue = uniqueTaskQueue('helpers');
    const workflowBundle = await bundleWorkflowCode({ workflowsPath: path.join(__dirname, 'fixtures', 'metrics-workflow.ts'), logger: quietLogger });
    // No workflow cache: the task after the timer replays the workflow from its start.
    const worker = await Worker.create({ connection: env.nativeConnection, namespace: 'default', taskQueue, workflowBundle, maxCachedWorkflows: 0 });
    await worker.runUntil(env.client.workflow.execute('metricsFixtureWorkflow', { taskQueue, workflowId: `${taskQueue}-wf`, args: [service] }));
    samples = await scrapeUntil(url, (s) => { valueOf(s, 'temporal_workflow_completed', { task_queue: taskQueue, workflow_type: 'metricsFixtureWorkflow' }); });
  });

  const wf = (labels: Record<string, string> = {}) => ({ taskQueue, workflowType: 'metricsFixtureWorkflow', service, ...labels });

  it('count a release once though the workflow replayed the code that counted it', () => {
    expect(valueOf(samples, 'temporal_workflow_task_execution_latency_count', { task_queue: taskQueue, workflow_type: 'metricsFixtureWorkflow' })).toBeGreaterThanOrEqual(2);
    expect(valueOf(samples, METRIC.releaseSuccess, wf())).toBe(1);
    expect(valueOf(samples, `${METRIC.releaseDuration}_count`, wf({ outcome: 'succeeded' }))).toBe(1);
    expect(valueOf(samples, `${METRIC.releaseDuration}_sum`, wf({ outcome: 'succeeded' }))).toBe(42);
  });

  it('count failures by outcome and dry runs apart, with a duration for real releases only', () => {
    expect(valueOf(samples, METRIC.releaseFailure, wf({ outcome: 'rolled_back' }))).toBe(1);
    expect(valueOf(samples, `${METRIC.releaseDuration}_sum`, wf({ outcome: 'rolled_back' }))).toBe(7);
    expect(valueOf(samples, METRIC.releaseDryRun, wf())).toBe(1);
    expect(matching(samples, `${METRIC.releaseDuration}_count`, wf({ outcome: 'planned' }))).toEqual([]);
  });

  it('record the gate\'s wait in buckets from a minute to a week', () => {
    expect(valueOf(samples, `${METRIC.gateWait}_sum`, wf({ result: 'approved' }))).toBe(90);
    expect(valueOf(samples, `${METRIC.gateWait}_bucket`, wf({ result: 'approved', le: '60' }))).toBe(0);
    expect(valueOf(samples, `${METRIC.gateWait}_bucket`, wf({ result: 'approved', le: '300' }))).toBe(1);
    expect(valueOf(samples, `${METRIC.gateWait}_bucket`, wf({ result: 'approved', le: '604800' }))).toBe(1);
  });

  it('count accepted votes by vote and refused messages by kind, unknown signal names as other', () => {
    expect(valueOf(samples, METRIC.manualApproval, wf({ vote: 'approve' }))).toBe(1);
    expect(valueOf(samples, METRIC.manualApproval, wf({ vote: 'reject' }))).toBe(1);
    expect(valueOf(samples, METRIC.refusedMessage, wf({ kind: 'approve' }))).toBe(1);
    expect(valueOf(samples, METRIC.refusedMessage, wf({ kind: 'other' }))).toBe(1);
    expect(matching(samples, METRIC.refusedMessage, wf({ kind: 'no-such-signal' }))).toEqual([]);
    expect(matching(samples, METRIC.manualApproval, wf({ vote: 'decide' }))).toEqual([]);
  });

  it('count decisions, rollbacks and lane waits, and record a step\'s duration and attempts', () => {
    expect(valueOf(samples, METRIC.decision, wf({ step: 'build', decision: 'retry', by: 'operator' }))).toBe(1);
    expect(valueOf(samples, METRIC.rollback, wf({ healthy: 'true' }))).toBe(1);
    expect(valueOf(samples, `${METRIC.laneWait}_sum`, wf({ lane: 'production' }))).toBe(3);
    expect(valueOf(samples, `${METRIC.stepDuration}_sum`, wf({ step: 'build', result: 'succeeded' }))).toBe(12.5);
    expect(valueOf(samples, `${METRIC.stepAttempts}_sum`, wf({ step: 'build', result: 'succeeded' }))).toBe(2);
    expect(valueOf(samples, `${METRIC.stepAttempts}_bucket`, wf({ step: 'build', result: 'succeeded', le: '1' }))).toBe(0);
    expect(valueOf(samples, `${METRIC.stepAttempts}_bucket`, wf({ step: 'build', result: 'succeeded', le: '2' }))).toBe(1);
  });
});
