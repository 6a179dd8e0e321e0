/**
 * `gantry lanes`: the running lanes, found through visibility (running `laneWorkflow` executions), each asked
 * for its holder and queue, and said in words: "hello/production: held by 1.4.0 since 12:01 (3 min); waiting:
 * 1.5.0 (since 12:02)".
 */
import { LANE_WORKFLOW_TYPE, laneQuery, type LaneView } from '../shared/lanes';
import { SERVICE_NAME } from '../shared/release';
import type { GantryClient } from './context';
import { NoWorkerError, UsageError } from './errors';
import { timedOut } from './release';

export async function listLanes(gc: GantryClient, service?: string, timeoutMs = 10_000): Promise<LaneView[]> {
  if (service !== undefined && !SERVICE_NAME.test(service)) throw new UsageError(`"${service.slice(0, 64)}" is not a service name (lowercase letters, digits, dashes).`);
  const query = `WorkflowType = '${LANE_WORKFLOW_TYPE}' AND ExecutionStatus = 'Running'${service ? ` AND WorkflowId STARTS_WITH 'gantry-lane-${service}-'` : ''}`;
  const views: LaneView[] = [];
  for await (const e of gc.client.workflow.list({ query })) {
    try {
      const v = await gc.connection.withDeadline(Date.now() + timeoutMs, () => gc.client.workflow.getHandle(e.workflowId).query(laneQuery));
      if (service === undefined || v.service === service) views.push(v);
    } catch (err) {
      if (timedOut(err)) {
        throw new NoWorkerError(`No worker answered the lane ${e.workflowId} within ${Math.round(timeoutMs / 1000)}s. Start a worker (\`gantry worker\` or \`gantry dev\`) and retry.`);
      }
      // A lane that completed between the list and the query: it holds nothing.
    }
  }
  return views.sort((a, b) => `${a.service}/${a.environment}`.localeCompare(`${b.service}/${b.environment}`));
}

/** `12:01` (UTC, as the rest of gantry's times). */
function clock(iso: string): string {
  return `${new Date(iso).toISOString().slice(11, 16)}Z`;
}

/** `3 min`, `2 h 05 min`, `40 s`. */
function howLong(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}

export function laneLine(v: LaneView, now = Date.now()): string {
  const held = v.holder
    ? `held by ${v.holder.version} since ${clock(v.holder.heldSince)} (${howLong(now - Date.parse(v.holder.heldSince))})`
    : 'free';
  const waiting = v.queue.length > 0 ? `; waiting: ${v.queue.map((e) => `${e.version} (since ${clock(e.since)})`).join(', ')}` : '';
  return `${v.service}/${v.environment}: ${held}${waiting}`;
}

export function lanesText(views: LaneView[], now = Date.now(), service?: string): string[] {
  if (views.length === 0) return [service ? `No lane of ${service} is running: no release of it holds or waits for an environment.` : 'No lane is running: no release holds or waits for an environment.'];
  const lines: string[] = [];
  for (const v of views) {
    lines.push(laneLine(v, now));
    const last = v.recent?.at(-1);
    if (last) lines.push(`  last: ${last.version} held it ${clock(last.from)}–${clock(last.to)} (${last.ended})`);
  }
  return lines;
}
