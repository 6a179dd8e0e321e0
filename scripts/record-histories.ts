/**
 * Records the event histories the replay test (test/replay/replay.test.ts) replays against the current workflow.
 *
 *   npx tsx scripts/record-histories.ts            # all scenarios
 *   npx tsx scripts/record-histories.ts happy      # only the named ones (others in the manifest are kept)
 *
 * Runs representative releases on a real dev server (the Temporal CLI from scripts/provision.sh, with gantry's
 * search attributes registered, started the way `gantry start` starts a release) and a worker with the test
 * doubles from test/helpers/fake-activities.ts, then writes each history as Temporal's JSON history format
 * (the format `temporal workflow show --output json` and the Web UI's download use) to test/histories/<name>.json,
 * plus test/histories/index.json naming each file's workflow id and scenario.
 *
 * Re-record only when the recorded behaviour should change on purpose. A change to the shipped workflow that
 * changes its commands must go behind `patched()` so that releases already running keep replaying; the old
 * histories stay checked in to prove it. The `legacy` scenarios were recorded by the workflow before the worker
 * resolved plans (their input is the whole config snapshot); they cannot be recorded again and are kept as the
 * proof that releases started by that code still replay and finish.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as pause } from 'node:timers/promises';
import { Worker } from '@temporalio/worker';
import {
  approveSignal,
  approveUpdate,
  cancelUpdate,
  decideUpdate,
  rejectSignal,
  rejectUpdate,
  releaseWorkflowId,
  startSearchAttributes,
  type ReleaseInput,
  type StartRequest,
} from '../src/shared/release';
import { STEP_NAMES } from '../src/shared/steps';
import { WORKFLOWS_PATH } from '../src/worker';
import { releaseWorkflow } from '../src/workflows';
import { fakeActivities, type FakeActivities, type FakeBehaviour } from '../test/helpers/fake-activities';
import { sampleInput, startRequestFor } from '../test/helpers/fixtures';
import { openSigner } from '../src/client/signing';
import type { PrincipalKey } from '../src/shared/gate';
import { parsePublicKey } from '../src/shared/sshsig';
import { formatStatement, type SignedStatement, type Statement } from '../src/shared/statement';
import { devServerEnv } from '../test/helpers/servers';
import { HISTORIES_DIR, historyAsJson, MANIFEST, readManifest, type RecordedHistory } from '../test/replay/histories';
import { gateOpen, latch, quietRuntime, waitForStatus, type ReleaseHandle } from '../test/workflows/harness';

/** What a scenario's drive and its fake share: whether the failing step is still broken, a held step's latch. */
interface Flags {
  broken: boolean;
  hold: ReturnType<typeof latch>;
}

interface Scenario {
  name: string;
  version: string;
  description: string;
  /** Recorded by an earlier workflow version; kept, never recorded again. */
  legacy?: boolean;
  /** Signed mode: keys for the lab-like people, the start signed by dave. */
  signed?: boolean;
  behaviour: (flags: Flags) => FakeBehaviour;
  input?: (input: ReleaseInput) => void;
  /** Fields the start request carries besides the usual (a hotfix). */
  start?: Partial<StartRequest>;
  drive: (handle: ReleaseHandle, flags: Flags, people: People) => Promise<void>;
  expectStatus: string;
}

/** Signing keys for the signed scenarios, made with ssh-keygen in a temporary directory. */
interface People {
  keys: PrincipalKey[];
  sign: (statement: Statement) => Promise<SignedStatement>;
}

async function makePeople(dir: string): Promise<People> {
  const keys: PrincipalKey[] = [];
  const files: Record<string, string> = {};
  for (const name of ['alice', 'bob', 'carol', 'dave']) {
    const file = path.join(dir, name);
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `${name}@record`, '-f', file]);
    const pub = parsePublicKey(readFileSync(`${file}.pub`, 'utf8'));
    if (!pub.ok) throw new Error(pub.problem);
    keys.push({ principal: name, key: pub.value.text, fingerprint: pub.value.fingerprint });
    files[name] = file;
  }
  return {
    keys,
    sign: async (statement) => {
      const text = formatStatement(statement);
      const signer = await openSigner({ keyFile: files[statement.principal]!, env: {} });
      return { statement: text, signature: await signer.sign(text) };
    },
  };
}

const inAMinute = (): string => new Date(Date.now() + 10 * 60_000).toISOString();

const settled = (handle: ReleaseHandle): Promise<unknown> => handle.result().catch((e: unknown) => e);

const SCENARIOS: Scenario[] = [
  {
    name: 'happy',
    legacy: true,
    version: '1.0.0',
    description: 'every step succeeds; a typo signal and a refused update at the gate, then approval by update',
    behaviour: () => ({}),
    drive: async (handle) => {
      await waitForStatus(handle, gateOpen, 'the gate to open');
      await handle.signal('aprove', { approver: 'alice' });
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'mallory' }] }).catch(() => undefined);
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice', reason: 'staging is green' }] });
      await handle.result();
    },
    expectStatus: 'COMPLETED',
  },
  {
    name: 'rejected',
    legacy: true,
    version: '1.0.1',
    description: 'rejected at the gate by signal',
    behaviour: () => ({}),
    drive: async (handle) => {
      await waitForStatus(handle, gateOpen, 'the gate to open');
      await handle.signal(rejectSignal, { approver: 'bob', reason: 'changelog is wrong' });
      await settled(handle);
    },
    expectStatus: 'FAILED',
  },
  {
    name: 'rolled-back',
    legacy: true,
    version: '1.0.2',
    description: 'approved by signal; production health fails; rollback; announced as rolled back',
    behaviour: () => ({ fail: { health: 'fatal' } }),
    drive: async (handle) => {
      await waitForStatus(handle, gateOpen, 'the gate to open');
      await handle.signal(approveSignal, { approver: 'carol' });
      await settled(handle);
    },
    expectStatus: 'FAILED',
  },
  {
    name: 'decide-retry',
    legacy: true,
    version: '1.0.3',
    description: 'tag exhausts its retries; `decide retry` by update; tag succeeds; approved; released',
    behaviour: (flags) => ({ failWhile: { tag: () => flags.broken } }),
    input: (input) => { input.steps.tag.retry.initialInterval = '50ms'; },
    drive: async (handle, flags) => {
      await waitForStatus(handle, (s) => s.pendingDecision !== undefined, 'a pending decision');
      flags.broken = false;
      await handle.executeUpdate(decideUpdate, { args: [{ decision: 'retry', operator: 'dave', reason: 'remote is back' }] });
      await waitForStatus(handle, gateOpen, 'the gate to open');
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] });
      await handle.result();
    },
    expectStatus: 'COMPLETED',
  },
  {
    name: 'approval-timeout',
    legacy: true,
    version: '1.0.4',
    description: 'nobody decides at the gate within its (shortened) timeout; aborted',
    behaviour: () => ({}),
    input: (input) => { input.config.timeouts.approval = '2s'; },
    drive: async (handle) => { await settled(handle); },
    expectStatus: 'FAILED',
  },
  {
    name: 'cancelled-in-production',
    legacy: true,
    version: '1.0.5',
    description: 'cancelled while production deploys: deploy and health finish in the non-cancellable scope',
    behaviour: (flags) => ({ holdUntil: { 'deploy:production': flags.hold.promise } }),
    drive: async (handle, flags) => {
      await waitForStatus(handle, gateOpen, 'the gate to open');
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'bob' }] });
      await waitForStatus(handle, (s) => s.stage === 'deploy-production', 'the production deploy');
      await handle.cancel();
      await waitForStatus(handle, (s) => s.cancellation.requested, 'the cancellation to be noted');
      flags.hold.open();
      await settled(handle);
    },
    expectStatus: 'CANCELLED',
  },
];

SCENARIOS.push(
  {
    name: 'signed-approved',
    version: '2.0.0',
    signed: true,
    description: 'worker resolves the plan; start signed by dave; an unsigned approve signal refused; signed approve by signal; released',
    behaviour: () => ({}),
    drive: async (handle, _flags, people) => {
      const s = await waitForStatus(handle, gateOpen, 'the gate to open');
      await handle.signal(approveSignal, { approver: 'alice' });
      const runId = (await handle.describe()).runId;
      await handle.signal(approveSignal, await people.sign({
        action: 'approve', workflow: s.workflowId, run: runId, digest: s.gate.digest!, principal: 'alice', expires: inAMinute(), reason: 'staging is green',
      }));
      await handle.result();
    },
    expectStatus: 'COMPLETED',
  },
  {
    name: 'signed-decide-cancel',
    version: '2.0.1',
    signed: true,
    description: 'build exhausts its retries; signed `decide retry` by update; at the gate a signed cancel by update; cancelled',
    behaviour: (flags) => ({ failWhile: { build: () => flags.broken } }),
    input: (input) => { input.steps.build.retry.initialInterval = '50ms'; },
    drive: async (handle, flags, people) => {
      const pending = await waitForStatus(handle, (s) => s.pendingDecision !== undefined, 'a pending decision');
      flags.broken = false;
      const runId = (await handle.describe()).runId;
      await handle.executeUpdate(decideUpdate, { args: [await people.sign({
        action: 'decide', workflow: pending.workflowId, run: runId, decision: 'retry', step: pending.pendingDecision!.id, principal: 'dave', expires: inAMinute(),
      })] });
      await waitForStatus(handle, gateOpen, 'the gate to open');
      await handle.executeUpdate(cancelUpdate, { args: [await people.sign({
        action: 'cancel', workflow: pending.workflowId, run: runId, principal: 'dave', expires: inAMinute(), reason: 'wrong day',
      })] });
      await settled(handle);
    },
    expectStatus: 'FAILED',
  },
  {
    name: 'signed-rejected',
    version: '2.0.3',
    signed: true,
    description: 'signed start; an unsigned reject refused; signed reject by update; the ending recorded in the audit log (recordEnd)',
    behaviour: () => ({}),
    drive: async (handle, _flags, people) => {
      const s = await waitForStatus(handle, gateOpen, 'the gate to open');
      await handle.signal(rejectSignal, { approver: 'bob', reason: 'unsigned' });
      const runId = (await handle.describe()).runId;
      await handle.executeUpdate(rejectUpdate, { args: [await people.sign({
        action: 'reject', workflow: s.workflowId, run: runId, digest: s.gate.digest!, principal: 'bob', expires: inAMinute(), reason: 'changelog is wrong',
      })] });
      await settled(handle);
    },
    expectStatus: 'FAILED',
  },
  {
    name: 'declared-rolled-back',
    version: '2.0.2',
    description: 'worker resolves the plan (declared mode); approved by update; production health fails; rolled back',
    behaviour: () => ({ fail: { health: 'fatal' } }),
    drive: async (handle) => {
      await waitForStatus(handle, gateOpen, 'the gate to open');
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'carol' }] });
      await settled(handle);
    },
    expectStatus: 'FAILED',
  },
  {
    name: 'governed-environments',
    version: '3.0.0',
    description: 'governance: staging → qa → production in order; qa gated (erin), production by group rule (sre 1, product 1, ' +
      'with reasons): carol by signal, erin by update; announce fails for good and is skipped by decision',
    behaviour: () => ({ fail: { announce: 'fatal' } }),
    input: (input) => {
      const c = input.config;
      input.groups = { sre: ['carol', 'dave'], product: ['erin'] };
      c.approvals.identity = 'declared';
      const staging = c.environments.staging!;
      const production = c.environments.production!;
      c.environments = {
        staging,
        qa: { ...structuredClone(staging), gate: { approvers: ['erin'], required: 1, from: {}, reasonRequired: false } },
        production: { ...production, gate: { approvers: [], required: 2, from: { sre: 1, product: 1 }, reasonRequired: true } },
      };
      c.steps.announce = { ...c.steps.announce, skippable: true };
    },
    drive: async (handle) => {
      await waitForStatus(handle, (s) => s.gate.state === 'open' && s.gate.environment === 'qa', 'the qa gate to open');
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'erin' }] });
      await waitForStatus(handle, (s) => s.gate.state === 'open' && s.gate.environment === 'production', 'the production gate to open');
      await handle.signal(approveSignal, { approver: 'carol', reason: 'qa is green' });
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'erin', reason: 'product signs off' }] });
      await waitForStatus(handle, (s) => s.pendingDecision?.step === 'announce', 'the announce decision');
      await handle.executeUpdate(decideUpdate, { args: [{ decision: 'skip', operator: 'dave', reason: 'chat is down' }] });
      await handle.result();
    },
    expectStatus: 'COMPLETED',
  },
  {
    name: 'governed-hotfix-break-glass',
    version: '3.0.1',
    description: 'governance: a hotfix skips staging; production frozen (manual freeze); approved by the hotfix rule; break-glass by dave; released',
    start: { hotfix: { reason: 'CVE-2026-1' } },
    behaviour: () => ({
      freeze: () => ({ frozen: true, freezes: [{ kind: 'manual', id: 'f1', scope: 'hello/production', by: 'alice', reason: 'incident 42', since: new Date().toISOString() }] }),
    }),
    input: (input) => {
      const c = input.config;
      input.groups = { sre: ['carol', 'dave'] };
      c.approvals.identity = 'declared';
      c.hotfix = { allowed: true, gate: { approvers: [], required: 1, from: { sre: 1 }, reasonRequired: false } };
      c.breakGlass = { group: 'sre', required: 1 };
    },
    drive: async (handle) => {
      await waitForStatus(handle, gateOpen, 'the gate to open');
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'carol' }] });
      await waitForStatus(handle, (s) => s.gate.freeze?.frozen === true && s.gate.quorum === true, 'the freeze to hold the approved gate');
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'dave', breakGlass: true, reason: 'the fix for incident 42' }] });
      await handle.result();
    },
    expectStatus: 'COMPLETED',
  },
  {
    name: 'per-channel-deliveries',
    version: '3.0.2',
    description: 'announce channel by channel (gantry-deliveries): the plan, then audit, artifacts, GitHub and the webhook as activities of their own; ' +
      'the webhook exhausts its retries; `decide retry` by update runs the audit log (for the decision) and the webhook again, not the others; released',
    behaviour: (flags) => ({ channels: ['audit', 'artifacts', 'github', 'webhook'], failChannelWhile: { webhook: () => flags.broken } }),
    input: (input) => { input.steps.announce.retry.maximumAttempts = 2; },
    drive: async (handle, flags) => {
      await waitForStatus(handle, gateOpen, 'the gate to open');
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] });
      await waitForStatus(handle, (s) => s.pendingDecision?.step === 'announce', 'the announce decision');
      flags.broken = false;
      await handle.executeUpdate(decideUpdate, { args: [{ decision: 'retry', operator: 'dave', reason: 'chat is back' }] });
      await handle.result();
    },
    expectStatus: 'COMPLETED',
  },
  {
    name: 'local-governance',
    version: '3.0.3',
    description: 'lanes and freeze checks as local activities (gantry-local-governance): staging and production lanes asked, ' +
      'production frozen when the gate opens; carol approves and the gate stays shut; a second approval after the freeze ' +
      'ended lets it through in the same workflow task; released',
    behaviour: (flags) => ({
      freeze: () => (flags.broken
        ? { frozen: true, freezes: [{ kind: 'manual', id: 'f1', scope: 'hello/production', by: 'alice', reason: 'incident 43', since: new Date().toISOString() }] }
        : { frozen: false, freezes: [] }),
    }),
    input: (input) => {
      const c = input.config;
      c.approvals.identity = 'declared';
      c.environments.production!.gate = { approvers: ['carol', 'erin'], required: 1, from: {}, reasonRequired: false };
    },
    drive: async (handle, flags) => {
      await waitForStatus(handle, gateOpen, 'the gate to open');
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'carol' }] });
      await waitForStatus(handle, (s) => s.gate.freeze?.frozen === true && s.gate.quorum === true, 'the freeze to hold the approved gate');
      flags.broken = false;
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'erin', reason: 'the freeze is over' }] });
      await handle.result();
    },
    expectStatus: 'COMPLETED',
  },
);

function previousManifest(): RecordedHistory[] {
  try {
    return readManifest();
  } catch {
    return [];
  }
}

async function main(only: string[]): Promise<void> {
  const unknown = only.filter((n) => !SCENARIOS.some((s) => s.name === n));
  if (unknown.length > 0) {
    throw new Error(`unknown scenario(s) ${unknown.join(', ')}; the scenarios are ${SCENARIOS.map((s) => s.name).join(', ')}`);
  }
  const legacy = SCENARIOS.filter((s) => s.legacy && only.includes(s.name));
  if (legacy.length > 0) {
    throw new Error(`${legacy.map((s) => s.name).join(', ')} were recorded by the workflow before the worker resolved plans and cannot be recorded again; they stay as the replay proof for releases started by that code`);
  }
  const chosen = (only.length > 0 ? SCENARIOS.filter((s) => only.includes(s.name)) : SCENARIOS).filter((s) => !s.legacy);
  const people = await makePeople(mkdtempSync(path.join(os.tmpdir(), 'gantry-record-')));
  quietRuntime();
  mkdirSync(HISTORIES_DIR, { recursive: true });
  const sdk = (JSON.parse(readFileSync(require.resolve('@temporalio/worker/package.json'), 'utf8')) as { version: string }).version;

  const env = await devServerEnv();
  const recorded: RecordedHistory[] = [];
  try {
    for (const scenario of chosen) {
      const flags: Flags = { broken: true, hold: latch() };
      const fake: FakeActivities = fakeActivities(scenario.behaviour(flags));
      const taskQueue = `record-${scenario.name}`;
      const input = sampleInput({ version: scenario.version, ...(scenario.signed ? { signedWith: people.keys, requestedBy: 'dave', operators: ['dave'] } : {}) });
      for (const name of STEP_NAMES) input.steps[name].retry.initialInterval = '200ms';
      scenario.input?.(input);
      const worker = await Worker.create({
        connection: env.nativeConnection, namespace: env.namespace ?? 'default', taskQueue, workflowsPath: WORKFLOWS_PATH,
        activities: { ...fake, resolvePlan: async () => ({ attempt: 1, input }) },
      });
      const signed = scenario.signed
        ? await people.sign({ action: 'start', workflow: releaseWorkflowId(input.service, input.version), service: input.service, version: input.version, principal: 'dave', expires: inAMinute() })
        : undefined;
      const workflowId = releaseWorkflowId(input.service, input.version);
      await worker.runUntil(async () => {
        const handle = await env.client.workflow.start(releaseWorkflow, {
          taskQueue,
          workflowId,
          args: [startRequestFor(input, { ...(signed ? { signed } : {}), ...scenario.start })],
          // As `gantry start` does: with these present the workflow keeps GantryStage current.
          typedSearchAttributes: startSearchAttributes(input),
          staticSummary: `Release ${input.service} ${input.version} (recorded scenario ${scenario.name})`,
        });
        await scenario.drive(handle, flags, people);
        const status = (await handle.describe()).status.name;
        if (status !== scenario.expectStatus) {
          throw new Error(`scenario ${scenario.name} ended ${status}, expected ${scenario.expectStatus}; not recording it`);
        }
        const history = await handle.fetchHistory();
        const file = `${scenario.name}.json`;
        writeFileSync(path.join(HISTORIES_DIR, file), `${historyAsJson(history)}\n`);
        recorded.push({ scenario: scenario.name, file, workflowId, description: scenario.description, status, recordedWith: `@temporalio/worker ${sdk}` });
        process.stdout.write(`recorded ${scenario.name}: ${history.events?.length ?? 0} events, ${status} → test/histories/${file}\n`);
      });
      await pause(0);
    }
  } finally {
    await env.teardown();
  }

  const kept = previousManifest().filter((m) => !recorded.some((r) => r.scenario === m.scenario));
  const manifest = [...kept, ...recorded].sort((a, b) =>
    SCENARIOS.findIndex((s) => s.name === a.scenario) - SCENARIOS.findIndex((s) => s.name === b.scenario));
  writeFileSync(MANIFEST, `${JSON.stringify(manifest, null, 2)}\n`);
  process.stdout.write(`wrote ${MANIFEST} (${manifest.length} histories)\n`);
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`record-histories: ${err instanceof Error ? `${err.message}${err.cause instanceof Error ? `: ${err.cause.message}` : ""}` : String(err)}\n`);
    process.exit(1);
  });
}
