/**
 * The `gantry` CLI driving releases on a real Temporal dev server with a worker, run as a user runs it: the
 * built `bin/gantry.js` in a child process, TEMPORAL_ADDRESS pointing at the server. Approvals arrive through
 * the real Temporal CLI (`temporal workflow signal`) and through `gantry approve`.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Context } from '@temporalio/activity';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Worker } from '@temporalio/worker';
import { TASK_QUEUE, WORKFLOW_TYPE, type ReleaseStatus } from '../../src/shared/release';
import { retryable } from '../../src/shared/errors';
import { devServerEnv, requireBinary, TEMPORAL_CLI } from '../helpers/servers';
import { freePort } from '../helpers/ports';
import { sampleInput } from '../helpers/fixtures';
import {
  BIN, endOpenReleases, gantry, removeTempDirs, requireBuild, routedActivities, show, sshKeygen, startWorker, tempDir, waitFor, writeConfig,
  type CliResult, type Person, type Routed,
} from './harness';

const run = promisify(execFile);

let env: TestWorkflowEnvironment;
let worker: Worker;
let workerRunning: Promise<void>;
let temporalEnv: Record<string, string>;
let httpPort: number;
let dir: string;
let twoApprovals: string;
let oneApproval: string;
/** Build of release 3.0.0 fails until the test "fixes the registry". */
let registryDown = true;
let routed: Routed;

/**
 * The worker's config for a release, by its version (read by the real resolve step, from disk, every release):
 * 1.0.0 needs two approvals; 20.x reads a directory of two files; 21.x a file a test edits while the worker
 * runs; 23.x a service in signed mode; 30.x the governed service gov; the rest one approval.
 */
const workerConfigs: Record<string, () => string> = {};
function workerConfigFor(version: string): string {
  const special = workerConfigs[version] ?? workerConfigs[`${version.split('.')[0]}.x`];
  return special ? special() : oneApproval;
}

beforeAll(async () => {
  requireBuild();
  requireBinary(TEMPORAL_CLI, 'The Temporal CLI');
  // Its HTTP API named, so `gantry start` starts the releases through it (and `gantry status` reads them there).
  httpPort = await freePort();
  env = await devServerEnv({ httpPort });
  dir = tempDir();
  twoApprovals = writeConfig(dir, 'two.yaml', [['required: 1', 'required: 2']]);
  oneApproval = writeConfig(dir, 'one.yaml', [['build: { retry:', 'build: { heartbeatTimeout: 2s, retry:']]);
  workerConfigs['1.0.0'] = () => twoApprovals;
  routed = routedActivities({
    config: workerConfigFor,
    behaviour: (version) => {
      switch (version) {
        case '2.0.0': return { delayMs: { build: 120_000 } };
        case '3.0.0': return { failWhile: { build: () => registryDown } };
        case '5.0.0': return { fail: { health: 'fatal' } };
        case '30.2.0': return { fail: { smoke: 'retryable' } };
        default: return {};
      }
    },
  });
  const { activities } = routed;
  // Release 8.0.0: the build's registry answers 503 once; the retry reports progress while it pushes.
  const build = activities.build.bind(activities);
  activities.build = async (req) => {
    if (req.release.version !== '8.0.0') return build(req);
    const ctx = Context.current();
    if (ctx.info.attempt === 1) throw retryable('registry answered 503 (fake)');
    for (let i = 0; i < 10; i++) {
      ctx.heartbeat({ phase: 'push', target: req.image.registry, detail: 'layer 2 of 3' });
      await ctx.sleep(500);
    }
    return build(req);
  };
  ({ worker, running: workerRunning } = await startWorker(env, activities));
  temporalEnv = { TEMPORAL_ADDRESS: env.address, TEMPORAL_NAMESPACE: 'default', GANTRY_HTTP_API: `http://127.0.0.1:${httpPort}` };
});

// Releases of hello share its lanes: one a test left running would hold the next test's release in the queue.
afterEach(() => endOpenReleases(env.client));

afterAll(async () => {
  worker?.shutdown();
  await workerRunning;
  await env?.teardown();
  removeTempDirs();
});

const cli = (args: string[], timeoutMs?: number, extraEnv: Record<string, string> = {}): Promise<CliResult> =>
  gantry(args, { env: { ...temporalEnv, ...extraEnv }, cwd: dir, ...(timeoutMs ? { timeoutMs } : {}) });

async function ok(args: string[]): Promise<CliResult> {
  const r = await cli(args);
  expect(r.code, show(r)).toBe(0);
  return r;
}

async function statusOf(version: string, service = 'hello'): Promise<ReleaseStatus> {
  const r = await ok(['status', service, version, '--json']);
  return JSON.parse(r.stdout) as ReleaseStatus;
}

function untilStage(version: string, stage: string, timeoutMs = 30_000, service = 'hello'): Promise<ReleaseStatus> {
  return waitFor(`release ${service} ${version} at stage ${stage}`, async () => {
    const s = await statusOf(version, service);
    return s.stage === stage ? s : undefined;
  }, timeoutMs, 500);
}

function untilOutcome(version: string, timeoutMs = 30_000, service = 'hello'): Promise<ReleaseStatus> {
  return waitFor(`release ${service} ${version} to end`, async () => {
    const s = await statusOf(version, service);
    return s.outcome ? s : undefined;
  }, timeoutMs, 500);
}

/** `temporal workflow signal`, as an operator sends it from a terminal (or pastes it into the Web UI). */
function signal(workflowId: string, name: string, input: string): Promise<unknown> {
  return run(TEMPORAL_CLI, ['workflow', 'signal', '--workflow-id', workflowId, '--name', name, '--input', input, '--address', env.address, '--namespace', 'default']);
}

describe('gantry drives a release through the gate on a real dev server', () => {
  it('start → gate (searchable, steps summarised) → approval by `temporal workflow signal` and `gantry approve` → succeeded, shown by status and history', async () => {
    const start = await ok(['start', 'hello', '1.0.0', '--config', twoApprovals, '--requested-by', 'ops-oncall']);
    expect(start.stdout).toContain('Started release hello 1.0.0 requested by ops-oncall');
    expect(start.stdout).toContain('gantry approve hello 1.0.0 --as <name>');
    // The worker resolved the plan from its own file; the operator's --config is only compared with it.
    expect(start.stdout).toContain(`plan     resolved on the worker from ${twoApprovals}@sha256:`);
    expect(start.stdout).toContain(`(your local ${twoApprovals} is the same file)`);

    await untilStage('1.0.0', 'awaiting-approval');

    // Searchable by its stage: visibility is eventually consistent, so poll the list.
    const listed = await waitFor('gantry list --stage awaiting-approval to find 1.0.0', async () => {
      const r = await ok(['list', '--stage', 'awaiting-approval', '--json']);
      const rows = JSON.parse(r.stdout) as { workflowId: string; service: string; version: string; stage: string }[];
      return rows.find((row) => row.workflowId === 'release-hello-1.0.0');
    });
    expect(listed).toMatchObject({ service: 'hello', version: '1.0.0', stage: 'awaiting-approval' });
    const table = await ok(['list', '--service', 'hello', '--stage', 'awaiting-approval']);
    expect(table.stdout).toMatch(/hello\s+1\.0\.0\s+awaiting-approval/);

    // Human status: every step with its state and what it produced; the gate and how to approve.
    const human = await ok(['status', 'hello', '1.0.0']);
    expect(human.stdout).toContain('Release hello 1.0.0: awaiting-approval');
    expect(human.stdout).toMatch(/✓ Preflight checks\s+succeeded 1 attempt/);
    expect(human.stdout).toMatch(/✓ Build and push the image\s+succeeded/);
    expect(human.stdout).toContain('digest: sha256:');
    expect(human.stdout).toMatch(/✓ Smoke-check staging\s+succeeded/);
    expect(human.stdout).toMatch(/· Deploy to production\s+pending/);
    expect(human.stdout).toContain('Approval gate: open, 0 of 2 approval(s); approvers alice, bob, carol');
    expect(human.stdout).toContain('approve: gantry approve hello 1.0.0 --as <name>');

    // A second start of a running release is refused, naming it and its state.
    const again = await cli(['start', 'hello', '1.0.0', '--config', twoApprovals]);
    expect(again.code, show(again)).toBe(5);
    expect(again.stderr).toContain('Release hello 1.0.0 already exists');
    expect(again.stderr).toContain('running, stage awaiting-approval');
    expect(again.stderr).toContain('gantry cancel hello 1.0.0');

    // An approver not on the list is refused with the reason.
    const mallory = await cli(['approve', 'hello', '1.0.0', '--as', 'mallory']);
    expect(mallory.code, show(mallory)).toBe(6);
    expect(mallory.stderr).toContain('mallory is not an approver for hello; approvers are alice, bob, carol');

    // First approval: the real Temporal CLI, as an operator would send it from a terminal.
    await run(TEMPORAL_CLI, [
      'workflow', 'signal', '--workflow-id', 'release-hello-1.0.0', '--name', 'approve',
      '--input', '{"approver":"alice"}', '--address', env.address, '--namespace', 'default',
    ]);
    const afterAlice = await waitFor('alice\'s approval to count', async () => {
      const s = await statusOf('1.0.0');
      return s.gate.approvals.length === 1 ? s : undefined;
    });
    expect(afterAlice.gate.approvals[0]).toMatchObject({ approver: 'alice', via: 'signal' });

    // Alice again, through gantry: refused, each approver votes once.
    const dup = await cli(['approve', 'hello', '1.0.0', '--as', 'alice']);
    expect(dup.code, show(dup)).toBe(6);
    expect(dup.stderr).toContain('alice already approved; each approver votes once');

    // Second approval through gantry: the update answers.
    const bob = await ok(['approve', 'hello', '1.0.0', '--as', 'bob', '--reason', 'staging looks good']);
    expect(bob.stdout).toContain('Approved: production deploy starts now.');
    expect(bob.stdout).toContain('2 of 2 approval(s)');

    const done = await untilOutcome('1.0.0');
    expect(done.outcome).toBe('succeeded');

    const final = await ok(['status', 'hello', '1.0.0']);
    for (const step of ['Resolve the plan on the worker', 'Preflight checks', 'Tag the release commit', 'Build and push the image', 'Deploy to staging',
      'Smoke-check staging', 'Deploy to production', 'Health-check production', 'Announce the release']) {
      expect(final.stdout).toMatch(new RegExp(`✓ ${step}\\s+succeeded 1 attempt`));
    }
    expect(final.stdout).toMatch(/- Roll production back\s+skipped/);
    expect(final.stdout).toMatch(/✓ approved by alice \(declared\) at .* via signal/);
    expect(final.stdout).toMatch(/✓ approved by bob \(declared\) at .* via update: staging looks good/);
    // Refused updates (mallory, alice twice) are refused by the validator and leave no record.
    expect(final.stdout).not.toContain('refused attempts:');
    expect(final.stdout).toContain('Outcome: succeeded: hello v1.0.0 is live in production');

    const history = await ok(['history', 'hello', '1.0.0']);
    const h = history.stdout;
    expect(h).toContain('started by ops-oncall: Release hello 1.0.0 requested by ops-oncall');
    for (const [summary, activity] of [['Resolve the plan on the worker', 'resolvePlan'], ['Preflight checks', 'preflight'], ['Tag the release commit', 'tag'], ['Build and push the image', 'build'],
      ['Deploy to staging', 'deploy'], ['Smoke-check staging', 'smoke'], ['Deploy to production', 'deploy'],
      ['Health-check production', 'health'], ['Announce the release: the channels', 'announcePlan']] as const) {
      expect(h).toMatch(new RegExp(`✓ ${summary} — hello 1\\.0\\.0 \\[${activity}\\]: succeeded after 1 attempt in \\d+\\.\\ds`));
    }
    expect(h).toMatch(/signal approve by alice: taken \(client temporal-cli:/);
    expect(h).toMatch(/update approve by bob \("staging looks good"\): taken: Approved: production deploy starts now\./);
    expect(h).toContain('stage → awaiting-approval');
    expect(h).toContain('stage → done (outcome succeeded)');
    expect(h).toContain('ended succeeded: hello v1.0.0 is live in production');
    // The refused votes went through updates, which leave nothing in the history; none shows up as taken.
    expect(h).not.toContain('by mallory');

    const json = JSON.parse((await ok(['history', 'hello', '1.0.0', '--json'])).stdout) as { entries: { kind: string; name?: string; who?: string; verdict?: string; activity?: string }[] };
    // Each environment's lane is asked for before it changes; the gate checks the freezes when it opens and again once approved.
    expect(json.entries.filter((e) => e.kind === 'step').map((e) => e.activity)).toEqual(
      ['resolvePlan', 'preflight', 'tag', 'build', 'laneEnqueue', 'deploy', 'smoke', 'laneEnqueue', 'checkFreeze', 'checkFreeze', 'deploy', 'health', 'announcePlan']);
    // The lane's own hints are shown, but are nobody's message and never match a vote.
    expect(json.entries.filter((e) => e.name === 'gantry-lane-changed').every((e) => e.who === undefined)).toBe(true);
    expect(json.entries.filter((e) => (e.kind === 'signal' || e.kind === 'update') && e.name !== 'gantry-lane-changed').map((e) => `${e.kind}:${e.who}:${e.verdict}`))
      .toEqual(['signal:alice:accepted', 'update:bob:accepted']);

    // A succeeded release cannot be started again.
    const rerun = await cli(['start', 'hello', '1.0.0', '--config', twoApprovals]);
    expect(rerun.code, show(rerun)).toBe(5);
    expect(rerun.stderr).toMatch(/ended succeeded/);
    expect(rerun.stderr).toContain('release a new version');

    const found = await waitFor('gantry list --outcome succeeded to find 1.0.0', async () => {
      const r = await ok(['list', '--outcome', 'succeeded', '--json']);
      return (JSON.parse(r.stdout) as { workflowId: string }[]).find((row) => row.workflowId === 'release-hello-1.0.0');
    });
    expect(found).toMatchObject({ stage: 'done', outcome: 'succeeded', status: 'COMPLETED' });
  }, 240_000); // some forty CLI runs: slow on a busy machine

  it('a refused signal shows up in history as REFUSED, with the reason', async () => {
    await ok(['start', 'hello', '1.1.0', '--config', oneApproval]);
    await untilStage('1.1.0', 'awaiting-approval');
    await run(TEMPORAL_CLI, ['workflow', 'signal', '--workflow-id', 'release-hello-1.1.0', '--name', 'approve',
      '--input', '{"approver":"mallory"}', '--address', env.address]);
    await run(TEMPORAL_CLI, ['workflow', 'signal', '--workflow-id', 'release-hello-1.1.0', '--name', 'aprove',
      '--input', '{"approver":"carol"}', '--address', env.address]);
    await waitFor('two refused signals', async () => (await statusOf('1.1.0')).gate.refused.length === 2);
    const h = (await ok(['history', 'hello', '1.1.0'])).stdout;
    expect(h).toMatch(/signal approve by mallory: REFUSED: mallory is not an approver for hello/);
    expect(h).toMatch(/signal aprove by carol: REFUSED: there is no signal named "aprove"; the signals are approve, reject, decide/);
    const s = (await ok(['status', 'hello', '1.1.0'])).stdout;
    expect(s).toMatch(/! approve by mallory at .* via signal: mallory is not an approver/);

    // Rejected at the gate; a release that ended unsuccessfully can be started again.
    const rejected = await ok(['reject', 'hello', '1.1.0', '--as', 'carol', '--reason', 'changelog is wrong']);
    expect(rejected.stdout).toContain('Rejected by carol: the release stops; nothing was deployed to production.');
    expect((await untilOutcome('1.1.0')).outcome).toBe('rejected');
    const closed = await cli(['approve', 'hello', '1.1.0', '--as', 'alice']);
    expect(closed.code, show(closed)).toBe(6);
    expect(closed.stderr).toContain('Cannot approve release hello 1.1.0: it has ended rejected');
    const restarted = await ok(['start', 'hello', '1.1.0', '--config', oneApproval]);
    expect(restarted.stdout).toContain('Started release hello 1.1.0');
    await ok(['cancel', 'hello', '1.1.0']);
  });

  it('`start --wait --approve-as` follows the release through the gate to the end and exits 0', async () => {
    const r = await cli(['start', 'hello', '4.0.0', '--config', oneApproval, '--wait', '--approve-as', 'alice', '--reason', 'ci run'], 60_000);
    expect(r.code, show(r)).toBe(0);
    expect(r.stdout).toContain('stage: awaiting-approval');
    expect(r.stdout).toContain('Waiting at the approval gate: it needs 1 more approval from alice, bob or carol; approvers alice, bob, carol');
    expect(r.stdout).toContain('Approve:  gantry approve hello 4.0.0 --as <name>');
    expect(r.stdout).toMatch(/Web UI: +http:\/\/127\.0\.0\.1:\d+\/namespaces\/default\/workflows\/release-hello-4\.0\.0/);
    expect(r.stdout).toContain('✓ approved as alice: Approved: production deploy starts now.');
    expect(r.stdout).toMatch(/✓ Deploy to production \(1 attempt, /);
    expect(r.stdout).toContain('Outcome: succeeded: hello v4.0.0 is live in production');
    const s = await statusOf('4.0.0');
    expect(s.gate.approvals).toMatchObject([{ approver: 'alice', reason: 'ci run', via: 'update' }]);
  });

  it('`start --wait` shows a step\'s retries and the progress it reports while it runs', async () => {
    const r = await cli(['start', 'hello', '8.0.0', '--config', oneApproval, '--wait', '--approve-as', 'alice'], 60_000);
    expect(r.code, show(r)).toBe(0);
    expect(r.stdout).toContain('▶ Build and push the image…');
    expect(r.stdout).toContain('attempt 2, after: registry answered 503 (fake)');
    expect(r.stdout).toContain('push 127.0.0.1:5000: layer 2 of 3');
    expect(r.stdout).toMatch(/✓ Build and push the image \(2 attempts, \d/);
  });

  it('`start --wait --stop-at-gate` returns at the gate; Ctrl-C while following stops following (exit 130), not the release', async () => {
    const r = await cli(['start', 'hello', '1.2.0', '--config', oneApproval, '--wait', '--stop-at-gate'], 60_000);
    expect(r.code, show(r)).toBe(0);
    expect(r.stdout).toContain('Waiting at the approval gate: it needs 1 more approval');
    expect(r.stdout).toContain('The release waits at the gate. Follow it again with `gantry status hello 1.2.0 --follow`.');

    const child = spawn(process.execPath, [BIN, 'status', 'hello', '1.2.0', '--follow'], {
      cwd: dir, env: { ...process.env, ...temporalEnv, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    await waitFor('status --follow to start following', async () => out.includes('Following; Ctrl-C stops following'));
    child.kill('SIGINT');
    expect(await exited, `${out}\n${err}`).toBe(130);
    expect(err).toContain('the release keeps running on the server. Follow it again with `gantry status hello 1.2.0 --follow`.');
    expect((await statusOf('1.2.0')).stage).toBe('awaiting-approval');
    const cancelled = JSON.parse((await ok(['cancel', 'hello', '1.2.0', '--json'])).stdout) as unknown;
    expect(cancelled).toEqual({ cancelled: true, message: 'Cancelled: nothing was deployed to production.' });
  });

  it('`start --wait` exits 10 when production health fails and the release is rolled back; history shows the rollback', async () => {
    const r = await cli(['start', 'hello', '5.0.0', '--config', oneApproval, '--wait', '--approve-as', 'bob'], 60_000);
    expect(r.code, show(r)).toBe(10);
    expect(r.stdout).toMatch(/✗ Health-check production failed after 1 attempt: health failed for good/);
    expect(r.stdout).toMatch(/✓ Roll production back/);
    expect(r.stdout).toContain('Outcome: rolled_back: Production health failed');
    expect(r.stderr).toContain('gantry history hello 5.0.0');
    const h = (await ok(['history', 'hello', '5.0.0'])).stdout;
    expect(h).toMatch(/✗ Health-check production — hello 5\.0\.0 \[health\]: failed after 1 attempt/);
    expect(h).toMatch(/failure, attempt 1: health failed for good \(fake\)/);
    expect(h).toMatch(/ROLLBACK ✓ Roll production back — hello 5\.0\.0 \[rollback\]: succeeded/);
    expect(h).toContain('ended rolled_back: Production health failed');
  });

  it('approving before the gate opens is refused (exit 6) with the reason; cancel ends the release as cancelled', async () => {
    await ok(['start', 'hello', '2.0.0', '--config', oneApproval]);
    await untilStage('2.0.0', 'build');
    const early = await cli(['approve', 'hello', '2.0.0', '--as', 'alice']);
    expect(early.code, show(early)).toBe(6);
    expect(early.stderr).toContain('the approval gate is not open yet (stage build)');
    expect(early.stderr).toContain('gantry status hello 2.0.0');

    const progress = (await ok(['status', 'hello', '2.0.0'])).stdout;
    expect(progress).toMatch(/▶ Build and push the image\s+running/);

    const cancel = await cli(['cancel', 'hello', '2.0.0', '--as', 'carol', '--reason', 'wrong branch', '--wait'], 60_000);
    expect(cancel.code, show(cancel)).toBe(13);
    expect(cancel.stdout).toContain('✓ Cancelled: nothing was deployed to production.');
    expect(cancel.stdout).toContain('cancellation requested: Cancelled by carol: wrong branch');
    expect(cancel.stdout).toContain('Outcome: cancelled: Cancelled by carol before production changed');
    const s = await statusOf('2.0.0');
    expect(s).toMatchObject({ outcome: 'cancelled', stage: 'done' });
    expect(s.steps.find((x) => x.name === 'deployProduction')?.state).toBe('skipped');

    const h = (await ok(['history', 'hello', '2.0.0'])).stdout;
    expect(h).toMatch(/update cancel by carol \("wrong branch"\): taken: Cancelled: nothing was deployed to production\./);
    expect(h).toContain('ended cancelled');

    const twice = await cli(['cancel', 'hello', '2.0.0']);
    expect(twice.code, show(twice)).toBe(6);
    expect(twice.stderr).toContain('it has ended cancelled');
  });

  it('a step that used up its retries waits for `gantry decide`; retry after the fix runs it again and the release succeeds', async () => {
    registryDown = true;
    await ok(['start', 'hello', '3.0.0', '--config', oneApproval]);
    const waiting = await untilStage('3.0.0', 'awaiting-decision');
    expect(waiting.pendingDecision).toMatchObject({ step: 'build' });

    const human = (await ok(['status', 'hello', '3.0.0'])).stdout;
    expect(human).toContain('Decision needed: Build and push the image failed after its retries');
    expect(human).toContain('retry: gantry decide retry hello 3.0.0 --as <name>');
    expect(human).toMatch(/✗ Build and push the image\s+failed\s+2 attempts/);
    await waitFor('gantry list --stage awaiting-decision to find 3.0.0', async () => {
      const r = await ok(['list', '--stage', 'awaiting-decision', '--json']);
      return (JSON.parse(r.stdout) as { workflowId: string }[]).some((row) => row.workflowId === 'release-hello-3.0.0');
    });

    registryDown = false;
    const retry = await ok(['decide', 'retry', 'hello', '3.0.0', '--as', 'carol', '--reason', 'registry is back']);
    expect(retry.stdout).toContain('Retrying Build and push the image.');
    const again = await cli(['decide', 'retry', 'hello', '3.0.0', '--as', 'carol']);
    expect(again.code, show(again)).toBe(6);
    expect(again.stderr).toContain('no decision is pending');

    await untilStage('3.0.0', 'awaiting-approval');
    await ok(['approve', 'hello', '3.0.0', '--as', 'alice']);
    const done = await untilOutcome('3.0.0');
    expect(done.outcome).toBe('succeeded');
    expect(done.decisions).toMatchObject([{ step: 'build', decision: 'retry', operator: 'carol', reason: 'registry is back' }]);

    const status = (await ok(['status', 'hello', '3.0.0'])).stdout;
    expect(status).toMatch(/✓ Build and push the image\s+succeeded 3 attempts in 2 runs/);
    expect(status).toMatch(/retry of build by carol at .*: registry is back/);

    const h = (await ok(['history', 'hello', '3.0.0'])).stdout;
    expect(h).toMatch(/✗ Build and push the image — hello 3\.0\.0 \[build\]: failed after 2 attempts/);
    expect(h).toMatch(/failure, attempt 1: build unavailable \(fake\), attempt 1/);
    expect(h).toMatch(/failure, attempt 2: build unavailable \(fake\), attempt 2/);
    expect(h).toContain('stage → awaiting-decision');
    expect(h).toMatch(/update decide retry by carol \("registry is back"\): taken: Retrying Build and push the image\./);
    expect(h).toMatch(/✓ Build and push the image — hello 3\.0\.0 \[build\]: succeeded after 1 attempt/);
  });

  it('--dry-run prints the plan and starts nothing', async () => {
    const r = await ok(['start', 'hello', '6.0.0', '--config', twoApprovals, '--dry-run']);
    expect(r.stdout).toContain('Dry run: release hello 6.0.0: nothing was started and nothing was changed.');
    expect(r.stdout).toContain('image         127.0.0.1:5000/hello:v6.0.0');
    expect(r.stdout).toContain(`config        ${twoApprovals}@sha256:`);
    expect(r.stdout).toContain('once the gate needs 2 more approvals from alice, bob or carol');
    expect(r.stdout).toMatch(/Start it with: gantry start hello 6\.0\.0\n/);
    const json = JSON.parse((await ok(['start', 'hello', '6.0.0', '--config', twoApprovals, '--dry-run', '--json'])).stdout) as { plan: { steps: { step: string }[] } };
    expect(json.plan.steps.map((x) => x.step)).toEqual(
      ['resolve', 'preflight', 'tag', 'build', 'deployStaging', 'smoke', 'deployProduction', 'health', 'rollback', 'announce']);

    const missing = await cli(['status', 'hello', '6.0.0']);
    expect(missing.code, show(missing)).toBe(4);
    expect(missing.stderr).toContain('No release release-hello-6.0.0 in namespace default');
    const none = await ok(['list', '--json']);
    expect((JSON.parse(none.stdout) as { version: string }[]).map((row) => row.version)).not.toContain('6.0.0');
  });

  it('a release that does not exist is reported as not found (exit 4) by every command that addresses one', async () => {
    for (const args of [['status', 'hello', '9.9.9'], ['history', 'hello', '9.9.9'], ['approve', 'hello', '9.9.9', '--as', 'alice'],
      ['decide', 'abort', 'hello', '9.9.9', '--as', 'alice'], ['cancel', '--id', 'release-nope-1.0.0']]) {
      const r = await cli(args);
      expect(r.code, `${args.join(' ')}\n${show(r)}`).toBe(4);
      expect(r.stderr).toMatch(/No release release-(hello-9\.9\.9|nope-1\.0\.0) in namespace default\. Check the service and version \(`gantry list`/);
    }
  });
});

describe('the worker owns the release config', () => {
  it('a start for a service the worker\'s config does not define ends failed at the resolve step, naming the services it knows (a directory config)', async () => {
    // The worker's config for 20.x is a directory: hello.yaml and world.yaml, merged.
    const workerDir = path.join(tempDir(), 'gantry.d');
    mkdirSync(workerDir);
    writeConfig(workerDir, 'hello.yaml');
    writeConfig(workerDir, 'world.yaml', [['  hello:\n', '  world:\n']]);
    workerConfigs['20.x'] = () => workerDir;

    const r = await cli(['start', 'nope', '20.0.0']);
    expect(r.code, show(r)).toBe(14);
    expect(r.stdout).toContain('Started release nope 20.0.0');
    expect(r.stderr).toContain('The release ended at once (failed): Resolve the plan on the worker failed: ' +
      `The worker's config (${workerDir}@sha256:`);
    expect(r.stderr).toContain('defines no service "nope"; it knows hello, world.');
    expect(r.stderr).toContain('Fix the worker\'s release config and start the release again.');

    const human = await ok(['status', 'nope', '20.0.0']);
    expect(human.stdout).toContain('Release nope 20.0.0: failed');
    expect(human.stdout).toContain('config     not resolved yet');
    expect(human.stdout).toMatch(/✗ Resolve the plan on the worker\s+failed\s+1 attempt/);
    expect(human.stdout).toMatch(/- Preflight checks\s+skipped/);
    expect(human.stdout).toMatch(/Outcome: failed: Resolve the plan on the worker failed: .*defines no service "nope"; it knows hello, world\./);
    // Nothing but the resolve step ran for it.
    expect(routed.resolved).toContain('nope 20.0.0');
    expect(routed.fakes.get('20.0.0')?.calls).toEqual([]);

    // A service the directory defines resolves from it.
    const world = await ok(['start', 'world', '20.1.0']);
    expect(world.stdout).toContain(`plan     resolved on the worker from ${workerDir}@sha256:`);
    await untilStage('20.1.0', 'awaiting-approval', 30_000, 'world');
    await ok(['cancel', 'world', '20.1.0']);
  });

  it('an edited config applies to the next release without a worker restart; one that became invalid fails the next release\'s resolve step with the schema\'s message', async () => {
    // The worker's file for 21.x, and the operator's copy of it in their working directory (./gantry.yaml).
    const live = writeConfig(tempDir(), 'gantry.yaml');
    workerConfigs['21.x'] = () => live;
    const operatorDir = tempDir();
    writeConfig(operatorDir, 'gantry.yaml');
    const here = (args: string[]) => gantry(args, { env: temporalEnv, cwd: operatorDir });

    const first = await here(['start', 'hello', '21.0.0']);
    expect(first.code, show(first)).toBe(0);
    expect(first.stdout).toContain(`plan     resolved on the worker from ${live}@sha256:`);
    expect(first.stdout).toContain('(your local gantry.yaml is the same file)');
    const before = await untilStage('21.0.0', 'awaiting-approval');
    expect(before.gate.approvers).toEqual(['alice', 'bob', 'carol']);

    // Edit the worker's file while the worker runs: other approvers, two of them needed.
    writeConfig(path.dirname(live), 'gantry.yaml', [['approvers: [alice, bob, carol]', 'approvers: [dave, erin]'], ['required: 1', 'required: 2']]);
    const second = await here(['start', 'hello', '21.1.0']);
    expect(second.code, show(second)).toBe(0);
    // The operator's ./gantry.yaml is now the old file: the start says so, and runs on the worker's.
    expect(second.stdout).toMatch(/note {5}The operator's local config \(sha256 [0-9a-f]{16}\) differs from the worker's \([0-9a-f]{16}\); the release runs on the worker's\./);
    // 21.0.0 holds hello's production lane at its gate: 21.1.0 waits for it, on its own resolved plan.
    const queued = await untilStage('21.1.0', 'waiting-for-lane');
    expect(queued.gate).toMatchObject({ approvers: ['dave', 'erin'], required: 2 });
    expect(queued.input?.configSha256).not.toBe(before.input?.configSha256);
    expect((await ok(['status', 'hello', '21.1.0'])).stdout).toMatch(/lane {7}waiting for the production lane since .*: held by 21\.0\.0 since /);
    // The release already running keeps the plan it resolved.
    expect((await statusOf('21.0.0')).gate.approvers).toEqual(['alice', 'bob', 'carol']);
    await ok(['approve', 'hello', '21.0.0', '--as', 'alice']);
    expect((await untilOutcome('21.0.0')).outcome).toBe('succeeded');
    await untilStage('21.1.0', 'awaiting-approval');
    const status = (await ok(['status', 'hello', '21.1.0'])).stdout;
    expect(status).toContain('Approval gate: open, 0 of 2 approval(s); approvers dave, erin (declared)');
    expect(status).toContain('differs from the worker\'s');
    const alice = await cli(['approve', 'hello', '21.1.0', '--as', 'alice']);
    expect(alice.code, show(alice)).toBe(6);
    expect(alice.stderr).toContain('alice is not an approver for hello; approvers are dave, erin');

    // Now the file becomes invalid: the next release fails at its resolve step with the schema's message.
    writeConfig(path.dirname(live), 'gantry.yaml', [['approval: 72h', 'approval: soon']]);
    const broken = await here(['start', 'hello', '21.2.0']);
    expect(broken.code, show(broken)).toBe(14);
    expect(broken.stderr).toContain('The worker\'s release config is invalid now, so the plan cannot be resolved.');
    expect(broken.stderr).toContain(`Invalid config ${live}`);
    expect(broken.stderr).toContain('services.hello.timeouts.approval: "soon" is not a duration; write it like 30s, 5m, 2h or 3d');
    const failed = await statusOf('21.2.0');
    expect(failed).toMatchObject({ outcome: 'failed', stage: 'done' });
    expect(failed.steps.find((x) => x.name === 'resolve')).toMatchObject({ state: 'failed' });
    expect(failed.steps.filter((x) => x.name !== 'resolve').every((x) => x.state === 'skipped')).toBe(true);
    expect(failed.message).toContain('"soon" is not a duration');
    expect(routed.fakes.get('21.2.0')?.calls).toEqual([]);

    await ok(['cancel', 'hello', '21.1.0']);
  });

  it('`gantry start` says when the local --config differs from the worker\'s, and starts anyway when the local copy is invalid or missing', async () => {
    // The worker resolves 22.x from one.yaml (one approval); the operator's two.yaml asks for two.
    const r = await ok(['start', 'hello', '22.0.0', '--config', twoApprovals]);
    expect(r.stdout).toContain(`plan     resolved on the worker from ${oneApproval}@sha256:`);
    expect(r.stdout).toContain('differs from the worker\'s');
    expect(r.stdout).toContain('the release runs on the worker\'s.');
    const s = await untilStage('22.0.0', 'awaiting-approval');
    expect(s.gate.required).toBe(1);
    expect(s.configNote).toContain('differs from the worker\'s');

    const json = JSON.parse((await ok(['start', 'hello', '22.1.0', '--config', twoApprovals, '--json'])).stdout) as {
      resolved: { configSource: string } | null; configNote?: string;
    };
    expect(json.resolved?.configSource.startsWith(`${oneApproval}@sha256:`), JSON.stringify(json)).toBe(true);
    expect(json.configNote).toContain('differs from the worker\'s');

    // The local copy only serves the comparison: invalid or missing, it is reported and the start goes ahead.
    const typo = writeConfig(dir, 'typo.yaml', [['    approvals:\n', '    aprovals:\n      approvers: [alice]\n    approvals:\n']]);
    const invalid = await ok(['start', 'hello', '22.2.0', '--config', typo]);
    // Hashed before the start, validated after it because the worker's hash differs.
    expect(invalid.stderr).toContain(`your local config ${typo} is invalid (services.hello: unknown key "aprovals"`);
    expect(invalid.stderr).toContain('the release runs on the worker\'s config, which decides the plan.');
    expect(invalid.stdout).toContain(`plan     resolved on the worker from ${oneApproval}@sha256:`);
    const missing = await ok(['start', 'hello', '22.3.0', '--config', path.join(dir, 'nope.yaml')]);
    expect(missing.stderr).toContain(`your local config ${path.join(dir, 'nope.yaml')} was not found; it is not compared`);
    expect(missing.stdout).toContain('plan     resolved on the worker from');

    for (const v of ['22.0.0', '22.1.0', '22.2.0', '22.3.0']) await ok(['cancel', 'hello', v]);
  });

  it('a raw Temporal client start whose input carries a whole config (old-style) is refused: the release ends failed and no step ran', async () => {
    const handle = await env.client.workflow.start(WORKFLOW_TYPE, {
      taskQueue: TASK_QUEUE, workflowId: 'release-hello-24.0.0', args: [sampleInput({ version: '24.0.0' })],
    });
    const done = await untilOutcome('24.0.0');
    expect(done.outcome).toBe('failed');
    expect(done.message).toContain('Start refused: the start request carries a config; the worker owns the release config');
    expect(done.steps.every((x) => x.state === 'skipped')).toBe(true);
    expect(routed.resolved).not.toContain('hello 24.0.0');
    expect(routed.fakes.has('24.0.0')).toBe(false);
    expect((await handle.describe()).status.name).toBe('FAILED');

    const human = (await ok(['status', 'hello', '24.0.0'])).stdout;
    expect(human).toContain('Outcome: failed: Start refused: the start request carries a config');
    const h = (await ok(['history', 'hello', '24.0.0'])).stdout;
    expect(h).toContain('ended failed: Start refused: the start request carries a config');
    expect(h).not.toMatch(/\[(resolvePlan|preflight)\]/);
  });
});

describe('`gantry start` goes out over the HTTP API where it can: the same start as the SDK\'s, and one run whatever the answer', () => {
  /** An HTTP proxy in front of the dev server's HTTP API that records each call and can drop the answer to a start. */
  async function proxy(opts: { dropStartAnswer?: boolean } = {}) {
    const seen: { method: string; url: string; status: number | 'dropped' }[] = [];
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        void (async () => {
          const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => !['host', 'content-length', 'connection'].includes(k))) as Record<string, string>;
          const body = chunks.length ? Buffer.concat(chunks) : undefined;
          const answer = await fetch(`http://127.0.0.1:${httpPort}${req.url}`, { method: req.method!, headers, ...(body ? { body } : {}) });
          const text = Buffer.from(await answer.arrayBuffer());
          const isStart = req.method === 'POST' && /\/workflows\/[^/]+$/.test(req.url ?? '');
          if (isStart && opts.dropStartAnswer) {
            seen.push({ method: req.method!, url: req.url!, status: 'dropped' });
            req.socket.destroy();
            return;
          }
          seen.push({ method: req.method!, url: req.url!, status: answer.status });
          res.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? 'application/json' }).end(text);
        })();
      });
    });
    const port = await freePort();
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
    return { url: `http://127.0.0.1:${port}`, seen, close: () => new Promise<void>((r) => server.close(() => r())) };
  }

  /** What the server recorded of a start: its first event, the Web UI's words, the runs under the id. */
  async function started(version: string) {
    const workflowId = `release-hello-${version}`;
    const handle = env.client.workflow.getHandle(workflowId);
    const d = await handle.describe();
    const first = (await handle.fetchHistory()).events![0]!;
    const attrs = first.workflowExecutionStartedEventAttributes!;
    const decode = (p: { data?: Uint8Array | null } | null | undefined) => JSON.parse(Buffer.from(p!.data!).toString('utf8')) as unknown;
    const fields = attrs.searchAttributes?.indexedFields ?? {};
    const runs: string[] = [];
    for await (const w of env.client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) runs.push(w.runId);
    return {
      runId: d.runId,
      runs,
      type: attrs.workflowType?.name,
      taskQueue: attrs.taskQueue?.name,
      identity: attrs.identity,
      input: decode(attrs.input!.payloads![0]) as Record<string, unknown>,
      keywords: Object.fromEntries(Object.entries(fields).map(([k, p]) => [k, { value: decode(p), type: Buffer.from(p.metadata!.type!).toString() }])),
      summary: await d.staticSummary(),
      details: await d.staticDetails(),
    };
  }

  it('a start over the HTTP API records what the SDK\'s start records; with GANTRY_HTTP_API=off the SDK starts it', async () => {
    const p = await proxy();
    try {
      const overHttp = await cli(['start', 'hello', '40.0.0', '--requested-by', 'carol', '--config', oneApproval], undefined, { GANTRY_HTTP_API: p.url });
      expect(overHttp.code, show(overHttp)).toBe(0);
      expect(p.seen).toContainEqual({ method: 'POST', url: '/api/v1/namespaces/default/workflows/release-hello-40.0.0', status: 200 });
      const overGrpc = await cli(['start', 'hello', '40.1.0', '--requested-by', 'carol', '--config', oneApproval], undefined, { GANTRY_HTTP_API: 'off' });
      expect(overGrpc.code, show(overGrpc)).toBe(0);
      expect(p.seen.filter((x) => x.url.includes('40.1.0'))).toEqual([]);

      const [a, b] = [await started('40.0.0'), await started('40.1.0')];
      for (const [s, v, out] of [[a, '40.0.0', overHttp], [b, '40.1.0', overGrpc]] as const) {
        expect(out.stdout).toContain(`Started release hello ${v} requested by carol (workflow release-hello-${v}, run ${s.runId})`);
        expect(out.stdout).toContain(`(your local ${oneApproval} is the same file)`);
        expect(s.runs).toEqual([s.runId]);
        expect(s).toMatchObject({ type: WORKFLOW_TYPE, taskQueue: TASK_QUEUE, summary: `Release hello ${v} requested by carol` });
        expect(s.identity).toMatch(/^\d+@/);
        expect(s.keywords).toEqual({
          GantryService: { value: 'hello', type: 'Keyword' }, GantryVersion: { value: v, type: 'Keyword' },
          GantryStage: { value: 'planning', type: 'Keyword' }, GantryEnvironment: { value: 'none', type: 'Keyword' },
        });
        expect(s.input).toMatchObject({ service: 'hello', version: v, requestedBy: 'carol' });
        expect(typeof s.input.localConfigSha256).toBe('string');
      }
      // The same fields, and the same words in the Web UI but for the version.
      expect(Object.keys(a.input).sort()).toEqual(Object.keys(b.input).sort());
      expect(a.input.localConfigSha256).toBe(b.input.localConfigSha256);
      expect(a.details?.replaceAll('40.0.0', 'V')).toBe(b.details?.replaceAll('40.1.0', 'V'));
    } finally {
      await p.close();
    }
    for (const v of ['40.0.0', '40.1.0']) await ok(['cancel', 'hello', v]);
  });

  it('a start whose HTTP answer is lost is still one run: the SDK sends it again and the server knows its request id', async () => {
    const p = await proxy({ dropStartAnswer: true });
    try {
      const r = await cli(['start', 'hello', '40.2.0', '--requested-by', 'carol'], undefined, { GANTRY_HTTP_API: p.url });
      expect(r.code, show(r)).toBe(0);
      expect(p.seen).toContainEqual({ method: 'POST', url: '/api/v1/namespaces/default/workflows/release-hello-40.2.0', status: 'dropped' });
      const s = await started('40.2.0');
      expect(s.runs).toEqual([s.runId]);
      expect(r.stdout).toContain(`Started release hello 40.2.0 requested by carol (workflow release-hello-40.2.0, run ${s.runId})`);
      expect(r.stderr).not.toContain('already exists');

      // Another start of the running release is refused, whichever way it goes out, with the same words and exit code.
      for (const http of [p.url, 'off']) {
        const again = await cli(['start', 'hello', '40.2.0', '--requested-by', 'carol'], undefined, { GANTRY_HTTP_API: http });
        expect(again.code, show(again)).toBe(5);
        expect(again.stderr).toContain('Release hello 40.2.0 already exists');
        expect(again.stderr).toContain('gantry cancel hello 40.2.0');
      }
      expect((await started('40.2.0')).runs).toEqual([s.runId]);
    } finally {
      await p.close();
    }
    await ok(['cancel', 'hello', '40.2.0']);
  });
});

describe('`gantry approve --print` prints what `temporal workflow signal --input` sends as-is', () => {
  it('declared mode: the JSON approves', async () => {
    await ok(['start', 'hello', '1.3.0', '--config', oneApproval]);
    await untilStage('1.3.0', 'awaiting-approval');
    const printed = (await ok(['approve', 'hello', '1.3.0', '--as', 'bob', '--reason', 'looks fine', '--print'])).stdout.trim();
    expect(JSON.parse(printed)).toEqual({ approver: 'bob', reason: 'looks fine' });
    // Printing sent nothing.
    expect((await statusOf('1.3.0')).gate.approvals).toEqual([]);

    await signal('release-hello-1.3.0', 'approve', printed);
    const done = await untilOutcome('1.3.0');
    expect(done.outcome).toBe('succeeded');
    expect(done.gate.approvals).toMatchObject([{ approver: 'bob', reason: 'looks fine', via: 'signal', verified: false }]);
  });

  it('signed mode (keys by ssh-keygen, allowedSigners inline in the worker\'s config): the signed JSON approves; an unsigned one is refused', async () => {
    const keys = tempDir('gantry-keys-');
    const operator: Person = sshKeygen(keys, 'operator');
    const alice: Person = sshKeygen(keys, 'alice');
    const signed = writeConfig(dir, 'signed.yaml', [
      ['services:\n', `allowedSigners: |\n  ${operator.allowedSigner}\n  ${alice.allowedSigner}\nservices:\n`],
      ['approvers: [alice, bob, carol]', 'approvers: [alice]'],
      ['identity: declared', 'identity: signed'],
    ]);
    workerConfigs['23.x'] = () => signed;

    const start = await ok(['start', 'hello', '23.0.0', '--requested-by', 'operator', '--key', operator.keyFile]);
    expect(start.stdout).toContain('Started release hello 23.0.0 requested by operator (signed)');
    const atGate = await untilStage('23.0.0', 'awaiting-approval');
    expect(atGate.requester).toMatchObject({ principal: 'operator', verified: true, fingerprint: operator.fingerprint });
    expect(atGate.gate.identity).toBe('signed');

    // What a declared-mode approver would type does not count here.
    await signal('release-hello-23.0.0', 'approve', '{"approver":"alice"}');
    await waitFor('the unsigned signal to be refused', async () => (await statusOf('23.0.0')).gate.refused.length === 1);
    expect((await statusOf('23.0.0')).gate.refused[0]).toMatchObject({ name: 'approve', approver: 'alice', via: 'signal' });
    expect((await statusOf('23.0.0')).gate.refused[0]?.why).toContain('hello requires signed decisions, and this approve is not signed');

    // Without a key there is nothing to sign with: exit 9, saying where a key comes from; nothing is sent.
    const keyless = await gantry(['approve', 'hello', '23.0.0', '--as', 'alice', '--print'], { env: { ...temporalEnv, HOME: keys }, cwd: dir });
    expect(keyless.code, show(keyless)).toBe(9);
    expect(keyless.stderr).toContain('No signing key: pass --key FILE');

    const printed = (await ok(['approve', 'hello', '23.0.0', '--as', 'alice', '--key', alice.keyFile, '--print'])).stdout.trim();
    const message = JSON.parse(printed) as { statement: string; signature: string };
    expect(Object.keys(message).sort()).toEqual(['signature', 'statement']);
    expect(message.statement).toContain('action: approve\nworkflow: release-hello-23.0.0\n');
    expect(message.statement).toContain(`digest: ${atGate.gate.digest}`);
    expect(message.statement).toContain('principal: alice');
    expect(message.signature).toMatch(/^-----BEGIN SSH SIGNATURE-----/);

    await signal('release-hello-23.0.0', 'approve', printed);
    const done = await untilOutcome('23.0.0');
    expect(done.outcome).toBe('succeeded');
    expect(done.gate.approvals).toMatchObject([{ approver: 'alice', verified: true, fingerprint: alice.fingerprint, via: 'signal' }]);
    const human = (await ok(['status', 'hello', '23.0.0'])).stdout;
    expect(human).toContain(`started by operator (signed, key ${operator.fingerprint})`);
    expect(human).toContain(`✓ approved by alice (signed, key ${alice.fingerprint}) at `);
    expect(human).toMatch(/✓ approved by alice \(signed, .* via signal/);
  });
});

describe('governance through the CLI: group rules, freezes and break-glass, hotfixes, decide skip, environments in history', () => {
  // Service gov (30.x), signed: production needs 2 approvals, at least 1 from sre; a hotfix needs 1 from sre; sre
  // breaks glass; staging's smoke check is skippable. Its own service, so its freezes and lanes touch no hello test.
  let people: Record<'operator' | 'alice' | 'carol' | 'dave', Person>;
  const as = (who: keyof typeof people) => ['--as', who, '--key', people[who].keyFile];
  const byOperator = () => ['--requested-by', 'operator', '--key', people.operator.keyFile];

  beforeAll(() => {
    const keys = tempDir('gantry-gov-keys-');
    people = { operator: sshKeygen(keys, 'operator'), alice: sshKeygen(keys, 'alice'), carol: sshKeygen(keys, 'carol'), dave: sshKeygen(keys, 'dave') };
    const governed = writeConfig(dir, 'governed.yaml', [
      ['\nservices:\n', `\nallowedSigners: |\n${Object.values(people).map((p) => `  ${p.allowedSigner}\n`).join('')}groups:\n  sre: [carol, dave]\nservices:\n`],
      ['  hello:\n', '  gov:\n'],
      ['approvers: [alice, bob, carol]', 'approvers: [alice]'],
      ['identity: declared', 'identity: signed'],
      ['        window: 1m\n', '        window: 1m\n        gate: { required: 2, from: { sre: 1 }, approvers: [alice] }\n'],
      ['    timeouts:\n', '    breakGlass: { group: sre }\n    hotfix: { allowed: true, gate: { from: { sre: 1 } } }\n' +
        '    notices: { webhook: { env: GANTRY_TEST_UNUSED_WEBHOOK } }\n    timeouts:\n'],
      ['      deployStaging:', '      smoke: { skippable: true, retry: { maximumAttempts: 1 } }\n      deployStaging:'],
    ]);
    workerConfigs['30.x'] = () => governed;
  });

  it('start says what the group rule needs; a freeze holds the approved gate (status: environment, path, who froze it, why, until); only sre breaks glass, with a reason; history shows each environment', async () => {
    const start = await ok(['start', 'gov', '30.0.0', ...byOperator()]);
    expect(start.stdout).toContain('Started release gov 30.0.0 requested by operator (signed)');
    expect(start.stdout).toContain('needs 1 more from sre (carol or dave) and 1 more from anyone of alice, carol or dave (signed)');
    await untilStage('30.0.0', 'awaiting-approval', 30_000, 'gov');
    // The gate checks the freezes again once it has its approvals. (The worker's freeze registry reads the config
    // of the newest release resolved: gov's, now.)
    await ok(['freeze', 'gov', '--env', 'production', '--reason', 'incident 42', '--until', '2h', ...as('operator')]);
    await ok(['approve', 'gov', '30.0.0', ...as('alice')]);
    const carol = await ok(['approve', 'gov', '30.0.0', ...as('carol')]);
    expect(carol.stdout).toContain('Approved, but gov production is frozen: frozen by operator');
    expect(carol.stdout).toContain('`gantry approve gov 30.0.0 --as <name> --break-glass --reason "…"`');

    const held = (await ok(['status', 'gov', '30.0.0'])).stdout;
    expect(held).toMatch(/^ {2}stage {6}awaiting-approval · environment production$/m);
    expect(held).toMatch(/^ {2}path {7}staging: passed → production \(gated\): active$/m);
    const TIME = '\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\dZ';
    expect(held).toMatch(new RegExp(`^ {2}frozen {5}by operator since ${TIME}: incident 42 \\(until ${TIME}\\)$`, 'm'));

    const noReason = await cli(['approve', 'gov', '30.0.0', '--break-glass', ...as('dave')]);
    expect(noReason.code, show(noReason)).toBe(2);
    expect(noReason.stderr).toContain('--break-glass needs --reason "…"');
    const outsider = await cli(['approve', 'gov', '30.0.0', '--break-glass', '--reason', 'need it out', ...as('alice')]);
    expect(outsider.code, show(outsider)).toBe(6);
    expect(outsider.stderr).toContain('alice is not in the break-glass group sre (carol, dave)');
    expect((await statusOf('30.0.0', 'gov')).gate.state).toBe('open');
    const glass = await ok(['approve', 'gov', '30.0.0', '--break-glass', '--reason', 'the fix for incident 42', ...as('dave')]);
    expect(glass.stdout).toContain('Approved: production deploy starts now.');
    const done = await untilOutcome('30.0.0', 30_000, 'gov');
    expect(done.outcome).toBe('succeeded');
    expect(done.gate.breakGlass).toMatchObject([{ approver: 'dave', reason: 'the fix for incident 42', verified: true }]);
    expect(routed.fakes.get('30.0.0')?.notices.map((n) => n.kind)).toContain('break-glass');

    const h = (await ok(['history', 'gov', '30.0.0'])).stdout;
    expect(h).toMatch(/environment → staging\n(.*\n)*.*environment → production/);
    const json = JSON.parse((await ok(['history', 'gov', '30.0.0', '--json'])).stdout) as { entries: { kind: string; environment?: string }[] };
    expect(json.entries.filter((e) => e.kind === 'environment').map((e) => e.environment)).toEqual(['staging', 'production']);
    await ok(['unfreeze', 'gov', ...as('operator')]);
  }, 120_000);

  it('`start --hotfix --reason` (signed) skips staging and takes the hotfix rule; status shows the hotfix and its reason', async () => {
    const start = await ok(['start', 'gov', '30.1.0', '--hotfix', '--reason', 'CVE-2026-1', ...byOperator()]);
    expect(start.stdout).toContain('Started release gov 30.1.0 requested by operator (signed)');
    expect(start.stdout).toContain('HOTFIX   skips staging: CVE-2026-1');
    const s = await untilStage('30.1.0', 'awaiting-approval', 30_000, 'gov');
    expect(s.hotfix).toEqual({ reason: 'CVE-2026-1', skipped: ['staging'] });
    expect(s.steps.find((x) => x.name === 'deployStaging')).toMatchObject({ state: 'skipped', error: 'skipped by the hotfix: CVE-2026-1' });
    expect(routed.fakes.get('30.1.0')?.calls).toEqual(['preflight', 'tag', 'build']);
    const human = (await ok(['status', 'gov', '30.1.0'])).stdout;
    expect(human).toMatch(/^ {2}hotfix {5}skips staging: CVE-2026-1$/m);
    expect(human).toMatch(/^ {2}path {7}staging: skipped → production \(gated\): active$/m);
    expect(human).toContain('it needs 1 more from sre (carol or dave) (signed)');
  });

  it('`decide skip` passes a skippable smoke check that used up its retries; the release goes on to the gate with the skip on the record', async () => {
    await ok(['start', 'gov', '30.2.0', ...byOperator()]);
    const waiting = await untilStage('30.2.0', 'awaiting-decision', 30_000, 'gov');
    expect(waiting.pendingDecision).toMatchObject({ step: 'smoke', allowed: ['retry', 'abort', 'skip'] });
    expect((await ok(['status', 'gov', '30.2.0'])).stdout).toContain('skip:  gantry decide skip gov 30.2.0 --as <name> --reason "…"');
    const skip = await ok(['decide', 'skip', 'gov', '30.2.0', '--reason', 'staging checks are flaky today', ...as('operator')]);
    expect(skip.stdout).toContain('Skipping Smoke-check staging; the release goes on.');
    const gate = await untilStage('30.2.0', 'awaiting-approval', 30_000, 'gov');
    expect(gate.steps.find((x) => x.name === 'smoke')?.state).toBe('skipped');
    expect(gate.decisions).toMatchObject([{ step: 'smoke', decision: 'skip', operator: 'operator', reason: 'staging checks are flaky today' }]);
    expect((await ok(['status', 'gov', '30.2.0'])).stdout).toMatch(/skip of smoke by operator at .*: staging checks are flaky today/);
  });
});
