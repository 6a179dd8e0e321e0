/**
 * The on-call timeline of a release, read from the workflow's event history (no worker needed): when it
 * started and who asked, each stage change, each environment it enters, each step (activity) with its attempts,
 * failures and duration,
 * every approve/reject/decide that arrived (signal or update) with who sent it and when, whether the release
 * took or refused it, cancellation, the rollback, and how it ended.
 */
import { laneChangedSignal } from '../shared/lanes';
import { parseStatement } from '../shared/statement';
import { displayText } from '../shared/text';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { optionalTsToDate } from '@temporalio/common/lib/time';
import type { History } from '@temporalio/common/lib/proto-utils';
import { ReleaseEndType } from '../shared/errors';
import { claimedName, type Outcome, type ReleaseInput, type ReleaseStatus } from '../shared/release';
import { formatDuration, formatTime, plural } from './format';
import { PLAIN, type Style } from './style';

type HistoryEvent = NonNullable<History['events']>[number];
type ProtoFailure = NonNullable<NonNullable<HistoryEvent['activityTaskFailedEventAttributes']>['failure']>;

/** An approve, reject or decide that arrived as a signal (Web UI, `temporal workflow signal`) or an update (gantry). */
export interface MessageEntry {
  kind: 'signal' | 'update';
  at: string;
  name: string;
  /** The approver or operator named in the payload (self-declared). */
  who?: string;
  reason?: string;
  decision?: string;
  /** The client that sent it (`temporal-cli:…`, a gantry process, the Web UI). */
  identity?: string;
  verdict: 'accepted' | 'refused' | 'unknown';
  /** Why it was refused, or the answer it got. */
  detail?: string;
  /** The sender as the release verified it (signed statement) — from its ledger. */
  verified?: { principal: string; fingerprint?: string };
}

export type TimelineEntry =
  | { kind: 'started'; at: string; requestedBy?: string; summary?: string; identity?: string }
  | { kind: 'stage'; at: string; stage: string; outcome?: string }
  /** The release entered an environment (its GantryEnvironment search attribute changed). */
  | { kind: 'environment'; at: string; environment: string }
  | {
      kind: 'step';
      at: string;
      activity: string;
      summary: string;
      state: 'running' | 'succeeded' | 'failed' | 'timed_out' | 'cancelled';
      attempts: number;
      endedAt?: string;
      durationMs?: number;
      /** The failure of the attempt before the last one (what made it retry), and the final failure. */
      failures: string[];
    }
  | MessageEntry
  | { kind: 'cancel-requested'; at: string; identity?: string; reason?: string; verdict?: 'accepted' | 'refused'; detail?: string }
  | { kind: 'ended'; at: string; status: 'completed' | 'failed' | 'cancelled' | 'terminated' | 'timed_out'; /** An {@link Outcome}, when the release reported one. */
      outcome?: string; message: string };

/** An event's time, ISO 8601. */
export function iso(e: HistoryEvent): string {
  return (optionalTsToDate(e.eventTime) ?? new Date(0)).toISOString();
}

/** A payload's value, or undefined when it cannot be decoded. */
export function decode(p: Payload | null | undefined): unknown {
  if (!p) return undefined;
  try {
    return defaultPayloadConverter.fromPayload(p);
  } catch {
    return undefined;
  }
}

function firstArg(payloads: { payloads?: Payload[] | null } | null | undefined): unknown {
  return decode(payloads?.payloads?.[0]);
}

function failureText(f: ProtoFailure | null | undefined): string {
  if (!f) return 'no message';
  const parts: string[] = [];
  let cur: ProtoFailure | null | undefined = f;
  while (cur && parts.length < 3) {
    if (cur.message && !parts.includes(cur.message)) parts.push(cur.message);
    cur = cur.cause;
  }
  return parts.join(': ') || 'no message';
}

function text(v: unknown): string | undefined {
  return typeof v === 'string' && v.trim() !== '' ? v : undefined;
}

/** The outcome a failed release execution's failure type names (ReleaseEndType). */
export function outcomeFromFailureType(type: string | null | undefined): Outcome {
  switch (type) {
    case ReleaseEndType.RolledBack: return 'rolled_back';
    case ReleaseEndType.Rejected: return 'rejected';
    case ReleaseEndType.Aborted: return 'aborted';
    case ReleaseEndType.Cancelled: return 'cancelled';
    default: return 'failed';
  }
}

/**
 * Build the timeline. With the release's status (when a worker answered the query) each signal is marked as
 * taken or refused, with the reason: the workflow records both with the time it handled them, which is the
 * start of the first workflow task after the signal arrived.
 */
export function buildTimeline(history: History, status?: ReleaseStatus): TimelineEntry[] {
  const events = history.events ?? [];
  const out: TimelineEntry[] = [];
  const steps = new Map<string, Extract<TimelineEntry, { kind: 'step' }>>();
  const updates = new Map<string, MessageEntry>();
  const signals: { entry: MessageEntry; index: number }[] = [];
  /** Signals and accepted updates in history order: the ledger's `seq` numbers them the same way. */
  const messages: MessageEntry[] = [];
  const cancelRequests: Extract<TimelineEntry, { kind: 'cancel-requested' }>[] = [];

  for (const [i, e] of events.entries()) {
    const at = iso(e);
    const eid = String(e.eventId ?? i);
    if (e.workflowExecutionStartedEventAttributes) {
      const a = e.workflowExecutionStartedEventAttributes;
      const input = firstArg(a.input) as Partial<Pick<ReleaseInput, 'requestedBy'>> | undefined;
      const summary = text(decode(e.userMetadata?.summary));
      out.push({
        kind: 'started',
        at,
        ...(input?.requestedBy ? { requestedBy: input.requestedBy } : {}),
        ...(summary ? { summary } : {}),
        ...(a.identity ? { identity: a.identity } : {}),
      });
    } else if (e.upsertWorkflowSearchAttributesEventAttributes) {
      const fields = e.upsertWorkflowSearchAttributesEventAttributes.searchAttributes?.indexedFields ?? {};
      const stage = text(decode(fields.GantryStage));
      const outcome = text(decode(fields.GantryOutcome));
      const last = [...out].reverse().find((x) => x.kind === 'stage');
      // The workflow re-indexes the stage it returns to after a decision; one line per actual change.
      if (stage && !(last?.kind === 'stage' && last.stage === stage && !outcome)) out.push({ kind: 'stage', at, stage, ...(outcome ? { outcome } : {}) });
      // `none` is what the start sets before the release reaches its first environment.
      const environment = text(decode(fields.GantryEnvironment));
      const lastEnv = [...out].reverse().find((x) => x.kind === 'environment');
      if (environment && environment !== 'none' && !(lastEnv?.kind === 'environment' && lastEnv.environment === environment)) out.push({ kind: 'environment', at, environment });
    } else if (e.activityTaskScheduledEventAttributes) {
      const a = e.activityTaskScheduledEventAttributes;
      const activity = a.activityType?.name ?? 'activity';
      const entry: Extract<TimelineEntry, { kind: 'step' }> = {
        kind: 'step', at, activity, summary: text(decode(e.userMetadata?.summary)) ?? activity, state: 'running', attempts: 0, failures: [],
      };
      steps.set(eid, entry);
      out.push(entry);
    } else if (e.markerRecordedEventAttributes?.markerName === LOCAL_ACTIVITY_MARKER) {
      // A local activity (the lane requests and freeze checks) ran inside a workflow task: one marker per run.
      out.push(localActivityStep(localActivityRun(e)!));
    } else if (e.activityTaskStartedEventAttributes) {
      const a = e.activityTaskStartedEventAttributes;
      const s = steps.get(String(a.scheduledEventId));
      if (s) {
        s.attempts = a.attempt ?? 1;
        if (a.lastFailure) s.failures.push(`attempt ${s.attempts - 1}: ${failureText(a.lastFailure)}`);
      }
    } else if (e.activityTaskCompletedEventAttributes) {
      closeStep(steps.get(String(e.activityTaskCompletedEventAttributes.scheduledEventId)), at, 'succeeded');
    } else if (e.activityTaskFailedEventAttributes) {
      const a = e.activityTaskFailedEventAttributes;
      const s = closeStep(steps.get(String(a.scheduledEventId)), at, 'failed');
      if (s) s.failures.push(`attempt ${s.attempts}: ${failureText(a.failure)}`);
    } else if (e.activityTaskTimedOutEventAttributes) {
      const a = e.activityTaskTimedOutEventAttributes;
      const s = closeStep(steps.get(String(a.scheduledEventId)), at, 'timed_out');
      if (s) s.failures.push(`attempt ${s.attempts || 1}: ${failureText(a.failure)}`);
    } else if (e.activityTaskCanceledEventAttributes) {
      closeStep(steps.get(String(e.activityTaskCanceledEventAttributes.scheduledEventId)), at, 'cancelled');
    } else if (e.workflowExecutionSignaledEventAttributes) {
      const a = e.workflowExecutionSignaledEventAttributes;
      const payload = firstArg(a.input) as Record<string, unknown> | undefined;
      const entry: MessageEntry = {
        kind: 'signal', at, name: a.signalName ?? '?', verdict: 'unknown', ...payloadFields(payload),
        ...(a.identity ? { identity: a.identity } : {}),
      };
      // The lane's hint to the release is not a message anyone sent it, and the ledger does not count it.
      if (a.signalName === laneChangedSignal.name) {
        out.push({ ...entry, verdict: 'accepted', detail: 'the lane changed; the release asked it again' });
        continue;
      }
      signals.push({ entry, index: i });
      messages.push(entry);
      out.push(entry);
    } else if (e.workflowExecutionUpdateAcceptedEventAttributes) {
      const a = e.workflowExecutionUpdateAcceptedEventAttributes;
      const req = a.acceptedRequest;
      const payload = firstArg(req?.input?.args) as Record<string, unknown> | undefined;
      const entry: MessageEntry = {
        kind: 'update', at, name: req?.input?.name ?? '?', verdict: 'accepted', ...payloadFields(payload),
        ...(req?.meta?.identity ? { identity: req.meta.identity } : {}),
      };
      updates.set(req?.meta?.updateId ?? a.protocolInstanceId ?? eid, entry);
      messages.push(entry);
      out.push(entry);
    } else if (e.workflowExecutionUpdateCompletedEventAttributes) {
      const a = e.workflowExecutionUpdateCompletedEventAttributes;
      const u = updates.get(a.meta?.updateId ?? '');
      if (u) {
        if (a.outcome?.failure) u.detail = `failed: ${failureText(a.outcome.failure)}`;
        else {
          const result = firstArg(a.outcome?.success);
          const msg = typeof result === 'string' ? result : text((result as { message?: unknown } | undefined)?.message);
          if (msg) u.detail = msg;
        }
      }
    } else if (e.workflowExecutionCancelRequestedEventAttributes) {
      const a = e.workflowExecutionCancelRequestedEventAttributes;
      const entry: Extract<TimelineEntry, { kind: 'cancel-requested' }> = { kind: 'cancel-requested', at, ...(a.identity ? { identity: a.identity } : {}), ...(a.cause ? { reason: a.cause } : {}) };
      cancelRequests.push(entry);
      out.push(entry);
    } else if (e.workflowExecutionCompletedEventAttributes) {
      const result = firstArg(e.workflowExecutionCompletedEventAttributes.result) as Partial<ReleaseStatus> | undefined;
      out.push({ kind: 'ended', at, status: 'completed', outcome: result?.outcome ?? 'succeeded', message: result?.message ?? 'completed' });
    } else if (e.workflowExecutionFailedEventAttributes) {
      const f = e.workflowExecutionFailedEventAttributes.failure;
      out.push({ kind: 'ended', at, status: 'failed', outcome: outcomeFromFailureType(f?.applicationFailureInfo?.type), message: failureText(f) });
    } else if (e.workflowExecutionCanceledEventAttributes) {
      out.push({ kind: 'ended', at, status: 'cancelled', outcome: 'cancelled', message: status?.message ?? 'cancelled' });
    } else if (e.workflowExecutionTerminatedEventAttributes) {
      const a = e.workflowExecutionTerminatedEventAttributes;
      out.push({ kind: 'ended', at, status: 'terminated', message: `terminated${a.identity ? ` by ${a.identity}` : ''}${a.reason ? `: ${a.reason}` : ''}` });
    } else if (e.workflowExecutionTimedOutEventAttributes) {
      out.push({ kind: 'ended', at, status: 'timed_out', message: 'the workflow execution timed out' });
    }
  }

  if (status?.ledger) matchLedger(messages, cancelRequests, status);
  else if (status) markSignalVerdicts(events, signals, status);
  return out;
}

/** The marker the SDK records for a finished local activity. */
const LOCAL_ACTIVITY_MARKER = 'core_local_activity';

/** A local activity's run as its marker records it (type, attempt, when it was scheduled and finished). */
export interface LocalActivityRun {
  activity: string;
  summary?: string;
  attempt: number;
  scheduledMs: number;
  completedMs: number;
  failure?: string;
}

/** The local activity a history event's marker records, if it is one (the SDK's `core_local_activity` marker). */
export function localActivityRun(e: HistoryEvent): LocalActivityRun | undefined {
  const a = e.markerRecordedEventAttributes;
  if (a?.markerName !== LOCAL_ACTIVITY_MARKER) return undefined;
  const data = decode(a.details?.data?.payloads?.[0]) as {
    activity_type?: unknown; attempt?: unknown; original_schedule_time?: Stamp; complete_time?: Stamp;
  } | undefined;
  const recorded = Date.parse(iso(e));
  const summary = text(decode(e.userMetadata?.summary));
  const scheduledMs = stampMs(data?.original_schedule_time) ?? recorded;
  return {
    activity: text(data?.activity_type) ?? 'local activity',
    ...(summary ? { summary } : {}),
    attempt: typeof data?.attempt === 'number' ? data.attempt : 1,
    scheduledMs,
    // As the worker recorded them; a completion stamped before the schedule (the two come from different clocks) counts as zero.
    completedMs: Math.max(scheduledMs, stampMs(data?.complete_time) ?? recorded),
    ...(a.failure ? { failure: failureText(a.failure) } : {}),
  };
}

type Stamp = { seconds?: number | string; nanos?: number } | null | undefined;
function stampMs(t: Stamp): number | undefined {
  return t?.seconds !== undefined ? Number(t.seconds) * 1000 + Math.floor((t.nanos ?? 0) / 1e6) : undefined;
}

/** A local activity's marker as a step of the timeline. */
function localActivityStep(run: LocalActivityRun): Extract<TimelineEntry, { kind: 'step' }> {
  const entry: Extract<TimelineEntry, { kind: 'step' }> = {
    kind: 'step', at: new Date(run.scheduledMs).toISOString(), activity: run.activity, summary: run.summary ?? run.activity,
    state: 'running', attempts: run.attempt, failures: [],
  };
  closeStep(entry, new Date(run.completedMs).toISOString(), run.failure ? 'failed' : 'succeeded');
  if (run.failure) entry.failures.push(`attempt ${run.attempt}: ${run.failure}`);
  return entry;
}

function payloadFields(p: Record<string, unknown> | undefined): { who?: string; reason?: string; decision?: string } {
  if (!p || typeof p !== 'object') return {};
  // A signed statement names who, why and what in its text (verified by the workflow, not here).
  const signed = typeof p.statement === 'string' ? parseStatement(p.statement) : undefined;
  const fields: Record<string, unknown> = signed?.ok ? { operator: signed.value.principal, reason: signed.value.reason, decision: signed.value.decision } : p;
  const who = claimedName(p) ?? text(fields.operator);
  const reason = text(fields.reason) === undefined ? undefined : displayText(fields.reason, 200);
  const decision = text(fields.decision) === undefined ? undefined : displayText(fields.decision, 20);
  return { ...(who ? { who } : {}), ...(reason ? { reason } : {}), ...(decision ? { decision } : {}) };
}

function closeStep(s: Extract<TimelineEntry, { kind: 'step' }> | undefined, at: string, state: 'succeeded' | 'failed' | 'timed_out' | 'cancelled') {
  if (!s) return undefined;
  s.state = state;
  s.endedAt = at;
  s.durationMs = Date.parse(at) - Date.parse(s.at);
  if (s.attempts === 0 && state !== 'cancelled') s.attempts = 1;
  return s;
}

/**
 * Match history to the release's ledger exactly, by order: the ledger's n-th message is the history's n-th signal
 * or accepted update, its n-th cancel request the n-th cancellation request. Entries the ledger no longer keeps
 * (refused ones beyond its last 50) stay `unknown`, saying so.
 */
function matchLedger(messages: MessageEntry[], cancelRequests: Extract<TimelineEntry, { kind: 'cancel-requested' }>[], status: ReleaseStatus): void {
  const ledger = status.ledger!;
  for (const e of ledger.entries) {
    if ((e.kind === 'signal' || e.kind === 'update') && e.seq >= 1) {
      const m = messages[e.seq - 1];
      if (!m) continue;
      m.verdict = e.verdict === 'refused' ? 'refused' : 'accepted';
      if (e.why) m.detail = e.why;
      if (e.verdict === 'accepted' && e.actor) {
        m.who = e.actor;
        if (e.verified) m.verified = { principal: e.actor, ...(e.fingerprint ? { fingerprint: e.fingerprint } : {}) };
      }
    } else if (e.kind === 'cancel-request' && e.seq >= 1) {
      const c = cancelRequests[e.seq - 1];
      if (!c) continue;
      c.verdict = e.verdict === 'refused' ? 'refused' : 'accepted';
      if (e.why) c.detail = e.why;
    }
  }
  if (ledger.dropped > 0) {
    for (const m of messages) if (m.verdict === 'unknown') m.detail = 'refused (older than the last refusals the release keeps)';
  }
}

/**
 * Releases without a ledger (started before it existed): match each signal to what the workflow recorded for it.
 * The workflow stamps votes and refusals with its own clock, which is the start time of the workflow task that
 * handled the signal.
 */
function markSignalVerdicts(events: HistoryEvent[], signals: { entry: MessageEntry; index: number }[], status: ReleaseStatus): void {
  const taken = [
    ...status.gate.approvals.filter((v) => v.via === 'signal').map((v) => ({ name: 'approve', who: v.approver, at: v.at, used: false })),
    ...(status.gate.rejection?.via === 'signal' ? [{ name: 'reject', who: status.gate.rejection.approver, at: status.gate.rejection.at, used: false }] : []),
  ];
  const refused = status.gate.refused.filter((r) => r.via === 'signal').map((r) => ({ ...r, used: false }));
  for (const { entry, index } of signals) {
    const handled = events.slice(index + 1).find((e) => e.workflowTaskStartedEventAttributes);
    if (!handled) continue;
    const at = iso(handled);
    const same = (x: { at: string }) => Math.abs(Date.parse(x.at) - Date.parse(at)) < 2;
    const t = taken.find((x) => !x.used && x.name === entry.name && x.who === entry.who && same(x));
    if (t) {
      t.used = true;
      entry.verdict = 'accepted';
      continue;
    }
    const r = refused.find((x) => !x.used && x.name === entry.name && (x.approver ?? undefined) === entry.who && same(x));
    if (r) {
      r.used = true;
      entry.verdict = 'refused';
      entry.detail = r.why;
      continue;
    }
    if (entry.name === 'decide') {
      const d = status.decisions.find((x) => x.operator === entry.who && x.decision === entry.decision);
      if (d) entry.verdict = 'accepted';
    }
  }
}

const STEP_MARK: Record<Extract<TimelineEntry, { kind: 'step' }>['state'], string> = {
  running: '▶', succeeded: '✓', failed: '✗', timed_out: '✗', cancelled: '-',
};

export function formatTimeline(label: string, workflowId: string, runId: string, entries: TimelineEntry[], st: Style = PLAIN): string {
  const lines = [st.bold(`History of release ${label} (${workflowId}, run ${runId})`), ''];
  const pad = ' '.repeat(22);
  for (const e of entries) {
    const t = st.dim(formatTime(e.at).padEnd(21));
    switch (e.kind) {
      case 'started':
        lines.push(`${t} started${e.requestedBy ? ` by ${e.requestedBy}` : ''}${e.summary ? `: ${e.summary}` : ''}${e.identity ? st.dim(` (client ${e.identity})`) : ''}`);
        break;
      case 'stage':
        lines.push(`${t} stage → ${st.bold(e.stage)}${e.outcome ? ` (outcome ${e.outcome})` : ''}`);
        break;
      case 'environment':
        lines.push(`${t} environment → ${st.bold(e.environment)}`);
        break;
      case 'step': {
        const mark = e.state === 'succeeded' ? st.ok(STEP_MARK[e.state]) : e.state === 'running' ? st.info(STEP_MARK[e.state]) : st.bad(STEP_MARK[e.state]);
        const rollback = e.activity === 'rollback' ? st.warn('ROLLBACK ') : '';
        const how = e.state === 'running' ? 'running' : `${e.state.replace('_', ' ')} after ${plural(e.attempts, 'attempt')} in ${formatDuration(e.durationMs)}`;
        lines.push(`${t} ${rollback}${mark} ${e.summary} [${e.activity}]: ${how}`);
        for (const f of e.failures) lines.push(`${pad}${st.bad(`failure, ${f}`)}`);
        break;
      }
      case 'signal':
      case 'update': {
        const who = e.verified ? ` by ${e.verified.principal} (signed, key ${e.verified.fingerprint ?? '?'})` : e.who ? ` by ${e.who}` : '';
        const what = e.decision ? ` ${e.decision}` : '';
        const verdict = e.verdict === 'refused' ? st.warn(`REFUSED: ${e.detail ?? ''}`) : e.verdict === 'accepted' ? st.ok('taken') : 'recorded';
        const answer = e.kind === 'update' && e.detail ? `: ${e.detail}` : '';
        lines.push(`${t} ${e.kind} ${e.name}${what}${who}${e.reason ? ` ("${e.reason}")` : ''}: ${verdict}${answer}${e.identity ? st.dim(` (client ${e.identity})`) : ''}`);
        break;
      }
      case 'cancel-requested':
        lines.push(`${t} ${st.warn('cancellation requested through Temporal')}${e.identity ? ` by ${e.identity}` : ''}${e.reason ? `: ${e.reason}` : ''}` +
          (e.verdict === 'refused' ? `: ${st.warn(`REFUSED: ${e.detail ?? ''}`)}` : e.verdict === 'accepted' ? `: ${st.ok('taken')}` : ''));
        break;
      case 'ended': {
        const good = e.outcome === 'succeeded';
        lines.push(`${t} ${st.bold('ended')} ${good ? st.ok(String(e.outcome)) : st.bad(String(e.outcome ?? e.status))}: ${e.message}`);
        break;
      }
    }
  }
  if (!entries.some((e) => e.kind === 'ended')) lines.push('', st.dim('(still running)'));
  return lines.join('\n');
}
