/**
 * The benchmark's baseline: a workflow that calls as many no-op activities, one after another, as a release
 * calls on its happy path, and nothing else (no status, no handlers, no gate, no search attributes).
 */
import { proxyActivities } from '@temporalio/workflow';

export interface BareActivities {
  noop(step: number): Promise<{ attempt: number }>;
}

const { noop } = proxyActivities<BareActivities>({ startToCloseTimeout: '1m', retry: { maximumAttempts: 3 } });

export async function bareWorkflow(activityCount: number): Promise<number> {
  let attempts = 0;
  for (let i = 0; i < activityCount; i++) attempts += (await noop(i)).attempt;
  return attempts;
}
