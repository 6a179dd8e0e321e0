/**
 * A release as the CLI shows it: how it is addressed, and what the server and the workflow say of it. No Temporal
 * SDK here: `gantry status`'s quick path (src/cli/quick-status.ts) builds these from the server's HTTP API, the
 * ordinary path from the SDK's description (src/client/release.ts `executionView`).
 */
import { releaseWorkflowId } from '../shared/ids';
import type { ReleaseStatus } from '../shared/release';
import { UsageError } from './errors';

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

/** The search attributes gantry indexes releases by, as plain strings. */
export interface IndexedFields {
  service?: string;
  version?: string;
  stage?: string;
  outcome?: string;
}

/** What the server says of one execution of a release, whoever asked it (gRPC or the HTTP API). */
export interface ExecutionView {
  workflowId: string;
  runId: string;
  /** Temporal's execution status: RUNNING, COMPLETED, FAILED, CANCELLED, TERMINATED, TIMED_OUT, CONTINUED_AS_NEW. */
  status: { name: string };
  startTime: Date;
  closeTime?: Date | undefined;
  fields: IndexedFields;
}

/** Describe the execution in a few words without needing a worker: `running, stage smoke` / `ended: succeeded`. */
export function describeExecution(d: Pick<ExecutionView, 'status' | 'closeTime' | 'fields'>): string {
  if (d.status.name === 'RUNNING') return `running, stage ${d.fields.stage ?? 'unknown'}`;
  const how = d.fields.outcome ?? d.status.name.toLowerCase();
  return `ended ${how}${d.closeTime ? ` at ${d.closeTime.toISOString()}` : ''}`;
}

export interface ReleaseSnapshot {
  description: ExecutionView;
  /** The workflow's own status (query, or its result once completed); missing when no worker answered. */
  status?: ReleaseStatus;
  /** Why `status` is missing, in words. */
  statusProblem?: string;
}

/** The dev server's default: its Web UI at the gRPC port + 1000 (`temporal server start-dev` and `gantry dev`). */
export const UI_PORT_OFFSET = 1000;

/**
 * The Web UI's base URL: given explicitly (--ui-url, GANTRY_UI_URL), or, for a server on this machine, the dev
 * server's default (its gRPC port + {@link UI_PORT_OFFSET}).
 */
export function webUiBase(address: string, explicit?: string): string | undefined {
  if (explicit) return explicit.replace(/\/+$/, '');
  return localSibling(address, UI_PORT_OFFSET);
}

/**
 * `http://host:port` of a service beside a Temporal server on this machine, at its gRPC port + `offset`; none
 * for a remote server (whose other ports are never guessed) or past the last port.
 */
export function localSibling(address: string, offset: number): string | undefined {
  const m = LOOPBACK.exec(address);
  if (!m) return undefined;
  const port = Number(m[2]) + offset;
  return port <= 65535 ? `http://${m[1]}:${port}` : undefined;
}

export function workflowUrl(uiBase: string | undefined, namespace: string, workflowId: string): string | undefined {
  if (!uiBase) return undefined;
  return `${uiBase}/namespaces/${encodeURIComponent(namespace)}/workflows/${encodeURIComponent(workflowId)}`;
}

const LOOPBACK = /^(localhost|127\.0\.0\.1|\[::1\]):(\d+)$/;
