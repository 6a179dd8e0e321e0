/**
 * The real release workflow under governance, on a real dev server (its data in a file, so it can be
 * restarted): lanes and freezes are the real ones (the lane workflow, the freeze registry and their activities,
 * the real resolve step over a real config file); only the release's steps are test doubles. One worker on
 * TASK_QUEUE runs everything, as `gantry worker` does.
 *
 * Each test has its own service (the config lists one per test), so a lane or a freeze one test leaves behind
 * cannot touch the next. The doubles record when each step of each release started and ended, so "B deployed
 * only after A ended" is a comparison of times taken in this process. Notices are the real notify, to the lab's
 * webhook receiver; only the service that configures them sends any.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as pause } from 'node:timers/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, Connection, type WorkflowExecutionInfo } from '@temporalio/client';
import { NativeConnection, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { createFreezeActivities } from '../../src/activities/freezes';
import { createLaneActivities } from '../../src/activities/lanes';
import { createNotify, type NoticeBody } from '../../src/activities/notify';
import { createResolve, fileConfigSource } from '../../src/activities/resolve';
import type { ReleaseActivities } from '../../src/activities/types';
import { sendFreeze } from '../../src/client/freezes';
import { startDevServer, type DevServer } from '../../src/client/dev-server';
import { startWebhookReceiver, type WebhookReceiver } from '../../src/lab/webhook';
import { laneQuery, laneWorkflowId, type LaneView } from '../../src/shared/lanes';
import {
  approveUpdate,
  cancelUpdate,
  releaseWorkflowId,
  SA_ENVIRONMENT,
  startSearchAttributes,
  statusQuery,
  TASK_QUEUE,
  type ReleaseStatus,
  type StartRequest,
} from '../../src/shared/release';
import { releaseWorkflow } from '../../src/workflows';
import { fakeActivities, type FakeActivities, type FakeBehaviour } from '../helpers/fake-activities';
import { SAMPLE_CONFIG_YAML } from '../helpers/fixtures';
import { freePort } from '../helpers/ports';
import { requireBinary, TEMPORAL_CLI } from '../helpers/servers';
import { gantry, requireBuild, show } from '../cli/harness';
import { bundleReleaseWorkflow, latch, quietRuntime, type ReleaseHandle } from './harness';

quietRuntime();
const exec = promisify(execFile);

/** One service per test, each a copy of the sample's `hello` (declared approvals, staging then production). */
const SERVICES = ['queue-two', 'pass-on', 'queue-three', 'freeze-until', 'freeze-lift', 'freeze-restart', 'lanes-cli', 'lane-notice'] as const;
type Service = (typeof SERVICES)[number];

/** The webhook notify posts to (the lab's receiver), by the reference the config gives. */
const NOTICE_URL_ENV = 'GANTRY_TEST_LANE_NOTICE_URL';
/** Service keys beyond the sample's, by service. */
const EXTRA: Partial<Record<Service, string[]>> = {
  'lane-notice': [`notices: { webhook: { env: ${NOTICE_URL_ENV} }, laneWaitLongerThan: 2s }`],
};

function configYaml(): string {
  const at = SAMPLE_CONFIG_YAML.indexOf('\nservices:\n') + '\nservices:\n'.length;
  const block = SAMPLE_CONFIG_YAML.slice(at);
  if (!block.startsWith('  hello:\n') || !block.includes('\n    approvals:\n')) throw new Error('SAMPLE_CONFIG_YAML changed: expected services.hello first, with approvals:');
  return SAMPLE_CONFIG_YAML.slice(0, at) + SERVICES.map((s) => block.replace(/^ {2}hello:\n/, `  ${s}:\n`)
    .replace('\n    approvals:\n', `\n${(EXTRA[s] ?? []).map((l) => `    ${l}\n`).join('')}    approvals:\n`)).join('');
}

let dir: string;
let configFile: string;
let bundle: WorkflowBundleWithSourceMap;
let server: DevServer;
let ports: { port: number; uiPort: number };
let nativeConnection: NativeConnection;
let connection: Connection;
let client: Client;
let worker: Worker;
let running: Promise<void>;
let lab: WebhookReceiver;

// ---- the step doubles, one per release (by version), with a shared timeline ----

interface Mark { release: string; step: string; phase: 'start' | 'end'; at: number }
const timeline: Mark[] = [];
const behaviours = new Map<string, FakeBehaviour>();
const fakes = new Map<string, FakeActivities>();

function fakeFor(version: string): FakeActivities {
  let f = fakes.get(version);
  if (!f) {
    f = fakeActivities({ ...behaviours.get(version), governance: realGovernance() });
    fakes.set(version, f);
  }
  return f;
}

/** The real lane and freeze activities (laneEnqueue and checkFreeze among them), as the worker registers them. */
function realGovernance() {
  return { ...createLaneActivities(), ...createFreezeActivities({ config: fileConfigSource(configFile) }) };
}

type StepKey = Exclude<keyof ReleaseActivities, 'resolvePlan'>;
const STEPS: StepKey[] = ['preflight', 'tag', 'build', 'deploy', 'smoke', 'health', 'rollback', 'announce', 'announcePlan', 'announceChannel', 'recordEnd'];

function workerActivities(): Record<string, unknown> {
  const routed = Object.fromEntries(STEPS.map((k) => [k, async (req: { release: { service: string; version: string }; environment?: string }) => {
    const release = `${req.release.service} ${req.release.version}`;
    // The announce step is its plan and its channels' deliveries: marked as one step, ending with the last of them.
    const step = k === 'deploy' ? `deploy:${req.environment}` : k === 'announcePlan' || k === 'announceChannel' ? 'announce' : k;
    timeline.push({ release, step, phase: 'start', at: Date.now() });
    try {
      return await (fakeFor(req.release.version)[k] as (r: unknown) => Promise<unknown>)(req);
    } finally {
      timeline.push({ release, step, phase: 'end', at: Date.now() });
    }
  }]));
  // The fake's governance part, made with the real lane and freeze activities (the fake adds only its notify double).
  const shared = fakeActivities({ governance: realGovernance() });
  return {
    ...realGovernance(), // the lane workflow's own watchLaneHolder/checkLaneHolder, the registry's authorizeFreeze
    laneEnqueue: (req: Parameters<FakeActivities['laneEnqueue']>[0]) => shared.laneEnqueue(req),
    checkFreeze: (req: Parameters<FakeActivities['checkFreeze']>[0]) => shared.checkFreeze(req),
    ...createNotify({ config: fileConfigSource(configFile), env: { [NOTICE_URL_ENV]: lab.url } }),
    ...createResolve({ config: fileConfigSource(configFile) }),
    ...routed,
  };
}

function mark(release: string, step: string, phase: 'start' | 'end'): number {
  // A step's start is its first activity's, its end its last one's (the announce step is several activities).
  const matches = (x: (typeof timeline)[number]) => x.release === release && x.step === step && x.phase === phase;
  const m = phase === 'start' ? timeline.find(matches) : [...timeline].reverse().find(matches);
  if (!m) throw new Error(`${release} never ${phase === 'start' ? 'started' : 'ended'} ${step}; timeline: ${timeline.filter((x) => x.release === release).map((x) => `${x.step}:${x.phase}`).join(', ')}`);
  return m.at;
}

const productionDeploys = (service: string): string[] =>
  timeline.filter((m) => m.release.startsWith(`${service} `) && m.step === 'deploy:production' && m.phase === 'start').map((m) => m.release.split(' ')[1]!);

// ---- the server and the worker ----

async function startServer(): Promise<void> {
  server = await startDevServer({
    temporalCli: TEMPORAL_CLI, ip: '127.0.0.1', port: ports.port, uiPort: ports.uiPort, stateDir: path.join(dir, 'state'), namespace: 'default',
  });
  nativeConnection = await NativeConnection.connect({ address: server.address });
  connection = await Connection.connect({ address: server.address });
  client = new Client({ connection, namespace: 'default' });
}

async function startWorker(): Promise<void> {
  worker = await Worker.create({
    connection: nativeConnection, namespace: 'default', taskQueue: TASK_QUEUE, workflowBundle: bundle, activities: workerActivities(),
  });
  running = worker.run();
}

async function stopAll(): Promise<void> {
  if (worker && worker.getState() === 'RUNNING') worker.shutdown();
  await running;
  await connection?.close();
  await nativeConnection?.close();
  await server?.stop();
}

beforeAll(async () => {
  requireBinary(TEMPORAL_CLI, 'The Temporal CLI');
  requireBuild();
  dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-release-lanes-'));
  configFile = path.join(dir, 'gantry.yaml');
  writeFileSync(configFile, configYaml());
  ports = { port: await freePort(), uiPort: await freePort() };
  lab = await startWebhookReceiver({ file: path.join(dir, 'notices.jsonl'), token: 'T0LANE/B0HOOK/lanenoticepath' });
  [bundle] = await Promise.all([bundleReleaseWorkflow(), startServer()]);
  await startWorker();
}, 240_000);

afterAll(async () => {
  await stopAll();
  await lab?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

// ---- releases ----

interface Release {
  service: Service;
  version: string;
  handle: ReleaseHandle;
  /** `service version`, as the timeline names it. */
  name: string;
}

/** Start a release as `gantry start` does (declared mode: the requester's name, search attributes set). */
async function start(service: Service, version: string, behaviour: FakeBehaviour = {}): Promise<Release> {
  behaviours.set(version, behaviour);
  const request: StartRequest = { service, version, requestedBy: 'tester' };
  const handle = await client.workflow.start(releaseWorkflow, {
    taskQueue: TASK_QUEUE, workflowId: releaseWorkflowId(service, version), args: [request], typedSearchAttributes: startSearchAttributes(request),
  });
  return { service, version, handle, name: `${service} ${version}` };
}

async function statusOf(r: Release): Promise<ReleaseStatus> {
  return r.handle.query(statusQuery);
}

async function waitFor(r: Release, ok: (s: ReleaseStatus) => boolean, what: string, timeoutMs = 30_000): Promise<ReleaseStatus> {
  const until = Date.now() + timeoutMs;
  let last: ReleaseStatus | undefined;
  let error: unknown;
  for (;;) {
    try {
      last = await statusOf(r);
      if (ok(last)) return last;
    } catch (err) {
      error = err; // a worker restarting, or the workflow's first task not run yet
    }
    if (Date.now() > until) {
      throw new Error(`${r.name}: timed out after ${timeoutMs} ms waiting for ${what}; ` +
        (last ? `stage ${last.stage}, gate ${last.gate.state}, outcome ${last.outcome ?? 'none'}, lanes ${JSON.stringify(last.lanes)}, message: ${last.message}` : `no status (${String(error)})`));
    }
    await pause(200);
  }
}

const atProductionGate = (s: ReleaseStatus): boolean => s.gate.state === 'open' && s.gate.environment === 'production';
const waitingForLane = (s: ReleaseStatus): boolean => s.stage === 'waiting-for-lane' && s.lanes?.production?.state === 'waiting' && s.lanes.production.holder !== undefined;
const ended = (s: ReleaseStatus): boolean => s.outcome !== undefined;

async function approve(r: Release, approver = 'alice') {
  return r.handle.executeUpdate(approveUpdate, { args: [{ approver }] });
}

/** Approve at the production gate once it is open, and wait for the release to succeed. */
async function approveAndFinish(r: Release): Promise<ReleaseStatus> {
  await waitFor(r, atProductionGate, 'the production gate to open');
  await approve(r);
  const s = await waitFor(r, ended, 'the release to end', 60_000);
  expect(s.outcome, s.message).toBe('succeeded');
  return s;
}

/** The workflows visibility lists for `query`, once `ok` holds of them (visibility trails the workflows' upserts: polled). */
async function listed(query: string, ok: (found: WorkflowExecutionInfo[]) => boolean, what: string, timeoutMs = 20_000): Promise<WorkflowExecutionInfo[]> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const found: WorkflowExecutionInfo[] = [];
    for await (const w of client.workflow.list({ query })) found.push(w);
    if (ok(found)) return found;
    if (Date.now() > until) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for visibility to list ${what} (${query}); it lists ${found.map((w) => w.workflowId).join(', ') || 'nothing'}`);
    }
    await pause(200);
  }
}

async function laneOf(service: Service): Promise<LaneView> {
  return client.workflow.getHandle(laneWorkflowId(service, 'production')).query(laneQuery);
}

/**
 * The production lane's record of its last holders, once it lists `n` of them. A release that ended has told its
 * lane (a hint) or is found ended by the lane's watcher a moment later, so the record may trail the release's end.
 */
async function laneRecent(service: Service, n: number, timeoutMs = 20_000): Promise<string[]> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const recent = (await laneOf(service)).recent?.map((x) => x.version) ?? [];
    if (recent.length >= n || Date.now() > until) return recent;
    await pause(100);
  }
}

/** End whatever a test left running, so the next test's worker and lanes are not busy with it. */
async function cleanUp(...rs: Release[]): Promise<void> {
  await Promise.all(rs.map((r) => r.handle.terminate('test finished').catch(() => undefined)));
}

const freeze = (service: Service, reason: string, until?: string) =>
  sendFreeze(client, 'freeze', { by: 'bob', service, environment: 'production', reason, ...(until ? { until } : {}) });
const unfreeze = (service: Service) => sendFreeze(client, 'unfreeze', { by: 'bob', service, environment: 'production' });

// ---- the tests ----

describe('lanes in the release workflow', () => {
  it('queues a second release of the service behind the one in production, and deploys it only once the first ended', async () => {
    const svc: Service = 'queue-two';
    const hold = latch();
    const a = await start(svc, '1.0.0', { holdUntil: { 'deploy:production': hold.promise } });
    let b: Release | undefined;
    try {
      await waitFor(a, atProductionGate, 'A at the production gate');
      await approve(a);
      await waitFor(a, (s) => s.stage === 'deploy-production', 'A to deploy to production');

      b = await start(svc, '2.0.0');
      const waiting = await waitFor(b, waitingForLane, 'B to wait for the production lane');
      const lane = await laneOf(svc);
      expect(lane.holder).toEqual(expect.objectContaining({ version: '1.0.0', workflowId: a.handle.workflowId }));
      expect(lane.queue.map((e) => e.version)).toEqual(['2.0.0']);
      const heldSince = lane.holder!.heldSince;
      expect(waiting.stage).toBe('waiting-for-lane');
      expect(waiting.lanes?.production).toEqual({
        state: 'waiting', since: expect.any(String), position: 1,
        holder: { workflowId: a.handle.workflowId, version: '1.0.0', heldSince },
      });
      expect(Date.parse(waiting.lanes!.production!.since)).toBeGreaterThanOrEqual(Date.parse(heldSince));
      expect(waiting.message).toBe(`Waiting for the production lane of ${svc}: ${svc} 1.0.0 (${a.handle.workflowId}) holds it since ${heldSince}, ` +
        `and this release is number 1 in line. It deploys to production when that release leaves production or ends; \`gantry lanes ${svc}\` shows the queue.`);
      // B went through staging (A had left it) but not to production's gate.
      expect(waiting.lanes?.staging?.state).toBe('released');
      expect(waiting.gate.state).toBe('not_open');
      // Visibility finds B by its searchable stage, in the environment whose lane it waits for.
      const bId = b.handle.workflowId;
      const found = await listed(`GantryService = '${svc}' AND GantryStage = 'waiting-for-lane'`, (ws) => ws.some((w) => w.workflowId === bId), 'B waiting for the lane');
      expect(found.map((w) => w.workflowId)).toEqual([bId]);
      expect(found[0]!.typedSearchAttributes.get(SA_ENVIRONMENT)).toBe('production');
      expect((await client.workflow.count(`GantryService = '${svc}' AND GantryStage = 'waiting-for-lane' AND GantryEnvironment = 'production'`)).count).toBe(1);

      // However long A stays in its deploy, B waits.
      await pause(4000);
      const still = await statusOf(b);
      expect(still.stage).toBe('waiting-for-lane');
      expect(productionDeploys(svc)).toEqual(['1.0.0']);

      hold.open();
      const aDone = await waitFor(a, ended, 'A to end');
      expect(aDone.outcome, aDone.message).toBe('succeeded');
      expect(aDone.lanes?.production?.state).toBe('released');
      const bDone = await approveAndFinish(b);
      expect(bDone.lanes?.production?.state).toBe('released');
      expect(productionDeploys(svc)).toEqual(['1.0.0', '2.0.0']);
      // B's production deploy began after A's last step (its announcement) ended and after A's status said it ended.
      expect(mark(b.name, 'deploy:production', 'start')).toBeGreaterThan(mark(a.name, 'announce', 'end'));
      expect(mark(b.name, 'deploy:production', 'start')).toBeGreaterThan(Date.parse(aDone.endedAt!));
      expect(await laneRecent(svc, 2)).toEqual(['1.0.0', '2.0.0']);
    } finally {
      hold.open();
      await cleanUp(a, ...(b ? [b] : []));
    }
  }, 120_000);

  it('passes the lane on when the holder is cancelled, fails, or is terminated with the temporal CLI', async () => {
    const svc: Service = 'pass-on';
    // A: cancelled at the gate. B: its production deploy fails for good. C: terminated at the gate. D: finishes.
    const a = await start(svc, '3.0.0');
    const rs: Release[] = [a];
    try {
      await waitFor(a, atProductionGate, 'A at the production gate');
      const b = await start(svc, '3.1.0', { fail: { 'deploy:production': 'fatal' } });
      rs.push(b);
      await waitFor(b, waitingForLane, 'B to wait behind A');
      const c = await start(svc, '3.2.0');
      rs.push(c);
      await waitFor(c, (s) => waitingForLane(s) && s.lanes?.production?.position === 2, 'C to wait behind B');
      const d = await start(svc, '3.3.0');
      rs.push(d);
      await waitFor(d, (s) => waitingForLane(s) && s.lanes?.production?.position === 3, 'D to wait behind C');
      expect((await laneOf(svc)).queue.map((e) => e.version)).toEqual(['3.1.0', '3.2.0', '3.3.0']);

      // Cancelled (a declared cancel, as `gantry cancel` sends it): B gets the lane.
      expect(await a.handle.executeUpdate(cancelUpdate, { args: [{ operator: 'oncall', reason: 'wrong build' }] })).toBe('Cancelled: nothing was deployed to production.');
      const aDone = await waitFor(a, ended, 'A to end cancelled');
      expect(aDone.outcome).toBe('cancelled');
      await waitFor(b, atProductionGate, 'B to get the lane after A was cancelled');
      let lane = await laneOf(svc);
      expect(lane.holder?.version).toBe('3.1.0');
      expect(lane.recent?.at(-1)?.version).toBe('3.0.0');
      // C and D moved up one place, and C now names B as the holder.
      const cNow = await waitFor(c, (s) => s.lanes?.production?.holder?.version === '3.1.0', 'C to see B holding the lane');
      expect(cNow.lanes?.production?.position).toBe(1);
      expect(cNow.message).toContain(`${svc} 3.1.0 (${b.handle.workflowId}) holds it since ${lane.holder!.heldSince}`);

      // Failed: B's production deploy fails non-retryably; C gets the lane.
      await approve(b);
      const bDone = await waitFor(b, ended, 'B to fail');
      expect(bDone.outcome).toBe('failed');
      expect(bDone.message).toMatch(/^Deploy to production failed: deploy:production failed for good \(fake\)/);
      await waitFor(c, atProductionGate, 'C to get the lane after B failed');
      lane = await laneOf(svc);
      expect(lane.holder?.version).toBe('3.2.0');
      expect(lane.recent?.map((x) => x.version)).toEqual(['3.0.0', '3.1.0']);

      // Terminated with the real temporal CLI: the release cannot say anything, the lane sees it ended.
      await exec(TEMPORAL_CLI, ['workflow', 'terminate', '--address', server.address, '--namespace', 'default', '-w', c.handle.workflowId, '--reason', 'test']);
      expect((await c.handle.describe()).status.name).toBe('TERMINATED');
      await waitFor(d, atProductionGate, 'D to get the lane after C was terminated');
      lane = await laneOf(svc);
      expect(lane.holder?.version).toBe('3.3.0');
      expect(lane.queue).toEqual([]);
      expect(lane.recent?.at(-1)).toEqual(expect.objectContaining({ version: '3.2.0', ended: 'terminated' }));

      await approveAndFinish(d);
      // Only B and D ever reached production's deploy; C never did.
      expect(productionDeploys(svc)).toEqual(['3.1.0', '3.3.0']);
      expect(mark(d.name, 'deploy:production', 'start')).toBeGreaterThan(mark(b.name, 'deploy:production', 'end'));
    } finally {
      await cleanUp(...rs);
    }
  }, 180_000);

  it('keeps three queued releases in the order they came', async () => {
    const svc: Service = 'queue-three';
    const a = await start(svc, '4.0.0');
    const rs: Release[] = [a];
    try {
      await waitFor(a, atProductionGate, 'A at the production gate');
      const b = await start(svc, '4.1.0');
      rs.push(b);
      await waitFor(b, waitingForLane, 'B to wait');
      const c = await start(svc, '4.2.0');
      rs.push(c);
      const cWaits = await waitFor(c, (s) => waitingForLane(s) && s.lanes?.production?.position === 2, 'C to wait behind B');
      expect(cWaits.lanes?.production?.holder?.version).toBe('4.0.0');
      expect(cWaits.message).toContain('this release is number 2 in line');

      await approveAndFinish(a);
      // B, not C, gets the lane; C waits on, now behind B.
      await waitFor(b, atProductionGate, 'B to get the lane');
      const cBehindB = await waitFor(c, (s) => s.lanes?.production?.holder?.version === '4.1.0', 'C to see B holding the lane');
      expect(cBehindB.stage).toBe('waiting-for-lane');
      expect(cBehindB.lanes?.production?.position).toBe(1);
      await pause(2000);
      expect((await statusOf(c)).gate.state).toBe('not_open');

      await approveAndFinish(b);
      await approveAndFinish(c);
      expect(productionDeploys(svc)).toEqual(['4.0.0', '4.1.0', '4.2.0']);
      expect(mark(b.name, 'deploy:production', 'start')).toBeGreaterThan(mark(a.name, 'announce', 'end'));
      expect(mark(c.name, 'deploy:production', 'start')).toBeGreaterThan(mark(b.name, 'announce', 'end'));
      expect(await laneRecent(svc, 3)).toEqual(['4.0.0', '4.1.0', '4.2.0']);
    } finally {
      await cleanUp(...rs);
    }
  }, 180_000);

  it('prints the holder and the queue with `gantry lanes <service>` while a release waits', async () => {
    const svc: Service = 'lanes-cli';
    const a = await start(svc, '7.0.0');
    const rs: Release[] = [a];
    try {
      await waitFor(a, atProductionGate, 'A at the production gate');
      const b = await start(svc, '7.1.0');
      rs.push(b);
      await waitFor(b, waitingForLane, 'B to wait');
      const env = { TEMPORAL_ADDRESS: server.address, TEMPORAL_NAMESPACE: 'default' };
      const expected = new RegExp(`^${svc}/production: held by 7\\.0\\.0 since \\d\\d:\\d\\dZ \\(\\d+ s\\); waiting: 7\\.1\\.0 \\(since \\d\\d:\\d\\dZ\\)$`, 'm');
      // The staging lane, which A and B passed through, is free, and says who had it last (B's leave reaches the
      // lane a moment after B moved on, so its record may trail).
      const stagingFree = new RegExp(`^${svc}/staging: free$`, 'm');
      const stagingLast = /^ {2}last: 7\.1\.0 held it \d\d:\d\dZ–\d\d:\d\dZ \(released\)$/m;
      const complete = (out: string) => expected.test(out) && stagingFree.test(out) && stagingLast.test(out);
      let r = await gantry(['lanes', svc], { env });
      for (let i = 0; i < 20 && !complete(r.stdout); i++) {
        await pause(500); // visibility lists a new lane within a second or so
        r = await gantry(['lanes', svc], { env });
      }
      expect(r.code, show(r)).toBe(0);
      expect(r.stdout, show(r)).toMatch(expected);
      expect(r.stdout, show(r)).toMatch(stagingFree);
      expect(r.stdout, show(r)).toMatch(stagingLast);
      const j = await gantry(['lanes', svc, '--json'], { env });
      expect(j.code, show(j)).toBe(0);
      const prod = (JSON.parse(j.stdout) as LaneView[]).find((v) => v.environment === 'production');
      expect(prod?.holder?.workflowId).toBe(a.handle.workflowId);
      expect(prod?.queue.map((e) => e.workflowId)).toEqual([b.handle.workflowId]);
    } finally {
      await cleanUp(...rs);
    }
  }, 120_000);

  it('tells the approvers\' channel when a release has waited for its lane longer than notices.laneWaitLongerThan, naming the holder, once', async () => {
    const svc: Service = 'lane-notice';
    const before = lab.count();
    const noticesOf = (kind: NoticeBody['kind'], version: string) => lab.requests().slice(before).map((r) => r.body as NoticeBody)
      .filter((n) => n.kind === kind && n.release.service === svc && n.release.version === version);
    const a = await start(svc, '9.0.0');
    const rs: Release[] = [a];
    try {
      await waitFor(a, atProductionGate, 'A at the production gate');
      const b = await start(svc, '9.1.0');
      rs.push(b);
      const waiting = await waitFor(b, waitingForLane, 'B to wait behind A');
      const lane = waiting.lanes!.production!;
      // The config says 2s: the notice comes while B still waits.
      const end = Date.now() + 20_000;
      while (noticesOf('lane-wait', '9.1.0').length === 0 && Date.now() < end) await pause(100);
      const [notice, ...more] = noticesOf('lane-wait', '9.1.0');
      expect(notice, `no lane-wait notice for B within 20 s; the receiver got ${lab.requests().slice(before).map((r) => (r.body as NoticeBody).kind).join(', ')}`).toBeDefined();
      expect(more).toEqual([]);
      expect((await statusOf(b)).stage).toBe('waiting-for-lane');
      expect(notice!.release).toMatchObject({ environment: 'production', workflowId: b.handle.workflowId });
      expect(notice!.text).toContain(`${svc} 9.1.0 has waited for the production lane since ${lane.since}: ${svc} 9.0.0 holds it (since ${lane.holder!.heldSince})`);
      expect(notice!.text).toContain(`gantry status ${svc} 9.1.0`);
      expect(JSON.stringify(notice!.blocks)).toContain(`held by ${svc} 9.0.0 since ${lane.holder!.heldSince}; waiting since ${lane.since}`);

      // Once per wait: B gets the lane when A ends, with no second notice; A, which never waited, got none.
      await approveAndFinish(a);
      await waitFor(b, atProductionGate, 'B to get the lane');
      expect(noticesOf('lane-wait', '9.1.0')).toHaveLength(1);
      expect(noticesOf('lane-wait', '9.0.0')).toEqual([]);
      expect(noticesOf('gate-opened', '9.0.0')).toHaveLength(1);
    } finally {
      await cleanUp(...rs);
    }
  }, 120_000);
});

describe('freezes at the release\'s production gate', () => {
  it('holds an approved release while frozen, says who froze it, why and until when, and lets it go when the freeze ends by itself', async () => {
    const svc: Service = 'freeze-until';
    const a = await start(svc, '5.0.0');
    try {
      await waitFor(a, atProductionGate, 'A at the production gate');
      const until = new Date(Date.now() + 12_000).toISOString();
      const placed = await freeze(svc, 'incident 51', until);
      expect(placed.freeze?.by).toEqual(expect.objectContaining({ principal: 'bob', verified: false }));
      const answer = await approve(a);
      // The approval's answer waits for the gate's freeze check: still open, frozen.
      expect(answer.gate).toBe('open');
      expect(answer.message).toContain(`is frozen: frozen by bob since ${placed.freeze!.since}: incident 51 (until ${until})`);
      const s = await statusOf(a);
      expect(s.stage).toBe('awaiting-approval');
      expect(s.gate.state).toBe('open');
      expect(s.gate.quorum).toBe(true);
      expect(s.gate.freeze).toEqual(expect.objectContaining({
        frozen: true, until,
        freezes: [expect.objectContaining({ kind: 'manual', id: placed.freeze!.id, by: 'bob', reason: 'incident 51', until })],
      }));
      expect(s.message).toBe(`Approved, but ${svc} production is frozen: frozen by bob since ${placed.freeze!.since}: incident 51 (until ${until}). ` +
        'The release waits at the gate. It passes when the freeze ends (the service has no break-glass group).');
      expect(productionDeploys(svc)).toEqual([]);
      // The gate wakes when the freeze ends (not at its 30 s recheck).
      const done = await waitFor(a, ended, 'A to pass once the freeze ended', 30_000);
      expect(done.outcome, done.message).toBe('succeeded');
      expect(mark(a.name, 'deploy:production', 'start')).toBeGreaterThanOrEqual(Date.parse(until));
      expect(done.gate.freeze?.frozen).toBe(false);
    } finally {
      await cleanUp(a);
    }
  }, 90_000);

  it('keeps the gate shut until the freeze is lifted, and passes within the recheck after the unfreeze', async () => {
    const svc: Service = 'freeze-lift';
    const placed = await freeze(svc, 'database migration');
    const a = await start(svc, '6.0.0');
    try {
      // Frozen before the gate opened: the gate says so at once, before any vote.
      const open = await waitFor(a, (s) => atProductionGate(s) && s.gate.freeze !== undefined, 'A at the production gate, freeze checked');
      expect(open.gate.freeze?.frozen).toBe(true);
      expect(open.message).toContain(`Note: frozen by bob since ${placed.freeze!.since}: database migration (until unfrozen); even once approved it waits`);
      await approve(a);
      const held = await statusOf(a);
      expect(held.gate.state).toBe('open');
      expect(held.message).toMatch(new RegExp(`^Approved, but ${svc} production is frozen: frozen by bob since \\S+: database migration \\(until unfrozen\\)\\. The release waits at the gate\\.`));
      await pause(3000);
      expect((await statusOf(a)).gate.state).toBe('open');
      expect(productionDeploys(svc)).toEqual([]);
      const lifted = await unfreeze(svc);
      expect(lifted.lifted.map((f) => f.id)).toEqual([placed.freeze!.id]);
      const liftedAt = Date.now();
      const done = await waitFor(a, ended, 'A to pass after the unfreeze', 45_000);
      expect(done.outcome, done.message).toBe('succeeded');
      expect(mark(a.name, 'deploy:production', 'start')).toBeGreaterThan(liftedAt);
    } finally {
      await cleanUp(a);
    }
  }, 120_000);

  it('keeps a release frozen at the gate across a restart of the dev server, and releases it after the unfreeze', async () => {
    const svc: Service = 'freeze-restart';
    const placed = await freeze(svc, 'survives restarts');
    const a = await start(svc, '8.0.0');
    try {
      await waitFor(a, atProductionGate, 'A at the production gate');
      await approve(a);
      await waitFor(a, (s) => s.gate.quorum === true && s.gate.freeze?.frozen === true, 'A approved and frozen');

      await stopAll();
      await startServer();
      await startWorker();

      const reconnected: Release = { ...a, handle: client.workflow.getHandle<typeof releaseWorkflow>(a.handle.workflowId) };
      const after = await waitFor(reconnected, (s) => s.gate.freeze?.frozen === true, 'A to answer after the restart', 60_000);
      expect(after.gate.state).toBe('open');
      expect(after.stage).toBe('awaiting-approval');
      expect(after.message).toContain('frozen by bob');
      expect(after.message).toContain('survives restarts (until unfrozen)');
      // Still held well after the restart: the registry kept the freeze, the gate keeps checking it.
      await pause(5000);
      const still = await statusOf(reconnected);
      expect(still.gate.state).toBe('open');
      expect(still.gate.freeze?.freezes.map((f) => f.id)).toEqual([placed.freeze!.id]);
      expect(productionDeploys(svc)).toEqual([]);

      const lifted = await unfreeze(svc);
      expect(lifted.lifted.map((f) => f.id)).toEqual([placed.freeze!.id]);
      const done = await waitFor(reconnected, ended, 'A to pass after the unfreeze', 60_000);
      expect(done.outcome, done.message).toBe('succeeded');
      expect(productionDeploys(svc)).toEqual(['8.0.0']);
    } finally {
      await Promise.all([a.handle.workflowId].map((id) => client.workflow.getHandle(id).terminate('test finished').catch(() => undefined)));
    }
  }, 240_000);
});
