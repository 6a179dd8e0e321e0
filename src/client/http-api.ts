/**
 * Reading a release through the Temporal server's HTTP API (`/api/v1/…`, the same frontend as gRPC, on its HTTP
 * port) with Node's own `http`: no Temporal SDK, whose loading costs several times a whole `temporal workflow query`
 * (docs/performance.md). `gantry status` tries this first (src/cli/quick-status.ts) and, on any answer it does not
 * fully understand, takes the ordinary gRPC path, which says what went wrong. So this module never reports errors:
 * it answers a snapshot or `undefined`.
 */
import { request as httpRequest } from 'node:http';
import { SA_NAMES } from '../shared/ids';
import { trustedRoots } from './extra-ca';
import type { ReleaseStatus } from '../shared/release';
import type { TemporalSettings } from '../connection';
import { localSibling, type ExecutionView, type IndexedFields, type ReleaseSnapshot } from './snapshot';

/** Temporal's own default: the frontend's HTTP port is its gRPC port + 10 (7233 → 7243); `gantry dev` does the same. */
export const HTTP_PORT_OFFSET = 10;

/**
 * The HTTP API's base URL for a server, or none: GANTRY_HTTP_API given (a URL, or `off`), else for a server on this
 * machine its gRPC port + 10. A remote server's HTTP address is never guessed.
 */
export function httpApiBase(address: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const explicit = env.GANTRY_HTTP_API?.trim();
  if (explicit === 'off' || explicit === '0') return undefined;
  if (explicit) return /^https?:\/\//.test(explicit) ? explicit.replace(/\/+$/, '') : undefined;
  return localSibling(address, HTTP_PORT_OFFSET);
}

/**
 * The HTTP API for these connection settings, or none: only with settings the HTTP path applies as the SDK would,
 * i.e. none of TLS, an API key or gRPC metadata (with any of them, the SDK connects).
 */
export function httpApiFor(settings: TemporalSettings, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const c = settings.client;
  if ((c.tls !== undefined && c.tls !== false) || c.apiKey !== undefined || c.metadata !== undefined) return undefined;
  return httpApiBase(settings.address, env);
}

interface Payload {
  metadata?: Record<string, string>;
  data?: string;
}

/** A `json/plain` payload (the SDK's default converter), canonical form: base64 metadata and data. */
function decodePayload(p: Payload | undefined): { ok: true; value: unknown } | { ok: false } {
  const encoding = p?.metadata?.encoding;
  if (!encoding || Buffer.from(encoding, 'base64').toString() !== 'json/plain' || typeof p.data !== 'string') return { ok: false };
  try {
    return { ok: true, value: JSON.parse(Buffer.from(p.data, 'base64').toString('utf8')) };
  } catch {
    return { ok: false };
  }
}

/**
 * One call; resolves with the status and parsed body of an answer, or `undefined` when there is none (refused
 * connection, not JSON, past `timeoutMs`). `Grpc-Timeout` carries the deadline to the server, as gRPC would.
 */
function send(url: string, method: 'GET' | 'POST', body: string | undefined, timeoutMs: number): Promise<{ status: number; body: unknown } | undefined> {
  return new Promise((resolve) => {
    // node:https (and TLS with it) loads only for an https URL: most of this module's own start-up otherwise.
    const https = url.startsWith('https:');
    const request = https ? (require('node:https') as typeof import('node:https')).request : httpRequest;
    const ca = https ? trustedRoots() : undefined;
    const req = request(url, {
      method,
      ...(ca ? { ca } : {}),
      timeout: timeoutMs,
      headers: {
        // Payloads as the SDK sees them (base64), not the API's JSON shorthand, which turns [] into null; the
        // same for what is sent.
        accept: NO_SHORTHAND,
        'grpc-timeout': `${Math.max(1, Math.floor(timeoutMs))}m`,
        ...(body !== undefined ? { 'content-type': NO_SHORTHAND, 'content-length': Buffer.byteLength(body) } : {}),
      },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', () => resolve(undefined));
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) });
        } catch {
          resolve(undefined);
        }
      });
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
    req.end(body);
  });
}

const NO_SHORTHAND = 'application/json+no-payload-shorthand';

/** The parsed body of a 200 answer, or `undefined` for anything else. */
async function call(url: string, method: 'GET' | 'POST', body: string | undefined, timeoutMs: number): Promise<unknown> {
  const answer = await send(url, method, body, timeoutMs);
  return answer?.status === 200 ? answer.body : undefined;
}

interface DescribeAnswer {
  workflowExecutionInfo?: {
    execution?: { workflowId?: string; runId?: string };
    status?: string;
    startTime?: string;
    closeTime?: string;
    searchAttributes?: { indexedFields?: Record<string, Payload> };
  };
}

const STATUS_PREFIX = 'WORKFLOW_EXECUTION_STATUS_';

/** The description as the CLI shows it, or `undefined` when the answer lacks what the SDK's would have. */
export function executionFromHttp(answer: unknown, workflowId: string): ExecutionView | undefined {
  const info = (answer as DescribeAnswer | undefined)?.workflowExecutionInfo;
  const runId = info?.execution?.runId;
  if (!info || info.execution?.workflowId !== workflowId || !runId || !info.status?.startsWith(STATUS_PREFIX) || !info.startTime) return undefined;
  const startTime = new Date(info.startTime);
  const closeTime = info.closeTime ? new Date(info.closeTime) : undefined;
  if (Number.isNaN(startTime.getTime()) || (closeTime && Number.isNaN(closeTime.getTime()))) return undefined;
  const fields: IndexedFields = {};
  const indexed = info.searchAttributes?.indexedFields ?? {};
  for (const key of ['service', 'version', 'stage', 'outcome'] as const) {
    const p = indexed[SA_NAMES[key]];
    if (!p) continue;
    const decoded = decodePayload(p);
    if (!decoded.ok || typeof decoded.value !== 'string') return undefined;
    fields[key] = decoded.value;
  }
  return { workflowId, runId, status: { name: info.status.slice(STATUS_PREFIX.length) }, startTime, ...(closeTime ? { closeTime } : {}), fields };
}

/** The status query's answer, or `undefined` (rejected, no payload, not gantry's JSON). */
export function statusFromHttp(answer: unknown): ReleaseStatus | undefined {
  const payloads = (answer as { queryResult?: { payloads?: Payload[] } } | undefined)?.queryResult?.payloads;
  if (!payloads || payloads.length !== 1) return undefined;
  const decoded = decodePayload(payloads[0]);
  if (!decoded.ok || typeof decoded.value !== 'object' || decoded.value === null) return undefined;
  const status = decoded.value as Partial<ReleaseStatus>;
  return typeof status.workflowId === 'string' && typeof status.stage === 'string' ? (decoded.value as ReleaseStatus) : undefined;
}

/**
 * Describe the release and ask its status query at once, as `readRelease` does over gRPC. Only the answer where
 * both came back whole counts; a release with no worker to answer within `timeoutMs` is left to the gRPC path.
 */
export async function readReleaseOverHttp(base: string, namespace: string, workflowId: string, timeoutMs: number): Promise<ReleaseSnapshot | undefined> {
  const at = `${base}/api/v1/namespaces/${encodeURIComponent(namespace)}/workflows/${encodeURIComponent(workflowId)}`;
  const [described, queried] = await Promise.all([
    call(at, 'GET', undefined, timeoutMs),
    call(`${at}/query/status`, 'POST', JSON.stringify({ query: {} }), timeoutMs),
  ]);
  const description = executionFromHttp(described, workflowId);
  const status = statusFromHttp(queried);
  if (!description || !status || status.workflowId !== workflowId) return undefined;
  return { description, status };
}

/** A `json/plain` payload, as the SDK's default converter writes one (`type` for a typed search attribute). */
function jsonPayload(value: unknown, type?: string): Payload {
  return {
    metadata: { encoding: Buffer.from('json/plain').toString('base64'), ...(type ? { type: Buffer.from(type).toString('base64') } : {}) },
    data: Buffer.from(JSON.stringify(value)).toString('base64'),
  };
}

/** What a start sends, in the SDK's terms (`WorkflowStartOptions`), for the SDK path and this one alike. */
export interface StartCall {
  workflowId: string;
  workflowType: string;
  taskQueue: string;
  args: unknown[];
  /** Keyword search attributes, by name. */
  keywords: Record<string, string>;
  summary: string;
  details: string;
  /** The server keeps it with the run it starts: how a start whose answer was lost is told from another. */
  requestId: string;
  identity: string;
}

/**
 * StartWorkflowExecution over the HTTP API, with the request the SDK would send for the same options (the reuse
 * policy ALLOW_DUPLICATE_FAILED_ONLY, json/plain payloads, Keyword search attributes, the summary and details).
 * Resolves with the run id when this request started the run, and `undefined` for anything else: an existing
 * release, another refusal, no answer. The caller then starts over gRPC, which explains a refusal, and which tells
 * a run this request started (its answer lost) from another by the request id the server kept.
 */
export async function startOverHttp(base: string, namespace: string, start: StartCall, timeoutMs: number): Promise<{ runId: string } | undefined> {
  const body = {
    namespace,
    workflowId: start.workflowId,
    workflowType: { name: start.workflowType },
    taskQueue: { name: start.taskQueue, kind: 'TASK_QUEUE_KIND_NORMAL' },
    input: { payloads: start.args.map((a) => jsonPayload(a)) },
    identity: start.identity,
    requestId: start.requestId,
    workflowIdReusePolicy: 'WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY',
    searchAttributes: { indexedFields: Object.fromEntries(Object.entries(start.keywords).map(([k, v]) => [k, jsonPayload(v, 'Keyword')])) },
    userMetadata: { summary: jsonPayload(start.summary), details: jsonPayload(start.details) },
  };
  const url = `${base}/api/v1/namespaces/${encodeURIComponent(namespace)}/workflows/${encodeURIComponent(start.workflowId)}`;
  const answer = await send(url, 'POST', JSON.stringify(body), timeoutMs);
  const runId = answer?.status === 200 ? (answer.body as { runId?: unknown } | undefined)?.runId : undefined;
  return typeof runId === 'string' && runId ? { runId } : undefined;
}
