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
 * One call; resolves with the parsed body of a 200 answer, or `undefined` for anything else (refused connection,
 * another status, not JSON, past `timeoutMs`). `Grpc-Timeout` carries the deadline to the server, as gRPC would.
 */
function call(url: string, method: 'GET' | 'POST', body: string | undefined, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve) => {
    // node:https (and TLS with it) loads only for an https URL: most of this module's own start-up otherwise.
    const https = url.startsWith('https:');
    const send = https ? (require('node:https') as typeof import('node:https')).request : httpRequest;
    const ca = https ? trustedRoots() : undefined;
    const req = send(url, {
      method,
      ...(ca ? { ca } : {}),
      timeout: timeoutMs,
      headers: {
        // Payloads as the SDK sees them (base64), not the API's JSON shorthand, which turns [] into null.
        accept: 'application/json+no-payload-shorthand',
        'grpc-timeout': `${Math.max(1, Math.floor(timeoutMs))}m`,
        ...(body !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {}),
      },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', () => resolve(undefined));
      res.on('end', () => {
        if (res.statusCode !== 200) return resolve(undefined);
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
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
