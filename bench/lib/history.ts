/**
 * Where a workflow's time went, from its event history: each activity's scheduled → started (waiting for a
 * worker to pick it up) → completed (running), and the gap before it was scheduled (the workflow task that
 * decided to run it, or a wait for a message). Times are the server's event times.
 */
import type { WorkflowHandle } from '@temporalio/client';
import { optionalTsToMs } from '@temporalio/common/lib/time';
import { decode, localActivityRun } from '../../src/client/history';
import { SA_NAMES } from '../../src/shared/ids';
import { approveSignal, approveUpdate } from '../../src/shared/release';

export interface ActivitySpan {
  /** Activity type, with the environment for deploy/smoke/health (`deploy:production`), the channel for a delivery. */
  name: string;
  scheduledMs: number;
  startedMs?: number;
  completedMs?: number;
  /** From the previous activity's completion (or the workflow's start) to this one's scheduling. */
  gapBeforeMs: number;
  /** scheduled → started. */
  queueMs?: number;
  /** started → completed. */
  runMs?: number;
}

export interface Breakdown {
  startedMs: number;
  endedMs?: number;
  activities: ActivitySpan[];
  /** From the last activity's completion to the workflow's end. */
  tailMs?: number;
  /** Workflow tasks: count and summed scheduled → completed. */
  workflowTasks: { count: number; totalMs: number };
  /** The release's first workflow task: scheduled → started (waiting for a worker), started → completed (running it). */
  firstTask?: { queueMs: number; runMs: number };
  /** When the gate opened: the stage search attribute set to awaiting-approval. */
  gateOpenedMs?: number;
  /** When the workflow took the first approval (the `approve` update accepted, or the `approve` signal). */
  approvalMs?: number;
}

type HistoryEvents = NonNullable<Awaited<ReturnType<WorkflowHandle['fetchHistory']>>['events']>;

function at(e: HistoryEvents[number]): number {
  return optionalTsToMs(e.eventTime) ?? 0;
}

function labelOf(type: string, input: unknown): string {
  // deploy/smoke/health by environment, the announce step's deliveries by channel (`announceChannel:webhook`).
  const { environment, channel } = (input ?? {}) as { environment?: unknown; channel?: unknown };
  const qualifier = typeof environment === 'string' ? environment : typeof channel === 'string' ? channel : undefined;
  return qualifier ? `${type}:${qualifier}` : type;
}

export function breakdown(events: HistoryEvents): Breakdown {
  const byScheduledId = new Map<string, ActivitySpan>();
  const activities: ActivitySpan[] = [];
  const wftScheduled = new Map<string, number>();
  const wftStarted = new Map<string, number>();
  let firstTask: { queueMs: number; runMs: number } | undefined;
  let startedMs = 0;
  let endedMs: number | undefined;
  let lastMark = 0;
  let gateOpenedMs: number | undefined;
  let approvalMs: number | undefined;
  const workflowTasks = { count: 0, totalMs: 0 };
  for (const e of events) {
    const id = String(e.eventId);
    if (e.workflowExecutionStartedEventAttributes) {
      startedMs = lastMark = at(e);
    } else if (e.workflowTaskScheduledEventAttributes) {
      wftScheduled.set(id, at(e));
    } else if (e.workflowTaskStartedEventAttributes) {
      wftStarted.set(String(e.workflowTaskStartedEventAttributes.scheduledEventId), at(e));
    } else if (e.workflowTaskCompletedEventAttributes) {
      const sid = String(e.workflowTaskCompletedEventAttributes.scheduledEventId);
      const sched = wftScheduled.get(sid);
      const started = wftStarted.get(sid);
      workflowTasks.count += 1;
      if (sched !== undefined) workflowTasks.totalMs += at(e) - sched;
      if (workflowTasks.count === 1 && sched !== undefined && started !== undefined) firstTask = { queueMs: started - sched, runMs: at(e) - started };
    } else if (e.activityTaskScheduledEventAttributes) {
      const a = e.activityTaskScheduledEventAttributes;
      const span: ActivitySpan = {
        name: labelOf(a.activityType?.name ?? '?', decode(a.input?.payloads?.[0])),
        scheduledMs: at(e),
        gapBeforeMs: at(e) - lastMark,
      };
      byScheduledId.set(id, span);
      activities.push(span);
    } else if (e.markerRecordedEventAttributes) {
      // A local activity (lanes, freeze checks) ran inside a workflow task: no queue, scheduled → completed is its run.
      const local = localActivityRun(e);
      if (local) {
        const environment = /\b(?:on|the) (\S+) lane|on (\S+) —/.exec(local.summary ?? '');
        activities.push({
          name: labelOf(local.activity, { environment: environment?.[1] ?? environment?.[2] }), scheduledMs: local.scheduledMs, startedMs: local.scheduledMs,
          completedMs: local.completedMs, gapBeforeMs: local.scheduledMs - lastMark, queueMs: 0, runMs: local.completedMs - local.scheduledMs,
        });
        lastMark = local.completedMs;
      }
    } else if (e.activityTaskStartedEventAttributes) {
      const span = byScheduledId.get(String(e.activityTaskStartedEventAttributes.scheduledEventId));
      if (span) {
        span.startedMs = at(e);
        span.queueMs = span.startedMs - span.scheduledMs;
      }
    } else if (e.activityTaskCompletedEventAttributes || e.activityTaskFailedEventAttributes || e.activityTaskTimedOutEventAttributes) {
      const sid = e.activityTaskCompletedEventAttributes?.scheduledEventId ?? e.activityTaskFailedEventAttributes?.scheduledEventId ??
        e.activityTaskTimedOutEventAttributes?.scheduledEventId;
      const span = byScheduledId.get(String(sid));
      if (span) {
        span.completedMs = at(e);
        if (span.startedMs !== undefined) span.runMs = span.completedMs - span.startedMs;
        lastMark = span.completedMs;
      }
    } else if (e.upsertWorkflowSearchAttributesEventAttributes) {
      const stage = decode(e.upsertWorkflowSearchAttributesEventAttributes.searchAttributes?.indexedFields?.[SA_NAMES.stage]);
      if (stage === 'awaiting-approval') gateOpenedMs ??= at(e);
    } else if (e.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.input?.name === approveUpdate.name ||
        e.workflowExecutionSignaledEventAttributes?.signalName === approveSignal.name) {
      approvalMs ??= at(e);
    } else if (e.workflowExecutionCompletedEventAttributes || e.workflowExecutionFailedEventAttributes ||
        e.workflowExecutionCanceledEventAttributes || e.workflowExecutionTerminatedEventAttributes) {
      endedMs = at(e);
    }
  }
  return { startedMs, endedMs, activities, workflowTasks, ...(firstTask ? { firstTask } : {}), ...(endedMs !== undefined ? { tailMs: endedMs - lastMark } : {}), ...(gateOpenedMs !== undefined ? { gateOpenedMs } : {}), ...(approvalMs !== undefined ? { approvalMs } : {}) };
}

export async function breakdownOf(handle: WorkflowHandle): Promise<Breakdown> {
  return breakdown((await handle.fetchHistory()).events ?? []);
}
