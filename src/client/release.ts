/**
 * Finding one release and reading its state. A release is addressed as `<service> <version>` (the workflow id
 * is derived from them) or by its workflow id.
 */
import {
  isGrpcCancelledError,
  isGrpcDeadlineError,
  isGrpcServiceError,
  ServiceError,
  type WorkflowExecutionDescription,
  type WorkflowHandle,
} from '@temporalio/client';
import { WorkflowNotFoundError } from '@temporalio/common';
import { ServerUnreachableError } from '../connection';
import {
  SA_OUTCOME,
  SA_SERVICE,
  SA_STAGE,
  SA_VERSION,
  statusQuery,
  type ReleaseStatus,
} from '../shared/release';
import type { GantryClient } from './context';
import { ReleaseNotFoundError } from './errors';
import { describeExecution, type ExecutionView, type IndexedFields, type ReleaseSnapshot } from './snapshot';

export { normalizeVersion, releaseAddress, type IndexedFields, type ReleaseAddress, type ReleaseSnapshot } from './snapshot';

/** Map Temporal's "not found" to ours; a lost connection to ServerUnreachableError; anything else as is. */
export function translateRpcError(err: unknown, gc: GantryClient, workflowId: string): unknown {
  if (err instanceof WorkflowNotFoundError) return new ReleaseNotFoundError(workflowId, gc.namespace);
  if (isUnavailable(err)) return new ServerUnreachableError(gc.settings.address, err);
  return err;
}

/** gRPC status UNAVAILABLE: the server is down or unreachable. */
const GRPC_UNAVAILABLE = 14;

export function isUnavailable(err: unknown): boolean {
  const cause = err instanceof ServiceError ? err.cause : err;
  return isGrpcServiceError(cause) && Number(cause.code) === GRPC_UNAVAILABLE;
}

/**
 * A call that ran out of its deadline: gRPC's deadline error, on the error or as its cause. Given when the call
 * was made, also a cancellation that came back at the deadline, which is how a busy server may answer one.
 */
export function timedOut(err: unknown, call?: { askedMs: number; timeoutMs: number }): boolean {
  const is = (test: (e: unknown) => boolean): boolean => test(err) || (err instanceof ServiceError && test(err.cause));
  if (is(isGrpcDeadlineError)) return true;
  return call !== undefined && Date.now() - call.askedMs >= call.timeoutMs - 250 && is(isGrpcCancelledError);
}

export async function describeRelease(gc: GantryClient, workflowId: string): Promise<WorkflowExecutionDescription> {
  try {
    return await gc.client.workflow.getHandle(workflowId).describe();
  } catch (err) {
    throw translateRpcError(err, gc, workflowId);
  }
}

export function indexedFields(d: Pick<WorkflowExecutionDescription, 'typedSearchAttributes'>): IndexedFields {
  const sa = d.typedSearchAttributes;
  const out: IndexedFields = {};
  const service = sa.get(SA_SERVICE);
  const version = sa.get(SA_VERSION);
  const stage = sa.get(SA_STAGE);
  const outcome = sa.get(SA_OUTCOME);
  if (service !== undefined) out.service = service;
  if (version !== undefined) out.version = version;
  if (stage !== undefined) out.stage = stage;
  if (outcome !== undefined) out.outcome = outcome;
  return out;
}

/** Describe the execution in a few words without needing a worker: `running, stage smoke` / `ended: succeeded`. */
export function describeState(d: WorkflowExecutionDescription): string {
  return describeExecution(executionView(d));
}

/** The server's description as the CLI shows it (src/client/snapshot.ts). */
export function executionView(d: WorkflowExecutionDescription): ExecutionView {
  return { workflowId: d.workflowId, runId: d.runId, status: { name: d.status.name }, startTime: d.startTime, closeTime: d.closeTime, fields: indexedFields(d) };
}

/**
 * Ask the release for its status. Queries are answered by a worker, so this waits at most `timeoutMs`; a
 * completed release also has its status as its result, which needs no worker.
 */
export async function readRelease(gc: GantryClient, workflowId: string, timeoutMs = 10_000): Promise<ReleaseSnapshot> {
  const handle = gc.client.workflow.getHandle(workflowId);
  const asked = Date.now();
  // Both at once (one round trip less for `gantry status`); the description's error, if any, is the one to say.
  const query = queryStatus(gc, handle, timeoutMs).then((status) => ({ status }), (err: unknown) => ({ err }));
  const description = executionView(await describeRelease(gc, workflowId));
  const answer = await query;
  if ('status' in answer) return { description, status: answer.status };
  const { err } = answer;
  if (err instanceof ServerUnreachableError || err instanceof ReleaseNotFoundError) throw err;
  if (description.status.name === 'COMPLETED') {
    try {
      return { description, status: (await handle.result()) as ReleaseStatus };
    } catch {
      // fall through to the explanation below
    }
  }
  return { description, statusProblem: queryProblem(err, timeoutMs, Date.now() - asked) };
}

export async function queryStatus(gc: GantryClient, handle: WorkflowHandle, timeoutMs: number): Promise<ReleaseStatus> {
  try {
    return await gc.connection.withDeadline(Date.now() + timeoutMs, () => handle.query(statusQuery));
  } catch (err) {
    throw translateRpcError(err, gc, handle.workflowId);
  }
}

function queryProblem(err: unknown, timeoutMs: number, elapsedMs: number): string {
  if (timedOut(err) || elapsedMs >= timeoutMs - 250) {
    return `no worker answered the status query within ${Math.round(timeoutMs / 1000)}s; start one with \`gantry worker\` (or \`gantry dev\`)`;
  }
  const cause = err instanceof Error && err.cause instanceof Error ? ` (${err.cause.message})` : '';
  return `the status query failed: ${err instanceof Error ? err.message : String(err)}${cause}`;
}
