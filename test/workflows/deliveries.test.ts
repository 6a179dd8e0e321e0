/**
 * The announce step, channel by channel (`gantry-deliveries`), on the time-skipping server: the worker's plan,
 * then one activity per enabled channel (stages in order, a stage's channels at once), what a channel leaves
 * passed on to the next, one announce step in status with every channel's result, and a retry of the step that
 * runs only the channels that did not deliver. The real channels, their retries on another worker and the
 * receivers' view are tested in test/activities/deliveries.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { defaultPayloadConverter } from '@temporalio/common';
import { approveUpdate, decideUpdate, type ReleaseStatus } from '../../src/shared/release';
import { PATCHES } from '../../src/workflows/run';
import { fakeActivities } from '../helpers/fake-activities';
import { timeSkippingEnv } from '../helpers/servers';
import { bundleReleaseWorkflow, gateOpen, stepOf, testInput, waitForStatus, withRelease, type ReleaseHandle } from './harness';

let env: TestWorkflowEnvironment;
let bundle: WorkflowBundleWithSourceMap;

beforeAll(async () => {
  [env, bundle] = await Promise.all([timeSkippingEnv(), bundleReleaseWorkflow()]);
});

afterAll(async () => {
  await env?.teardown();
});

const pending = (s: ReleaseStatus): boolean => s.pendingDecision !== undefined;
const ALL = ['audit', 'artifacts', 'github', 'webhook'];

async function approve(handle: ReleaseHandle): Promise<void> {
  await waitForStatus(handle, gateOpen, 'the approval gate to open');
  await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] });
}

/** The activities the release scheduled, in order, with their summaries and heartbeat timeouts. */
async function scheduled(handle: ReleaseHandle): Promise<{ type: string; summary: string; heartbeatTimeout?: string }[]> {
  const events = (await handle.fetchHistory()).events ?? [];
  return events.filter((e) => e.activityTaskScheduledEventAttributes).map((e) => {
    const a = e.activityTaskScheduledEventAttributes!;
    const summary = e.userMetadata?.summary ? String(defaultPayloadConverter.fromPayload(e.userMetadata.summary)) : '';
    const hb = a.heartbeatTimeout?.seconds;
    return { type: a.activityType?.name ?? '?', summary, ...(hb !== undefined && hb !== null ? { heartbeatTimeout: `${String(hb)}s` } : {}) };
  });
}

describe('the announce step, one activity per channel', () => {
  it('plans, then delivers each channel once (audit, then artifacts, then the rest), passing on what each leaves, as one step in status', async () => {
    const fake = fakeActivities({ channels: ALL });
    const input = testInput();
    await withRelease(env, bundle, fake, input, async ({ handle }) => {
      await approve(handle);
      const result = await handle.result();
      expect(result.outcome).toBe('succeeded');
      expect(fake.calls.filter((c) => c.startsWith('announce'))).toEqual(['announce:released']);
      expect(fake.deliveries.slice(0, 2)).toEqual(['audit:released#1', 'artifacts:released#1']);
      expect(fake.deliveries.slice(2).sort()).toEqual(['github:released#1', 'webhook:released#1']);

      // What a channel leaves goes to the channels after it, in their requests.
      const req = (channel: string) => fake.deliveryRequests.find((r) => r.channel === channel)!;
      expect(req('audit').auditLine).toBeUndefined();
      expect(req('artifacts').auditLine).toEqual({ line: 1, sha256: `sha256:${'c'.repeat(64)}` });
      expect(req('github')).toMatchObject({ section: `notes for ${input.version} (fake)`, auditLine: { line: 1 } });
      expect(req('webhook')).toMatchObject({ section: `notes for ${input.version} (fake)`, outcome: 'released', release: { version: input.version } });

      // One announce step in status, with every channel's result.
      expect(stepOf(result, 'announce')).toMatchObject({
        state: 'succeeded', runs: 1, attempts: 1,
        outputs: { webhook: 'true', audit: 'true', channels: 'audit ok; artifacts ok; github ok; webhook ok' },
      });

      // In history: the plan and one activity per channel, all with a 10 s heartbeat timeout, behind the patch.
      const acts = (await scheduled(handle)).filter((a) => a.type.startsWith('announce'));
      expect(acts.map((a) => a.type)).toEqual(['announcePlan', 'announceChannel', 'announceChannel', 'announceChannel', 'announceChannel']);
      expect(acts[0]!.summary).toBe(`Announce the release: the channels — hello ${input.version}`);
      expect(acts.slice(1).map((a) => a.summary).sort()).toEqual(['GitHub', 'audit log', 'chat webhook', 'release artifacts']
        .map((t) => `Announce the release: ${t} — hello ${input.version}`).sort());
      expect(acts.every((a) => a.heartbeatTimeout === '10s')).toBe(true);
      const patches = ((await handle.fetchHistory()).events ?? []).filter((e) => e.markerRecordedEventAttributes?.markerName === 'core_patch')
        .map((e) => defaultPayloadConverter.fromPayload<{ id: string }>(e.markerRecordedEventAttributes!.details!['patch-data']!.payloads![0]!).id);
      expect(patches).toContain(PATCHES.deliveries);
    });
  });

  it('runs nothing but the plan when no channel is configured, and says so per channel', async () => {
    const fake = fakeActivities();
    await withRelease(env, bundle, fake, testInput(), async ({ handle }) => {
      await approve(handle);
      const result = await handle.result();
      expect(fake.deliveries).toEqual([]);
      expect(stepOf(result, 'announce').outputs).toEqual({ webhook: 'false', audit: 'false', channels: 'audit skipped; artifacts skipped; github skipped; webhook skipped' });
    });
  });

  it('a channel that keeps failing does not stop the others; the step waits for a decision naming every channel, and `decide retry` runs only what did not deliver', async () => {
    let broken = true;
    const fake = fakeActivities({ channels: ['audit', 'github', 'webhook'], failChannelWhile: { webhook: () => broken } });
    const input = testInput();
    input.steps.announce.retry.maximumAttempts = 2;
    await withRelease(env, bundle, fake, input, async ({ handle }) => {
      await approve(handle);
      const s = await waitForStatus(handle, pending, 'a pending decision on the announcement');
      expect(s.pendingDecision!.step).toBe('announce');
      expect(s.pendingDecision!.error).toBe(`Announcing hello ${input.version} (released) failed on 1 channel(s):\n` +
        '- chat webhook: webhook unavailable (fake), attempt 2\n' +
        'Every channel:\n  audit: ok (delivered (fake))\n  github: ok (delivered (fake))\n  webhook: FAILED (above)\n' +
        'The channels that delivered are not repeated when the step is retried.');
      expect(s.message).toMatch(/^Announce the release failed after its retries: Announcing hello/);
      expect(stepOf(s, 'announce')).toMatchObject({ state: 'failed', attempts: 2 });
      // GitHub and the webhook are one stage: at once, after the audit log.
      expect(fake.deliveries[0]).toBe('audit:released#1');
      expect(fake.deliveries.slice(1).sort()).toEqual(['github:released#1', 'webhook:released#1', 'webhook:released#2']);

      broken = false;
      await handle.executeUpdate(decideUpdate, { args: [{ decision: 'retry', operator: 'carol' }] });
      const result = await handle.result();
      expect(result.outcome).toBe('succeeded');
      // GitHub delivered in the first run: not again. The audit log runs again for the decision taken since
      // (only its line is new: the others are known by their ids), then the webhook.
      expect(fake.deliveries.slice(4)).toEqual(['audit:released#1', 'webhook:released#1']);
      const audits = fake.deliveryRequests.filter((r) => r.channel === 'audit');
      expect(audits[1]!.actions!.length).toBe(audits[0]!.actions!.length + 1);
      expect(audits[1]!.actions!.at(-1)).toMatchObject({ kind: 'decide-accepted', actor: 'carol' });
      expect(stepOf(result, 'announce')).toMatchObject({
        state: 'succeeded', runs: 2, outputs: { webhook: 'true', audit: 'true', channels: 'audit ok; github ok; webhook ok' },
      });
      expect(fake.calls.filter((c) => c.startsWith('announce'))).toEqual(['announce:released', 'announce:released']);
    });
  });

  it('a channel refused for good waits for a decision; `decide abort` keeps the release succeeded, the other channels delivered', async () => {
    const fake = fakeActivities({ channels: ['audit', 'webhook'], failChannel: { webhook: 'fatal' } });
    await withRelease(env, bundle, fake, testInput(), async ({ handle }) => {
      await approve(handle);
      const s = await waitForStatus(handle, pending, 'a pending decision on the announcement');
      expect(s.pendingDecision!.error).toContain('- chat webhook: webhook refused the announcement (fake)\n');
      expect(s.message).toMatch(/^Announce the release failed: Announcing/);
      await handle.executeUpdate(decideUpdate, { args: [{ decision: 'abort', operator: 'carol' }] });
      const result = await handle.result();
      expect(result.outcome).toBe('succeeded');
      expect(result.message).toContain('The announcement was abandoned by decision');
      expect(fake.deliveries).toEqual(['audit:released#1', 'webhook:released#1']);
    });
  });

  it('announces a rollback channel by channel too', async () => {
    const fake = fakeActivities({ fail: { health: 'fatal' }, channels: ['audit', 'webhook'] });
    await withRelease(env, bundle, fake, testInput(), async ({ handle }) => {
      await approve(handle);
      const outcome = await handle.result().then(() => 'completed', () => 'failed');
      expect(outcome).toBe('failed');
      expect(fake.deliveries).toEqual(['audit:rolled_back#1', 'webhook:rolled_back#1']);
    });
  });
});
