/**
 * Acting on a running release: votes at the gate and operator decisions go through the workflow's updates, so
 * the caller gets the answer, or the reason it was refused; cancel asks the workflow to stop.
 */
import {
  WorkflowUpdateFailedError,
  WorkflowUpdateRPCTimeoutOrCancelledError,
} from '@temporalio/client';
import {
  approveUpdate,
  cancelUpdate,
  decideUpdate,
  rejectUpdate,
  statusQuery,
  type CancelMessage,
  type Decision,
  type DecisionMessage,
  type GateAnswer,
  type ReleaseStatus,
  type VoteMessage,
} from '../shared/release';
import { cancelMessage, decisionMessage, voteMessage, type SigningOptions } from './decisions';

export { voteMessage };
import type { GantryClient } from './context';
import { NoWorkerError, RefusedError } from './errors';
import { describeRelease, describeState, timedOut, translateRpcError, type ReleaseAddress } from './release';

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
  const asked = Date.now();
  try {
    return await gc.connection.withDeadline(asked + timeoutMs, call);
  } catch (err) {
    if (err instanceof WorkflowUpdateFailedError) {
      const why = err.cause?.message ?? err.message;
      throw new RefusedError(`Release ${addr.label} refused to ${what}: ${why}. \`gantry status ${addr.args}\` shows the gate and the stage.`);
    }
    if (err instanceof WorkflowUpdateRPCTimeoutOrCancelledError || timedOut(err, { askedMs: asked, timeoutMs })) {
      throw new NoWorkerError(
        `No worker answered within ${Math.round(timeoutMs / 1000)}s, so the request to ${what} release ${addr.label} was not taken. ` +
          'Start a worker (`gantry worker`, or `gantry dev` on a laptop) and retry; nothing was recorded.',
      );
    }
    throw translateRpcError(err, gc, addr.workflowId);
  }
}

/**
 * The running release's status and run id: what a signed statement must name. Waits `timeoutMs` (the command's
 * --timeout) for a worker to answer the status query.
 */
export async function releaseForSigning(gc: GantryClient, addr: ReleaseAddress, what: string, timeoutMs = DEFAULT_UPDATE_TIMEOUT_MS): Promise<{ status: ReleaseStatus; runId: string }> {
  const d = await describeRelease(gc, addr.workflowId);
  if (d.status.name !== 'RUNNING') {
    throw new RefusedError(`Cannot ${what} release ${addr.label}: it has ${describeState(d)}. ` +
      `\`gantry status ${addr.args}\` shows how it ended; to release again, start a new version.`);
  }
  const handle = gc.client.workflow.getHandle(addr.workflowId, d.runId);
  const asked = Date.now();
  try {
    const status = await gc.connection.withDeadline(asked + timeoutMs, () => handle.query(statusQuery));
    return { status, runId: d.runId };
  } catch (err) {
    if (timedOut(err, { askedMs: asked, timeoutMs })) {
      throw new NoWorkerError(`No worker answered within ${Math.round(timeoutMs / 1000)}s (the status query of ${addr.label}), so the request to ${what} it was not sent. ` +
        'Start a worker (`gantry worker`, or `gantry dev` on a laptop) and retry; nothing was recorded.');
    }
    throw translateRpcError(err, gc, addr.workflowId);
  }
}

export interface Who {
  as: string;
  reason?: string;
  /** An approval through a freeze (break-glass group). */
  breakGlass?: boolean;
}

/** The message a vote sends (signed or declared, as the release requires); `--print` shows it instead. */
export async function buildVote(gc: GantryClient, addr: ReleaseAddress, kind: 'approve' | 'reject', who: Who, signing: SigningOptions, timeoutMs = DEFAULT_UPDATE_TIMEOUT_MS): Promise<VoteMessage> {
  const { status, runId } = await releaseForSigning(gc, addr, kind, timeoutMs);
  return voteMessage(kind, status, runId, who, signing);
}

export async function vote(gc: GantryClient, addr: ReleaseAddress, kind: 'approve' | 'reject', message: VoteMessage, timeoutMs = DEFAULT_UPDATE_TIMEOUT_MS): Promise<GateAnswer> {
  const handle = gc.client.workflow.getHandle(addr.workflowId);
  const def = kind === 'approve' ? approveUpdate : rejectUpdate;
  return runUpdate(gc, addr, kind, timeoutMs, () => handle.executeUpdate(def, { args: [message] }));
}

export async function buildDecision(gc: GantryClient, addr: ReleaseAddress, decision: Decision, who: Who, signing: SigningOptions, timeoutMs = DEFAULT_UPDATE_TIMEOUT_MS): Promise<DecisionMessage> {
  const { status, runId } = await releaseForSigning(gc, addr, decision, timeoutMs);
  return decisionMessage(decision, status, runId, who, signing);
}

export async function decide(gc: GantryClient, addr: ReleaseAddress, decision: Decision, message: DecisionMessage, timeoutMs = DEFAULT_UPDATE_TIMEOUT_MS): Promise<string> {
  const handle = gc.client.workflow.getHandle(addr.workflowId);
  return runUpdate(gc, addr, decision, timeoutMs, () => handle.executeUpdate(decideUpdate, { args: [message] }));
}

export async function buildCancel(gc: GantryClient, addr: ReleaseAddress, who: Who, signing: SigningOptions, timeoutMs = DEFAULT_UPDATE_TIMEOUT_MS): Promise<CancelMessage> {
  const { status, runId } = await releaseForSigning(gc, addr, 'cancel', timeoutMs);
  return cancelMessage(status, addr.workflowId, runId, who, signing);
}

/**
 * Ask the release to stop, as a (signed) decision it verifies. Before production changes it ends `cancelled`;
 * after, production work finishes first.
 */
export async function cancelRelease(gc: GantryClient, addr: ReleaseAddress, message: CancelMessage, timeoutMs = DEFAULT_UPDATE_TIMEOUT_MS): Promise<string> {
  const handle = gc.client.workflow.getHandle(addr.workflowId);
  return runUpdate(gc, addr, 'cancel', timeoutMs, () => handle.executeUpdate(cancelUpdate, { args: [message] }));
}
