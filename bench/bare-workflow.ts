/**
 * The benchmark's baseline: a workflow that calls as many no-op activities, one after another, as a release
 * calls on its happy path, and nothing else (no status, no handlers, no gate, no search attributes).
 */
import { condition, defineSignal, proxyActivities, setHandler } from '@temporalio/workflow';

export interface BareActivities {
  noop(step: number): Promise<{ attempt: number }>;
}

const { noop } = proxyActivities<BareActivities>({ startToCloseTimeout: '1m', retry: { maximumAttempts: 3 } });

export async function bareWorkflow(activityCount: number): Promise<number> {
  let attempts = 0;
  for (let i = 0; i < activityCount; i++) attempts += (await noop(i)).attempt;
  return attempts;
}

export const goSignal = defineSignal('go');

/** The reference for the approval's round trip: wait for a bare signal, then run one no-op activity. */
export async function signalThenActivityWorkflow(): Promise<number> {
  let go = false;
  setHandler(goSignal, () => void (go = true));
  await condition(() => go);
  return (await noop(0)).attempt;
}
