/**
 * Failure classification shared by activities, the workflow, the CLI and tests.
 *
 * Activities throw `ApplicationFailure`s whose `type` is one of these. Types in {@link NON_RETRYABLE} are listed
 * in every step's retry policy as non-retryable, so a wrong answer is never retried even if an activity forgets
 * the `nonRetryable` flag; anything else (a registry that is down, a refused connection) is retried.
 */
import { ApplicationFailure } from '@temporalio/common';

export enum GantryErrorType {
  /** A precondition of the release does not hold (version, changelog, branch, tests). */
  PreflightFailed = 'GantryPreflightFailed',
  /** The tag exists at another commit. */
  TagConflict = 'GantryTagConflict',
  /** The build itself failed (Dockerfile error, CI run concluded failure). */
  BuildFailed = 'GantryBuildFailed',
  /** A deploy target refused the change in a way retrying cannot fix. */
  DeployFailed = 'GantryDeployFailed',
  /** An HTTP check gave a wrong answer when its window closed. */
  CheckFailed = 'GantryCheckFailed',
  /** Rolling back did not restore a healthy previous version. */
  RollbackFailed = 'GantryRollbackFailed',
  /** Rolling back put the previous version back, but it fails its health checks too. */
  RollbackUnhealthy = 'GantryRollbackUnhealthy',
  /** Config handed to an activity is unusable (missing file, bad reference). */
  ConfigInvalid = 'GantryConfigInvalid',
  /** A secret reference points at nothing on this worker. */
  SecretMissing = 'GantrySecretMissing',
  /** An external system did not answer; retry. */
  Unavailable = 'GantryUnavailable',
}

export const NON_RETRYABLE: readonly GantryErrorType[] = [
  GantryErrorType.PreflightFailed,
  GantryErrorType.TagConflict,
  GantryErrorType.BuildFailed,
  GantryErrorType.DeployFailed,
  GantryErrorType.CheckFailed,
  GantryErrorType.RollbackFailed,
  GantryErrorType.RollbackUnhealthy,
  GantryErrorType.ConfigInvalid,
  GantryErrorType.SecretMissing,
];

/** Failure types the workflow itself ends with, one per unsuccessful outcome. */
export enum ReleaseEndType {
  Failed = 'GantryReleaseFailed',
  RolledBack = 'GantryReleaseRolledBack',
  Rejected = 'GantryReleaseRejected',
  Aborted = 'GantryReleaseAborted',
  /** Cancelled by a verified `cancel` message (Temporal's own cancellation ends the execution cancelled). */
  Cancelled = 'GantryReleaseCancelled',
}

/** A failure retrying cannot fix; `message` says what happened and what to do. */
export function nonRetryable(type: GantryErrorType, message: string, details?: Record<string, unknown>): ApplicationFailure {
  return ApplicationFailure.create({ type, message, nonRetryable: true, details: details ? [details] : undefined });
}

/** A failure worth retrying (the step's retry policy decides how often). */
export function retryable(message: string, details?: Record<string, unknown>, type = GantryErrorType.Unavailable): ApplicationFailure {
  return ApplicationFailure.create({ type, message, nonRetryable: false, details: details ? [details] : undefined });
}
