/**
 * Turning what GitHub answered into gantry failures that say what happened and what to do. Messages quote
 * GitHub's own `message` (never the request, whose headers hold the token) and name the setting to fix.
 */
import type { ApplicationFailure } from '@temporalio/common';
import type { GithubConfig } from '../config/schema';
import { describeSecretRef } from '../activities/secrets';
import { GantryErrorType, nonRetryable, retryable } from '../shared/errors';
import { repoName } from './client';

/** The parts of an Octokit RequestError gantry reads (duck-typed: the class lives in an ESM-only package). */
export interface GithubHttpError {
  status: number;
  message: string;
  response?: { headers?: Record<string, string | number | undefined>; data?: unknown; url?: string };
}

export function isGithubHttpError(err: unknown): err is GithubHttpError {
  return typeof err === 'object' && err !== null && (err as { name?: unknown }).name === 'HttpError' && typeof (err as { status?: unknown }).status === 'number';
}

/** GitHub's own explanation from the response body, else the error message without the docs link. */
export function githubMessage(err: GithubHttpError): string {
  const data = err.response?.data as { message?: unknown; errors?: unknown } | undefined;
  let msg = typeof data?.message === 'string' ? data.message : err.message.replace(/ - https?:\/\/\S+$/, '');
  if (Array.isArray(data?.errors) && data.errors.length > 0) {
    const parts = data.errors.map((e: unknown) =>
      typeof e === 'string' ? e : typeof e === 'object' && e !== null ? ((e as { message?: string }).message ?? JSON.stringify(e)) : String(e),
    );
    msg += ` (${parts.join('; ')})`;
  }
  return msg;
}

/** True when the answer is a primary or secondary rate limit that the client gave up waiting for. */
export function isRateLimited(err: unknown): boolean {
  if (!isGithubHttpError(err) || (err.status !== 403 && err.status !== 429)) return false;
  const h = err.response?.headers ?? {};
  return err.status === 429 || String(h['x-ratelimit-remaining']) === '0' || /rate limit/i.test(err.message);
}

/** When a rate limit lifts, in ms from now (retry-after, else x-ratelimit-reset, else a minute). */
export function rateLimitWaitMs(err: GithubHttpError, now = Date.now()): number {
  const h = err.response?.headers ?? {};
  const after = Number(h['retry-after']);
  if (Number.isFinite(after) && after > 0) return after * 1000;
  const reset = Number(h['x-ratelimit-reset']);
  if (Number.isFinite(reset) && reset > 0) return Math.max(reset * 1000 - now, 1000);
  return 60_000;
}

const SCOPES_HINT = 'see docs/github.md for the permissions each step needs';

/**
 * Classify any error from a GitHub call. `doing` completes "while …" (e.g. "listing check runs for abc1234").
 * Rate limits, 5xx and unanswered requests are retryable; a rejected token, a missing repository or a refused
 * request are not (retrying cannot fix them) and say which setting to fix.
 */
export function githubFailure(err: unknown, github: GithubConfig, doing: string): ApplicationFailure {
  const where = `${repoName(github)} at ${github.baseUrl}`;
  if (!isGithubHttpError(err)) {
    const msg = err instanceof Error ? err.message : String(err);
    return retryable(`GitHub (${github.baseUrl}) did not answer while ${doing}: ${msg}. The step retries; check that the worker can reach ${github.baseUrl}.`);
  }
  if (!err.response) {
    // Octokit reports a request that got no answer (refused, reset, timed out) as a status-500 error without a response.
    return retryable(`GitHub (${github.baseUrl}) did not answer while ${doing}: ${err.message}. The step retries; check that the worker can reach ${github.baseUrl}.`);
  }
  const said = githubMessage(err);
  if (isRateLimited(err)) {
    const wait = Math.ceil(rateLimitWaitMs(err) / 1000);
    return retryable(
      `GitHub rate-limited gantry while ${doing} (${err.status}: ${said}); it lifts in about ${wait}s. The step retries on its own; ` +
        'if this keeps happening, use a token with a higher limit (a GitHub App installation token) or release less often.',
      { retryAfterSeconds: wait },
    );
  }
  switch (err.status) {
    case 401:
      return nonRetryable(
        GantryErrorType.ConfigInvalid,
        `GitHub rejected the token while ${doing} (401: ${said}). The token from ${describeSecretRef(github.token)} is invalid or expired; ` +
          `put a valid token there (${SCOPES_HINT}) and start the release again.`,
      );
    case 403:
      return nonRetryable(
        GantryErrorType.ConfigInvalid,
        `GitHub refused ${doing} for ${where} (403: ${said}). The token from ${describeSecretRef(github.token)} lacks a permission; ` +
          `grant it (${SCOPES_HINT}) and start the release again.`,
      );
    case 404:
      return nonRetryable(
        GantryErrorType.ConfigInvalid,
        `GitHub answered 404 while ${doing}: ${where} does not exist or the token from ${describeSecretRef(github.token)} cannot see it. ` +
          `Check github.owner, github.repo and github.baseUrl in the config, and that the token can read the repository (${SCOPES_HINT}).`,
      );
    case 409:
    case 410:
    case 422:
      return nonRetryable(GantryErrorType.ConfigInvalid, `GitHub refused ${doing} for ${where} (${err.status}: ${said}). Fix what GitHub names and start the release again.`);
    default:
      if (err.status >= 500) {
        return retryable(`GitHub (${github.baseUrl}) failed while ${doing} (${err.status}: ${said}), also after retries. The step retries; see https://www.githubstatus.com or your GitHub Enterprise status.`);
      }
      return retryable(`GitHub answered ${err.status} while ${doing} for ${where}: ${said}. The step retries.`);
  }
}
