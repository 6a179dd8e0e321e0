/**
 * The gate in signed mode (approvals.identity: signed), with real ed25519 keys made by ssh-keygen: statements
 * signed by gantry's signer (openSigner) and by `ssh-keygen -Y sign -n gantry`, checked by the workflow against
 * the allowed signers. Every forged, expired, replayed, unsigned or otherwise wrong message is refused with its
 * reason and never counts; each release is then finished with valid signed messages.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { openSigner, type StatementSigner } from '../../src/client/signing';
import { ReleaseEndType } from '../../src/shared/errors';
import type { PrincipalKey } from '../../src/shared/gate';
import {
  approveSignal,
  approveUpdate,
  cancelUpdate,
  decideSignal,
  decideUpdate,
  rejectUpdate,
  releaseWorkflowId,
  statusQuery,
  type ReleaseInput,
  type ReleaseStatus,
  type StartRequest,
} from '../../src/shared/release';
import { formatStatement, type SignedStatement, type Statement } from '../../src/shared/statement';
import { parseAllowedSigners } from '../../src/shared/sshsig';
import { fakeActivities, type FakeBehaviour } from '../helpers/fake-activities';
import { startRequestFor } from '../helpers/fixtures';
import { timeSkippingEnv } from '../helpers/servers';
import {
  BEFORE_GATE,
  bundleReleaseWorkflow,
  expectFailure,
  expectUpdateRefused,
  gateOpen,
  stepOf,
  testInput,
  uniqueVersion,
  waitForStatus,
  withRelease,
  type ReleaseHandle,
} from './harness';

let env: TestWorkflowEnvironment;
let bundle: WorkflowBundleWithSourceMap;
let root: string;

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
/** The digest the fake build reports: what the gate shows and signed votes name. */
const DIGEST = `sha256:${'b'.repeat(64)}`;

interface Person {
  name: string;
  priv: string;
  /** "ssh-ed25519 AAAA…" */
  line: string;
  /** As `ssh-keygen -l -E sha256` prints it. */
  fingerprint: string;
  signer: StatementSigner;
}

function must(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.error) throw new Error(`${cmd} could not run (${r.error.message}); these tests need openssh-client (ssh-keygen)`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

async function person(name: string): Promise<Person> {
  const priv = path.join(root, name);
  must('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `${name}@laptop`, '-f', priv]);
  const line = readFileSync(`${priv}.pub`, 'utf8').trim().split(' ').slice(0, 2).join(' ');
  const fingerprint = must('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${priv}.pub`]).split(' ')[1]!;
  // No agent: sign with the key file only.
  return { name, priv, line, fingerprint, signer: await openSigner({ keyFile: priv, env: {} }) };
}

/** The worker's keys, read the way the config loader reads allowedSigners (one principal per key here). */
function allowedKeys(text: string): PrincipalKey[] {
  const parsed = parseAllowedSigners(text);
  if (parsed.problems.length > 0) throw new Error(`allowed signers: ${parsed.problems.join('; ')}`);
  return parsed.signers.flatMap((s) => s.principals.map((principal) => ({ principal, key: s.key.text, fingerprint: s.key.fingerprint })));
}

let alice: Person;
let bob: Person;
let carol: Person;
let dave: Person;
/** Has a key, but not one the worker allows. */
let mallory: Person;
let keys: PrincipalKey[];

beforeAll(async () => {
  root = mkdtempSync(path.join(os.tmpdir(), 'gantry-signed-gate-'));
  [env, bundle] = await Promise.all([timeSkippingEnv(), bundleReleaseWorkflow()]);
  [alice, bob, carol, dave, mallory] = await Promise.all(['alice', 'bob', 'carol', 'dave', 'mallory'].map(person)) as [Person, Person, Person, Person, Person];
  keys = allowedKeys([alice, bob, carol, dave].map((p) => `${p.name} ${p.line} ${p.name}@laptop`).join('\n'));
});

afterAll(async () => {
  await env?.teardown();
  if (root) rmSync(root, { recursive: true, force: true });
});

// ---- statements ----

/** Workflow time: the time-skipping server's clock, which runs ahead of the wall clock once it skipped. */
const now = (): Promise<number> => env.currentTimeMs();
const inFromNow = async (ms: number): Promise<string> => new Date((await now()) + ms).toISOString();

async function signed(who: Person, s: Statement): Promise<SignedStatement> {
  const statement = formatStatement(s);
  return { statement, signature: await who.signer.sign(statement) };
}

let sigFiles = 0;
/** Signed by OpenSSH itself: `ssh-keygen -Y sign -f key -n gantry file` writes file.sig. */
function sshKeygenSigned(who: Person, s: Statement): SignedStatement {
  const statement = formatStatement(s);
  const file = path.join(root, `statement-${++sigFiles}`);
  writeFileSync(file, statement);
  must('ssh-keygen', ['-Y', 'sign', '-f', who.priv, '-n', 'gantry', file]);
  return { statement, signature: readFileSync(`${file}.sig`, 'utf8') };
}

const workflowOf = (input: ReleaseInput): string => releaseWorkflowId(input.service, input.version);

/** The release's run id, as `gantry` reads it before signing (workflowInfo().runId in the workflow). */
async function runOf(handle: ReleaseHandle): Promise<string> {
  return (await handle.describe()).runId;
}

async function startStatement(who: Person, input: ReleaseInput, over: Partial<Statement> = {}): Promise<Statement> {
  return { action: 'start', workflow: workflowOf(input), service: input.service, version: input.version, principal: who.name, expires: await inFromNow(15 * MINUTE), ...over };
}

/** The start request `gantry start` sends when the person signs it. */
async function signedStart(who: Person, input: ReleaseInput, over: Partial<Statement> = {}): Promise<StartRequest> {
  return startRequestFor(input, { requestedBy: who.name, signed: await signed(who, await startStatement(who, input, over)) });
}

async function voteStatement(kind: 'approve' | 'reject', who: Person, handle: ReleaseHandle, over: Partial<Statement> = {}): Promise<Statement> {
  return {
    action: kind, workflow: handle.workflowId, run: await runOf(handle), digest: DIGEST, principal: who.name,
    expires: await inFromNow(15 * MINUTE), ...over,
  };
}

async function vote(who: Person, handle: ReleaseHandle, over: Partial<Statement> = {}, kind: 'approve' | 'reject' = 'approve'): Promise<SignedStatement> {
  return signed(who, await voteStatement(kind, who, handle, over));
}

async function decision(who: Person, handle: ReleaseHandle, d: 'retry' | 'abort', step: string, over: Partial<Statement> = {}): Promise<SignedStatement> {
  return signed(who, {
    action: 'decide', workflow: handle.workflowId, run: await runOf(handle), decision: d, step, principal: who.name,
    expires: await inFromNow(15 * MINUTE), ...over,
  });
}

async function cancellation(who: Person, handle: ReleaseHandle, reason?: string): Promise<SignedStatement> {
  return signed(who, {
    action: 'cancel', workflow: handle.workflowId, run: await runOf(handle), principal: who.name,
    expires: await inFromNow(15 * MINUTE), ...(reason ? { reason } : {}),
  });
}

// ---- releases ----

/** A signed-mode release: approvers alice, bob, carol; dave the only operator, and the one who starts it. */
function signedInput(o: Parameters<typeof testInput>[0] = {}): ReleaseInput {
  return testInput({ signedWith: keys, operators: ['dave'], requestedBy: 'dave', ...o });
}

/** Run a release started with dave's signed start (or `start`), waiting at the gate before `body`. */
async function atTheGate(
  body: (handle: ReleaseHandle, open: ReleaseStatus, input: ReleaseInput) => Promise<void>,
  o: { input?: ReleaseInput; fake?: FakeBehaviour; starter?: Person } = {},
): Promise<void> {
  const input = o.input ?? signedInput();
  const fake = fakeActivities(o.fake);
  const start = await signedStart(o.starter ?? dave, input);
  await withRelease(env, bundle, fake, input, async ({ handle }) => {
    const open = await waitForStatus(handle, gateOpen, 'the approval gate to open');
    expect(open.gate.digest).toBe(DIGEST);
    await body(handle, open, input);
  }, start);
}

/**
 * The same message as an update (refused with `why`) and as a signal (recorded as refused with `why`): either
 * way the vote does not count, and the release keeps waiting at the gate.
 */
async function expectVoteRefused(handle: ReleaseHandle, payload: unknown, why: string, o: { kind?: 'approve' | 'reject'; claimed?: string } = {}): Promise<ReleaseStatus> {
  const kind = o.kind ?? 'approve';
  const before = await handle.query(statusQuery);
  expect(await expectUpdateRefused(handle.executeUpdate(kind === 'approve' ? approveUpdate : rejectUpdate, { args: [payload as SignedStatement] }))).toBe(why);
  await handle.signal(kind === 'approve' ? approveSignal : 'reject', payload);
  const after = await waitForStatus(handle, (s) => s.gate.refusedCount === before.gate.refusedCount + 1, 'the refused signal to be recorded');
  expect(after.gate.refused.at(-1)).toEqual({ name: kind, via: 'signal', at: expect.any(String), why, ...(o.claimed ? { approver: o.claimed } : {}) });
  expect(after.gate.approvals).toEqual(before.gate.approvals);
  expect(after.gate.rejection).toBeUndefined();
  expect(after.gate.state).toBe('open');
  expect(after.stage).toBe('awaiting-approval');
  expect(after.outcome).toBeUndefined();
  return after;
}

async function approveAndFinish(handle: ReleaseHandle, ...who: Person[]): Promise<ReleaseStatus> {
  for (const p of who) await handle.executeUpdate(approveUpdate, { args: [await vote(p, handle)] });
  const result = await handle.result();
  expect(result.outcome).toBe('succeeded');
  expect(result.gate.approvals.map((v) => [v.approver, v.verified, v.fingerprint])).toEqual(who.map((p) => [p.name, true, p.fingerprint]));
  return result;
}

describe('a signed start', () => {
  it('by an operator is accepted, and status names the requester as verified with the key fingerprint', async () => {
    const input = signedInput();
    const fake = fakeActivities();
    // Signed by OpenSSH's ssh-keygen, as an operator without gantry's CLI at hand would.
    const start = startRequestFor(input, { requestedBy: 'dave', signed: sshKeygenSigned(dave, await startStatement(dave, input)) });
    await withRelease(env, bundle, fake, input, async ({ handle }) => {
      const open = await waitForStatus(handle, gateOpen, 'the approval gate to open');
      expect(open.requester).toEqual({ principal: 'dave', verified: true, fingerprint: dave.fingerprint });
      expect(open.request.requestedBy).toBe('dave');
      expect(open.gate.identity).toBe('signed');
      expect(open.gate.needs).toBe('needs 1 more approval from alice, bob or carol (signed)');
      expect(open.message).toContain(`gantry approve ${input.service} ${input.version} --as <name> [--key ~/.ssh/id_ed25519]`);
      expect(fake.calls).toEqual(BEFORE_GATE);
      const result = await approveAndFinish(handle, alice);
      expect(result.requester).toEqual({ principal: 'dave', verified: true, fingerprint: dave.fingerprint });
    }, start);
  });

  it('is required: an unsigned start in signed mode ends the release failed before preflight runs', async () => {
    const input = signedInput();
    const fake = fakeActivities();
    await withRelease(env, bundle, fake, input, async ({ handle }) => {
      const failure = await expectFailure(handle);
      expect(failure.type).toBe(ReleaseEndType.Failed);
      expect(failure.message).toBe(`Start refused: hello requires signed decisions and the start was not signed. ` +
        `Start it with \`gantry start hello ${input.version}\` and your SSH key (--key or ssh-agent). Nothing was changed.`);
      const status = await handle.query(statusQuery);
      expect(status.outcome).toBe('failed');
      expect(status.requester).toEqual({ principal: 'dave', verified: false });
      expect(stepOf(status, 'resolve').state).toBe('succeeded');
      expect(stepOf(status, 'preflight')).toMatchObject({ state: 'skipped', runs: 0 });
      expect(status.gate.approvals).toEqual([]);
      expect(fake.calls).toEqual([]);
    }, startRequestFor(input, { requestedBy: 'dave' }));
  });

  it('by someone who is not an operator is refused, though they have an allowed key', async () => {
    const input = signedInput();
    const fake = fakeActivities();
    await withRelease(env, bundle, fake, input, async ({ handle }) => {
      const failure = await expectFailure(handle);
      expect(failure.type).toBe(ReleaseEndType.Failed);
      expect(failure.message).toBe('Start refused: alice may not start this release; operators are dave. Nothing was changed.');
      expect(fake.calls).toEqual([]);
    }, await signedStart(alice, input));
  });

  it('signed for another version is refused as a replay', async () => {
    const input = signedInput();
    const other = uniqueVersion();
    const fake = fakeActivities();
    const replayed = await signedStart(dave, input, { workflow: releaseWorkflowId('hello', other), version: other });
    await withRelease(env, bundle, fake, input, async ({ handle }) => {
      const failure = await expectFailure(handle);
      expect(failure.message).toBe(`Start refused: the statement is for release release-hello-${other}, not ${workflowOf(input)} ` +
        '(replayed from another release?). Nothing was changed.');
      expect(fake.calls).toEqual([]);
    }, replayed);
  });

  it('naming this release but another version is refused', async () => {
    const input = signedInput();
    const fake = fakeActivities();
    await withRelease(env, bundle, fake, input, async ({ handle }) => {
      const failure = await expectFailure(handle);
      expect(failure.message).toBe(`Start refused: the statement names version 9.9.9, but this release has ${input.version} ` +
        '(signed for another version?). Nothing was changed.');
      expect(fake.calls).toEqual([]);
    }, await signedStart(dave, input, { version: '9.9.9' }));
  });
});

describe('a signed approval', () => {
  it('counts, recorded as verified with the key fingerprint, whether signed by gantry or by ssh-keygen', async () => {
    await atTheGate(async (handle) => {
      const first = await handle.executeUpdate(approveUpdate, { args: [await vote(alice, handle, { reason: 'staging looks good' })] });
      expect(first).toEqual({ gate: 'open', approvals: 1, required: 2, message: expect.stringContaining('Approval by alice recorded: 1 of 2') });
      const s = await handle.query(statusQuery);
      expect(s.gate.approvals).toEqual([
        {
          approver: 'alice', verified: true, fingerprint: alice.fingerprint, reason: 'staging looks good', at: expect.any(String), via: 'update',
          // The statement as signed, kept for the signed release manifest.
          statement: expect.stringContaining('action: approve\n'), signature: expect.stringContaining('-----BEGIN SSH SIGNATURE-----'),
        },
      ]);
      expect(s.gate.needs).toBe('needs 1 more approval from bob or carol (signed)');
      // bob signs with OpenSSH and pastes the JSON into the Web UI's signal dialog.
      await handle.signal(approveSignal, sshKeygenSigned(bob, await voteStatement('approve', bob, handle)));
      const result = await handle.result();
      expect(result.outcome).toBe('succeeded');
      expect(result.gate.approvals.map((v) => [v.approver, v.verified, v.fingerprint, v.via])).toEqual([
        ['alice', true, alice.fingerprint, 'update'],
        ['bob', true, bob.fingerprint, 'signal'],
      ]);
      expect(result.gate.refusedCount).toBe(0);
    }, { input: signedInput({ required: 2 }) });
  });

  it('is refused when the statement text was altered after signing', async () => {
    await atTheGate(async (handle) => {
      const good = await vote(alice, handle, { reason: 'staging looks good' });
      const altered = { ...good, statement: good.statement.replace('reason: staging looks good', 'reason: skip the health checks') };
      expect(altered.statement).not.toBe(good.statement);
      await expectVoteRefused(handle, altered, `signed approve refused: the signature does not verify: the signature by key ${alice.fingerprint} ` +
        'does not match the message (changed, or signed by another key)', { claimed: 'alice' });
      await approveAndFinish(handle, alice);
    });
  });

  it('is refused when signed by a key the worker does not allow, presented as alice', async () => {
    await atTheGate(async (handle) => {
      const forged = await signed(mallory, await voteStatement('approve', alice, handle));
      await expectVoteRefused(handle, forged, `signed approve refused: signed with key ${mallory.fingerprint}, which is not alice's key ` +
        "in the worker's allowed signers (forged, or the wrong --key)", { claimed: 'alice' });
      await approveAndFinish(handle, bob);
    });
  });

  it('is refused once expired', async () => {
    await atTheGate(async (handle) => {
      const expires = await inFromNow(-MINUTE);
      const statement = formatStatement(await voteStatement('approve', alice, handle, { expires }));
      const stale = { statement, signature: await alice.signer.sign(statement) };
      await expectVoteRefused(handle, stale, `signed approve refused: the statement expired at ${expires}; sign a new one`, { claimed: 'alice' });
      await approveAndFinish(handle, alice);
    });
  });

  it('is refused when it claims to be valid for more than 24 hours', async () => {
    await atTheGate(async (handle) => {
      const expires = await inFromNow(24 * HOUR + 10 * MINUTE);
      await expectVoteRefused(handle, await vote(alice, handle, { expires }),
        `signed approve refused: the statement is valid until ${expires}, more than 24 hours ahead; sign one that expires sooner`, { claimed: 'alice' });
      await approveAndFinish(handle, alice);
    });
  });

  it('is refused when replayed from another release', async () => {
    await atTheGate(async (handle) => {
      const elsewhere = releaseWorkflowId('hello', uniqueVersion());
      await expectVoteRefused(handle, await vote(alice, handle, { workflow: elsewhere }),
        `signed approve refused: the statement is for release ${elsewhere}, not ${handle.workflowId} (replayed from another release?)`, { claimed: 'alice' });
      await approveAndFinish(handle, alice);
    });
  });

  it('is refused when replayed onto another run of the same release', async () => {
    await atTheGate(async (handle) => {
      const otherRun = '0195c2c4-0000-7000-8000-000000000000';
      await expectVoteRefused(handle, await vote(alice, handle, { run: otherRun }),
        `signed approve refused: the statement names run ${otherRun}, but this release has ${await runOf(handle)} (signed for another run?)`, { claimed: 'alice' });
      await approveAndFinish(handle, alice);
    });
  });

  it('is refused when it names another image digest than the one at the gate', async () => {
    await atTheGate(async (handle) => {
      const other = `sha256:${'c'.repeat(64)}`;
      await expectVoteRefused(handle, await vote(alice, handle, { digest: other }),
        `signed approve refused: the statement names image digest ${other}, but this release has ${DIGEST} (signed for another image?)`, { claimed: 'alice' });
      await approveAndFinish(handle, alice);
    });
  });

  it('is required: an unsigned approve in signed mode is refused with the instruction to sign it or use --print', async () => {
    await atTheGate(async (handle, _open, input) => {
      await expectVoteRefused(handle, { approver: 'alice' },
        `hello requires signed decisions, and this approve is not signed, so it does not count. Run \`gantry approve hello ${input.version} --as <name>\` ` +
        "with your SSH key, or paste the JSON that the same command prints with --print into the Web UI's signal dialog", { claimed: 'alice' });
      await approveAndFinish(handle, alice);
    });
  });

  it('by the requester of the release is refused (four-eyes rule)', async () => {
    const input = signedInput({ operators: ['dave', 'alice'], requestedBy: 'alice' });
    await atTheGate(async (handle, open) => {
      expect(open.requester).toEqual({ principal: 'alice', verified: true, fingerprint: alice.fingerprint });
      expect(open.gate.needs).toBe('needs 1 more approval from bob or carol (signed)'); // not from alice, who asked for it
      await expectVoteRefused(handle, await vote(alice, handle),
        "alice requested this release and may not approve it (four-eyes rule); ask another approver, or set approvals.allowSelfApproval: true in the worker's config",
        { claimed: 'alice' });
      await approveAndFinish(handle, bob);
    }, { input, starter: alice });
  });

  it('by the requester counts when the config allows self-approval', async () => {
    const input = signedInput({ operators: ['dave', 'alice'], requestedBy: 'alice', allowSelfApproval: true });
    await atTheGate(async (handle) => {
      await approveAndFinish(handle, alice);
    }, { input, starter: alice });
  });

  it('by a second name on the same key is refused: the quorum counts distinct keys, not names', async () => {
    // alice and bob listed with one public key (allowed_signers "alice,bob <key>"); two approvals required.
    const shared = allowedKeys([`alice,bob ${alice.line}`, `carol ${carol.line}`, `dave ${dave.line}`].join('\n'));
    expect(shared.filter((k) => k.fingerprint === alice.fingerprint).map((k) => k.principal)).toEqual(['alice', 'bob']);
    const input = testInput({ signedWith: shared, operators: ['dave'], requestedBy: 'dave', required: 2 });
    await atTheGate(async (handle) => {
      await handle.executeUpdate(approveUpdate, { args: [await vote(alice, handle)] });
      // bob's statement, signed with the key alice and bob share.
      const asBob = await signed(alice, await voteStatement('approve', bob, handle));
      const s = await expectVoteRefused(handle, asBob,
        `key ${alice.fingerprint} already approved as alice; the quorum counts distinct keys, not names`, { claimed: 'bob' });
      expect(s.gate.approvals.map((v) => v.approver)).toEqual(['alice']);
      expect(s.gate.needs).toBe('needs 1 more approval from carol (signed)'); // bob's key already approved
      await handle.executeUpdate(approveUpdate, { args: [await vote(carol, handle)] });
      const result = await handle.result();
      expect(result.outcome).toBe('succeeded');
      expect(result.gate.approvals.map((v) => [v.approver, v.fingerprint])).toEqual([['alice', alice.fingerprint], ['carol', carol.fingerprint]]);
    }, { input });
  });

  it('says so when no approver is left whose vote could count, and times out', async () => {
    // Three approvals required of alice, bob and carol, but alice and bob share one key.
    const shared = allowedKeys([`alice,bob ${alice.line}`, `carol ${carol.line}`, `dave ${dave.line}`].join('\n'));
    const input = testInput({ signedWith: shared, operators: ['dave'], requestedBy: 'dave', required: 3 });
    await atTheGate(async (handle) => {
      await handle.executeUpdate(approveUpdate, { args: [await vote(alice, handle)] });
      const after = await handle.executeUpdate(approveUpdate, { args: [await vote(carol, handle)] });
      const needs = 'needs 1 more approval, but no approver is left whose vote could count (each approver votes once, the requester may not, ' +
        "and the quorum counts distinct keys); add approvers, or their own keys, to the worker's config";
      expect(after.message).toBe(`Approval by carol recorded: 2 of 3; waiting for more (the gate ${needs}).`);
      expect((await handle.query(statusQuery)).gate.needs).toBe(needs);
      const failure = await expectFailure(handle); // the server skips the 72 hours
      expect(failure.type).toBe(ReleaseEndType.Aborted);
    }, { input });
  });

  it('is refused the second time from the same approver, even freshly signed', async () => {
    await atTheGate(async (handle) => {
      await handle.executeUpdate(approveUpdate, { args: [await vote(alice, handle)] });
      const s = await expectVoteRefused(handle, await vote(alice, handle, { reason: 'really sure' }), 'alice already approved; each approver votes once', { claimed: 'alice' });
      expect(s.gate.approvals.map((v) => v.approver)).toEqual(['alice']);
      await handle.executeUpdate(approveUpdate, { args: [await vote(bob, handle)] });
      const result = await handle.result();
      expect(result.outcome).toBe('succeeded');
      expect(result.gate.approvals.map((v) => v.approver)).toEqual(['alice', 'bob']);
    }, { input: signedInput({ required: 2 }) });
  });

  it('signed for a reject does not count as an approval, and a signed reject stops the release', async () => {
    await atTheGate(async (handle) => {
      await expectVoteRefused(handle, await vote(carol, handle, {}, 'reject'), 'signed approve refused: the statement is for "reject", not "approve"', { claimed: 'carol' });
      await handle.executeUpdate(rejectUpdate, { args: [await vote(carol, handle, { reason: 'changelog is wrong' }, 'reject')] });
      const failure = await expectFailure(handle);
      expect(failure.type).toBe(ReleaseEndType.Rejected);
      const status = await handle.query(statusQuery);
      expect(status.gate.rejection).toMatchObject({ approver: 'carol', verified: true, fingerprint: carol.fingerprint, reason: 'changelog is wrong' });
      expect(status.gate.approvals).toEqual([]);
    });
  });
});

describe('a signed decision after a step used up its retries', () => {
  it('retries the step; one signed for another pending decision, or by a non-operator, is refused', async () => {
    let broken = true;
    const input = signedInput();
    const fake = fakeActivities({ failWhile: { tag: () => broken } });
    await withRelease(env, bundle, fake, input, async ({ handle }) => {
      const s = await waitForStatus(handle, (x) => x.pendingDecision !== undefined, 'a pending decision');
      expect(s.pendingDecision).toMatchObject({ id: 'tag#1', step: 'tag' });
      broken = false;

      const wrongId = await decision(dave, handle, 'retry', 'tag#2');
      const whyId = 'signed decide refused: the statement names step tag#2, but this release has tag#1 (signed for another step?)';
      expect(await expectUpdateRefused(handle.executeUpdate(decideUpdate, { args: [wrongId] }))).toBe(whyId);
      await handle.signal(decideSignal, wrongId);
      const recorded = await waitForStatus(handle, (x) => x.gate.refusedCount === 1, 'the refused decide signal to be recorded');
      expect(recorded.gate.refused[0]).toEqual({ name: 'decide', via: 'signal', at: expect.any(String), approver: 'dave', why: whyId });

      const byApprover = await decision(alice, handle, 'retry', 'tag#1');
      expect(await expectUpdateRefused(handle.executeUpdate(decideUpdate, { args: [byApprover] }))).toBe('alice may not decide this release; operators are dave');
      const unsigned = await expectUpdateRefused(handle.executeUpdate(decideUpdate, { args: [{ decision: 'retry', operator: 'dave' }] }));
      expect(unsigned).toContain('hello requires signed decisions, and this decide is not signed, so it does not count. ' +
        `Run \`gantry decide retry|abort hello ${input.version} --as <name>\``);

      const still = await handle.query(statusQuery);
      expect(still.stage).toBe('awaiting-decision');
      expect(still.pendingDecision).toMatchObject({ id: 'tag#1' });
      expect(still.decisions).toEqual([]);
      expect(fake.calls.filter((c) => c === 'tag')).toHaveLength(5);

      const answer = await handle.executeUpdate(decideUpdate, { args: [await decision(dave, handle, 'retry', 'tag#1', { reason: 'remote is back' })] });
      expect(answer).toBe('Retrying Tag the release commit.');
      await waitForStatus(handle, gateOpen, 'the approval gate to open');
      const result = await approveAndFinish(handle, alice);
      expect(result.decisions).toEqual([
        { step: 'tag', decision: 'retry', operator: 'dave', verified: true, fingerprint: dave.fingerprint, reason: 'remote is back', at: expect.any(String) },
      ]);
      expect(stepOf(result, 'tag')).toMatchObject({ state: 'succeeded', runs: 2 });
    }, await signedStart(dave, input));
  });
});

describe('signed cancellation', () => {
  it('by an operator\'s signed cancel update ends the release cancelled (GantryReleaseCancelled), naming who', async () => {
    await atTheGate(async (handle) => {
      expect(await expectUpdateRefused(handle.executeUpdate(cancelUpdate, { args: [await cancellation(alice, handle)] })))
        .toBe('alice may not cancel this release; operators are dave');
      const answer = await handle.executeUpdate(cancelUpdate, { args: [await cancellation(dave, handle, 'wrong branch')] });
      expect(answer).toBe('Cancelled: nothing was deployed to production.');
      const failure = await expectFailure(handle);
      expect(failure.type).toBe(ReleaseEndType.Cancelled);
      expect(failure.message).toBe('Cancelled by dave before production changed; nothing was deployed to production. Start the release again when ready.');
      const status = await handle.query(statusQuery);
      expect(status.outcome).toBe('cancelled');
      expect(status.cancellation).toEqual({ requested: true, at: expect.any(String), by: 'dave', note: 'Cancelled by dave: wrong branch' });
      expect(status.gate.approvals).toEqual([]);
      expect(stepOf(status, 'deployProduction').state).toBe('skipped');
      expect((await handle.describe()).status.name).toBe('FAILED');
    });
  });

  it('ignores Temporal\'s own cancellation request (no identity): it is recorded as refused, and the release can still be approved', async () => {
    await atTheGate(async (handle, _open, input) => {
      await handle.cancel();
      const s = await waitForStatus(handle, (x) => x.gate.refusedCount === 1, 'the Temporal cancellation to be recorded as refused');
      expect(s.gate.refused[0]).toEqual({
        name: 'cancel', via: 'temporal', at: expect.any(String),
        why: `hello requires signed decisions: a cancellation request through Temporal carries no identity and was ignored. Cancel with \`gantry cancel hello ${input.version}\` ` +
          '(signed), or terminate the workflow to stop it regardless (recorded by the server)',
      });
      expect(s.cancellation).toEqual({ requested: false });
      expect(s.gate.state).toBe('open');
      expect(s.outcome).toBeUndefined();
      const result = await approveAndFinish(handle, carol);
      expect(result.cancellation.requested).toBe(false);
      expect((await handle.describe()).status.name).toBe('COMPLETED');
    });
  });
});
