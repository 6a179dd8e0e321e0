/**
 * Governance in the release workflow, on the time-skipping server: group rules at the gate, one rejection
 * vetoing, reasons required, an approval changed into a rejection, environments in the config's order, freezes
 * with break-glass, deny windows passing with workflow time, `decide skip`, hotfixes, and notices sent by the
 * real notify activity to the lab's webhook receiver.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as pause } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { WorkflowBundleWithSourceMap } from '@temporalio/worker';
import type { PrincipalKey } from '../../src/shared/gate';
import { approveUpdate, decideUpdate, rejectUpdate, releaseWorkflowId, SA_ENVIRONMENT, SA_OUTCOME, SA_STAGE, statusQuery } from '../../src/shared/release';
import type { Statement } from '../../src/shared/statement';
import { ReleaseEndType } from '../../src/shared/errors';
import type { AnnounceRequest } from '../../src/activities/types';
import { createFreezeActivities } from '../../src/activities/freezes';
import { createNotify, type NoticeBody } from '../../src/activities/notify';
import { startWebhookReceiver, type WebhookReceiver } from '../../src/lab/webhook';
import { FREEZE_RECHECK_MS } from '../../src/workflows/run';
import { fakeActivities, type FakeActivities } from '../helpers/fake-activities';
import { startRequestFor } from '../helpers/fixtures';
import { timeSkippingEnv } from '../helpers/servers';
import { allowedKeys, configSourceWith, keyedPerson, RECORDED_NOTICES, serviceConfigOf, signedBy, stepById, type KeyedPerson } from '../helpers/governance';
import {
  BEFORE_GATE, bundleReleaseWorkflow, expectFailure, expectUpdateRefused, gateOpen, latch, registerSearchAttributes, stepOf, testInput, waitForStatus, withRelease,
  type ReleaseHandle,
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

  it('keeps the Web UI\'s current details and the status message on what the gate still needs after each vote, not what it needed when it opened', async () => {
    const fake = fakeActivities();
    const input = gatedInput({ required: 2, from: { sre: 1, product: 1 }, approvers: [], reasonRequired: false }, { sre: ['carol', 'dave'], product: ['erin'] });
    // The details are markdown: the parentheses of the needs text are escaped.
    const both = 'needs 1 more from sre \\(carol or dave\\) and 1 more from product \\(erin\\)';
    const productOnly = 'needs 1 more from product \\(erin\\)';
    await withRelease(env, bundle, fake, input, async ({ handle }) => {
      const details = async () => (await handle.query<{ currentDetails: string }>('__temporal_workflow_metadata')).currentDetails;
      await waitForStatus(handle, gateOpen, 'the production gate to open');
      expect(await details()).toContain(`- **Needs:** ${both}`);

      const partial = await handle.executeUpdate(approveUpdate, { args: [{ approver: 'carol' }] });
      expect(partial.gate).toBe('open');
      const st = await handle.query(statusQuery);
      expect(st.gate.needs).toBe('needs 1 more from product (erin)');
      expect(st.message).toContain('Waiting at the production approval gate: it needs 1 more from product (erin) before production.');
      const after = await details();
      expect(after).toContain(`waits for approval to production: ${productOnly}`);
      expect(after).toContain(`- **Needs:** ${productOnly}`);
      expect(after).not.toContain('needs 1 more from sre');

      // A second vote from sre changes nothing the gate needs; the details still say product.
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'dave' }] });
      expect(await details()).toContain(`- **Needs:** ${productOnly}`);
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'erin' }] });
      expect((await handle.result()).outcome).toBe('succeeded');
      expect(await details()).toMatch(/^\*\*succeeded\*\*: /);
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
      expect(result.environments!.map((e) => `${e.name}:${e.state}`)).toEqual(['staging:passed', 'qa:passed', 'production:passed']);
    });
  });

  it('keeps the searchable GantryEnvironment on the environment the release is in: staging, qa, then production at the gate', async () => {
    // Read back with describe(): this server cannot list by them (release-lanes.test.ts queries a dev server's visibility).
    await registerSearchAttributes(env);
    const staging = latch();
    const qa = latch();
    // The fake reads holdUntil at each deploy: staging's deploy waits for one latch, qa's for the other.
    const holdUntil: { deploy: Promise<void> } = { deploy: staging.promise };
    const fake = fakeActivities({ holdUntil });
    const input = testInput();
    const { staging: stagingEnv, production } = input.config.environments;
    input.config.environments = { staging: stagingEnv!, qa: structuredClone(stagingEnv!), production: production! };
    await withRelease(env, bundle, fake, input, async ({ handle }) => {
      const indexed = async () => {
        const sa = (await handle.describe()).typedSearchAttributes;
        return { environment: sa.get(SA_ENVIRONMENT), stage: sa.get(SA_STAGE) };
      };
      await waitForStatus(handle, (s) => stepById(s, 'deployStaging').state === 'running', 'the staging deploy to run');
      expect(await indexed()).toEqual({ environment: 'staging', stage: 'deploy-staging' });
      holdUntil.deploy = qa.promise;
      staging.open();
      await waitForStatus(handle, (s) => stepById(s, 'deploy:qa').state === 'running', 'the qa deploy to run');
      expect((await indexed()).environment).toBe('qa');
      qa.open();
      await waitForStatus(handle, gateOpen, 'the production gate to open');
      expect(await indexed()).toEqual({ environment: 'production', stage: 'awaiting-approval' });
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] });
      expect((await handle.result()).outcome).toBe('succeeded');
      const sa = (await handle.describe()).typedSearchAttributes;
      expect([sa.get(SA_ENVIRONMENT), sa.get(SA_STAGE), sa.get(SA_OUTCOME)]).toEqual(['production', 'done', 'succeeded']);
    }, undefined, true);
  });
});

/** The announcement requests, one per run of the announce step (its plan: every channel's delivery carries the same). */
function recordAnnounce(fake: FakeActivities): AnnounceRequest[] {
  const asked: AnnounceRequest[] = [];
  const plan = fake.announcePlan;
  fake.announcePlan = async (req) => {
    asked.push(req);
    return plan(req);
  };
  return asked;
}

describe('freezes and break-glass', () => {
  const incident = { kind: 'manual' as const, id: 'frz-1', scope: 'hello in production', by: 'alice', reason: 'incident 42', since: '2026-01-01T00:00:00.000Z' };

  it('holds an approved gate while frozen, says who froze it, why and how to break glass; a break-glass vote with a reason from sre passes it', async () => {
    const fake = fakeActivities({
      freeze: (req) => (req.environment === 'production' ? { frozen: true, freezes: [incident] } : { frozen: false, freezes: [] }),
    });
    const announced = recordAnnounce(fake);
    const input = testInput();
    input.config.breakGlass = { group: 'sre', required: 1 };
    input.config.notices = RECORDED_NOTICES;
    input.groups = { sre: ['carol', 'dave'] };
    const { version } = input;
    await withRelease(env, bundle, fake, input, async ({ handle }) => {
      const open = await waitForStatus(handle, gateOpen, 'the gate to open and show the freeze');
      expect(open.gate.freeze).toMatchObject({ frozen: true, freezes: [incident] });
      expect(open.message).toContain('Note: frozen by alice since 2026-01-01T00:00:00.000Z: incident 42 (until unfrozen); even once approved it waits');

      const approved = await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] });
      const frozenMessage = 'Approved, but hello production is frozen: frozen by alice since 2026-01-01T00:00:00.000Z: incident 42 (until unfrozen). ' +
        'The release waits at the gate. It passes when the freeze ends, or with 1 break-glass approval from sre (carol, dave): ' +
        `\`gantry approve hello ${version} --as <name> --break-glass --reason "…"\` (recorded and announced).`;
      // The approval completed the quorum: its answer waited for the freeze check, and says the release waits.
      expect(approved).toMatchObject({ gate: 'open', approvals: 1, required: 1, message: frozenMessage });
      const held = await handle.query(statusQuery);
      expect(held.gate).toMatchObject({ state: 'open', quorum: true });
      expect(held.message).toBe(frozenMessage);
      expect(fake.calls).toEqual(BEFORE_GATE);

      const outsider = await expectUpdateRefused(handle.executeUpdate(approveUpdate, { args: [{ approver: 'bob', breakGlass: true, reason: 'need it out' }] }));
      expect(outsider).toBe('bob is not in the break-glass group sre (carol, dave)');
      const noReason = await expectUpdateRefused(handle.executeUpdate(approveUpdate, { args: [{ approver: 'dave', breakGlass: true }] }));
      expect(noReason).toBe('a break-glass approval needs a reason (--reason "…"): it is recorded and announced');
      const again = await expectUpdateRefused(handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice', breakGlass: true, reason: 'twice' }] }));
      expect(again).toBe('alice is not in the break-glass group sre (carol, dave)');
      expect((await handle.query(statusQuery)).gate.state).toBe('open');

      const glass = await handle.executeUpdate(approveUpdate, { args: [{ approver: 'dave', breakGlass: true, reason: 'the fix for incident 42 itself' }] });
      expect(glass).toMatchObject({ gate: 'approved', message: 'Approved: production deploy starts now.' });
      const result = await handle.result();
      expect(result.outcome).toBe('succeeded');
      expect(result.gate.breakGlass).toEqual([expect.objectContaining({ approver: 'dave', reason: 'the fix for incident 42 itself' })]);
      expect(result.gate.approvals.map((v) => v.approver)).toEqual(['alice']);
      expect(fake.calls).toEqual([...BEFORE_GATE, ...AFTER_GATE]);

      expect(fake.notices.map((n) => n.kind)).toEqual(['gate-opened', 'break-glass']);
      const notice = fake.notices[1]!.summary;
      expect(notice.breakGlass).toEqual({ by: 'dave', reason: 'the fix for incident 42 itself' });
      expect(notice.freeze).toContain('frozen by alice');
      expect(announced).toHaveLength(1);
      expect(announced[0]!.governance).toEqual(['Break-glass at the production gate by dave: the fix for incident 42 itself.']);
      expect(result.ledger!.entries.some((e) => e.name === 'break-glass' && e.detail === 'passed the freeze: the fix for incident 42 itself')).toBe(true);
    });
  });
});

describe('decide skip', () => {
  it('skips an announcement that failed for good where the config marks announce skippable: the release succeeds, the skip on the record', async () => {
    const fake = fakeActivities({ fail: { announce: 'fatal' } });
    const input = testInput();
    input.config.steps.announce = { ...input.config.steps.announce, skippable: true };
    await withRelease(env, bundle, fake, input, async ({ handle }) => {
      await waitForStatus(handle, gateOpen, 'the production gate to open');
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] });
      const pending = await waitForStatus(handle, (s) => s.pendingDecision !== undefined, 'the announcement to wait for a decision');
      expect(pending.pendingDecision).toMatchObject({ step: 'announce', allowed: ['retry', 'abort', 'skip'] });
      expect(pending.message).toContain('or pass it by with `… decide skip … --reason "…"` (the config marks it skippable).');
      const answer = await handle.executeUpdate(decideUpdate, { args: [{ decision: 'skip', operator: 'dave', reason: 'chat is down; announced by hand' }] });
      expect(answer).toBe('Skipping Announce the release; the release goes on.');
      const result = await handle.result();
      expect(result.outcome).toBe('succeeded');
      expect(result.message).toContain('The announcement was skipped by decision');
      const announce = stepOf(result, 'announce');
      expect(announce.state).toBe('skipped');
      expect(announce.error).toBe('announce failed for good (fake) (skipped by decision of dave: chat is down; announced by hand)');
      expect(result.decisions).toEqual([expect.objectContaining({ step: 'announce', decision: 'skip', operator: 'dave', reason: 'chat is down; announced by hand' })]);
      expect(fake.calls).toEqual([...BEFORE_GATE, 'deploy:production', 'health', 'announce:released']);
    });
  });

  it('refuses a skip, with the reason, where the step is not skippable; retry and abort stay possible', async () => {
    const fake = fakeActivities({ fail: { announce: 'fatal' } });
    await withRelease(env, bundle, fake, testInput(), async ({ handle }) => {
      await waitForStatus(handle, gateOpen, 'the production gate to open');
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] });
      const pending = await waitForStatus(handle, (s) => s.pendingDecision !== undefined, 'the announcement to wait for a decision');
      expect(pending.pendingDecision!.allowed).toBeUndefined();
      expect(pending.message).not.toContain('decide skip');
      const why = await expectUpdateRefused(handle.executeUpdate(decideUpdate, { args: [{ decision: 'skip', operator: 'dave', reason: 'please' }] }));
      expect(why).toBe('Announce the release cannot be skipped (only steps the config marks skippable: steps.<step>.skippable: true, for smoke and announce); decide retry or abort');
      expect((await handle.query(statusQuery)).pendingDecision).toBeDefined();
      await handle.executeUpdate(decideUpdate, { args: [{ decision: 'abort', operator: 'dave' }] });
      const result = await handle.result();
      expect(result.outcome).toBe('succeeded');
      expect(result.message).toContain('The announcement was abandoned by decision');
      expect(stepOf(result, 'announce').state).toBe('failed');
      expect(result.decisions.map((d) => d.decision)).toEqual(['abort']);
    });
  });
});

describe('hotfixes', () => {
  it('skips the environments before production and takes the hotfix rule at the gate: only carol may approve', async () => {
    const fake = fakeActivities();
    const announced = recordAnnounce(fake);
    const input = testInput();
    input.config.hotfix = { allowed: true, gate: { required: 1, approvers: ['carol'], from: {}, reasonRequired: false } };
    input.config.notices = RECORDED_NOTICES;
    await withRelease(env, bundle, fake, input, async ({ handle }) => {
      const open = await waitForStatus(handle, gateOpen, 'the production gate to open');
      expect(open.hotfix).toEqual({ reason: 'CVE-2026-1', skipped: ['staging'] });
      expect(fake.calls).toEqual(['preflight', 'tag', 'build']);
      for (const id of ['deployStaging', 'smoke'] as const) {
        expect(stepOf(open, id)).toMatchObject({ state: 'skipped', error: 'skipped by the hotfix: CVE-2026-1' });
      }
      expect(open.environments!.map((e) => `${e.name}:${e.state}`)).toEqual(['staging:skipped', 'production:active']);
      expect(open.message).toContain('HOTFIX (skips staging): CVE-2026-1.');
      expect(open.gate.approvers).toEqual(['carol']);
      expect(open.gate.rule).toBe('1 approval from carol, not the requester; one rejection vetoes');

      const why = await expectUpdateRefused(handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] }));
      expect(why).toBe('alice is not an approver for hello; approvers are carol');
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'carol' }] });
      const result = await handle.result();
      expect(result.outcome).toBe('succeeded');
      expect(fake.calls).toEqual(['preflight', 'tag', 'build', ...AFTER_GATE]);

      const kinds = fake.notices.map((n) => n.kind);
      expect(kinds).toEqual(['hotfix', 'gate-opened']);
      expect(fake.notices[0]!.summary).toMatchObject({ environment: 'production', hotfix: { reason: 'CVE-2026-1', skipped: ['staging'] } });
      expect(announced[0]!.governance).toEqual(['Hotfix by tester: skipped staging (CVE-2026-1).']);
      expect(result.ledger!.entries.find((e) => e.kind === 'start')).toMatchObject({ verdict: 'accepted', detail: 'hotfix, skipping staging: CVE-2026-1' });
    }, { ...startRequestFor(input), hotfix: { reason: 'CVE-2026-1' } });
  });

  it('refuses a hotfix start for a service whose config does not allow hotfixes, before preflight', async () => {
    const fake = fakeActivities();
    const input = testInput();
    await withRelease(env, bundle, fake, input, async ({ handle }) => {
      const failure = await expectFailure(handle);
      expect(failure.type).toBe(ReleaseEndType.Failed);
      expect(failure.message).toContain('Start refused: hello does not allow hotfixes');
      expect(failure.message).toContain('Nothing was changed.');
      const status = await handle.query(statusQuery);
      expect(status.outcome).toBe('failed');
      expect(status.hotfix).toBeUndefined();
      expect(stepOf(status, 'preflight').state).toBe('skipped');
      expect(fake.calls).toEqual([]);
      expect(fake.notices).toEqual([]);
    }, { ...startRequestFor(input), hotfix: { reason: 'CVE-2026-1' } });
  });
});

describe('deny windows, with workflow time', () => {
  it('holds an approved release in a deny window (the real checkFreeze over the worker\'s config) and deploys once the window ends', async () => {
    // The window opens at the server's current minute (the time-skipping server's clock, which earlier tests moved on).
    const now = new Date(await env.currentTimeMs());
    const opened = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate(), now.getUTCHours(), now.getUTCMinutes());
    const windowEnd = opened + 2 * HOUR;
    const config = configSourceWith([
      `denyWindows: [{ name: maintenance, cron: "${now.getUTCMinutes()} ${now.getUTCHours()} * * *", duration: 2h, reason: database maintenance }]`,
    ]);
    const real = createFreezeActivities({ config });
    const checks: number[] = [];
    const fake = fakeActivities({
      governance: {
        checkFreeze: async (req) => {
          checks.push(req.nowMs);
          return real.checkFreeze(req);
        },
      },
    });
    const input = testInput();
    input.config.denyWindows = serviceConfigOf(config).denyWindows;
    await withRelease(env, bundle, fake, input, async ({ handle }) => {
      const open = await waitForStatus(handle, gateOpen, 'the gate to open and show the window');
      const until = new Date(windowEnd).toISOString();
      expect(open.gate.freeze).toMatchObject({
        frozen: true, until, freezes: [{ kind: 'window', id: 'maintenance', reason: 'database maintenance', since: new Date(opened).toISOString(), until }],
      });
      const approved = await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] });
      expect(approved.gate).toBe('open');
      expect(approved.message).toBe(`Approved, but hello production is frozen: deny window maintenance (database maintenance) until ${until}. ` +
        'The release waits at the gate. It passes when the freeze ends (the service has no break-glass group).');
      const held = await handle.query(statusQuery);
      expect(held.gate).toMatchObject({ state: 'open', quorum: true });
      expect(fake.calls).toEqual(BEFORE_GATE);

      // Awaiting the result lets the server skip the two hours; the gate checks again and passes.
      const result = await handle.result();
      expect(result.outcome).toBe('succeeded');
      expect(fake.calls).toEqual([...BEFORE_GATE, ...AFTER_GATE]);
      expect(result.gate.freeze).toMatchObject({ frozen: false, freezes: [] });
      expect(checks.length).toBeGreaterThanOrEqual(3);
      expect(checks[0]!).toBeLessThan(windowEnd);
      const last = checks[checks.length - 1]!;
      expect(last).toBeGreaterThanOrEqual(windowEnd);
      expect(last - windowEnd).toBeLessThan(FREEZE_RECHECK_MS);
      for (let i = 1; i < checks.length; i += 1) expect(checks[i]!).toBeGreaterThanOrEqual(checks[i - 1]!);
      expect(Date.parse(stepOf(result, 'deployProduction').startedAt!)).toBeGreaterThanOrEqual(windowEnd);
    });
  });
});

describe('notices to the approvers\' channel (the real notify, the lab\'s webhook receiver)', () => {
  let dir: string;
  let lab: WebhookReceiver;
  const TOKEN = 'T0GOV/B0HOOK/s3cr3tgovernancepath';

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-governance-'));
    lab = await startWebhookReceiver({ file: path.join(dir, 'requests.jsonl'), token: TOKEN });
  });
  afterAll(async () => {
    await lab?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('tells the channel the gate opened (with everything an approver needs), reminds it before the timeout, then says it timed out', async () => {
    const config = configSourceWith(['notices: { webhook: { env: GANTRY_TEST_NOTICE_URL }, reminderBefore: 1h, webUi: "http://127.0.0.1:8233" }']);
    const fake = fakeActivities({ governance: createNotify({ config, env: { GANTRY_TEST_NOTICE_URL: lab.url } }) });
    // The build ran in CI: its run's URL goes into every notice about the gate.
    const ciRunUrl = 'https://github.com/acme/hello/actions/runs/4242';
    const build = fake.build;
    fake.build = async (req) => ({ ...(await build(req)), ciRunId: 4242, ciRunUrl });
    const input = testInput({ approval: '3h' });
    input.config.notices = serviceConfigOf(config).notices;
    const { version } = input;
    const before = lab.count();
    await withRelease(env, bundle, fake, input, async ({ handle }) => {
      await waitForStatus(handle, gateOpen, 'the production gate to open');
      const runId = (await handle.describe()).runId;
      const workflowId = handle.workflowId;
      const arrived = await until(() => lab.requests().slice(before), (r) => r.length >= 1, 'the gate-opened notice to arrive');
      expect(arrived).toHaveLength(1);
      const opened = arrived[0]!.body as NoticeBody;
      expect(opened).toMatchObject({
        schema: 'gantry.notice/v1', kind: 'gate-opened',
        idempotencyKey: `${workflowId}/${runId}/gate-opened/production`,
        release: { service: 'hello', version, environment: 'production', workflowId, runId },
      });
      const approve = `gantry approve hello ${version} --as <name>`;
      // Slack mrkdwn: < and > are entities in the message's text and blocks.
      const approveMrkdwn = approve.replace(/</g, '&lt;').replace(/>/g, '&gt;');
      const webUi = `http://127.0.0.1:8233/namespaces/default/workflows/${encodeURIComponent(workflowId)}/${runId}/history`;
      expect(opened.text).toContain(`hello ${version} waits for approval to production: needs 1 more approval from alice, bob or carol`);
      expect(opened.text).toContain(`Approve: ${approveMrkdwn}`);
      const facts = fieldsOf(opened);
      expect(facts).toMatchObject({
        Service: 'hello',
        Version: `${version} (v${version})`,
        Environment: 'production',
        'Requested by': 'tester',
        Needs: 'needs 1 more approval from alice, bob or carol',
        Commit: 'a'.repeat(12),
        Digest: `sha256:${'b'.repeat(64)}`,
        Smoke: 'health: 200 OK; version: 200 OK',
        // A link in Slack's mrkdwn, labelled with the URL itself.
        'Build run': `<${ciRunUrl}|${ciRunUrl}>`,
      });
      expect(fake.notices[0]!.summary.buildRunUrl).toBe(ciRunUrl);
      const blocks = JSON.stringify(opened.blocks);
      expect(blocks).toContain(`\`${approveMrkdwn}\``);
      expect(blocks).toContain(`"url":"${webUi}"`);

      // The Web UI's current details say the same, with the approve command.
      const meta = await handle.query<{ currentDetails: string }>('__temporal_workflow_metadata');
      expect(meta.currentDetails).toContain(`\`${approve}\``);
      expect(meta.currentDetails).toContain('waits for approval to production');
      expect(meta.currentDetails).toContain(webUi);
      expect(meta.currentDetails).toContain(`- **Build run:** [${ciRunUrl}](${ciRunUrl})`);

      // No one approves: awaiting the result lets the server skip the 3 hours.
      const failure = await expectFailure(handle);
      expect(failure.type).toBe(ReleaseEndType.Aborted);
      expect(failure.message).toContain('No decision at the approval gate within 3h; nothing was deployed to production');
      const status = await handle.query(statusQuery);
      expect(status.outcome).toBe('aborted');
      expect(status.gate.state).toBe('timed_out');
      expect(fake.calls).toEqual(BEFORE_GATE);

      const all = lab.requests().slice(before).map((r) => r.body as NoticeBody);
      expect(all.map((b) => b.kind)).toEqual(['gate-opened', 'gate-reminder', 'gate-timed-out']);
      expect(fake.notices.map((n) => n.kind)).toEqual(['gate-opened', 'gate-reminder', 'gate-timed-out']);
      const reminder = all[1]!;
      expect(reminder.text).toContain(`Reminder: hello ${version} still waits for approval to production and times out at ${status.gate.deadline}`);
      expect(reminder.text).toContain(approveMrkdwn);
      // The reminder carries the facts an approver decides on, as the gate-opened notice did.
      expect(fieldsOf(reminder)).toMatchObject({
        Needs: 'needs 1 more approval from alice, bob or carol',
        'Times out': status.gate.deadline,
        Commit: 'a'.repeat(12),
        Digest: `sha256:${'b'.repeat(64)}`,
        'Build run': `<${ciRunUrl}|${ciRunUrl}>`,
      });
      expect(all[2]!.text).toContain(`gantry start hello ${version}`);
      expect(all[2]!.text).toContain('nothing was deployed to production and the release ended aborted');
      // The webhook URL is the secret: never in the release's status.
      expect(JSON.stringify(status)).not.toContain('s3cr3tgovernancepath');
    });
  });

  it('never holds the release up when the channel is down: every notice refused with a 500, the release passes its gate and succeeds', async () => {
    const down = await startWebhookReceiver({ file: path.join(dir, 'down.jsonl'), token: 'T0GOV/B0DOWN/s3cr3tdownpath' });
    // More refusals than the notices could ever use (notify gives up after 5 attempts).
    down.script(...Array.from({ length: 50 }, () => ({ refuse: 500 })));
    const config = configSourceWith(['notices: { webhook: { env: GANTRY_TEST_NOTICE_URL } }']);
    const real = createNotify({ config, env: { GANTRY_TEST_NOTICE_URL: down.url } });
    const refused: string[] = [];
    const fake = fakeActivities({
      governance: {
        notify: async (req) => real.notify(req).catch((err: unknown) => {
          refused.push(`${req.kind}: ${err instanceof Error ? err.message : String(err)}`);
          throw err;
        }),
      },
    });
    const input = testInput();
    input.config.notices = serviceConfigOf(config).notices;
    try {
      await withRelease(env, bundle, fake, input, async ({ handle }) => {
        await waitForStatus(handle, gateOpen, 'the production gate to open');
        await until(() => refused, (r) => r.length >= 1, 'the gate-opened notice to be refused');
        expect(refused[0]).toBe('gate-opened: The approvers\' webhook (env GANTRY_TEST_NOTICE_URL) answered 500 "service_unavailable". Gantry retries.');
        const answer = await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] });
        expect(answer).toMatchObject({ gate: 'approved', message: 'Approved: production deploy starts now.' });
        const result = await handle.result();
        expect(result.outcome).toBe('succeeded');
        expect(fake.calls).toEqual([...BEFORE_GATE, ...AFTER_GATE]);
        expect(down.count()).toBe(0);

        // Workflow time: the deploy started with the approval, while the gate-opened notice was still being retried,
        const approvedAt = Date.parse(result.gate.approvals[0]!.at);
        expect(Date.parse(stepOf(result, 'deployProduction').startedAt!) - approvedAt).toBeLessThan(1000);
        // and the release closed within the 10 s it gives notices still on their way (run.ts main()), not after
        // notify's retries (5 attempts, 2 + 4 + 8 + 16 s of backoff).
        const closedAt = (await handle.describe()).closeTime!.getTime();
        expect(closedAt - Date.parse(stepOf(result, 'announce').endedAt!)).toBeLessThanOrEqual(10_000 + 1000);
        expect(closedAt - Date.parse(result.gate.openedAt!)).toBeLessThan(2_000 + 4_000 + 8_000 + 16_000);
      });
    } finally {
      await down.close();
    }
  });
});

/** The facts of a notice (its section fields), label → text. */
function fieldsOf(body: NoticeBody): Record<string, string> {
  const out: Record<string, string> = {};
  for (const b of body.blocks as Array<{ fields?: Array<{ text: string }> }>) {
    for (const f of b.fields ?? []) {
      const m = /^\*([^*]+)\*\n([\s\S]*)$/.exec(f.text);
      if (m) out[m[1]!] = m[2]!;
    }
  }
  return out;
}

/** Poll `get` in real time until `ok` holds. */
async function until<T>(get: () => T, ok: (v: T) => boolean, what: string, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = get();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${JSON.stringify(v).slice(0, 500)}`);
    await pause(50);
  }
}

describe('a gate before production', () => {
  it('opens qa\'s own gate with its rule; a declared approval there passes it, and production\'s gate opens afresh', async () => {
    const fake = fakeActivities();
    const announced = recordAnnounce(fake);
    const input = testInput();
    const { staging, production } = input.config.environments;
    input.config.environments = {
      staging: staging!,
      qa: { ...structuredClone(staging!), gate: { required: 1, approvers: ['erin'], from: {}, reasonRequired: false } },
      production: production!,
    };
    await withRelease(env, bundle, fake, input, async ({ handle }) => {
      const qa = await waitForStatus(handle, gateOpen, 'the qa gate to open');
      expect(qa.gate).toMatchObject({ environment: 'qa', approvers: ['erin'], rule: '1 approval from erin, not the requester; one rejection vetoes' });
      expect(qa.message).toContain('Waiting at the qa approval gate: it needs 1 more approval from erin before qa.');
      expect(fake.calls).toEqual(BEFORE_GATE);
      const refused = await expectUpdateRefused(handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] }));
      expect(refused).toBe('alice is not an approver for hello qa; approvers are erin');
      const answer = await handle.executeUpdate(approveUpdate, { args: [{ approver: 'erin', reason: 'qa sign-off' }] });
      expect(answer).toMatchObject({ gate: 'approved', message: 'Approved: qa deploy starts now.' });

      const prod = await waitForStatus(handle, (s) => gateOpen(s) && s.gate.environment === 'production', 'the production gate to open');
      expect(prod.gate.approvals).toEqual([]);
      expect(prod.gate.approvers).toEqual(['alice', 'bob', 'carol']);
      expect(prod.gate.passed).toEqual([expect.objectContaining({ environment: 'qa', state: 'approved', approvals: [expect.objectContaining({ approver: 'erin' })] })]);
      expect(fake.calls).toEqual([...BEFORE_GATE, 'deploy:qa', 'smoke']);
      const notYet = await expectUpdateRefused(handle.executeUpdate(approveUpdate, { args: [{ approver: 'erin' }] }));
      expect(notYet).toBe('erin is not an approver for hello; approvers are alice, bob, carol');
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'bob' }] });
      const result = await handle.result();
      expect(result.outcome).toBe('succeeded');
      expect(fake.calls).toEqual([...BEFORE_GATE, 'deploy:qa', 'smoke', ...AFTER_GATE]);
      expect(announced[0]!.approvers).toEqual(['bob']);
    });
  });
});

describe('decide skip before production', () => {
  it('skips qa\'s failing smoke check where smoke is skippable; the gate opens, and the announcement says what was skipped', async () => {
    let deployedQa = false;
    const fake = fakeActivities({ failWhile: { smoke: () => deployedQa } });
    const deploy = fake.deploy;
    fake.deploy = async (req) => {
      if (req.environment === 'qa') deployedQa = true;
      return deploy(req);
    };
    const announced = recordAnnounce(fake);
    const input = testInput();
    const { staging, production } = input.config.environments;
    input.config.environments = { staging: staging!, qa: structuredClone(staging!), production: production! };
    input.config.steps.smoke = { ...input.config.steps.smoke, skippable: true };
    await withRelease(env, bundle, fake, input, async ({ handle }) => {
      const pending = await waitForStatus(handle, (s) => s.pendingDecision !== undefined, 'qa\'s smoke check to wait for a decision');
      expect(pending.pendingDecision).toMatchObject({ step: 'smoke:qa', allowed: ['retry', 'abort', 'skip'] });
      expect(pending.message).toMatch(/^Smoke-check qa failed after its retries: smoke unavailable \(fake\)/);
      expect(stepById(pending, 'smoke').state).toBe('succeeded');
      const answer = await handle.executeUpdate(decideUpdate, { args: [{ decision: 'skip', operator: 'dave', reason: 'qa checker is flaky' }] });
      expect(answer).toBe('Skipping Smoke-check qa; the release goes on.');

      const open = await waitForStatus(handle, gateOpen, 'the production gate to open');
      expect(stepById(open, 'smoke:qa').state).toBe('skipped');
      expect(stepById(open, 'smoke:qa').error).toContain('(skipped by decision of dave: qa checker is flaky)');
      expect(open.environments!.map((e) => `${e.name}:${e.state}`)).toEqual(['staging:passed', 'qa:passed', 'production:active']);
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] });
      const result = await handle.result();
      expect(result.outcome).toBe('succeeded');
      expect(fake.calls.filter((c) => c.startsWith('deploy:'))).toEqual(['deploy:staging', 'deploy:qa', 'deploy:production']);
      expect(result.decisions).toEqual([expect.objectContaining({ step: 'smoke:qa', decision: 'skip', operator: 'dave' })]);
      expect(announced[0]!.governance).toEqual(['Smoke-check qa was skipped by decision of dave: qa checker is flaky.']);
    });
  });
});

describe('a rejection while frozen', () => {
  it('ends the release rejected when someone rejects a gate that had its approvals but was frozen', async () => {
    const fake = fakeActivities({ freeze: () => ({ frozen: true, freezes: [{ kind: 'manual', id: 'frz-9', scope: 'hello', by: 'alice', reason: 'quarter close' }] }) });
    await withRelease(env, bundle, fake, testInput(), async ({ handle }) => {
      await waitForStatus(handle, gateOpen, 'the gate to open and show the freeze');
      const approved = await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] });
      expect(approved.gate).toBe('open');
      expect(approved.message).toContain('It passes when the freeze ends (the service has no break-glass group).');
      const glass = await expectUpdateRefused(handle.executeUpdate(approveUpdate, { args: [{ approver: 'carol', breakGlass: true, reason: 'urgent' }] }));
      expect(glass).toBe('hello has no break-glass group, so nothing passes a freeze; wait for the freeze to end, or add breakGlass: { group: … } to the worker\'s config');
      await handle.executeUpdate(rejectUpdate, { args: [{ approver: 'alice', reason: 'wait for the quarter close after all' }] });
      const failure = await expectFailure(handle);
      expect(failure.type).toBe(ReleaseEndType.Rejected);
      const status = await handle.query(statusQuery);
      expect(status.gate.approvals[0]!.changedToRejectAt).toBeDefined();
      expect(fake.calls).toEqual(BEFORE_GATE);
    });
  });
});

describe('signed votes under governance (real ssh keys)', () => {
  let keysDir: string;
  let alice: KeyedPerson;
  let carol: KeyedPerson;
  let dave: KeyedPerson;
  let erin: KeyedPerson;
  let keys: PrincipalKey[];
  const DIGEST = `sha256:${'b'.repeat(64)}`;

  beforeAll(async () => {
    keysDir = mkdtempSync(path.join(os.tmpdir(), 'gantry-governance-keys-'));
    [alice, carol, dave, erin] = await Promise.all(['alice', 'carol', 'dave', 'erin'].map((n) => keyedPerson(keysDir, n))) as [KeyedPerson, KeyedPerson, KeyedPerson, KeyedPerson];
    // carol's key is listed for erin too: one key, two names, as an allowed_signers file may say.
    keys = allowedKeys([`alice ${alice.line}`, `carol,erin ${carol.line}`, `erin ${erin.line}`, `dave ${dave.line}`].join('\n'));
  });
  afterAll(() => {
    if (keysDir) rmSync(keysDir, { recursive: true, force: true });
  });

  /** Fifteen minutes from workflow time (the server's clock, which earlier tests moved on), as `gantry` signs. */
  const expiresSoon = async () => new Date((await env.currentTimeMs()) + 15 * 60_000).toISOString();

  /** A signed-mode input started by dave (the only operator), with all four people's keys in the plan. */
  function signedGovernedInput() {
    const input = testInput({ signedWith: keys, operators: ['dave'], requestedBy: 'dave' });
    input.keys = keys;
    return input;
  }

  async function signedStartOf(input: ReturnType<typeof testInput>) {
    return startRequestFor(input, {
      requestedBy: 'dave',
      signed: await signedBy(dave.signer, {
        action: 'start', workflow: releaseWorkflowId(input.service, input.version), service: input.service, version: input.version,
        principal: 'dave', expires: await expiresSoon(),
      }),
    });
  }

  async function signedVote(who: KeyedPerson, handle: ReleaseHandle, over: Partial<Statement> = {}, as = who.name) {
    return signedBy(who.signer, {
      action: 'approve', workflow: handle.workflowId, run: (await handle.describe()).runId, digest: DIGEST, principal: as,
      expires: await expiresSoon(), ...over,
    });
  }

  it('holds a signed vote to the gate it names (qa\'s, not production\'s), and counts a group quorum by distinct keys', async () => {
    const fake = fakeActivities();
    const input = signedGovernedInput();
    const { staging, production } = input.config.environments;
    input.config.environments = {
      staging: staging!,
      qa: { ...structuredClone(staging!), gate: { required: 1, approvers: ['alice'], from: {}, reasonRequired: false } },
      production: { ...production!, gate: { required: 2, from: { sre: 1, product: 1 }, approvers: [], reasonRequired: false } },
    };
    input.groups = { sre: ['carol'], product: ['erin'] };
    await withRelease(env, bundle, fake, input, async ({ handle }) => {
      await waitForStatus(handle, (s) => gateOpen(s) && s.gate.environment === 'qa', 'the qa gate to open');
      const unnamed = await expectUpdateRefused(handle.executeUpdate(approveUpdate, { args: [await signedVote(alice, handle)] }));
      expect(unnamed).toBe('the signed approve is for the production gate, but the gate open now is qa\'s; sign a new one (`gantry approve` names the open gate)');
      const forProduction = await expectUpdateRefused(handle.executeUpdate(approveUpdate, { args: [await signedVote(alice, handle, { environment: 'production' })] }));
      expect(forProduction).toContain('the signed approve is for the production gate, but the gate open now is qa\'s');
      const qa = await handle.executeUpdate(approveUpdate, { args: [await signedVote(alice, handle, { environment: 'qa' })] });
      expect(qa).toMatchObject({ gate: 'approved', message: 'Approved: qa deploy starts now.' });

      await waitForStatus(handle, (s) => gateOpen(s) && s.gate.environment === 'production', 'the production gate to open');
      const forQa = await expectUpdateRefused(handle.executeUpdate(approveUpdate, { args: [await signedVote(carol, handle, { environment: 'qa' })] }));
      expect(forQa).toBe('the signed approve is for the qa gate, but the gate open now is production\'s; sign a new one (`gantry approve` names the open gate)');
      await handle.executeUpdate(approveUpdate, { args: [await signedVote(carol, handle, { environment: 'production' })] });
      const after = await handle.query(statusQuery);
      expect(after.gate.needs).toBe('needs 1 more from product (erin) (signed)');
      // erin signing with the key carol already approved with: one person, two names; it does not count.
      const sameKey = await expectUpdateRefused(handle.executeUpdate(approveUpdate, { args: [await signedVote(carol, handle, {}, 'erin')] }));
      expect(sameKey).toBe(`key ${carol.fingerprint} already approved as carol; the quorum counts distinct keys, not names`);
      const done = await handle.executeUpdate(approveUpdate, { args: [await signedVote(erin, handle)] });
      expect(done.gate).toBe('approved');
      const result = await handle.result();
      expect(result.outcome).toBe('succeeded');
      expect(result.gate.approvals.map((v) => [v.approver, v.verified, v.fingerprint])).toEqual([
        ['carol', true, carol.fingerprint], ['erin', true, erin.fingerprint],
      ]);
      expect(result.gate.passed).toEqual([expect.objectContaining({ environment: 'qa', state: 'approved', approvals: [expect.objectContaining({ approver: 'alice', verified: true })] })]);
      expect(fake.calls).toEqual([...BEFORE_GATE, 'deploy:qa', 'smoke', ...AFTER_GATE]);
    }, await signedStartOf(input));
  });

  it('takes a signed break-glass (decision break-glass, with a reason) through a freeze, and refuses one without a reason', async () => {
    const fake = fakeActivities({ freeze: () => ({ frozen: true, freezes: [{ kind: 'manual', id: 'frz-2', scope: 'hello', by: 'erin', reason: 'incident 43' }] }) });
    const announced = recordAnnounce(fake);
    const input = signedGovernedInput();
    input.config.breakGlass = { group: 'sre', required: 1 };
    input.groups = { sre: ['carol', 'erin'] };
    await withRelease(env, bundle, fake, input, async ({ handle }) => {
      await waitForStatus(handle, gateOpen, 'the gate to open and show the freeze');
      const approved = await handle.executeUpdate(approveUpdate, { args: [await signedVote(alice, handle)] });
      expect(approved.gate).toBe('open');
      expect(approved.message).toContain('1 break-glass approval from sre (carol, erin)');
      const bare = await expectUpdateRefused(handle.executeUpdate(approveUpdate, { args: [await signedVote(erin, handle, { decision: 'break-glass' })] }));
      expect(bare).toBe('a break-glass approval needs a reason (--reason "…"): it is recorded and announced');
      const glass = await handle.executeUpdate(approveUpdate, { args: [await signedVote(erin, handle, { decision: 'break-glass', reason: 'the incident 43 fix' })] });
      expect(glass.gate).toBe('approved');
      const result = await handle.result();
      expect(result.outcome).toBe('succeeded');
      expect(result.gate.breakGlass).toEqual([expect.objectContaining({ approver: 'erin', verified: true, fingerprint: erin.fingerprint, reason: 'the incident 43 fix' })]);
      expect(result.gate.breakGlass![0]!.statement).toContain('decision: break-glass');
      expect(announced[0]!.governance).toEqual(['Break-glass at the production gate by erin: the incident 43 fix.']);
    }, await signedStartOf(input));
  });
});

describe('freezes that end, and freezes that outlast the gate', () => {
  it('passes an approved gate by itself when a manual freeze reaches its until (no break-glass needed)', async () => {
    const start = await env.currentTimeMs();
    const until = new Date(start + HOUR).toISOString();
    const fake = fakeActivities({
      freeze: (req) => (req.nowMs < Date.parse(until)
        ? { frozen: true, freezes: [{ kind: 'manual', id: 'frz-3', scope: 'hello', by: 'alice', reason: 'backup running', until }], until }
        : { frozen: false, freezes: [] }),
    });
    await withRelease(env, bundle, fake, testInput({ approval: '3h' }), async ({ handle }) => {
      await waitForStatus(handle, gateOpen, 'the gate to open and show the freeze');
      const approved = await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] });
      expect(approved.message).toContain(`frozen by alice: backup running (until ${until})`);
      const result = await handle.result();
      expect(result.outcome).toBe('succeeded');
      expect(Date.parse(stepOf(result, 'deployProduction').startedAt!)).toBeGreaterThanOrEqual(Date.parse(until));
      // Woken by the freeze's end, not by the next 30 s recheck: the check that passed came just after its until.
      const last = fake.freezeChecks[fake.freezeChecks.length - 1]!;
      expect(last.nowMs).toBeGreaterThan(Date.parse(until));
      expect(last.nowMs - Date.parse(until)).toBeLessThan(1000);
      expect(result.gate.breakGlass).toBeUndefined();
    });
  });

  it('aborts a release whose gate had its approvals but stayed frozen until the approval timeout, saying so', async () => {
    const fake = fakeActivities({ freeze: () => ({ frozen: true, freezes: [{ kind: 'manual', id: 'frz-4', scope: 'hello', by: 'bob', reason: 'audit week' }] }) });
    await withRelease(env, bundle, fake, testInput({ approval: '2h' }), async ({ handle }) => {
      await waitForStatus(handle, gateOpen, 'the gate to open and show the freeze');
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'carol' }] });
      const failure = await expectFailure(handle);
      expect(failure.type).toBe(ReleaseEndType.Aborted);
      expect(failure.message).toBe('No decision at the approval gate within 2h; nothing was deployed to production. ' +
        'It had its approvals but stayed frozen (frozen by bob: audit week (until unfrozen)). Start the release again when approvers are available.');
      expect(fake.calls).toEqual(BEFORE_GATE);
    });
  });
});

describe('a group rule nobody can meet', () => {
  it('says so in needs when the requester is the only member of a group the rule needs', async () => {
    const fake = fakeActivities();
    const input = testInput({ requestedBy: 'erin' });
    input.config.environments.production!.gate = { required: 2, from: { sre: 1, product: 1 }, approvers: [], reasonRequired: false };
    input.groups = { sre: ['carol', 'dave'], product: ['erin'] };
    await withRelease(env, bundle, fake, input, async ({ handle }) => {
      const open = await waitForStatus(handle, gateOpen, 'the production gate to open');
      expect(open.gate.needs).toMatch(/^needs 2 more approvals, but nobody in product can still vote \(each approver votes once, the requester may not/);
      const why = await expectUpdateRefused(handle.executeUpdate(approveUpdate, { args: [{ approver: 'erin' }] }));
      expect(why).toContain('erin requested this release and may not approve it (four-eyes rule)');
    });
  });
});

describe('the lane requests and freeze checks run in the workflow task (local activities)', () => {
  it('starts the production deploy in the workflow task that took the approval completing the quorum', async () => {
    const fake = fakeActivities();
    await withRelease(env, bundle, fake, testInput(), async ({ handle }) => {
      await waitForStatus(handle, gateOpen, 'the production gate to open');
      const answer = await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] });
      expect(answer.gate).toBe('approved');
      await handle.result();
      const events = (await handle.fetchHistory()).events ?? [];
      const type = (e: (typeof events)[number]): string => {
        if (e.markerRecordedEventAttributes?.markerName === 'core_local_activity') return 'local';
        if (e.activityTaskScheduledEventAttributes) return `scheduled:${e.activityTaskScheduledEventAttributes.activityType?.name}`;
        if (e.workflowExecutionUpdateAcceptedEventAttributes) return 'update';
        if (e.workflowTaskCompletedEventAttributes) return 'task';
        return '';
      };
      const kinds = events.map(type).filter(Boolean);
      // No ordinary activity for lanes or freezes: two lanes and two freeze checks are markers.
      expect(kinds.filter((k) => k === 'local')).toHaveLength(4);
      expect(kinds.some((k) => /scheduled:(laneEnqueue|checkFreeze)/.test(k))).toBe(false);
      // Between the approval and the production deploy: the freeze check that counts, and no other workflow task.
      const after = kinds.slice(kinds.indexOf('update'));
      expect(after.slice(0, after.indexOf('scheduled:deploy') + 1)).toEqual(['update', 'local', 'scheduled:deploy']);
    });
  });
});
