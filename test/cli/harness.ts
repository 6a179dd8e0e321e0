/**
 * Running the BUILT `gantry` CLI as a user does (`bin/gantry …`, the installed command, in a child process) against a real dev
 * server, with an in-process worker running the release workflow from the built bundle. The worker is put
 * together as the real one is (src/activities/index.ts): the real resolve step reading a real config file (or
 * directory) from disk for every release, and every step guarded against that config; only the steps
 * themselves are test doubles. Doubles and config file are chosen per release by its version, so one worker
 * serves every scenario.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Client } from '@temporalio/client';
import type { Worker } from '@temporalio/worker';
import { createReleaseWorker } from '../../src/worker';
import type { ReleaseActivities } from '../../src/activities/types';
import { createResolve, fileConfigSource } from '../../src/activities/resolve';
import { guardActivities } from '../../src/activities/guard';
import { createLaneActivities } from '../../src/activities/lanes';
import { createFreezeActivities } from '../../src/activities/freezes';
import type { NoticeRequest } from '../../src/shared/notices';
import { fakeActivities, type FakeActivities, type FakeBehaviour } from '../helpers/fake-activities';
import { SAMPLE_CONFIG_YAML } from '../helpers/fixtures';

export const ROOT = path.resolve(__dirname, '..', '..');
/** The node entry (`node bin/gantry.js …`), for children the tests run under node themselves. */
export const BIN = path.join(ROOT, 'bin', 'gantry.js');
/** The installed command (package.json's bin): the launcher in front of bin/gantry.js. */
export const LAUNCHER = path.join(ROOT, 'bin', 'gantry');
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
 * Run `gantry …` with a clean Temporal and signing environment (only what the test passes), no colour, in `cwd`.
 */
export function gantry(args: string[], opts: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  // Nothing of the machine's own: no Temporal settings, no config, no signing key or ssh-agent (tests pass --key).
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) =>
    !k.startsWith('TEMPORAL_') && !['GANTRY_CONFIG', 'GANTRY_SIGNING_KEY', 'SSH_AUTH_SOCK'].includes(k)));
  return new Promise((resolve) => {
    execFile(
      LAUNCHER,
      args,
      // GANTRY_HTTP_API off unless a test names its server's: a test server's HTTP API is at a random port, and the
      // CLI's guess (gRPC port + 10, Temporal's convention) could find another test's server there.
      { cwd: opts.cwd ?? ROOT, env: { ...base, NO_COLOR: '1', GANTRY_HTTP_API: 'off', ...opts.env }, timeout: opts.timeoutMs ?? 90_000, maxBuffer: 10 * 1024 * 1024 },
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
 * End every release still running on the server: releases of one service share their environments' lanes, so one
 * a test left at its gate would hold the next test's release in the lane's queue. Terminated, it passes the lane on.
 */
export async function endOpenReleases(client: Client): Promise<void> {
  for await (const wf of client.workflow.list({ query: 'WorkflowType = "releaseWorkflow" AND ExecutionStatus = "Running"' })) {
    await client.workflow.getHandle(wf.workflowId, wf.runId).terminate('the test that started it has finished').catch(() => undefined);
  }
}

export interface Routes {
  /** The worker's release config (file or directory) the resolve step reads for a release of this version. */
  config: (version: string) => string;
  /** How the step doubles behave for a release of this version (default: every step succeeds). */
  behaviour?: (version: string) => FakeBehaviour | undefined;
}

export interface Routed {
  activities: ReleaseActivities;
  /** The step doubles of each version that ran a step or resolved a plan (a version absent here ran nothing). */
  fakes: Map<string, FakeActivities>;
  /** `service version` of every resolve step the worker ran, in order. */
  resolved: string[];
}

/**
 * The worker's activities, chosen by the release's version: the real `resolvePlan` over the version's config
 * file, and step doubles whose behaviour each scenario declares next to its tests. As in the real worker, the
 * steps are guarded: each checks its request against the config file before it runs.
 */
export function routedActivities(routes: Routes): Routed {
  const fakes = new Map<string, FakeActivities>();
  const guarded = new Map<string, ReleaseActivities>();
  const resolved: string[] = [];
  const pick = (version: string): ReleaseActivities => {
    let g = guarded.get(version);
    if (!g) {
      const f = fakeActivities(routes.behaviour?.(version) ?? {});
      fakes.set(version, f);
      const source = fileConfigSource(routes.config(version));
      g = { ...f, ...guardActivities({ ...f, ...createResolve({ config: source }) }, source) };
      guarded.set(version, g);
    }
    return g;
  };
  const steps: Exclude<keyof ReleaseActivities, 'resolvePlan'>[] = ['preflight', 'tag', 'build', 'deploy', 'smoke', 'health', 'rollback', 'announce', 'announcePlan', 'announceChannel', 'recordEnd'];
  // Lanes and freezes are real (the lane and registry workflows run on this worker too); freezes and deny windows
  // read the config of the release asking, the newest one resolved for anything else.
  let latest = '0.0.0';
  const governanceSource = { get path() { return routes.config(latest); }, load: () => fileConfigSource(routes.config(latest)).load() };
  const activities = {
    ...createLaneActivities(),
    ...createFreezeActivities({ config: governanceSource }),
    notify: (req: NoticeRequest) => (pick(req.summary.version) as unknown as FakeActivities).notify(req),
    resolvePlan: (req: Parameters<ReleaseActivities['resolvePlan']>[0]) => {
      resolved.push(`${req.service} ${req.version}`);
      latest = req.version;
      return pick(req.version).resolvePlan(req);
    },
    ...Object.fromEntries(steps.map((k) => [k, (req: { release: { version: string } }) => (pick(req.release.version)[k] as (r: unknown) => Promise<unknown>)(req)])),
  } as unknown as ReleaseActivities;
  return { activities, fakes, resolved };
}

export interface Person {
  principal: string;
  /** The private key file (unencrypted), for `--key`. */
  keyFile: string;
  /** The person's line for allowedSigners. */
  allowedSigner: string;
  /** As `ssh-keygen -l` prints it. */
  fingerprint: string;
}

/** A real ed25519 key made by `ssh-keygen -t ed25519 -N ''` in `dir`. */
export function sshKeygen(dir: string, principal: string): Person {
  const keyFile = path.join(dir, `${principal}_ed25519`);
  const run = (args: string[]): string => {
    try {
      return execFileSync('ssh-keygen', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      throw new Error(`ssh-keygen ${args.join(' ')} failed (${(err as Error).message}); these tests need openssh-client`);
    }
  };
  run(['-q', '-t', 'ed25519', '-N', '', '-C', `${principal}@laptop`, '-f', keyFile]);
  const [type, base64] = readFileSync(`${keyFile}.pub`, 'utf8').trim().split(/\s+/);
  const fingerprint = run(['-l', '-E', 'sha256', '-f', `${keyFile}.pub`]).split(' ')[1] ?? '';
  return { principal, keyFile, allowedSigner: `${principal} namespaces="gantry" ${type} ${base64}`, fingerprint };
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
