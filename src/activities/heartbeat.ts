/**
 * Small helpers over the activity Context, shared by the step modules. They also work outside an activity (a
 * helper reused from a script or a test), where heartbeats go nowhere and cancellation never comes.
 */
import { Context } from '@temporalio/activity';

/** The current activity Context, or undefined outside an activity. */
export function activityContext(): Context | undefined {
  try {
    return Context.current();
  } catch {
    return undefined;
  }
}

/** The attempt (1-based) of the running activity; 1 outside an activity. */
export function currentAttempt(): number {
  return activityContext()?.info.attempt ?? 1;
}

/** Record progress; a lost worker is noticed within the step's heartbeat timeout. */
export function beat(details?: unknown): void {
  activityContext()?.heartbeat(details);
}

/** Aborts when the activity is cancelled (or its workflow closes); never aborts outside an activity. */
export function cancellation(): AbortSignal {
  return activityContext()?.cancellationSignal ?? new AbortController().signal;
}

/** Sleep that ends early with a CancelledFailure when the activity is cancelled. */
export async function pause(ms: number): Promise<void> {
  const ctx = activityContext();
  if (ctx) return ctx.sleep(ms);
  await new Promise<void>((resolve) => setTimeout(resolve, ms));
}

/**
 * Run `work` while heartbeating every `everyMs` (long git clones, test commands), so the heartbeat timeout
 * measures whether the worker is alive rather than how long the work takes.
 */
export async function withHeartbeat<T>(details: () => unknown, work: () => Promise<T>, everyMs = 5_000): Promise<T> {
  const ctx = activityContext();
  if (!ctx) return work();
  ctx.heartbeat(details());
  const timer = setInterval(() => ctx.heartbeat(details()), everyMs);
  try {
    return await work();
  } finally {
    clearInterval(timer);
  }
}
