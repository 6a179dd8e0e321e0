/**
 * `gantry worker --max-cached-workflows N` (and `gantry dev`, which shares the flag): how many workflows the worker
 * keeps in memory, so releases parked at the gate are evicted and replayed when a message arrives
 * (docs/performance.md). A good value reaches the SDK Worker's compiled options, which the worker prints at start;
 * a bad one is refused before anything connects or starts, with exit 2 (usage) and a message naming the fix.
 */
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { DEFAULT_MAX_CACHED_WORKFLOWS, WORKFLOW_SEMI_SPACE_MB, workflowHeapMb, workflowTaskSlots } from '../../src/worker';
import { devServerEnv } from '../helpers/servers';
import { freePort } from '../helpers/ports';
import { BIN, gantry, removeTempDirs, requireBuild, show, tempDir, waitFor, writeConfig } from './harness';

let env: TestWorkflowEnvironment;
let dir: string;
let config: string;

beforeAll(async () => {
  requireBuild();
  env = await devServerEnv();
  dir = tempDir();
  config = writeConfig(dir, 'gantry.yaml');
});

afterAll(async () => {
  await env?.teardown();
  removeTempDirs();
});

/** Run `gantry worker …` until it polls, then SIGTERM it; returns its stderr and exit code. */
async function workerUntilPolling(args: string[], extraEnv: Record<string, string> = {}): Promise<{ stderr: string; code: number | null }> {
  const child = spawn(process.execPath, [BIN, 'worker', '--config', config, ...args], {
    env: { ...process.env, TEMPORAL_ADDRESS: env.address, NO_COLOR: '1', ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await waitFor('the worker to poll', async () => stderr.includes('gantry worker: polling gantry-releases'), 60_000).catch((e: unknown) => {
    child.kill('SIGKILL');
    throw new Error(`${e instanceof Error ? e.message : String(e)}\n${stderr}`);
  });
  child.kill('SIGTERM');
  return { stderr, code: await exited };
}

describe('gantry worker --max-cached-workflows', () => {
  it('is accepted and reaches the Worker options', async () => {
    const r = await workerUntilPolling(['--max-cached-workflows', '7']);
    expect(r.code, r.stderr).toBe(0);
    // The line prints the SDK Worker's compiled option (worker.options.maxCachedWorkflows), not the flag.
    expect(r.stderr).toContain('gantry worker: keeping up to 7 workflows in memory');
    // What the worker derives from it: the workflow thread's heap (64 MB + 1 MB a cached workflow) and half the
    // cache as workflow task slots (the SDK's 40 at most).
    expect(r.stderr).toContain(`workflow heap ≤ ${workflowHeapMb(7)} MB, ${workflowTaskSlots(7)} workflow tasks at a time, young generation ${WORKFLOW_SEMI_SPACE_MB} MB semi-spaces`);
    expect([workflowHeapMb(7), workflowTaskSlots(7), workflowTaskSlots(2), workflowTaskSlots(500)]).toEqual([71, 3, 2, 40]);
  }, 90_000);

  it('leaves a heap limit and a young generation given to node as they are', async () => {
    const r = await workerUntilPolling(['--max-cached-workflows', '7'], { NODE_OPTIONS: '--max-old-space-size=300 --max-semi-space-size=8' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('workflow heap as node was told (--max-old-space-size), 3 workflow tasks at a time, young generation as node was told (--max-semi-space-size)');
  }, 90_000);

  it(`defaults to ${DEFAULT_MAX_CACHED_WORKFLOWS}, or GANTRY_MAX_CACHED_WORKFLOWS when set; the flag wins over the environment`, async () => {
    const byDefault = await workerUntilPolling([]);
    expect(byDefault.stderr).toContain(`gantry worker: keeping up to ${DEFAULT_MAX_CACHED_WORKFLOWS} workflows in memory`);
    const fromEnv = await workerUntilPolling([], { GANTRY_MAX_CACHED_WORKFLOWS: '42' });
    expect(fromEnv.stderr).toContain('gantry worker: keeping up to 42 workflows in memory');
    const flagWins = await workerUntilPolling(['--max-cached-workflows', '9'], { GANTRY_MAX_CACHED_WORKFLOWS: '42' });
    expect(flagWins.stderr).toContain('gantry worker: keeping up to 9 workflows in memory');
  }, 180_000);

  for (const bad of ['0', '-1', 'abc', '1', '2.5', '']) {
    it(`refuses "${bad}" with exit 2 before it connects, saying what to give`, async () => {
      // No server at this address: the flag is checked first, so the exit is 2, not 69.
      const r = await gantry(['worker', '--config', config, '--max-cached-workflows', bad], { env: { TEMPORAL_ADDRESS: `127.0.0.1:${await freePort()}` } });
      expect(r.code, show(r)).toBe(2);
      expect(r.stderr).toContain(`--max-cached-workflows "${bad}" is not a cache size: give a whole number of workflows, at least 2 (default ${DEFAULT_MAX_CACHED_WORKFLOWS})`);
      expect(r.stderr).not.toContain('polling');
    });
  }

  it('refuses a bad GANTRY_MAX_CACHED_WORKFLOWS with exit 2, naming the variable', async () => {
    const r = await gantry(['worker', '--config', config], { env: { TEMPORAL_ADDRESS: `127.0.0.1:${await freePort()}`, GANTRY_MAX_CACHED_WORKFLOWS: 'lots' } });
    expect(r.code, show(r)).toBe(2);
    expect(r.stderr).toContain('GANTRY_MAX_CACHED_WORKFLOWS "lots" is not a cache size');
  });

  it('`gantry dev` refuses a bad value before it starts the server', async () => {
    const r = await gantry(['dev', '--config', config, '--port', String(await freePort()), '--state-dir', tempDir(), '--max-cached-workflows', '0']);
    expect(r.code, show(r)).toBe(2);
    expect(r.stderr).toContain('--max-cached-workflows "0" is not a cache size');
    expect(r.stdout).not.toContain('Starting the Temporal dev server');
  });
});
