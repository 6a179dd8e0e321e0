/**
 * Per-attempt metrics and span attributes for the release steps, applied to the worker's activities in one place
 * (`createReleaseWorker`): every attempt of every step records its duration and result through the activity's
 * metric meter (the worker's Runtime: Prometheus with `--metrics`), and, when tracing is on, names its step,
 * service and version on the activity's span. A measurement never fails or changes the step.
 */
import { trace } from '@opentelemetry/api';
import { Context } from '@temporalio/activity';
import { CancelledFailure } from '@temporalio/common';
import { SERVICE_NAME } from '../shared/release';
import type { StepName } from '../shared/steps';
import { METRIC } from './names';

const INSTRUMENTED = Symbol.for('gantry.telemetry.instrumented');

export type AttemptResult = 'ok' | 'error' | 'cancelled';

interface RequestShape {
  environment?: unknown;
  service?: unknown;
  version?: unknown;
  release?: { service?: unknown; version?: unknown };
}

const shape = (req: unknown): RequestShape => (typeof req === 'object' && req !== null ? req : {});

/**
 * The runbook step (a StepName) an activity call serves: `deploy` is two steps, `resolvePlan` is the resolve
 * step, `announcePlan` and each channel's `announceChannel` are the announce step; any other activity is named
 * as it is.
 */
export function stepOf(activityType: string, req: unknown): string {
  const step = (s: StepName): string => s;
  if (activityType === 'resolvePlan') return step('resolve');
  if (activityType === 'announcePlan' || activityType === 'announceChannel') return step('announce');
  if (activityType === 'deploy') return step(shape(req).environment === 'production' ? 'deployProduction' : 'deployStaging');
  return activityType;
}

/** The service a request is for, as a bounded label value: a valid service name, else `unknown`. */
export function serviceOf(req: unknown): string {
  const r = shape(req);
  const s = r.release?.service ?? r.service;
  return typeof s === 'string' && SERVICE_NAME.test(s) ? s : 'unknown';
}

function versionOf(req: unknown): string | undefined {
  const r = shape(req);
  const v = r.release?.version ?? r.version;
  return typeof v === 'string' ? v.slice(0, 128) : undefined;
}

function currentContext(): Context | undefined {
  try {
    return Context.current();
  } catch {
    return undefined; // called outside an activity (a unit test calling the function directly)
  }
}

async function measured<R>(activityType: string, req: unknown, run: () => Promise<R>): Promise<R> {
  const ctx = currentContext();
  if (!ctx) return run();
  const step = stepOf(activityType, req);
  const service = serviceOf(req);
  const version = versionOf(req);
  const span = trace.getActiveSpan();
  span?.setAttributes({ 'gantry.step': step, 'gantry.service': service, 'gantry.attempt': ctx.info.attempt, ...(version ? { 'gantry.version': version } : {}) });
  const started = performance.now();
  let result: AttemptResult = 'ok';
  try {
    return await run();
  } catch (err) {
    result = err instanceof CancelledFailure || ctx.cancellationSignal.aborted ? 'cancelled' : 'error';
    throw err;
  } finally {
    try {
      const tags = { service, step, result };
      ctx.metricMeter.createHistogram(METRIC.stepAttemptDuration, 'float', 's', 'Duration of one attempt of a step, on the worker')
        .record((performance.now() - started) / 1000, tags);
      ctx.metricMeter.createCounter(METRIC.stepAttempt, undefined, 'Attempts of steps, by result; retry says whether it was a retry')
        .add(1, { ...tags, retry: String(ctx.info.attempt > 1) });
    } catch {
      // Metrics are best effort: a broken exporter must not fail a release step.
    }
  }
}

/**
 * The same activities, each measured per attempt (see the module comment). Non-function members pass through;
 * applying it twice measures once.
 */
export function instrumentActivities<T extends object>(activities: T): T {
  if ((activities as Record<symbol, unknown>)[INSTRUMENTED]) return activities;
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(activities)) {
    if (typeof value !== 'function') {
      out[name] = value;
      continue;
    }
    const fn = value as (...args: unknown[]) => Promise<unknown>;
    out[name] = function instrumented(this: unknown, ...args: unknown[]): Promise<unknown> {
      return measured(name, args[0], () => fn.apply(this, args));
    };
  }
  Object.defineProperty(out, INSTRUMENTED, { value: true, enumerable: false });
  return out as T;
}

export function isInstrumented(activities: object): boolean {
  return (activities as Record<symbol, unknown>)[INSTRUMENTED] === true;
}
