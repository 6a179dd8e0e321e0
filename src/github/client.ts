/**
 * The GitHub REST client gantry uses: @octokit/rest with @octokit/plugin-retry (5xx and network errors, reads
 * only) and @octokit/plugin-throttling (primary and secondary rate limits, `retry-after` honoured, writes paced
 * as GitHub asks). One client per activity call; the token is resolved on the worker from its reference and
 * lives only in the client's auth header.
 *
 * Writes (POST, PATCH, PUT, DELETE) are never retried by the client: a write that failed with a 5xx or got no
 * answer may have landed all the same (GitHub applied it, then the answer was lost or late), and posting it
 * again would make a second comment, release or deployment. The caller decides, after looking whether it landed
 * (github-announce.ts: `writeOnce`). A rate-limited write (403/429 from the throttling plugin) was refused by
 * GitHub before it did anything, so the throttling plugin still retries it after `retry-after`.
 *
 * Loading: the Octokit packages are ESM-only and this package is CommonJS. They are loaded with a real dynamic
 * `import()` (which TypeScript's `module: node20` keeps as `import()` in CommonJS output), so they load on every
 * Node 20 release, under vitest/tsx and from the compiled dist/ alike; a static import would compile to
 * `require()`, which loads ESM only from Node 20.19 on.
 */
import Bottleneck from 'bottleneck';
import type { Octokit } from '@octokit/rest';
import type { GithubConfig } from '../config/schema';
import { resolveSecret } from '../activities/secrets';
import { activityContext, cancellation } from '../activities/heartbeat';

/** The client type the GitHub steps use: the REST methods plus `paginate`. */
export type GithubClient = Octokit;

/** Knobs for retries and waits. Defaults follow GitHub's guidance; tests shrink the waits. */
export interface GithubClientTuning {
  /**
   * Retries of a read that failed with 5xx or no answer (plugin-retry), waiting 1, 4, 9 … × `retryBaseMs`. For a
   * write, how often it is checked for and sent again when it may not have landed (github-announce.ts).
   * @default 3
   */
  retries: number;
  /** @default 1000 */
  retryBaseMs: number;
  /**
   * Retries after a rate limit (primary: until `x-ratelimit-reset`; secondary: `retry-after`, else 60 s).
   * @default 2
   */
  rateLimitRetries: number;
  /**
   * Longest in-process wait for a rate limit. A longer one fails the call instead (the step classifies it as
   * retryable and says when the limit resets), so a step never sits silently past its heartbeat timeout.
   * @default 30000
   */
  maxRateLimitWaitMs: number;
  /** Milliseconds per second of `retry-after` / reset time. 1000 honours GitHub exactly. @default 1000 */
  retryAfterUnitMs: number;
  /** Minimum spacing of write requests (GitHub asks for one second). @default 1000 */
  writeSpacingMs: number;
  /** Minimum spacing of writes that notify people (comments, issues, releases). @default 3000 */
  notificationSpacingMs: number;
  /** One request's time limit, then it counts as unanswered (and is retried). @default 30000 */
  requestTimeoutMs: number;
}

export const DEFAULT_TUNING: GithubClientTuning = {
  retries: 3,
  retryBaseMs: 1000,
  rateLimitRetries: 2,
  maxRateLimitWaitMs: 30_000,
  retryAfterUnitMs: 1000,
  writeSpacingMs: 1000,
  notificationSpacingMs: 3000,
  requestTimeoutMs: 30_000,
};

export interface GithubClientOptions {
  /** `https://api.github.com`, or `https://HOST/api/v3` for GitHub Enterprise Server. */
  baseUrl: string;
  token: string;
  tuning?: Partial<GithubClientTuning>;
  /** Where the client's warnings go (default: the activity's logger, or the console outside an activity). */
  log?: { warn(message: string): void };
  /** Aborts every request (default: the running activity's cancellation). */
  signal?: AbortSignal;
  userAgent?: string;
}

type OctokitModules = {
  Octokit: typeof import('@octokit/rest').Octokit;
  retry: typeof import('@octokit/plugin-retry').retry;
  throttling: typeof import('@octokit/plugin-throttling').throttling;
};

let modules: Promise<OctokitModules> | undefined;

/** Load the ESM-only Octokit packages once (a real `import()`, see the module comment). */
export function loadOctokit(): Promise<OctokitModules> {
  modules ??= Promise.all([import('@octokit/rest'), import('@octokit/plugin-retry'), import('@octokit/plugin-throttling')]).then(
    ([rest, retry, throttling]) => ({ Octokit: rest.Octokit, retry: retry.retry, throttling: throttling.throttling }),
  );
  return modules;
}

function logger() {
  const ctx = activityContext();
  if (ctx) {
    return {
      debug: () => undefined,
      info: () => undefined,
      warn: (message: string) => ctx.log.warn(`github: ${message}`),
      // Octokit logs each failed request as an error; the step reports real failures itself, classified.
      error: (message: string) => ctx.log.warn(`github: ${message}`),
    };
  }
  return {
    debug: () => undefined,
    info: () => undefined,
    warn: (message: string) => console.warn(`github: ${message}`),
    error: (message: string) => console.warn(`github: ${message}`),
  };
}

/** A client with retries and throttling; the token is only ever in its Authorization header. */
export async function createGithubClient(options: GithubClientOptions): Promise<GithubClient> {
  const { Octokit, retry, throttling } = await loadOctokit();
  const t: GithubClientTuning = { ...DEFAULT_TUNING, ...options.tuning };
  const signal = options.signal ?? cancellation();
  const log = options.log ? { debug: () => undefined, info: () => undefined, warn: (m: string) => options.log!.warn(m), error: (m: string) => options.log!.warn(m) } : logger();

  // The token is bound to the configured API base URL: a request anywhere else (an absolute URL from a
  // response, say) goes without it. fetch itself drops it on cross-origin redirects.
  const base = options.baseUrl.replace(/\/+$/, '');
  const fetchWithTimeout: typeof fetch = (input, init) => {
    const signals = [signal, AbortSignal.timeout(t.requestTimeoutMs)];
    if (init?.signal) signals.push(init.signal);
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const headers = new Headers(init?.headers);
    if (url !== base && !url.startsWith(`${base}/`) && !url.startsWith(`${base}?`)) headers.delete('authorization');
    return fetch(input, { ...init, headers, signal: AbortSignal.any(signals) });
  };

  const onLimit = (kind: string) => (retryAfterSeconds: number, req: { method: string; url: string }, _o: unknown, retryCount: number) => {
    const waitMs = retryAfterSeconds * t.retryAfterUnitMs;
    if (retryCount < t.rateLimitRetries && waitMs <= t.maxRateLimitWaitMs) {
      log.warn(`${kind} rate limit on ${req.method} ${req.url}; retrying in ${retryAfterSeconds}s (retry ${retryCount + 1} of ${t.rateLimitRetries})`);
      return true;
    }
    log.warn(`${kind} rate limit on ${req.method} ${req.url}; not waiting ${retryAfterSeconds}s in this call`);
    return false;
  };

  // Separate limiter groups only when the spacing differs from the plugin's (shared, process-wide) defaults.
  const groups: Record<string, unknown> = {};
  if (t.writeSpacingMs !== DEFAULT_TUNING.writeSpacingMs) {
    groups.write = new Bottleneck.Group({ id: `gantry-write-${t.writeSpacingMs}`, maxConcurrent: 1, minTime: t.writeSpacingMs });
  }
  if (t.notificationSpacingMs !== DEFAULT_TUNING.notificationSpacingMs) {
    groups.notifications = new Bottleneck.Group({
      id: `gantry-notifications-${t.notificationSpacingMs}`,
      maxConcurrent: 1,
      minTime: t.notificationSpacingMs,
    });
  }

  const Client = Octokit.plugin(retry, throttling);
  const client = new Client({
    auth: options.token,
    baseUrl: options.baseUrl.replace(/\/+$/, ''),
    userAgent: options.userAgent ?? 'gantry',
    log,
    request: { fetch: fetchWithTimeout },
    // 403 and 429 are rate limits (the throttling plugin's job, honouring retry-after) or refusals; never
    // retry them blindly here as well.
    retry: { retries: t.retries, retryAfterBaseValue: t.retryBaseMs, doNotRetry: [400, 401, 403, 404, 409, 410, 422, 429, 451] },
    throttle: {
      onRateLimit: onLimit('primary'),
      onSecondaryRateLimit: onLimit('secondary'),
      retryAfterBaseValue: t.retryAfterUnitMs,
      ...groups,
    },
  });
  // Registered last, so it runs first: a write gets no retries from plugin-retry (see the module comment).
  client.hook.before('request', (options) => {
    if (!READS.has(options.method.toUpperCase())) options.request = { ...options.request, retries: 0 };
  });
  return client;
}

/** Requests that change nothing, which plugin-retry may send again. */
const READS = new Set(['GET', 'HEAD']);

/** Whether a failed write may have landed: GitHub answered 5xx, or no answer came (Octokit reports that as 500). */
export function mayHaveLanded(err: unknown): boolean {
  const status = (err as { status?: unknown } | null)?.status;
  return typeof status !== 'number' || status >= 500;
}

/** A client for a service's `github:` config: the token resolved from its reference on this worker. */
export async function githubClientFor(github: GithubConfig, env: NodeJS.ProcessEnv, tuning?: Partial<GithubClientTuning>): Promise<GithubClient> {
  const token = resolveSecret(github.token, env);
  return createGithubClient({ baseUrl: github.baseUrl, token, tuning });
}

/** `owner/repo` for messages. */
export function repoName(github: Pick<GithubConfig, 'owner' | 'repo'>): string {
  return `${github.owner}/${github.repo}`;
}
