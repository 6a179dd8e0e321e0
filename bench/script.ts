/**
 * `npm run bench -- script [--pairs 3] [--target 1.25]`: a real release of the lab's `hello 1.0.0` through
 * gantry against the same runbook as a plain shell script (bench/release-script.sh).
 *
 * Each pair runs both, alternating which goes first, each on a fresh lab from the same start (lab directory
 * purged, the lab's images removed from the engine, a new lab started) so neither finds the other's tag,
 * registry blobs or containers. gantry runs as a user runs it: `gantry dev` (a fresh dev server, SQLite in a
 * file, and the worker) is started and ready first, then `gantry start hello 1.0.0 --wait --approve-as alice`
 * is timed from its exec to its exit. The script is timed the same way. Prints both medians, their ratio against
 * the target, and where gantry's time went, from the workflow history of each run: per step, the gap before it
 * was scheduled (the workflow task that decided it, or the approval), scheduled → started (the wait for a worker)
 * and started → completed (the step itself), next to the script's time for the same step.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { cleanupLab, startLab, WEBHOOK_ENV, type Lab } from '../src/lab';
import { freePort } from '../src/lab/daemon';
import { releaseWorkflowId } from '../src/shared/release';
import { breakdown, type Breakdown } from './lib/history';
import { spawnProcess, timeCommand } from './lib/proc';
import { median, row, verdict } from './lib/stats';

const ROOT = path.resolve(__dirname, '..');
/** The installed command, as a user runs it (bin/gantry: the launcher in front of bin/gantry.js). */
const BIN = path.join(ROOT, 'bin', 'gantry');
const VERSION = '1.0.0';

export interface ScriptOptions {
  pairs: number;
  target: number;
  labDir?: string;
  write: (line: string) => void;
}

/** The environment of a command the bench runs: the machine's, without Temporal settings or an ssh-agent. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TEMPORAL_') && !['GANTRY_CONFIG', 'GANTRY_SIGNING_KEY', 'SSH_AUTH_SOCK'].includes(k)));
  return { ...base, NO_COLOR: '1', ...extra };
}

async function freshLab(dir: string): Promise<Lab> {
  await cleanupLab(dir, { purge: true, quiet: true });
  return startLab({ dir });
}

/** The script's own step marks (`<epoch seconds> <step>` on stderr) as durations per step. */
function scriptSteps(output: string): Record<string, number> {
  const marks = [...output.matchAll(/^(\d+\.\d+) (\w+)$/gm)].map((m) => ({ at: Number(m[1]) * 1000, step: m[2]! }));
  const steps: Record<string, number> = {};
  for (let i = 0; i + 1 < marks.length; i++) steps[marks[i]!.step] = marks[i + 1]!.at - marks[i]!.at;
  return steps;
}

async function runScript(lab: Lab): Promise<{ ms: number; steps: Record<string, number> }> {
  const r = await timeCommand('bash', [path.join(__dirname, 'release-script.sh'), lab.dir, VERSION], { env: cleanEnv(lab.env) });
  if (r.code !== 0) throw new Error(`bench/release-script.sh failed (exit ${r.code}):\n${r.output.slice(-3000)}`);
  return { ms: r.ms, steps: scriptSteps(r.output) };
}

interface GantryRun {
  ms: number;
  history: Breakdown;
  /** The CLI's exec → the workflow's start (server time), and the workflow's end → the CLI's exit. */
  cliBeforeMs: number;
  cliAfterMs: number;
}

async function runGantry(lab: Lab): Promise<GantryRun> {
  const stateDir = mkdtempSync(path.join(os.tmpdir(), 'gantry-bench-dev-'));
  const port = await freePort();
  const uiPort = await freePort();
  const dev = spawnProcess(BIN, ['dev', '--port', String(port), '--ui-port', String(uiPort), '--state-dir', stateDir, '--config', lab.configFile],
    { env: cleanEnv(lab.env) });
  try {
    await dev.waitFor(/gantry worker: polling/, 120_000);
    const address = `127.0.0.1:${port}`;
    const keys = path.join(lab.dir, 'keys');
    const t0 = Date.now();
    const r = await timeCommand(BIN, ['start', 'hello', VERSION, '--config', lab.configFile, '--wait', '--requested-by', 'operator',
      '--key', path.join(keys, 'operator'), '--approve-as', 'alice', '--approve-key', path.join(keys, 'alice'), '--reason', 'npm run bench -- script'],
    { env: cleanEnv({ TEMPORAL_ADDRESS: address }) });
    const t1 = t0 + r.ms;
    if (r.code !== 0) throw new Error(`gantry start … --wait exited ${r.code}:\n${r.output.slice(-3000)}\n--- gantry dev\n${dev.output().slice(-3000)}`);
    const connection = await Connection.connect({ address });
    try {
      const client = new Client({ connection });
      const history = breakdown((await client.workflow.getHandle(releaseWorkflowId('hello', VERSION)).fetchHistory()).events ?? []);
      return { ms: r.ms, history, cliBeforeMs: history.startedMs - t0, cliAfterMs: history.endedMs !== undefined ? t1 - history.endedMs : NaN };
    } finally {
      await connection.close();
    }
  } finally {
    await dev.stop(30_000);
    rmSync(stateDir, { recursive: true, force: true });
  }
}

/** From the gate opening to the workflow taking the CLI's approval (--approve-as). */
function gateToApprovalMs(h: Breakdown): number | undefined {
  return h.gateOpenedMs !== undefined && h.approvalMs !== undefined ? h.approvalMs - h.gateOpenedMs : undefined;
}

/** Which script step covers which gantry step (the script's announce is its webhook message and audit line). */
const SCRIPT_STEP: Record<string, string> = {
  preflight: 'preflight', tag: 'tag', build: 'build', 'deploy:staging': 'staging', 'deploy:production': 'production', health: 'health',
  announce: 'announce', 'announceChannel:webhook': 'announce',
};

export async function scriptBench(opts: ScriptOptions): Promise<{ code: number; figures: Record<string, number> }> {
  const { write } = opts;
  const dir = path.resolve(opts.labDir ?? path.join(ROOT, '.gantry', 'bench-lab'));
  const scriptMs: number[] = [];
  const gantryMs: number[] = [];
  const gantryRuns: GantryRun[] = [];
  const scriptRuns: Record<string, number>[] = [];
  write(`script: ${opts.pairs} pairs, each run on a fresh lab in ${dir} (${WEBHOOK_ENV} from the lab)`);
  for (let i = 0; i < opts.pairs; i++) {
    const order = i % 2 === 0 ? (['script', 'gantry'] as const) : (['gantry', 'script'] as const);
    for (const which of order) {
      const lab = await freshLab(dir);
      try {
        if (which === 'script') {
          const r = await runScript(lab);
          scriptMs.push(r.ms);
          scriptRuns.push(r.steps);
          write(`  pair ${i + 1}: script ${(r.ms / 1000).toFixed(2)} s`);
        } else {
          const r = await runGantry(lab);
          gantryMs.push(r.ms);
          gantryRuns.push(r);
          write(`  pair ${i + 1}: gantry ${(r.ms / 1000).toFixed(2)} s (CLI exec → started ${r.cliBeforeMs.toFixed(0)} ms; gate open → approval taken ${gateToApprovalMs(r.history)?.toFixed(0) ?? '?'} ms)`);
        }
      } finally {
        await lab.stop({ removeImages: true });
      }
    }
  }
  await cleanupLab(dir, { purge: true, quiet: true });

  const ratio = median(gantryMs) / median(scriptMs);
  write(`\nrelease of hello ${VERSION} on the lab, ${opts.pairs} of each (medians; the machine is shared, so expect noise)`);
  write(row('bash bench/release-script.sh', scriptMs));
  write(row('gantry start --approve-as alice --wait', gantryMs));
  write(`  gantry / script: ${verdict(ratio, opts.target)}`);

  // Where gantry's time went: medians per step over the runs.
  const names = gantryRuns[0]?.history.activities.map((a) => a.name) ?? [];
  const med = (f: (r: GantryRun) => number | undefined): string => {
    const xs = gantryRuns.map(f).filter((x): x is number => x !== undefined && Number.isFinite(x));
    return xs.length ? median(xs).toFixed(0).padStart(7) : '      -';
  };
  write('\n  gantry per step (ms, medians)        gap before   sched→start   start→done   script');
  write(`  ${'CLI exec → workflow started'.padEnd(36)} ${med((r) => r.cliBeforeMs)}`);
  write(`  ${'  first workflow task'.padEnd(36)}         ${med((r) => r.history.firstTask?.queueMs)}      ${med((r) => r.history.firstTask?.runMs)}`);
  names.forEach((name, idx) => {
    const at = (r: GantryRun) => r.history.activities[idx];
    const script = SCRIPT_STEP[name];
    const sm = script ? scriptRuns.map((s) => s[script]).filter((x): x is number => x !== undefined) : [];
    write(`  ${name.padEnd(36)} ${med((r) => at(r)?.gapBeforeMs)}       ${med((r) => at(r)?.queueMs)}      ${med((r) => at(r)?.runMs)}   ${sm.length ? median(sm).toFixed(0).padStart(6) : '     -'}`);
  });
  write(`  ${'last step → workflow completed'.padEnd(36)} ${med((r) => r.history.tailMs)}`);
  write(`  ${'workflow completed → CLI exit'.padEnd(36)} ${med((r) => r.cliAfterMs)}`);
  const orchestration = gantryRuns.map((r) => r.history.activities.reduce((s, a) => s + a.gapBeforeMs + (a.queueMs ?? 0), 0));
  const gate = gantryRuns.map((r) => r.history.activities.find((a) => a.name === 'deploy:production')?.gapBeforeMs ?? NaN);
  write(`  orchestration (gaps + waits for a worker, all steps): median ${median(orchestration).toFixed(0)} ms, of which the gate ` +
    `(smoke done → production deploy scheduled, with the approval) ${median(gate.filter(Number.isFinite)).toFixed(0)} ms`);
  // The steps' own run times alone: what gantry would take with a CLI and an orchestration that cost nothing.
  const stepsAlone = gantryRuns.map((r) => r.history.activities.reduce((sum, a) => sum + (a.runMs ?? 0), 0));
  write(`  steps alone (start→done of every step, no CLI, no orchestration): median ${median(stepsAlone).toFixed(0)} ms, ` +
    `${(median(stepsAlone) / median(scriptMs)).toFixed(2)}× the whole script: the floor of the ratio with these steps`);
  return {
    code: 0,
    figures: {
      'script.script': median(scriptMs), 'script.gantry': median(gantryMs), 'script.ratio': ratio, 'script.orchestration': median(orchestration),
      'script.stepsAlone': median(stepsAlone),
    },
  };
}

