/**
 * Running the BUILT `gantry` CLI as a user does (`node bin/gantry.js …` in a child process) against a real dev
 * server, with an in-process worker running the release workflow from the built bundle over test doubles of
 * the steps. The doubles are chosen per release by its version, so one worker serves every scenario.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Worker } from '@temporalio/worker';
import { createReleaseWorker } from '../../src/worker';
import type { ReleaseActivities } from '../../src/activities/types';
import { fakeActivities, type FakeActivities, type FakeBehaviour } from '../helpers/fake-activities';
import { SAMPLE_CONFIG_YAML } from '../helpers/fixtures';

export const ROOT = path.resolve(__dirname, '..', '..');
export const BIN = path.join(ROOT, 'bin', 'gantry.js');
export const BUILT_CLI = path.join(ROOT, 'dist', 'src', 'starter.js');
export const BUILT_BUNDLE = path.join(ROOT, 'dist', 'workflow-bundle.js');

/** These tests run what `npm run build` produced; without it they fail, saying so. */
export function requireBuild(): void {
  for (const file of [BUILT_CLI, BUILT_BUNDLE]) {
    if (!existsSync(file)) {
      throw new Error(`${path.relative(ROOT, file)} is missing: the CLI tests run the built CLI. Run \`npm run build\` first (npm test does).`);
    }
  }
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Run `gantry …` with a clean Temporal environment (only what the test passes), no colour, in `cwd`.
 */
export function gantry(args: string[], opts: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TEMPORAL_') && !k.startsWith('GANTRY_CONFIG')));
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { cwd: opts.cwd ?? ROOT, env: { ...base, NO_COLOR: '1', ...opts.env }, timeout: opts.timeoutMs ?? 90_000, maxBuffer: 10 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Explain a failed expectation with everything the CLI said. */
export function show(r: CliResult): string {
  return `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

const made: string[] = [];

/** A fresh directory under the system temp dir, removed by {@link removeTempDirs}. */
export function tempDir(prefix = 'gantry-cli-'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  made.push(dir);
  return dir;
}

export function removeTempDirs(): void {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/** The sample config with edits applied as plain text replacements, written to `<dir>/<name>`. */
export function writeConfig(dir: string, name: string, edits: [string, string][] = []): string {
  let yaml = SAMPLE_CONFIG_YAML;
  for (const [from, to] of edits) {
    if (!yaml.includes(from)) throw new Error(`test config edit: "${from}" not found in SAMPLE_CONFIG_YAML`);
    yaml = yaml.replace(from, to);
  }
  const file = path.join(dir, name);
  writeFileSync(file, yaml);
  return file;
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 30_000, intervalMs = 300): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${last instanceof Error ? last.message : JSON.stringify(last)})` : ''}`);
    await sleep(intervalMs);
  }
}

/**
 * Step doubles chosen by the release's version: each scenario releases its own version, and the behaviour
 * that version gets is declared here, next to the tests.
 */
export function routedActivities(route: (version: string) => FakeBehaviour | undefined): { activities: ReleaseActivities; fakes: Map<string, FakeActivities> } {
  const fakes = new Map<string, FakeActivities>();
  const pick = (version: string): FakeActivities => {
    let f = fakes.get(version);
    if (!f) {
      f = fakeActivities(route(version) ?? {});
      fakes.set(version, f);
    }
    return f;
  };
  const keys: (keyof ReleaseActivities)[] = ['preflight', 'tag', 'build', 'deploy', 'smoke', 'health', 'rollback', 'announce'];
  const activities = Object.fromEntries(
    keys.map((k) => [k, (req: { release: { version: string } }) => (pick(req.release.version)[k] as (r: unknown) => Promise<unknown>)(req)]),
  ) as unknown as ReleaseActivities;
  return { activities, fakes };
}

export async function startWorker(env: TestWorkflowEnvironment, activities: ReleaseActivities): Promise<{ worker: Worker; running: Promise<void> }> {
  const worker = await createReleaseWorker({
    connection: env.nativeConnection,
    namespace: env.namespace ?? 'default',
    activities,
    workflowBundlePath: BUILT_BUNDLE,
  });
  return { worker, running: worker.run() };
}
