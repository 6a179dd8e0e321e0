/**
 * One real release for the telemetry tests: the sample config in declared mode (fast retries), started as
 * `gantry start` starts it, approved at the gate by update, run to its end by the test's worker.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as pause } from 'node:timers/promises';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { releaseWorkflow } from '../../src/workflows';
import { approveUpdate, releaseWorkflowId, statusQuery, type ReleaseInput, type ReleaseStatus } from '../../src/shared/release';
import { STEP_NAMES } from '../../src/shared/steps';
import type { ReleaseActivities } from '../../src/activities/types';
import { fakeActivities, type FakeActivities, type FakeBehaviour } from '../helpers/fake-activities';
import { sampleInput, startRequestFor, type SampleOverrides } from '../helpers/fixtures';

/** Errors only: the worker logs every task at INFO and every expected step failure at WARN. */
export const QUIET_RUNTIME = { logger: new DefaultLogger('ERROR'), logging: { filter: { core: 'ERROR' as const, other: 'ERROR' as const } } };

export function uniqueTaskQueue(what: string): string {
  return `telemetry-${what}-${randomUUID().slice(0, 8)}`;
}

/** A sample input with a unique version and 20 ms between attempts (attempt counts stay as configured). */
export function releaseInput(overrides: SampleOverrides = {}): ReleaseInput {
  const input = sampleInput({ version: `2.0.0-t${randomUUID().slice(0, 8)}`, ...overrides });
  for (const name of STEP_NAMES) input.steps[name].retry.initialInterval = '20ms';
  return input;
}

/** The fake steps plus the resolve step's double, which answers with the test's input. */
export function releaseActivities(input: ReleaseInput, behaviour: FakeBehaviour = {}): { fake: FakeActivities; activities: ReleaseActivities } {
  const fake = fakeActivities(behaviour);
  return { fake, activities: { ...fake, resolvePlan: async () => ({ attempt: 1, input }) } };
}

/** Start the release, approve it as alice once the gate opens (unless a dry run), and return how it ended. */
export async function runRelease(env: TestWorkflowEnvironment, taskQueue: string, input: ReleaseInput): Promise<{ workflowId: string; status: ReleaseStatus }> {
  const workflowId = releaseWorkflowId(input.service, input.version);
  const handle = await env.client.workflow.start(releaseWorkflow, { taskQueue, workflowId, args: [startRequestFor(input)] });
  if (!input.dryRun) {
    const until = Date.now() + 30_000;
    for (;;) {
      const s = await handle.query(statusQuery);
      if (s.gate.state === 'open') break;
      if (s.outcome || Date.now() > until) throw new Error(`the gate did not open: stage ${s.stage}, outcome ${s.outcome ?? 'none'}: ${s.message}`);
      await pause(50);
    }
    await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice', reason: 'staging looks good' }] });
  }
  return { workflowId, status: await handle.result() };
}
