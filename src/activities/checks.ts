/**
 * HTTP checks (smoke on staging, health on production, and the health half of a rollback): each configured
 * check is polled with backoff until every one of them passes in the same round, or the window closes.
 *
 * A refused connection or a timeout is "not up yet" and is polled again within the window. A wrong answer
 * (status, body or JSON) is a definite failure: `failureLimit` of them in a row from one check (default 3, like
 * Argo Rollouts' failureLimit or Flagger's threshold) end the checks at once, without waiting out the window, so a
 * bad version is rolled back in seconds. When the window closes, a check that answered wrongly is a
 * non-retryable CheckFailed carrying the last response (status and a body excerpt); checks that never answered
 * at all are a retryable Unavailable (the step's retry policy gives the service another window).
 */
import { GantryErrorType, nonRetryable, retryable } from '../shared/errors';
import type { HttpCheck } from '../config/schema';
import type { CheckOutcome, VerifyRequest, VerifyResult } from './types';
import { beat, cancellation, currentAttempt, heartbeating, keepBeating, pause } from './heartbeat';

/** Consecutive wrong answers from one check that end the checks early, when the request does not say. */
export const DEFAULT_FAILURE_LIMIT = 3;

export interface CheckOptions {
  /** Per-request timeout. @default 10000 */
  requestTimeoutMs?: number;
  /** First pause between rounds. @default 500 */
  initialDelayMs?: number;
  /** Longest pause between rounds. @default 5000 */
  maxDelayMs?: number;
  /** Growth of the pause per round. @default 1.5 */
  backoff?: number;
  /** Most body characters kept for messages. @default 300 */
  excerptChars?: number;
}

/** One evaluation of one check. `answered` is false for refused connections and timeouts. */
interface Probe extends CheckOutcome {
  answered: boolean;
  elapsedMs: number;
}

export function expandVersion<T>(value: T, version: string): T {
  return (typeof value === 'string' ? value.split('{version}').join(version) : value) as T;
}

/** Follow a dotted path (`version`, `build.version`, `items.0.name`) into parsed JSON. */
export function jsonPath(value: unknown, dotted: string): { found: boolean; value?: unknown } {
  let cur: unknown = value;
  for (const key of dotted.split('.')) {
    if (cur === null || typeof cur !== 'object' || !(key in (cur as Record<string, unknown>))) return { found: false };
    cur = (cur as Record<string, unknown>)[key];
  }
  return { found: true, value: cur };
}

function isScalar(v: unknown): v is string | number | boolean {
  return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean';
}

function excerpt(body: string, chars: number): string {
  const flat = body.replace(/\s+/g, ' ').trim();
  if (!flat) return '(empty body)';
  return flat.length > chars ? `${flat.slice(0, chars)}…` : flat;
}

function describeNetworkError(err: unknown, timeoutMs: number): string {
  if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) return `timed out after ${timeoutMs} ms`;
  const cause = (err as { cause?: { code?: string; message?: string } })?.cause;
  if (cause?.code) return `${cause.code}${cause.message && !cause.message.includes(cause.code) ? ` (${cause.message})` : ''}`;
  if (cause?.message) return cause.message;
  return err instanceof Error ? err.message : String(err);
}

async function probe(check: HttpCheck, version: string, opts: Required<CheckOptions>): Promise<Probe> {
  const url = expandVersion(check.url, version);
  const expect = check.expect ?? { status: 200 };
  const wantStatus = expect.status ?? 200;
  const started = Date.now();
  const base = { name: check.name, url };
  let res: Response;
  let body: string;
  try {
    const signal = AbortSignal.any([AbortSignal.timeout(opts.requestTimeoutMs), cancellation()]);
    res = await fetch(url, { method: check.method ?? 'GET', signal, redirect: 'follow', headers: { 'user-agent': 'gantry-checks' } });
    body = check.method === 'HEAD' ? '' : await res.text();
  } catch (err) {
    if (cancellation().aborted) throw cancellation().reason;
    return { ...base, ok: false, answered: false, elapsedMs: Date.now() - started, detail: `no answer: ${describeNetworkError(err, opts.requestTimeoutMs)}` };
  }
  const elapsedMs = Date.now() - started;
  const answered = { ...base, status: res.status, answered: true, elapsedMs };
  const last = `last response: ${res.status} ${excerpt(body, opts.excerptChars)}`;
  if (res.status !== wantStatus) {
    return { ...answered, ok: false, detail: `expected status ${wantStatus}, got ${res.status}; ${last}` };
  }
  if (expect.bodyContains !== undefined) {
    const needle = expandVersion(expect.bodyContains, version);
    if (!body.includes(needle)) return { ...answered, ok: false, detail: `body does not contain ${JSON.stringify(needle)}; ${last}` };
  }
  if (expect.json) {
    const want = expandVersion(expect.json.equals, version);
    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch {
      return { ...answered, ok: false, detail: `body is not JSON (expected ${expect.json.path} = ${JSON.stringify(want)}); ${last}` };
    }
    const got = jsonPath(parsed, expect.json.path);
    const equal = got.found && (got.value === want || (isScalar(got.value) && String(got.value) === String(want)));
    if (!equal) {
      return {
        ...answered,
        ok: false,
        detail: `${expect.json.path} is ${got.found ? JSON.stringify(got.value) : 'missing'}, expected ${JSON.stringify(want)}; ${last}`,
      };
    }
  }
  return { ...answered, ok: true, detail: `${res.status} in ${elapsedMs} ms` };
}

/**
 * Poll `req.checks` until all pass in one round or `req.windowMs` runs out; heartbeats once per round.
 * Exported for rollback, which verifies the restored version the same way.
 */
export async function runChecks(req: VerifyRequest, options: CheckOptions = {}): Promise<VerifyResult> {
  const opts: Required<CheckOptions> = {
    requestTimeoutMs: options.requestTimeoutMs ?? 10_000,
    initialDelayMs: options.initialDelayMs ?? 500,
    maxDelayMs: options.maxDelayMs ?? 5_000,
    backoff: options.backoff ?? 1.5,
    excerptChars: options.excerptChars ?? 300,
  };
  const { release, environment } = req;
  if (req.checks.length === 0) {
    throw nonRetryable(GantryErrorType.ConfigInvalid, `No HTTP checks are configured for ${environment}. ` +
      `Add at least one under environments.${environment}.checks (e.g. { name: health, url: "http://host:port/health" }).`);
  }
  const limit = req.failureLimit ?? DEFAULT_FAILURE_LIMIT;
  const started = Date.now();
  const deadline = started + req.windowMs;
  const strikes = new Map<string, number>();
  let delay = opts.initialDelayMs;
  let round = 0;
  for (;;) {
    round += 1;
    // A request may hang up to its timeout: the heartbeat goes on meanwhile.
    const probes = await keepBeating(() => Promise.all(req.checks.map((c) => probe(c, release.version, opts))));
    const failing = probes.filter((p) => !p.ok);
    beat({ environment, round, failing: failing.map((p) => p.name) });
    const took = `${((Date.now() - started) / 1000).toFixed(1)} s`;
    // A pass clears a check's count; no answer (still starting) leaves it as it is.
    for (const p of probes) {
      if (p.ok) strikes.set(p.name, 0);
      else if (p.answered) strikes.set(p.name, (strikes.get(p.name) ?? 0) + 1);
    }
    const struckOut = limit > 0 ? failing.filter((p) => (strikes.get(p.name) ?? 0) >= limit) : [];
    if (struckOut.length > 0) {
      const lines = failing.map((p) => `- ${p.name} ${p.url}: ${p.detail}`).join('\n');
      throw nonRetryable(GantryErrorType.CheckFailed,
        `${environment} checks for ${release.service} ${release.version} answered wrongly ${limit} times in a row (${struckOut.map((p) => p.name).join(', ')}), ` +
          `${took} into the ${Math.round(req.windowMs / 1000)} s window; gantry stopped waiting (failureLimit ${limit}):\n${lines}\n` +
          `The service answers, but not as expected. Look at the ${environment} service's logs and the response above; if the expectation is wrong, ` +
          `fix environments.${environment}.checks in the release config (failureLimit: 0 waits out the whole window).`,
        { checks: probes.map(({ name, url, ok, status, detail }) => ({ name, url, ok, status, detail })), rounds: round, failureLimit: limit });
    }
    if (failing.length === 0) {
      return {
        attempt: currentAttempt(),
        checks: probes.map(({ name, url, ok, status, detail }) => ({ name, url, ok, ...(status !== undefined ? { status } : {}), detail: `${detail} (round ${round}, ${took})` })),
      };
    }
    const remaining = deadline - Date.now();
    if (remaining <= 0) {
      const lines = failing.map((p) => `- ${p.name} ${p.url}: ${p.detail}`).join('\n');
      const window = `${Math.round(req.windowMs / 1000)} s`;
      const details = { checks: probes.map(({ name, url, ok, status, detail }) => ({ name, url, ok, status, detail })), rounds: round };
      if (failing.some((p) => p.answered)) {
        throw nonRetryable(GantryErrorType.CheckFailed,
          `${environment} checks for ${release.service} ${release.version} still failed when the ${window} window closed (${round} rounds):\n${lines}\n` +
            `The service answers, but not as expected. Look at the ${environment} service's logs and the response above; ` +
            `if the expectation is wrong, fix environments.${environment}.checks in the release config.`,
          details);
      }
      throw retryable(
        `${environment} checks for ${release.service} ${release.version} got no answer within the ${window} window (${round} rounds):\n${lines}\n` +
          `The service is not reachable: check that the ${environment} container is running and listening on that address. Gantry retries the step.`,
        details);
    }
    await pause(Math.min(delay, remaining));
    delay = Math.min(delay * opts.backoff, opts.maxDelayMs);
  }
}

export interface ChecksDeps {
  options?: CheckOptions;
}

export function createChecks(deps: ChecksDeps = {}) {
  return {
    smoke: heartbeating((req: VerifyRequest): Promise<VerifyResult> => runChecks(req, deps.options)),
    health: heartbeating((req: VerifyRequest): Promise<VerifyResult> => runChecks(req, deps.options)),
  };
}
