/**
 * Acting on a running release: votes at the gate and operator decisions go through the workflow's updates, so
 * the caller gets the answer, or the reason it was refused; cancel asks the workflow to stop.
 */
import {
  isGrpcDeadlineError,
  ServiceError,
  WorkflowUpdateFailedError,
  WorkflowUpdateRPCTimeoutOrCancelledError,
} from '@temporalio/client';
import {
  approveUpdate,
  decideUpdate,
  rejectUpdate,
  type DecisionPayload,
  type GateAnswer,
  type VotePayload,
} from '../shared/release';
import type { GantryClient } from './context';
import { NoWorkerError, RefusedError } from './errors';
import { describeRelease, describeState, translateRpcError, type ReleaseAddress } from './release';

/** How long an update may wait for a worker to accept it. */
export const DEFAULT_UPDATE_TIMEOUT_MS = 30_000;

async function ensureRunning(gc: GantryClient, addr: ReleaseAddress, what: string): Promise<void> {
  const d = await describeRelease(gc, addr.workflowId);
  if (d.status.name !== 'RUNNING') {
    throw new RefusedError(
      `Cannot ${what} release ${addr.label}: it has ${describeState(d)}. ` +
        `\`gantry status ${addr.args}\` shows how it ended; to release again, start a new version.`,
    );
  }
}

async function runUpdate<T>(gc: GantryClient, addr: ReleaseAddress, what: string, timeoutMs: number, call: () => Promise<T>): Promise<T> {
  await ensureRunning(gc, addr, what);
  try {
    return await gc.connection.withDeadline(Date.now() + timeoutMs, call);
  } catch (err) {
    if (err instanceof WorkflowUpdateFailedError) {
      const why = err.cause?.message ?? err.message;
      throw new RefusedError(`Release ${addr.label} refused to ${what}: ${why}. \`gantry status ${addr.args}\` shows the gate and the stage.`);
    }
    if (err instanceof WorkflowUpdateRPCTimeoutOrCancelledError || isGrpcDeadlineError(err) || (err instanceof ServiceError && isGrpcDeadlineError(err.cause))) {
      throw new NoWorkerError(
        `No worker answered within ${Math.round(timeoutMs / 1000)}s, so the request to ${what} release ${addr.label} was not taken. ` +
          'Start a worker (`gantry worker`, or `gantry dev` on a laptop) and retry; nothing was recorded.',
      );
    }
    throw translateRpcError(err, gc, addr.workflowId);
  }
}

export async function vote(
  gc: GantryClient,
  addr: ReleaseAddress,
  kind: 'approve' | 'reject',
  payload: VotePayload,
  timeoutMs = DEFAULT_UPDATE_TIMEOUT_MS,
): Promise<GateAnswer> {
  const handle = gc.client.workflow.getHandle(addr.workflowId);
  const def = kind === 'approve' ? approveUpdate : rejectUpdate;
  return runUpdate(gc, addr, kind, timeoutMs, () => handle.executeUpdate(def, { args: [payload] }));
}

export async function decide(gc: GantryClient, addr: ReleaseAddress, payload: DecisionPayload, timeoutMs = DEFAULT_UPDATE_TIMEOUT_MS): Promise<string> {
  const handle = gc.client.workflow.getHandle(addr.workflowId);
  return runUpdate(gc, addr, `${payload.decision}`, timeoutMs, () => handle.executeUpdate(decideUpdate, { args: [payload] }));
}

/** Ask the release to stop. Before production changes it ends `cancelled`; after, production work finishes first. */
export async function cancelRelease(gc: GantryClient, addr: ReleaseAddress): Promise<void> {
  await ensureRunning(gc, addr, 'cancel');
  try {
    await gc.client.workflow.getHandle(addr.workflowId).cancel();
  } catch (err) {
    throw translateRpcError(err, gc, addr.workflowId);
  }
}
