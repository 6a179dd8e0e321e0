/**
 * Cancelling a release: before production it ends cleanly as cancelled; once the production deploy has begun,
 * deploy and health finish first (non-cancellable) and status says so.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WorkflowFailedError } from '@temporalio/client';
import { CancelledFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { approveUpdate, statusQuery } from '../../src/shared/release';
import { fakeActivities } from '../helpers/fake-activities';
import { timeSkippingEnv } from '../helpers/servers';
import { BEFORE_GATE, bundleReleaseWorkflow, gateOpen, latch, stepOf, testInput, waitForStatus, withRelease, type ReleaseHandle } from './harness';

let env: TestWorkflowEnvironment;
let bundle: WorkflowBundleWithSourceMap;

beforeAll(async () => {
  [env, bundle] = await Promise.all([timeSkippingEnv(), bundleReleaseWorkflow()]);
});

afterAll(async () => {
  await env?.teardown();
});

/** Await the result of a cancelled release: a WorkflowFailedError caused by a CancelledFailure. */
async function expectCancelled(handle: ReleaseHandle): Promise<void> {
  const err = await handle.result().then(
    (r) => { throw new Error(`expected the release to be cancelled, it returned outcome ${r.outcome}`); },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(WorkflowFailedError);
  const cause = (err as WorkflowFailedError).cause;
  expect(cause).toBeInstanceOf(CancelledFailure);
  expect((await handle.describe()).status.name).toBe('CANCELLED');
}

describe('cancelling a release', () => {
  it('during the approval gate ends the release cancelled with nothing deployed to production', async () => {
    const fake = fakeActivities();
    await withRelease(env, bundle, fake, testInput(), async ({ handle }) => {
      await waitForStatus(handle, gateOpen, 'the approval gate to open');
      await handle.cancel();
      await expectCancelled(handle);
      const status = await handle.query(statusQuery);
      expect(status.outcome).toBe('cancelled');
      expect(status.message).toContain('nothing was deployed to production');
      for (const name of ['deployProduction', 'health', 'rollback', 'announce'] as const) expect(stepOf(status, name).state).toBe('skipped');
      expect(fake.calls).toEqual(BEFORE_GATE);
    });
  });

  it('while production is deploying lets deploy and health finish, notes the request, skips the announcement', async () => {
    const deploy = latch(); // production deploy runs until the test has cancelled
    const fake = fakeActivities({ holdUntil: { 'deploy:production': deploy.promise } });
    await withRelease(env, bundle, fake, testInput(), async ({ handle, input }) => {
      await waitForStatus(handle, gateOpen, 'the approval gate to open');
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] });
      await waitForStatus(handle, (s) => s.stage === 'deploy-production', 'the production deploy to start');
      await handle.cancel();
      const noted = await waitForStatus(handle, (s) => s.cancellation.requested, 'the cancellation to be noted');
      expect(noted.cancellation.note).toContain('deploy, health and any rollback finish first; the announcement is skipped');
      expect(noted.cancellation.at).toBeDefined();
      expect(noted.outcome).toBeUndefined();
      expect(noted.stage).toBe('deploy-production');
      deploy.open();

      await expectCancelled(handle);
      // A cancelled execution carries no message of its own; the status says what production runs.
      const status = await handle.query(statusQuery);
      expect(status.outcome).toBe('cancelled');
      expect(status.message).toContain(`Production state: running ${input.version}, healthy`);
      expect(stepOf(status, 'deployProduction').state).toBe('succeeded');
      expect(stepOf(status, 'health').state).toBe('succeeded');
      expect(stepOf(status, 'announce').state).toBe('skipped');
      expect(status.cancellation).toMatchObject({ requested: true });
      expect(fake.calls).toEqual([...BEFORE_GATE, 'deploy:production', 'health']);
    });
  });

  it('while a step before the gate runs stops that step and ends cancelled', async () => {
    const fake = fakeActivities({ holdUntil: { build: latch().promise } }); // a build that only a cancel ends
    await withRelease(env, bundle, fake, testInput(), async ({ handle }) => {
      await waitForStatus(handle, (s) => s.stage === 'build', 'the build to start');
      await handle.cancel();
      await expectCancelled(handle);
      const status = await handle.query(statusQuery);
      expect(status.outcome).toBe('cancelled');
      expect(stepOf(status, 'build')).toMatchObject({ state: 'skipped', error: 'cancelled while running' });
      expect(status.gate.openedAt).toBeUndefined();
      expect(fake.calls).toEqual(['preflight', 'tag', 'build']);
    });
  });

  it('while production is deploying still rolls back when health fails, and says so', async () => {
    const deploy = latch();
    const fake = fakeActivities({ holdUntil: { 'deploy:production': deploy.promise }, fail: { health: 'fatal' } });
    await withRelease(env, bundle, fake, testInput(), async ({ handle }) => {
      await waitForStatus(handle, gateOpen, 'the approval gate to open');
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] });
      await waitForStatus(handle, (s) => s.stage === 'deploy-production', 'the production deploy to start');
      await handle.cancel();
      await waitForStatus(handle, (s) => s.cancellation.requested, 'the cancellation to be noted');
      deploy.open();
      await expectCancelled(handle);
      const status = await handle.query(statusQuery);
      expect(status.outcome).toBe('cancelled');
      expect(status.message).toContain('Production state: rolled back to the previous image');
      expect(stepOf(status, 'rollback').state).toBe('succeeded');
      expect(stepOf(status, 'announce').state).toBe('skipped');
      expect(fake.calls).toEqual([...BEFORE_GATE, 'deploy:production', 'health', 'rollback']);
    });
  });
});
