/**
 * `gantry dev` as a user runs it: the built CLI starts the Temporal dev server (the provisioned Temporal CLI)
 * on loopback with its Web UI, keeps releases in a database file across restarts, registers the search
 * attributes, runs the worker in-process, and stops worker then server on Ctrl-C / SIGTERM.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createConnection } from 'node:net';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../helpers/ports';
import { requireBinary, TEMPORAL_CLI } from '../helpers/servers';
import { BIN, gantry, removeTempDirs, requireBuild, show, tempDir, waitFor, writeConfig } from './harness';

interface Dev {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

const running: Dev[] = [];

function startDev(args: string[]): Dev {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TEMPORAL_') && k !== 'GANTRY_CONFIG'));
  const child = spawn(process.execPath, [BIN, 'dev', ...args], {
    env: { ...env, NO_COLOR: '1', GANTRY_TEMPORAL_CLI: TEMPORAL_CLI },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout?.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr?.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const dev = { child, stdout: () => out, stderr: () => err, exited };
  running.push(dev);
  return dev;
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function stopDev(dev: Dev, signal: NodeJS.Signals): Promise<number | null> {
  dev.child.kill(signal);
  const code = await Promise.race([dev.exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 40_000))]);
  if (code === 'hung') throw new Error(`gantry dev did not stop within 40s of ${signal}\n${dev.stdout()}\n${dev.stderr()}`);
  return code;
}

beforeAll(() => {
  requireBuild();
  requireBinary(TEMPORAL_CLI, 'The Temporal CLI');
});

afterEach(async () => {
  // A failed assertion must not leave a server behind.
  for (const dev of running.splice(0)) {
    if (dev.child.exitCode === null && dev.child.signalCode === null) await stopDev(dev, 'SIGTERM').catch(() => dev.child.kill('SIGKILL'));
  }
});

afterAll(() => removeTempDirs());

describe('gantry dev', () => {
  it('serves the Web UI, registers the search attributes, keeps releases across a restart, and stops cleanly on Ctrl-C', async () => {
    const port = await freePort();
    const uiPort = await freePort();
    const httpPort = await freePort();
    const state = tempDir('gantry-dev-');
    const config = writeConfig(state, 'gantry.yaml');
    const args = ['--no-worker', '--port', String(port), '--ui-port', String(uiPort), '--http-port', String(httpPort), '--state-dir', state];
    const address = { TEMPORAL_ADDRESS: `127.0.0.1:${port}`, GANTRY_UI_URL: `http://127.0.0.1:${uiPort}` };

    const first = startDev(args);
    await waitFor('gantry dev to report ready', async () => first.stdout().includes('ready'), 90_000);
    expect(first.stdout()).toContain(`Temporal dev server ready at 127.0.0.1:${port}, namespace default.`);
    expect(first.stdout()).toContain(`Web UI      http://127.0.0.1:${uiPort}/namespaces/default/workflows`);
    expect(first.stdout()).toContain(`HTTP API    http://127.0.0.1:${httpPort}`);
    expect(first.stdout()).toContain(`export TEMPORAL_ADDRESS=127.0.0.1:${port} GANTRY_UI_URL=http://127.0.0.1:${uiPort} GANTRY_HTTP_API=http://127.0.0.1:${httpPort}`);
    expect(existsSync(path.join(state, 'temporal.db'))).toBe(true);

    const ui = await fetch(`http://127.0.0.1:${uiPort}/`);
    expect(ui.status).toBe(200);

    // The search attributes are there: a release starts (the server refuses it otherwise) and is found by stage.
    const start = await gantry(['start', 'hello', '1.0.0', '--config', config], { env: address, cwd: state });
    expect(start.code, show(start)).toBe(0);
    expect(start.stdout).toContain(`Web UI   http://127.0.0.1:${uiPort}/namespaces/default/workflows/release-hello-1.0.0`);
    expect(start.stdout).toContain('plan     not resolved yet: no worker answered within 15 s (start one with `gantry worker --config …`)');
    await waitFor('the release to be listed by stage', async () => {
      const r = await gantry(['list', '--stage', 'planning', '--json'], { env: address });
      return r.code === 0 && r.stdout.includes('release-hello-1.0.0');
    });
    // The server's HTTP API is on the port given (`gantry status` reads through it: test/cli/quick-status.test.ts).
    const described = await fetch(`http://127.0.0.1:${httpPort}/api/v1/namespaces/default/workflows/release-hello-1.0.0`);
    expect(described.status).toBe(200);
    expect(await described.text()).toContain('WORKFLOW_EXECUTION_STATUS_RUNNING');

    expect(await stopDev(first, 'SIGINT')).toBe(0);
    expect(first.stderr()).toContain('Stopping the Temporal dev server…');
    expect(first.stderr()).toContain(`Stopped. Releases are kept in ${path.join(state, 'temporal.db')}`);
    expect(await portOpen(port)).toBe(false);

    // Second run on the same state directory: the release is still there, still searchable.
    const second = startDev(args);
    await waitFor('gantry dev to come back', async () => second.stdout().includes('ready'), 90_000);
    const listed = await waitFor('the release from the first run', async () => {
      const r = await gantry(['list', '--service', 'hello', '--json'], { env: address });
      return r.code === 0 ? (JSON.parse(r.stdout) as { workflowId: string; stage: string }[]).find((x) => x.workflowId === 'release-hello-1.0.0') : undefined;
    });
    expect(listed).toMatchObject({ stage: 'planning' });
    const dup = await gantry(['start', 'hello', '1.0.0', '--config', config], { env: address, cwd: state });
    expect(dup.code, show(dup)).toBe(5);

    expect(await stopDev(second, 'SIGTERM')).toBe(0);
    expect(await portOpen(port)).toBe(false);
  }, 240_000);

  it('with its worker and no config, exits 3 saying to pass --config or set GANTRY_CONFIG, and starts no server', async () => {
    const port = await freePort();
    const uiPort = await freePort();
    const r = await gantry(['dev', '--port', String(port), '--ui-port', String(uiPort), '--state-dir', tempDir('gantry-dev-')], { env: { GANTRY_TEMPORAL_CLI: TEMPORAL_CLI } });
    expect(r.code, show(r)).toBe(3);
    expect(r.stderr).toContain('the worker owns the release config and was given none: start it with --config <file or directory> or set GANTRY_CONFIG');
    expect(r.stdout).not.toContain('Starting the Temporal dev server');
    expect(await portOpen(port)).toBe(false);
  });

  it('refuses a port that is taken, naming it and the flag to change', async () => {
    const port = await freePort();
    const uiPort = await freePort();
    const state = tempDir('gantry-dev-');
    const first = startDev(['--no-worker', '--port', String(port), '--ui-port', String(uiPort), '--http-port', String(await freePort()), '--state-dir', state]);
    await waitFor('gantry dev to report ready', async () => first.stdout().includes('ready'), 90_000);
    const other = await gantry(['dev', '--port', String(port), '--state-dir', tempDir('gantry-dev-')], { env: { GANTRY_TEMPORAL_CLI: TEMPORAL_CLI } });
    expect(other.code, show(other)).toBe(2);
    expect(other.stderr).toContain(`Something already listens on 127.0.0.1:${port} (--port)`);
    expect(await stopDev(first, 'SIGINT')).toBe(0);
  }, 120_000);

  it('runs the worker in-process on the --config it was given; Ctrl-C stops the worker, then the server', async () => {
    const port = await freePort();
    const uiPort = await freePort();
    const state = tempDir('gantry-dev-');
    const config = writeConfig(state, 'gantry.yaml');
    const dev = startDev(['--port', String(port), '--ui-port', String(uiPort), '--http-port', String(await freePort()), '--state-dir', state, '--config', config]);
    await waitFor('the worker to poll', async () => dev.stderr().includes('gantry worker: polling gantry-releases'), 90_000)
      .catch((e: unknown) => {
        throw new Error(`${e instanceof Error ? e.message : String(e)}\n--- stdout\n${dev.stdout()}\n--- stderr\n${dev.stderr()}`);
      });
    expect(dev.stdout()).toMatch(/Running the worker here with the release config \S+@sha256:[0-9a-f]{16} \(hello\)\. Ctrl-C stops the worker, then the server\./);
    expect(dev.stdout()).toContain(`with the release config ${config}@sha256:`);

    // The in-process worker picks the release up and resolves its plan from that file (./gantry.yaml in the
    // operator's directory is the same file), then leaves `planning` (what its steps then do is issue 4's).
    const address = { TEMPORAL_ADDRESS: `127.0.0.1:${port}` };
    const start = await gantry(['start', 'hello', '1.0.0'], { env: address, cwd: state });
    expect(start.code, show(start)).toBe(0);
    expect(start.stdout).toContain(`plan     resolved on the worker from ${config}@sha256:`);
    expect(start.stdout).toContain('(your local gantry.yaml is the same file)');
    await waitFor('the worker to run the release past planning', async () => {
      const r = await gantry(['list', '--service', 'hello', '--json'], { env: address });
      const row = r.code === 0 ? (JSON.parse(r.stdout) as { stage?: string }[])[0] : undefined;
      return row?.stage !== undefined && row.stage !== 'planning';
    });

    expect(await stopDev(dev, 'SIGINT')).toBe(0);
    const err = dev.stderr();
    expect(err.indexOf('gantry worker: stopped')).toBeGreaterThan(-1);
    expect(err.indexOf('gantry worker: stopped')).toBeLessThan(err.indexOf('Stopping the Temporal dev server'));
    expect(await portOpen(port)).toBe(false);
  }, 120_000);
});
