/**
 * The release's ledger: every message it handled, in order, with its actor and verdict; and `gantry history`
 * matching the event history to it exactly, by order, not by clocks. (Before, a refused `decide` signal and a
 * refused blank-approver signal showed as "recorded".)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { approveSignal, approveUpdate, decideSignal, rejectUpdate, statusQuery } from '../../src/shared/release';
import { buildTimeline, type TimelineEntry } from '../../src/client/history';
import { fakeActivities } from '../helpers/fake-activities';
import { timeSkippingEnv } from '../helpers/servers';
import { bundleReleaseWorkflow, gateOpen, testInput, waitForStatus, withRelease } from './harness';

let env: TestWorkflowEnvironment;
let bundle: WorkflowBundleWithSourceMap;

beforeAll(async () => {
  [env, bundle] = await Promise.all([timeSkippingEnv(), bundleReleaseWorkflow()]);
});
afterAll(async () => {
  await env?.teardown();
});

type Message = Extract<TimelineEntry, { kind: 'signal' | 'update' }>;

describe('the ledger', () => {
  it('records every message in order with its verdict, and history matches it by order', async () => {
    await withRelease(env, bundle, fakeActivities(), testInput(), async ({ handle }) => {
      await waitForStatus(handle, gateOpen, 'the gate to open');
      await handle.signal(decideSignal, { decision: 'retry', operator: 'dave' }); // nothing pending
      await handle.signal(approveSignal, { approver: '   ' });                   // blank approver
      await handle.signal('aprove', { approver: 'alice' });                      // typo
      await handle.signal(approveSignal, { approver: 'mallory' });               // not an approver
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'bob', reason: 'looks good' }] });
      const result = await handle.result();
      expect(result.outcome).toBe('succeeded');

      const ledger = result.ledger!;
      expect(ledger.messages).toBe(5);
      expect(ledger.entries.map((e) => [e.seq, e.kind, e.name, e.verdict])).toEqual([
        [0, 'start', 'start', 'accepted'],
        [1, 'signal', 'decide', 'refused'],
        [2, 'signal', 'approve', 'refused'],
        [3, 'signal', 'aprove', 'refused'],
        [4, 'signal', 'approve', 'refused'],
        [5, 'update', 'approve', 'accepted'],
        [0, 'outcome', 'succeeded', 'recorded'],
      ]);
      expect(ledger.entries[5]).toMatchObject({ actor: 'bob', verified: false, detail: 'looks good' });

      const status = await handle.query(statusQuery);
      const timeline = buildTimeline(await handle.fetchHistory(), status);
      const messages = timeline.filter((e): e is Message => e.kind === 'signal' || e.kind === 'update');
      expect(messages.map((m) => [m.kind, m.name, m.verdict])).toEqual([
        ['signal', 'decide', 'refused'],
        ['signal', 'approve', 'refused'],
        ['signal', 'aprove', 'refused'],
        ['signal', 'approve', 'refused'],
        ['update', 'approve', 'accepted'],
      ]);
      expect(messages[0]!.detail).toBe('no decision is pending: decide applies only after a step used up its retries');
      expect(messages[1]!.detail).toMatch(/^malformed approve: "approver" is missing or not text \(got blank text\)/);
      expect(messages[2]!.detail).toMatch(/^there is no signal named "aprove"/);
      expect(messages[3]!.detail).toBe('mallory is not an approver for hello; approvers are alice, bob, carol');
      expect(messages[4]!.who).toBe('bob');
    });
  });

  it('asks for the audit record of a release that ends without its announcement, with every action on it', async () => {
    const fake = fakeActivities();
    await withRelease(env, bundle, fake, testInput(), async ({ handle }) => {
      await waitForStatus(handle, gateOpen, 'the gate to open');
      await handle.signal(approveSignal, { approver: 'mallory' });
      await handle.executeUpdate(rejectUpdate, { args: [{ approver: 'carol', reason: 'changelog is wrong' }] });
      await handle.result().catch(() => undefined);
      const status = await handle.query(statusQuery);
      expect(status.outcome).toBe('rejected');
      expect(fake.recorded).toEqual(['rejected']);
      expect(status.recorded).toBe('the actions and the outcome are in the audit log');
      expect(fake.calls).not.toContain('announce:released');
    });
  });

  it('matches even when several signals arrive in one workflow task, which clocks cannot tell apart', async () => {
    await withRelease(env, bundle, fakeActivities(), testInput(), async ({ handle }) => {
      await waitForStatus(handle, gateOpen, 'the gate to open');
      await Promise.all([
        handle.signal(approveSignal, { approver: 'mallory' }),
        handle.signal(approveSignal, { approver: 'mallory' }),
        handle.signal(approveSignal, { approver: 'carol', reason: 'ok' }),
      ]);
      await handle.result();
      const status = await handle.query(statusQuery);
      const messages = buildTimeline(await handle.fetchHistory(), status).filter((e): e is Message => e.kind === 'signal');
      // Each refused mallory and carol's approval match their own events, in history order.
      expect(messages.filter((m) => m.verdict === 'refused')).toHaveLength(2);
      expect(messages.filter((m) => m.verdict === 'accepted').map((m) => m.who)).toEqual(['carol']);
      expect(messages.every((m) => m.verdict !== 'unknown')).toBe(true);
    });
  });
});
