/**
 * Following a release (src/client/follow.ts) against a real dev server: the follower is woken by the server's
 * long poll on the history whenever a workflow task completes, so it sees the gate open, and approves, without
 * waiting for its interval. The interval here is ten minutes: a follower that only read the status on its
 * interval would not show the gate within the test's time at all.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { followRelease, type FollowResult } from '../../src/client/follow';
import type { GantryClient } from '../../src/client/context';
import { releaseAddress } from '../../src/client/snapshot';
import { temporalSettings } from '../../src/connection';
import { approveUpdate, statusQuery } from '../../src/shared/release';
import { fakeActivities } from '../helpers/fake-activities';
import { devServerEnv } from '../helpers/servers';
import { bundleReleaseWorkflow, latch, testInput, withRelease } from '../workflows/harness';

let env: TestWorkflowEnvironment;
let bundle: WorkflowBundleWithSourceMap;
let gc: GantryClient;

const TEN_MINUTES = 10 * 60_000;

beforeAll(async () => {
  // The server ends an idle long poll after this long (20 s by default): short here, so a follower waiting at the gate
  // goes through several of them.
  const expiry = { 'frontend.longPollExpirationInterval': '"1s"', 'history.longPollExpirationInterval': '"1s"' };
  [env, bundle] = await Promise.all([devServerEnv({ dynamicConfig: expiry }), bundleReleaseWorkflow()]);
  gc = {
    client: env.client, connection: env.connection, namespace: 'default', uiBase: undefined, close: async () => undefined,
    settings: temporalSettings({ address: env.address, namespace: 'default', env: {} }),
  };
});

afterAll(async () => {
  await env?.teardown();
});

async function until(what: string, check: () => boolean): Promise<void> {
  for (let i = 0; i < 1500; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('following a release', () => {
  it('shows the gate as it opens and the production deploy as it starts, woken by the history rather than its ten-minute interval', async () => {
    const input = testInput();
    const build = latch();
    const production = latch();
    const fake = fakeActivities({ holdUntil: { build: build.promise, 'deploy:production': production.promise } });
    await withRelease(env, bundle, fake, input, async ({ handle }) => {
      const lines: string[] = [];
      const addr = releaseAddress(input.service, input.version, undefined);
      let result: FollowResult | undefined;
      const following = followRelease(gc, addr, { print: (l) => lines.push(l), intervalMs: TEN_MINUTES }).then((r) => { result = r; });
      // The follower has read the status once, at the build; from here on, only the history can wake it.
      await until('the follower to show the build', () => lines.some((l) => /stage: build/.test(l)));
      build.open();
      await until('the follower to show the gate', () => lines.some((l) => l.startsWith('Waiting at the approval gate')));
      expect((await handle.query(statusQuery)).gate.state).toBe('open');
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice', reason: 'looks good' }] });
      await until('the follower to show the production deploy', () => lines.some((l) => /stage: deploy-production/.test(l)));
      expect(result).toBeUndefined();
      production.open();
      await following;
      expect(result).toMatchObject({ kind: 'ended', outcome: 'succeeded' });
      expect(lines).toContainEqual(expect.stringContaining('approved by alice via update: looks good'));
      expect(lines.flatMap((l) => /stage: (\S+)/.exec(l)?.[1] ?? [])).toEqual(expect.arrayContaining(['build', 'awaiting-approval', 'deploy-production', 'done']));
    });
  });

  it('keeps watching through the server\'s long-poll expiries: after many at the gate, the approval still wakes it, and Node never warns', async () => {
    const input = testInput();
    const production = latch();
    // Each long poll is an SDK call that leaves a listener on its abort signal: a shared signal would pass Node's
    // limit of ten within these expiries and print a MaxListenersExceededWarning on the user's terminal.
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on('warning', onWarning);
    await withRelease(env, bundle, fakeActivities({ holdUntil: { 'deploy:production': production.promise } }), input, async ({ handle }) => {
      const lines: string[] = [];
      const addr = releaseAddress(input.service, input.version, undefined);
      let result: FollowResult | undefined;
      const following = followRelease(gc, addr, { print: (l) => lines.push(l), intervalMs: TEN_MINUTES }).then((r) => { result = r; });
      await until('the follower to show the gate', () => lines.some((l) => l.startsWith('Waiting at the approval gate')));
      await new Promise((r) => setTimeout(r, 12_000)); // twelve expiries of the history's long poll
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice', reason: 'after a while' }] });
      // The release is held in its production deploy: only the history can have woken the follower.
      await until('the follower to show the approval and the production deploy', () =>
        lines.some((l) => l.includes('approved by alice via update: after a while')) && lines.some((l) => /stage: deploy-production/.test(l)));
      expect(result).toBeUndefined();
      production.open();
      await following;
      expect(result).toMatchObject({ kind: 'ended', outcome: 'succeeded' });
    }).finally(() => process.off('warning', onWarning));
    expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning').map((w) => w.message)).toEqual([]);
  }, 60_000);

  it('approves as the operator once the gate opens, naming the run it was given, and follows to the end', async () => {
    const input = testInput();
    await withRelease(env, bundle, fakeActivities(), input, async ({ handle }) => {
      const lines: string[] = [];
      const addr = releaseAddress(input.service, input.version, undefined);
      const result = await followRelease(gc, addr, {
        print: (l) => lines.push(l), intervalMs: TEN_MINUTES, approveAs: 'bob', approveReason: 'ship it', runId: (await handle.describe()).runId,
      });
      expect(result).toMatchObject({ kind: 'ended', outcome: 'succeeded' });
      expect(lines).toContainEqual(expect.stringMatching(/✓ approved as bob: /));
      const status = await handle.query(statusQuery);
      expect(status.gate.approvals).toEqual([expect.objectContaining({ approver: 'bob', via: 'update', reason: 'ship it' })]);
    });
  });
});
