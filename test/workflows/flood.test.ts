/**
 * A flood of junk signals on a REAL dev server: a release parked at the gate takes 20,000 signals with a
 * mistyped name and one `approve` whose name is 1 MB of text. The server refuses signals past its
 * per-execution limit (10,000 by default); whatever it accepted, the workflow records as refused in a bounded
 * ledger (the last REFUSED_KEPT entries, each cut short, plus a count), so `gantry status` still answers with
 * a small status, and the release can still be approved by update and finish. No timing is asserted.
 *
 * The worker runs in a process of its own (flood-worker.ts). With Node 20 and @temporalio/worker 1.24 a flood
 * like this one can abort the whole worker process ("async hook stack has become corrupted", in the workflow
 * thread; the SDK's stack-trace promise hook is involved, sdk-typescript#939). Running the worker apart keeps
 * the test runner alive: a crashed worker is restarted, as the supervisor of any production worker does
 * (systemd, compose `restart: unless-stopped`, Kubernetes), and the test checks what gantry promises: the
 * release recovers from its history on the new worker, every signal accounted for, and finishes; crashes are
 * reported and must stay few (no crash loop). The crash itself is the SDK's on this Node, not gantry's code.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { releaseWorkflow } from '../../src/workflows';
import { approveSignal, approveUpdate, releaseWorkflowId, statusQuery } from '../../src/shared/release';
import { REFUSED_KEPT } from '../../src/shared/text';
import { fakeActivities } from '../helpers/fake-activities';
import { startRequestFor } from '../helpers/fixtures';
import { devServerEnv } from '../helpers/servers';
import { bundleReleaseWorkflow, gateOpen, stepOf, testInput, waitForStatus, withRelease, type ReleaseHandle } from './harness';

let env: TestWorkflowEnvironment;
const SIGNAL_LIMIT = 2000;
let bundle: WorkflowBundleWithSourceMap;
let dir: string;
let bundleFile: string;

beforeAll(async () => {
  // The server's per-execution signal limit, lowered as an operator should (deploy/temporal/dynamicconfig): every
  // signal past it is refused at the server, before it costs the release anything. The default, 10,000, lets
  // enough through to crash a Node 20 worker process (see above).
  [env, bundle] = await Promise.all([devServerEnv({ dynamicConfig: { 'history.maximumSignalsPerExecution': SIGNAL_LIMIT } }), bundleReleaseWorkflow()]);
  dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-flood-'));
  bundleFile = path.join(dir, 'workflow-bundle.js');
  writeFileSync(bundleFile, bundle.code);
});

afterAll(async () => {
  for (const w of workers) await w.stop();
  await env?.teardown();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const TYPOS = 20_000;
const IN_FLIGHT = 64;
const MB = 1024 * 1024;
const TYPO_WHY = 'there is no signal named "aprove"; the signals are approve, reject, decide, cancel';

// ---- a worker in its own process ----

interface WorkerProcess {
  /** Set once the process ended on its own: how, and the end of what it wrote to stderr. */
  crashed?: string;
  stop(): Promise<void>;
}
const workers: WorkerProcess[] = [];

async function startWorker(taskQueue: string, inputFile: string): Promise<WorkerProcess> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', path.join(__dirname, 'flood-worker.ts'), env.address, taskQueue, bundleFile, inputFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000); });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let stopping = false;
  const w: WorkerProcess = {
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      stopping = true;
      child.kill('SIGTERM');
      await exited;
    },
  };
  child.once('exit', (code, signal) => {
    if (!stopping) w.crashed = `exited ${signal ?? `with code ${code}`}: ${stderr.trim().split('\n').slice(0, 3).join(' | ')}`;
  });
  workers.push(w);
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => { if (d.toString().includes('ready')) resolve(); });
    child.once('exit', () => reject(new Error(`the flood worker did not start: ${w.crashed ?? 'stopped'}`)));
  });
  return w;
}

// ---- the flood ----

interface Sent {
  accepted: number;
  refused: number;
  /** Refusal messages (cut), with how often each came. */
  reasons: Map<string, number>;
}

/** Send `count` signals named `name`, at most `inFlight` at a time; a refused send is counted, never thrown. */
async function flood(handle: ReleaseHandle, name: string, count: number, inFlight: number): Promise<Sent> {
  const sent: Sent = { accepted: 0, refused: 0, reasons: new Map() };
  let next = 0;
  const sender = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      try {
        await handle.signal(name, { approver: `alice-${i}` });
        sent.accepted += 1;
      } catch (err) {
        sent.refused += 1;
        const why = (err instanceof Error ? `${err.message}${err.cause instanceof Error ? `: ${err.cause.message}` : ''}` : String(err)).slice(0, 200);
        sent.reasons.set(why, (sent.reasons.get(why) ?? 0) + 1);
      }
    }
  };
  await Promise.all(Array.from({ length: inFlight }, sender));
  return sent;
}

describe('a flood of junk signals at the gate', () => {
  it('is recorded in a bounded ledger: status stays small and answers, and the release can still be approved by update', { timeout: 1_200_000 }, async () => {
    const input = testInput();
    const taskQueue = `flood-${randomUUID()}`;
    const inputFile = path.join(dir, `${taskQueue}.json`);
    writeFileSync(inputFile, JSON.stringify(input));
    const crashes: string[] = [];
    let worker = await startWorker(taskQueue, inputFile);
    /** A crashed worker is noted and replaced, as a supervisor (systemd, Kubernetes) would. */
    let restarting: Promise<void> | undefined;
    const supervise = async (): Promise<void> => {
      if (restarting) return restarting;
      if (!worker.crashed) return;
      crashes.push(worker.crashed);
      restarting = startWorker(taskQueue, inputFile).then((w) => { worker = w; }).finally(() => { restarting = undefined; });
      return restarting;
    };
    // Watch all the time, as a supervisor does: a crash while the test waits for an answer would otherwise hang it.
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        await supervise();
        await new Promise((r) => setTimeout(r, 250));
      }
    })();

    const handle = await env.client.workflow.start(releaseWorkflow, {
      taskQueue, workflowId: releaseWorkflowId(input.service, input.version), args: [startRequestFor(input)],
    });
    await waitForStatus(handle, gateOpen, 'the approval gate to open', 60_000);

    // First, so the per-execution signal limit cannot refuse it: an approval whose name is 1 MB of text.
    let big = 0;
    await handle.signal(approveSignal, { approver: 'a'.repeat(MB) }).then(() => { big = 1; }, (err: unknown) => {
      console.log(`flood: the server refused the 1 MB approve signal: ${err instanceof Error ? err.message : String(err)}`);
    });
    const sent = await flood(handle, 'aprove', TYPOS, IN_FLIGHT);
    console.log(`flood: ${TYPOS} 'aprove' signals: ${sent.accepted} accepted, ${sent.refused} refused by the server; ` +
      `the 1 MB approve signal ${big ? 'accepted' : 'refused'}`);
    for (const [why, n] of sent.reasons) console.log(`flood:   ${n} × ${why}`);
    expect(sent.accepted + sent.refused).toBe(TYPOS);
    expect(sent.accepted).toBeGreaterThan(0);
    await supervise();

    // The server's own count of what it accepted, against the client's.
    const accepted = sent.accepted + big;
    const history = await handle.fetchHistory();
    expect(history.events?.filter((e) => e.workflowExecutionSignaledEventAttributes).length).toBe(accepted);

    let s = await handle.query(statusQuery).catch(() => undefined);
    const deadline = Date.now() + 600_000; // a loaded machine replays 10,000 signals slowly; no timing is asserted
    while (!s || s.gate.refusedCount < accepted) {
      if (Date.now() > deadline) throw new Error(`the workflow recorded ${s?.gate.refusedCount ?? '?'} of ${accepted} refused signals in 10 minutes`);
      await new Promise((r) => setTimeout(r, 500));
      await supervise();
      s = await handle.query(statusQuery).catch(() => undefined);
    }
    const json = JSON.stringify(s);
    console.log(`flood: status is ${json.length} characters; gate.refusedCount ${s.gate.refusedCount}, ${s.gate.refused.length} kept`);
    expect(s.gate.refusedCount).toBe(accepted);
    expect(json.length).toBeLessThan(MB);
    expect(s.gate.refused.length).toBe(Math.min(REFUSED_KEPT, accepted));
    for (const r of s.gate.refused) {
      expect(JSON.stringify(r).length).toBeLessThan(600);
      expect(r).toMatchObject({ name: 'aprove', via: 'signal', why: TYPO_WHY });
    }
    // None of it counted: the release still waits at the gate.
    expect(s.gate.state).toBe('open');
    expect(s.gate.approvals).toEqual([]);
    expect(s.outcome).toBeUndefined();

    const answer = await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] });
    expect(answer).toMatchObject({ gate: 'approved', approvals: 1 });
    const result = await handle.result();
    await supervise();
    expect(result.outcome).toBe('succeeded');
    expect(result.gate.approvals.map((v) => [v.approver, v.via])).toEqual([['alice', 'update']]);
    expect(result.gate.refusedCount).toBe(accepted);
    expect(stepOf(result, 'deployProduction').state).toBe('succeeded');
    watching = false;
    await watcher;
    const d = await handle.describe();
    console.log(`flood: the release's history has ${d.historyLength} events (${d.historySize} bytes)`);
    await worker.stop();

    if (crashes.length > 0) console.log(`flood: the worker process crashed ${crashes.length} time(s); the release recovered on a restarted worker:\n  ${crashes.join('\n  ')}`);
    // A supervised worker comes back and the release goes on; what must not happen is a crash loop.
    expect(crashes.length, `the worker crashed ${crashes.length} times: ${crashes.join('; ')}`).toBeLessThanOrEqual(3);
  });

  it('records an approval whose name is 1 MB of text as one short refused entry', { timeout: 120_000 }, async () => {
    const fake = fakeActivities();
    await withRelease(env, bundle, fake, testInput(), async ({ handle }) => {
      await waitForStatus(handle, gateOpen, 'the approval gate to open', 60_000);
      await handle.signal(approveSignal, { approver: 'a'.repeat(MB) });
      const s = await waitForStatus(handle, (x) => x.gate.refusedCount === 1, 'the big signal to be recorded', 60_000);
      expect(s.gate.refused[0]).toMatchObject({
        name: 'approve', via: 'signal', approver: `${'a'.repeat(63)}…`,
        why: `malformed approve: "approver" is ${MB} characters long; names are at most 64; send {"approver": "<name>", "reason": "optional"}`,
      });
      expect(JSON.stringify(s.gate.refused[0]).length).toBeLessThan(600);
      expect(s.gate.approvals).toEqual([]);
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'bob' }] });
      expect((await handle.result()).outcome).toBe('succeeded');
    });
  });
});
