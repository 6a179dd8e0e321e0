/**
 * The approval gate: rejections, the timeout, refused and malformed votes (signals never throw, updates answer
 * with the reason), votes too early, twice, or too late.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { approveSignal, approveUpdate, rejectSignal, rejectUpdate, statusQuery } from '../../src/shared/release';
import { ReleaseEndType } from '../../src/shared/errors';
import { fakeActivities } from '../helpers/fake-activities';
import { timeSkippingEnv } from '../helpers/servers';
import {
  BEFORE_GATE, bundleReleaseWorkflow, expectFailure, expectUpdateRefused, gateOpen, latch, stepOf, testInput, waitForStatus, withRelease,
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

describe('rejecting a release', () => {
  it('fails the release as GantryReleaseRejected when an approver sends the reject signal; production is untouched', async () => {
    const fake = fakeActivities();
    await withRelease(env, bundle, fake, testInput(), async ({ handle }) => {
      await waitForStatus(handle, gateOpen, 'the approval gate to open');
      await handle.signal(rejectSignal, { approver: 'bob', reason: 'changelog is wrong' });
      const failure = await expectFailure(handle);
      expect(failure.type).toBe(ReleaseEndType.Rejected);
      expect(failure.message).toContain('Rejected by bob: changelog is wrong; nothing was deployed to production');
      const status = await handle.query(statusQuery);
      expect(status.outcome).toBe('rejected');
      expect(status.gate.state).toBe('rejected');
      expect(status.gate.rejection).toMatchObject({ approver: 'bob', reason: 'changelog is wrong', via: 'signal' });
      expect(stepOf(status, 'deployProduction').state).toBe('skipped');
      expect(fake.calls).toEqual(BEFORE_GATE);
    });
  });

  it('answers a reject update and fails the release as GantryReleaseRejected without deploying', async () => {
    const fake = fakeActivities();
    await withRelease(env, bundle, fake, testInput(), async ({ handle }) => {
      await waitForStatus(handle, gateOpen, 'the approval gate to open');
      const answer = await handle.executeUpdate(rejectUpdate, { args: [{ approver: 'carol', reason: 'not on a Friday' }] });
      expect(answer).toMatchObject({ gate: 'rejected' });
      expect(answer.message).toContain('Rejected by carol');
      const failure = await expectFailure(handle);
      expect(failure.type).toBe(ReleaseEndType.Rejected);
      const status = await handle.query(statusQuery);
      expect(status.outcome).toBe('rejected');
      expect(status.gate.rejection).toMatchObject({ approver: 'carol', via: 'update' });
      expect(fake.calls).toEqual(BEFORE_GATE);
    });
  });
});

describe('the approval timeout', () => {
  it('aborts the release after the default 72h without a decision, and nothing past the gate runs', async () => {
    const fake = fakeActivities();
    await withRelease(env, bundle, fake, testInput(), async ({ handle, input }) => {
      expect(input.config.timeouts.approval).toBe('72h');
      // Awaiting the result lets the test server skip the 72 hours.
      const failure = await expectFailure(handle);
      expect(failure.type).toBe(ReleaseEndType.Aborted);
      expect(failure.message).toContain('No decision at the approval gate within 72h; nothing was deployed to production');
      const status = await handle.query(statusQuery);
      expect(status.outcome).toBe('aborted');
      expect(status.gate.state).toBe('timed_out');
      expect(Date.parse(status.gate.closedAt!) - Date.parse(status.gate.openedAt!)).toBeGreaterThanOrEqual(72 * HOUR);
      for (const name of ['deployProduction', 'health', 'rollback', 'announce'] as const) expect(stepOf(status, name).state).toBe('skipped');
      expect(fake.calls).toEqual(BEFORE_GATE);
    });
  });

  it('uses the approval timeout from config', async () => {
    const fake = fakeActivities();
    await withRelease(env, bundle, fake, testInput({ approval: '2h' }), async ({ handle }) => {
      const failure = await expectFailure(handle);
      expect(failure.type).toBe(ReleaseEndType.Aborted);
      const status = await handle.query(statusQuery);
      const waited = Date.parse(status.gate.closedAt!) - Date.parse(status.gate.openedAt!);
      expect(waited).toBeGreaterThanOrEqual(2 * HOUR);
      expect(waited).toBeLessThan(3 * HOUR);
    });
  });
});

describe('refused votes', () => {
  it('refuses an approve update from someone not on the allow-list, naming the approvers, and keeps waiting', async () => {
    const fake = fakeActivities();
    await withRelease(env, bundle, fake, testInput(), async ({ handle }) => {
      await waitForStatus(handle, gateOpen, 'the approval gate to open');
      const why = await expectUpdateRefused(handle.executeUpdate(approveUpdate, { args: [{ approver: 'mallory' }] }));
      expect(why).toBe('mallory is not an approver for hello; approvers are alice, bob, carol');
      const status = await handle.query(statusQuery);
      expect(status.gate.state).toBe('open');
      expect(status.gate.approvals).toEqual([]);
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] });
      expect((await handle.result()).outcome).toBe('succeeded');
    });
  });

  it('records an approve signal from someone not on the allow-list as refused with why, and can still be approved', async () => {
    const fake = fakeActivities();
    await withRelease(env, bundle, fake, testInput(), async ({ handle }) => {
      await waitForStatus(handle, gateOpen, 'the approval gate to open');
      await handle.signal(approveSignal, { approver: 'mallory', reason: 'trust me' });
      const refused = await waitForStatus(handle, (s) => s.gate.refused.length === 1, 'the refusal to be recorded');
      expect(refused.gate.refused[0]).toMatchObject({
        name: 'approve', via: 'signal', approver: 'mallory', why: 'mallory is not an approver for hello; approvers are alice, bob, carol',
      });
      expect(refused.gate.state).toBe('open');
      expect(fake.calls).toEqual(BEFORE_GATE);
      await handle.signal(approveSignal, { approver: 'alice' });
      const result = await handle.result();
      expect(result.outcome).toBe('succeeded');
      expect(result.gate.approvals.map((v) => v.approver)).toEqual(['alice']);
    });
  });

  it('records each malformed approve signal as refused, never wedges, and still completes after a valid approval', async () => {
    const fake = fakeActivities();
    await withRelease(env, bundle, fake, testInput(), async ({ handle }) => {
      await waitForStatus(handle, gateOpen, 'the approval gate to open');
      // What the Web UI can send: partial objects, wrong types, an empty input box (undefined), a JSON list.
      const bad: unknown[] = [{ reason: 'lgtm' }, { approver: 42 }, { approver: 'alice', reason: 7 }, undefined, ['alice']];
      for (const payload of bad) {
        await (payload === undefined ? handle.signal('approve') : handle.signal('approve', payload));
      }
      await handle.signal('reject', { approver: '   ' });
      const s = await waitForStatus(handle, (x) => x.gate.refused.length === 6, 'six refusals to be recorded');
      const sendHint = 'send {"approver": "<name>", "reason": "optional"}';
      expect(s.gate.refused.map((r) => [r.name, r.via])).toEqual([...bad.map(() => ['approve', 'signal']), ['reject', 'signal']]);
      const whys = s.gate.refused.map((r) => r.why);
      expect(whys[0]).toBe(`malformed approve: "approver" is missing or not text (got nothing); ${sendHint}`);
      expect(whys[1]).toBe(`malformed approve: "approver" is missing or not text (got a number); ${sendHint}`);
      expect(whys[2]).toMatch(/^malformed approve: "reason" must be text, got a number/);
      expect(whys[3]).toBe(`malformed approve: payload is nothing; ${sendHint}`);
      expect(whys[4]).toBe(`malformed approve: payload is a list; ${sendHint}`);
      expect(whys[5]).toBe(`malformed reject: "approver" is missing or not text (got blank text); ${sendHint}`);
      for (const why of whys) expect(why).toContain(sendHint);
      expect(s.gate.state).toBe('open');
      expect(s.gate.approvals).toEqual([]);
      expect(s.gate.rejection).toBeUndefined();
      await handle.signal(approveSignal, { approver: 'carol' });
      expect((await handle.result()).outcome).toBe('succeeded');
      expect(fake.calls).toContain('deploy:production');
    });
  });

  it('refuses a malformed approve update with the problem and the expected payload', async () => {
    const fake = fakeActivities();
    await withRelease(env, bundle, fake, testInput(), async ({ handle }) => {
      await waitForStatus(handle, gateOpen, 'the approval gate to open');
      const why = await expectUpdateRefused(handle.executeUpdate('approve', { args: [{ approver: 42 }] }));
      expect(why).toBe('malformed approve: "approver" is missing or not text (got a number); send {"approver": "<name>", "reason": "optional"}');
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'bob' }] });
      expect((await handle.result()).outcome).toBe('succeeded');
    });
  });

  it('records a signal with an unknown name (a typo) as refused, naming the signals that exist', async () => {
    const fake = fakeActivities();
    await withRelease(env, bundle, fake, testInput(), async ({ handle }) => {
      await waitForStatus(handle, gateOpen, 'the approval gate to open');
      await handle.signal('aprove', { approver: 'alice' });
      const s = await waitForStatus(handle, (x) => x.gate.refused.length === 1, 'the typo to be recorded');
      expect(s.gate.refused[0]).toMatchObject({
        name: 'aprove', via: 'signal', approver: 'alice', why: 'there is no signal named "aprove"; the signals are approve, reject, decide, cancel',
      });
      expect(s.gate.state).toBe('open');
      await handle.signal(approveSignal, { approver: 'alice' });
      expect((await handle.result()).outcome).toBe('succeeded');
    });
  });

  it('refuses approval before the gate opens ("not open yet"), by update and by signal', async () => {
    const build = latch(); // the build runs until the early votes are in
    const fake = fakeActivities({ holdUntil: { build: build.promise } });
    await withRelease(env, bundle, fake, testInput(), async ({ handle }) => {
      await waitForStatus(handle, (s) => s.stage === 'build', 'the build to start');
      const why = await expectUpdateRefused(handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] }));
      expect(why).toBe('the approval gate is not open yet (stage build); approve once staging passed its smoke checks');
      await handle.signal(approveSignal, { approver: 'bob' });
      const s = await waitForStatus(handle, (x) => x.gate.refused.length === 1, 'the early signal to be recorded');
      expect(s.gate.refused[0]).toMatchObject({ name: 'approve', via: 'signal', approver: 'bob' });
      expect(s.gate.refused[0]!.why).toContain('not open yet (stage build)');
      expect(s.gate.state).toBe('not_open');
      build.open();

      // The early votes did not count: the gate opens and waits for a real one.
      const open = await waitForStatus(handle, gateOpen, 'the approval gate to open');
      expect(open.gate.approvals).toEqual([]);
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] });
      expect((await handle.result()).outcome).toBe('succeeded');
    });
  });

  it('with two approvals required, refuses the same approver twice and approves on a second distinct approver', async () => {
    const fake = fakeActivities();
    await withRelease(env, bundle, fake, testInput({ required: 2 }), async ({ handle }) => {
      const open = await waitForStatus(handle, gateOpen, 'the approval gate to open');
      expect(open.gate.required).toBe(2);
      const first = await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] });
      expect(first).toMatchObject({ gate: 'open', approvals: 1, required: 2 });
      expect(first.message).toBe('Approval by alice recorded: 1 of 2; waiting for more (the gate needs 1 more approval from bob or carol).');

      const why = await expectUpdateRefused(handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] }));
      expect(why).toBe('alice already approved; each approver votes once');
      await handle.signal(approveSignal, { approver: 'alice', reason: 'really sure' });
      const s = await waitForStatus(handle, (x) => x.gate.refused.length === 1, 'the duplicate signal to be recorded');
      expect(s.gate.refused[0]).toMatchObject({ name: 'approve', approver: 'alice', why: 'alice already approved; each approver votes once' });
      expect(s.gate.state).toBe('open');
      expect(fake.calls).not.toContain('deploy:production');

      const second = await handle.executeUpdate(approveUpdate, { args: [{ approver: 'bob' }] });
      expect(second).toMatchObject({ gate: 'approved', approvals: 2, required: 2 });
      const result = await handle.result();
      expect(result.outcome).toBe('succeeded');
      expect(result.gate.approvals.map((v) => v.approver)).toEqual(['alice', 'bob']);
    });
  });

  it('refuses votes after the gate closed, by update and by signal', async () => {
    // Production deploy runs until the late votes are in, so the release is still running when they arrive.
    const deploy = latch();
    const fake = fakeActivities({ holdUntil: { 'deploy:production': deploy.promise } });
    await withRelease(env, bundle, fake, testInput(), async ({ handle }) => {
      await waitForStatus(handle, gateOpen, 'the approval gate to open');
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] });
      await waitForStatus(handle, (s) => s.stage === 'deploy-production', 'the production deploy to start');
      const why = await expectUpdateRefused(handle.executeUpdate(approveUpdate, { args: [{ approver: 'bob' }] }));
      expect(why).toBe('the approval gate is closed (approved)');
      const whyReject = await expectUpdateRefused(handle.executeUpdate(rejectUpdate, { args: [{ approver: 'carol', reason: 'wait' }] }));
      expect(whyReject).toBe('the approval gate is closed (approved)');
      await handle.signal(rejectSignal, { approver: 'carol', reason: 'too late?' });
      const s = await waitForStatus(handle, (x) => x.gate.refused.length === 1, 'the late signal to be recorded');
      expect(s.gate.refused[0]).toMatchObject({ name: 'reject', approver: 'carol', why: 'the approval gate is closed (approved)' });
      deploy.open();
      const result = await handle.result();
      expect(result.outcome).toBe('succeeded');
      expect(result.gate.rejection).toBeUndefined();
      expect(result.gate.approvals.map((v) => v.approver)).toEqual(['alice']);
    });
  });
});
