/**
 * The Temporal Web UI as an approval surface, driven in real Chromium against a real dev server and worker:
 * what an approver who never read the code sees and does (More Actions → Send a Signal).
 *
 * Declared mode: the name typed in the payload. Signed mode (the default): the approver pastes the JSON that
 * `gantry approve <svc> <ver> --as <name> --print` prints, signed with a real ed25519 key made by ssh-keygen;
 * the workflow verifies it, and refuses an unsigned payload with the instruction to sign.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, ConsoleMessage, Page, Request, Response } from 'playwright-core';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Worker } from '@temporalio/worker';
import { devServerEnv } from '../helpers/servers';
import { launchChromium } from '../helpers/browser';
import { freePort } from '../helpers/ports';
import { fakeActivities } from '../helpers/fake-activities';
import { sampleInput, startRequestFor } from '../helpers/fixtures';
import { createReleaseWorker } from '../../src/worker';
import { releaseWorkflow } from '../../src/workflows';
import { startStatement, voteMessage } from '../../src/client/decisions';
import type { PrincipalKey } from '../../src/shared/gate';
import {
  HANDLER_DESCRIPTIONS,
  releaseWorkflowId,
  startSearchAttributes,
  statusQuery,
  TASK_QUEUE,
  type ReleaseInput,
  type ReleaseStatus,
  type StartRequest,
} from '../../src/shared/release';

let env: TestWorkflowEnvironment;
let worker: Worker;
let workerRun: Promise<void>;
let browser: Browser;
let uiPort: number;

/** Versions with this pre-release tag resolve to a signed-mode plan; the others to the sample's declared mode. */
const SIGNED_MARK = '-signed';

interface Person {
  principal: string;
  /** The private key file (`--key`). */
  keyFile: string;
  /** As the worker's allowed signers resolve it. */
  allowed: PrincipalKey;
}

let keyDir: string;
/** alice approves; carol starts the signed releases (a requester may not approve her own release). */
let alice: Person;
let carol: Person;

/** A real OpenSSH ed25519 key; the fingerprint is what `ssh-keygen -l` says, not gantry's own computation. */
function sshKeygen(principal: string): Person {
  const keyFile = path.join(keyDir, principal);
  const run = (args: string[]): string => {
    try {
      return execFileSync('ssh-keygen', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      throw new Error(`ssh-keygen ${args.join(' ')} failed (${(err as Error).message}); this test needs openssh-client (Debian openssh-client)`);
    }
  };
  run(['-q', '-t', 'ed25519', '-N', '', '-C', `${principal}@laptop`, '-f', keyFile]);
  const pub = readFileSync(`${keyFile}.pub`, 'utf8').trim();
  const fingerprint = run(['-l', '-E', 'sha256', '-f', `${keyFile}.pub`]).split(' ')[1] ?? '';
  expect(fingerprint).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
  const [type, base64] = pub.split(/\s+/);
  return { principal, keyFile, allowed: { principal, key: `${type} ${base64}`, fingerprint } };
}

function planFor(r: { version: string; requestedBy: string }): ReleaseInput {
  return r.version.includes(SIGNED_MARK)
    ? sampleInput({ version: r.version, requestedBy: r.requestedBy, signedWith: [alice.allowed, carol.allowed] })
    : sampleInput({ version: r.version });
}

beforeAll(async () => {
  keyDir = mkdtempSync(path.join(os.tmpdir(), 'gantry-ui-keys-'));
  alice = sshKeygen('alice');
  carol = sshKeygen('carol');
  uiPort = await freePort();
  env = await devServerEnv({ ui: true, uiPort });
  worker = await createReleaseWorker({ connection: env.nativeConnection, namespace: 'default', activities: { ...fakeActivities(), resolvePlan: async (r) => ({ attempt: 1, input: planFor(r) }) } });
  workerRun = worker.run();
  browser = await launchChromium();
  await waitForUi();
});

/** The UI process comes up after the server's gRPC port; wait until it serves pages. */
async function waitForUi(): Promise<void> {
  const deadline = Date.now() + 90_000;
  for (;;) {
    const ok = await fetch(`http://127.0.0.1:${uiPort}/namespaces/default/workflows`).then((r) => r.ok, () => false);
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`the Temporal Web UI did not answer on 127.0.0.1:${uiPort} within 90 s`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

afterAll(async () => {
  await browser?.close();
  worker?.shutdown();
  await workerRun;
  await env?.teardown();
  if (keyDir) rmSync(keyDir, { recursive: true, force: true });
});

/** Start a release as `gantry start` would (signed by carol for a signed version) and wait for its gate. */
async function startAtGate(version: string) {
  const signed = version.includes(SIGNED_MARK);
  const input = planFor({ version, requestedBy: signed ? carol.principal : 'tester' });
  const request: StartRequest = signed
    ? startRequestFor(input, { signed: await startStatement('hello', version, carol.principal, { key: carol.keyFile, env: {}, required: true }) })
    : startRequestFor(input);
  const handle = await env.client.workflow.start(releaseWorkflow, {
    taskQueue: TASK_QUEUE,
    workflowId: releaseWorkflowId('hello', version),
    args: [request],
    typedSearchAttributes: startSearchAttributes(input),
    staticSummary: `Release hello ${version}`,
  });
  await waitFor(handle, (s) => s.stage === 'awaiting-approval');
  return handle;
}

type Handle = Awaited<ReturnType<typeof startAtGate>>;

/**
 * What `gantry approve hello <version> --as alice --print` prints: the release's status and current run as the
 * CLI reads them, a statement signed with alice's key file, as one line of JSON.
 */
async function printedApproval(handle: Handle, who: Person): Promise<string> {
  const status = await handle.query(statusQuery);
  const { runId } = await handle.describe();
  const message = await voteMessage('approve', status, runId, { as: who.principal }, { key: who.keyFile, env: {} });
  expect(message).toEqual({ statement: expect.stringContaining(`digest: ${status.gate.digest}\n`), signature: expect.stringMatching(/^-----BEGIN SSH SIGNATURE-----/) });
  return JSON.stringify(message);
}

/** A browser page whose clipboard the test may write, so a payload can be pasted as a person pastes it. */
async function newPage(): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 }, permissions: ['clipboard-read', 'clipboard-write'] });
  return { context, page: await context.newPage() };
}

async function waitFor(handle: { query: (q: typeof statusQuery) => Promise<ReleaseStatus> }, pred: (s: ReleaseStatus) => boolean): Promise<ReleaseStatus> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const s = await handle.query(statusQuery);
    if (pred(s)) return s;
    if (Date.now() > deadline) throw new Error(`condition not reached; status: ${JSON.stringify({ stage: s.stage, gate: s.gate })}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** How long one load of a workflow page may take to show its actions, and how many loads are allowed. */
const PAGE_SHOWS_WITHIN_MS = 40_000;
const PAGE_LOADS = 3;

/** The run's own page (its id and run in the address: no lookup and redirect by the UI first). */
async function openWorkflow(page: Page, run: { workflowId: string; firstExecutionRunId: string }): Promise<void> {
  const { workflowId, firstExecutionRunId: runId } = run;
  const moreActions = page.locator('button:visible', { hasText: 'More Actions' }).first();
  // What the page asked the UI server and what went wrong, so a page that never shows its actions says why.
  const pending = new Map<Request, number>();
  const trouble: string[] = [];
  const api = (r: Request): string => {
    const url = new URL(r.url());
    return `${r.method()} ${url.pathname}${url.search}`;
  };
  const onRequest = (r: Request): void => {
    if (r.url().includes('/api/')) pending.set(r, Date.now());
  };
  const onFinished = (r: Request): void => void pending.delete(r);
  const onFailed = (r: Request): void => {
    if (pending.delete(r)) trouble.push(`${api(r)} failed: ${r.failure()?.errorText ?? 'unknown'}`);
  };
  const onResponse = (res: Response): void => {
    if (res.url().includes('/api/') && res.status() >= 400) trouble.push(`${api(res.request())} answered ${res.status()}`);
  };
  const onConsole = (m: ConsoleMessage): void => {
    if (m.type() === 'error') trouble.push(`console: ${m.text().slice(0, 300)}`);
  };
  const onPageError = (err: Error): void => void trouble.push(`page error: ${err.message.slice(0, 300)}`);
  page.on('request', onRequest);
  page.on('requestfinished', onFinished);
  page.on('requestfailed', onFailed);
  page.on('response', onResponse);
  page.on('console', onConsole);
  page.on('pageerror', onPageError);
  // The listeners stay for the page's life (one test): they only collect, and only a failure reads them.
  // On a loaded machine a first render can stall while the UI waits on the server; a reload is allowed.
  for (let load = 1; ; load++) {
    pending.clear();
    await page.goto(`http://127.0.0.1:${uiPort}/namespaces/default/workflows/${encodeURIComponent(workflowId)}/${runId}/history`, { waitUntil: 'load' });
    try {
      await moreActions.waitFor({ timeout: PAGE_SHOWS_WITHIN_MS });
      return;
    } catch {
      const now = Date.now();
      const waiting = [...pending].map(([r, at]) => `${api(r)} (${Math.round((now - at) / 1000)} s)`);
      trouble.push(`load ${load}: no More Actions within ${PAGE_SHOWS_WITHIN_MS / 1000} s; still waiting on: ${waiting.join(', ') || 'nothing'}`);
      if (load >= PAGE_LOADS) {
        const text = (await page.locator('body').innerText().catch(() => '')).replace(/\s+/g, ' ').slice(0, 1_000);
        throw new Error(`the Web UI page of ${workflowId} never showed its actions in ${PAGE_LOADS} loads.\n${trouble.join('\n')}\npage text: ${text}`);
      }
    }
  }
}

/**
 * More Actions → Send a Signal → pick a listed signal or type a custom name → optional JSON, typed or pasted
 * from the clipboard (as an approver pastes what `--print` printed) → Submit.
 */
async function sendSignal(page: Page, signal: { listed: string } | { custom: string }, payload?: string, how: 'type' | 'paste' = 'type'): Promise<void> {
  await page.locator('button:visible', { hasText: 'More Actions' }).first().click();
  await page.locator('[role=menuitem]:visible', { hasText: 'Send a Signal' }).first().click();
  const dialog = page.locator('dialog:visible, [role=dialog]:visible').first();
  await dialog.locator('[data-testid=signal-select-button]').click();
  if ('listed' in signal) {
    // Options read "<name><description>"; a description may mention other signals' names.
    await page.locator('[role=option]:visible', { hasText: new RegExp(`^\\s*${signal.listed}`) }).first().click();
  } else {
    await page.locator('[role=option]:visible', { hasText: 'Custom' }).first().click();
    const nameInput = dialog.locator('input:visible:not([disabled])').first();
    await nameInput.fill(signal.custom);
  }
  if (payload !== undefined) {
    const editor = dialog.locator('.cm-content[contenteditable=true]').first();
    await editor.click();
    if (how === 'paste') {
      // Runs in the page (the project's TypeScript has no DOM types): the system clipboard, as `--print`'s output is copied.
      await page.evaluate((text) => (globalThis as unknown as BrowserGlobals).navigator.clipboard.writeText(text), payload);
      await page.keyboard.press('ControlOrMeta+V');
    } else {
      await page.keyboard.insertText(payload);
    }
    // Blur the editor first: it reformats on blur, and a click during that can be lost.
    await editor.blur();
    await page.waitForTimeout(300);
    // What the dialog will send is what was pasted (the editor may have reformatted it, never changed it).
    await expect.poll(async () => parsedOrText(await editor.innerText()), { timeout: 5_000 }).toEqual(JSON.parse(payload));
  }
  await dialog.locator('button:visible', { hasText: 'Submit' }).click();
  await dialog.waitFor({ state: 'hidden', timeout: 15_000 });
}

interface BrowserGlobals {
  navigator: { clipboard: { writeText(text: string): Promise<void> } };
}

function parsedOrText(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

// Three loads of a page may take two minutes on a loaded machine, on top of the release the test starts.
describe('approving from the Temporal Web UI', { timeout: 240_000 }, () => {
  it('lists the gate signals with their descriptions and summarises each step in words', async () => {
    const handle = await startAtGate('3.0.0');
    const { context, page } = await newPage();
    await openWorkflow(page, handle);
    await expect.poll(() => page.locator('text=Smoke-check staging — hello 3.0.0').count(), { timeout: 30_000 }).toBeGreaterThan(0);
    await page.locator('button:visible', { hasText: 'More Actions' }).first().click();
    await page.locator('[role=menuitem]:visible', { hasText: 'Send a Signal' }).first().click();
    await page.locator('[data-testid=signal-select-button]:visible').click();
    // The list renders after the click: read it once every handler is in it (read at once, it was empty in one run).
    const listed = page.locator('[role=option]:visible');
    await expect.poll(async () => (await listed.allInnerTexts()).filter((o) => /^(approve|reject|decide|cancel)\b/.test(o)).length, { timeout: 15_000 }).toBe(4);
    const options = await listed.allInnerTexts();
    const option = (name: string): string => (options.find((o) => o.startsWith(name)) ?? '').replace(/\s+/g, ' ');
    // Each description arrives whole: how to approve in both modes, what the others take.
    for (const name of ['approve', 'reject', 'decide', 'cancel'] as const) expect(option(name)).toContain(HANDLER_DESCRIPTIONS[name]);
    expect(option('approve')).toContain('paste the JSON printed by `gantry approve <service> <version> --as <name> --print`');
    expect(option('approve')).toContain('Declared mode: {"approver": "<name>"');
    expect(option('reject')).toContain('Reject the release');
    expect(option('decide')).toContain('"decision": "retry" | "abort"');
    await context.close();
    await handle.terminate('test cleanup');
  });

  it('declared mode: records a misspelled signal and an empty payload as refused, then an approval sent from the UI releases', async () => {
    const handle = await startAtGate('3.1.0');
    const { context, page } = await newPage();
    await openWorkflow(page, handle);

    await sendSignal(page, { custom: 'aprove' }, '{"approver": "alice"}');
    let s = await waitFor(handle, (st) => st.gate.refused.length >= 1);
    expect(s.gate.refused[0]).toMatchObject({ name: 'aprove', via: 'signal', approver: 'alice' });
    expect(s.gate.refused[0]!.why).toContain('there is no signal named "aprove"; the signals are approve, reject, decide');

    await sendSignal(page, { listed: 'approve' });
    s = await waitFor(handle, (st) => st.gate.refused.length >= 2);
    expect(s.gate.refused[1]!.why).toContain('malformed approve: payload is nothing');
    expect(s.gate.state).toBe('open');

    await sendSignal(page, { listed: 'approve' }, '{"approver": "bob", "reason": "staging looks right"}');
    const result = await handle.result();
    expect(result.outcome).toBe('succeeded');
    expect(result.gate.approvals).toEqual([expect.objectContaining({ approver: 'bob', reason: 'staging looks right', via: 'signal', verified: false })]);
    expect(result.steps.find((x) => x.name === 'deployProduction')?.state).toBe('succeeded');
    await context.close();
  });

  it('signed mode: the JSON that `gantry approve --print` prints, pasted into the signal dialog, is verified and releases', async () => {
    const version = `3.2.0${SIGNED_MARK}`;
    const handle = await startAtGate(version);
    let s = await handle.query(statusQuery);
    expect(s.gate).toMatchObject({ identity: 'signed', state: 'open', approvals: [] });
    expect(s.requester).toMatchObject({ principal: carol.principal, verified: true, fingerprint: carol.allowed.fingerprint });

    const { context, page } = await newPage();
    await openWorkflow(page, handle);
    await sendSignal(page, { listed: 'approve' }, await printedApproval(handle, alice), 'paste');
    s = await waitFor(handle, (st) => st.gate.approvals.length > 0 || st.gate.refused.length > 0);
    expect(s.gate.refused).toEqual([]);
    expect(s.gate.approvals).toEqual([expect.objectContaining({ approver: 'alice', verified: true, fingerprint: alice.allowed.fingerprint, via: 'signal' })]);

    const result = await handle.result();
    expect(result.outcome).toBe('succeeded');
    expect(result.gate.state).toBe('approved');
    expect(result.gate.approvals).toHaveLength(1);
    expect(result.gate.approvals[0]).toMatchObject({ approver: 'alice', verified: true, fingerprint: alice.allowed.fingerprint });
    expect(result.steps.find((x) => x.name === 'deployProduction')?.state).toBe('succeeded');
    await context.close();
  });

  it('signed mode: an unsigned {"approver": "alice"} from the dialog is refused with the instruction to sign, and a signed approval still releases', async () => {
    const version = `3.3.0${SIGNED_MARK}`;
    const handle = await startAtGate(version);
    const { context, page } = await newPage();
    await openWorkflow(page, handle);

    await sendSignal(page, { listed: 'approve' }, '{"approver": "alice"}', 'paste');
    const s = await waitFor(handle, (st) => st.gate.refused.length >= 1);
    expect(s.gate.refused).toHaveLength(1);
    expect(s.gate.refused[0]).toMatchObject({ name: 'approve', via: 'signal', approver: 'alice' });
    expect(s.gate.refused[0]!.why).toContain('hello requires signed decisions, and this approve is not signed, so it does not count');
    expect(s.gate.refused[0]!.why).toContain(`gantry approve hello ${version} --as <name>`);
    expect(s.gate.refused[0]!.why).toContain('--print');
    expect(s.gate.approvals).toEqual([]);
    expect(s.gate.state).toBe('open');
    expect(s.stage).toBe('awaiting-approval');

    await sendSignal(page, { listed: 'approve' }, await printedApproval(handle, alice), 'paste');
    const result = await handle.result();
    expect(result.outcome).toBe('succeeded');
    expect(result.gate.approvals).toEqual([expect.objectContaining({ approver: 'alice', verified: true, fingerprint: alice.allowed.fingerprint, via: 'signal' })]);
    expect(result.gate.refused).toHaveLength(1);
    expect(result.gate.refusedCount).toBe(1);
    expect(result.steps.find((x) => x.name === 'deployProduction')?.state).toBe('succeeded');
    await context.close();
  });
});
