/**
 * End to end on the release lab, as an operator runs it: a real dev server, `gantry worker` (the real steps,
 * the prebuilt workflow bundle) and the built `gantry` CLI. Nothing in the release path is simulated: the tag is
 * pushed to a real bare repo, the image built by Podman and pushed to a real registry, staging replaced through
 * dockerode, production over a real sshd, checks over HTTP, the webhook received by a real HTTP receiver.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { devServerEnv } from '../helpers/servers';
import { useLab } from '../helpers/lab';
import { BIN, gantry, requireBuild, show, waitFor } from '../cli/harness';
import type { ReleaseStatus } from '../../src/shared/release';
import type { AuditRecord } from '../../src/activities/announce';
import { writeRollbackDemoConfig } from '../../src/lab/sample-repo';
import { freePort } from '../helpers/ports';
import type { DeliveryReport } from '../../src/client/report';

const ctx = useLab();
let env: TestWorkflowEnvironment;
let worker: ChildProcess;
let workerLog = '';
let cliEnv: Record<string, string>;
let metricsUrl: string;

/** The worker's Prometheus metrics, as a scraper reads them. */
async function scrape(): Promise<string> {
  const res = await fetch(metricsUrl);
  expect(res.status).toBe(200);
  return res.text();
}

/** The value of a metric series whose labels include all of `labels`. */
function metric(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

beforeAll(async () => {
  requireBuild();
  // The server's HTTP API named, as an operator's machine has it: the signed starts go out through it.
  const httpPort = await freePort();
  env = await devServerEnv({ httpPort });
  cliEnv = { TEMPORAL_ADDRESS: env.address, TEMPORAL_NAMESPACE: 'default', GANTRY_HTTP_API: `http://127.0.0.1:${httpPort}`, ...ctx.lab.env };
  // The worker owns the lab's config (read again for every release); the CLI sends only signed requests.
  const metricsPort = await freePort();
  metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
  worker = spawn(process.execPath, [BIN, 'worker', '--config', ctx.lab.configFile, '--metrics', `127.0.0.1:${metricsPort}`], { env: { ...process.env, ...cliEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
  worker.stdout?.on('data', (d: Buffer) => { workerLog += d.toString(); });
  worker.stderr?.on('data', (d: Buffer) => { workerLog += d.toString(); });
  await waitFor('the worker to poll', async () => workerLog.includes('polling') || undefined, 60_000);
});

afterAll(async () => {
  if (worker && worker.exitCode === null) {
    const exited = new Promise((r) => worker.once('exit', r));
    worker.kill('SIGTERM');
    await exited;
  }
  await env?.teardown();
});

async function status(version: string): Promise<ReleaseStatus> {
  const r = await gantry(['status', 'hello', version, '--json'], { env: cliEnv });
  if (r.code !== 0) throw new Error(show(r));
  return JSON.parse(r.stdout) as ReleaseStatus;
}

async function untilStage(version: string, pred: (s: ReleaseStatus) => boolean, what: string): Promise<ReleaseStatus> {
  return waitFor(what, async () => {
    const s = await status(version);
    return pred(s) ? s : undefined;
  }, 240_000, 1_000).catch(async (err: unknown) => {
    throw new Error(`${String(err)}\nlast status: ${JSON.stringify(await status(version), null, 1).slice(0, 4000)}\nworker log:\n${workerLog.slice(-4000)}`);
  });
}

async function httpJson(url: string): Promise<unknown> {
  const res = await fetch(url);
  return res.json();
}

async function containerImage(name: string): Promise<string> {
  const info = await ctx.lab.docker.getContainer(name).inspect();
  return info.Config.Image;
}

function auditLines(): AuditRecord[] {
  const file = path.join(ctx.lab.dir, 'audit.jsonl');
  return existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as AuditRecord) : [];
}

describe('a release on the lab, driven by the gantry CLI', () => {
  it('tags, builds, replaces staging, waits at the gate, deploys production over SSH after approval and announces', async () => {
    const good = ctx.lab.repo.good;
    const start = await gantry(['start', 'hello', good.version, '--config', ctx.lab.configFile, '--requested-by', 'operator', '--key', ctx.lab.people.operator], { env: cliEnv });
    expect(start.code, show(start)).toBe(0);
    expect(start.stdout).toContain('requested by operator (signed)');
    expect(start.stdout).toContain(`plan     resolved on the worker from ${ctx.lab.configFile}@sha256:`);

    const atGate = await untilStage(good.version, (s) => s.stage === 'awaiting-approval' || s.outcome !== undefined, 'the gate to open');
    expect(atGate.stage, JSON.stringify(atGate.steps, null, 1)).toBe('awaiting-approval');
    const step = (s: ReleaseStatus, name: string) => s.steps.find((x) => x.name === name)!;
    expect(step(atGate, 'tag').outputs).toMatchObject({ tag: `v${good.version}`, commit: good.commit });
    expect(step(atGate, 'build').outputs.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    // staging runs the new image by digest, and answers the new version
    expect(await containerImage(ctx.lab.staging.container)).toBe(step(atGate, 'build').outputs.imageRef);
    expect(await httpJson(`${ctx.lab.staging.url}/version`)).toEqual({ version: good.version });
    // the tag is on the remote at the release commit
    const { execFileSync } = await import('node:child_process');
    expect(execFileSync('git', ['rev-parse', `v${good.version}^{commit}`], { cwd: ctx.lab.repo.url, encoding: 'utf8' }).trim()).toBe(good.commit);
    expect(ctx.lab.webhook.requests().length).toBe(0);

    expect(atGate.requester).toMatchObject({ principal: 'operator', verified: true });
    expect(atGate.input?.configSha256).toMatch(/^[0-9a-f]{64}$/);
    // Signed mode: bob's key does not make anyone alice, and the operator is not an approver.
    const forged = await gantry(['approve', 'hello', good.version, '--as', 'alice', '--key', ctx.lab.people.bob], { env: cliEnv });
    expect(forged.code, show(forged)).toBe(6);
    expect(forged.stderr).toContain("which is not alice's key in the worker's allowed signers");
    const notApprover = await gantry(['approve', 'hello', good.version, '--as', 'operator', '--key', ctx.lab.people.operator], { env: cliEnv });
    expect(notApprover.code, show(notApprover)).toBe(6);
    expect(notApprover.stderr).toContain('operator is not an approver for hello');

    const approve = await gantry(['approve', 'hello', good.version, '--as', 'alice', '--key', ctx.lab.people.alice, '--reason', 'staging answers 1.0.0'], { env: cliEnv });
    expect(approve.code, show(approve)).toBe(0);

    const done = await untilStage(good.version, (s) => s.outcome !== undefined, 'the release to finish');
    expect(done.outcome, done.message).toBe('succeeded');
    expect(done.gate.approvals).toEqual([expect.objectContaining({ approver: 'alice', verified: true, fingerprint: expect.stringMatching(/^SHA256:/) })]);
    expect(await httpJson(`${ctx.lab.production.url}/version`)).toEqual({ version: good.version });
    expect(await containerImage(ctx.lab.production.container)).toBe(step(atGate, 'build').outputs.imageRef);
    expect(step(done, 'deployProduction').outputs.targets).toContain('ssh:');

    const hooks = ctx.lab.webhook.requests();
    expect(hooks).toHaveLength(1);
    expect(JSON.stringify(hooks[0]!.body)).toContain(good.version);
    // Every action on the record, in order, with its verified actor, then the outcome; the chain is intact.
    const lines = auditLines().filter((l) => l.release.version === good.version) as (AuditRecord & { verified?: boolean })[];
    expect(lines.map((l) => [l.action, l.actor, l.verified ?? null])).toEqual([
      ['start-accepted', 'operator', true], ['approve-accepted', 'alice', true], ['released', expect.any(String), null],
    ]);
    expect(lines[2]).toEqual(expect.objectContaining({ action: 'released', approvers: ['alice'], digest: step(atGate, 'build').outputs.digest }));
    const verify = await gantry(['audit', 'verify', path.join(ctx.lab.dir, 'audit.jsonl')], { env: cliEnv });
    expect(verify.code, show(verify)).toBe(0);
    const announced = step(done, 'announce').outputs;
    expect(announced.notes, JSON.stringify(announced)).toBeDefined();
    const notes = readFileSync(announced.notes!, 'utf8');
    expect(notes).toContain(good.version);
    const metadata = JSON.parse(readFileSync(path.join(path.dirname(announced.notes!), 'release-metadata.json'), 'utf8')) as Record<string, unknown>;
    // The signed release manifest verifies offline, and names the verified approval.
    const manifest = path.join(path.dirname(announced.notes!), 'release-manifest.json');
    const verified = await gantry(['verify', manifest, '--audit-log', path.join(ctx.lab.dir, 'audit.jsonl')], { env: cliEnv });
    expect(verified.code, show(verified)).toBe(0);
    expect(verified.stdout).toContain(step(atGate, 'build').outputs.digest!);
    expect(verified.stdout).toContain('alice');
    expect(JSON.stringify(metadata)).toContain(step(atGate, 'build').outputs.digest!);

    // The worker's metrics after a real release: the SDK's and gantry's own (docs/metrics.md).
    const m = await scrape();
    expect(metric(m, 'temporal_workflow_completed')).toBeGreaterThanOrEqual(1);
    expect(metric(m, 'release_success_total', { service: 'hello' })).toBe(1);
    expect(metric(m, 'release_manual_approval_total', { vote: 'approve' })).toBe(1);
    expect(metric(m, 'release_duration_seconds_count', { outcome: 'succeeded' })).toBe(1);
    expect(metric(m, 'release_gate_wait_seconds_count', { result: 'approved' })).toBe(1);
    for (const step of ['preflight', 'tag', 'build', 'deployProduction', 'health', 'announce']) {
      expect(metric(m, 'release_step_duration_seconds_count', { step }), step).toBeGreaterThanOrEqual(1);
    }

    const history = await gantry(['history', 'hello', good.version], { env: cliEnv });
    expect(history.code, show(history)).toBe(0);
    for (const words of ['Preflight checks', 'Tag the release commit', 'Build and push the image', 'Deploy to staging', 'Smoke-check staging', 'alice', 'Deploy to production', 'Health-check production', 'Announce the release']) {
      expect(history.stdout).toContain(words);
    }
  });

  it('rolls production back to the previous image when the new version fails its health check', async () => {
    const { good, broken } = ctx.lab.repo;
    ctx.lab.repo.moveBranch('main', broken.commit);
    // Staging checks only /version in this config, so the broken revision reaches production. The worker reads
    // its config again for this release: no restart.
    const configFile = writeRollbackDemoConfig(ctx.lab.configFile);

    const start = await gantry(['start', 'hello', broken.version, '--config', configFile, '--requested-by', 'operator', '--key', ctx.lab.people.operator,
      '--approve-as', 'bob', '--approve-key', ctx.lab.people.bob], { env: cliEnv, timeoutMs: 300_000 });
    expect(start.code, show(start)).toBe(10); // rolled_back (docs/cli.md)
    const s = await status(broken.version);
    expect(s.outcome).toBe('rolled_back');
    expect(s.steps.find((x) => x.name === 'health')!.state).toBe('failed');
    expect(s.steps.find((x) => x.name === 'rollback')!.state).toBe('succeeded');
    // production answers the previous version again, from the previous image
    expect(await httpJson(`${ctx.lab.production.url}/version`)).toEqual({ version: good.version });
    expect((await fetch(`${ctx.lab.production.url}/health`)).status).toBe(200);
    // the rollback is announced
    const hooks = ctx.lab.webhook.requests();
    expect(hooks).toHaveLength(2);
    expect(JSON.stringify(hooks[1]!.body)).toMatch(/roll(ed)? ?back/i);
    expect(auditLines().filter((l) => l.release.version === broken.version).map((l) => l.action)).toEqual(['start-accepted', 'approve-accepted', 'rolled_back']);
    const m = await scrape();
    expect(metric(m, 'release_rollback_total', { service: 'hello' })).toBe(1);
    expect(metric(m, 'release_failure_total', { outcome: 'rolled_back' })).toBe(1);

    // DORA figures over the two real lab releases: one healthy, one rolled back and restored by its rollback.
    const report = await gantry(['report', '--service', 'hello', '--since', '1d', '--json'], { env: cliEnv });
    expect(report.code, show(report)).toBe(0);
    const r = JSON.parse(report.stdout) as DeliveryReport;
    expect(r).toMatchObject({ deployments: 2, healthy: 1, failures: 1, rolledBack: 1, changeFailureRate: 0.5 });
    expect(r.leadTime).toMatchObject({ samples: 1, fromCommit: 1 }); // from the real commit's time in the lab repo
    expect(r.leadTime.medianSeconds).toBeGreaterThan(0);
    expect(r.timeToRestore).toMatchObject({ samples: 1, unrestored: 0 });
    expect(r.timeToRestore.medianSeconds).toBeGreaterThan(0);
  });
});
