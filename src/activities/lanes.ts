/**
 * The lanes' activities. `laneEnqueue` is what a release calls to queue for an environment: it starts the lane if
 * it is not running (update-with-start) and answers with the lane and the release's position. `watchLaneHolder`
 * and `checkLaneHolder` are the lane's own eyes: they ask Temporal itself whether the holder still runs and
 * whether its status says it released the environment, so no message, forged or late, can pass a lane on.
 */
import { Context } from '@temporalio/activity';
import { WithStartWorkflowOperation, WorkflowNotFoundError, type Client } from '@temporalio/client';
import { TASK_QUEUE, statusQuery } from '../shared/release';
import {
  initialLaneState,
  LANE_WORKFLOW_TYPE,
  laneEnqueueUpdate,
  laneWorkflowId,
  type HolderCheck,
  type HolderRef,
  type LaneView,
  type ReleaseLaneState,
} from '../shared/lanes';
import { currentAttempt } from './heartbeat';
import type { LaneRequest } from './types';

/** A release asks for one environment's lane: the contract the release workflow calls (src/activities/types.ts). */
export type LaneEnqueueRequest = LaneRequest;

export interface LaneActivities {
  laneEnqueue(req: LaneEnqueueRequest): Promise<LaneView & { attempt: number }>;
  watchLaneHolder(req: HolderRef & { maxMs?: number }): Promise<HolderCheck>;
  checkLaneHolder(req: HolderRef): Promise<HolderCheck>;
}

export interface LaneActivityOptions {
  /** The client to use; default: the activity's own (Context.current().client). */
  client?: () => Client;
  /** Task queue the lane runs on. @default TASK_QUEUE */
  taskQueue?: string;
  /** How often the watcher describes the holder, and queries its status. @default 1000, 2000 */
  describeEveryMs?: number;
  queryEveryMs?: number;
}

const STATUS_NAMES: Record<string, string> = {
  COMPLETED: 'completed', FAILED: 'failed', CANCELLED: 'cancelled', TERMINATED: 'terminated', TIMED_OUT: 'timed out', CONTINUED_AS_NEW: 'continued as new',
};

export function createLaneActivities(opts: LaneActivityOptions = {}): LaneActivities {
  const clientOf = opts.client ?? (() => Context.current().client);
  const taskQueue = opts.taskQueue ?? TASK_QUEUE;
  const describeEvery = opts.describeEveryMs ?? 1000;
  const queryEvery = opts.queryEveryMs ?? 2000;

  /** Whether the run still runs (or how it ended). */
  async function running(client: Client, ref: HolderRef): Promise<{ left: boolean; how: string }> {
    try {
      const d = await client.workflow.getHandle(ref.workflowId, ref.runId).describe();
      if (d.status.name === 'RUNNING') return { left: false, how: 'running' };
      return { left: true, how: STATUS_NAMES[d.status.name] ?? d.status.name.toLowerCase() };
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return { left: true, how: 'not found' };
      throw err;
    }
  }

  /** Whether its status says it released this environment; undefined when it cannot tell (no worker answered). */
  async function released(client: Client, ref: HolderRef): Promise<boolean | undefined> {
    try {
      // A release whose worker is down cannot answer; the describe above still notices when it ends.
      const status = await client.connection.withDeadline(Date.now() + 3000, () => client.workflow.getHandle(ref.workflowId, ref.runId).query(statusQuery));
      const lanes = (status as { lanes?: Record<string, ReleaseLaneState> }).lanes;
      return lanes?.[ref.environment]?.state === 'released';
    } catch {
      return undefined;
    }
  }

  async function check(client: Client, ref: HolderRef): Promise<HolderCheck> {
    const r = await running(client, ref);
    if (r.left) return { attempt: currentAttempt(), left: true, how: r.how };
    if (await released(client, ref)) return { attempt: currentAttempt(), left: true, how: 'released' };
    return { attempt: currentAttempt(), left: false, how: 'still holds the lane' };
  }

  return {
    async laneEnqueue(req) {
      const client = clientOf();
      const start = new WithStartWorkflowOperation(LANE_WORKFLOW_TYPE, {
        workflowId: laneWorkflowId(req.service, req.environment),
        taskQueue,
        args: [initialLaneState(req.service, req.environment, new Date().toISOString())],
        workflowIdConflictPolicy: 'USE_EXISTING',
      });
      const view = await client.workflow.executeUpdateWithStart(laneEnqueueUpdate, { args: [{ ...req }], startWorkflowOperation: start });
      return { ...view, attempt: currentAttempt() };
    },

    async checkLaneHolder(ref) {
      return check(clientOf(), ref);
    },

    async watchLaneHolder(req) {
      const ctx = Context.current();
      const client = clientOf();
      const ref = { workflowId: req.workflowId, runId: req.runId, environment: req.environment };
      const until = Date.now() + (req.maxMs ?? 10 * 60_000);
      let lastQuery = 0;
      for (;;) {
        const r = await running(client, ref);
        if (r.left) return { attempt: ctx.info.attempt, left: true, how: r.how };
        if (Date.now() - lastQuery >= queryEvery) {
          lastQuery = Date.now();
          if (await released(client, ref)) return { attempt: ctx.info.attempt, left: true, how: 'released' };
        }
        ctx.heartbeat({ holder: ref.workflowId });
        if (Date.now() >= until) return { attempt: ctx.info.attempt, left: false, how: 'still holds the lane' };
        await ctx.sleep(describeEvery);
      }
    },
  };
}
