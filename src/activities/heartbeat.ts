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

/**
 * How often activities heartbeat. Every release step has a 10 s heartbeat timeout (src/shared/steps.ts), so a
 * lost worker is noticed and the step resumes on another within about 15 s.
 */
export const HEARTBEAT_EVERY_MS = 2_000;

const lastDetails = new WeakMap<Context, { details: unknown }>();

/**
 * What a repeated heartbeat carries: the details this attempt recorded last, else those an earlier attempt left
 * (a deploy's record of what ran before must survive an attempt that died before its first `beat`).
 */
function currentDetails(ctx: Context): unknown {
  const last = lastDetails.get(ctx);
  return last ? last.details : ctx.info.heartbeatDetails;
}

/** Record progress; a lost worker is noticed within the step's heartbeat timeout. */
export function beat(details?: unknown): void {
  const ctx = activityContext();
  if (!ctx) return;
  lastDetails.set(ctx, { details });
  ctx.heartbeat(details);
}

/**
 * Run `work` (a pull, a remote script, an HTTP request, or a whole step) while repeating the last heartbeat every
 * `everyMs`, so a silent wait never looks like a lost worker, and the details recorded last (what ran before)
 * stay current.
 */
export async function keepBeating<T>(work: () => Promise<T>, everyMs = HEARTBEAT_EVERY_MS): Promise<T> {
  const ctx = activityContext();
  if (!ctx) return work();
  const timer = setInterval(() => ctx.heartbeat(currentDetails(ctx)), everyMs);
  try {
    return await work();
  } finally {
    clearInterval(timer);
  }
}

/**
 * An activity function that heartbeats every {@link HEARTBEAT_EVERY_MS} from its start to its end, whatever it is
 * waiting on (see {@link keepBeating}). Every release step's module wraps its activity in it, so none of them can
 * sit silent past its 10 s heartbeat timeout while its worker is alive.
 */
export function heartbeating<A extends unknown[], R>(fn: (...args: A) => Promise<R>): (...args: A) => Promise<R> {
  return (...args: A) => {
    const ctx = activityContext();
    if (ctx) ctx.heartbeat(currentDetails(ctx));
    return keepBeating(() => fn(...args));
  };
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
export async function withHeartbeat<T>(details: () => unknown, work: () => Promise<T>, everyMs = HEARTBEAT_EVERY_MS): Promise<T> {
  const ctx = activityContext();
  if (!ctx) return work();
  beat(details());
  const timer = setInterval(() => beat(details()), everyMs);
  try {
    return await work();
  } finally {
    clearInterval(timer);
  }
}
