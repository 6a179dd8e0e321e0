/**
 * The crash matrix, on the lab (issue 10, item 5): for each step of the runbook, a real release is started with
 * the built CLI, the `gantry worker` process running it is SIGKILLed while that step runs, and a fresh worker is
 * started. Then the release must end as it would have (approved with the lab's signed keys), every external
 * effect must have happened exactly once, counted on the real components (tag pushes on the bare remote, manifests
 * stored by the registry and PUT to it, container starts in the engine's event stream, messages at the webhook
 * receiver, lines in the audit log), and the killed step's next attempt must have started within 15 s of the kill
 * (read from the workflow history; printed per step). Then the faults: the dev server killed and restarted at the
 * gate, two workers with one killed, the registry stopped during the push, sshd stopped during the production
 * deploy, the webhook answering 500, and health that never turns green.
 *
 * Each kill happens at a moment the test sees on a real component: the test container of preflight starting, the
 * tag push held by the remote's pre-receive hook, the first blob of the push reaching the registry, the engine
 * creating the new container, a check request held by a slow check endpoint, the webhook receiver having the
 * message but its answer held, the previous production container started again by the rollback.
 *
 * One lab, one dev server and one slow endpoint serve every case; the worker's config is the lab's, the steps'
 * timeouts and retries the shipped defaults (src/shared/steps.ts).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { WorkflowHandle } from '@temporalio/client';
import { LABELS } from '../../src/activities/deployer';
import { MANIFEST_TYPES } from '../../src/activities/docker';
import { type ContainerEvent, type ContainerWatch, watchContainers, WEBHOOK_ENV } from '../../src/lab/lab';
import { releaseWorkflowId, type ReleaseStatus, statusQuery } from '../../src/shared/release';
import { endOpenReleases, gantry, requireBuild, show, waitFor } from '../cli/harness';
import { useLab } from '../helpers/lab';
import {
  type ConfigVariant, killWorker, nextAttemptStart, restartableDevServer, type RestartableServer, Revisions, type RunningActivity,
  runningActivities, slowEndpoint, type SlowEndpoint, spawnWorker, stopWorker, type WebhookWrapper, type WorkerProcess, wrapWebhook, writeWorkerConfig,
} from '../helpers/crash-lab';

const ctx = useLab({ windows: { staging: '10s', production: '10s' } });
let server: RestartableServer;
let stateDir: string;
let slow: SlowEndpoint;
let hook: WebhookWrapper;
let watch: ContainerWatch;
let revisions: Revisions;
let configFile: string;
/** The worker that runs releases now; a kill replaces it. */
let worker: WorkerProcess;
const started: WorkerProcess[] = [];
const resumed: string[] = [];

const cliEnv = () => ({ TEMPORAL_ADDRESS: server.address, TEMPORAL_NAMESPACE: 'default' });

function freshWorker(): WorkerProcess {
  const w = spawnWorker(configFile, { ...cliEnv(), [WEBHOOK_ENV]: hook.url });
  started.push(w);
  return w;
}

beforeAll(async () => {
  requireBuild();
  stateDir = mkdtempSync(path.join(os.tmpdir(), 'gantry-crash-server-'));
  server = await restartableDevServer(stateDir);
  slow = await slowEndpoint();
  hook = await wrapWebhook(ctx.lab.webhook.url);
  configFile = path.join(ctx.lab.dir, 'crash-matrix.yaml');
  writeWorkerConfig(ctx.lab, configFile, slow);
  watch = await watchContainers(ctx.lab.docker);
  revisions = new Revisions(ctx.lab);
  worker = freshWorker();
  await worker.polling();
}, 240_000);

afterEach(async () => {
  // A case that failed must not hold the service's lanes for the next one.
  await endOpenReleases(server.client).catch(() => undefined);
  ctx.lab.repo.setPushDelay(0);
  for (const env of Object.keys(slow.hold)) slow.hold[env] = 0;
  hook.failNext = 0;
  hook.holdMs = 0;
});

afterAll(async () => {
  if (resumed.length) process.stdout.write(`\ncrash matrix: from the SIGKILL to the step's next attempt\n${resumed.map((l) => `  ${l}`).join('\n')}\n`);
  for (const w of started) await stopWorker(w);
  await Promise.allSettled([...queries]);
  watch?.stop();
  await slow?.close();
  await hook?.close();
  await server?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

// ---- driving a release ---------------------------------------------------------------------------------------

interface Run {
  version: string;
  commit: string;
  /** When the test started it (ms). */
  start: number;
  handle: WorkflowHandle;
  manifestsBefore: string[];
  registryRequestsBefore: number;
  /** The production container before this release (its id), if one ran. */
  productionBefore?: { id: string; version: string };
}

async function containerId(name: string): Promise<{ id: string; running: boolean; image: string; labels: Record<string, string> } | undefined> {
  try {
    const c = await ctx.lab.docker.getContainer(name).inspect();
    return { id: c.Id, running: c.State.Running, image: c.Config.Image, labels: c.Config.Labels ?? {} };
  } catch {
    return undefined;
  }
}

async function versionAt(url: string): Promise<string | undefined> {
  try {
    return ((await (await fetch(`${url}/version`, { signal: AbortSignal.timeout(3_000) })).json()) as { version?: string }).version;
  } catch {
    return undefined;
  }
}

async function begin(rev: { version: string; commit: string }, variant: ConfigVariant = {}): Promise<Run> {
  writeWorkerConfig(ctx.lab, configFile, slow, variant);
  const prod = await containerId(ctx.lab.production.container);
  const prodVersion = await versionAt(ctx.lab.production.url);
  const run: Run = {
    ...rev,
    start: Date.now(),
    handle: server.client.workflow.getHandle(releaseWorkflowId('hello', rev.version)),
    manifestsBefore: ctx.lab.registry.manifests('hello'),
    registryRequestsBefore: ctx.lab.registry.requests().length,
    ...(prod && prodVersion ? { productionBefore: { id: prod.id, version: prodVersion } } : {}),
  };
  const r = await gantry(['start', 'hello', rev.version, '--config', configFile, '--requested-by', 'operator', '--key', ctx.lab.people.operator], { env: cliEnv() });
  expect(r.code, show(r)).toBe(0);
  return run;
}

/** Queries still in flight; the connection is closed only once they have ended (else a retry of theirs throws). */
const queries = new Set<Promise<unknown>>();

/** The status query, or undefined while no worker answers (within 5 s). */
async function status(run: Run): Promise<ReleaseStatus | undefined> {
  const q = server.client.withDeadline(Date.now() + 5_000, () => run.handle.query(statusQuery)).catch(() => undefined);
  queries.add(q);
  void q.finally(() => queries.delete(q));
  return q;
}

async function until(run: Run, what: string, pred: (s: ReleaseStatus) => boolean, timeoutMs = 180_000): Promise<ReleaseStatus> {
  return waitFor(what, async () => {
    const s = await status(run);
    return s && pred(s) ? s : undefined;
  }, timeoutMs, 250).catch(async (err: unknown) => {
    const s = await status(run);
    throw new Error(`${String(err)}\nlast status: ${JSON.stringify(s ? { stage: s.stage, outcome: s.outcome, message: s.message, steps: s.steps } : null, null, 1).slice(0, 5000)}\n` +
      `worker log:\n${worker.log().slice(-3000)}`);
  });
}

async function atGate(run: Run): Promise<ReleaseStatus> {
  const s = await until(run, 'the gate to open', (x) => x.stage === 'awaiting-approval' || x.outcome !== undefined);
  expect(s.stage, s.message).toBe('awaiting-approval');
  return s;
}

async function approve(run: Run): Promise<number> {
  const r = await gantry(['approve', 'hello', run.version, '--as', 'alice', '--key', ctx.lab.people.alice, '--reason', 'crash matrix'], { env: cliEnv() });
  expect(r.code, show(r)).toBe(0);
  return Date.now();
}

const ACTIVITY: Record<string, string[]> = {
  preflight: ['preflight'], tag: ['tag'], build: ['build'], deployStaging: ['deploy'], smoke: ['smoke'],
  deployProduction: ['deploy'], health: ['health'], rollback: ['rollback'], announce: ['announce', 'announceChannel', 'announcePlan'],
};

interface Kill {
  step: string;
  at: number;
  /** The step's activities that were running (announce may run several channels at once). */
  killed: RunningActivity[];
}

/** SIGKILL `victim` (default: the current worker) while `step` runs; start a fresh worker at once unless told not to. */
async function killDuring(run: Run, step: string, opts: { victim?: WorkerProcess; replace?: boolean } = {}): Promise<Kill> {
  const victim = opts.victim ?? worker;
  const at = await killWorker(victim);
  if (opts.replace !== false) worker = freshWorker();
  const running = (await runningActivities(run.handle)).filter((a) => ACTIVITY[step]!.includes(a.type));
  if (step === 'announce') expect(running.length, 'no announce activity was running when its worker was killed').toBeGreaterThanOrEqual(1);
  else expect(running, `the ${step} step was not running on the server when its worker was killed`).toHaveLength(1);
  return { step, at, killed: running };
}

/** Each killed activity's next attempt started within 15 s of the kill. */
async function expectResumed(run: Run, kill: Kill, label = kill.step): Promise<void> {
  for (const killed of kill.killed) {
    const next = await nextAttemptStart(run.handle, killed);
    expect(next, `no later attempt of ${kill.step} (${killed.type}) in the history`).toBeDefined();
    expect(next!.attempt).toBe(killed.attempt + 1);
    const seconds = (next!.at - kill.at) / 1000;
    const name = kill.killed.length > 1 ? `${label} (${killed.type} ${killed.activityId})` : label;
    resumed.push(`${name.padEnd(30)} ${seconds.toFixed(1)} s (attempt ${next!.attempt})`);
    process.stdout.write(`crash matrix: ${name}: the next attempt started ${seconds.toFixed(1)} s after the SIGKILL\n`);
    expect(seconds).toBeLessThanOrEqual(15);
  }
}

function mentions(version: string): (text: string) => boolean {
  const re = new RegExp(`(?<![\\d.])${version.replace(/\./g, '\\.')}(?![\\d])`);
  return (text) => re.test(text);
}

function auditActions(version: string): string[] {
  const file = path.join(ctx.lab.dir, 'audit.jsonl');
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { action: string; release: { version: string } })
    .filter((l) => l.release.version === version).map((l) => l.action);
}

function startsOf(events: ContainerEvent[], name: string, since: number): string[] {
  return events.filter((e) => e.action === 'start' && e.name === name && e.time >= since - 1_000).map((e) => e.id);
}

/**
 * The release ended with `outcome`, and each of its external effects happened exactly once, counted on the
 * components themselves.
 */
async function expectEndedOnce(run: Run, outcome: 'succeeded' | 'rolled_back'): Promise<ReleaseStatus> {
  const s = await until(run, 'the release to end', (x) => x.outcome !== undefined, 240_000);
  expect(s.outcome, s.message).toBe(outcome);
  const out = (name: string) => s.steps.find((x) => x.name === name)!.outputs;
  const tag = `v${run.version}`;

  // The remote: one tag at the release commit, pushed once.
  const refs = execFileSync('git', ['ls-remote', '--tags', ctx.lab.repo.url, `refs/tags/${tag}*`], { encoding: 'utf8' }).trim().split('\n').map((l) => l.split('\t'));
  expect(refs.map(([, ref]) => ref).sort()).toEqual([`refs/tags/${tag}`, `refs/tags/${tag}^{}`]);
  expect(refs.find(([, ref]) => ref === `refs/tags/${tag}^{}`)![0]).toBe(run.commit);
  expect(ctx.lab.repo.pushes().filter((p) => p.ref === `refs/tags/${tag}`), 'tag pushes accepted by the remote').toHaveLength(1);

  // The registry: one new manifest, the one the release deployed, under its tag; its manifest PUT once.
  const { digest, imageRef } = out('build');
  const added = ctx.lab.registry.manifests('hello').filter((d) => !run.manifestsBefore.includes(d));
  expect(added, 'manifests the registry stored during the release').toEqual([digest]);
  const tags = (await (await fetch(`${ctx.lab.registry.url}/v2/hello/tags/list`)).json()) as { tags: string[] };
  expect(tags.tags.filter((t) => t === tag)).toHaveLength(1);
  const head = await fetch(`${ctx.lab.registry.url}/v2/hello/manifests/${tag}`, { method: 'HEAD', headers: { Accept: MANIFEST_TYPES } });
  expect(head.headers.get('docker-content-digest')).toBe(digest);
  const puts = ctx.lab.registry.requests().slice(run.registryRequestsBefore).filter((r) => r.method === 'PUT' && r.path === `/v2/hello/manifests/${tag}` && r.status === 201);
  expect(puts, 'manifest PUTs the registry accepted').toHaveLength(1);

  // The engine: staging and production each started once from the new image (and, rolled back, the kept one once).
  await sleep(300); // the event stream trails the engine a little
  const events = watch.events();
  const staging = await containerId(ctx.lab.staging.container);
  expect(staging?.image).toBe(imageRef);
  expect(startsOf(events, ctx.lab.staging.container, run.start), 'staging container starts').toEqual([staging!.id]);
  const production = await containerId(ctx.lab.production.container);
  const prodStarts = startsOf(events, ctx.lab.production.container, run.start);
  if (outcome === 'succeeded') {
    expect(production?.image).toBe(imageRef);
    expect(production?.running).toBe(true);
    expect(prodStarts, 'production container starts').toEqual([production!.id]);
    expect(await versionAt(ctx.lab.production.url)).toBe(run.version);
  } else {
    expect(run.productionBefore, 'a rollback needs a version that ran before').toBeDefined();
    expect(production?.id).toBe(run.productionBefore!.id);
    expect(prodStarts, 'production container starts: the new one, then the kept one again').toHaveLength(2);
    expect(prodStarts[1]).toBe(run.productionBefore!.id);
    expect(await versionAt(ctx.lab.production.url)).toBe(run.productionBefore!.version);
    expect((await fetch(`${ctx.lab.production.url}/health`)).status).toBe(200);
  }

  // The webhook receiver: one message for this release. The audit log: each action once.
  const messages = ctx.lab.webhook.requests().filter((r) => mentions(run.version)(JSON.stringify(r.body)));
  expect(messages, 'messages at the webhook receiver').toHaveLength(1);
  expect(auditActions(run.version)).toEqual(['start-accepted', 'approve-accepted', outcome === 'succeeded' ? 'released' : 'rolled_back']);
  return s;
}

const registryPush = (run: Run) => () => ctx.lab.registry.requests().slice(run.registryRequestsBefore).some((r) => r.path.startsWith('/v2/hello/blobs/')) || undefined;
const created = (name: string, since: number) => (e: ContainerEvent) => e.action === 'create' && e.name === name && e.time >= since - 1_000;

// ---- the matrix ----------------------------------------------------------------------------------------------

describe('a worker SIGKILLed in each step: a fresh worker finishes the release, every effect once, within 15 s', { timeout: 240_000 }, () => {
  it('preflight (while the repository\'s tests run in their container)', async () => {
    const run = await begin(revisions.next(), { slowTests: true });
    await watch.next((e) => e.action === 'start' && e.image === ctx.lab.baseImage && e.time >= run.start - 1_000, 90_000);
    const kill = await killDuring(run, 'preflight');
    await atGate(run);
    await approve(run);
    await expectEndedOnce(run, 'succeeded');
    await expectResumed(run, kill);
  });

  it('tag (while the remote holds the tag push)', async () => {
    const rev = revisions.next();
    ctx.lab.repo.setPushDelay(3);
    const run = await begin(rev);
    await waitFor('the tag push to reach the remote', async () => ctx.lab.repo.offered().some((p) => p.ref === `refs/tags/v${run.version}`), 90_000, 50);
    const kill = await killDuring(run, 'tag');
    ctx.lab.repo.setPushDelay(0);
    await atGate(run);
    await approve(run);
    await expectEndedOnce(run, 'succeeded');
    await expectResumed(run, kill);
  });

  it('build (while the image is being pushed)', async () => {
    const run = await begin(revisions.next());
    await waitFor('the push to reach the registry', async () => registryPush(run)(), 120_000, 50);
    const kill = await killDuring(run, 'build');
    await atGate(run);
    await approve(run);
    await expectEndedOnce(run, 'succeeded');
    await expectResumed(run, kill);
  });

  it('deployStaging (right after the engine created the new container)', async () => {
    const run = await begin(revisions.next());
    await watch.next(created(ctx.lab.staging.container, run.start), 120_000);
    const kill = await killDuring(run, 'deployStaging');
    await atGate(run);
    await approve(run);
    await expectEndedOnce(run, 'succeeded');
    await expectResumed(run, kill);
  });

  it('smoke (while a staging check request is in flight)', async () => {
    slow.hold.staging = 4_000;
    const hit = slow.nextHit('staging');
    const run = await begin(revisions.next());
    await hit;
    const kill = await killDuring(run, 'smoke');
    slow.hold.staging = 0;
    await atGate(run);
    await approve(run);
    await expectEndedOnce(run, 'succeeded');
    await expectResumed(run, kill);
  });

  it('the approval gate (no step runs: the new worker takes the approval)', async () => {
    const run = await begin(revisions.next());
    await atGate(run);
    const at = await killWorker(worker);
    worker = freshWorker();
    // Only the gate's own governance activities (a freeze check) may be pending: no step.
    const steps = Object.values(ACTIVITY).flat();
    expect((await runningActivities(run.handle)).filter((a) => steps.includes(a.type))).toEqual([]);
    await approve(run);
    resumed.push(`${'approval gate'.padEnd(30)} approved ${((Date.now() - at) / 1000).toFixed(1)} s after the SIGKILL (no step was running)`);
    await expectEndedOnce(run, 'succeeded');
  });

  it('deployProduction (right after the host\'s engine created the new container, over SSH)', async () => {
    const run = await begin(revisions.next());
    await atGate(run);
    const approved = await approve(run);
    await watch.next(created(ctx.lab.production.container, approved), 120_000);
    const kill = await killDuring(run, 'deployProduction');
    await expectEndedOnce(run, 'succeeded');
    await expectResumed(run, kill);
  });

  it('health (while a production check request is in flight)', async () => {
    const run = await begin(revisions.next());
    await atGate(run);
    slow.hold.production = 4_000;
    const hit = slow.nextHit('production');
    await approve(run);
    await hit;
    const kill = await killDuring(run, 'health');
    slow.hold.production = 0;
    await expectEndedOnce(run, 'succeeded');
    await expectResumed(run, kill);
  });

  it('announce (the receiver has the message, its answer is still on the way)', async () => {
    const run = await begin(revisions.next());
    await atGate(run);
    hook.holdMs = 4_000;
    const forwarded = hook.nextForwarded();
    await approve(run);
    await forwarded;
    const kill = await killDuring(run, 'announce');
    hook.holdMs = 0;
    await expectEndedOnce(run, 'succeeded');
    await expectResumed(run, kill);
  });

  it('rollback (after the kept container started again, while the restored version is checked)', async () => {
    const run = await begin(revisions.next({ broken: true }), { stagingVersionOnly: true });
    await atGate(run);
    expect(run.productionBefore).toBeDefined();
    const approved = await approve(run);
    await watch.next((e) => e.action === 'start' && e.id === run.productionBefore!.id && e.time >= approved - 1_000, 120_000);
    slow.hold.production = 4_000;
    await slow.nextHit('production');
    const kill = await killDuring(run, 'rollback');
    slow.hold.production = 0;
    const s = await expectEndedOnce(run, 'rolled_back');
    expect(s.steps.find((x) => x.name === 'health')!.state).toBe('failed');
    await expectResumed(run, kill);
  });
});

describe('faults around a release', { timeout: 240_000 }, () => {
  it('health never turns green: the release rolls back to the previous version, which serves', async () => {
    const run = await begin(revisions.next({ broken: true }), { stagingVersionOnly: true });
    await atGate(run);
    await approve(run);
    const s = await expectEndedOnce(run, 'rolled_back');
    expect(s.steps.find((x) => x.name === 'rollback')!.state).toBe('succeeded');
  });

  it('the dev server killed and restarted at the gate (same database): still waiting, then approved and finished', async () => {
    const run = await begin(revisions.next());
    await atGate(run);
    await server.kill();
    await sleep(1_000);
    await server.start();
    const after = await until(run, 'the restarted server to answer', () => true, 120_000);
    expect(after.stage).toBe('awaiting-approval');
    expect(worker.child.exitCode, `the worker exited while the server was down:\n${worker.log().slice(-2000)}`).toBeNull();
    await approve(run);
    await expectEndedOnce(run, 'succeeded');
  });

  it('two workers on one queue, the one running the build SIGKILLed: the other finishes the release', async () => {
    const second = freshWorker();
    await second.polling();
    const run = await begin(revisions.next());
    await waitFor('the push to reach the registry', async () => registryPush(run)(), 120_000, 50);
    const [running] = (await runningActivities(run.handle)).filter((a) => a.type === 'build');
    const victim = [worker, second].find((w) => running?.worker.startsWith(`${w.pid}@`));
    expect(victim, `no worker of this test ran the build (${running?.worker})`).toBeDefined();
    const survivor = victim === worker ? second : worker;
    const kill = await killDuring(run, 'build', { victim, replace: false });
    worker = survivor;
    await atGate(run);
    await approve(run);
    await expectEndedOnce(run, 'succeeded');
    await expectResumed(run, kill, 'build (two workers)');
  });

  it('the registry stopped for 30 s during the push: the build retries and succeeds, one manifest', async () => {
    const run = await begin(revisions.next());
    await waitFor('the push to reach the registry', async () => registryPush(run)(), 120_000, 50);
    await ctx.lab.faults.stopRegistry();
    await sleep(30_000);
    await ctx.lab.faults.startRegistry();
    await atGate(run);
    await approve(run);
    const s = await expectEndedOnce(run, 'succeeded');
    expect(s.steps.find((x) => x.name === 'build')!.attempts).toBeGreaterThanOrEqual(2);
  });

  it('sshd stopped during the production deploy: the deploy retries, production ends on one version, the old container kept', async () => {
    const run = await begin(revisions.next());
    await atGate(run);
    const before = run.productionBefore!;
    expect(before).toBeDefined();
    await ctx.lab.faults.stopSshd();
    await approve(run);
    await waitFor('a second attempt of the production deploy', async () =>
      (await runningActivities(run.handle)).some((a) => a.type === 'deploy' && a.attempt >= 2) || undefined, 60_000, 250);
    // Nothing reached the host: the old version serves meanwhile.
    expect(await versionAt(ctx.lab.production.url)).toBe(before.version);
    expect((await containerId(ctx.lab.production.container))?.id).toBe(before.id);
    await ctx.lab.faults.startSshd();
    await expectEndedOnce(run, 'succeeded');
    const kept = await containerId(`${ctx.lab.production.container}-gantry-previous`);
    expect(kept?.id, 'the old production container is kept').toBe(before.id);
    expect(kept?.running).toBe(false);
    expect((await containerId(ctx.lab.production.container))?.labels[LABELS.previousContainer]).toBe(before.id);
  });

  it('the webhook answers 500 twice and then recovers: one message delivered', async () => {
    hook.failNext = 2;
    const run = await begin(revisions.next());
    await atGate(run);
    await approve(run);
    await expectEndedOnce(run, 'succeeded');
    expect(hook.failed).toBe(2);
  });
});
