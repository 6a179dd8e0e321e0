/**
 * `gantry report`: the four delivery figures of a window of releases (deployment frequency, lead time for
 * changes, change failure rate, time to restore), from the visibility store (which releases ended in the window)
 * and each release's event history (when production was changed, when it was healthy, when the commit was made).
 * The definitions are in docs/cli.md (`gantry report`); they are implemented by `releaseFacts` (one history) and
 * `computeReport` (the figures), both pure.
 */
import { decode, iso, outcomeFromFailureType } from './history';
import { isGrpcServiceError, ServiceError, type WorkflowExecutionInfo } from '@temporalio/client';
import { WorkflowNotFoundError, type Payload } from '@temporalio/common';
import type { History } from '@temporalio/common/lib/proto-utils';
import { SA_SERVICE, WORKFLOW_TYPE } from '../shared/release';
import { STEP_TITLES } from '../shared/steps';
import type { GantryClient } from './context';
import { UsageError } from './errors';
import { formatDuration, formatTime } from './format';
import { literal, mapLimit, toCsv, toRow, visibilityError, type ReleaseRow } from './list';
import { isUnavailable } from './release';
import { ServerUnreachableError } from '../connection';
import { PLAIN, type Style } from './style';


const DAY_MS = 86_400_000;
export const DEFAULT_SINCE = '30d';

// ---- the window ----

const UNIT_MS: Record<string, number> = { m: 60_000, h: 3_600_000, d: DAY_MS, w: 7 * DAY_MS };

/**
 * `--since` / `--until`: a duration back from `now` (`90m`, `12h`, `7d`, `30d`, `2w`: minutes, hours, days,
 * weeks), a date (`2026-05-01`, midnight UTC) or a date and time (`2026-05-01T09:00:00Z`; without a zone, UTC).
 * It must lie in the past.
 */
export function parseWhen(text: string, flag: '--since' | '--until', now: Date = new Date()): Date {
  const t = text.trim();
  const d = /^(\d+(?:\.\d+)?)([mhdw])$/.exec(t);
  let at: Date | undefined;
  if (d) {
    const back = Number(d[1]) * UNIT_MS[d[2]!]!;
    if (back > 0) at = new Date(now.getTime() - back);
  } else if (/^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/i.test(t)) {
    let iso = t.length === 10 ? `${t}T00:00:00` : t.replace(' ', 'T');
    if (!/(?:Z|[+-]\d{2}:?\d{2})$/i.test(iso)) iso += 'Z';
    const ms = Date.parse(iso);
    if (!Number.isNaN(ms)) at = new Date(ms);
  }
  if (!at) {
    throw new UsageError(`${flag} "${text}" is neither a duration nor a date; write it like 7d, 30d, 12h, 2w, 2026-05-01 (midnight UTC) or 2026-05-01T09:00:00Z.`);
  }
  if (at.getTime() > now.getTime()) throw new UsageError(`${flag} "${text}" is in the future (${at.toISOString()}); the report covers releases that ended.`);
  return at;
}

/** The window's ends from the flags: `--since` (default 30d) and `--until` (default: when the releases are listed). */
export function reportWindow(flags: { since?: string; until?: string }, now: Date = new Date()): { since: Date; until?: Date } {
  const since = parseWhen(flags.since ?? DEFAULT_SINCE, '--since', now);
  const until = flags.until !== undefined ? parseWhen(flags.until, '--until', now) : undefined;
  if (until && until.getTime() <= since.getTime()) {
    throw new UsageError(`--until (${until.toISOString()}) is not after --since (${since.toISOString()}); the window would be empty.`);
  }
  if (!until && since.getTime() >= now.getTime()) throw new UsageError(`--since "${flags.since}" leaves an empty window; give a time in the past.`);
  return { since, ...(until ? { until } : {}) };
}

/** Releases that ended in the window (at or after `since`, and at or before `until` when given), of one service or all. */
export function reportQuery(since: Date, service?: string, until?: Date): string {
  const parts = [`WorkflowType = '${WORKFLOW_TYPE}'`, `ExecutionStatus != 'Running'`, `CloseTime >= '${since.toISOString()}'`];
  if (until) parts.push(`CloseTime <= '${until.toISOString()}'`);
  if (service) parts.push(`${SA_SERVICE.name} = ${literal('service', service)}`);
  return parts.join(' AND ');
}

// ---- one release's history ----

/** What one release's history says about production. Every time is an event time (the server's clock), ISO. */
export interface HistoryFacts {
  /** From the start request (the first event). */
  service?: string;
  version?: string;
  requestedBy?: string;
  /** The first time the preflight step was scheduled. */
  preflightStartedAt?: string;
  /** `commitTime` of the preflight step's result (ActivityTaskCompleted), when it has one. */
  commitTime?: string;
  /** The first time the production deploy was scheduled: the moment production may start changing. */
  productionDeployStartedAt?: string;
  /** The production health step completed (ActivityTaskCompleted of `health`): production healthy on this version. */
  healthyAt?: string;
  /** The production health step failed (or timed out). */
  healthFailedAt?: string;
  /** The rollback step's last completion, and whether it reported production healthy on the previous image. */
  rollbackEndedAt?: string;
  rollbackHealthy?: boolean;
  /** How the execution ended (close event), when it did. */
  endedAt?: string;
  outcome?: string;
}

function firstArg(payloads: { payloads?: Payload[] | null } | null | undefined): Record<string, unknown> | undefined {
  const v = decode(payloads?.payloads?.[0]);
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

function isoOrUndefined(v: unknown): string | undefined {
  if (typeof v !== 'string') return undefined;
  const ms = Date.parse(v);
  return Number.isNaN(ms) ? undefined : new Date(ms).toISOString();
}


/**
 * Read production's side of a release from its history. The `deploy` activity serves staging and production; a
 * production deploy is told by its input (`environment: 'production'`), or, if that cannot be decoded, by its
 * summary (`Deploy to production — …`).
 */
export function releaseFacts(history: History): HistoryFacts {
  const f: HistoryFacts = {};
  const scheduled = new Map<string, { activity: string; production: boolean }>();
  for (const [i, e] of (history.events ?? []).entries()) {
    const at = iso(e);
    if (e.workflowExecutionStartedEventAttributes) {
      const input = firstArg(e.workflowExecutionStartedEventAttributes.input);
      const service = str(input?.service);
      const version = str(input?.version);
      const requestedBy = str(input?.requestedBy);
      if (service) f.service = service;
      if (version) f.version = version;
      if (requestedBy) f.requestedBy = requestedBy;
    } else if (e.activityTaskScheduledEventAttributes) {
      const a = e.activityTaskScheduledEventAttributes;
      const activity = a.activityType?.name ?? '';
      let production = false;
      if (activity === 'deploy') {
        const env = str(firstArg(a.input)?.environment);
        const summary = str(decode(e.userMetadata?.summary));
        production = env !== undefined ? env === 'production' : (summary?.startsWith(STEP_TITLES.deployProduction) ?? false);
        if (production) f.productionDeployStartedAt ??= at;
      }
      if (activity === 'preflight') f.preflightStartedAt ??= at;
      scheduled.set(String(e.eventId ?? i), { activity, production });
    } else if (e.activityTaskCompletedEventAttributes) {
      const a = e.activityTaskCompletedEventAttributes;
      const s = scheduled.get(String(a.scheduledEventId));
      if (s?.activity === 'preflight') {
        const t = isoOrUndefined(firstArg(a.result)?.commitTime);
        if (t) f.commitTime = t;
      } else if (s?.activity === 'health') {
        f.healthyAt ??= at;
      } else if (s?.activity === 'rollback') {
        f.rollbackEndedAt = at;
        f.rollbackHealthy = firstArg(a.result)?.healthy === true;
      }
    } else if (e.activityTaskFailedEventAttributes || e.activityTaskTimedOutEventAttributes) {
      const id = e.activityTaskFailedEventAttributes?.scheduledEventId ?? e.activityTaskTimedOutEventAttributes?.scheduledEventId;
      if (scheduled.get(String(id))?.activity === 'health') f.healthFailedAt ??= at;
    } else if (e.workflowExecutionCompletedEventAttributes) {
      f.endedAt = at;
      f.outcome = str(firstArg(e.workflowExecutionCompletedEventAttributes.result)?.outcome) ?? 'succeeded';
    } else if (e.workflowExecutionFailedEventAttributes) {
      f.endedAt = at;
      f.outcome = outcomeFromFailureType(e.workflowExecutionFailedEventAttributes.failure?.applicationFailureInfo?.type);
    } else if (e.workflowExecutionCanceledEventAttributes) {
      f.endedAt = at;
      f.outcome = 'cancelled';
    } else if (e.workflowExecutionTerminatedEventAttributes || e.workflowExecutionTimedOutEventAttributes) {
      f.endedAt = at;
    }
  }
  return f;
}

/** A release as the report sees it: what visibility lists, and what its history says. */
export interface ReleaseFacts extends HistoryFacts {
  workflowId: string;
  runId: string;
  /** Temporal's execution status (COMPLETED, FAILED, …). */
  status: string;
  startedAt: string;
}

/** Visibility's fields (search attributes) first; the history fills what they lack. */
export function mergeFacts(row: ReleaseRow, h: HistoryFacts): ReleaseFacts {
  const service = row.service ?? h.service;
  const version = row.version ?? h.version;
  const endedAt = row.endedAt ?? h.endedAt;
  const outcome = row.outcome ?? h.outcome;
  return {
    ...h,
    workflowId: row.workflowId,
    runId: row.runId,
    status: row.status,
    startedAt: row.startedAt,
    ...(service ? { service } : {}),
    ...(version ? { version } : {}),
    ...(endedAt ? { endedAt } : {}),
    ...(outcome ? { outcome } : {}),
  };
}

// ---- the figures ----

/** One deployment of the window, with the samples it gave. */
export interface ChangeRecord {
  workflowId: string;
  runId: string;
  service: string;
  version: string;
  /** The release's outcome (or Temporal's status, lowercased, when it recorded none: terminated, timed_out). */
  outcome: string;
  deployedAt: string;
  healthyAt?: string;
  /** A failed change: production was changed and never reported healthy on this version. */
  failed: boolean;
  commitTime?: string;
  leadTimeSeconds?: number;
  leadTimeFrom?: 'commit' | 'preflight-start';
  restoredAt?: string;
  /** `rollback`, or `release <version>` for the release whose production health restored it. */
  restoredBy?: string;
  timeToRestoreSeconds?: number;
}

export interface DeliveryReport {
  service: string | null;
  since: string;
  until: string;
  windowDays: number;
  /** Releases that ended in the window (any outcome, dry runs included). */
  releases: number;
  deployments: number;
  /** Deployments whose production health step succeeded. */
  healthy: number;
  failures: number;
  rolledBack: number;
  failedAfterProductionChanged: number;
  /** failures / deployments; null without deployments. */
  changeFailureRate: number | null;
  deploymentFrequency: { perDay: number; perWeek: number };
  leadTime: { samples: number; fromCommit: number; fromPreflightStart: number; medianSeconds: number | null; p90Seconds: number | null };
  timeToRestore: { samples: number; unrestored: number; medianSeconds: number | null };
  changes: ChangeRecord[];
  notes: string[];
}

/** To the millisecond, as seconds. */
const seconds = (ms: number): number => Math.round(ms) / 1000;
const round4 = (x: number): number => Math.round(x * 1e4) / 1e4;
const ms = (iso: string): number => Date.parse(iso);

/**
 * The p-quantile (0 ≤ p ≤ 1) of the samples by linear interpolation between closest ranks (Hyndman & Fan type 7:
 * numpy's and R's default, Excel's PERCENTILE.INC): h = (n − 1)·p, x⌊h⌋ + (h − ⌊h⌋)(x⌊h⌋+1 − x⌊h⌋) over the
 * sorted samples. The median is p = 0.5 (the mean of the two middle samples when n is even). Null when empty.
 */
export function quantile(samples: readonly number[], p: number): number | null {
  if (samples.length === 0) return null;
  const x = [...samples].sort((a, b) => a - b);
  const h = (x.length - 1) * Math.min(1, Math.max(0, p));
  const lo = Math.floor(h);
  const hi = Math.min(lo + 1, x.length - 1);
  return x[lo]! + (h - lo) * (x[hi]! - x[lo]!);
}

const q = (samples: number[], p: number): number | null => {
  const v = quantile(samples, p);
  return v === null ? null : Math.round(v * 1000) / 1000;
};

/**
 * The figures of the releases that ended in [since, until] (see docs/cli.md, `gantry report`, for each
 * definition). `releases` may hold releases of several services: restores pair within a service.
 */
export function computeReport(releases: readonly ReleaseFacts[], window: { since: Date; until: Date; service?: string }): DeliveryReport {
  const since = window.since.getTime();
  const until = window.until.getTime();
  const windowDays = (until - since) / DAY_MS;
  const notes: string[] = [];

  const deployed = releases
    .filter((r) => r.endedAt !== undefined && r.productionDeployStartedAt !== undefined && ms(r.productionDeployStartedAt) >= since)
    .sort((a, b) => ms(a.productionDeployStartedAt!) - ms(b.productionDeployStartedAt!));
  const changes: ChangeRecord[] = deployed.map((r) => ({
    workflowId: r.workflowId,
    runId: r.runId,
    service: r.service ?? '?',
    version: r.version ?? '?',
    outcome: r.outcome ?? r.status.toLowerCase(),
    deployedAt: r.productionDeployStartedAt!,
    ...(r.healthyAt ? { healthyAt: r.healthyAt } : {}),
    failed: r.healthyAt === undefined,
    ...(r.commitTime ? { commitTime: r.commitTime } : {}),
  }));

  // Lead time: healthy deployments, from the commit (or, lacking it, from the preflight step's start).
  const lead: number[] = [];
  let fromPreflight = 0;
  let noStart = 0;
  for (const [i, c] of changes.entries()) {
    if (c.failed) continue;
    const r = deployed[i]!;
    const from = r.commitTime ?? r.preflightStartedAt;
    if (!from) {
      noStart += 1;
      continue;
    }
    c.leadTimeSeconds = seconds(ms(c.healthyAt!) - ms(from));
    c.leadTimeFrom = r.commitTime ? 'commit' : 'preflight-start';
    if (!r.commitTime) fromPreflight += 1;
    lead.push(c.leadTimeSeconds);
  }
  if (fromPreflight > 0) {
    notes.push(`${fromPreflight} lead time(s) are measured from the preflight step's start, not the commit: their preflight result records no commitTime ` +
      '(releases from before gantry recorded it, or git could not tell). They are shorter than the real lead time.');
  }
  if (noStart > 0) notes.push(`${noStart} healthy deployment(s) have no preflight step in their history and give no lead time.`);

  // Time to restore: each failed change, from its production deploy's start to the first healthy production after
  // it: its own rollback completing healthy, or the production health of a later release of the same service.
  const restore: number[] = [];
  let unrestored = 0;
  for (const [i, c] of changes.entries()) {
    if (!c.failed) continue;
    const r = deployed[i]!;
    const start = ms(c.deployedAt);
    let best: { at: string; by: string } | undefined;
    if (r.rollbackHealthy && r.rollbackEndedAt) best = { at: r.rollbackEndedAt, by: 'rollback' };
    for (const other of releases) {
      if (other === r || !other.healthyAt || (other.service ?? '?') !== c.service || ms(other.healthyAt) <= start) continue;
      if (!best || ms(other.healthyAt) < ms(best.at)) best = { at: other.healthyAt, by: `release ${other.version ?? other.workflowId}` };
    }
    if (!best) {
      unrestored += 1;
      continue;
    }
    c.restoredAt = best.at;
    c.restoredBy = best.by;
    c.timeToRestoreSeconds = seconds(ms(best.at) - start);
    restore.push(c.timeToRestoreSeconds);
  }
  if (unrestored > 0) {
    notes.push(`${unrestored} failed change(s) are not restored yet (no healthy rollback, no later healthy release of the service): ` +
      'they are left out of time to restore.');
  }

  const deployments = changes.length;
  const failures = changes.filter((c) => c.failed).length;
  const rolledBack = changes.filter((c) => c.failed && c.outcome === 'rolled_back').length;
  if (deployments === 0) notes.push('No deployment reached production in the window.');
  return {
    service: window.service ?? null,
    since: window.since.toISOString(),
    until: window.until.toISOString(),
    windowDays: round4(windowDays),
    releases: releases.length,
    deployments,
    healthy: deployments - failures,
    failures,
    rolledBack,
    failedAfterProductionChanged: failures - rolledBack,
    changeFailureRate: deployments ? round4(failures / deployments) : null,
    deploymentFrequency: { perDay: round4(deployments / windowDays), perWeek: round4((deployments / windowDays) * 7) },
    leadTime: { samples: lead.length, fromCommit: lead.length - fromPreflight, fromPreflightStart: fromPreflight, medianSeconds: q(lead, 0.5), p90Seconds: q(lead, 0.9) },
    timeToRestore: { samples: restore.length, unrestored, medianSeconds: q(restore, 0.5) },
    changes,
    notes,
  };
}

// ---- reading the server ----

/**
 * List the releases that ended since `since` from visibility, read each one's history (8 at a time), and compute
 * the figures. A history gone between the two (retention) is left out, with a note.
 */
export async function deliveryReport(gc: GantryClient, opts: { since: Date; until?: Date; service?: string }): Promise<DeliveryReport> {
  const query = reportQuery(opts.since, opts.service, opts.until);
  const infos: WorkflowExecutionInfo[] = [];
  try {
    for await (const info of gc.client.workflow.list({ query, pageSize: 100 })) infos.push(info);
  } catch (err) {
    throw visibilityError(gc, err);
  }
  // Without --until, every release listed ended before this moment: the window ends here.
  const until = opts.until ?? new Date();
  let gone = 0;
  const facts = await mapLimit(infos, 8, async (info) => {
    try {
      const history = await gc.client.workflow.getHandle(info.workflowId, info.runId).fetchHistory();
      return mergeFacts(toRow(info), releaseFacts(history));
    } catch (err) {
      if (isUnavailable(err)) throw new ServerUnreachableError(gc.settings.address, err);
      if (isGone(err)) {
        gone += 1;
        return undefined;
      }
      throw err;
    }
  });
  const report = computeReport(facts.filter((f): f is ReleaseFacts => f !== undefined), { since: opts.since, until, ...(opts.service ? { service: opts.service } : {}) });
  if (gone > 0) report.notes.push(`${gone} release(s) were listed but their history is gone (retention): left out.`);
  return report;
}

/** The history is not there (any more): NOT_FOUND, however the SDK wraps it. */
function isGone(err: unknown): boolean {
  if (err instanceof WorkflowNotFoundError) return true;
  const cause = err instanceof ServiceError ? err.cause : err;
  return isGrpcServiceError(cause) && Number(cause.code) === 5;
}

// ---- output ----

export const REPORT_COLUMNS = [
  'service', 'since', 'until', 'windowDays', 'releases', 'deployments', 'healthy', 'failures', 'rolledBack', 'failedAfterProductionChanged',
  'changeFailureRate', 'deploymentsPerDay', 'deploymentsPerWeek', 'leadTimeSamples', 'leadTimeFromPreflightStart', 'leadTimeMedianSeconds',
  'leadTimeP90Seconds', 'timeToRestoreSamples', 'timeToRestoreUnrestored', 'timeToRestoreMedianSeconds',
] as const;

/** The figures as CSV: the header row and one row (the same numbers as `--json`; empty where JSON has null). */
export function reportCsv(r: DeliveryReport): string {
  return toCsv(REPORT_COLUMNS, [[
    r.service ?? '', r.since, r.until, r.windowDays, r.releases, r.deployments, r.healthy, r.failures, r.rolledBack, r.failedAfterProductionChanged,
    r.changeFailureRate, r.deploymentFrequency.perDay, r.deploymentFrequency.perWeek, r.leadTime.samples, r.leadTime.fromPreflightStart,
    r.leadTime.medianSeconds, r.leadTime.p90Seconds, r.timeToRestore.samples, r.timeToRestore.unrestored, r.timeToRestore.medianSeconds,
  ]]);
}

/** `1m05s (65.123 s)`: readable, and the exact figure `--json` and `--csv` give. */
function dur(secondsValue: number | null): string {
  return secondsValue === null ? '-' : `${formatDuration(secondsValue * 1000)} (${secondsValue} s)`;
}

export function formatReport(r: DeliveryReport, st: Style = PLAIN): string {
  const who = r.service ? r.service : 'all services';
  const lines = [
    st.bold(`Delivery report for ${who}: releases that ended ${formatTime(r.since)} – ${formatTime(r.until)} (${r.windowDays} days)`),
    '',
  ];
  const row = (label: string, text: string) => lines.push(`  ${label.padEnd(23)}${text}`);
  const notDeployed = r.releases - r.deployments;
  row('releases', `${r.releases} ended, ${r.deployments} reached production, ${notDeployed} did not (rejected, failed or stopped before production, dry runs)`);
  row('deployments', `${r.deployments}: ${r.healthy} healthy, ${r.failures} failed (${r.rolledBack} rolled back, ${r.failedAfterProductionChanged} failed after production changed)`);
  row('deployment frequency', `${r.deploymentFrequency.perDay} per day, ${r.deploymentFrequency.perWeek} per week`);
  row('change failure rate', r.changeFailureRate === null
    ? '- (no deployments)'
    : `${(r.changeFailureRate * 100).toFixed(1)}% (${r.changeFailureRate}): ${r.failures} of ${r.deployments} deployments`);
  row('lead time for changes', r.leadTime.samples === 0
    ? '- (no healthy deployment)'
    : `median ${dur(r.leadTime.medianSeconds)}, p90 ${dur(r.leadTime.p90Seconds)}; ${r.leadTime.samples} sample(s), ` +
      `${r.leadTime.fromCommit} from the commit time, ${r.leadTime.fromPreflightStart} from the preflight start`);
  row('time to restore', r.timeToRestore.samples === 0 && r.timeToRestore.unrestored === 0
    ? '- (no failed change)'
    : `median ${dur(r.timeToRestore.medianSeconds)}; ${r.timeToRestore.samples} sample(s), ${r.timeToRestore.unrestored} not restored`);
  if (r.changes.length > 0) {
    const header = [...(r.service ? [] : ['SERVICE']), 'VERSION', 'PRODUCTION DEPLOY', 'OUTCOME', 'LEAD TIME', 'RESTORED'];
    const table = r.changes.map((c) => [
      ...(r.service ? [] : [c.service]), c.version, formatTime(c.deployedAt), c.failed ? `${c.outcome} (failed change)` : c.outcome,
      c.leadTimeSeconds === undefined ? '-' : formatDuration(c.leadTimeSeconds * 1000),
      c.failed ? (c.timeToRestoreSeconds === undefined ? 'not yet' : `${formatDuration(c.timeToRestoreSeconds * 1000)} by ${c.restoredBy}`) : '-',
    ]);
    const widths = header.map((h, i) => Math.max(h.length, ...table.map((t) => t[i]!.length)));
    const line = (cells: string[]) => `  ${cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()}`;
    lines.push('', st.bold(line(header)), ...table.map(line));
  }
  if (r.notes.length > 0) lines.push('', ...r.notes.map((n) => st.dim(`Note: ${n}`)));
  return lines.join('\n');
}
