/**
 * The Temporal Web UI as an approval surface, driven in real Chromium against a real dev server and worker:
 * what an approver who never read the code sees and does (More Actions → Send a Signal).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Worker } from '@temporalio/worker';
import { devServerEnv } from '../helpers/servers';
import { launchChromium } from '../helpers/browser';
import { freePort } from '../helpers/ports';
import { fakeActivities } from '../helpers/fake-activities';
import { sampleInput, startRequestFor } from '../helpers/fixtures';
import { createReleaseWorker } from '../../src/worker';
import { releaseWorkflow } from '../../src/workflows';
import { releaseWorkflowId, startSearchAttributes, statusQuery, TASK_QUEUE, type ReleaseStatus } from '../../src/shared/release';

let env: TestWorkflowEnvironment;
let worker: Worker;
let workerRun: Promise<void>;
let browser: Browser;
let uiPort: number;

beforeAll(async () => {
  uiPort = await freePort();
  env = await devServerEnv({ ui: true, uiPort });
  worker = await createReleaseWorker({ connection: env.nativeConnection, namespace: 'default', activities: { ...fakeActivities(), resolvePlan: async (r) => ({ attempt: 1, input: sampleInput({ version: r.version }) }) } });
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
});

async function startAtGate(version: string) {
  const input = sampleInput({ version });
  const handle = await env.client.workflow.start(releaseWorkflow, {
    taskQueue: TASK_QUEUE,
    workflowId: releaseWorkflowId('hello', version),
    args: [startRequestFor(input)],
    typedSearchAttributes: startSearchAttributes(input),
    staticSummary: `Release hello ${version}`,
  });
  await waitFor(handle, (s) => s.stage === 'awaiting-approval');
  return handle;
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

async function openWorkflow(page: Page, workflowId: string): Promise<void> {
  const moreActions = page.locator('button:visible', { hasText: 'More Actions' }).first();
  // On a loaded machine the first render can stall while the UI fetches its settings; one reload is allowed.
  for (let attempt = 1; ; attempt++) {
    await page.goto(`http://127.0.0.1:${uiPort}/namespaces/default/workflows/${workflowId}`, { waitUntil: 'load' });
    try {
      await moreActions.waitFor({ timeout: 45_000 });
      return;
    } catch (err) {
      if (attempt >= 2) throw err;
    }
  }
}

/** More Actions → Send a Signal → pick a listed signal or type a custom name → optional JSON → Submit. */
async function sendSignal(page: Page, signal: { listed: string } | { custom: string }, payload?: string): Promise<void> {
  await page.locator('button:visible', { hasText: 'More Actions' }).first().click();
  await page.locator('[role=menuitem]:visible', { hasText: 'Send a Signal' }).first().click();
  const dialog = page.locator('dialog:visible, [role=dialog]:visible').first();
  await dialog.locator('[data-testid=signal-select-button]').click();
  if ('listed' in signal) {
    await page.locator('[role=option]:visible', { hasText: signal.listed }).first().click();
  } else {
    await page.locator('[role=option]:visible', { hasText: 'Custom' }).first().click();
    const nameInput = dialog.locator('input:visible:not([disabled])').first();
    await nameInput.fill(signal.custom);
  }
  if (payload !== undefined) {
    const editor = dialog.locator('.cm-content[contenteditable=true]').first();
    await editor.click();
    await page.keyboard.insertText(payload);
    // Blur the editor first: it reformats on blur, and a click during that can be lost.
    await editor.blur();
    await page.waitForTimeout(300);
  }
  await dialog.locator('button:visible', { hasText: 'Submit' }).click();
  await dialog.waitFor({ state: 'hidden', timeout: 15_000 });
}

describe('approving from the Temporal Web UI', () => {
  it('lists the gate signals with their descriptions and summarises each step in words', async () => {
    const handle = await startAtGate('3.0.0');
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    await openWorkflow(page, handle.workflowId);
    await expect.poll(() => page.locator('text=Smoke-check staging — hello 3.0.0').count(), { timeout: 30_000 }).toBeGreaterThan(0);
    await page.locator('button:visible', { hasText: 'More Actions' }).first().click();
    await page.locator('[role=menuitem]:visible', { hasText: 'Send a Signal' }).first().click();
    await page.locator('[data-testid=signal-select-button]:visible').click();
    const options = await page.locator('[role=option]:visible').allInnerTexts();
    expect(options.find((o) => o.startsWith('approve'))).toContain('Approve the production deploy. Payload: {"approver"');
    expect(options.find((o) => o.startsWith('reject'))).toContain('Reject the release');
    expect(options.find((o) => o.startsWith('decide'))).toContain('"decision": "retry" | "abort"');
    await page.close();
    await handle.terminate('test cleanup');
  });

  it('records a misspelled signal and an empty payload as refused, then an approval sent from the UI releases', async () => {
    const handle = await startAtGate('3.1.0');
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    await openWorkflow(page, handle.workflowId);

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
    expect(result.gate.approvals).toEqual([expect.objectContaining({ approver: 'bob', reason: 'staging looks right', via: 'signal' })]);
    expect(result.steps.find((x) => x.name === 'deployProduction')?.state).toBe('succeeded');
    await page.close();
  });
});
