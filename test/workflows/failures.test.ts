/**
 * When steps fail: a failed smoke check stops before the gate, failed health rolls production back, and a step
 * that used up its retries waits for an operator's `decide retry|abort` (with a timeout).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { approveUpdate, decideSignal, decideUpdate, statusQuery, type ReleaseStatus } from '../../src/shared/release';
import { ReleaseEndType } from '../../src/shared/errors';
import { fakeActivities } from '../helpers/fake-activities';
import { timeSkippingEnv } from '../helpers/servers';
import {
  BEFORE_GATE, bundleReleaseWorkflow, expectFailure, expectUpdateRefused, gateOpen, stepOf, stepStates, testInput, waitForStatus, withRelease,
} from './harness';

let env: TestWorkflowEnvironment;
let bundle: WorkflowBundleWithSourceMap;

beforeAll(async () => {
  [env, bundle] = await Promise.all([timeSkippingEnv(), bundleReleaseWorkflow()]);
});

afterAll(async () => {
  await env?.teardown();
});

const HOUR = 3600 * 1000;
const pending = (s: ReleaseStatus): boolean => s.pendingDecision !== undefined;

describe('a failed smoke check', () => {
  it('fails the release before the gate: the gate never opens and production is not deployed', async () => {
    const fake = fakeActivities({ fail: { smoke: 'fatal' } });
    await withRelease(env, bundle, fake, testInput(), async ({ handle }) => {
      const failure = await expectFailure(handle);
      expect(failure.type).toBe(ReleaseEndType.Failed);
      expect(failure.message).toContain('Smoke-check staging failed: smoke failed for good (fake)');
      expect(failure.message).toContain('Nothing was deployed to production');
      const status = await handle.query(statusQuery);
      expect(status.outcome).toBe('failed');
      expect(stepOf(status, 'smoke')).toMatchObject({ state: 'failed', attempts: 1, error: 'smoke failed for good (fake)' });
      expect(status.gate.openedAt).toBeUndefined();
      expect(status.gate.state).toBe('closed');
      expect(status.pendingDecision).toBeUndefined();
      for (const name of ['deployProduction', 'health', 'rollback', 'announce'] as const) expect(stepOf(status, name).state).toBe('skipped');
      expect(fake.calls).toEqual(BEFORE_GATE);
    });
  });
});

describe('a failed health check', () => {
  it('rolls production back, announces rolled_back and fails the release as GantryReleaseRolledBack', async () => {
    const fake = fakeActivities({ fail: { health: 'fatal' } });
    await withRelease(env, bundle, fake, testInput(), async ({ handle }) => {
      await waitForStatus(handle, gateOpen, 'the approval gate to open');
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] });
      const failure = await expectFailure(handle);
      expect(failure.type).toBe(ReleaseEndType.RolledBack);
      expect(failure.message).toContain('Production health failed (health failed for good (fake)); rolled back to the previous image');
      const status = await handle.query(statusQuery);
      expect(status.outcome).toBe('rolled_back');
      expect(stepStates(status)).toMatchObject({ deployProduction: 'succeeded', health: 'failed', rollback: 'succeeded', announce: 'succeeded' });
      expect(stepOf(status, 'rollback').outputs).toMatchObject({ restored: 'ssh:hello → old@sha256:0', healthy: 'true' });
      expect(fake.calls).toEqual([...BEFORE_GATE, 'deploy:production', 'health', 'rollback', 'announce:rolled_back']);
    });
  });
});

describe('a step that used up its retries', () => {
  it('waits for a decision shown in status, and `decide retry` by update reruns the step to success', async () => {
    let broken = true;
    const fake = fakeActivities({ failWhile: { tag: () => broken } });
    await withRelease(env, bundle, fake, testInput(), async ({ handle, input }) => {
      const s = await waitForStatus(handle, pending, 'a pending decision');
      expect(s.stage).toBe('awaiting-decision');
      expect(s.pendingDecision).toMatchObject({ step: 'tag' });
      expect(s.pendingDecision!.error).toMatch(/^tag unavailable \(fake\), attempt 5$/);
      expect(Date.parse(s.pendingDecision!.deadline) - Date.parse(s.pendingDecision!.openedAt)).toBe(24 * HOUR);
      expect(s.message).toContain(`gantry decide retry ${input.service} ${input.version}`);
      expect(stepOf(s, 'tag')).toMatchObject({ state: 'failed', attempts: 5, runs: 1 });
      expect(fake.calls).toEqual(['preflight', 'tag', 'tag', 'tag', 'tag', 'tag']);

      broken = false; // the operator fixed the cause
      const answer = await handle.executeUpdate(decideUpdate, { args: [{ decision: 'retry', operator: 'dave', reason: 'remote is back' }] });
      expect(answer).toBe('Retrying Tag the release commit.');
      await waitForStatus(handle, gateOpen, 'the approval gate to open');
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] });
      const result = await handle.result();
      expect(result.outcome).toBe('succeeded');
      expect(stepOf(result, 'tag')).toMatchObject({ state: 'succeeded', attempts: 6, runs: 2 });
      expect(result.pendingDecision).toBeUndefined();
      expect(result.decisions).toEqual([expect.objectContaining({ step: 'tag', decision: 'retry', operator: 'dave', reason: 'remote is back' })]);
      expect(fake.calls.filter((c) => c === 'tag')).toHaveLength(6);
    });
  });

  it('ends the release aborted on `decide abort`, running nothing after the failed step', async () => {
    const fake = fakeActivities({ fail: { tag: 'retryable' } });
    await withRelease(env, bundle, fake, testInput(), async ({ handle }) => {
      await waitForStatus(handle, pending, 'a pending decision');
      const answer = await handle.executeUpdate(decideUpdate, { args: [{ decision: 'abort', operator: 'dave' }] });
      expect(answer).toBe('Aborting the release at Tag the release commit.');
      const failure = await expectFailure(handle);
      expect(failure.type).toBe(ReleaseEndType.Aborted);
      expect(failure.message).toContain('The release was aborted by decision');
      const status = await handle.query(statusQuery);
      expect(status.outcome).toBe('aborted');
      expect(status.decisions).toEqual([expect.objectContaining({ step: 'tag', decision: 'abort', operator: 'dave' })]);
      expect(stepOf(status, 'build').state).toBe('skipped');
      expect(fake.calls).toEqual(['preflight', 'tag', 'tag', 'tag', 'tag', 'tag']);
    });
  });

  it('takes the decision as a signal too', async () => {
    let broken = true;
    const fake = fakeActivities({ failWhile: { preflight: () => broken } });
    await withRelease(env, bundle, fake, testInput(), async ({ handle }) => {
      const s = await waitForStatus(handle, pending, 'a pending decision');
      expect(s.pendingDecision!.step).toBe('preflight');
      broken = false;
      await handle.signal(decideSignal, { decision: 'retry', operator: 'erin' });
      await waitForStatus(handle, gateOpen, 'the approval gate to open');
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'bob' }] });
      const result = await handle.result();
      expect(result.outcome).toBe('succeeded');
      expect(result.decisions).toEqual([expect.objectContaining({ step: 'preflight', decision: 'retry', operator: 'erin' })]);
      expect(stepOf(result, 'preflight')).toMatchObject({ attempts: 4, runs: 2 });
    });
  });

  it('refuses a decision when none is pending, by update with the reason and by signal as a recorded refusal', async () => {
    const fake = fakeActivities();
    await withRelease(env, bundle, fake, testInput(), async ({ handle }) => {
      await waitForStatus(handle, gateOpen, 'the approval gate to open');
      const why = await expectUpdateRefused(handle.executeUpdate(decideUpdate, { args: [{ decision: 'retry', operator: 'dave' }] }));
      expect(why).toBe('no decision is pending: decide applies only after a step used up its retries');
      await handle.signal(decideSignal, { decision: 'abort', operator: 'dave' });
      await handle.signal('decide', { decision: 'maybe', operator: 'dave' });
      const s = await waitForStatus(handle, (x) => x.gate.refused.length === 2, 'the refused decisions to be recorded');
      expect(s.gate.refused[0]).toMatchObject({ name: 'decide', via: 'signal', why: 'no decision is pending: decide applies only after a step used up its retries' });
      expect(s.gate.refused[1]!.name).toBe('decide');
      expect(s.gate.refused[1]!.why).toMatch(/^malformed decide: "decision" must be "retry", "abort" or "skip" \(got "maybe"\)/);
      expect(s.decisions).toEqual([]);
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] });
      expect((await handle.result()).outcome).toBe('succeeded');
    });
  });

  it('aborts the release when no decision arrives within the decision timeout', async () => {
    const fake = fakeActivities({ fail: { build: 'retryable' } });
    await withRelease(env, bundle, fake, testInput(), async ({ handle, input }) => {
      expect(input.config.timeouts.decision).toBe('24h');
      const failure = await expectFailure(handle); // the server skips the 24 hours
      expect(failure.type).toBe(ReleaseEndType.Aborted);
      const status = await handle.query(statusQuery);
      expect(status.outcome).toBe('aborted');
      expect(status.pendingDecision).toBeUndefined();
      expect(status.decisions).toEqual([
        expect.objectContaining({ step: 'build', decision: 'abort', operator: 'gantry', reason: 'no decision within 24h' }),
      ]);
      expect(stepOf(status, 'build')).toMatchObject({ state: 'failed', attempts: 2 });
      expect(fake.calls).toEqual(['preflight', 'tag', 'build', 'build']);
    });
  });
});

describe('after production changed', () => {
  it('waits for a decision when the announcement fails for good, and `decide abort` still ends the release succeeded', async () => {
    const fake = fakeActivities({ fail: { announce: 'fatal' } });
    await withRelease(env, bundle, fake, testInput(), async ({ handle }) => {
      await waitForStatus(handle, gateOpen, 'the approval gate to open');
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] });
      const s = await waitForStatus(handle, pending, 'a pending decision on the announcement');
      expect(s.pendingDecision).toMatchObject({ step: 'announce', error: 'announce failed for good (fake)' });
      expect(s.message).toMatch(/^Announce the release failed: announce failed for good \(fake\)\. Fix the cause/);
      expect(stepStates(s)).toMatchObject({ deployProduction: 'succeeded', health: 'succeeded', announce: 'failed' });
      await handle.executeUpdate(decideUpdate, { args: [{ decision: 'abort', operator: 'carol' }] });
      const result = await handle.result();
      expect(result.outcome).toBe('succeeded');
      expect(result.message).toContain('is live in production');
      expect(result.message).toContain('The announcement was abandoned by decision (announce failed for good (fake)); announce by hand.');
      expect(result.decisions).toEqual([expect.objectContaining({ step: 'announce', decision: 'abort', operator: 'carol' })]);
    });
  });

  it('retries a failed announcement on `decide retry` once its cause is fixed', async () => {
    let broken = true;
    const fake = fakeActivities({ failWhile: { announce: () => broken } });
    const input = testInput();
    input.steps.announce.retry.maximumAttempts = 1;
    await withRelease(env, bundle, fake, input, async ({ handle }) => {
      await waitForStatus(handle, gateOpen, 'the approval gate to open');
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] });
      await waitForStatus(handle, pending, 'a pending decision on the announcement');
      broken = false;
      await handle.executeUpdate(decideUpdate, { args: [{ decision: 'retry', operator: 'carol' }] });
      const result = await handle.result();
      expect(result.outcome).toBe('succeeded');
      expect(stepOf(result, 'announce')).toMatchObject({ state: 'succeeded', runs: 2 });
      expect(fake.calls.filter((c) => c.startsWith('announce'))).toEqual(['announce:released', 'announce:released']);
    });
  });

  it('waits for a decision when the rollback fails for good instead of ending with production broken', async () => {
    const fake = fakeActivities({ fail: { health: 'fatal', rollback: 'fatal' } });
    await withRelease(env, bundle, fake, testInput(), async ({ handle }) => {
      await waitForStatus(handle, gateOpen, 'the approval gate to open');
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] });
      const s = await waitForStatus(handle, pending, 'a pending decision on the rollback');
      expect(s.pendingDecision).toMatchObject({ step: 'rollback' });
      await handle.signal(decideSignal, { decision: 'abort', operator: 'carol', reason: 'restoring by hand' });
      const failure = await expectFailure(handle);
      expect(failure.type).toBe(ReleaseEndType.Aborted);
      expect(failure.message).toContain('Roll production back failed');
      expect(failure.message).toContain('Production may have changed');
    });
  });
});
