/**
 * The manifest digest of a pushed image, read from the registry over the distribution API (`HEAD
 * /v2/{name}/manifests/{reference}` → `Docker-Content-Digest`). Used when a CI run pushed the image and the
 * config says to take the digest from the registry. Anonymous pulls only: a registry's bearer-token challenge
 * is answered without credentials (public images, or a registry on a trusted network).
 */
import { DIGEST_PATTERN } from './artifact';

export type RegistryErrorKind = 'not-found' | 'unauthorized' | 'unreachable' | 'bad-answer';

export class RegistryError extends Error {
  override name = 'RegistryError';
  constructor(
    message: string,
    readonly kind: RegistryErrorKind,
    readonly status?: number,
  ) {
    super(message);
  }
}

const MANIFEST_TYPES = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

/**
 * The registry's API base URL. `host:port` is HTTPS, except loopback registries (localhost, 127.0.0.0/8, ::1),
 * which are plain HTTP as container engines treat them; an explicit `http://` or `https://` prefix wins.
 */
export function registryBaseUrl(registry: string): string {
  if (/^https?:\/\//.test(registry)) return registry.replace(/\/+$/, '');
  const host = registry.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  if (host === 'docker.io') return 'https://registry-1.docker.io';
  const loopback = host === 'localhost' || /^127\.\d+\.\d+\.\d+$/.test(host) || host === '::1';
  return `${loopback ? 'http' : 'https'}://${registry}`;
}

export interface RegistryDigestOptions {
  signal?: AbortSignal;
  /** One request's time limit. @default 30000 */
  timeoutMs?: number;
}

function parseChallenge(header: string): Record<string, string> | undefined {
  const m = /^Bearer\s+(.*)$/i.exec(header.trim());
  if (!m) return undefined;
  const params: Record<string, string> = {};
  for (const p of m[1]!.matchAll(/(\w+)="([^"]*)"/g)) params[p[1]!.toLowerCase()] = p[2]!;
  return params;
}

/** The digest of `{registry}/{name}:{reference}`; a {@link RegistryError} says why not. */
export async function registryDigest(registry: string, name: string, reference: string, opts: RegistryDigestOptions = {}): Promise<string> {
  const url = `${registryBaseUrl(registry)}/v2/${name}/manifests/${encodeURIComponent(reference)}`;
  const image = `${registry}/${name}:${reference}`;
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const signal = () => AbortSignal.any([AbortSignal.timeout(timeoutMs), ...(opts.signal ? [opts.signal] : [])]);
  const head = async (auth?: string): Promise<Response> => {
    try {
      return await fetch(url, { method: 'HEAD', headers: { accept: MANIFEST_TYPES, ...(auth ? { authorization: auth } : {}) }, signal: signal() });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new RegistryError(`the registry at ${registryBaseUrl(registry)} did not answer (${cause?.code ?? cause?.message ?? (err as Error).message})`, 'unreachable');
    }
  };

  let res = await head();
  if (res.status === 401) {
    const challenge = parseChallenge(res.headers.get('www-authenticate') ?? '');
    if (challenge?.realm) {
      const tokenUrl = new URL(challenge.realm);
      if (challenge.service) tokenUrl.searchParams.set('service', challenge.service);
      tokenUrl.searchParams.set('scope', challenge.scope ?? `repository:${name}:pull`);
      let token: string | undefined;
      try {
        const t = await fetch(tokenUrl, { signal: signal() });
        if (t.ok) {
          const body = (await t.json()) as { token?: string; access_token?: string };
          token = body.token ?? body.access_token;
        }
      } catch {
        token = undefined;
      }
      if (token) res = await head(`Bearer ${token}`);
    }
  }
  if (res.status === 404) throw new RegistryError(`${image} is not in the registry (404)`, 'not-found', 404);
  if (res.status === 401 || res.status === 403) {
    throw new RegistryError(`the registry refused to show ${image} without credentials (${res.status})`, 'unauthorized', res.status);
  }
  if (res.status >= 500 || res.status === 429) {
    throw new RegistryError(`the registry answered ${res.status} for ${image}`, 'unreachable', res.status);
  }
  if (!res.ok) throw new RegistryError(`the registry answered ${res.status} for ${image}`, 'bad-answer', res.status);
  const digest = res.headers.get('docker-content-digest');
  if (!digest || !DIGEST_PATTERN.test(digest)) {
    throw new RegistryError(`the registry answered ${image} without a usable Docker-Content-Digest header (${digest ?? 'none'})`, 'bad-answer', res.status);
  }
  return digest;
}
