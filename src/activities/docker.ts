/**
 * Shared helpers for the container steps: reaching a Docker-compatible engine with dockerode (Docker itself or
 * Podman's API), following its progress streams, reading a v2 registry over HTTP, turning what goes wrong into
 * failures that say whether a retry can help, and what the deployers share (ports, env files; the contract and
 * labels are in deployer.ts, re-exported here).
 */
import type { Readable } from 'node:stream';
import Docker from 'dockerode';
import { GantryErrorType, nonRetryable, retryable } from '../shared/errors';
import { keepBeating } from './heartbeat';

/** Make a dockerode client for a socket path (`unix://` prefix allowed); default: DOCKER_HOST, else /var/run/docker.sock. */
export type EngineFactory = (socketPath?: string) => Docker;

export const defaultEngine: EngineFactory = (socketPath) => {
  if (socketPath) return new Docker({ socketPath: socketPath.replace(/^unix:\/\//, '') });
  return new Docker();
};

/** Where an engine is, for messages. */
export function engineAddress(socketPath?: string, env: NodeJS.ProcessEnv = process.env): string {
  return socketPath ?? env.DOCKER_HOST ?? '/var/run/docker.sock';
}

/** Network trouble: the thing did not answer; a retry may help. */
const UNREACHABLE = /ECONNREFUSED|ECONNRESET|ENOENT|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|socket hang up|connection refused|connection reset|i\/o timeout|dial tcp|no such host|timeout exceeded|TLS handshake|server misbehaving|503 Service Unavailable|502 Bad Gateway|too many requests/i;
const AUTH = /unauthorized|authentication required|denied: requested access|access denied|incorrect username or password|no basic auth credentials/i;
const NOT_FOUND = /manifest unknown|not found|no such image|does not exist|name unknown|404/i;

export type EngineFailureKind = 'unreachable' | 'auth' | 'not-found' | 'other';

export function classifyEngineText(text: string): EngineFailureKind {
  if (AUTH.test(text)) return 'auth';
  if (UNREACHABLE.test(text)) return 'unreachable';
  if (NOT_FOUND.test(text)) return 'not-found';
  return 'other';
}

/** The text of a dockerode error (HTTP status + engine message, or the socket error). */
export function engineErrorText(err: unknown): string {
  const e = err as { statusCode?: number; json?: { message?: string; cause?: string } | null; message?: string; code?: string; reason?: string };
  const body = e?.json?.message ?? e?.json?.cause;
  const text = [e?.code, e?.statusCode ? `HTTP ${e.statusCode}` : undefined, body ?? e?.message ?? String(err)].filter(Boolean).join(': ');
  return text.replace(/\s+/g, ' ').trim().slice(0, 800);
}

export function statusCode(err: unknown): number | undefined {
  return (err as { statusCode?: number })?.statusCode;
}

/** A failure for an engine that did not answer: retryable, with where it was looked for. */
export function engineUnavailable(what: string, socketPath: string | undefined, err: unknown): Error {
  return retryable(
    `Could not ${what}: the container engine at ${engineAddress(socketPath)} did not answer (${engineErrorText(err)}). ` +
      'Gantry retries; if it persists, start the engine (Docker, or `podman system service`) or fix socketPath in the release config.',
    { engine: engineAddress(socketPath) },
  );
}

export interface StreamEvent {
  status?: string;
  stream?: string;
  id?: string;
  progress?: string;
  progressDetail?: { current?: number; total?: number };
  aux?: { ID?: string; Digest?: string; Tag?: string };
  error?: string;
  errorDetail?: { message?: string };
}

/**
 * Read a progress stream (build, pull, push) to its end, handing each event to `onEvent`. Resolves with all
 * events; an `error` event rejects with {@link StreamError}. Destroying the stream on `signal` aborts the wait.
 */
export function followStream(docker: Docker, stream: NodeJS.ReadableStream, onEvent: (e: StreamEvent) => void, signal?: AbortSignal): Promise<StreamEvent[]> {
  // A layer can take a while without a progress event: keep heartbeating meanwhile.
  return keepBeating(() => new Promise((resolve, reject) => {
    const onAbort = () => {
      (stream as Readable).destroy?.();
      reject(signal?.reason instanceof Error ? signal.reason : new Error('cancelled'));
    };
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    docker.modem.followProgress(
      stream,
      (err: Error | null, events: StreamEvent[]) => {
        signal?.removeEventListener('abort', onAbort);
        if (err) return reject(err);
        const failed = events.find((e) => e.error || e.errorDetail);
        if (failed) return reject(new StreamError(failed.errorDetail?.message ?? failed.error ?? 'unknown error', events));
        resolve(events);
      },
      (e: StreamEvent) => onEvent(e),
    );
  }));
}

export class StreamError extends Error {
  constructor(message: string, readonly events: StreamEvent[]) {
    super(message.trim());
    this.name = 'StreamError';
  }
}

/** The last lines of a build's output, for a failure message. */
export function buildLogTail(events: StreamEvent[], lines = 12): string {
  const text = events.map((e) => e.stream ?? (e.status ? `${e.status}\n` : '')).join('');
  return text.trim().split('\n').slice(-lines).join('\n');
}

// --- image references ---------------------------------------------------------------------------------------

/** `registry/name` and the pieces of `registry/name:tag` or `registry/name@sha256:…`. */
export function splitImageRef(ref: string): { repository: string; tag?: string; digest?: string } {
  const at = ref.indexOf('@');
  if (at >= 0) return { repository: ref.slice(0, at), digest: ref.slice(at + 1) };
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  if (colon > slash) return { repository: ref.slice(0, colon), tag: ref.slice(colon + 1) };
  return { repository: ref };
}

// --- registry (HTTP API v2) --------------------------------------------------------------------------------

export const MANIFEST_TYPES = [
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.index.v1+json',
].join(', ');

/** Loopback registries speak plain HTTP (the lab, a local registry); anything else HTTPS. */
export function registryBaseUrl(registry: string): string {
  if (/^https?:\/\//.test(registry)) return registry.replace(/\/+$/, '');
  const host = registry.split('/')[0]!;
  const plain = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$/.test(host);
  return `${plain ? 'http' : 'https'}://${host}`;
}

/** The repository path inside the registry: `{registry-path/}{name}`. */
function registryRepoPath(registry: string, name: string): string {
  const rest = registry.replace(/^https?:\/\//, '').split('/').slice(1).join('/');
  return rest ? `${rest}/${name}` : name;
}

export interface RegistryManifest {
  digest: string;
  mediaType: string;
  manifest: { config?: { digest?: string }; manifests?: unknown[] };
}

function registryUnavailable(registry: string, err: unknown): Error {
  const cause = (err as { cause?: { code?: string; message?: string } })?.cause;
  const detail = cause?.code ?? cause?.message ?? (err as Error)?.message ?? String(err);
  return retryable(
    `The registry ${registry} did not answer (${detail}). Gantry retries; if it persists, check the registry is running and ` +
      'reachable from the worker (for the local lab: `npx tsx scripts/lab/lab.ts status`).',
    { registry },
  );
}

async function registryFetch(registry: string, pathname: string, init: RequestInit, signal?: AbortSignal): Promise<Response> {
  const url = `${registryBaseUrl(registry)}/v2/${pathname}`;
  try {
    return await fetch(url, { ...init, signal: signal ? AbortSignal.any([signal, AbortSignal.timeout(30_000)]) : AbortSignal.timeout(30_000) });
  } catch (err) {
    if (signal?.aborted) throw err;
    throw registryUnavailable(registry, err);
  }
}

/**
 * The manifest a registry holds for `name:reference`, or undefined when it has none (404). Returns undefined too
 * when the registry wants credentials gantry does not have for reading (401/403): the caller cannot tell then.
 */
export async function getRegistryManifest(registry: string, name: string, reference: string, signal?: AbortSignal): Promise<RegistryManifest | 'unauthorized' | undefined> {
  const res = await registryFetch(registry, `${registryRepoPath(registry, name)}/manifests/${reference}`, { headers: { Accept: MANIFEST_TYPES } }, signal);
  if (res.status === 404) return undefined;
  if (res.status === 401 || res.status === 403) return 'unauthorized';
  if (res.status >= 500) throw registryUnavailable(registry, new Error(`HTTP ${res.status}`));
  if (!res.ok) {
    throw nonRetryable(GantryErrorType.ConfigInvalid, `The registry ${registry} answered HTTP ${res.status} for ${name}:${reference}; check image.registry and image.name in the release config.`);
  }
  const digest = res.headers.get('docker-content-digest');
  const body = (await res.json()) as RegistryManifest['manifest'];
  if (!digest) throw retryable(`The registry ${registry} gave no Docker-Content-Digest for ${name}:${reference}; gantry retries.`);
  return { digest, mediaType: res.headers.get('content-type') ?? '', manifest: body };
}

/** The labels of the image config a manifest points at (empty when there is none, e.g. an index). */
export async function getRegistryImageLabels(registry: string, name: string, manifest: RegistryManifest, signal?: AbortSignal): Promise<Record<string, string>> {
  const configDigest = manifest.manifest.config?.digest;
  if (!configDigest) return {};
  const res = await registryFetch(registry, `${registryRepoPath(registry, name)}/blobs/${configDigest}`, {}, signal);
  if (!res.ok) throw registryUnavailable(registry, new Error(`HTTP ${res.status} for the image config blob`));
  const config = (await res.json()) as { config?: { Labels?: Record<string, string> | null } };
  return config.config?.Labels ?? {};
}

// --- deploy targets: what the deployers share (the contract itself is in deployer.ts) -----------------------

export { containerLabels, type Deployer, type Deployers, LABELS, previousImageOf, type Restored, type RestoreRequest, rollbackLabels } from './deployer';

export interface PortMapping {
  hostIp: string;
  hostPort: string;
  containerPort: string;
  protocol: 'tcp' | 'udp';
}

/**
 * `8080:80`, `127.0.0.1:8080:80`, `[::1]:8080:80`, `8080:80/udp` (validated by the config schema). An IPv6
 * `hostIp` is returned without its brackets, as the engine API takes it; see {@link formatPublish} for the CLI.
 */
export function parsePort(spec: string): PortMapping {
  const [mapping, protocol = 'tcp'] = spec.split('/') as [string, string?];
  const parts = mapping.split(':');
  const containerPort = parts.pop()!;
  const hostPort = parts.pop()!;
  const hostIp = parts.join(':').replace(/^\[(.*)\]$/, '$1');
  return { hostIp, hostPort, containerPort, protocol: protocol as 'tcp' | 'udp' };
}

/** A mapping as `docker run --publish` takes it (IPv6 addresses in brackets). */
export function formatPublish(p: PortMapping): string {
  const ip = p.hostIp.includes(':') ? `[${p.hostIp}]` : p.hostIp;
  return `${ip ? `${ip}:` : ''}${p.hostPort}:${p.containerPort}/${p.protocol}`;
}

/** Parse an env file the way `docker run --env-file` does: KEY=value lines, # comments, bare KEY taken from `env`. */
export function parseEnvFile(text: string, env: NodeJS.ProcessEnv): string[] {
  const out: string[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trimStart();
    if (!line || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq < 0) {
      const v = env[line.trim()];
      if (v !== undefined) out.push(`${line.trim()}=${v}`);
    } else {
      out.push(`${line.slice(0, eq).trim()}=${line.slice(eq + 1)}`);
    }
  }
  return out;
}
