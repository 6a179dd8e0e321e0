/**
 * Finding one release and reading its state. A release is addressed as `<service> <version>` (the workflow id
 * is derived from them) or by its workflow id.
 */
import {
  isGrpcServiceError,
  ServiceError,
  type WorkflowExecutionDescription,
  type WorkflowHandle,
} from '@temporalio/client';
import { WorkflowNotFoundError } from '@temporalio/common';
import { ServerUnreachableError } from '../connection';
import {
  releaseWorkflowId,
  SA_OUTCOME,
  SA_SERVICE,
  SA_STAGE,
  SA_VERSION,
  statusQuery,
  type ReleaseStatus,
} from '../shared/release';
import type { GantryClient } from './context';
import { ReleaseNotFoundError, timedOut, UsageError } from './errors';

export interface ReleaseAddress {
  workflowId: string;
  /** `hello 1.2.3`, or the workflow id when addressed by id. */
  label: string;
  /** The arguments that address it again in a command (`hello 1.2.3` or `--id release-…`). */
  args: string;
}

/** `v1.2.3` and `1.2.3` address the same release, as in `gantry start`. */
export function normalizeVersion(version: string): string {
  return version.replace(/^v(?=\d)/, '');
}

export function releaseAddress(service: string | undefined, version: string | undefined, id: string | undefined): ReleaseAddress {
  if (id) {
    if (service || version) throw new UsageError('Give either <service> <version> or --id <workflow-id>, not both.');
    return { workflowId: id, label: id, args: `--id ${id}` };
  }
  if (!service || !version) {
    throw new UsageError('Say which release: `<service> <version>` (e.g. `hello 1.2.3`) or `--id <workflow-id>`; `gantry list` shows the releases.');
  }
  const v = normalizeVersion(version);
  return { workflowId: releaseWorkflowId(service, v), label: `${service} ${v}`, args: `${service} ${v}` };
}

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

export async function describeRelease(gc: GantryClient, workflowId: string): Promise<WorkflowExecutionDescription> {
  try {
    return await gc.client.workflow.getHandle(workflowId).describe();
  } catch (err) {
    throw translateRpcError(err, gc, workflowId);
  }
}

/** The search attributes gantry indexes releases by, as plain strings. */
export interface IndexedFields {
  service?: string;
  version?: string;
  stage?: string;
  outcome?: string;
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
  const f = indexedFields(d);
  if (d.status.name === 'RUNNING') return `running, stage ${f.stage ?? 'unknown'}`;
  const how = f.outcome ?? d.status.name.toLowerCase();
  return `ended ${how}${d.closeTime ? ` at ${d.closeTime.toISOString()}` : ''}`;
}

export interface ReleaseSnapshot {
  description: WorkflowExecutionDescription;
  /** The workflow's own status (query, or its result once completed); missing when no worker answered. */
  status?: ReleaseStatus;
  /** Why `status` is missing, in words. */
  statusProblem?: string;
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
  const description = await describeRelease(gc, workflowId);
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
