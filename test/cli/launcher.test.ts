/**
 * bin/gantry, the installed command, and the TLS trust it hands on (src/client/extra-ca.ts).
 *
 * With NODE_EXTRA_CA_CERTS set, node parses its whole root store at every start; bin/gantry moves the setting to
 * GANTRY_EXTRA_CA_CERTS for commands that run no worker, and the CLI trusts those certificates on the TLS
 * connections it opens. Proven here with a stand-in `node` that prints what it was given, and with real TLS: a
 * loopback server whose certificate only a CA made by openssl for this test vouches for, reached by the real
 * `gantry status` over gRPC with TEMPORAL_TLS, through the launcher.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { trustedRoots } from '../../src/client/extra-ca';
import { temporalSettings } from '../../src/connection';
import { freePort } from '../helpers/ports';
import { BIN, LAUNCHER, ROOT, removeTempDirs, requireBuild, tempDir } from './harness';

let dir: string;
let fakeBin: string;
let ca: { caFile: string; caPem: string; key: string; cert: string };

/** A CA and a server certificate for 127.0.0.1 signed by it, made by openssl. */
function makeCa(at: string): typeof ca {
  const run = (args: string[]) => execFileSync('openssl', args, { cwd: at, stdio: ['ignore', 'pipe', 'pipe'] });
  run(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=gantry test CA']);
  run(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1']);
  writeFileSync(path.join(at, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  run(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'san.ext']);
  const read = (f: string) => readFileSync(path.join(at, f), 'utf8');
  return { caFile: path.join(at, 'ca.pem'), caPem: read('ca.pem').trim(), key: read('server.key'), cert: read('server.pem') };
}

beforeAll(() => {
  requireBuild();
  dir = tempDir('gantry-launcher-');
  fakeBin = path.join(dir, 'fake-bin');
  mkdirSync(fakeBin);
  // A stand-in `node`: prints the two variables and its arguments, one per line.
  writeFileSync(path.join(fakeBin, 'node'),
    '#!/bin/sh\nprintf "%s\\n" "NODE_EXTRA_CA_CERTS=${NODE_EXTRA_CA_CERTS-<unset>}" "GANTRY_EXTRA_CA_CERTS=${GANTRY_EXTRA_CA_CERTS-<unset>}" "$@"\n');
  chmodSync(path.join(fakeBin, 'node'), 0o755);
  const caDir = path.join(dir, 'ca');
  mkdirSync(caDir);
  ca = makeCa(caDir);
});

afterAll(() => removeTempDirs());

/** This process's environment without Temporal settings or extra CA files: each test sets its own. */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TEMPORAL_') && !k.endsWith('EXTRA_CA_CERTS')));
}

/** Runs `cmd args` with only the given environment on top of PATH (the stand-in node first when `fake`). */
function run(cmd: string, args: string[], env: Record<string, string>, fake = true): Promise<{ code: number; stdout: string; stderr: string }> {
  const PATH = fake ? `${fakeBin}:${process.env.PATH}` : process.env.PATH!;
  return new Promise((resolve) => {
    execFile(cmd, args, { env: { ...cleanEnv(), PATH, NO_COLOR: '1', ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

describe('bin/gantry', () => {
  it('runs bin/gantry.js through a link on PATH, as `gantry` by name', async () => {
    const link = path.join(dir, 'gantry');
    symlinkSync(LAUNCHER, link);
    const r = await run(link, ['--version'], {}, false);
    expect(r).toMatchObject({ code: 0, stdout: `${(require(path.join(ROOT, 'package.json')) as { version: string }).version}\n` });
    const fake = await run(link, ['--version'], {});
    expect(fake.stdout.split('\n')[2]).toBe(path.join(ROOT, 'bin', 'gantry.js'));
  });

  it('moves NODE_EXTRA_CA_CERTS to GANTRY_EXTRA_CA_CERTS for a command that runs no worker, passing every argument as given', async () => {
    const args = ['start', 'hello', '1.0.0', '--reason', 'two words and a "quote"', '', '*'];
    const r = await run(LAUNCHER, args, { NODE_EXTRA_CA_CERTS: '/etc/extra ca.pem' });
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')).toEqual(['NODE_EXTRA_CA_CERTS=<unset>', 'GANTRY_EXTRA_CA_CERTS=/etc/extra ca.pem', path.join(ROOT, 'bin', 'gantry.js'), ...args, '']);
  });

  for (const args of [['worker', '--config', 'gantry.yaml'], ['--address', '127.0.0.1:7233', 'dev'], ['status', 'worker', '1.0.0']]) {
    it(`keeps NODE_EXTRA_CA_CERTS for \`gantry ${args.join(' ')}\`: an argument worker or dev may run a worker, whose steps use node's own TLS`, async () => {
      const r = await run(LAUNCHER, args, { NODE_EXTRA_CA_CERTS: '/etc/extra.pem' });
      expect(r.stdout.split('\n').slice(0, 2)).toEqual(['NODE_EXTRA_CA_CERTS=/etc/extra.pem', 'GANTRY_EXTRA_CA_CERTS=<unset>']);
    });
  }

  it('changes nothing when NODE_EXTRA_CA_CERTS is not set', async () => {
    const r = await run(LAUNCHER, ['status', 'hello', '1.0.0'], {});
    expect(r.stdout.split('\n').slice(0, 2)).toEqual(['NODE_EXTRA_CA_CERTS=<unset>', 'GANTRY_EXTRA_CA_CERTS=<unset>']);
  });
});

describe('gantry status\'s quick path', () => {
  /** The files `node bin/gantry.js status …` loaded, written by a preload as the process exits. */
  async function loadedBy(args: string[]): Promise<string[]> {
    const out = path.join(dir, `loaded-${Date.now()}.json`);
    const preload = path.join(dir, 'record-loaded.js');
    writeFileSync(preload, `process.on('exit', () => require('node:fs').writeFileSync(${JSON.stringify(out)}, JSON.stringify(Object.keys(require.cache))));\n`);
    const r = await run(process.execPath, ['-r', preload, BIN, ...args], { TEMPORAL_ADDRESS: `127.0.0.1:${await freePort()}` }, false);
    expect(r.code).not.toBe(0); // nothing listens there: the quick path gives up, the ordinary one says so
    return JSON.parse(readFileSync(out, 'utf8')) as string[];
  }

  it('loads the bundle npm run build made, not the compiled modules, when the bundle is the newer', async () => {
    const loaded = await loadedBy(['status', 'hello', '1.0.0']);
    expect(loaded).toContain(path.join(ROOT, 'dist', 'quick-status.bundle.js'));
    expect(loaded).not.toContain(path.join(ROOT, 'dist', 'src', 'cli', 'quick-status.js'));
  });

  it('loads the compiled module when it is newer than the bundle (a tsc without the rest of the build)', async () => {
    const compiled = path.join(ROOT, 'dist', 'src', 'cli', 'quick-status.js');
    const { atime, mtime } = statSync(compiled);
    const bundle = statSync(path.join(ROOT, 'dist', 'quick-status.bundle.js')).mtime;
    utimesSync(compiled, atime, new Date(bundle.getTime() + 60_000));
    try {
      const loaded = await loadedBy(['status', 'hello', '1.0.0']);
      expect(loaded).toContain(compiled);
      expect(loaded).not.toContain(path.join(ROOT, 'dist', 'quick-status.bundle.js'));
    } finally {
      utimesSync(compiled, atime, mtime);
    }
  });
});

describe('the trust the CLI hands on', () => {
  it('is node\'s default roots and the certificates of the file, and nothing without GANTRY_EXTRA_CA_CERTS', () => {
    expect(trustedRoots({})).toBeUndefined();
    const roots = trustedRoots({ GANTRY_EXTRA_CA_CERTS: ca.caFile })!;
    expect(roots.slice(0, tls.rootCertificates.length)).toEqual([...tls.rootCertificates]);
    expect(roots.slice(tls.rootCertificates.length)).toEqual([ca.caPem]);
  });

  it('says so once and keeps the default roots when the file cannot be read or holds no certificate', () => {
    const lines: string[] = [];
    const missing = path.join(dir, 'missing.pem');
    expect(trustedRoots({ GANTRY_EXTRA_CA_CERTS: missing }, (l) => lines.push(l))).toEqual([...tls.rootCertificates]);
    expect(lines).toEqual([expect.stringContaining(`cannot read NODE_EXTRA_CA_CERTS=${missing} (ENOENT)`)]);
    const empty = path.join(dir, 'empty.pem');
    writeFileSync(empty, 'not a certificate\n');
    expect(trustedRoots({ GANTRY_EXTRA_CA_CERTS: empty }, (l) => lines.push(l))).toEqual([...tls.rootCertificates]);
    expect(lines[1]).toContain(`NODE_EXTRA_CA_CERTS=${empty} holds no PEM certificate`);
  });

  it('reaches the gRPC client\'s TLS settings, unless the connection names its own server CA or is plaintext', () => {
    const caOf = (t: ReturnType<typeof temporalSettings>['client']['tls']): string => (t && typeof t === 'object' && t.serverRootCACertificate ? Buffer.from(t.serverRootCACertificate).toString() : '');
    const base = { GANTRY_EXTRA_CA_CERTS: ca.caFile };
    const onTls = temporalSettings({ env: { ...base, TEMPORAL_TLS: 'true', TEMPORAL_ADDRESS: '127.0.0.1:7233' } }).client.tls;
    expect(caOf(onTls)).toContain(ca.caPem);
    expect(caOf(onTls)).toContain(tls.rootCertificates[0]);
    const withKey = temporalSettings({ env: { ...base, TEMPORAL_API_KEY: 'k', TEMPORAL_ADDRESS: '127.0.0.1:7233' } }).client.tls;
    expect(caOf(withKey)).toContain(ca.caPem);
    const own = temporalSettings({ env: { ...base, TEMPORAL_TLS: 'true', TEMPORAL_TLS_SERVER_CA_CERT_PATH: ca.caFile, TEMPORAL_ADDRESS: '127.0.0.1:7233' } }).client.tls;
    expect(caOf(own).trim()).toBe(ca.caPem);
    expect(temporalSettings({ env: { ...base, TEMPORAL_ADDRESS: '127.0.0.1:7233' } }).client.tls).toBeUndefined();
    // The worker's native connection is left as Temporal's settings give it.
    expect(caOf(temporalSettings({ env: { ...base, TEMPORAL_TLS: 'true', TEMPORAL_ADDRESS: '127.0.0.1:7233' } }).native.tls)).toBe('');
  });

  /** A loopback TLS server with the test CA's certificate; counts the handshakes that succeed and that fail. */
  async function tlsServer(): Promise<{ port: number; handshakes: () => number; refusals: () => number; close: () => Promise<void> }> {
    let ok = 0;
    let refused = 0;
    const server = tls.createServer({ key: ca.key, cert: ca.cert, ALPNProtocols: ['h2'] }, (socket) => {
      ok++;
      socket.destroy();
    });
    server.on('tlsClientError', () => void refused++);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as { port: number };
    return { port, handshakes: () => ok, refusals: () => refused, close: () => new Promise((r) => server.close(() => r())) };
  }

  /** `gantry status` through the launcher over TLS to that server, stopped once the server saw one more outcome. */
  async function statusOverTls(env: Record<string, string>, server: Awaited<ReturnType<typeof tlsServer>>): Promise<void> {
    const child = spawn(LAUNCHER, ['status', 'hello', '1.0.0'], { env: { ...cleanEnv(), NO_COLOR: '1', TEMPORAL_ADDRESS: `127.0.0.1:${server.port}`, TEMPORAL_TLS: 'true', ...env }, stdio: 'ignore' });
    const ended = new Promise<void>((r) => child.on('exit', () => r()));
    const seen = server.handshakes() + server.refusals();
    const deadline = Date.now() + 30_000;
    while (server.handshakes() + server.refusals() === seen && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
    child.kill('SIGKILL');
    await ended;
  }

  it('lets the real CLI, started with NODE_EXTRA_CA_CERTS, trust a server only that file vouches for; without it, the server is refused', async () => {
    const server = await tlsServer();
    try {
      await statusOverTls({ NODE_EXTRA_CA_CERTS: ca.caFile }, server);
      expect({ handshakes: server.handshakes(), refusals: server.refusals() }).toEqual({ handshakes: expect.any(Number), refusals: 0 });
      expect(server.handshakes()).toBeGreaterThan(0);
      const before = server.handshakes();
      await statusOverTls({}, server);
      expect(server.handshakes()).toBe(before);
      expect(server.refusals()).toBeGreaterThan(0);
    } finally {
      await server.close();
    }
  });
});
