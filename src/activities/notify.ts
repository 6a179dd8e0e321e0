/**
 * Notices to the approvers' channel (`notices.webhook`, a Slack-compatible incoming webhook): the gate opened, a
 * reminder before it times out, it timed out, a long wait for the lane, a break-glass, a hotfix.
 *
 * The webhook comes from the worker's own config for the service, never from the request, so a request cannot
 * send anything anywhere else; the URL is the secret and never appears in a result or an error. The Web UI link is
 * rebuilt from the worker's `notices.webUi` too. One POST per attempt carries an `Idempotency-Key` header
 * (`<workflowId>/<runId>/<kind>/<environment>`, also in the body) for receivers that drop repeats.
 *
 * The release never waits on this: the workflow sends notices without blocking, and a channel that is down only
 * costs the channel its notice.
 */
import { ConfigError } from '../config/load';
import { GantryErrorType, nonRetryable, retryable } from '../shared/errors';
import { NOTICE_KINDS, noticeIdempotencyKey, noticeMessage, webUiLink, type NoticeRequest } from '../shared/notices';
import { SERVICE_NAME } from '../shared/release';
import { activityContext, cancellation, currentAttempt } from './heartbeat';
import type { ConfigSource } from './resolve';
import { describeSecretRef, redact, resolveSecret } from './secrets';

export const NOTICE_SCHEMA = 'gantry.notice/v1';

export interface NotifyDeps {
  /** The worker's release config: the webhook reference and the Web UI address come from here. */
  config: ConfigSource;
  /** Where `{ env: NAME }` references resolve. */
  env: NodeJS.ProcessEnv;
  /** @default globalThis.fetch */
  fetch?: typeof fetch;
  /** Per request. @default 10000 */
  timeoutMs?: number;
}

export interface NotifyResult {
  attempt: number;
  sent: boolean;
  detail: string;
}

/** What is posted: the Slack-compatible message, and the notice as data for receivers that are not chat apps. */
export interface NoticeBody {
  schema: typeof NOTICE_SCHEMA;
  kind: NoticeRequest['kind'];
  idempotencyKey: string;
  release: { service: string; version: string; environment: string; workflowId: string; runId: string };
  text: string;
  blocks: unknown[];
}

export function createNotify(deps: NotifyDeps) {
  const timeoutMs = deps.timeoutMs ?? 10_000;
  const post = deps.fetch ?? ((...args: Parameters<typeof fetch>) => fetch(...args));

  return {
    notify: async (req: NoticeRequest): Promise<NotifyResult> => {
      const attempt = currentAttempt();
      const s = req?.summary;
      if (!s || typeof s.service !== 'string' || !SERVICE_NAME.test(s.service) || !NOTICE_KINDS.includes(req.kind)) {
        throw nonRetryable(GantryErrorType.ConfigInvalid, 'Refusing the notice: it names no valid service and kind.');
      }
      if (typeof req.workflowId !== 'string' || typeof req.runId !== 'string' || typeof s.environment !== 'string') {
        throw nonRetryable(GantryErrorType.ConfigInvalid, `Refusing the notice for ${s.service}: it needs a workflow id, run id and environment.`);
      }
      let svc;
      try {
        svc = deps.config.load().config.services[s.service];
      } catch (err) {
        if (err instanceof ConfigError) {
          throw nonRetryable(GantryErrorType.ConfigInvalid,
            `The worker's release config is invalid now, so the notice cannot be sent. ${err.message}\nFix ${deps.config.path} on the worker.`);
        }
        throw err;
      }
      if (!svc) return { attempt, sent: false, detail: `the worker's config defines no service "${s.service}"` };
      const notices = svc.notices;
      if (!notices?.webhook) return { attempt, sent: false, detail: 'no notices webhook configured' };

      const ref = describeSecretRef(notices.webhook);
      const url = resolveSecret(notices.webhook, deps.env);
      if (!isHttpUrl(url)) {
        throw nonRetryable(GantryErrorType.ConfigInvalid,
          `The approvers' webhook (${ref}) is not an http(s) URL. Put the incoming-webhook URL into ${ref} on the worker.`);
      }
      const namespace = activityContext()?.info.namespace ?? 'default';
      // The link is the worker's: a request's own webUiUrl is replaced (or dropped when notices.webUi is not set).
      const { webUiUrl: _asked, ...rest } = s;
      const summary = notices.webUi ? { ...rest, webUiUrl: webUiLink(notices.webUi, namespace, req.workflowId, req.runId) } : rest;
      const key = noticeIdempotencyKey({ kind: req.kind, workflowId: req.workflowId, runId: req.runId, environment: s.environment });
      const body: NoticeBody = {
        schema: NOTICE_SCHEMA,
        kind: req.kind,
        idempotencyKey: key,
        release: { service: s.service, version: String(s.version).slice(0, 128), environment: s.environment.slice(0, 64), workflowId: req.workflowId.slice(0, 300), runId: req.runId.slice(0, 100) },
        ...noticeMessage(req.kind, summary),
      };
      const status = await send(post, url, key, body, ref, timeoutMs);
      return { attempt, sent: true, detail: `${req.kind} notice sent to ${ref} (${status})` };
    },
  };
}

function isHttpUrl(value: string): boolean {
  try {
    const u = new URL(value);
    return u.protocol === 'https:' || u.protocol === 'http:';
  } catch {
    return false;
  }
}

/** Parts of the URL that a receiver might echo back (its path segments carry the secret). */
function urlSecrets(url: string): string[] {
  const u = new URL(url);
  return [url, u.pathname, ...u.pathname.split('/').filter((p) => p.length >= 6), u.search.slice(1)];
}

async function send(post: typeof fetch, url: string, key: string, body: NoticeBody, ref: string, timeoutMs: number): Promise<number> {
  let res: Response;
  try {
    res = await post(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': key },
      body: JSON.stringify(body),
      signal: AbortSignal.any([AbortSignal.timeout(timeoutMs), cancellation()]),
    });
  } catch (err) {
    if (cancellation().aborted) throw err;
    const cause = (err as { cause?: { code?: unknown } }).cause?.code;
    const code = typeof cause === 'string' && /^[A-Z0-9_]{2,40}$/.test(cause) ? cause
      : err instanceof Error && err.name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : 'network error';
    // Never the library's message: it may quote the URL, which is the secret.
    throw retryable(`The approvers' webhook (${ref}) could not be reached: ${code}. Gantry retries; check the worker can reach the chat service.`);
  }
  const text = await res.text().catch(() => '');
  if (res.ok) return res.status;
  const answer = redact(text.replace(/\s+/g, ' ').trim().slice(0, 200), urlSecrets(url));
  const what = `The approvers' webhook (${ref}) answered ${res.status}${answer ? ` "${answer}"` : ''}`;
  if (res.status >= 500 || res.status === 429 || res.status === 408) throw retryable(`${what}. Gantry retries.`);
  throw nonRetryable(GantryErrorType.ConfigInvalid, `${what}: it refused the notice. ` +
    `Check that ${ref} holds a current incoming-webhook URL (it may have been revoked); fix it on the worker. The release goes on without this notice.`);
}
