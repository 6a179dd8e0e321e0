/**
 * Replay: releases recorded with the shipped workflow must replay against the current workflow code, so a
 * deploy of a new worker never breaks a release that is already running (some wait 72 hours at the gate).
 *
 * The histories live in test/histories (Temporal's JSON history format, listed in test/histories/index.json):
 * happy, rejected, rolled-back, decide-retry, approval-timeout, cancelled-in-production. Re-record them with
 *
 *   npx tsx scripts/record-histories.ts [scenario …]
 *
 * (a dev server and fake activities, a minute or so) only when the recorded behaviour should change on
 * purpose, and commit the files. A change to src/workflows/release.ts that changes the commands it issues
 * (adds, removes or reorders an activity, timer or search-attribute upsert) must go behind
 * `patched('<change-id>')` from @temporalio/workflow, keeping the old path for old histories; when this test
 * fails after a workflow change, that is what it is telling you, not that the histories need re-recording.
 *
 * The second part proves the test has teeth: the same histories replayed against a deliberately reordered copy
 * of the runbook (test/replay/fixtures/release-build-before-tag.ts) fail with a DeterminismViolationError.
 */
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { bundleWorkflowCode, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { DeterminismViolationError } from '@temporalio/workflow';
import { workflowBundleOptions } from '../../src/worker';
import { quietRuntime } from '../workflows/harness';
import { historyFiles, loadHistory, readManifest } from './histories';

const REORDERED_WORKFLOW = path.join(__dirname, 'fixtures', 'release-build-before-tag.ts');
const REQUIRED_SCENARIOS = ['happy', 'rejected', 'rolled-back', 'decide-retry', 'signed-approved', 'signed-decide-cancel', 'signed-rejected', 'declared-rolled-back',
  'per-channel-deliveries'];

const noop = (): void => undefined;
const quietLogger = { log: noop, trace: noop, debug: noop, info: noop, warn: noop, error: noop };

quietRuntime();
const manifest = readManifest();
let current: WorkflowBundleWithSourceMap;
let reordered: WorkflowBundleWithSourceMap;

beforeAll(async () => {
  [current, reordered] = await Promise.all([
    bundleWorkflowCode({ ...workflowBundleOptions(), logger: quietLogger }),
    bundleWorkflowCode({ workflowsPath: REORDERED_WORKFLOW, logger: quietLogger }),
  ]);
});

describe('recorded histories', () => {
  it('cover the representative releases and every file is listed in the manifest', () => {
    expect(manifest.map((m) => m.scenario)).toEqual(expect.arrayContaining(REQUIRED_SCENARIOS));
    expect(historyFiles()).toEqual(manifest.map((m) => m.file).sort());
    for (const m of manifest) {
      const events = loadHistory(m.file).events ?? [];
      expect(events.length, m.file).toBeGreaterThan(10);
      expect(m.workflowId).toMatch(/^release-hello-/);
    }
  });
});

describe('the migration to worker-resolved plans', () => {
  it('has histories started by the earlier code (input = whole config) and by the current code (input = the request alone)', () => {
    const inputs = manifest.map((m) => {
      const started = loadHistory(m.file).events?.[0]?.workflowExecutionStartedEventAttributes;
      const payload = started?.input?.payloads?.[0];
      return JSON.parse(Buffer.from(payload!.data as Uint8Array).toString('utf8')) as Record<string, unknown>;
    });
    const legacy = inputs.filter((i) => 'config' in i);
    const current = inputs.filter((i) => !('config' in i));
    expect(legacy.length).toBeGreaterThanOrEqual(4);
    expect(current.length).toBeGreaterThanOrEqual(3);
    for (const i of current) expect(Object.keys(i).sort()).toEqual(expect.arrayContaining(['requestedBy', 'service', 'version']));
    expect(current.some((i) => typeof (i.signed as { signature?: string } | undefined)?.signature === 'string')).toBe(true);
  });
});

describe('the current workflow', () => {
  for (const m of manifest) {
    it(`replays the recorded ${m.scenario} release (${m.description})`, async () => {
      await expect(Worker.runReplayHistory({ workflowBundle: current }, loadHistory(m.file), m.workflowId)).resolves.toBeUndefined();
    });
  }
});

describe('the migration to per-channel deliveries (gantry-deliveries)', () => {
  /** The announce step's activities in a recorded history, in order. */
  const announceActivities = (file: string) => (loadHistory(file).events ?? [])
    .map((e) => e.activityTaskScheduledEventAttributes?.activityType?.name)
    .filter((n): n is string => typeof n === 'string' && n.startsWith('announce'));

  it('has histories announced by the single activity and one announced channel by channel', () => {
    const single = manifest.filter((m) => announceActivities(m.file).includes('announce'));
    expect(single.length).toBeGreaterThanOrEqual(5);
    for (const m of single) expect(announceActivities(m.file).every((n) => n === 'announce'), m.file).toBe(true);
    const perChannel = announceActivities('per-channel-deliveries.json');
    // The plan and four channels; the retry's plan, the audit log again (for the decision) and the webhook.
    expect(perChannel.filter((n) => n === 'announcePlan')).toHaveLength(2);
    expect(perChannel.filter((n) => n === 'announceChannel')).toHaveLength(6);
  });
});

describe('a non-deterministic change', () => {
  for (const m of manifest) {
    it(`is caught: building before tagging does not replay the ${m.scenario} release`, async () => {
      const err = await Worker.runReplayHistory({ workflowBundle: reordered }, loadHistory(m.file), m.workflowId).then(
        () => { throw new Error(`the reordered workflow replayed the ${m.scenario} history; the replay test cannot catch a reorder`); },
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(DeterminismViolationError);
      // The mismatch is the swapped step: the history has `tag` where the changed code schedules `build`.
      expect((err as Error).message).toContain("Activity type of scheduled event 'tag' does not match activity type of activity command 'build'");
    });
  }
});
