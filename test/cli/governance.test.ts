/**
 * `gantry lanes`, `gantry freeze`, `unfreeze` and `freezes`, run as a user runs them (the built CLI in a child
 * process) against a real dev server, with a worker running the real lane and freeze registry workflows and
 * their real activities over a config file. Holders are a stand-in release workflow that answers `status`.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, Worker } from '@temporalio/worker';
import { createFreezeActivities } from '../../src/activities/freezes';
import { createLaneActivities } from '../../src/activities/lanes';
import { fileConfigSource } from '../../src/activities/resolve';
import { releaseWorkflowId, TASK_QUEUE } from '../../src/shared/release';
import { SAMPLE_CONFIG_YAML } from '../helpers/fixtures';
import { devServerEnv, requireBinary, TEMPORAL_CLI } from '../helpers/servers';
import { quietRuntime } from '../workflows/harness';
import { gantry, removeTempDirs, requireBuild, ROOT, show, sshKeygen, tempDir, type Person } from './harness';

quietRuntime();

const STAND_IN = `
import { condition, defineQuery, defineSignal, setHandler } from '@temporalio/workflow';
export { laneWorkflow } from '../../src/workflows/lane';
export { freezeRegistryWorkflow } from '../../src/workflows/freezes';
export async function laneHolderStandIn(environment: string): Promise<void> {
  const lanes = { [environment]: { state: 'waiting', since: new Date().toISOString() } };
  let done = false;
  setHandler(defineQuery('status'), () => ({ lanes }));
  setHandler(defineSignal('test-finish'), () => { done = true; });
  await condition(() => done);
}
`;

let env: TestWorkflowEnvironment;
let worker: Worker;
let running: Promise<void>;
let scratch: string;
let dir: string;
let configFile: string;
let temporalEnv: Record<string, string>;
let alice: Person;
let bob: Person;

beforeAll(async () => {
  requireBuild();
  requireBinary(TEMPORAL_CLI, 'The Temporal CLI');
  dir = tempDir('gantry-governance-');
  scratch = path.join(ROOT, '.scratch', `governance-${randomUUID().slice(0, 8)}`);
  mkdirSync(scratch, { recursive: true });
  const entry = path.join(scratch, 'workflows.ts');
  writeFileSync(entry, STAND_IN);
  alice = sshKeygen(dir, 'alice');
  bob = sshKeygen(dir, 'bob');
  configFile = path.join(dir, 'gantry.yaml');
  writeFileSync(configFile, SAMPLE_CONFIG_YAML
    .replace('\nservices:\n', `\nallowedSigners: |\n  ${alice.allowedSigner}\n  ${bob.allowedSigner}\nfreezers: [alice]\n` +
      'denyWindows:\n  - { name: always, cron: "0 0 * * *", duration: 25h, environments: [production], reason: the test window }\nservices:\n')
    .replace('approvers: [alice, bob, carol]', 'approvers: [alice, bob]')
    .replace('identity: declared', 'identity: signed')
    .replace('    timeouts:', '    operators: [bob]\n    timeouts:'));
  const noop = (): void => undefined;
  const [e, bundle] = await Promise.all([
    devServerEnv(),
    bundleWorkflowCode({ workflowsPath: entry, logger: { log: noop, trace: noop, debug: noop, info: noop, warn: noop, error: noop } }),
  ]);
  env = e;
  worker = await Worker.create({
    connection: env.nativeConnection, namespace: 'default', taskQueue: TASK_QUEUE, workflowBundle: bundle,
    activities: { ...createLaneActivities(), ...createFreezeActivities({ config: fileConfigSource(configFile) }) },
  });
  running = worker.run();
  temporalEnv = { TEMPORAL_ADDRESS: env.address, TEMPORAL_NAMESPACE: 'default' };
}, 180_000);

afterAll(async () => {
  worker?.shutdown();
  await running;
  await env?.teardown();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
  removeTempDirs();
});

describe('gantry lanes', () => {
  it('says which release holds each lane, since when, and who waits', async () => {
    const svc = `gov-${randomUUID().slice(0, 6)}`;
    const acts = createLaneActivities({ client: () => env.client });
    const handles = [];
    for (const version of ['1.4.0', '1.5.0']) {
      const h = await env.client.workflow.start('laneHolderStandIn', { taskQueue: TASK_QUEUE, workflowId: releaseWorkflowId(svc, version), args: ['production'] });
      handles.push(h);
      await acts.laneEnqueue({ service: svc, environment: 'production', workflowId: h.workflowId, runId: h.firstExecutionRunId, version });
    }
    let r = await gantry(['lanes', svc], { env: temporalEnv });
    for (let i = 0; i < 20 && !r.stdout.includes('held by'); i++) {
      await new Promise((res) => setTimeout(res, 500)); // visibility catches up within a second or so
      r = await gantry(['lanes', svc], { env: temporalEnv });
    }
    expect(r.code, show(r)).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^${svc}/production: held by 1\\.4\\.0 since \\d\\d:\\d\\dZ \\(\\d+ s\\); waiting: 1\\.5\\.0 \\(since \\d\\d:\\d\\dZ\\)$`, 'm'));
    const j = await gantry(['lanes', svc, '--json'], { env: temporalEnv });
    expect(JSON.parse(j.stdout)[0]).toEqual(expect.objectContaining({ service: svc, environment: 'production', holder: expect.objectContaining({ version: '1.4.0' }) }));
    const none = await gantry(['lanes', 'nothing-here'], { env: temporalEnv });
    expect(none.stdout).toContain('No lane of nothing-here is running');
    await Promise.all(handles.map((h) => h.signal('test-finish')));
  });
});

describe('gantry freeze, unfreeze and freezes', () => {
  it('freezes signed with a key, lists it with the open deny windows, and unfreezes', async () => {
    const f = await gantry(['freeze', 'hello', '--env', 'production', '--reason', 'incident 42', '--until', '2h', '--as', 'bob', '--key', bob.keyFile], { env: temporalEnv });
    expect(f.code, show(f)).toBe(0);
    expect(f.stdout).toMatch(/✓ hello in production is frozen until .* by bob \(frz-\d+\): incident 42\./);
    const l = await gantry(['freezes', '--config', configFile], { env: temporalEnv });
    expect(l.code, show(l)).toBe(0);
    expect(l.stdout).toMatch(/^hello in production: frozen by bob since .* until .*\(1h5\dm left\) \[frz-\d+\]: incident 42$/m);
    expect(l.stdout).toMatch(/^hello in production: deny window always until .*: the test window$/m);
    const u = await gantry(['unfreeze', 'hello', '--as', 'bob', '--key', bob.keyFile], { env: temporalEnv });
    expect(u.code, show(u)).toBe(0);
    expect(u.stdout).toMatch(/Lifted 1 freeze\(s\) of hello/);
    expect((await gantry(['freezes'], { env: temporalEnv })).stdout).toContain('No freeze is in force.');
  });

  it('refuses --all by someone who is not a top-level freezer, with exit 6 and the reason', async () => {
    const r = await gantry(['freeze', '--all', '--reason', 'offsite', '--as', 'bob', '--key', bob.keyFile], { env: temporalEnv });
    expect(r.code, show(r)).toBe(6);
    expect(r.stderr).toMatch(/The freeze registry refused to freeze every service: bob may not freeze every service: only alice may/);
    const p = await gantry(['freeze', '--all', '--reason', 'offsite', '--as', 'alice', '--key', alice.keyFile, '--print'], { env: temporalEnv });
    expect(p.code, show(p)).toBe(0);
    expect(JSON.parse(p.stdout).statement).toMatch(/^gantry-statement v1\naction: freeze\nworkflow: gantry-freezes\nservice: \*\n/);
    const usage = await gantry(['freeze', '--reason', 'x', '--as', 'bob'], { env: temporalEnv });
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('Say what to freeze');
  });

  it('refuses a freeze of an environment without a gate (exit 6, nothing frozen), since no release would check it; unfreezing there still works', async () => {
    const r = await gantry(['freeze', 'hello', '--env', 'staging', '--reason', 'incident 43', '--as', 'bob', '--key', bob.keyFile], { env: temporalEnv });
    expect(r.code, show(r)).toBe(6);
    expect(r.stderr).toContain('The freeze registry refused to freeze hello in staging: staging has no approval gate, so a freeze there would hold nothing ' +
      '(releases check freezes at their gates); freeze production (`gantry freeze hello --env production`), or give staging a gate in the worker\'s config ' +
      '(services.hello.environments.staging.gate)');
    const all = await gantry(['freeze', '--all', '--env', 'staging', '--reason', 'offsite', '--as', 'alice', '--key', alice.keyFile], { env: temporalEnv });
    expect(all.code, show(all)).toBe(6);
    expect(all.stderr).toContain('no service has an approval gate at staging, so a freeze there would hold nothing');
    const listed = await gantry(['freezes', '--json'], { env: temporalEnv });
    expect(JSON.parse(listed.stdout).freezes, show(listed)).toEqual([]);
    const u = await gantry(['unfreeze', 'hello', '--env', 'staging', '--as', 'bob', '--key', bob.keyFile], { env: temporalEnv });
    expect(u.code, show(u)).toBe(0);
    expect(u.stdout).toContain('hello in staging had no freeze of its own to lift; nothing changed.');
  });
});
