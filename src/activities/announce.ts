/**
 * Announce: the release's record and its news, over independent channels behind one contract
 * (./announcers/types.ts), run in this order:
 *
 * 1. `audit` (announcers/audit.ts): hash-chained JSON lines in announce.auditLog, one per release action and one
 *    for the outcome; `gantry audit verify` checks the chain. First, so the record exists even when chat is broken;
 * 2. `artifacts` (announcers/artifacts.ts): `release-notes.md` (the CHANGELOG section, read from the tag),
 *    `release-metadata.json` and the signed release manifest in announce.artifactsDir;
 * 3. the extra channels the worker plugs in (src/activities/index.ts: GitHub, announcers/github.ts, and any
 *    other), which get the CHANGELOG section the artifacts channel read;
 * 4. `webhook` (announcers/webhook.ts): Slack-compatible `text` + `blocks` and a generic JSON event in one body.
 *
 * Every enabled channel runs, whatever happened to the ones before it; the result lists each channel's outcome
 * by name (`channels`), and the summary fields the workflow and status read (webhookSent, auditLogged,
 * notesPath, metadataPath, githubReleaseUrl, manifestPath) are derived from them. When any channel failed the
 * step fails with a message listing every channel's result: retryable unless every failure is final.
 *
 * Idempotent across retries: each action (`released`, `rolled_back`) of each workflow run is announced once.
 * The audit log knows its lines by id; the webhook has a ledger of delivery markers next to the audit log; the
 * artifacts are rewritten whole; GitHub finds what it already did. A channel that already succeeded is not
 * repeated on a retry.
 */
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { GantryErrorType, nonRetryable, retryable } from '../shared/errors';
import type { AnnounceRequest, AnnounceResult } from './types';
import { activityContext, cancellation, currentAttempt } from './heartbeat';
import { auditAnnouncer } from './announcers/audit';
import { artifactsAnnouncer } from './announcers/artifacts';
import { webhookAnnouncer } from './announcers/webhook';
import type { Announcer, AnnounceContext, ChannelResult } from './announcers/types';

export { formatDuration, webhookMessage, webhookBody, webhookEvent } from './announcers/webhook';
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
  /**
   * Where delivery markers go when announce.auditLog is not set (with an audit log they sit next to it, in
   * `<auditLog>.ledger/`). @default $GANTRY_STATE_DIR/ledger, else ~/.gantry/ledger
   */
  ledgerDir?: string;
  /** Channels run after the artifacts (so they get the CHANGELOG section) and before the webhook. */
  extraAnnouncers?: (Announcer | ExtraAnnouncer)[];
  /** Exactly these channels instead of the standard set (the end-of-release record uses the audit log alone). */
  only?: Announcer[];
  now?: () => Date;
}

/** Every channel, in the order they run. */
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

export function createAnnounce(deps: AnnounceDeps) {
  const now = deps.now ?? (() => new Date());

  return {
    announce: async (req: AnnounceRequest): Promise<AnnounceResult> => {
      const info = activityContext()?.info;
      const runId = info?.workflowExecution?.runId ?? 'no-run';
      const actionId = `${req.release.workflowId}/${runId}/${req.outcome}`;
      const ledgerKey = `${req.release.workflowId.replace(/[^A-Za-z0-9._-]/g, '_')}.${createHash('sha256').update(actionId).digest('hex').slice(0, 16)}.${req.outcome}`;
      const cfg = req.announce;
      const ledgerDir = cfg.auditLog
        ? `${path.resolve(cfg.auditLog)}.ledger`
        : deps.ledgerDir ?? (deps.env.GANTRY_STATE_DIR ? path.join(deps.env.GANTRY_STATE_DIR, 'ledger') : path.join(os.homedir(), '.gantry', 'ledger'));
      const attempt = currentAttempt();
      const ctx: AnnounceContext = { runId, actionId, ledgerKey, ledgerDir, attempt, now, env: deps.env };

      const legacy: Partial<AnnounceResult> = {};
      const channels: ChannelResult[] = [];
      const failures: { title: string; err: unknown }[] = [];
      for (const channel of announceChannels(deps, legacy)) {
        if (!channel.enabled(req)) {
          channels.push({ channel: channel.name, ok: true, skipped: true, detail: channel.skipReason?.(req) ?? 'not configured for this service' });
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

      const done = (name: string) => channels.find((c) => c.channel === name && c.ok && !c.skipped);
      const artifacts = done('artifacts');
      const github = done('github');
      const result: AnnounceResult = {
        attempt,
        ...legacy,
        webhookSent: Boolean(done('webhook')),
        auditLogged: Boolean(done('audit')),
        ...(artifacts?.files?.notes ? { notesPath: artifacts.files.notes } : {}),
        ...(artifacts?.files?.metadata ? { metadataPath: artifacts.files.metadata } : {}),
        ...(artifacts?.files?.manifest ? { manifestPath: artifacts.files.manifest } : {}),
        ...(artifacts?.files?.signature ? { manifestSignaturePath: artifacts.files.signature } : {}),
        ...(github?.url ? { githubReleaseUrl: github.url } : {}),
        channels,
      };
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
      ? 'The release itself is done; fix the above and retry the announce step. Channels that already succeeded are not repeated.'
      : 'Gantry retries; channels that already succeeded are not repeated.');
  const type = failures.map((f) => (f.err instanceof ApplicationFailure ? f.err.type : undefined)).find(Boolean) ?? GantryErrorType.Unavailable;
  return allFinal ? nonRetryable(type as GantryErrorType, message, { result }) : retryable(message, { result });
}
