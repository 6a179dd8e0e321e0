/**
 * The chat webhook channel: one POST of one JSON body to the URL in announce.webhook (a secret reference: the
 * URL is the secret). The body serves two kinds of receiver at once:
 *
 * - Slack-compatible incoming webhooks (Slack, Mattermost and the like) read `text` (notifications, plain
 *   clients) and `blocks` (Slack's layout) and ignore the other keys;
 * - anything else (an automation, a bridge to Microsoft Teams, a log collector) reads the generic event:
 *
 *   {
 *     "schema": "gantry.announce/v1",
 *     "event": "release.released" | "release.rolled_back",
 *     "outcome": "released" | "rolled_back",
 *     "release": { "service", "version", "tag", "commit", "workflowId", "runId" },
 *     "digest", "imageRef", "hosts": [...], "approvers": [...],
 *     "durationsMs": { step: ms }, "totalMs", "reason"?, "ciRunUrl"?, "at": ISO 8601,
 *     "idempotencyKey", "text", "blocks"
 *   }
 *
 * Once per release action, with the receiver's help. Every delivery of an action carries the same
 * `Idempotency-Key` header (and `idempotencyKey` in the body): `{workflowId}/{runId}/{outcome}`, the same on
 * every attempt and every worker. The workflow runs this channel as an activity of its own whose completion is
 * the record that it delivered, so a delivery that completed is never sent again. What remains is the attempt
 * that may have landed without completing: the receiver accepted the message but answered after the timeout
 * (or not at all), or the worker died before reporting. That attempt is retried, with the same key: a receiver
 * that honours the key (as the lab's does, src/lab/webhook.ts) keeps the first message and answers the repeat
 * as a success; one that ignores it (Slack's incoming webhooks) may show the message twice, and can dedupe by
 * the key itself (docs/announce.md). A 409 (a delivery with this key is still being
 * processed) is retried like a 5xx.
 */
import { GantryErrorType, nonRetryable, retryable } from '../../shared/errors';
import type { AnnounceRequest } from '../types';
import { cancellation } from '../heartbeat';
import { describeSecretRef, redact, resolveSecret } from '../secrets';
import type { Announcer, AnnounceContext, ChannelResult } from './types';

export const WEBHOOK_SCHEMA = 'gantry.announce/v1';

export interface WebhookDeps {
  /** Per request. @default 10000 */
  timeoutMs?: number;
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, '0')}m`;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const shortDigest = (d: string) => (d.startsWith('sha256:') ? d.slice(0, 19) : d.slice(0, 12));
const clip = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

/** The Slack-compatible message: `text` (notifications, plain clients) and `blocks` (Slack's layout). */
export function webhookMessage(req: AnnounceRequest): { text: string; blocks: unknown[] } {
  const { release, outcome } = req;
  const released = outcome === 'released';
  const hosts = req.hosts.length ? req.hosts.join(', ') : '—';
  const approvers = req.approvers.length ? req.approvers.join(', ') : '—';
  const durations = Object.entries(req.durations);
  const total = durations.reduce((sum, [, ms]) => sum + ms, 0);
  const durationLine = durations.length
    ? `${durations.map(([step, ms]) => `${step} ${formatDuration(ms)}`).join(' · ')} · total ${formatDuration(total)}`
    : '—';
  const summary = released
    ? `${release.service} ${release.version} is released: production (${hosts}) runs ${shortDigest(req.digest)} and answers its health checks.`
    : `${release.service} ${release.version} was rolled back: production health failed${req.reason ? ` (${req.reason})` : ''}, ` +
      `so ${hosts} run${req.hosts.length === 1 ? 's' : ''} the previous image again. Next: fix the problem and release a new version.`;
  const governance = (req.governance ?? []).map((g) => clip(g, 500));
  const text = `${released ? '✅' : '↩️'} ${summary} Commit ${req.commit.slice(0, 12)}, tag ${req.tag}, approved by ${approvers}.` +
    (governance.length ? ` ⚠️ ${governance.join(' ')}` : '');
  const field = (label: string, value: string) => ({ type: 'mrkdwn', text: clip(`*${label}*\n${esc(value)}`, 2000) });
  const blocks: unknown[] = [
    { type: 'header', text: { type: 'plain_text', text: clip(`${released ? '✅' : '↩️'} ${release.service} ${release.version} ${released ? 'released' : 'rolled back'}`, 150), emoji: true } },
    { type: 'section', text: { type: 'mrkdwn', text: clip(esc(summary), 3000) } },
    {
      type: 'section',
      fields: [
        field('Service', release.service),
        field('Version', `${release.version} (${req.tag})`),
        field('Commit', req.commit.slice(0, 12)),
        field('Digest', req.digest),
        field('Approved by', approvers),
        field('Hosts', hosts),
        field('Outcome', released ? 'released' : 'rolled back'),
        field('Durations', durationLine),
      ],
    },
    ...(governance.length ? [{ type: 'section', text: { type: 'mrkdwn', text: clip(`*⚠️ Governance*\n${governance.map((g) => `• ${esc(g)}`).join('\n')}`, 3000) } }] : []),
    {
      type: 'context',
      elements: [
        { type: 'mrkdwn', text: clip(esc(`workflow ${release.workflowId} · image ${req.imageRef}${req.ciRunUrl ? ` · CI ${req.ciRunUrl}` : ''}`), 3000) },
      ],
    },
  ];
  return { text, blocks };
}

export interface WebhookEvent {
  schema: typeof WEBHOOK_SCHEMA;
  event: `release.${AnnounceRequest['outcome']}`;
  outcome: AnnounceRequest['outcome'];
  release: { service: string; version: string; tag: string; commit: string; workflowId: string; runId: string };
  digest: string;
  imageRef: string;
  hosts: string[];
  approvers: string[];
  durationsMs: Record<string, number>;
  totalMs: number;
  reason?: string;
  ciRunUrl?: string;
  /** A hotfix, a freeze passed by break-glass, a skipped step: in words. */
  governance?: string[];
  /** The `Idempotency-Key` the delivery carries: the same on every attempt of this action. */
  idempotencyKey?: string;
  at: string;
}

/** The generic event, for receivers that are not chat apps. */
export function webhookEvent(req: AnnounceRequest, ctx: Pick<AnnounceContext, 'runId' | 'now'> & Partial<Pick<AnnounceContext, 'idempotencyKey'>>): WebhookEvent {
  return {
    schema: WEBHOOK_SCHEMA,
    event: `release.${req.outcome}`,
    outcome: req.outcome,
    release: { service: req.release.service, version: req.release.version, tag: req.tag, commit: req.commit, workflowId: req.release.workflowId, runId: ctx.runId },
    digest: req.digest,
    imageRef: req.imageRef,
    hosts: req.hosts,
    approvers: req.approvers,
    durationsMs: req.durations,
    totalMs: Object.values(req.durations).reduce((a, b) => a + b, 0),
    ...(req.reason ? { reason: req.reason } : {}),
    ...(req.ciRunUrl ? { ciRunUrl: req.ciRunUrl } : {}),
    ...(req.governance?.length ? { governance: req.governance } : {}),
    ...(ctx.idempotencyKey ? { idempotencyKey: ctx.idempotencyKey } : {}),
    at: ctx.now().toISOString(),
  };
}

/** The body posted: the generic event and the Slack-compatible message side by side. */
export function webhookBody(req: AnnounceRequest, ctx: Pick<AnnounceContext, 'runId' | 'now'> & Partial<Pick<AnnounceContext, 'idempotencyKey'>>): WebhookEvent & { text: string; blocks: unknown[] } {
  return { ...webhookEvent(req, ctx), ...webhookMessage(req) };
}

/** The header every delivery carries (the IETF httpapi draft's name, as Stripe and others use it). */
export const IDEMPOTENCY_HEADER = 'Idempotency-Key';

export function webhookAnnouncer(deps: WebhookDeps = {}): Announcer {
  const timeoutMs = deps.timeoutMs ?? 10_000;
  return {
    name: 'webhook',
    title: 'chat webhook',
    enabled: (req) => Boolean(req.announce.webhook),
    skipReason: () => 'announce.webhook is not set',
    async announce(req, ctx): Promise<ChannelResult> {
      const ref = req.announce.webhook!;
      const url = resolveSecret(ref, ctx.env);
      const what = describeSecretRef(ref);
      await postWebhook(url, webhookBody(req, ctx), what, timeoutMs, ctx.idempotencyKey);
      // A later attempt may be repeating a delivery that landed: the receiver knows it by the key.
      const again = ctx.attempt > 1 ? ` (attempt ${ctx.attempt}, ${IDEMPOTENCY_HEADER} ${ctx.idempotencyKey}: a receiver that honours it keeps one message)` : '';
      return { channel: 'webhook', ok: true, detail: `sent to ${what}${again}` };
    },
  };
}

async function postWebhook(url: string, message: unknown, ref: string, timeoutMs: number, key: string): Promise<void> {
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', [IDEMPOTENCY_HEADER]: key },
      body: JSON.stringify(message),
      signal: AbortSignal.any([AbortSignal.timeout(timeoutMs), cancellation()]),
    });
  } catch (err) {
    if (cancellation().aborted) throw err;
    const timedOut = err instanceof Error && err.name === 'TimeoutError';
    const code = (err as { cause?: { code?: string } }).cause?.code ?? (timedOut ? `no answer within ${timeoutMs} ms` : 'network error');
    // The URL is the secret: name its reference, never the URL or the library's message (which may quote it).
    throw retryable(`The chat webhook (${ref}) could not be reached: ${code}. ` +
      (timedOut
        ? 'It may have accepted the message all the same: Gantry retries with the same Idempotency-Key, so a receiver that honours it keeps one.'
        : 'Gantry retries; check the worker can reach the chat service.'));
  }
  if (res.ok) {
    await res.body?.cancel().catch(() => undefined);
    return;
  }
  const body = redact((await res.text().catch(() => '')).replace(/\s+/g, ' ').trim().slice(0, 200), [url]);
  const what = `The chat webhook (${ref}) answered ${res.status}${body ? ` "${body}"` : ''}`;
  if (res.status === 409) {
    // The idempotency draft's "a request with this key is still being processed".
    throw retryable(`${what}: an earlier delivery with the same Idempotency-Key is still being processed. Gantry retries.`);
  }
  if (res.status === 429 || res.status >= 500) {
    throw retryable(`${what}. Gantry retries.`);
  }
  throw nonRetryable(GantryErrorType.ConfigInvalid, `${what}: it refused the message. ` +
    `Check that the URL in ${ref} is a current incoming-webhook URL (it may have been revoked); fix it on the worker and retry the announce step.`);
}
