/**
 * The freeze registry on a real dev server (its data in a file, so it can be restarted), with a real worker
 * running the registry workflow and the real freeze activities over a real config file. Freezes are signed
 * with real ed25519 keys made by ssh-keygen; forged, unauthorized, expired and unsigned ones are refused with
 * their reasons. checkFreeze sees the manual freezes and the config's deny windows at the time it is given.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode, NativeConnection, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { createFreezeActivities } from '../../src/activities/freezes';
import { fileConfigSource } from '../../src/activities/resolve';
import { freezeMessage, readFreezes, sendFreeze } from '../../src/client/freezes';
import { startDevServer, type DevServer } from '../../src/client/dev-server';
import { RefusedError } from '../../src/client/errors';
import { openSigner } from '../../src/client/signing';
import { FREEZE_REGISTRY_ID, type FreezeKind, type FreezeMessage, type FreezeScope } from '../../src/shared/freezes';
import { TASK_QUEUE } from '../../src/shared/release';
import { formatStatement } from '../../src/shared/statement';
import { SAMPLE_CONFIG_YAML } from '../helpers/fixtures';
import { freePort } from '../helpers/ports';
import { requireBinary, TEMPORAL_CLI } from '../helpers/servers';
import { sshKeygen, type Person } from '../cli/harness';
import { quietRuntime } from './harness';

quietRuntime();
const ROOT = path.resolve(__dirname, '..', '..');

let dir: string;
let scratch: string;
let bundle: WorkflowBundleWithSourceMap;
let server: DevServer;
let nativeConnection: NativeConnection;
let connection: Connection;
let client: Client;
let worker: Worker;
let running: Promise<void>;
let configFile: string;
let alice: Person; // top-level freezer
let bob: Person; // hello's operator
let carol: Person; // approver, not a freezer
let mallory: Person; // not in allowed signers
let ports: { port: number; uiPort: number };

async function startAll(): Promise<void> {
  server = await startDevServer({
    temporalCli: TEMPORAL_CLI, ip: '127.0.0.1', port: ports.port, uiPort: ports.uiPort, stateDir: path.join(dir, 'state'), namespace: 'default',
  });
  nativeConnection = await NativeConnection.connect({ address: server.address });
  connection = await Connection.connect({ address: server.address });
  client = new Client({ connection, namespace: 'default' });
  worker = await Worker.create({
    connection: nativeConnection, namespace: 'default', taskQueue: TASK_QUEUE, workflowBundle: bundle,
    activities: createFreezeActivities({ config: fileConfigSource(configFile) }),
  });
  running = worker.run();
}

async function stopAll(): Promise<void> {
  worker?.shutdown();
  await running;
  await connection?.close();
  await nativeConnection?.close();
  await server?.stop();
}

beforeAll(async () => {
  requireBinary(TEMPORAL_CLI, 'The Temporal CLI');
  dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-freezes-'));
  scratch = path.join(ROOT, '.scratch', `freezes-${randomUUID().slice(0, 8)}`);
  mkdirSync(scratch, { recursive: true });
  const entry = path.join(scratch, 'workflows.ts');
  writeFileSync(entry, "export { freezeRegistryWorkflow } from '../../src/workflows/freezes';\n");
  const noop = (): void => undefined;
  bundle = await bundleWorkflowCode({ workflowsPath: entry, logger: { log: noop, trace: noop, debug: noop, info: noop, warn: noop, error: noop } });
  [alice, bob, carol, mallory] = ['alice', 'bob', 'carol', 'mallory'].map((p) => sshKeygen(dir, p)) as [Person, Person, Person, Person];
  const signers = [alice, bob, carol].map((p) => `  ${p.allowedSigner}`).join('\n');
  const yaml = SAMPLE_CONFIG_YAML
    .replace('\nservices:\n', `\nallowedSigners: |\n${signers}\nfreezers: [alice]\n` +
      'denyWindows:\n  - { name: weekend, cron: "0 18 * * 5", duration: 62h, environments: [production], reason: nobody is around to watch }\nservices:\n')
    .replace('identity: declared', 'identity: signed')
    .replace('    timeouts:', '    operators: [bob]\n    timeouts:');
  configFile = path.join(dir, 'gantry.yaml');
  writeFileSync(configFile, yaml);
  ports = { port: await freePort(), uiPort: await freePort() };
  await startAll();
}, 180_000);

afterAll(async () => {
  await stopAll();
  if (dir) rmSync(dir, { recursive: true, force: true });
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

async function signedBy(who: Person, kind: FreezeKind, scope: FreezeScope, extra: { reason?: string; until?: string; principal?: string; expires?: string } = {}): Promise<FreezeMessage> {
  const statement = formatStatement({
    action: kind, workflow: FREEZE_REGISTRY_ID, service: scope.service, ...(scope.environment ? { environment: scope.environment } : {}),
    principal: extra.principal ?? who.principal, expires: extra.expires ?? new Date(Date.now() + 10 * 60_000).toISOString(),
    ...(extra.until ? { until: extra.until } : {}), ...(extra.reason ? { reason: extra.reason } : {}),
  });
  const signer = await openSigner({ keyFile: who.keyFile, env: {} });
  return { statement, signature: await signer.sign(statement) };
}

async function refused(kind: FreezeKind, message: FreezeMessage): Promise<string> {
  const err = await sendFreeze(client, kind, message).then(() => undefined, (e: unknown) => e);
  if (!(err instanceof RefusedError)) throw new Error(`expected a refusal, got ${err === undefined ? 'an accepted update' : err instanceof Error ? err.message : JSON.stringify(err)}`);
  return err.message;
}

const acts = () => createFreezeActivities({ config: fileConfigSource(configFile), client: () => client });
const hello = { service: 'hello', environment: 'production' };

describe('the freeze registry', () => {
  it('freezes and unfreezes a service with statements signed by a real ssh key', async () => {
    // The CLI's own message builder, with the key file.
    const msg = await freezeMessage('freeze', hello, { as: 'bob', reason: 'incident 42' }, { key: bob.keyFile, env: {} });
    const answer = await sendFreeze(client, 'freeze', msg);
    expect(answer.message).toMatch(/^hello in production is frozen until it is lifted .* by bob \(frz-\d+\): incident 42\.$/);
    expect(answer.freeze?.by).toEqual({ principal: 'bob', fingerprint: bob.fingerprint, verified: true });
    const checked = await acts().checkFreeze({ ...hello, nowMs: Date.parse('2026-03-11T12:00:00Z') });
    expect(checked.frozen).toBe(true);
    expect(checked.freezes).toEqual([expect.objectContaining({ kind: 'manual', by: 'bob', reason: 'incident 42', scope: 'hello in production' })]);
    expect(checked.until).toBeUndefined();
    expect((await acts().checkFreeze({ service: 'hello', environment: 'staging', nowMs: Date.parse('2026-03-11T12:00:00Z') })).frozen).toBe(false);
    const lifted = await sendFreeze(client, 'unfreeze', await freezeMessage('unfreeze', hello, { as: 'bob', reason: 'fixed' }, { key: bob.keyFile, env: {} }));
    expect(lifted.lifted.map((f) => f.id)).toEqual([answer.freeze!.id]);
    expect((await acts().checkFreeze({ ...hello, nowMs: Date.parse('2026-03-11T12:00:00Z') })).frozen).toBe(false);
    const view = await readFreezes(client);
    expect(view?.log.slice(-2).map((e) => `${e.action} ${e.verdict} ${e.by}`)).toEqual(['freeze accepted bob', 'unfreeze accepted bob']);
  });

  it('refuses forged, unauthorized, expired, unsigned and reasonless freezes, with the reason', async () => {
    expect(await refused('freeze', await signedBy(mallory, 'freeze', hello, { reason: 'x', principal: 'bob' })))
      .toMatch(/refused to freeze hello in production: the signed freeze is refused: signed with key SHA256:.*which is not bob's key/);
    expect(await refused('freeze', await signedBy(mallory, 'freeze', hello, { reason: 'x' }))).toMatch(/mallory has no key in the worker's allowed signers/);
    expect(await refused('freeze', await signedBy(carol, 'freeze', hello, { reason: 'x' }))).toMatch(/carol may not freeze hello in production: only bob, alice may/);
    expect(await refused('freeze', await signedBy(bob, 'freeze', hello, { reason: 'x', expires: new Date(Date.now() - 1000).toISOString() }))).toMatch(/expired at .*; sign a new one/);
    expect(await refused('freeze', { by: 'bob', service: 'hello', reason: 'x' })).toMatch(/takes only signed freezes, and this freeze is not signed\. Run `gantry freeze hello --reason "…" --as <name>`/);
    expect(await refused('freeze', await signedBy(bob, 'freeze', hello))).toMatch(/a freeze needs a reason/);
    expect(await refused('freeze', await signedBy(bob, 'freeze', { service: 'nope' }, { reason: 'x' }))).toMatch(/the worker's config has no service nope; it knows hello/);
    expect(await refused('freeze', await signedBy(bob, 'freeze', hello, { reason: 'x', until: new Date(Date.now() - 60_000).toISOString().replace(/\.\d+Z/, 'Z') })))
      .toMatch(/has passed; give an --until in the future/);
    const view = await readFreezes(client);
    expect(view?.active.filter((f) => f.service === 'hello')).toEqual([]);
    expect(view?.log.filter((e) => e.verdict === 'refused').length).toBeGreaterThanOrEqual(8);
  });

  it('lets only top-level freezers freeze every service (--all)', async () => {
    expect(await refused('freeze', await signedBy(bob, 'freeze', { service: '*' }, { reason: 'release train' })))
      .toMatch(/bob may not freeze every service: only alice may \(the top-level freezers: list/);
    const a = await sendFreeze(client, 'freeze', await signedBy(alice, 'freeze', { service: '*' }, { reason: 'company offsite' }));
    expect(a.message).toMatch(/^every service is frozen/);
    expect((await acts().checkFreeze({ service: 'hello', environment: 'staging', nowMs: Date.now() })).freezes[0]).toEqual(expect.objectContaining({ scope: 'every service', by: 'alice' }));
    // An unfreeze of hello does not lift a freeze of every service.
    expect((await sendFreeze(client, 'unfreeze', await signedBy(bob, 'unfreeze', { service: 'hello' }))).lifted).toEqual([]);
    expect((await sendFreeze(client, 'unfreeze', await signedBy(alice, 'unfreeze', { service: '*' }))).lifted.map((f) => f.id)).toEqual([a.freeze!.id]);
  });

  it('drops a freeze when its until passes', async () => {
    const until = new Date(Date.now() + 3000).toISOString();
    const f = await sendFreeze(client, 'freeze', await signedBy(bob, 'freeze', hello, { reason: 'short', until }));
    expect(f.message).toContain(`until ${until}`);
    expect((await acts().checkFreeze({ ...hello, nowMs: Date.now() })).until).toBe(until);
    await new Promise((r) => setTimeout(r, 4500));
    expect((await acts().checkFreeze({ ...hello, nowMs: Date.now() })).frozen).toBe(false);
    const view = await readFreezes(client);
    expect(view?.active).toEqual([]);
    expect(view?.log.at(-1)).toEqual(expect.objectContaining({ action: 'expired', ids: [f.freeze!.id] }));
  });

  it('keeps its freezes across a restart of the dev server', async () => {
    const f = await sendFreeze(client, 'freeze', await signedBy(alice, 'freeze', hello, { reason: 'survives restarts' }));
    await stopAll();
    await startAll();
    const view = await readFreezes(client);
    expect(view?.active.map((x) => x.id)).toEqual([f.freeze!.id]);
    expect((await acts().checkFreeze({ ...hello, nowMs: Date.now() })).freezes[0]?.reason).toBe('survives restarts');
    await sendFreeze(client, 'unfreeze', await signedBy(alice, 'unfreeze', hello));
  }, 120_000);

  it('checkFreeze sees the deny windows at the time it is given', async () => {
    const friday = Date.parse('2026-01-02T19:00:00Z');
    const c = await acts().checkFreeze({ ...hello, nowMs: friday });
    expect(c).toEqual(expect.objectContaining({
      frozen: true, until: '2026-01-05T08:00:00.000Z',
      freezes: [expect.objectContaining({ kind: 'window', id: 'weekend', reason: 'nobody is around to watch', since: '2026-01-02T18:00:00.000Z' })],
    }));
    expect((await acts().checkFreeze({ service: 'hello', environment: 'staging', nowMs: friday })).frozen).toBe(false);
    expect((await acts().checkFreeze({ ...hello, nowMs: Date.parse('2026-01-07T12:00:00Z') })).frozen).toBe(false);
  });
});
