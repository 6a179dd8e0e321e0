/**
 * Governance in the release workflow, on the time-skipping server: group rules at the gate, one rejection
 * vetoing, reasons required, an approval changed into a rejection, environments in the config's order, freezes
 * with break-glass, deny windows passing with workflow time, `decide skip`, hotfixes, and notices sent by the
 * real notify activity to the lab's webhook receiver.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { approveUpdate, rejectUpdate, statusQuery } from '../../src/shared/release';
import { ReleaseEndType } from '../../src/shared/errors';
import { fakeActivities } from '../helpers/fake-activities';
import { timeSkippingEnv } from '../helpers/servers';
import { stepById } from '../helpers/governance';
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

const AFTER_GATE = ['deploy:production', 'health', 'announce:released'];

/** A test input whose production gate has this rule (and these groups in the plan, as resolve would put them). */
function gatedInput(gate: NonNullable<ReturnType<typeof testInput>['config']['environments'][string]['gate']>, groups?: Record<string, string[]>) {
  const input = testInput();
  input.config.environments.production!.gate = gate;
  if (groups) input.groups = groups;
  return input;
}

describe('group rules at the gate', () => {
  it('needs one approval from each group: two from sre do not pass, erin\'s from product does; the rule and needs are in words', async () => {
    const fake = fakeActivities();
    const input = gatedInput({ required: 2, from: { sre: 1, product: 1 }, approvers: [], reasonRequired: false }, { sre: ['carol', 'dave'], product: ['erin'] });
    await withRelease(env, bundle, fake, input, async ({ handle }) => {
      const open = await waitForStatus(handle, gateOpen, 'the production gate to open');
      expect(open.gate.environment).toBe('production');
      expect(open.gate.rule).toBe('2 approvals, at least 1 from sre and 1 from product, not the requester; one rejection vetoes');
      expect(open.gate.approvers).toEqual(['carol', 'dave', 'erin']);
      expect(open.gate.needs).toBe('needs 1 more from sre (carol or dave) and 1 more from product (erin)');

      const first = await handle.executeUpdate(approveUpdate, { args: [{ approver: 'carol' }] });
      expect(first.gate).toBe('open');
      const second = await handle.executeUpdate(approveUpdate, { args: [{ approver: 'dave' }] });
      // Two approvals are the number required, but none is from product: the gate stays open.
      expect(second).toMatchObject({ gate: 'open', approvals: 2, required: 2 });
      expect(second.message).toContain('needs 1 more from product (erin)');
      const waiting = await handle.query(statusQuery);
      expect(waiting.gate.state).toBe('open');
      expect(waiting.gate.quorum).toBeUndefined();
      expect(waiting.gate.needs).toBe('needs 1 more from product (erin)');
      expect(fake.calls).toEqual(BEFORE_GATE);

      const why = await expectUpdateRefused(handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] }));
      expect(why).toBe('alice is not an approver for hello; approvers are carol, dave, erin');

      const third = await handle.executeUpdate(approveUpdate, { args: [{ approver: 'erin' }] });
      expect(third.gate).toBe('approved');
      const result = await handle.result();
      expect(result.outcome).toBe('succeeded');
      expect(result.gate.approvals.map((v) => v.approver)).toEqual(['carol', 'dave', 'erin']);
      expect(fake.calls).toEqual([...BEFORE_GATE, ...AFTER_GATE]);
    });
  });
});

describe('vetoes, reasons and changed votes', () => {
  it('ends the release rejected when one approver rejects after another approved; production is untouched', async () => {
    const fake = fakeActivities();
    await withRelease(env, bundle, fake, testInput({ required: 2 }), async ({ handle }) => {
      await waitForStatus(handle, gateOpen, 'the production gate to open');
      const approved = await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice', reason: 'looks good' }] });
      expect(approved).toMatchObject({ gate: 'open', approvals: 1, required: 2 });
      const rejected = await handle.executeUpdate(rejectUpdate, { args: [{ approver: 'bob', reason: 'the migration is not reversible' }] });
      expect(rejected.gate).toBe('rejected');
      expect(rejected.message).toBe('Rejected by bob: the release stops; nothing was deployed to production.');
      const failure = await expectFailure(handle);
      expect(failure.type).toBe(ReleaseEndType.Rejected);
      expect(failure.message).toBe('Rejected by bob: the migration is not reversible; nothing was deployed to production.');
      const status = await handle.query(statusQuery);
      expect(status.outcome).toBe('rejected');
      expect(status.gate.approvals).toHaveLength(1);
      expect(status.gate.approvals[0]).toMatchObject({ approver: 'alice' });
      expect(status.gate.approvals[0]!.changedToRejectAt).toBeUndefined();
      expect(status.gate.rejection).toMatchObject({ approver: 'bob', reason: 'the migration is not reversible' });
      for (const name of ['deployProduction', 'health', 'announce'] as const) expect(stepOf(status, name).state).toBe('skipped');
      expect(fake.calls).toEqual(BEFORE_GATE);
      expect(fake.recorded).toEqual(['rejected']);
    });
  });

  it('refuses a vote without a reason where the rule requires one, saying so; one with a reason counts', async () => {
    const fake = fakeActivities();
    const input = gatedInput({ required: 1, approvers: ['alice', 'bob'], from: {}, reasonRequired: true });
    await withRelease(env, bundle, fake, input, async ({ handle }) => {
      const open = await waitForStatus(handle, gateOpen, 'the production gate to open');
      expect(open.gate.rule).toBe('1 approval from alice or bob, each with a reason, not the requester; one rejection vetoes');
      const why = await expectUpdateRefused(handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] }));
      expect(why).toBe('hello\'s gate requires a reason with every vote; approve again with --reason "…"');
      const blank = await expectUpdateRefused(handle.executeUpdate(rejectUpdate, { args: [{ approver: 'bob', reason: '   ' }] }));
      expect(blank).toContain('requires a reason with every vote; reject again');
      expect((await handle.query(statusQuery)).gate.approvals).toEqual([]);
      const answer = await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice', reason: 'canary was clean' }] });
      expect(answer.gate).toBe('approved');
      const result = await handle.result();
      expect(result.outcome).toBe('succeeded');
      expect(result.gate.approvals).toEqual([expect.objectContaining({ approver: 'alice', reason: 'canary was clean' })]);
      expect(fake.calls).toEqual([...BEFORE_GATE, ...AFTER_GATE]);
    });
  });

  it('lets an approver change an approval into a rejection: the release is rejected and both votes stay on the record', async () => {
    const fake = fakeActivities();
    await withRelease(env, bundle, fake, testInput({ required: 2 }), async ({ handle }) => {
      await waitForStatus(handle, gateOpen, 'the production gate to open');
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'carol', reason: 'ok' }] });
      const changed = await handle.executeUpdate(rejectUpdate, { args: [{ approver: 'carol', reason: 'found a bug after all' }] });
      expect(changed.gate).toBe('rejected');
      const failure = await expectFailure(handle);
      expect(failure.type).toBe(ReleaseEndType.Rejected);
      expect(failure.message).toContain('Rejected by carol: found a bug after all');
      const status = await handle.query(statusQuery);
      expect(status.outcome).toBe('rejected');
      expect(status.gate.approvals).toHaveLength(1);
      const approval = status.gate.approvals[0]!;
      expect(approval).toMatchObject({ approver: 'carol', reason: 'ok' });
      expect(approval.changedToRejectAt).toBeDefined();
      expect(status.gate.rejection).toMatchObject({ approver: 'carol', reason: 'found a bug after all' });
      expect(approval.changedToRejectAt).toBe(status.gate.rejection!.at);
      expect(Date.parse(approval.changedToRejectAt!)).toBeGreaterThanOrEqual(Date.parse(approval.at));
      expect(fake.calls).toEqual(BEFORE_GATE);
    });
  });
});

describe('environments in the config\'s order', () => {
  it('deploys and smoke-checks staging, then qa, then passes production\'s gate; an approval before production is refused', async () => {
    const deploys = latch();
    const fake = fakeActivities({ holdUntil: { deploy: deploys.promise } });
    const input = testInput();
    const { staging, production } = input.config.environments;
    input.config.environments = { staging: staging!, qa: structuredClone(staging!), production: production! };
    await withRelease(env, bundle, fake, input, async ({ handle }) => {
      const early = await waitForStatus(handle, (s) => stepById(s, 'deployStaging').state === 'running', 'the staging deploy to run');
      expect(early.environments).toEqual([
        { name: 'staging', gated: false, state: 'active' },
        { name: 'qa', gated: false, state: 'pending' },
        { name: 'production', gated: true, state: 'pending' },
      ]);
      expect(stepById(early, 'deploy:qa')).toMatchObject({ title: 'Deploy to qa', state: 'pending', environment: 'qa' });
      expect(stepById(early, 'smoke:qa')).toMatchObject({ title: 'Smoke-check qa', state: 'pending', environment: 'qa' });
      expect(early.steps.map((s) => s.name)).toEqual([
        'resolve', 'preflight', 'tag', 'build', 'deployStaging', 'smoke', 'deploy:qa', 'smoke:qa', 'deployProduction', 'health', 'rollback', 'announce',
      ]);
      const why = await expectUpdateRefused(handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] }));
      expect(why).toContain('the approval gate is not open yet');
      deploys.open();

      const open = await waitForStatus(handle, gateOpen, 'the production gate to open');
      expect(open.gate.environment).toBe('production');
      expect(open.environments!.map((e) => e.state)).toEqual(['passed', 'passed', 'active']);
      expect(fake.calls).toEqual(['preflight', 'tag', 'build', 'deploy:staging', 'smoke', 'deploy:qa', 'smoke']);
      expect(stepById(open, 'deploy:qa').state).toBe('succeeded');
      expect(stepById(open, 'smoke:qa').state).toBe('succeeded');

      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] });
      const result = await handle.result();
      expect(result.outcome).toBe('succeeded');
      expect(fake.calls).toEqual(['preflight', 'tag', 'build', 'deploy:staging', 'smoke', 'deploy:qa', 'smoke', ...AFTER_GATE]);
      expect(result.environments!.map((e) => `${e.name}:${e.state}`)).toEqual(['staging:passed', 'qa:passed', 'production:active']);
    });
  });
});
