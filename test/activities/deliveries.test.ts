/**
 * Effects exactly once, from stateless workers, on real components: a real dev server, gantry workers in
 * processes of their own (test/activities/delivery-worker.ts) running the real announce activities, the lab's
 * webhook receiver (it honours the Idempotency-Key) and the GitHub stand-in (every request checked against
 * GitHub's published contract), an audit log in a directory all workers share (as they would over a volume).
 *
 * One release, announced on the audit log, GitHub (release, a milestone issue commented on and closed, the
 * milestone closed) and the webhook. The worker that runs a delivery is SIGKILLed right after the delivery did
 * its work and before its activity completed, three times over: after the audit line (worker A); after the
 * webhook message (B, with GitHub's delivery, which runs beside the webhook's, cut off wherever it was); after
 * the GitHub writes (C, which also repeated the webhook delivery). Each time a fresh worker (another process,
 * its own HOME and temp directory) picks the deliveries up once their heartbeat timeout passes, and the release
 * ends with every effect once: one webhook message (its repeats refused by key), each audit line once, one
 * GitHub release and one comment, each POSTed once.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as pause } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { releaseWorkflow } from '../../src/workflows';
import { approveUpdate, releaseWorkflowId, statusQuery, type ReleaseStatus } from '../../src/shared/release';
import { verifyChain } from '../../src/record/audit-chain';
import { commentMarker } from '../../src/activities/github-announce';
import { startWebhookReceiver, type WebhookReceiver } from '../../src/lab/webhook';
import { SAMPLE_CONFIG_YAML } from '../helpers/fixtures';
import { devServerEnv } from '../helpers/servers';
import { bundleReleaseWorkflow } from '../workflows/harness';
import { expectContractKept, startStandIn, TOKEN_ENV } from '../github/helpers';
import type { GithubStandIn } from '../github/stand-in';
import type { DeliveryAttempt } from './delivery-worker';

let env: TestWorkflowEnvironment;
let dir: string;
let bundleFile: string;
let hook: WebhookReceiver;
let gh: GithubStandIn;
let ghEnv: NodeJS.ProcessEnv;
const workers: WorkerProcess[] = [];

const WEBHOOK_ENV = 'GANTRY_TEST_DELIVERY_WEBHOOK';
const VERSION = '4.2.0';
const CHANGELOG = '# Changelog\n\n## [4.2.0]\n- delivered once\n';

beforeAll(async () => {
  let bundle;
  [env, bundle, { gh, env: ghEnv }] = await Promise.all([devServerEnv(), bundleReleaseWorkflow(), startStandIn()]);
  dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-deliveries-'));
  bundleFile = path.join(dir, 'workflow-bundle.js');
  writeFileSync(bundleFile, bundle.code);
  mkdirSync(path.join(dir, 'webhook'), { recursive: true });
  hook = await startWebhookReceiver({ file: path.join(dir, 'webhook', 'requests.jsonl'), token: randomUUID() });
}, 240_000);

afterAll(async () => {
  for (const w of workers) await w.stop();
  await hook?.close();
  await gh?.stop();
  await env?.teardown();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

// ---- workers in processes of their own ----

interface WorkerProcess {
  pid: number;
  /** Resolves with the time the process ended (a crash: its own SIGKILL). */
  exited: Promise<number>;
  stop(): Promise<void>;
}

async function startWorker(taskQueue: string, configFile: string, logFile: string, crashAfter?: string): Promise<WorkerProcess> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', path.join(__dirname, 'delivery-worker.ts'), env.address, taskQueue, bundleFile, configFile, logFile, ...(crashAfter ? [crashAfter] : [])], {
    stdio: ['ignore', 'pipe', 'pipe'],
    // Each worker its own HOME and temp directory: nothing one leaves on its disk helps the next.
    env: { ...process.env, ...ghEnv, [WEBHOOK_ENV]: hook.url, HOME: mkdtempSync(path.join(dir, 'home-')), TMPDIR: mkdtempSync(path.join(dir, 'tmp-')) },
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000); });
  const exited = new Promise<number>((resolve) => child.once('exit', () => resolve(Date.now())));
  const w: WorkerProcess = {
    pid: child.pid!,
    exited,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      await exited;
    },
  };
  workers.push(w);
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => { if (d.toString().includes('ready')) resolve(); });
    child.once('exit', (code, signal) => reject(new Error(`the delivery worker did not start (${signal ?? code}): ${stderr.trim()}`)));
  });
  return w;
}

function attempts(logFile: string): DeliveryAttempt[] {
  if (!existsSync(logFile)) return [];
  return readFileSync(logFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as DeliveryAttempt);
}

async function waitForStatus(handle: ReturnType<TestWorkflowEnvironment['client']['workflow']['getHandle']>, ok: (s: ReleaseStatus) => boolean, what: string, timeoutMs = 60_000): Promise<ReleaseStatus> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const s = await handle.query(statusQuery).catch(() => undefined);
    if (s && ok(s)) return s;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}; last: ${s ? `${s.stage}: ${s.message}` : 'no answer'}`);
    await pause(200);
  }
}

function configFor(auditLog: string): string {
  const announce = `    announce:\n      webhook: { env: ${WEBHOOK_ENV} }\n      auditLog: ${auditLog}\n` +
    `    github:\n      owner: ${gh.owner}\n      repo: ${gh.repo}\n      token: { env: ${TOKEN_ENV} }\n      baseUrl: ${gh.baseUrl}\n      closeMilestone: true\n`;
  // Declared approvals by alice; the announce step's timeouts and retries as shipped (src/shared/steps.ts).
  return SAMPLE_CONFIG_YAML.replace('      approvers: [alice, bob, carol]', '      approvers: [alice]').replace('    steps:', `${announce}    steps:`);
}

describe('deliveries on workers that die mid-delivery', () => {
  it('SIGKILLed after the audit line, after the webhook message and after the GitHub writes: every effect once, each delivery resumed on a fresh worker within about 15 s', { timeout: 300_000 }, async () => {
    const taskQueue = `deliveries-${randomUUID()}`;
    const auditLog = path.join(dir, 'shared', 'audit.jsonl');
    const configFile = path.join(dir, 'gantry.yaml');
    writeFileSync(configFile, configFor(auditLog));
    const logFile = path.join(dir, 'attempts.jsonl');
    const tag = `v${VERSION}`;
    gh.addFile(tag, 'CHANGELOG.md', CHANGELOG);
    const milestone = gh.addMilestone(tag);
    const issue = gh.addMilestoneIssue(milestone, 'Deliver once');

    const kills: { channel: string; at: number }[] = [];
    const crashing = async (crashAfter: string): Promise<void> => {
      const w = await startWorker(taskQueue, configFile, logFile, crashAfter);
      const at = await Promise.race([w.exited, pause(120_000).then(() => { throw new Error(`the worker set to die after ${crashAfter} never did`); })]);
      kills.push({ channel: crashAfter, at });
    };

    // Worker A runs the release up to the announcement and dies after the audit line.
    const a = crashing('audit');
    const handle = await env.client.workflow.start(releaseWorkflow, {
      taskQueue, workflowId: releaseWorkflowId('hello', VERSION), args: [{ service: 'hello', version: VERSION, requestedBy: 'tester' }],
    });
    await waitForStatus(handle, (s) => s.gate.state === 'open', 'the gate to open');
    await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] });
    await a;
    // B takes the audit delivery over, then dies after the webhook message; C after the GitHub writes; D finishes.
    await crashing('webhook');
    await crashing('github');
    const d = await startWorker(taskQueue, configFile, logFile);
    const result = await handle.result();
    await d.stop();

    expect(result.outcome, result.message).toBe('succeeded');
    expect(kills.map((k) => k.channel)).toEqual(['audit', 'webhook', 'github']);
    const announce = result.steps.find((s) => s.name === 'announce')!;
    expect(announce).toMatchObject({ state: 'succeeded', runs: 1, outputs: { webhook: 'true', audit: 'true', channels: 'audit ok; artifacts skipped; github ok; webhook ok' } });

    // Each killed delivery was retried by a fresh worker (another process) within about 15 s of the kill:
    // the 10 s heartbeat timeout, then the announce step's first retry.
    const log = attempts(logFile);
    for (const kill of kills) {
      const killed = log.filter((x) => x.channel === kill.channel && x.at <= kill.at).at(-1)!;
      const next = log.find((x) => x.channel === kill.channel && x.at > kill.at)!;
      expect(next, `${kill.channel} was not retried`).toBeDefined();
      expect(next.pid).not.toBe(killed.pid);
      expect(next.attempt).toBe(killed.attempt + 1);
      expect(next.at - kill.at, `${kill.channel}: resumed ${next.at - kill.at} ms after the kill`).toBeLessThan(17_000);
    }

    // The webhook: one message; every repeat of the delivery carried the same key and was refused as a duplicate.
    expect(hook.count()).toBe(1);
    expect(hook.duplicates()).toBeGreaterThanOrEqual(1);
    const key = `${handle.workflowId}/${(await handle.describe()).runId}/released`;
    expect([...hook.requests(), ...hook.duplicateRequests()].every((r) => r.idempotencyKey === key)).toBe(true);

    // The audit log: each line once, the chain whole.
    const lines = readFileSync(auditLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { id: string; action: string });
    expect(lines.map((l) => l.action)).toEqual(['start-accepted', 'approve-accepted', 'released']);
    expect(new Set(lines.map((l) => l.id)).size).toBe(lines.length);
    expect(verifyChain(readFileSync(auditLog))).toMatchObject({ ok: true, lines: 3 });

    // GitHub: one release, one comment, each POSTed once; the issue and the milestone closed.
    expect(gh.releases.filter((r) => r.tag_name === tag)).toHaveLength(1);
    expect(gh.calls('repos/create-release')).toHaveLength(1);
    expect(gh.issueComments.filter((c) => c.body.includes(commentMarker('released', VERSION)))).toHaveLength(1);
    expect(gh.calls('issues/create-comment')).toHaveLength(1);
    expect(issue.state).toBe('closed');
    expect(milestone.state).toBe('closed');
    expectContractKept(gh);

    // No local state: the workers' files are the shared audit log and its (released) lock, nothing else.
    expect(existsSync(`${auditLog}.ledger`)).toBe(false);
    expect(existsSync(`${auditLog}.lock`)).toBe(false);
  });
});
