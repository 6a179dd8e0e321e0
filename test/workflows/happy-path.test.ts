/**
 * The release runs end to end on the time-skipping test server: every step, the gate, the outputs recorded in
 * status; plus the dry run and the handler metadata the Web UI reads.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { approveSignal, approveUpdate, statusQuery } from '../../src/shared/release';
import { fakeActivities } from '../helpers/fake-activities';
import { timeSkippingEnv } from '../helpers/servers';
import { BEFORE_GATE, bundleReleaseWorkflow, gateOpen, stepOf, stepStates, testInput, waitForStatus, withRelease } from './harness';

let env: TestWorkflowEnvironment;
let bundle: WorkflowBundleWithSourceMap;

beforeAll(async () => {
  [env, bundle] = await Promise.all([timeSkippingEnv(), bundleReleaseWorkflow()]);
});

afterAll(async () => {
  await env?.teardown();
});

describe('a release that goes well', () => {
  it('runs every step in order, records outputs, attempts and the approval, and ends succeeded', async () => {
    let tagAttempts = 0;
    // The tag step fails its first attempt (a flaky push) and succeeds on the retry: attempts must say 2.
    const fake = fakeActivities({ failWhile: { tag: () => ++tagAttempts === 1 } });
    await withRelease(env, bundle, fake, testInput(), async ({ handle, input }) => {
      const atGate = await waitForStatus(handle, gateOpen, 'the approval gate to open');
      expect(atGate.stage).toBe('awaiting-approval');
      expect(atGate.gate.deadline).toBeDefined();
      expect(Date.parse(atGate.gate.deadline!) - Date.parse(atGate.gate.openedAt!)).toBe(72 * 3600 * 1000);
      expect(atGate.message).toContain(`gantry approve ${input.service} ${input.version}`);
      expect(fake.calls).toEqual(BEFORE_GATE.slice(0, 1).concat(['tag', 'tag'], BEFORE_GATE.slice(2)));

      const answer = await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice', reason: 'staging looks good' }] });
      expect(answer).toMatchObject({ gate: 'approved', approvals: 1, required: 1 });
      expect(answer.message).toMatch(/production deploy starts now/);

      const result = await handle.result();
      expect(result.outcome).toBe('succeeded');
      expect(result.stage).toBe('done');
      expect(result.message).toContain(`is live in production`);
      expect(fake.calls).toEqual(['preflight', 'tag', 'tag', 'build', 'deploy:staging', 'smoke', 'deploy:production', 'health', 'announce:released']);

      const status = await handle.query(statusQuery);
      expect(stepStates(status)).toEqual({
        resolve: 'succeeded', preflight: 'succeeded', tag: 'succeeded', build: 'succeeded', deployStaging: 'succeeded', smoke: 'succeeded',
        deployProduction: 'succeeded', health: 'succeeded', rollback: 'skipped', announce: 'succeeded',
      });
      expect(stepOf(status, 'tag').attempts).toBe(2);
      for (const name of ['preflight', 'build', 'deployStaging', 'smoke', 'deployProduction', 'health', 'announce'] as const) {
        expect(stepOf(status, name), name).toMatchObject({ attempts: 1, runs: 1 });
        expect(Date.parse(stepOf(status, name).endedAt!)).toBeGreaterThanOrEqual(Date.parse(stepOf(status, name).startedAt!));
      }
      expect(stepOf(status, 'preflight').outputs.commit).toBe('a'.repeat(40));
      expect(stepOf(status, 'tag').outputs).toMatchObject({ tag: `v${input.version}`, commit: 'a'.repeat(40) });
      const digest = `sha256:${'b'.repeat(64)}`;
      expect(stepOf(status, 'build').outputs).toMatchObject({
        digest, imageRef: `127.0.0.1:5000/hello@${digest}`, image: `127.0.0.1:5000/hello:v${input.version}`,
      });
      expect(stepOf(status, 'deployProduction').outputs.targets).toBe('ssh:hello');

      expect(status.gate.state).toBe('approved');
      expect(status.gate.approvals).toHaveLength(1);
      expect(status.gate.approvals[0]).toMatchObject({ approver: 'alice', reason: 'staging looks good', via: 'update' });
      expect(Date.parse(status.gate.approvals[0]!.at)).toBeGreaterThanOrEqual(Date.parse(status.gate.openedAt!));
      expect(status.gate.refused).toEqual([]);
      expect(status.pendingDecision).toBeUndefined();
      expect(status.cancellation.requested).toBe(false);
      expect(status.endedAt).toBeDefined();
    });
  });

  it('accepts the approval as a signal, as the Web UI and `temporal workflow signal` send it', async () => {
    const fake = fakeActivities();
    await withRelease(env, bundle, fake, testInput(), async ({ handle }) => {
      await waitForStatus(handle, gateOpen, 'the approval gate to open');
      await handle.signal(approveSignal, { approver: 'bob' });
      const result = await handle.result();
      expect(result.outcome).toBe('succeeded');
      expect(result.gate.approvals).toEqual([expect.objectContaining({ approver: 'bob', via: 'signal' })]);
      expect(fake.calls).toContain('deploy:production');
    });
  });
});

describe('a dry run', () => {
  it('returns the plan resolved on the worker and runs no step', async () => {
    const fake = fakeActivities();
    await withRelease(env, bundle, fake, testInput({ dryRun: true }), async ({ handle, input }) => {
      const result = await handle.result();
      expect(result.outcome).toBe('planned');
      expect(result.plan).toMatchObject({ service: 'hello', version: input.version, tag: `v${input.version}` });
      expect(result.plan!.steps.map((s) => s.step)).toEqual([
        'resolve', 'preflight', 'tag', 'build', 'deployStaging', 'smoke', 'deployProduction', 'health', 'rollback', 'announce',
      ]);
      expect(stepOf(result, 'resolve').state).toBe('succeeded');
      expect(result.steps.filter((s) => s.name !== 'resolve').every((s) => s.state === 'skipped')).toBe(true);
      expect(fake.calls).toEqual([]);
    });
  });
});

describe('handler metadata', () => {
  it('lists the approve, reject, decide and cancel signals with descriptions for the Web UI', async () => {
    const fake = fakeActivities();
    await withRelease(env, bundle, fake, testInput(), async ({ handle }) => {
      await waitForStatus(handle, gateOpen, 'the approval gate to open');
      const meta = await handle.query<{ definition: WorkflowDefinition }>('__temporal_workflow_metadata');
      const signals = Object.fromEntries(meta.definition.signalDefinitions.map((d) => [d.name, d.description]));
      const updates = Object.fromEntries(meta.definition.updateDefinitions.map((d) => [d.name, d.description]));
      const queries = Object.fromEntries(meta.definition.queryDefinitions.map((d) => [d.name, d.description]));
      expect(Object.keys(signals).sort()).toEqual(['approve', 'cancel', 'decide', 'gantry-lane-changed', 'reject']);
      expect(signals['gantry-lane-changed']).toMatch(/^Internal, sent by the lane workflow.*grants nothing/);
      expect(signals.approve).toMatch(/Approve at the open gate.*"approver"/);
      expect(signals.reject).toMatch(/Reject the release/);
      expect(signals.decide).toMatch(/"decision": "retry" \| "abort" \| "skip"/);
      expect(Object.keys(updates).sort()).toEqual(['approve', 'cancel', 'decide', 'reject']);
      expect(signals.cancel).toMatch(/Cancel the release/);
      expect(updates.approve).toBe(signals.approve);
      expect(queries.status).toMatch(/stage, every step/);
      await handle.signal(approveSignal, { approver: 'carol' });
      expect((await handle.result()).outcome).toBe('succeeded');
    });
  });
});

interface WorkflowDefinition {
  type: string;
  signalDefinitions: { name: string; description?: string }[];
  updateDefinitions: { name: string; description?: string }[];
  queryDefinitions: { name: string; description?: string }[];
}
