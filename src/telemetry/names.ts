/**
 * gantry's own metric names, their label values and their histogram buckets: one list, read by the workflow
 * helpers (src/workflows/metrics.ts), the activity wrapper (activities.ts) and the Prometheus exporter's bucket
 * overrides (runtime.ts). docs/metrics.md documents each one.
 *
 * Pure constants, no imports: the workflow bundle includes this file.
 */

export const METRIC = {
  /** Counter: releases that ended `succeeded`. Labels: service. */
  releaseSuccess: 'release_success_total',
  /** Counter: releases that ended any other way (dry runs excluded). Labels: service, outcome. */
  releaseFailure: 'release_failure_total',
  /** Counter: dry runs (outcome `planned`). Labels: service. */
  releaseDryRun: 'release_dry_run_total',
  /** Histogram, seconds: from the start of the release to its end (dry runs excluded). Labels: service, outcome. */
  releaseDuration: 'release_duration_seconds',
  /** Histogram, seconds: how long the approval gate was open. Labels: service, result. */
  gateWait: 'release_gate_wait_seconds',
  /** Counter: rollbacks of production. Labels: service, healthy. */
  rollback: 'release_rollback_total',
  /** Counter: accepted votes at the approval gate. Labels: service, vote (approve | reject). */
  manualApproval: 'release_manual_approval_total',
  /** Counter: messages the release refused (votes, decisions, cancellations, unknown signals). Labels: service, kind. */
  refusedMessage: 'release_refused_message_total',
  /** Counter: decisions taken after a step used up its retries. Labels: service, step, decision, by. */
  decision: 'release_decision_total',
  /** Histogram, seconds: one step from its start to its end, retries and backoff included. Labels: service, step, result. */
  stepDuration: 'release_step_duration_seconds',
  /** Histogram: activity attempts one step used. Labels: service, step, result. */
  stepAttempts: 'release_step_attempts',
  /** Histogram, seconds: one attempt of a step's activity, on the worker that ran it. Labels: service, step, result. */
  stepAttemptDuration: 'release_step_attempt_duration_seconds',
  /** Counter: attempts of steps' activities. Labels: service, step, result, retry. */
  stepAttempt: 'release_step_attempt_total',
  /** Histogram, seconds: how long a release waited for its deploy lane. Labels: service, lane. */
  laneWait: 'release_lane_wait_seconds',
} as const;

export type MetricName = (typeof METRIC)[keyof typeof METRIC];

/** The values the `kind` label of refused messages takes; anything else (an unknown signal name) is `other`. */
export const MESSAGE_KINDS = ['approve', 'reject', 'decide', 'cancel'] as const;
export type MessageKind = (typeof MESSAGE_KINDS)[number] | 'other';

export function messageKind(kind: string): MessageKind {
  return (MESSAGE_KINDS as readonly string[]).includes(kind) ? (kind as MessageKind) : 'other';
}

const MINUTE = 60;
const HOUR = 3600;
const DAY = 86_400;

/**
 * Bucket boundaries for gantry's histograms (the exporter's defaults are meant for milliseconds). Steps take
 * seconds to tens of minutes; releases and the gate minutes to days (the approval timeout defaults to 72h).
 */
export const HISTOGRAM_BUCKETS: Record<string, number[]> = {
  [METRIC.releaseDuration]: [MINUTE, 5 * MINUTE, 10 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 3 * DAY, 7 * DAY],
  [METRIC.gateWait]: [MINUTE, 5 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 4 * HOUR, 8 * HOUR, DAY, 2 * DAY, 3 * DAY, 7 * DAY],
  [METRIC.stepDuration]: [0.5, 1, 2.5, 5, 10, 30, MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 30 * MINUTE, HOUR, DAY],
  [METRIC.stepAttemptDuration]: [0.1, 0.5, 1, 2.5, 5, 10, 30, MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 30 * MINUTE, HOUR],
  [METRIC.stepAttempts]: [1, 2, 3, 5, 10, 20],
  [METRIC.laneWait]: [1, 10, 30, MINUTE, 5 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 4 * HOUR, DAY],
};
