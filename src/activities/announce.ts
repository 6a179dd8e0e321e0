/**
 * Announce: the release's record and its news. Four channels, each independent of the others:
 *
 * - the audit log: one JSON line per release action (time, actor, action, release, digest, hosts), append-only;
 * - release artifacts: `release-notes.md` (the CHANGELOG section, read from the tag) and `release-metadata.json`
 *   in announce.artifactsDir (`{service}` and `{version}` in that path are expanded);
 * - a Slack-compatible chat webhook (`text` plus `blocks`), its URL resolved from a secret reference;
 * - extra announcers plugged in by the worker (the GitHub release), whose results merge into the answer.
 *
 * Idempotent across retries: each action (`released`, `rolled_back`) of each workflow run is announced once.
 * The audit log itself says whether its line was written (each line carries the action's id); the webhook has a
 * ledger of delivery markers next to the audit log. A channel that already succeeded is skipped on a retry, and
 * one failing channel does not stop the others.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { GantryErrorType, nonRetryable, retryable } from '../shared/errors';
import type { AnnounceRequest, AnnounceResult } from './types';
import { Git, gitFailure, withTempDir } from './git';
import { activityContext, cancellation, currentAttempt, pause } from './heartbeat';
import { changelogSection } from './preflight';
import { expandReleasePath } from './paths';
import { describeSecretRef, redact, resolveSecret } from './secrets';

/**
 * Another announcement channel (the GitHub release). It gets the CHANGELOG section when announce has read it
 * (artifactsDir configured), handles its own idempotency, and what it returns (e.g. `githubReleaseUrl`) is merged
 * into the result.
 */
export type ExtraAnnouncer = (req: AnnounceRequest, notes?: string) => Promise<Partial<AnnounceResult>>;

export interface AnnounceDeps {
  /** Resolves secret references (webhook URL, repo token). */
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
  extraAnnouncers?: ExtraAnnouncer[];
  now?: () => Date;
}

export interface AuditRecord {
  /** `{workflowId}/{runId}/{action}`: one line per id. */
  id: string;
  time: string;
  actor: string;
  action: AnnounceRequest['outcome'];
  release: { service: string; version: string; tag: string; commit: string; workflowId: string; runId: string };
  digest: string;
  imageRef: string;
  hosts: string[];
  approvers: string[];
  reason?: string;
}

// ---- formatting ----

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
  const text = `${released ? '✅' : '↩️'} ${summary} Commit ${req.commit.slice(0, 12)}, tag ${req.tag}, approved by ${approvers}.`;
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
    {
      type: 'context',
      elements: [
        { type: 'mrkdwn', text: clip(esc(`workflow ${release.workflowId} · image ${req.imageRef}${req.ciRunUrl ? ` · CI ${req.ciRunUrl}` : ''}`), 3000) },
      ],
    },
  ];
  return { text, blocks };
}

// ---- files ----

async function writeAtomic(file: string, content: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  await writeFile(tmp, content);
  await rename(tmp, file);
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch {
    return false;
  }
}

/**
 * A lock file created exclusively; a lock older than `staleMs` was left by a crashed attempt and is taken over.
 * Used so that two attempts running at once (a timed-out attempt still alive beside its retry) cannot both
 * decide that a line or message is missing.
 */
async function withLock<T>(lockFile: string, fn: () => Promise<T>, staleMs = 60_000, waitMs = 15_000): Promise<T> {
  await mkdir(path.dirname(lockFile), { recursive: true });
  const until = Date.now() + waitMs;
  for (;;) {
    try {
      const fh = await open(lockFile, 'wx');
      await fh.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const age = await stat(lockFile).then((s) => Date.now() - s.mtimeMs, () => 0);
      if (age > staleMs) {
        await rm(lockFile, { force: true });
        continue;
      }
      if (Date.now() > until) {
        throw retryable(`Another attempt of this announcement holds ${lockFile}; retrying. If no attempt is running, delete that file.`);
      }
      await pause(200);
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lockFile, { force: true });
  }
}

// ---- the activity ----

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

      const result: AnnounceResult = { attempt: currentAttempt(), webhookSent: false, auditLogged: false };
      const failures: { channel: string; err: unknown }[] = [];
      const channel = async (name: string, fn: () => Promise<void>) => {
        try {
          await fn();
        } catch (err) {
          if (cancellation().aborted) throw err;
          failures.push({ channel: name, err });
        }
      };

      // 1. Audit log: first, so the record exists even when chat is broken.
      if (cfg.auditLog) {
        const auditLog = path.resolve(cfg.auditLog);
        await channel('audit log', async () => {
          await withLock(`${ledgerDir}/${ledgerKey}.audit.lock`, async () => {
            if (await auditHas(auditLog, actionId)) return;
            const record: AuditRecord = {
              id: actionId,
              time: now().toISOString(),
              actor: req.outcome === 'released' ? req.approvers.join(',') || 'gantry' : 'gantry',
              action: req.outcome,
              release: { service: req.release.service, version: req.release.version, tag: req.tag, commit: req.commit, workflowId: req.release.workflowId, runId },
              digest: req.digest,
              imageRef: req.imageRef,
              hosts: req.hosts,
              approvers: req.approvers,
              ...(req.reason ? { reason: req.reason } : {}),
            };
            await mkdir(path.dirname(auditLog), { recursive: true });
            // One write of one line with O_APPEND: lines from concurrent releases never interleave.
            const fh = await open(auditLog, 'a', 0o640);
            try {
              await fh.write(`${JSON.stringify(record)}\n`);
              await fh.sync();
            } finally {
              await fh.close();
            }
          });
          result.auditLogged = true;
        });
      }

      let section: string | undefined;
      // 2. Release notes and metadata (rewritten whole on every attempt: idempotent by construction).
      if (cfg.artifactsDir) {
        const template = cfg.artifactsDir;
        await channel('release artifacts', async () => {
          // Inside the channel: a release path that is refused fails this channel only.
          const dir = path.resolve(expandReleasePath(template, req.release));
          const { notes, section: found } = await releaseNotes(req, deps);
          section = found;
          const notesPath = path.join(dir, 'release-notes.md');
          const metadataPath = path.join(dir, 'release-metadata.json');
          await writeAtomic(notesPath, notes);
          const metadata = {
            service: req.release.service,
            version: req.release.version,
            outcome: req.outcome,
            ...(req.reason ? { reason: req.reason } : {}),
            tag: req.tag,
            commit: req.commit,
            digest: req.digest,
            imageRef: req.imageRef,
            approvers: req.approvers,
            hosts: req.hosts,
            durationsMs: req.durations,
            ...(req.ciRunUrl ? { ciRunUrl: req.ciRunUrl } : {}),
            workflowId: req.release.workflowId,
            runId,
            repo: req.repo.url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^@/]+@/i, '$1'),
            announcedAt: now().toISOString(),
          };
          await writeAtomic(metadataPath, `${JSON.stringify(metadata, null, 2)}\n`);
          result.notesPath = notesPath;
          result.metadataPath = metadataPath;
        });
      }

      // 3. Extra announcers (GitHub release); each handles its own idempotency.
      for (const [i, extra] of (deps.extraAnnouncers ?? []).entries()) {
        await channel(extra.name || `announcer ${i + 1}`, async () => {
          const { attempt: _ignored, ...contribution } = await extra(req, section);
          Object.assign(result, contribution);
        });
      }

      // 4. Chat webhook, at most once per action as far as this worker can tell.
      if (cfg.webhook) {
        const ref = cfg.webhook;
        await channel('chat webhook', async () => {
          const url = resolveSecret(ref, deps.env);
          const sent = `${ledgerDir}/${ledgerKey}.webhook.sent`;
          if (await exists(sent)) {
            result.webhookSent = true;
            return;
          }
          // The lock covers "not sent yet → send → mark sent" against a concurrent attempt. The remaining
          // at-least-once window: the receiver accepted the message, then this worker died (or lost its disk)
          // before the marker was renamed into place. The next attempt finds no marker and sends again. The
          // window is one rename long; closing it would need an idempotency key the receiver honours, which
          // Slack-style webhooks do not offer.
          await withLock(`${ledgerDir}/${ledgerKey}.webhook.lock`, async () => {
            if (await exists(sent)) return;
            await postWebhook(url, webhookMessage(req), describeSecretRef(ref), deps.webhookTimeoutMs ?? 10_000);
            await writeAtomic(sent, `${JSON.stringify({ id: actionId, sentAt: now().toISOString() })}\n`);
          }, Math.max(60_000, 3 * (deps.webhookTimeoutMs ?? 10_000)));
          result.webhookSent = true;
        });
      }

      if (failures.length) {
        const done = [
          cfg.auditLog ? `audit log ${result.auditLogged ? 'written' : 'not written'}` : undefined,
          cfg.webhook ? `webhook ${result.webhookSent ? 'sent' : 'not sent'}` : undefined,
          cfg.artifactsDir ? `artifacts ${result.notesPath ? 'written' : 'not written'}` : undefined,
        ].filter(Boolean).join(', ');
        const lines = failures.map((f) => `- ${f.channel}: ${f.err instanceof Error ? f.err.message : String(f.err)}`).join('\n');
        const allFinal = failures.every((f) => f.err instanceof ApplicationFailure && f.err.nonRetryable);
        const message = `Announcing ${req.release.service} ${req.release.version} (${req.outcome}) failed on ${failures.length} channel(s) (${done}):\n${lines}\n` +
          (allFinal
            ? 'The release itself is done; fix the above and retry the announce step. Channels that already succeeded are not repeated.'
            : 'Gantry retries; channels that already succeeded are not repeated.');
        const type = failures.map((f) => (f.err instanceof ApplicationFailure ? f.err.type : undefined)).find(Boolean) ?? GantryErrorType.Unavailable;
        throw allFinal
          ? nonRetryable(type as GantryErrorType, message, { result })
          : retryable(message, { result });
      }
      return result;
    },
  };
}

async function auditHas(auditLog: string, id: string): Promise<boolean> {
  let text: string;
  try {
    text = await readFile(auditLog, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
  const needle = JSON.stringify(id);
  for (const line of text.split('\n')) {
    if (!line.includes(needle)) continue;
    try {
      if ((JSON.parse(line) as { id?: string }).id === id) return true;
    } catch {
      /* a line someone else wrote; not ours */
    }
  }
  return false;
}

/** `# service version` and the CHANGELOG section for the version, read from the release tag on the remote. */
async function releaseNotes(req: AnnounceRequest, deps: AnnounceDeps): Promise<{ notes: string; section: string | undefined }> {
  const token = req.repo.token ? resolveSecret(req.repo.token, deps.env) : undefined;
  const tokenRef = req.repo.token ? describeSecretRef(req.repo.token) : undefined;
  const git = new Git({ env: deps.env, token, remote: req.repo.url, timeoutMs: deps.gitTimeoutMs });
  const changelog = await withTempDir('announce', async (dir) => {
    try {
      await git.fetchTag(req.repo.url, req.tag, dir);
      return await git.showFile(dir, `refs/tags/${req.tag}`, req.repo.changelog);
    } catch (err) {
      throw gitFailure(err, `read ${req.repo.changelog} at tag ${req.tag} from`, req.repo.url, tokenRef);
    }
  }, deps.workDir);
  const section = changelog === undefined ? undefined : changelogSection(changelog, req.release.version);
  const body = section?.trim()
    ? section.trim()
    : `_No "${req.release.version}" section in ${req.repo.changelog} at ${req.tag}._`;
  return { notes: `# ${req.release.service} ${req.release.version}\n\n${body}\n`, section: section?.trim() || undefined };
}

async function postWebhook(url: string, message: unknown, ref: string, timeoutMs: number): Promise<void> {
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(message),
      signal: AbortSignal.any([AbortSignal.timeout(timeoutMs), cancellation()]),
    });
  } catch (err) {
    if (cancellation().aborted) throw err;
    const code = (err as { cause?: { code?: string } }).cause?.code ?? (err instanceof Error && err.name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : 'network error');
    // The URL is the secret: name its reference, never the URL or the library's message (which may quote it).
    throw retryable(`The chat webhook (${ref}) could not be reached: ${code}. Gantry retries; check the worker can reach the chat service.`);
  }
  if (res.ok) {
    await res.body?.cancel().catch(() => undefined);
    return;
  }
  const body = redact((await res.text().catch(() => '')).replace(/\s+/g, ' ').trim().slice(0, 200), [url]);
  const what = `The chat webhook (${ref}) answered ${res.status}${body ? ` "${body}"` : ''}`;
  if (res.status === 429 || res.status >= 500) {
    throw retryable(`${what}. Gantry retries.`);
  }
  throw nonRetryable(GantryErrorType.ConfigInvalid, `${what}: it refused the message. ` +
    `Check that the URL in ${ref} is a current incoming-webhook URL (it may have been revoked); fix it on the worker and retry the announce step.`);
}
