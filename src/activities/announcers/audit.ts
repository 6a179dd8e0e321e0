/**
 * The audit log channel: the release's record as hash-chained JSON lines (src/record/audit-chain.ts), in
 * announce.auditLog. One line per action the workflow hands over (`actions`: started, approved, decided…), then
 * the outcome line (`released` / `rolled_back`) with what went where; `gantry audit verify <file>` checks the
 * chain.
 *
 * Idempotent by line id: the outcome line's id is the action id `{workflowId}/{runId}/{outcome}` (as before the
 * chain), an action line's is `{workflowId}/{runId}/action/{kind}/{hash of the action}`; a line whose id is
 * already in the file is not written again. So a retry of this channel (an attempt that died after appending,
 * before its activity completed) finds its lines and adds none, on whichever worker, as long as the workers
 * share the file. All appends to one file are serialised by one lock file next to it (`<auditLog>.lock`), since
 * each line chains to whatever line is last: two releases announcing at once, or an attempt that timed out and
 * still runs beside its retry, would otherwise both chain to the same line. The lock guards the file itself and
 * records nothing; it is the announce step's only file besides the audit log and the artifacts.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import type { AnnouncedAction, AnnounceRequest } from '../types';
import { appendToChain, type ChainFields } from '../../record/audit-chain';
import { canonicalJson } from '../../record/canonical';
import { withLock } from './files';
import type { Announcer, AnnounceContext, ChannelResult } from './types';

type ReleaseFields = { service: string; version: string; tag: string; commit: string; workflowId: string; runId: string };

/** The outcome line: what was released (or rolled back), where, approved by whom. */
export interface AuditRecord {
  /** `{workflowId}/{runId}/{action}`: one line per id. */
  id: string;
  time: string;
  actor: string;
  action: AnnounceRequest['outcome'];
  release: ReleaseFields;
  digest: string;
  imageRef: string;
  hosts: string[];
  approvers: string[];
  reason?: string;
}

/** A line for one action of the release (from AnnounceRequest.actions), written before the outcome line. */
export interface AuditActionRecord {
  /** `{workflowId}/{runId}/action/{kind}/{first 16 hex of sha256 of the action}` */
  id: string;
  /** When the action happened. */
  time: string;
  actor: string;
  /** The action's kind: started, approved, rejected, decided, cancelled… */
  action: string;
  verified: boolean;
  detail?: string;
  release: ReleaseFields;
  digest: string;
  imageRef: string;
}

/** A line of the audit log as written: a record plus its chain fields. */
export type AuditLine = (AuditRecord | AuditActionRecord) & ChainFields;

export function actionLineId(req: AnnounceRequest, runId: string, action: AnnouncedAction): string {
  const h = createHash('sha256').update(canonicalJson(action)).digest('hex').slice(0, 16);
  return `${req.release.workflowId}/${runId}/action/${action.kind}/${h}`;
}

/** The lines this announcement writes, in order: each action, then the outcome. */
export function auditRecords(req: AnnounceRequest, ctx: Pick<AnnounceContext, 'runId' | 'actionId' | 'now'>): (AuditRecord | AuditActionRecord)[] {
  const release: ReleaseFields = {
    service: req.release.service, version: req.release.version, tag: req.tag, commit: req.commit, workflowId: req.release.workflowId, runId: ctx.runId,
  };
  const actions: AuditActionRecord[] = (req.actions ?? []).map((a) => ({
    id: actionLineId(req, ctx.runId, a),
    time: a.at,
    actor: a.actor,
    action: a.kind,
    verified: a.verified,
    ...(a.detail ? { detail: a.detail } : {}),
    release,
    digest: req.digest,
    imageRef: req.imageRef,
  }));
  const outcome: AuditRecord = {
    id: ctx.actionId,
    time: ctx.now().toISOString(),
    actor: req.outcome === 'released' ? req.approvers.join(',') || 'gantry' : 'gantry',
    action: req.outcome,
    release,
    digest: req.digest,
    imageRef: req.imageRef,
    hosts: req.hosts,
    approvers: req.approvers,
    ...(req.reason ? { reason: req.reason } : {}),
  };
  return [...actions, outcome];
}

export function auditAnnouncer(): Announcer {
  return {
    name: 'audit',
    title: 'audit log',
    stage: 1,
    enabled: (req) => Boolean(req.announce.auditLog),
    skipReason: () => 'announce.auditLog is not set',
    async announce(req, ctx): Promise<ChannelResult> {
      const file = path.resolve(req.announce.auditLog!);
      const records = auditRecords(req, ctx);
      const lines = await withLock(`${file}.lock`, () => appendToChain(file, records as unknown as ({ id: string } & Record<string, unknown>)[]));
      const outcome = lines[lines.length - 1]!;
      ctx.auditLine = { line: outcome.seq, sha256: outcome.sha256 };
      const written = lines.filter((l) => l.appended);
      const detail = written.length === 0
        ? `already written (line ${outcome.seq} of ${file})`
        : `${written.length} chained line(s) appended to ${file} (${written.length === 1 ? `line ${written[0]!.seq}` : `lines ${written[0]!.seq}–${written[written.length - 1]!.seq}`})` +
          (written.length < lines.length ? `, ${lines.length - written.length} already there` : '');
      return { channel: 'audit', ok: true, detail, path: file };
    },
  };
}
