/**
 * Bad input, one row per case: what an operator types (a config file, a command line, a payload pasted into the
 * Web UI's signal dialog, connection settings), the exit code docs/cli.md documents for it, the words the
 * message must hold (what went wrong and what to do), and the check that nothing was lost or left half-done.
 *
 * Everything runs through the built CLI (`node bin/gantry.js`, test/cli/harness.ts) against a real dev server:
 * config rows through `gantry worker --config`, which must refuse the file before it polls; release rows against
 * a worker running the release workflow from the built bundle with the real resolve step reading the config
 * file below from disk (steps are the harness's doubles, so each row can hold a release where it needs it);
 * signal rows through the real Temporal CLI (`temporal workflow signal`), which sends what the Web UI's dialog
 * sends. The missing-secret row runs on the lab with a real `gantry worker`: test/record/secrets-in-history.test.ts.
 */
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Worker } from '@temporalio/worker';
import type { ReleaseStatus } from '../../src/shared/release';
import { devServerEnv, requireBinary, TEMPORAL_CLI } from '../helpers/servers';
import { SAMPLE_CONFIG_YAML } from '../helpers/fixtures';
import { fakeActivities } from '../helpers/fake-activities';
import { freePort } from '../helpers/ports';
import {
  endOpenReleases, gantry, removeTempDirs, requireBuild, routedActivities, show, startWorker, tempDir, waitFor, writeConfig,
  type CliResult, type Routed,
} from './harness';

const run = promisify(execFile);

let env: TestWorkflowEnvironment;
let worker: Worker;
let workerRunning: Promise<void>;
let routed: Routed;
let dir: string;
let config: string;
let serverEnv: Record<string, string>;
/** Holds for the doubles: a row releases them when it is done. */
let releaseEarlyBuild: () => void = () => undefined;
let releaseLateDeploy: () => void = () => undefined;

/**
 * The worker's config: one service per scenario, so their releases never share a lane. `gate` needs two
 * approvals from alice, bob, carol (declared names, as typed into the Web UI); the others one.
 */
function releaseConfig(): string {
  const doc = parse(SAMPLE_CONFIG_YAML) as { services: Record<string, Record<string, unknown>> };
  const hello = doc.services.hello!;
  const copy = (required: number): Record<string, unknown> => {
    const svc = structuredClone(hello);
    (svc.approvals as { required: number }).required = required;
    return svc;
  };
  doc.services = { gate: copy(2), early: copy(1), late: copy(1), done: copy(1), broken: copy(1) };
  return stringify(doc);
}

const RELEASES = { gate: '1.0.0', early: '2.0.0', late: '3.0.0', done: '4.0.0', broken: '5.0.0' } as const;
type Service = keyof typeof RELEASES;
const idOf = (svc: Service): string => `release-${svc}-${RELEASES[svc]}`;

beforeAll(async () => {
  requireBuild();
  requireBinary(TEMPORAL_CLI, 'The Temporal CLI');
  env = await devServerEnv();
  serverEnv = { TEMPORAL_ADDRESS: env.address, TEMPORAL_NAMESPACE: 'default' };
  dir = tempDir('gantry-bad-input-');
  config = path.join(dir, 'gantry.yaml');
  writeFileSync(config, releaseConfig());
  const early = new Promise<void>((r) => (releaseEarlyBuild = r));
  const late = new Promise<void>((r) => (releaseLateDeploy = r));
  routed = routedActivities({
    config: () => config,
    behaviour: (version) => {
      switch (version) {
        case RELEASES.early: return { holdUntil: { build: early } };
        case RELEASES.late: return { holdUntil: { 'deploy:production': late } };
        case RELEASES.broken: return { fail: { build: 'retryable' } };
        default: return {};
      }
    },
  });
  // Step doubles the harness does not route yet (e.g. announce's channels): routed by the release's version too.
  const acts = routed.activities as unknown as Record<string, unknown>;
  for (const [name, fn] of Object.entries(fakeActivities())) {
    if (typeof fn !== 'function' || name in acts) continue;
    acts[name] = (req: { release: { version: string } }) =>
      (routed.fakes.get(req.release.version) as unknown as Record<string, (r: unknown) => Promise<unknown>>)[name]!(req);
  }
  ({ worker, running: workerRunning } = await startWorker(env, routed.activities));
}, 120_000);

afterAll(async () => {
  // End the held releases first: let go, they would go on to ask for lanes while the worker drains.
  if (env) await endOpenReleases(env.client);
  releaseEarlyBuild();
  releaseLateDeploy();
  worker?.shutdown();
  await workerRunning;
  await env?.teardown();
  removeTempDirs();
});

const cli = (args: string[], extraEnv: Record<string, string> = serverEnv, timeoutMs?: number): Promise<CliResult> =>
  gantry(args, { env: extraEnv, cwd: dir, ...(timeoutMs ? { timeoutMs } : {}) });

async function statusOf(svc: Service): Promise<ReleaseStatus> {
  const r = await cli(['status', svc, RELEASES[svc], '--json']);
  if (r.code !== 0) throw new Error(show(r));
  return JSON.parse(r.stdout) as ReleaseStatus;
}

function until(svc: Service, what: string, pred: (s: ReleaseStatus) => boolean, timeoutMs = 60_000): Promise<ReleaseStatus> {
  return waitFor(`${svc} ${RELEASES[svc]}: ${what}`, async () => {
    const s = await statusOf(svc);
    return pred(s) ? s : undefined;
  }, timeoutMs, 300);
}

/** The release's event types, from the server's history. */
async function eventTypes(workflowId: string): Promise<string[]> {
  const history = await env.client.workflow.getHandle(workflowId).fetchHistory();
  return (history.events ?? []).map((e) => Object.keys(e).find((k) => k.endsWith('EventAttributes')) ?? '?');
}

async function noWorkflowTaskFailed(workflowId: string): Promise<void> {
  expect(await eventTypes(workflowId)).not.toContain('workflowTaskFailedEventAttributes');
}

async function exists(workflowId: string): Promise<boolean> {
  try {
    await env.client.workflow.getHandle(workflowId).describe();
    return true;
  } catch {
    return false;
  }
}

/** What the gate looked like before a row: the row must leave it so (its refusals aside). */
interface GateSnapshot {
  stage: string;
  state: string;
  approvals: string[];
  refusedCount: number;
  runId: string;
}

async function gateSnapshot(svc: Service): Promise<GateSnapshot> {
  const s = await statusOf(svc);
  const d = await env.client.workflow.getHandle(idOf(svc)).describe();
  return { stage: s.stage, state: s.gate.state, approvals: s.gate.approvals.map((a) => a.approver), refusedCount: s.gate.refusedCount, runId: d.runId };
}

async function expectGateUnchanged(svc: Service, before: GateSnapshot): Promise<void> {
  const after = await gateSnapshot(svc);
  expect({ ...after, refusedCount: 0 }).toEqual({ ...before, refusedCount: 0 });
  await noWorkflowTaskFailed(idOf(svc));
}

// ---------------------------------------------------------------------------------------------------------------
// 1. The worker's config. Each row edits the sample config; `gantry worker --config` must refuse it at start
//    (exit 3) before it polls, pointed at the real server so that a worker that did not check would connect.
// ---------------------------------------------------------------------------------------------------------------

interface ConfigCase {
  name: string;
  /** Text replacements on the sample config (test/helpers/fixtures.ts). */
  edit: [string, string][];
  says: string[];
}

const CONFIG_CASES: ConfigCase[] = [
  { name: 'a misspelt service key', edit: [['    approvals:\n', '    aprovals:\n']],
    says: ['services.hello: unknown key "aprovals"; remove or correct it (did you mean "approvals"?'] },
  { name: 'a misspelt environment key', edit: [['window: 30s', 'windw: 30s']],
    says: ['services.hello.environments.staging: unknown key "windw"; remove or correct it (did you mean "window"?; the keys here are deploy, checks, window, failureLimit, gate)'] },
  { name: 'a misspelt top-level key', edit: [['services:', 'service:']],
    says: ['(top level): unknown key "service"; remove or correct it (did you mean "services"?'] },
  { name: 'a misspelt key inside a deploy target', edit: [['{ kind: docker, container: hello-staging,', '{ kind: docker, contaner: hello-staging,']],
    says: ['services.hello.environments.staging.deploy: unknown key "contaner"; remove or correct it (did you mean "container"?'] },
  { name: 'a key that is nothing like a known one', edit: [['      identity: declared\n', '      identity: declared\n      colour: blue\n']],
    says: ['services.hello.approvals: unknown key "colour"; remove or correct it (the keys here are approvers, required, identity, allowSelfApproval)'] },
  { name: 'two misspelt keys at once', edit: [['      identity: declared\n', '      identitiy: declared\n      allowSelfAproval: true\n']],
    says: ['services.hello.approvals: unknown keys "identitiy", "allowSelfAproval"; remove or correct them (did you mean "identity" for "identitiy"?; did you mean "allowSelfApproval" for "allowSelfAproval"?'] },
  { name: 'a word where a number is meant', edit: [['required: 1', 'required: two']],
    says: ['services.hello.approvals.required: expected a number, got the text "two"; write a number without quotes, e.g. 2'] },
  { name: 'one name where a list is meant', edit: [['approvers: [alice, bob, carol]', 'approvers: alice']],
    says: ['services.hello.approvals.approvers: expected a list, got the text "alice"; write a list, e.g. [alice]'] },
  { name: 'a quoted word where true/false is meant', edit: [['      identity: declared\n', '      identity: declared\n      allowSelfApproval: "yes"\n']],
    says: ['services.hello.approvals.allowSelfApproval: expected a boolean, got the text "yes"; write true or false, without quotes'] },
  { name: 'an unknown deploy kind', edit: [['{ kind: docker, container: hello-staging,', '{ kind: kubernetes, container: hello-staging,']],
    says: ['services.hello.environments.staging.deploy.kind: "kubernetes" is not a kind gantry knows; write one of docker | ssh'] },
  { name: 'a port mapping out of range', edit: [['ports: ["18081:80"]', 'ports: ["99999:0"]']],
    says: ['services.hello.environments.staging.deploy.ports[0]: "99999:0": the host port 99999 is out of range; use a port from 1 to 65535'] },
  // Every duration field of src/config/schema.ts: a bare number would be milliseconds, so it is refused.
  ...([
    ['environments.staging.window', 'window: 30s', 'window: 30', '30'],
    ['environments.production.window', 'window: 1m', 'window: "300"', '"300"'],
    ['timeouts.approval', 'approval: 72h', 'approval: 72', '72'],
    ['timeouts.decision', 'decision: 24h', 'decision: 24', '24'],
    ['steps.build.retry.initialInterval', 'initialInterval: 1s } }\n      deployStaging', 'initialInterval: 1 } }\n      deployStaging', '1'],
    ['steps.deployStaging.retry.maximumInterval', 'deployStaging: { retry: { maximumAttempts: 2,', 'deployStaging: { retry: { maximumInterval: 60, maximumAttempts: 2,', '60'],
    ['steps.build.startToCloseTimeout', 'build: { retry:', 'build: { startToCloseTimeout: 600, retry:', '600'],
    ['steps.build.heartbeatTimeout', 'build: { retry:', 'build: { heartbeatTimeout: 30, retry:', '30'],
    ['notices.reminderBefore', '    timeouts:\n', '    notices: { webhook: { env: NOTICES_URL }, reminderBefore: 3600 }\n    timeouts:\n', '3600'],
    ['notices.laneWaitLongerThan', '    timeouts:\n', '    notices: { webhook: { env: NOTICES_URL }, laneWaitLongerThan: 1800 }\n    timeouts:\n', '1800'],
    ['denyWindows[0].duration', '    timeouts:\n', '    denyWindows: [{ name: weekend, cron: "0 18 * * 5", duration: 62 }]\n    timeouts:\n', '62'],
    ['build.pollInterval', '    environments:\n',
      '    build: { kind: github-actions, workflow: release.yml, digestFrom: { registry: true }, pollInterval: 15 }\n' +
      '    github: { owner: acme, repo: hello, token: { env: GITHUB_TOKEN } }\n    environments:\n', '15'],
  ] as const).map(([field, from, to, shown]): ConfigCase => {
    const n = shown.replace(/"/g, '');
    return {
      name: `a bare number for ${field}`,
      edit: [[from, to]],
      says: [`services.hello.${field}: ${shown} has no unit, and a bare number would be read as ${n} millisecond`, `write the unit: ${n}s for seconds`],
    };
  }),
  { name: 'a word that is not a duration', edit: [['approval: 72h', 'approval: soon']],
    says: ['services.hello.timeouts.approval: "soon" is not a duration; write it like 30s, 5m, 2h or 3d'] },
  { name: 'a zero duration', edit: [['window: 1m', 'window: 0s']],
    says: ['services.hello.environments.production.window: "0s" is not a duration; write it like 30s, 5m, 2h or 3d'] },
  { name: 'a token inside the repository URL', edit: [['url: /srv/git/hello.git', 'url: https://ci:ghp_notreallyatoken@github.com/acme/hello.git']],
    says: ['services.hello.repo.url: the URL carries credentials (https://…@); remove them and give the secret as a reference instead'] },
  { name: 'broken YAML', edit: [['    repo:\n      url: /srv/git/hello.git', '    repo:\n      url: [/srv/git/hello.git']],
    says: ['YAML syntax:', "fix the file's indentation or quoting"] },
];

describe('1. the worker\'s config: `gantry worker --config` refuses it at start (exit 3), before it polls, and leaves the file as it was', () => {
  for (const c of CONFIG_CASES) {
    it(c.name, async () => {
      const file = writeConfig(dir, `config-${createHash('sha1').update(c.name).digest('hex').slice(0, 8)}.yaml`, c.edit);
      const before = readFileSync(file);
      const r = await cli(['worker', '--config', file], { ...serverEnv, NOTICES_URL: 'http://127.0.0.1:9/hook', GITHUB_TOKEN: 'x' });
      expect(r.code, show(r)).toBe(3);
      expect(r.stderr).toContain(`Invalid config ${file}`);
      for (const words of c.says) expect(r.stderr, show(r)).toContain(words);
      expect(r.stderr).toContain('Fix the file and run the command again.');
      // Nothing half-done: the worker never polled, and the file is byte for byte what it was.
      expect(r.stderr).not.toContain('polling');
      expect(createHash('sha256').update(readFileSync(file)).digest('hex')).toBe(createHash('sha256').update(before).digest('hex'));
    });
  }

  it('the same file, given to `gantry start --dry-run`, is refused the same way (exit 3) and starts nothing', async () => {
    const file = writeConfig(dir, 'dry-window.yaml', [['window: 30s', 'window: 30']]);
    const r = await cli(['start', 'hello', '9.0.0', '--config', file, '--dry-run']);
    expect(r.code, show(r)).toBe(3);
    expect(r.stderr).toContain('services.hello.environments.staging.window: 30 has no unit');
    expect(await exists('release-hello-9.0.0')).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// 2. Starting, voting and deciding. The releases each row needs are started here, once.
// ---------------------------------------------------------------------------------------------------------------

describe('2. releases: bad starts, votes and decisions are refused with the documented code, and the release is as it was', () => {
  beforeAll(async () => {
    // gate: at its gate, needing two approvals; requested by carol, who is also an approver.
    for (const [svc, by] of [['gate', 'carol'], ['early', 'ops'], ['late', 'ops'], ['done', 'ops'], ['broken', 'ops']] as const) {
      const r = await cli(['start', svc, RELEASES[svc], '--requested-by', by]);
      expect(r.code, show(r)).toBe(0);
    }
    await until('gate', 'at the gate', (s) => s.stage === 'awaiting-approval');
    await until('early', 'building', (s) => s.steps.some((x) => x.name === 'build' && x.state === 'running'));
    await until('broken', 'awaiting a decision on build', (s) => s.stage === 'awaiting-decision');
    await until('done', 'at the gate', (s) => s.stage === 'awaiting-approval');
    expect((await cli(['approve', 'done', RELEASES.done, '--as', 'alice'])).code).toBe(0);
    await until('done', 'succeeded', (s) => s.outcome === 'succeeded');
    await until('late', 'at the gate', (s) => s.stage === 'awaiting-approval');
    expect((await cli(['approve', 'late', RELEASES.late, '--as', 'alice'])).code).toBe(0);
    await until('late', 'deploying production', (s) => s.stage === 'deploy-production');
  }, 180_000);

  interface ReleaseCase {
    name: string;
    /** The command line after `gantry`. */
    args: string[];
    exit: number;
    says: string[];
    /** The release whose gate and run must be unchanged; or a workflow id that must not exist. */
    unchanged?: Service;
    notStarted?: string;
    /** Prepare the row (e.g. a first vote, counted) before the bad input. */
    before?: () => Promise<void>;
  }

  const RELEASE_CASES: ReleaseCase[] = [
    { name: 'a version that is not semver', args: ['start', 'gate', '1.0'], exit: 2,
      says: ['Version "1.0" is not semver; give it as MAJOR.MINOR.PATCH, e.g. 1.4.0'], notStarted: 'release-gate-1.0' },
    { name: 'a version with a leading zero', args: ['start', 'gate', '01.2.3'], exit: 2,
      says: ['Version "01.2.3" is not semver'], notStarted: 'release-gate-01.2.3' },
    { name: 'a service name that cannot be one', args: ['start', 'Gate_Service', '1.0.0'], exit: 2,
      says: ['"Gate_Service" is not a service name (lowercase letters, digits and dashes'], notStarted: 'release-Gate_Service-1.0.0' },
    { name: 'an empty --requested-by', args: ['start', 'gate', '6.0.0', '--requested-by', ' '], exit: 2,
      says: ['--requested-by is empty; give your name'], notStarted: 'release-gate-6.0.0' },
    { name: 'a duplicate: the same version already running', args: ['start', 'gate', RELEASES.gate], exit: 5,
      says: [`Release gate ${RELEASES.gate} already exists`, 'running, stage awaiting-approval', `gantry cancel gate ${RELEASES.gate}`], unchanged: 'gate' },
    { name: 'a duplicate: the same version already released', args: ['start', 'done', RELEASES.done], exit: 5,
      says: [`Release done ${RELEASES.done} already exists`, 'It succeeded and cannot run again under the same version; release a new version.'], unchanged: 'done' },
    { name: 'a vote on an unknown release', args: ['approve', 'gate', '9.9.9', '--as', 'alice'], exit: 4,
      says: ['No release release-gate-9.9.9 in namespace default', '`gantry list` shows the releases'], notStarted: 'release-gate-9.9.9' },
    { name: 'a rejection of an unknown service\'s release', args: ['reject', 'nosuch', '1.0.0', '--as', 'alice'], exit: 4,
      says: ['No release release-nosuch-1.0.0 in namespace default'], notStarted: 'release-nosuch-1.0.0' },
    { name: 'a vote before the gate opens (the build still runs)', args: ['approve', 'early', RELEASES.early, '--as', 'alice'], exit: 6,
      says: ['the approval gate is not open yet (stage build)', 'approve once staging passed its smoke checks'], unchanged: 'early' },
    { name: 'a vote after the gate closed (production is deploying)', args: ['approve', 'late', RELEASES.late, '--as', 'bob'], exit: 6,
      says: ['the approval gate is closed (approved)'], unchanged: 'late' },
    { name: 'a vote after the release ended', args: ['reject', 'done', RELEASES.done, '--as', 'bob'], exit: 6,
      says: [`Cannot reject release done ${RELEASES.done}: it has ended succeeded at`, 'to release again, start a new version'], unchanged: 'done' },
    { name: 'an approver not on the list', args: ['approve', 'gate', RELEASES.gate, '--as', 'mallory'], exit: 6,
      says: ['mallory is not an approver for gate; approvers are alice, bob, carol'], unchanged: 'gate' },
    { name: 'a rejection by someone not on the list', args: ['reject', 'gate', RELEASES.gate, '--as', 'mallory', '--reason', 'no'], exit: 6,
      says: ['mallory is not an approver for gate'], unchanged: 'gate' },
    { name: 'a self-approval (carol started the release)', args: ['approve', 'gate', RELEASES.gate, '--as', 'carol'], exit: 6,
      says: ['carol requested this release and may not approve it (four-eyes rule); ask another approver'], unchanged: 'gate' },
    { name: 'a double vote (alice approved already)', args: ['approve', 'gate', RELEASES.gate, '--as', 'alice'], exit: 6,
      says: ['alice already approved; each approver votes once'], unchanged: 'gate',
      before: async () => {
        const first = await cli(['approve', 'gate', RELEASES.gate, '--as', 'alice']);
        expect(first.code, show(first)).toBe(0);
        expect(first.stdout).toContain('1 of 2');
      } },
    { name: 'a name that is not one', args: ['approve', 'gate', RELEASES.gate, '--as', 'bob\u0007; rm -rf /'], exit: 6,
      says: ['refused to approve'], unchanged: 'gate' },
    { name: '`decide retry` with nothing pending', args: ['decide', 'retry', 'gate', RELEASES.gate, '--as', 'ops'], exit: 6,
      says: ['no decision is pending'], unchanged: 'gate' },
    { name: '`decide abort` with nothing pending', args: ['decide', 'abort', 'early', RELEASES.early, '--as', 'ops'], exit: 6,
      says: ['no decision is pending'], unchanged: 'early' },
    { name: '`decide skip` of a step that cannot be skipped', args: ['decide', 'skip', 'broken', RELEASES.broken, '--as', 'ops', '--reason', 'try'], exit: 6,
      says: ['Build and push the image cannot be skipped (only steps the config marks skippable', 'decide retry or abort'], unchanged: 'broken' },
    { name: '`decide` on an unknown release', args: ['decide', 'retry', 'gate', '7.7.7', '--as', 'ops'], exit: 4,
      says: ['No release release-gate-7.7.7 in namespace default'], notStarted: 'release-gate-7.7.7' },
    { name: 'a freeze until a bare number (2 would be read as the year 2001)', args: ['freeze', 'gate', '--reason', 'incident 42', '--until', '2', '--as', 'alice'], exit: 2,
      says: ['--until "2" has no unit; write a duration from now with its unit (2m, 2h or 2d) or a time'], unchanged: 'gate', notStarted: 'gantry-freezes' },
    { name: 'a vote valid for a bare number (30 would be read as 30 ms: expired on arrival)', args: ['approve', 'gate', RELEASES.gate, '--as', 'bob', '--valid-for', '30'], exit: 2,
      says: ['--valid-for "30" has no unit, and a bare number would be read as 30 milliseconds', 'e.g. --valid-for 15m'], unchanged: 'gate' },
    { name: 'a decision that is not one', args: ['decide', 'maybe', 'broken', RELEASES.broken, '--as', 'ops'], exit: 2,
      says: ["'maybe' is invalid for argument 'decision'. Allowed choices are retry, abort, skip."], unchanged: 'broken' },
  ];

  for (const c of RELEASE_CASES) {
    it(`${c.name}: gantry ${c.args.join(' ')} → exit ${c.exit}`, async () => {
      await c.before?.();
      const before = c.unchanged ? await gateSnapshot(c.unchanged) : undefined;
      const r = await cli(c.args);
      expect(r.code, show(r)).toBe(c.exit);
      for (const words of c.says) expect(r.stderr, show(r)).toContain(words);
      expect(r.stderr).toMatch(/^gantry: |error: /m);
      if (c.unchanged) await expectGateUnchanged(c.unchanged, before!);
      if (c.notStarted) expect(await exists(c.notStarted), `${c.notStarted} was started`).toBe(false);
    });
  }

  it('an unknown service without --wait: the start says the release ended at once, naming the services the worker knows (exit 14)', async () => {
    const r = await cli(['start', 'nosuch', '8.0.1']);
    expect(r.code, show(r)).toBe(14);
    expect(r.stderr).toContain('The release ended at once (failed)');
    expect(r.stderr).toContain('defines no service "nosuch"; it knows broken, done, early, gate, late');
    expect(routed.fakes.get('8.0.1')?.calls ?? []).toEqual([]);
  });

  it('an unknown service: the worker\'s resolve step refuses it, naming the services it knows; no step ran (exit 14 with --wait)', async () => {
    const r = await cli(['start', 'nosuch', '8.0.0', '--wait']);
    expect(r.code, show(r)).toBe(14);
    expect(`${r.stdout}${r.stderr}`).toContain('nosuch');
    expect(`${r.stdout}${r.stderr}`).toContain('defines no service "nosuch"; it knows broken, done, early, gate, late. Check the name, or add the service to the worker\'s config');
    // Nothing half-done: the resolve step ran, no other step did.
    expect(routed.resolved).toContain('nosuch 8.0.0');
    expect(routed.fakes.get('8.0.0')?.calls ?? []).toEqual([]);
    await noWorkflowTaskFailed('release-nosuch-8.0.0');
  });

  // -------------------------------------------------------------------------------------------------------------
  // 3. Malformed payloads, as an operator can type them into the Web UI's Send a Signal dialog, sent with the
  //    real Temporal CLI. The release keeps waiting at its gate, the refusal is on the record, no task fails.
  // -------------------------------------------------------------------------------------------------------------

  interface SignalCase {
    name: string;
    signal: string;
    /** What is typed into the dialog's input box; undefined: nothing at all. */
    input?: string;
    /** Sent from a file: the dialog has no length limit, but a command line has (128 KiB per argument). */
    fromFile?: boolean;
    /** Words of the refusal recorded in gate.refused. */
    why: string;
  }

  const big = JSON.stringify('x'.repeat(1024 * 1024));
  const SIGNAL_CASES: SignalCase[] = [
    { name: 'nothing at all (the input box left empty)', signal: 'approve', why: 'malformed approve: payload is nothing' },
    { name: 'null', signal: 'approve', input: 'null', why: 'malformed approve: payload is null' },
    { name: 'a number', signal: 'approve', input: '42', why: 'malformed approve: payload is a number' },
    { name: 'a string', signal: 'approve', input: '"bob"', why: 'malformed approve: payload is a string' },
    { name: 'an array', signal: 'approve', input: '[{"approver":"bob"}]', why: 'malformed approve: payload is a list; send {"approver": "<name>", "reason": "optional"}' },
    { name: 'a 1 MB string', signal: 'approve', input: big, fromFile: true, why: 'malformed approve: payload is a string' },
    { name: 'nested junk', signal: 'approve', input: '{"approver":{"name":{"first":["b","o","b"]}},"x":[[[[{}]]]]}', why: '"approver" is missing or not text' },
    { name: 'unknown fields', signal: 'approve', input: '{"approver":"bob","approve":true,"force":true}', why: 'unknown field(s) approve, force' },
    { name: 'a number for the approver', signal: 'approve', input: '{"approver":42}', why: '"approver" is missing or not text (got a number)' },
    { name: 'a number for the reason', signal: 'reject', input: '{"approver":"bob","reason":7}', why: 'malformed reject' },
    { name: 'text for breakGlass', signal: 'approve', input: '{"approver":"bob","breakGlass":"yes"}', why: '"breakGlass" must be true or false' },
    { name: 'a blank approver', signal: 'approve', input: '{"approver":"   "}', why: '"approver" is missing or not text (got blank text)' },
    { name: 'a misspelt signal name (Custom in the dialog)', signal: 'aprove', input: '{"approver":"bob"}', why: 'there is no signal named "aprove"; the signals are' },
    { name: 'a decide with junk while nothing is pending', signal: 'decide', input: '{"decision":"maybe","operator":"ops"}', why: '"decision" must be "retry", "abort" or "skip"' },
    { name: 'a cancel without an operator', signal: 'cancel', input: '{}', why: '"operator" is missing or not text' },
  ];

  for (const c of SIGNAL_CASES) {
    it(`a signal "${c.signal}" with ${c.name}: recorded as refused, the release keeps waiting at its gate`, async () => {
      const before = await gateSnapshot('gate');
      const args = ['workflow', 'signal', '--workflow-id', idOf('gate'), '--name', c.signal, '--address', env.address, '--namespace', 'default'];
      if (c.input !== undefined && c.fromFile) {
        const file = path.join(dir, 'payload.json');
        writeFileSync(file, c.input);
        args.push('--input-file', file);
      } else if (c.input !== undefined) {
        args.push('--input', c.input);
      }
      // The Temporal CLI exits 0: the server took the signal (as the Web UI says "Workflow signaled.").
      const sent = await run(TEMPORAL_CLI, args, { maxBuffer: 4 * 1024 * 1024 });
      expect(sent.stderr).toBe('');
      const after = await until('gate', `the ${c.name} refusal recorded`, (s) => s.gate.refusedCount === before.refusedCount + 1, 20_000);
      expect(after.gate.refused.at(-1)?.why, JSON.stringify(after.gate.refused.at(-1))).toContain(c.why);
      // Bounded: a refusal keeps at most 1,000 characters of why, whatever arrived.
      expect(JSON.stringify(after.gate.refused.at(-1)).length).toBeLessThan(2_000);
      await expectGateUnchanged('gate', before);
    });
  }

  // The Web UI's Update action (and `temporal workflow update execute`) reaches the same gate as `gantry approve`:
  // the update's validator refuses a malformed payload before it enters the history, and the caller gets why.
  const UPDATE_CASES: { name: string; update: string; input: string; why: string }[] = [
    { name: 'null', update: 'approve', input: 'null', why: 'malformed approve: payload is null' },
    { name: 'an array', update: 'approve', input: '["bob"]', why: 'malformed approve: payload is a list' },
    { name: 'a number for the approver', update: 'reject', input: '{"approver":42}', why: 'malformed reject' },
    { name: 'a decide with nothing pending', update: 'decide', input: '{"decision":"retry","operator":"ops"}', why: 'no decision is pending' },
  ];

  for (const c of UPDATE_CASES) {
    it(`an update "${c.update}" with ${c.name}: refused to the caller, nothing recorded`, async () => {
      const before = await gateSnapshot('gate');
      const accepted = (await eventTypes(idOf('gate'))).filter((t) => t.startsWith('workflowExecutionUpdate')).length;
      const sent = await run(TEMPORAL_CLI, ['workflow', 'update', 'execute', '--workflow-id', idOf('gate'), '--name', c.update, '--input', c.input,
        '--address', env.address, '--namespace', 'default']).then(() => ({ code: 0, stderr: '' }), (e: { code: number; stderr: string }) => e);
      expect(sent.code, sent.stderr).not.toBe(0);
      expect(sent.stderr).toContain(c.why);
      await expectGateUnchanged('gate', before);
      expect((await gateSnapshot('gate')).refusedCount).toBe(before.refusedCount);
      expect((await eventTypes(idOf('gate'))).filter((t) => t.startsWith('workflowExecutionUpdate')).length).toBe(accepted);
    });
  }

  it('after every bad row the gate still counts the one approval it had and opens for a good vote', async () => {
    const before = await gateSnapshot('gate');
    expect(before).toMatchObject({ stage: 'awaiting-approval', state: 'open', approvals: ['alice'] });
    expect(before.refusedCount).toBeGreaterThanOrEqual(SIGNAL_CASES.length);
    const bob = await cli(['approve', 'gate', RELEASES.gate, '--as', 'bob']);
    expect(bob.code, show(bob)).toBe(0);
    expect(bob.stdout).toContain('Approved: production deploy starts now.');
    const done = await until('gate', 'succeeded', (s) => s.outcome !== undefined);
    expect(done.outcome).toBe('succeeded');
    await noWorkflowTaskFailed(idOf('gate'));
  });
});

// ---------------------------------------------------------------------------------------------------------------
// 4. The server and the connection settings. A start that cannot connect starts nothing.
// ---------------------------------------------------------------------------------------------------------------

describe('4. the connection: an unreachable server exits 69, unusable TLS files exit 2 before anything is sent', () => {
  let tls: { cert: string; key: string; otherKey: string; notPem: string };
  let http: Server;
  let httpPort: number;

  beforeAll(async () => {
    const openssl = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
    openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'client.key', '-out', 'client.pem', '-days', '1', '-subj', '/CN=gantry-operator']);
    openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'other.key']);
    writeFileSync(path.join(dir, 'not-pem.pem'), 'this is a certificate, honest\n');
    tls = { cert: path.join(dir, 'client.pem'), key: path.join(dir, 'client.key'), otherKey: path.join(dir, 'other.key'), notPem: path.join(dir, 'not-pem.pem') };
    // Something that is not Temporal on a port: a plain HTTP server (the wrong port of a host).
    http = createServer((_req, res) => res.end('not temporal'));
    httpPort = await freePort();
    await new Promise<void>((r) => http.listen(httpPort, '127.0.0.1', r));
  });

  afterAll(() => new Promise<void>((r) => (http ? http.close(() => r()) : r())));

  interface ConnectionCase {
    name: string;
    env: () => Record<string, string>;
    /** Extra arguments before the command (global flags). */
    flags?: () => string[];
    exit: number;
    says: () => string[];
  }

  const CONNECTION_CASES: ConnectionCase[] = [
    { name: 'connection refused (nothing listens)', env: () => ({ TEMPORAL_ADDRESS: `127.0.0.1:${closedPort}` }), exit: 69,
      says: () => [`Cannot reach the Temporal server at 127.0.0.1:${closedPort}`, 'Nothing listens on that port (connection refused).', 'Start one with `gantry dev`, or point TEMPORAL_ADDRESS'] },
    { name: 'a wrong port (an HTTP server, not Temporal), given with --address', env: () => serverEnv, flags: () => ['--address', `127.0.0.1:${httpPort}`], exit: 69,
      says: () => [`Cannot reach the Temporal server at 127.0.0.1:${httpPort}`, 'Something answers on that port, but not as a Temporal server: check that the address is the server\'s gRPC port (7233 by default'] },
    { name: 'a client certificate file that does not exist', env: () => ({ ...serverEnv, TEMPORAL_TLS_CLIENT_CERT_PATH: path.join(dir, 'nope.pem'), TEMPORAL_TLS_CLIENT_KEY_PATH: tls.key }), exit: 2,
      says: () => [`The TLS file TEMPORAL_TLS_CLIENT_CERT_PATH=${path.join(dir, 'nope.pem')} does not exist`, 'nothing was sent to the server'] },
    { name: 'a server CA file that does not exist', env: () => ({ ...serverEnv, TEMPORAL_TLS_SERVER_CA_CERT_PATH: '/etc/gantry/no-ca.pem' }), exit: 2,
      says: () => ['The TLS file TEMPORAL_TLS_SERVER_CA_CERT_PATH=/etc/gantry/no-ca.pem does not exist'] },
    { name: 'a client certificate that is not PEM', env: () => ({ ...serverEnv, TEMPORAL_TLS_CLIENT_CERT_PATH: tls.notPem, TEMPORAL_TLS_CLIENT_KEY_PATH: tls.key }), exit: 2,
      says: () => [`The TLS client certificate TEMPORAL_TLS_CLIENT_CERT_PATH=${tls.notPem} is not a PEM certificate`] },
    { name: 'a client key that is not PEM', env: () => ({ ...serverEnv, TEMPORAL_TLS_CLIENT_CERT_PATH: tls.cert, TEMPORAL_TLS_CLIENT_KEY_PATH: tls.notPem }), exit: 2,
      says: () => [`The TLS client key TEMPORAL_TLS_CLIENT_KEY_PATH=${tls.notPem} is not an unencrypted PEM private key`] },
    { name: 'a server CA that is not PEM', env: () => ({ ...serverEnv, TEMPORAL_TLS_SERVER_CA_CERT_PATH: tls.notPem }), exit: 2,
      says: () => [`The TLS server CA certificate TEMPORAL_TLS_SERVER_CA_CERT_PATH=${tls.notPem} is not a PEM certificate`] },
    { name: 'the wrong key for the client certificate', env: () => ({ ...serverEnv, TEMPORAL_TLS_CLIENT_CERT_PATH: tls.cert, TEMPORAL_TLS_CLIENT_KEY_PATH: tls.otherKey }), exit: 2,
      says: () => [`The TLS client key TEMPORAL_TLS_CLIENT_KEY_PATH=${tls.otherKey} does not belong to the client certificate`, 'CN=gantry-operator'] },
    { name: 'a client certificate without its key', env: () => ({ ...serverEnv, TEMPORAL_TLS_CLIENT_CERT_PATH: tls.cert }), exit: 2,
      says: () => ['TEMPORAL_TLS_CLIENT_CERT_PATH is set but TEMPORAL_TLS_CLIENT_KEY_PATH is not: mTLS needs both'] },
    { name: 'TLS to a server that speaks plaintext', env: () => ({ ...serverEnv, TEMPORAL_TLS: 'true' }), exit: 69,
      says: () => [`Cannot reach the Temporal server at ${env.address}`, 'TLS is on for this connection', 'if the server speaks plaintext (a dev server), unset them'] },
  ];
  let closedPort = 0;

  for (const c of CONNECTION_CASES) {
    it(`${c.name} → exit ${c.exit}`, async () => {
      closedPort ||= await freePort();
      const version = `30.0.${CONNECTION_CASES.indexOf(c)}`;
      const r = await cli([...(c.flags?.() ?? []), 'start', 'gate', version], c.env(), 60_000);
      expect(r.code, show(r)).toBe(c.exit);
      for (const words of c.says()) expect(r.stderr, show(r)).toContain(words);
      expect(r.stderr).not.toContain('Unexpected error');
      // Nothing half-done: no release was started on the real server.
      expect(await exists(`release-gate-${version}`)).toBe(false);
    });
  }

  it('`gantry worker` with a TLS key that does not match its certificate stops before it connects (exit 2)', async () => {
    const r = await cli(['worker', '--config', config], { ...serverEnv, TEMPORAL_TLS_CLIENT_CERT_PATH: tls.cert, TEMPORAL_TLS_CLIENT_KEY_PATH: tls.otherKey });
    expect(r.code, show(r)).toBe(2);
    expect(r.stderr).toContain('does not belong to the client certificate');
    expect(r.stderr).not.toContain('polling');
  });
});
