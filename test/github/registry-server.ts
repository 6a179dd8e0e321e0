/**
 * A real registry for the "digest from the registry" path: Debian's docker-registry (distribution v2) on a
 * random loopback port with its storage in a temp dir, and an image manifest pushed over the distribution API.
 * Missing binary: a loud failure naming the provisioning command.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, logTail, startDaemon, waitUntilReady, type Daemon } from '../../src/lab/daemon';

export interface TestRegistry {
  host: string;
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

export async function startRegistry(): Promise<TestRegistry> {
  const bin = findBinary();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-gh-registry-'));
  const port = await freePort();
  const config = path.join(dir, 'config.yml');
  writeFileSync(
    config,
    ['version: 0.1', 'log: { level: warn, accesslog: { disabled: true } }', `storage: { filesystem: { rootdirectory: ${dir}/data } }`, `http: { addr: "127.0.0.1:${port}" }`, ''].join('\n'),
  );
  const daemon: Daemon = startDaemon('docker-registry', bin, ['serve', config], path.join(dir, 'registry.log'));
  const base = `http://127.0.0.1:${port}`;
  try {
    await waitUntilReady(daemon, `answering on 127.0.0.1:${port}`, async () => (await fetch(`${base}/v2/`)).status === 200, 15_000);
  } catch (err) {
    await daemon.stop();
    throw new Error(`${(err as Error).message}\n${logTail(path.join(dir, 'registry.log'))}`);
  }

  async function putBlob(name: string, data: Buffer): Promise<string> {
    const digest = sha256(data);
    const start = await fetch(`${base}/v2/${name}/blobs/uploads/`, { method: 'POST' });
    if (start.status !== 202) throw new Error(`registry upload start answered ${start.status}`);
    const location = new URL(start.headers.get('location')!, base);
    location.searchParams.set('digest', digest);
    const put = await fetch(location, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: data });
    if (put.status !== 201) throw new Error(`registry blob upload answered ${put.status}: ${await put.text()}`);
    return digest;
  }

  return {
    host: `127.0.0.1:${port}`,
    async push(name, tag) {
      const configBlob = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [] } }));
      const layer = Buffer.from(`layer of ${name}:${tag}`);
      const configDigest = await putBlob(name, configBlob);
      const layerDigest = await putBlob(name, layer);
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
        headers: { 'content-type': 'application/vnd.docker.distribution.manifest.v2+json' },
        body: manifest,
      });
      if (res.status !== 201) throw new Error(`registry manifest upload answered ${res.status}: ${await res.text()}`);
      const digest = res.headers.get('docker-content-digest');
      if (digest !== sha256(manifest)) throw new Error(`registry reported digest ${digest}, expected ${sha256(manifest)}`);
      return digest;
    },
    async stop() {
      await daemon.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
