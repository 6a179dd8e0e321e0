/**
 * Operator polish: the live view of a followed release (src/client/live.ts) as text, the block it draws on a
 * terminal, and the built CLI following a release on a real dev server, once on a pseudo-terminal (util-linux
 * `script`) where it redraws in place, once through pipes where it prints plain lines without ANSI escapes.
 */
import { execFileSync, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Worker } from '@temporalio/worker';
import type { GateStatus, ReleaseStatus, StepStatus } from '../../src/shared/release';
import { STEP_NAMES, STEP_TITLES } from '../../src/shared/steps';
import { fitWidth, LiveBlock, liveLines, liveTerminal, visible, SPINNER, type LiveTerminal } from '../../src/client/live';
import { styleFor } from '../../src/client/style';
import { devServerEnv, requireBinary, TEMPORAL_CLI } from '../helpers/servers';
import {
  BIN, endOpenReleases, gantry, removeTempDirs, requireBuild, routedActivities, show, startWorker, tempDir, waitFor, writeConfig,
  type CliResult,
} from './harness';

// ---- the live block as text -------------------------------------------------------------------------------------

const T0 = Date.parse('2026-12-01T10:00:00Z');
const at = (s: number): string => new Date(T0 + s * 1000).toISOString();
const DIGEST = `sha256:${'ab12cd34ef56'.repeat(5)}abcd`;

function step(name: (typeof STEP_NAMES)[number], state: StepStatus['state'], from?: number, to?: number, extra: Partial<StepStatus> = {}): StepStatus {
  return {
    name, title: STEP_TITLES[name], state, attempts: state === 'pending' ? 0 : 1, runs: state === 'pending' ? 0 : 1,
    ...(from !== undefined ? { startedAt: at(from) } : {}), ...(to !== undefined ? { endedAt: at(to) } : {}), outputs: {}, ...extra,
  };
}

function gate(g: Partial<GateStatus> = {}): GateStatus {
  return { state: 'not_open', required: 1, approvers: ['alice', 'bob'], identity: 'declared', approvals: [], refused: [], refusedCount: 0, ...g };
}

function status(steps: StepStatus[], extra: Partial<ReleaseStatus> = {}): ReleaseStatus {
  const byName = new Map(steps.map((s) => [s.name, s]));
  return {
    workflowId: 'release-hello-1.2.3',
    request: { service: 'hello', version: '1.2.3', requestedBy: 'operator', dryRun: false },
    requester: { principal: 'operator', verified: false },
    stage: 'build',
    steps: STEP_NAMES.map((n) => byName.get(n) ?? step(n, 'pending')),
    gate: gate(),
    decisions: [],
    cancellation: { requested: false },
    message: '',
    startedAt: at(0),
    ...extra,
  };
}

const lineOf = (lines: string[], text: string): string => {
  const found = lines.find((l) => l.includes(text));
  if (!found) throw new Error(`no line with "${text}" in:\n${lines.join('\n')}`);
  return found;
};

describe('liveLines: a release as the live block shows it', () => {
  it('a running step has the spinner, its time so far, its attempt and progress; ended steps their durations; the gate is not open yet', () => {
    const s = status([
      step('resolve', 'succeeded', 0, 0.3),
      step('preflight', 'succeeded', 0.3, 0.7),
      step('tag', 'succeeded', 0.7, 1.2, { outputs: { tag: 'v1.2.3', commit: 'abc1234' } }),
      step('build', 'running', 1.2, undefined, { attempts: 2 }),
    ]);
    const lines = liveLines(s, { now: T0 + 13_400, frame: 3, progress: { attempt: 2, failure: 'registry answered 503', heartbeat: 'push registry: layer 2 of 3' } });
    expect(lines[0]).toBe('Release hello 1.2.3 · build · 13s');
    expect(lineOf(lines, 'Resolve the plan')).toMatch(/^ {2}✓ Resolve the plan on the worker\s+0\.3s$/);
    expect(lineOf(lines, 'Tag the release')).toMatch(/✓ Tag the release commit\s+0\.5s {2}tag: v1\.2\.3, commit: abc1234$/);
    expect(lineOf(lines, 'Build and push')).toBe(
      `  ${SPINNER[3]} ${'Build and push the image'.padEnd(31)}    12s  attempt 2, after: registry answered 503 · push registry: layer 2 of 3`);
    expect(lineOf(lines, 'Deploy to staging')).toMatch(/^ {2}· Deploy to staging$/);
    expect(lineOf(lines, 'gate')).toBe('  gate  not open yet; it opens after staging and needs 1 approval from alice, bob');
    // The spinner turns with the frame; nothing else does.
    const next = liveLines(s, { now: T0 + 13_400, frame: 4 });
    expect(lineOf(next, 'Build and push')).toContain(`${SPINNER[4]} Build and push the image`);
    expect(lines).toHaveLength(1 + STEP_NAMES.length + 1);
  });

  it('an open gate says what it still needs, who approved, the image and when it times out', () => {
    const done = (['resolve', 'preflight', 'tag', 'build', 'deployStaging', 'smoke'] as const).map((n, i) => step(n, 'succeeded', i, i + 1));
    const s = status(done, {
      stage: 'awaiting-approval',
      gate: gate({
        state: 'open', required: 2, openedAt: at(6), deadline: '2026-12-02T10:00:06Z', digest: DIGEST,
        approvals: [{ approver: 'alice', verified: false, at: at(30), via: 'update' }],
        needs: 'needs 1 more approval from bob',
      }),
    });
    const lines = liveLines(s, { now: T0 + 68_000 });
    expect(lines[0]).toBe('Release hello 1.2.3 · awaiting-approval · 1m08s');
    expect(lineOf(lines, 'gate')).toBe(
      '  gate  open for 1m02s: it needs 1 more approval from bob · approved by alice (1 of 2) · image sha256:ab12cd34ef56… · times out 2026-12-02 10:00:06Z');
    expect(lines.some((l) => SPINNER.some((f) => l.includes(f))), 'no step runs at the gate: no spinner').toBe(false);
  });

  it('an ended release: the outcome and its total time, every step\'s end, the gate as it closed, no spinner', () => {
    const names = ['resolve', 'preflight', 'tag', 'build', 'deployStaging', 'smoke', 'deployProduction', 'health', 'announce'] as const;
    const steps = names.map((n, i) => step(n, 'succeeded', i * 2, i * 2 + 1.5));
    steps.push(step('rollback', 'skipped', undefined, undefined, { error: 'production is healthy' }));
    const s = status(steps, {
      stage: 'done', outcome: 'succeeded', endedAt: at(75),
      gate: gate({ state: 'approved', approvals: [{ approver: 'bob', verified: true, at: at(12), via: 'signal' }], digest: DIGEST }),
    });
    const lines = liveLines(s, { now: T0 + 999_000, frame: 7 });
    expect(lines[0]).toBe('Release hello 1.2.3 · succeeded · 1m15s');
    expect(lineOf(lines, 'Health-check production')).toMatch(/✓ Health-check production\s+1\.5s$/);
    expect(lineOf(lines, 'Roll production back')).toMatch(/- Roll production back\s+skipped: production is healthy$/);
    expect(lineOf(lines, 'gate')).toBe('  gate  approved by bob · image sha256:ab12cd34ef56…');
    expect(lines.join('\n')).not.toMatch(new RegExp(`[${SPINNER.join('')}]`));
  });

  it('a failed step, a pending decision and a cancellation are in the block too; with colour only the style differs', () => {
    const s = status([step('resolve', 'succeeded', 0, 1), step('preflight', 'succeeded', 1, 2), step('tag', 'succeeded', 2, 3),
      step('build', 'failed', 3, 9, { attempts: 3, error: 'registry\n  unreachable' })], {
      stage: 'awaiting-decision',
      pendingDecision: { id: 'build#1', step: 'build', error: 'registry unreachable', openedAt: at(9), deadline: '2026-12-01T11:00:09Z' },
      cancellation: { requested: true, by: 'carol' },
    });
    const lines = liveLines(s, { now: T0 + 20_000 });
    expect(lineOf(lines, 'Build and push'), 'a message of several lines is one line in the block').toMatch(
      /✗ Build and push the image\s+6\.0s {2}failed after 3 attempts: registry unreachable$/);
    expect(lineOf(lines, '  decision')).toBe('  decision  Build and push the image failed after its retries: retry or abort before 2026-12-01 11:00:09Z');
    expect(lineOf(lines, 'cancellation')).toContain('cancellation requested by carol');
    const tty = Object.assign(Object.create(process.stdout) as NodeJS.WriteStream, { isTTY: true });
    const coloured = liveLines(s, { now: T0 + 20_000, style: styleFor(tty, {}) });
    expect(coloured.join('\n')).toContain('\x1b[');
    expect(coloured.map(visible)).toEqual(lines);
  });
});

describe('the live block on a terminal', () => {
  it('fitWidth cuts what the terminal shows, not the escape sequences', () => {
    expect(fitWidth('short', 10)).toBe('short');
    expect(fitWidth('0123456789abc', 10)).toBe('012345678…');
    const cut = fitWidth('\x1b[32m✓\x1b[39m 0123456789', 6);
    expect(visible(cut)).toBe('✓ 012…');
    expect(cut.endsWith('\x1b[0m')).toBe(true);
  });

  it('LiveBlock redraws in place, prints log lines above the block, and leaves the last block as it is', async () => {
    let written = '';
    const term: LiveTerminal = { write: (t) => void (written += t), columns: () => 40, rows: () => 30 };
    let n = 0;
    const block = new LiveBlock(term, () => [`count ${n}`, 'second line that is longer than forty columns, cut'], 60_000);
    block.start();
    expect(written).toBe('\x1b[?25lcount 0\nsecond line that is longer than forty …\n');
    written = '';
    block.draw();
    expect(written, 'nothing changed: nothing drawn').toBe('');
    n = 1;
    block.draw();
    expect(written).toBe('\x1b[2A\r\x1b[0Jcount 1\nsecond line that is longer than forty …\n');
    written = '';
    block.log('Waiting at the approval gate');
    block.log('  Approve:  gantry approve …');
    expect(written, 'lines printed together go above the block, drawn again once after them').toBe(
      '\x1b[2A\r\x1b[0JWaiting at the approval gate\n  Approve:  gantry approve …\n');
    await new Promise((r) => setImmediate(r));
    expect(written).toBe('\x1b[2A\r\x1b[0JWaiting at the approval gate\n  Approve:  gantry approve …\ncount 1\nsecond line that is longer than forty …\n');
    written = '';
    n = 2;
    block.stop();
    expect(written).toBe('\x1b[2A\r\x1b[0Jcount 2\nsecond line that is longer than forty …\n\x1b[?25h');
    written = '';
    block.log('Outcome: succeeded');
    block.draw();
    expect(written, 'after stop: plain lines below the block').toBe('Outcome: succeeded\n');
  });

  it('draws only on a TTY without NO_COLOR, TERM=dumb or --plain', () => {
    const tty = Object.assign(Object.create(process.stdout) as NodeJS.WriteStream, { isTTY: true, columns: 80, rows: 24 });
    const pipe = Object.assign(Object.create(process.stdout) as NodeJS.WriteStream, { isTTY: false });
    expect(liveTerminal(tty, { TERM: 'xterm' })?.columns()).toBe(80);
    expect(liveTerminal(tty, { NO_COLOR: '' })).toBeDefined();
    expect(liveTerminal(pipe, {})).toBeUndefined();
    expect(liveTerminal(tty, { NO_COLOR: '1' })).toBeUndefined();
    expect(liveTerminal(tty, { TERM: 'dumb' })).toBeUndefined();
    expect(liveTerminal(tty, {}, true)).toBeUndefined();
  });
});

// ---- the built CLI following a release on a real dev server ---------------------------------------------------

let env: TestWorkflowEnvironment | undefined;
let worker: Worker | undefined;
let workerRunning: Promise<void> | undefined;
let temporalEnv: Record<string, string> = {};
let dir = '';
let oneApproval = '';
/** Production deploy of 2.0.0 runs until the test lets it finish. */
let finishProduction: () => void = () => {};
const productionHeld = new Promise<void>((resolve) => (finishProduction = resolve));

/** `script` (util-linux, Debian's bsdutils) gives the CLI a real pseudo-terminal; without it the test fails, saying so. */
function requireScript(): void {
  try {
    execFileSync('script', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error('`script` (util-linux) is not installed: it runs the CLI on a pseudo-terminal for these tests. Install it with `apt-get install bsdutils`.');
  }
}

describe('following a release with the built CLI', () => {
  beforeAll(async () => {
    requireBuild();
    requireBinary(TEMPORAL_CLI, 'The Temporal CLI');
    env = await devServerEnv();
    dir = tempDir('gantry-polish-');
    oneApproval = writeConfig(dir, 'one.yaml');
    const routed = routedActivities({
      config: () => oneApproval,
      behaviour: (version) => (version === '2.0.0' ? { holdUntil: { 'deploy:production': productionHeld } } : {}),
    });
    ({ worker, running: workerRunning } = await startWorker(env, routed.activities));
    temporalEnv = { TEMPORAL_ADDRESS: env.address, TEMPORAL_NAMESPACE: 'default' };
  }, 120_000);

  // Releases of hello share its lanes: one a test left running would hold the next test's release in the queue.
  afterEach(() => endOpenReleases(env!.client));

  afterAll(async () => {
    finishProduction();
    worker?.shutdown();
    await workerRunning;
    await env?.teardown();
    removeTempDirs();
  });

  const cli = (args: string[], extraEnv: Record<string, string> = {}): Promise<CliResult> =>
    gantry(args, { env: { ...temporalEnv, ...extraEnv }, cwd: dir, timeoutMs: 60_000 });

  /**
   * `gantry <args>` on a pseudo-terminal of 120×40 (util-linux `script`), with colour, and otherwise as the
   * harness runs the CLI (nothing of the machine's Temporal or signing settings). Writing to `keys` types.
   */
  function onPty(args: string[]) {
    const command = `stty cols 120 rows 40; exec ${[process.execPath, BIN, ...args].map((a) => JSON.stringify(a)).join(' ')}`;
    const parentEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) =>
      !k.startsWith('TEMPORAL_') && !['GANTRY_CONFIG', 'GANTRY_SIGNING_KEY', 'SSH_AUTH_SOCK', 'NO_COLOR'].includes(k)));
    const child = spawn('script', ['-qfec', command, '/dev/null'], {
      cwd: dir,
      env: { ...parentEnv, ...temporalEnv, TERM: 'xterm-256color' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let raw = '';
    child.stdout.on('data', (b: Buffer) => (raw += b.toString()));
    child.stderr.on('data', (b: Buffer) => (raw += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    return { text: () => raw.replaceAll('\r\n', '\n'), exited, keys: child.stdin, kill: () => child.kill('SIGTERM') };
  }

  it('not a terminal: `start --wait` prints the plain lines, with no ANSI escape, even without NO_COLOR', async () => {
    const r = await cli(['start', 'hello', '1.0.0', '--config', oneApproval, '--wait', '--approve-as', 'alice'], { NO_COLOR: '', TERM: 'xterm-256color' });
    expect(r.code, show(r)).toBe(0);
    expect(r.stdout).toMatch(/^\[\d\d:\d\d:\d\d\] stage: awaiting-approval$/m);
    expect(r.stdout).toMatch(/✓ Build and push the image \(1 attempt, /);
    expect(r.stdout).toMatch(/✓ Deploy to production \(1 attempt, /);
    expect(r.stdout).toContain('Outcome: succeeded');
    expect(r.stdout + r.stderr).not.toContain('\x1b');
  });

  it('on a pseudo-terminal `status --follow` redraws the steps in place, spinner and gate included, and leaves the final block', async () => {
    requireScript();
    const started = await cli(['start', 'hello', '2.0.0', '--config', oneApproval, '--wait', '--stop-at-gate']);
    expect(started.code, show(started)).toBe(0);

    const { text, exited, kill } = onPty(['status', 'hello', '2.0.0', '--follow']);
    try {
      await waitFor('the live block with the open gate', async () => /gate\S*\s+\S*open for \S+: it needs 1 more approval from alice, bob or carol/.test(visible(text())));
      const approved = await cli(['approve', 'hello', '2.0.0', '--as', 'alice']);
      expect(approved.code, show(approved)).toBe(0);
      const spinning = new RegExp(`[${SPINNER.join('')}]\\S* Deploy to production`);
      await waitFor('the spinner on the production deploy', async () => spinning.test(visible(text())));
      const t0 = Date.now();
      const erasesBefore = text().split('\x1b[0J').length;
      await new Promise((r) => setTimeout(r, 1500));
      const redraws = text().split('\x1b[0J').length - erasesBefore;
      expect(redraws, 'redrawn while the step runs (spinner, clock), at most ~10 times a second').toBeGreaterThan(3);
      expect(redraws / ((Date.now() - t0) / 1000)).toBeLessThan(14);
      finishProduction();
      expect(await exited, text()).toBe(0);
    } finally {
      kill();
    }

    const out = text();
    if (process.env.GANTRY_POLISH_DUMP) writeFileSync(process.env.GANTRY_POLISH_DUMP, out);
    expect(out).toMatch(/\x1b\[\d+A\r\x1b\[0J/);
    // What stays on the screen: the last block, drawn after the last erase, then the closing lines.
    const finalBlock = visible(out.slice(out.lastIndexOf('\x1b[0J') + 4));
    expect(finalBlock).toMatch(/^Release hello 2\.0\.0 · succeeded · /);
    for (const title of ['Build and push the image', 'Deploy to production', 'Health-check production', 'Announce the release']) {
      expect(finalBlock).toMatch(new RegExp(`✓ ${title}\\s+\\d`));
    }
    expect(finalBlock).toContain('gate  approved by alice');
    expect(finalBlock).toMatch(/\nOutcome: succeeded: /);
    expect(finalBlock).not.toMatch(new RegExp(`[${SPINNER.join('')}]`));
    // The gate instructions were printed above the block, once, and stay.
    const all = visible(out);
    expect(all.split('Waiting at the approval gate: it needs 1 more approval from alice, bob or carol; approvers').length).toBe(2);
    expect(all).toContain('  Approve:  gantry approve hello 2.0.0 --as <name>');
    expect(all).toContain('✓ approved by alice via update');
    expect(all, 'no plain step lines on a terminal').not.toContain('] stage: ');
    expect(out).toContain('\x1b[?25h');
  }, 90_000);

  it('Ctrl-C on the terminal stops following: the last block stays, the cursor is back, the release keeps running', async () => {
    requireScript();
    const started = await cli(['start', 'hello', '3.0.0', '--config', oneApproval, '--wait', '--stop-at-gate']);
    expect(started.code, show(started)).toBe(0);
    const { text, exited, keys, kill } = onPty(['status', 'hello', '3.0.0', '--follow']);
    try {
      await waitFor('the live block with the open gate', async () => /gate\S*\s+\S*open for /.test(visible(text())));
      keys.write('\x03');
      expect(await exited, text()).toBe(130);
    } finally {
      kill();
    }
    const out = text();
    const after = out.slice(out.lastIndexOf('\x1b[0J') + 4);
    // The last block stays whole: its header, every step, and the gate line (however the Ctrl-C fell between redraws).
    const shown = visible(out);
    const last = shown.slice(shown.lastIndexOf('Release hello 3.0.0 · awaiting-approval'));
    expect(last).toMatch(/^Release hello 3\.0\.0 · awaiting-approval · /);
    for (const title of ['Resolve the plan on the worker', 'Smoke-check staging', 'Announce the release']) expect(last).toContain(title);
    expect(last).toMatch(/ {2}gate {2}open for /);
    expect(after).toContain('\x1b[?25h');
    expect(visible(after)).toMatch(/Stopped following at .*; the release keeps running on the server\. Follow it again with `gantry status hello 3\.0\.0 --follow`\./);
    const s = await cli(['status', 'hello', '3.0.0', '--json']);
    expect((JSON.parse(s.stdout) as ReleaseStatus).stage).toBe('awaiting-approval');
    expect((await cli(['cancel', 'hello', '3.0.0', '--as', 'carol'])).code).toBe(0);
  }, 90_000);
});
