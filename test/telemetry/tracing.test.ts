/**
 * `gantry worker --otel`: a real dev server and a worker put together as src/worker.ts does, tracing into an
 * in-process span exporter. A release is one trace: the workflow's span, and for each step the span where the
 * workflow schedules it and the span where it runs, which knows the trace id (what the announce step records).
 * Tracing registers process-wide OpenTelemetry globals, so these tests live in their own file.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, Runtime, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import type { ReleaseActivities } from '../../src/activities/types';
import { currentTraceId, setupTelemetry, telemetrySettings, TRACING_WORKFLOW_MODULES, type Telemetry } from '../../src/telemetry';
import { bundleHasTracing } from '../../src/telemetry/tracing';
import { createReleaseWorker, tracedBundlePath, WORKFLOWS_PATH } from '../../src/worker';
import { devServerEnv } from '../helpers/servers';
import { QUIET_RUNTIME, releaseActivities, releaseInput, runRelease, uniqueTaskQueue } from './release';

const noop = (): void => undefined;
const quietLogger = { log: noop, trace: noop, debug: noop, info: noop, warn: noop, error: noop };

let exporter: InMemorySpanExporter;
let telemetry: Telemetry;
let env: TestWorkflowEnvironment;
let untraced: WorkflowBundleWithSourceMap;
let traced: WorkflowBundleWithSourceMap;
let dir: string;

beforeAll(async () => {
  Runtime.install(QUIET_RUNTIME);
  exporter = new InMemorySpanExporter();
  telemetry = setupTelemetry(telemetrySettings({ otel: true }, {}), { spanExporter: exporter });
  [env, untraced, traced] = await Promise.all([
    devServerEnv(),
    bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: quietLogger }),
    bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, workflowInterceptorModules: TRACING_WORKFLOW_MODULES, logger: quietLogger }),
  ]);
  dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-tracing-'));
});

afterAll(async () => {
  await env?.teardown();
  await telemetry?.shutdown();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The spans of one workflow: its own (the sink adds its workflow id) and its activities'. */
function spansOf(workflowId: string): ReadableSpan[] {
  return exporter.getFinishedSpans().filter((s) => s.attributes.workflowId === workflowId || s.attributes.temporalWorkflowId === workflowId);
}

async function workflowSpan(workflowId: string): Promise<ReadableSpan> {
  const until = Date.now() + 15_000;
  for (;;) {
    const root = spansOf(workflowId).find((s) => s.name === 'RunWorkflow:releaseWorkflow');
    if (root) return root;
    if (Date.now() > until) throw new Error(`no RunWorkflow span for ${workflowId}; spans: ${exporter.getFinishedSpans().map((s) => s.name).join(', ')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Every step records the trace id it sees, as the announce step does for the release record. */
function recordingTraceIds(activities: ReleaseActivities): { activities: ReleaseActivities; seen: Record<string, (string | undefined)[]> } {
  const seen: Record<string, (string | undefined)[]> = {};
  const wrapped = Object.fromEntries(Object.entries(activities).map(([name, fn]) => [name, typeof fn !== 'function' ? fn : async (...args: unknown[]) => {
    (seen[name] ??= []).push(currentTraceId());
    return (fn as (...a: unknown[]) => Promise<unknown>)(...args);
  }]));
  return { activities: wrapped as unknown as ReleaseActivities, seen };
}

/** A directory holding prebuilt bundles, as `npm run build` leaves them in dist/. */
function bundleDir(name: string, files: Record<string, string>): string {
  const d = path.join(dir, name);
  mkdirSync(d, { recursive: true });
  for (const [file, code] of Object.entries(files)) writeFileSync(path.join(d, file), code);
  return d;
}

describe('a worker started with --otel', () => {
  it('traces a release as one trace: the workflow, and each step where it is scheduled and where it runs', async () => {
    const input = releaseInput();
    const { activities: plain } = releaseActivities(input);
    const { activities, seen } = recordingTraceIds(plain);
    const bundles = bundleDir('prebuilt', { 'workflow-bundle.js': untraced.code, 'workflow-bundle.traced.js': traced.code });
    const notes: string[] = [];
    const taskQueue = uniqueTaskQueue('trace');
    const worker = await createReleaseWorker({
      connection: env.nativeConnection, namespace: 'default', taskQueue, activities,
      workflowBundlePath: path.join(bundles, 'workflow-bundle.js'), tracing: telemetry.tracing!, note: (l) => notes.push(l),
    });
    const { workflowId, status } = await worker.runUntil(runRelease(env, taskQueue, input));
    expect(status.outcome).toBe('succeeded');
    expect(notes, 'the prebuilt traced bundle next to the untraced one is used as it is').toEqual([]);

    const root = await workflowSpan(workflowId);
    const traceId = root.spanContext().traceId;
    expect(traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(root.parentSpanId, 'the release starts its own trace').toBeUndefined();

    const spans = spansOf(workflowId);
    // The governance activities (each environment's lane, the gate's freeze checks) are in the same trace.
    const GOVERNANCE = ['RunActivity:laneEnqueue', 'RunActivity:checkFreeze'];
    const governance = spans.filter((s) => GOVERNANCE.includes(s.name));
    expect(governance.map((s) => s.name).sort()).toEqual(['RunActivity:checkFreeze', 'RunActivity:checkFreeze', 'RunActivity:laneEnqueue', 'RunActivity:laneEnqueue']);
    for (const s of governance) expect(s.spanContext().traceId, s.name).toBe(traceId);
    const run = spans.filter((s) => s.name.startsWith('RunActivity:') && !GOVERNANCE.includes(s.name));
    expect(run.map((s) => s.name).sort()).toEqual([
      'RunActivity:announcePlan', 'RunActivity:build', 'RunActivity:deploy', 'RunActivity:deploy', 'RunActivity:health',
      'RunActivity:preflight', 'RunActivity:resolvePlan', 'RunActivity:smoke', 'RunActivity:tag',
    ]);
    expect(run.map((s) => s.attributes['gantry.step']).sort()).toEqual(
      ['announce', 'build', 'deployProduction', 'deployStaging', 'health', 'preflight', 'resolve', 'smoke', 'tag']);
    for (const s of run) {
      expect(s.spanContext().traceId, s.name).toBe(traceId);
      expect(s.attributes, s.name).toMatchObject({ 'gantry.service': 'hello', 'gantry.version': input.version, 'gantry.attempt': 1 });
    }
    // Each step's run hangs under the span where the workflow scheduled it, and that one under the workflow's.
    const byId = new Map(spans.map((s) => [s.spanContext().spanId, s]));
    for (const s of run) {
      const scheduled = byId.get(s.parentSpanId ?? '');
      expect(scheduled?.name, s.name).toBe(s.name.replace('RunActivity:', 'StartActivity:'));
      expect(scheduled?.spanContext().traceId).toBe(traceId);
      expect(scheduled?.parentSpanId, scheduled?.name).toBe(root.spanContext().spanId);
    }

    // Inside each step, currentTraceId() is the release's trace id; outside any step there is none.
    expect(Object.keys(seen).sort()).toEqual(['announcePlan', 'build', 'checkFreeze', 'deploy', 'health', 'laneEnqueue', 'preflight', 'resolvePlan', 'smoke', 'tag']);
    for (const [name, ids] of Object.entries(seen)) expect(ids.every((id) => id === traceId), `${name}: ${ids.join(', ')}`).toBe(true);
    expect(currentTraceId()).toBeUndefined();
  });

  it('bundles the workflow sources with the tracing interceptors when the prebuilt bundle has none, and still traces', async () => {
    const input = releaseInput({ dryRun: true });
    const { activities } = releaseActivities(input);
    const bundles = bundleDir('untraced-only', { 'workflow-bundle.js': untraced.code });
    const notes: string[] = [];
    const taskQueue = uniqueTaskQueue('fallback');
    const worker = await createReleaseWorker({
      connection: env.nativeConnection, namespace: 'default', taskQueue, activities,
      workflowBundlePath: path.join(bundles, 'workflow-bundle.js'), tracing: telemetry.tracing!, note: (l) => notes.push(l),
    });
    expect(notes).toHaveLength(1);
    expect(notes[0]).toContain('bundling the workflow sources');
    const { workflowId, status } = await worker.runUntil(runRelease(env, taskQueue, input));
    expect(status.outcome).toBe('planned');
    const root = await workflowSpan(workflowId);
    const resolve = spansOf(workflowId).filter((s) => s.name === 'RunActivity:resolvePlan');
    expect(resolve).toHaveLength(1);
    expect(resolve[0]!.spanContext().traceId).toBe(root.spanContext().traceId);
  });

  it('tells a workflow bundle built with the tracing interceptors from one without, and names its traced variant', () => {
    expect(bundleHasTracing(traced.code)).toBe(true);
    expect(bundleHasTracing(untraced.code)).toBe(false);
    expect(tracedBundlePath('/opt/gantry/dist/workflow-bundle.js')).toBe('/opt/gantry/dist/workflow-bundle.traced.js');
  });
});
