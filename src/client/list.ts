/**
 * Finding releases through visibility: a query over the search attributes each release keeps current
 * (GantryService, GantryStage, GantryOutcome). Visibility is eventually consistent: a stage change shows up
 * here within a second or so.
 */
import type { WorkflowExecutionInfo } from '@temporalio/client';
import { SA_OUTCOME, SA_SERVICE, SA_STAGE, WORKFLOW_TYPE } from '../shared/release';
import type { GantryClient } from './context';
import { isSearchAttributeProblem, setupRequired, UsageError } from './errors';
import { formatTime } from './format';
import { indexedFields, isUnavailable } from './release';
import { ServerUnreachableError } from '../connection';
import { PLAIN, type Style } from './style';

export const STAGES = [
  'planning', 'preflight', 'tag', 'build', 'deploy-staging', 'smoke', 'awaiting-approval', 'deploy-production',
  'health', 'rollback', 'announce', 'awaiting-decision', 'done',
] as const;
export const OUTCOMES = ['succeeded', 'rolled_back', 'rejected', 'aborted', 'cancelled', 'failed'] as const;

export interface ListFilters {
  service?: string;
  stage?: string;
  outcome?: string;
  limit?: number;
}

export interface ReleaseRow {
  workflowId: string;
  runId: string;
  service?: string;
  version?: string;
  stage?: string;
  outcome?: string;
  status: string;
  startTime: string;
  closeTime?: string;
}

/** Values go into the visibility query quoted; reject anything that could change its meaning. */
function literal(name: string, value: string): string {
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

function toRow(info: WorkflowExecutionInfo): ReleaseRow {
  const f = indexedFields(info);
  return {
    workflowId: info.workflowId,
    runId: info.runId,
    ...f,
    status: info.status.name,
    startTime: info.startTime.toISOString(),
    ...(info.closeTime ? { closeTime: info.closeTime.toISOString() } : {}),
  };
}

export async function listReleases(gc: GantryClient, f: ListFilters): Promise<ReleaseRow[]> {
  const query = listQuery(f);
  const limit = f.limit ?? 50;
  const rows: ReleaseRow[] = [];
  try {
    for await (const info of gc.client.workflow.list({ query, pageSize: Math.min(limit, 100) })) {
      rows.push(toRow(info));
      if (rows.length >= limit) break;
    }
  } catch (err) {
    if (isSearchAttributeProblem(err)) throw setupRequired(gc.namespace, gc.settings.address, err);
    if (isUnavailable(err)) throw new ServerUnreachableError(gc.settings.address, err);
    throw err;
  }
  return rows;
}

export function formatReleaseList(rows: ReleaseRow[], f: ListFilters, st: Style = PLAIN): string {
  const filters = [f.service && `service ${f.service}`, f.stage && `stage ${f.stage}`, f.outcome && `outcome ${f.outcome}`].filter(Boolean).join(', ');
  if (rows.length === 0) {
    return `No releases${filters ? ` with ${filters}` : ''}. Start one with \`gantry start <service> <version>\`.`;
  }
  const header = ['SERVICE', 'VERSION', 'STAGE', 'OUTCOME', 'STATUS', 'STARTED', 'WORKFLOW ID'];
  const table = rows.map((r) => [r.service ?? '?', r.version ?? '?', r.stage ?? '?', r.outcome ?? '-', r.status.toLowerCase(), formatTime(r.startTime), r.workflowId]);
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [st.bold(line(header)), ...table.map(line), '', `${rows.length} release(s)${filters ? ` with ${filters}` : ''}.`].join('\n');
}
