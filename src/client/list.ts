/**
 * Finding releases through visibility: a query over the search attributes each release keeps current
 * (GantryService, GantryStage, GantryOutcome). Visibility is eventually consistent: a stage change shows up
 * here within a second or so. Also the release-history export (`--json`, `--csv`) and the CSV writer it uses.
 */
import type { WorkflowExecutionInfo } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { SA_OUTCOME, SA_SERVICE, SA_STAGE, WORKFLOW_TYPE } from '../shared/release';
import type { GantryClient } from './context';
import { isSearchAttributeProblem, setupRequired, UsageError } from './errors';
import { formatTime } from './format';
import { indexedFields, isUnavailable } from './release';
import { ServerUnreachableError } from '../connection';
import { PLAIN, type Style } from './style';

export const STAGES = [
  'planning', 'preflight', 'tag', 'build', 'deploy-staging', 'smoke', 'waiting-for-lane', 'awaiting-approval', 'deploy-production',
  'health', 'rollback', 'announce', 'awaiting-decision', 'done',
] as const;
export const OUTCOMES = ['succeeded', 'rolled_back', 'rejected', 'aborted', 'cancelled', 'failed'] as const;

export interface ListFilters {
  service?: string;
  stage?: string;
  outcome?: string;
  limit?: number;
}

/** One release as the export gives it: `gantry list --json` objects and `--csv` rows (the columns, in order). */
export interface ReleaseRow {
  service?: string;
  version?: string;
  workflowId: string;
  runId: string;
  /** The execution's status in Temporal: RUNNING, COMPLETED, FAILED, CANCELLED, TERMINATED, TIMED_OUT. */
  status: string;
  stage?: string;
  outcome?: string;
  startedAt: string;
  endedAt?: string;
  /** endedAt − startedAt, in seconds (ms precision); absent while the release runs. */
  durationSeconds?: number;
  /** Who asked for the release, from its start request (export only: read from the first history event). */
  requestedBy?: string;
}

export const EXPORT_COLUMNS = [
  'service', 'version', 'workflowId', 'runId', 'status', 'stage', 'outcome', 'startedAt', 'endedAt', 'durationSeconds', 'requestedBy',
] as const satisfies readonly (keyof ReleaseRow)[];

/** Values go into the visibility query quoted; reject anything that could change its meaning. */
export function literal(name: string, value: string): string {
  if (!/^[A-Za-z0-9._-]+$/.test(value)) {
    throw new UsageError(`--${name} "${value}" is not a valid value: use letters, digits, dots, dashes and underscores.`);
  }
  return `'${value}'`;
}

export function listQuery(f: ListFilters): string {
  if (f.stage && !(STAGES as readonly string[]).includes(f.stage)) {
    throw new UsageError(`--stage "${f.stage}" is not a stage; use one of ${STAGES.join(', ')}.`);
  }
  if (f.outcome && !(OUTCOMES as readonly string[]).includes(f.outcome)) {
    throw new UsageError(`--outcome "${f.outcome}" is not an outcome; use one of ${OUTCOMES.join(', ')}.`);
  }
  const parts = [`WorkflowType = '${WORKFLOW_TYPE}'`];
  if (f.service) parts.push(`${SA_SERVICE.name} = ${literal('service', f.service)}`);
  if (f.stage) parts.push(`${SA_STAGE.name} = ${literal('stage', f.stage)}`);
  if (f.outcome) parts.push(`${SA_OUTCOME.name} = ${literal('outcome', f.outcome)}`);
  // No ORDER BY: not every visibility store supports it (SQLite does not); the default order is newest first.
  return parts.join(' AND ');
}

export function toRow(info: WorkflowExecutionInfo): ReleaseRow {
  const f = indexedFields(info);
  return {
    ...(f.service !== undefined ? { service: f.service } : {}),
    ...(f.version !== undefined ? { version: f.version } : {}),
    workflowId: info.workflowId,
    runId: info.runId,
    status: info.status.name,
    ...(f.stage !== undefined ? { stage: f.stage } : {}),
    ...(f.outcome !== undefined ? { outcome: f.outcome } : {}),
    startedAt: info.startTime.toISOString(),
    ...(info.closeTime
      ? { endedAt: info.closeTime.toISOString(), durationSeconds: (info.closeTime.getTime() - info.startTime.getTime()) / 1000 }
      : {}),
  };
}

/** The errors of a visibility call, as gantry names them. */
export function visibilityError(gc: GantryClient, err: unknown): unknown {
  if (isSearchAttributeProblem(err)) return setupRequired(gc.namespace, gc.settings.address, err);
  if (isUnavailable(err)) return new ServerUnreachableError(gc.settings.address, err);
  return err;
}

export async function listReleases(gc: GantryClient, f: ListFilters, opts: { requestedBy?: boolean } = {}): Promise<ReleaseRow[]> {
  const query = listQuery(f);
  const limit = f.limit ?? 50;
  const rows: ReleaseRow[] = [];
  try {
    for await (const info of gc.client.workflow.list({ query, pageSize: Math.min(limit, 100) })) {
      rows.push(toRow(info));
      if (rows.length >= limit) break;
    }
  } catch (err) {
    throw visibilityError(gc, err);
  }
  if (opts.requestedBy) {
    await mapLimit(rows, 8, async (row) => {
      const who = await requestedByOf(gc, row.workflowId, row.runId);
      if (who !== undefined) row.requestedBy = who;
    });
  }
  return rows;
}

/**
 * Who asked for a release: the `requestedBy` of its start request, in the first event of its history (one small
 * read; visibility does not keep it). Undefined when the history is gone (retention) or the start carried none.
 */
export async function requestedByOf(gc: GantryClient, workflowId: string, runId: string): Promise<string | undefined> {
  try {
    const res = await gc.client.workflowService.getWorkflowExecutionHistory({
      namespace: gc.namespace, execution: { workflowId, runId }, maximumPageSize: 1,
    });
    const payload = res.history?.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
    const input = payload ? defaultPayloadConverter.fromPayload<unknown>(payload) : undefined;
    const who = typeof input === 'object' && input !== null ? (input as { requestedBy?: unknown }).requestedBy : undefined;
    return typeof who === 'string' ? who : undefined;
  } catch (err) {
    if (isUnavailable(err)) throw new ServerUnreachableError(gc.settings.address, err);
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/** gRPC NOT_FOUND (the raw service call does not translate it). */
function isNotFound(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return Number(code) === 5;
}

/** Run `fn` over `items`, at most `limit` at a time, in order of start; rejects with the first failure. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return results;
}

// ---- CSV ----

/** A CSV cell: text is quoted when it must be; numbers and booleans as JSON writes them; nothing is empty. */
export type CsvCell = string | number | boolean | null | undefined;

/** Characters that make a spreadsheet read a cell as a formula (CSV injection). */
const FORMULA_START = /^[=+\-@\t\r]/;

/**
 * One CSV field (RFC 4180): empty for null/undefined; a field holding a comma, a double quote, a CR or LF, or
 * leading/trailing spaces is enclosed in double quotes, with each double quote doubled. Text that a spreadsheet
 * would run as a formula (starting with =, +, -, @, tab or CR) is prefixed with a single quote, as OWASP advises;
 * numbers are never changed.
 */
export function csvField(value: CsvCell): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : '';
  if (typeof value === 'boolean') return String(value);
  const text = FORMULA_START.test(value) ? `'${value}` : value;
  return /[",\r\n]|^ | $/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** A CSV document (RFC 4180): a header row, then one row per record, every line ended by CRLF. */
export function toCsv(header: readonly string[], rows: readonly (readonly CsvCell[])[]): string {
  return [header, ...rows].map((r) => `${r.map(csvField).join(',')}\r\n`).join('');
}

export function releasesCsv(rows: ReleaseRow[]): string {
  return toCsv(EXPORT_COLUMNS, rows.map((r) => EXPORT_COLUMNS.map((c) => r[c])));
}

export function formatReleaseList(rows: ReleaseRow[], f: ListFilters, st: Style = PLAIN): string {
  const filters = [f.service && `service ${f.service}`, f.stage && `stage ${f.stage}`, f.outcome && `outcome ${f.outcome}`].filter(Boolean).join(', ');
  if (rows.length === 0) {
    return `No releases${filters ? ` with ${filters}` : ''}. Start one with \`gantry start <service> <version>\`.`;
  }
  const header = ['SERVICE', 'VERSION', 'STAGE', 'OUTCOME', 'STATUS', 'STARTED', 'WORKFLOW ID'];
  const table = rows.map((r) => [r.service ?? '?', r.version ?? '?', r.stage ?? '?', r.outcome ?? '-', r.status.toLowerCase(), formatTime(r.startedAt), r.workflowId]);
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [st.bold(line(header)), ...table.map(line), '', `${rows.length} release(s)${filters ? ` with ${filters}` : ''}.`].join('\n');
}
