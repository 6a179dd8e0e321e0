/**
 * gantry's workflow-side metrics: small functions the release calls where something worth counting happens.
 * They go through the SDK's workflow `metricMeter`, which the worker hands to its Runtime (Prometheus when the
 * worker runs with `--metrics`, nothing otherwise). Deterministic: no I/O, and the SDK drops every value while
 * the workflow replays, so a replay never counts a release twice. Names and labels: docs/metrics.md.
 *
 * The SDK adds `namespace`, `taskQueue` and `workflowType` to every value. Label values here are bounded: the
 * service (from the worker's config), the step, the outcome; never a version, a person or free text.
 */
import { metricMeter, workflowInfo } from '@temporalio/workflow';
import type { Decision, Outcome } from '../shared/release';
import type { StepName } from '../shared/steps';
import { messageKind, METRIC } from '../telemetry/names';

/** How the approval gate closed. */
export type GateResult = 'approved' | 'rejected' | 'timed_out' | 'cancelled';
/** How a step ended, as the release saw it. */
export type StepResult = 'succeeded' | 'failed' | 'cancelled';

const nonNegative = (n: number): number => (Number.isFinite(n) && n > 0 ? n : 0);

/** Seconds since the release started (workflow time: deterministic). */
export function secondsSinceStart(): number {
  return nonNegative((Date.now() - workflowInfo().startTime.getTime()) / 1000);
}

/** Seconds between two ISO timestamps of the status (a step's startedAt and endedAt); now when `to` is absent. */
export function secondsBetween(from: string | undefined, to?: string): number {
  if (!from) return 0;
  return nonNegative(((to ? Date.parse(to) : Date.now()) - Date.parse(from)) / 1000);
}

/**
 * The release ended with `outcome`: counts it (`release_success_total`, `release_failure_total` with the outcome,
 * or `release_dry_run_total`) and records its duration, from the start of the workflow unless `seconds` is given.
 */
export function countRelease(outcome: Outcome, service: string, seconds: number = secondsSinceStart()): void {
  if (outcome === 'planned') {
    metricMeter.createCounter(METRIC.releaseDryRun, undefined, 'Dry runs (nothing changed)').add(1, { service });
    return;
  }
  if (outcome === 'succeeded') {
    metricMeter.createCounter(METRIC.releaseSuccess, undefined, 'Releases that ended succeeded').add(1, { service });
  } else {
    metricMeter.createCounter(METRIC.releaseFailure, undefined, 'Releases that ended other than succeeded, by outcome').add(1, { service, outcome });
  }
  metricMeter.createHistogram(METRIC.releaseDuration, 'float', 's', 'Release duration from start to end, by outcome')
    .record(nonNegative(seconds), { service, outcome });
}

/** The approval gate closed after `seconds` open. */
export function observeGateWait(seconds: number, result: GateResult, service: string): void {
  metricMeter.createHistogram(METRIC.gateWait, 'float', 's', 'Time the approval gate was open, by how it closed')
    .record(nonNegative(seconds), { service, result });
}

/**
 * A message reached the release: an accepted approve or reject counts in `release_manual_approval_total`; any
 * refused message (vote, decide, cancel, or a signal name that does not exist: kind `other`) counts in
 * `release_refused_message_total`. Accepted decisions and cancellations are counted by `countDecision` and by
 * the release's outcome.
 */
export function countVote(kind: string, accepted: boolean, service: string): void {
  const k = messageKind(kind);
  if (!accepted) {
    metricMeter.createCounter(METRIC.refusedMessage, undefined, 'Messages the release refused, by kind').add(1, { service, kind: k });
  } else if (k === 'approve' || k === 'reject') {
    metricMeter.createCounter(METRIC.manualApproval, undefined, 'Accepted votes at the approval gate').add(1, { service, vote: k });
  }
}

/** A decision after a step used up its retries: by an operator, or `timeout` when none came in time. */
export function countDecision(step: StepName, decision: Decision, by: 'operator' | 'timeout', service: string): void {
  metricMeter.createCounter(METRIC.decision, undefined, 'Decisions after a step used up its retries').add(1, { service, step, decision, by });
}

/** One run of a step ended after `seconds` (retries and backoff included), having used `attempts` attempts. */
export function observeStep(name: StepName, seconds: number, attempts: number, result: StepResult, service: string): void {
  const tags = { service, step: name, result };
  metricMeter.createHistogram(METRIC.stepDuration, 'float', 's', 'Step duration, retries included').record(nonNegative(seconds), tags);
  metricMeter.createHistogram(METRIC.stepAttempts, 'int', undefined, 'Activity attempts per step run').record(Math.max(1, Math.round(nonNegative(attempts))), tags);
}

/** Production was rolled back; `healthy` says whether the previous image passed its health checks again. */
export function countRollback(service: string, healthy = true): void {
  metricMeter.createCounter(METRIC.rollback, undefined, 'Rollbacks of production').add(1, { service, healthy: String(healthy) });
}

/** The release waited `seconds` for its deploy lane (once lanes exist). */
export function observeLaneWait(seconds: number, lane: string, service: string): void {
  metricMeter.createHistogram(METRIC.laneWait, 'float', 's', 'Time a release waited for its deploy lane').record(nonNegative(seconds), { service, lane });
}
