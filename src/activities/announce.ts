/**
 * Announce: the release's record and its news, over independent channels behind one contract
 * (./announcers/types.ts):
 *
 * 1. `audit` (announcers/audit.ts): hash-chained JSON lines in announce.auditLog, one per release action and one
 *    for the outcome; `gantry audit verify` checks the chain. First, so the record exists even when chat is broken;
 * 2. `artifacts` (announcers/artifacts.ts): `release-notes.md` (the CHANGELOG section, read from the tag),
 *    `release-metadata.json` and the signed release manifest in announce.artifactsDir;
 * 3. the extra channels the worker plugs in (src/activities/index.ts: GitHub, announcers/github.ts, and any
 *    other), which get the CHANGELOG section the artifacts channel read, and `webhook` (announcers/webhook.ts):
 *    Slack-compatible `text` + `blocks` and a generic JSON event in one body.
 *
 * Three activities:
 *
 * - `announcePlan`: the channels this worker has, in order, each with its stage and whether it has anything to
 *   do for the request. The release workflow runs:
 * - `announceChannel`, once per enabled channel: that channel's delivery, heartbeating all along (a delivery on a
 *   worker that died is retried on another within the heartbeat timeout). Its completion, in the release's
 *   history, is the record that the channel delivered: the workflow never runs a completed channel again, on a
 *   retry of the step (`decide retry`) or after a worker or server restart. What a channel passes to the ones
 *   after it (the CHANGELOG section, the audit line) travels in these activities' results and requests. No
 *   worker keeps local state another worker would need.
 * - `announce`: every channel in one activity, for releases recorded before per-channel deliveries
 *   (`gantry-deliveries` in src/workflows/run.ts); the end-of-release record (`recordEnd`) uses it with the audit
 *   log alone. A retry of it runs every channel again; each is safe to repeat on its own (audit line ids,
 *   artifacts rewritten whole, GitHub found where it landed, the webhook's idempotency key).
 *
 * Every enabled channel runs, whatever happened to the ones before it; the result lists each channel's outcome
 * by name (`channels`), and the summary fields the workflow and status read (webhookSent, auditLogged,
 * notesPath, metadataPath, githubReleaseUrl, manifestPath) are derived from them (announcers/summary.ts). When a
 * channel failed the step fails with a message listing every channel's result.
 */
import { ApplicationFailure } from '@temporalio/common';
import { GantryErrorType, nonRetryable, retryable } from '../shared/errors';
import type { AnnounceChannelRequest, AnnounceDelivery, AnnouncePlan, AnnounceRequest, AnnounceResult } from './types';
import { activityContext, cancellation, currentAttempt, withHeartbeat } from './heartbeat';
import { auditAnnouncer } from './announcers/audit';
import { artifactsAnnouncer } from './announcers/artifacts';
import { webhookAnnouncer } from './announcers/webhook';
import { announceSummary } from './announcers/summary';
import type { Announcer, AnnounceContext, ChannelResult } from './announcers/types';

export { formatDuration, webhookMessage, webhookBody, webhookEvent, IDEMPOTENCY_HEADER } from './announcers/webhook';
export type { AuditRecord, AuditActionRecord, AuditLine } from './announcers/audit';
export type { Announcer, AnnounceContext, ChannelResult } from './announcers/types';

/**
 * The older form of an extra channel: a function given the request and the CHANGELOG section, whose answer
 * (e.g. `githubReleaseUrl`) is merged into the result. Still accepted; new channels implement {@link Announcer}.
 */
export type ExtraAnnouncer = (req: AnnounceRequest, notes?: string) => Promise<Partial<AnnounceResult>>;

export interface AnnounceDeps {
  /** Resolves secret references (webhook URL, repo token, signing key). */
  env: NodeJS.ProcessEnv;
  /** Where per-attempt repositories go. @default os.tmpdir() */
  workDir?: string;
  /** Per git command. @default 120000 */
  gitTimeoutMs?: number;
  /** Per webhook request. @default 10000 */
  webhookTimeoutMs?: number;
  /** Channels run after the artifacts (so they get the CHANGELOG section), beside the webhook. */
  extraAnnouncers?: (Announcer | ExtraAnnouncer)[];
  /** Exactly these channels instead of the standard set (the end-of-release record uses the audit log alone). */
  only?: Announcer[];
  now?: () => Date;
}

/** Every channel, in the order they are reported. */
export function announceChannels(deps: AnnounceDeps, legacy: Partial<AnnounceResult> = {}): Announcer[] {
  if (deps.only) return deps.only;
  const extras = (deps.extraAnnouncers ?? []).map((extra, i): Announcer => {
    if (typeof extra !== 'function') return extra;
    const name = extra.name || `announcer ${i + 1}`;
    return {
      name,
      enabled: () => true,
      async announce(req, ctx) {
        const { attempt: _ignored, ...contribution } = await extra(req, ctx.section);
        Object.assign(legacy, contribution);
        return { channel: name, ok: true, detail: 'done', ...(contribution.githubReleaseUrl ? { url: contribution.githubReleaseUrl } : {}) };
      },
    };
  });
  return [
    auditAnnouncer(),
    artifactsAnnouncer({ env: deps.env, ...(deps.workDir ? { workDir: deps.workDir } : {}), ...(deps.gitTimeoutMs ? { gitTimeoutMs: deps.gitTimeoutMs } : {}) }),
    ...extras,
    webhookAnnouncer(deps.webhookTimeoutMs ? { timeoutMs: deps.webhookTimeoutMs } : {}),
  ];
}

const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** The stage a channel runs in (announcers/types.ts): 3 unless it says otherwise. */
export const stageOf = (channel: Announcer): number => channel.stage ?? 3;

export function createAnnounce(deps: AnnounceDeps) {
  const now = deps.now ?? (() => new Date());

  /** The context of one delivery: the action's id (and idempotency key) is the same on every attempt and worker. */
  const contextFor = (req: AnnounceRequest): AnnounceContext => {
    const runId = activityContext()?.info?.workflowExecution?.runId ?? 'no-run';
    const actionId = `${req.release.workflowId}/${runId}/${req.outcome}`;
    return { runId, actionId, idempotencyKey: actionId, attempt: currentAttempt(), now, env: deps.env };
  };
  const skipped = (channel: Announcer, req: AnnounceRequest): ChannelResult =>
    ({ channel: channel.name, ok: true, skipped: true, detail: channel.skipReason?.(req) ?? 'not configured for this service' });

  return {
    announcePlan: async (req: AnnounceRequest): Promise<AnnouncePlan> => {
      activityContext()?.heartbeat();
      return {
        attempt: currentAttempt(),
        channels: announceChannels(deps).map((c) => {
          const enabled = c.enabled(req);
          return { name: c.name, title: c.title ?? c.name, stage: stageOf(c), enabled, ...(enabled ? {} : { skipReason: skipped(c, req).detail }) };
        }),
      };
    },

    announceChannel: async (req: AnnounceChannelRequest): Promise<AnnounceDelivery> => {
      const { channel: name, section, auditLine, ...request } = req;
      const channels = announceChannels(deps);
      const channel = channels.find((c) => c.name === name);
      const attempt = currentAttempt();
      if (!channel) {
        // A worker with another list of channels planned this (workers of different versions on one task queue).
        throw retryable(`This worker has no announcement channel "${name}" (it has ${channels.map((c) => c.name).join(', ')}). ` +
          'Gantry retries, on whichever worker takes it; run the same gantry version with the same channels on every worker of the task queue.');
      }
      if (!channel.enabled(request)) return { attempt, ...skipped(channel, request) };
      const ctx: AnnounceContext = { ...contextFor(request), ...(section !== undefined ? { section } : {}), ...(auditLine ? { auditLine } : {}) };
      const result = await withHeartbeat(() => ({ channel: name, attempt }), () => channel.announce(request, ctx));
      return {
        attempt,
        ...result,
        channel: name,
        // What this channel leaves for the ones after it; absent when it left nothing new.
        ...(ctx.section !== undefined && ctx.section !== section ? { section: ctx.section } : {}),
        ...(ctx.auditLine && ctx.auditLine !== auditLine ? { auditLine: ctx.auditLine } : {}),
      };
    },

    announce: async (req: AnnounceRequest): Promise<AnnounceResult> => {
      const ctx = contextFor(req);
      const legacy: Partial<AnnounceResult> = {};
      const channels: ChannelResult[] = [];
      const failures: { title: string; err: unknown }[] = [];
      await withHeartbeat(() => ({ channels: channels.map((c) => c.channel) }), async () => {
        for (const channel of announceChannels(deps, legacy)) {
          if (!channel.enabled(req)) {
            channels.push(skipped(channel, req));
            continue;
          }
          try {
            channels.push({ ...(await channel.announce(req, ctx)), channel: channel.name });
          } catch (err) {
            if (cancellation().aborted) throw err;
            failures.push({ title: channel.title ?? channel.name, err });
            channels.push({ channel: channel.name, ok: false, detail: errorText(err) });
          }
        }
      });
      const result: AnnounceResult = { attempt: ctx.attempt, ...legacy, ...announceSummary(channels), channels };
      if (failures.length) throw announceFailure(req, result, failures);
      return result;
    },
  };
}

/** One failure for the whole step, naming every channel's result; retryable unless every failure is final. */
function announceFailure(req: AnnounceRequest, result: AnnounceResult, failures: { title: string; err: unknown }[]): ApplicationFailure {
  const cfg = req.announce;
  const summary = [
    cfg.auditLog ? `audit log ${result.auditLogged ? 'written' : 'not written'}` : undefined,
    cfg.webhook ? `webhook ${result.webhookSent ? 'sent' : 'not sent'}` : undefined,
    cfg.artifactsDir ? `artifacts ${result.notesPath ? 'written' : 'not written'}` : undefined,
  ].filter(Boolean).join(', ');
  const lines = failures.map((f) => `- ${f.title}: ${errorText(f.err)}`).join('\n');
  const every = (result.channels ?? [])
    .map((c) => `  ${c.channel}: ${c.skipped ? `skipped (${c.detail})` : c.ok ? `ok (${c.detail})` : 'FAILED (above)'}`)
    .join('\n');
  const allFinal = failures.every((f) => f.err instanceof ApplicationFailure && f.err.nonRetryable);
  const message = `Announcing ${req.release.service} ${req.release.version} (${req.outcome}) failed on ${failures.length} channel(s)${summary ? ` (${summary})` : ''}:\n${lines}\n` +
    `Every channel:\n${every}\n` +
    (allFinal
      ? 'The release itself is done; fix the above and retry the announce step. Repeating a channel that succeeded adds nothing: each finds what it did.'
      : 'Gantry retries; repeating a channel that succeeded adds nothing: each finds what it did.');
  const type = failures.map((f) => (f.err instanceof ApplicationFailure ? f.err.type : undefined)).find(Boolean) ?? GantryErrorType.Unavailable;
  return allFinal ? nonRetryable(type as GantryErrorType, message, { result }) : retryable(message, { result });
}
