/**
 * A real registry for the "digest from the registry" path: Debian's docker-registry (distribution v2) on a
 * random loopback port with its storage in a temp dir, and an image manifest pushed over the distribution API.
 * Missing binary: a loud failure naming the provisioning command.
 *
 * With `tokenAuth`, the registry requires bearer tokens (as ghcr.io and Docker Hub do, even for public pulls)
 * from an in-process token service that signs them with the test-only key in fixtures/ (a self-signed
 * certificate the registry trusts; it protects nothing). The token service hands out tokens to anyone unless
 * told to refuse pulls.
 */
import { createHash, createSign, X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort, logTail, startDaemon, waitUntilReady, type Daemon } from '../../src/lab/daemon';

export interface TestRegistry {
  host: string;
  /** Token requests the token service answered (scope asked for, and whether it refused). */
  tokenRequests: { scope: string | null; refused: boolean }[];
  /** With tokenAuth: refuse tokens for pulls (a registry that needs credentials to read). */
  refusePulls: boolean;
  /** Push a small image as `{name}:{tag}`; returns the manifest digest the registry reports. */
  push(name: string, tag: string): Promise<string>;
  stop(): Promise<void>;
}

function findBinary(): string {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const file = path.join(dir, 'docker-registry');
    if (existsSync(file)) return file;
  }
  throw new Error('docker-registry (Debian package docker-registry) is not installed; provision it with `bash scripts/lab/provision.sh` as root, then rerun.');
}

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

const FIXTURES = path.join(__dirname, 'fixtures');
const SERVICE = 'gantry-test-registry';
const ISSUER = 'gantry-test-token-service';
const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

/** A registry token (JWT, RS256) granting `scope`, signed by the fixture key with its certificate in x5c. */
function signToken(scope: string | null): string {
  const cert = new X509Certificate(readFileSync(path.join(FIXTURES, 'registry-token-signer.crt')));
  const header = { alg: 'RS256', typ: 'JWT', x5c: [cert.raw.toString('base64')] };
  const now = Math.floor(Date.now() / 1000);
  const access = (scope ?? '')
    .split(' ')
    .filter(Boolean)
    .map((s) => {
      const [type, name, actions] = s.split(':');
      return { type, name, actions: (actions ?? '').split(',') };
    });
  const claims = { iss: ISSUER, sub: 'anonymous', aud: SERVICE, exp: now + 300, nbf: now - 10, iat: now, jti: `${now}-${Math.random()}`, access };
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  const signature = createSign('RSA-SHA256').update(input).sign(readFileSync(path.join(FIXTURES, 'registry-token-signer.key')));
  return `${input}.${b64url(signature)}`;
}

export async function startRegistry(opts: { tokenAuth?: boolean } = {}): Promise<TestRegistry> {
  const bin = findBinary();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-gh-registry-'));
  const port = await freePort();
  const config = path.join(dir, 'config.yml');
  const tokenRequests: TestRegistry['tokenRequests'] = [];
  let tokenServer: http.Server | undefined;
  const state = { refusePulls: false };
  const lines = ['version: 0.1', 'log: { level: warn, accesslog: { disabled: true } }', `storage: { filesystem: { rootdirectory: ${dir}/data } }`, `http: { addr: "127.0.0.1:${port}" }`];
  if (opts.tokenAuth) {
    tokenServer = http.createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      const scope = url.searchParams.get('scope');
      // Pushes (the test's own setup) always get a token; pulls only while not refused.
      const refused = state.refusePulls && !(scope ?? '').includes('push');
      tokenRequests.push({ scope, refused });
      if (url.pathname !== '/token' || url.searchParams.get('service') !== SERVICE || refused) {
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"errors":[{"code":"UNAUTHORIZED"}]}');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: signToken(scope) }));
    });
    await new Promise<void>((r) => tokenServer!.listen(0, '127.0.0.1', r));
    const realm = `http://127.0.0.1:${(tokenServer.address() as AddressInfo).port}/token`;
    lines.push(`auth: { token: { realm: "${realm}", service: ${SERVICE}, issuer: ${ISSUER}, rootcertbundle: ${path.join(FIXTURES, 'registry-token-signer.crt')} } }`);
  }
  writeFileSync(config, `${lines.join('\n')}\n`);
  const daemon: Daemon = startDaemon('docker-registry', bin, ['serve', config], path.join(dir, 'registry.log'));
  const base = `http://127.0.0.1:${port}`;
  try {
    await waitUntilReady(daemon, `answering on 127.0.0.1:${port}`, async () => [200, 401].includes((await fetch(`${base}/v2/`)).status), 15_000);
  } catch (err) {
    await daemon.stop();
    tokenServer?.close();
    throw new Error(`${(err as Error).message}\n${logTail(path.join(dir, 'registry.log'))}`);
  }

  /** A push token for `name` when the registry wants one (what `docker login` + push would get). */
  async function pushAuth(name: string): Promise<Record<string, string>> {
    if (!tokenServer) return {};
    const realm = `http://127.0.0.1:${(tokenServer.address() as AddressInfo).port}/token`;
    const res = await fetch(`${realm}?service=${SERVICE}&scope=${encodeURIComponent(`repository:${name}:pull,push`)}`);
    const { token } = (await res.json()) as { token: string };
    return { authorization: `Bearer ${token}` };
  }

  async function putBlob(name: string, data: Buffer, auth: Record<string, string>): Promise<string> {
    const digest = sha256(data);
    const start = await fetch(`${base}/v2/${name}/blobs/uploads/`, { method: 'POST', headers: auth });
    if (start.status !== 202) throw new Error(`registry upload start answered ${start.status}`);
    const location = new URL(start.headers.get('location')!, base);
    location.searchParams.set('digest', digest);
    const put = await fetch(location, { method: 'PUT', headers: { 'content-type': 'application/octet-stream', ...auth }, body: data });
    if (put.status !== 201) throw new Error(`registry blob upload answered ${put.status}: ${await put.text()}`);
    return digest;
  }

  return {
    host: `127.0.0.1:${port}`,
    tokenRequests,
    get refusePulls() {
      return state.refusePulls;
    },
    set refusePulls(v: boolean) {
      state.refusePulls = v;
    },
    async push(name, tag) {
      const auth = await pushAuth(name);
      const configBlob = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [] } }));
      const layer = Buffer.from(`layer of ${name}:${tag}`);
      const configDigest = await putBlob(name, configBlob, auth);
      const layerDigest = await putBlob(name, layer, auth);
      const manifest = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
          config: { mediaType: 'application/vnd.docker.container.image.v1+json', size: configBlob.length, digest: configDigest },
          layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: layer.length, digest: layerDigest }],
        }),
      );
      const res = await fetch(`${base}/v2/${name}/manifests/${tag}`, {
        method: 'PUT',
        headers: { 'content-type': 'application/vnd.docker.distribution.manifest.v2+json', ...auth },
        body: manifest,
      });
      if (res.status !== 201) throw new Error(`registry manifest upload answered ${res.status}: ${await res.text()}`);
      const digest = res.headers.get('docker-content-digest');
      if (digest !== sha256(manifest)) throw new Error(`registry reported digest ${digest}, expected ${sha256(manifest)}`);
      return digest;
    },
    async stop() {
      await daemon.stop();
      if (tokenServer) await new Promise((r) => tokenServer.close(r));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
