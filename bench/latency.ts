/**
 * `npm run bench -- latency [--runs 7]`: what the user waits for, each next to its reference on the same server.
 *
 *   approval    the `approve` update sent → the production deploy step starts, against a bare signal sent → a
 *               no-op activity starts (a workflow waiting on a signal); target ≤ 2×
 *   status      `gantry status hello <v>` wall time (through the server's HTTP API, as against `gantry dev`; and
 *               over gRPC) against `temporal workflow query --type status` on the same parked release; target ≤ 1.5×
 *   start-up    `gantry --version` and `gantry --help` wall time, against `node -e 0`
 *   cold start  `gantry worker` exec → polling, with the prebuilt bundle against bundling at start (GANTRY_DEV=1),
 *               and the idle worker's RSS
 *
 * One dev server as `gantry dev` starts it (SQLite in a file, eager activities); the release workflow runs with no-op steps in this
 * process's worker (bench/lib/noop-activities.ts), the CLI and the Temporal CLI as child processes.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as pause } from 'node:timers/promises';
import { Worker } from '@temporalio/worker';
import { approveUpdate, releaseWorkflowId, startSearchAttributes, statusQuery } from '../src/shared/release';
import { sampleInput, SAMPLE_CONFIG_YAML, startRequestFor } from '../test/helpers/fixtures';
import { TEMPORAL_CLI } from '../test/helpers/servers';
import type { releaseWorkflow } from '../src/workflows';
import { goSignal } from './bare-workflow';
import { benchServer } from './floor';
import { noopReleaseActivities } from './lib/noop-activities';
import { rssOf, spawnProcess, timeCommand } from './lib/proc';
import { median, row, verdict } from './lib/stats';
import { freePort } from '../src/lab/daemon';

const ROOT = path.resolve(__dirname, '..');
/** The installed command, as a user runs it (bin/gantry: the launcher in front of bin/gantry.js). */
const BIN = path.join(ROOT, 'bin', 'gantry');
const TASK_QUEUE = 'gantry-bench-latency';

/** The bench's environment for a command, with `extra` on top (an undefined value removes that variable). */
function cliEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TEMPORAL_') && !['GANTRY_CONFIG', 'SSH_AUTH_SOCK'].includes(k)));
  const env: NodeJS.ProcessEnv = { ...base, NO_COLOR: '1', ...extra };
  for (const [k, v] of Object.entries(extra)) if (v === undefined) delete env[k];
  return env;
}

async function times(runs: number, fn: () => Promise<number>): Promise<number[]> {
  await fn(); // warm the page cache and the server
  const xs: number[] = [];
  for (let i = 0; i < runs; i++) xs.push(await fn());
  return xs;
}

export async function latencyBench(opts: { runs: number; write: (line: string) => void }): Promise<{ code: number; figures: Record<string, number> }> {
  const { runs, write } = opts;
  const figures: Record<string, number> = {};
  // The HTTP API on a known port, as `gantry dev` serves it (`gantry status` reads through it: src/cli/quick-status.ts).
  const httpPort = await freePort();
  const server = await benchServer({ file: true, dynamicConfig: { 'system.enableActivityEagerExecution': 'true' }, httpPort });
  const env = server.env;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-bench-latency-'));
  try {
    const deployStarted = new Map<string, () => void>();
    const smoked = new Map<string, () => void>();
    const worker = await Worker.create({
      connection: env.nativeConnection,
      namespace: 'default',
      taskQueue: TASK_QUEUE,
      workflowsPath: path.join(__dirname, 'workflows.ts'),
      activities: noopReleaseActivities({
        onCall: (name, workflowId) => { if (name === 'deploy:production' || name === 'noop') deployStarted.get(workflowId)?.(); },
        onSmoke: (workflowId) => smoked.get(workflowId)?.(),
      }),
    });
    // The no-op activity of the reference workflow has no workflow id in its input: the activity context has it.
    const client = env.client;
    let seq = 0;

    /** Park a release at the gate; resolves with its workflow id once the gate is open. */
    const park = async (): Promise<string> => {
      seq += 1;
      const version = `4.0.${seq}`;
      const input = sampleInput({ version });
      const workflowId = releaseWorkflowId('hello', version);
      const atGate = new Promise<void>((resolve) => smoked.set(workflowId, resolve));
      await client.workflow.start<typeof releaseWorkflow>('releaseWorkflow', {
        taskQueue: TASK_QUEUE, workflowId, args: [startRequestFor(input)], typedSearchAttributes: startSearchAttributes(input),
      });
      await atGate;
      const handle = client.workflow.getHandle<typeof releaseWorkflow>(workflowId);
      for (let i = 0; i < 200 && (await handle.query(statusQuery)).gate?.state !== 'open'; i++) await pause(10);
      return workflowId;
    };

    await worker.runUntil(async () => {
      // --- approval → production deploy, against signal → activity -------------------------------------------
      const approvalMs = await times(runs, async () => {
        const workflowId = await park();
        const started = new Promise<number>((resolve) => deployStarted.set(workflowId, () => resolve(performance.now())));
        const t0 = performance.now();
        await client.workflow.getHandle<typeof releaseWorkflow>(workflowId).executeUpdate(approveUpdate, { args: [{ approver: 'alice', reason: 'bench' }] });
        return (await started) - t0;
      });
      const signalMs = await times(runs, async () => {
        seq += 1;
        const workflowId = `bench-signal-${seq}`;
        const handle = await client.workflow.start('signalThenActivityWorkflow', { taskQueue: TASK_QUEUE, workflowId });
        await pause(300); // let it reach its wait
        const started = new Promise<number>((resolve) => deployStarted.set('', () => resolve(performance.now())));
        const t0 = performance.now();
        await handle.signal(goSignal);
        const ms = (await started) - t0;
        await handle.result();
        return ms;
      });
      write(row('approve update → production deploy starts', approvalMs));
      write(row('bare signal → activity starts (reference)', signalMs));
      figures['latency.approval'] = median(approvalMs);
      figures['latency.signal'] = median(signalMs);
      write(`  approval / reference: ${verdict(median(approvalMs) / median(signalMs), 2)}`);

      // --- gantry status against temporal workflow query ------------------------------------------------------
      const parked = await park();
      const version = parked.replace('release-hello-', '');
      const address = env.address;
      const status = (http: string) => async () => {
        const r = await timeCommand(BIN, ['status', 'hello', version], { env: cliEnv({ TEMPORAL_ADDRESS: address, GANTRY_HTTP_API: http }) });
        if (r.code !== 0) throw new Error(`gantry status exited ${r.code}: ${r.output}`);
        return r.ms;
      };
      const statusMs = await times(runs, status(`http://127.0.0.1:${httpPort}`));
      const grpcStatusMs = await times(runs, status('off'));
      const queryMs = await times(runs, async () => {
        const r = await timeCommand(TEMPORAL_CLI, ['workflow', 'query', '--address', address, '--workflow-id', parked, '--type', 'status'], { env: cliEnv() });
        if (r.code !== 0) throw new Error(`temporal workflow query exited ${r.code}: ${r.output}`);
        return r.ms;
      });
      write(row('gantry status hello <v>', statusMs));
      write(row('… over gRPC (GANTRY_HTTP_API=off)', grpcStatusMs));
      write(row('temporal workflow query --type status', queryMs));
      figures['latency.status'] = median(statusMs);
      figures['latency.statusGrpc'] = median(grpcStatusMs);
      figures['latency.query'] = median(queryMs);
      write(`  status / query: ${verdict(median(statusMs) / median(queryMs), 1.5)}`);
    });

    // --- CLI start-up ---------------------------------------------------------------------------------------------
    const run = (cmd: string, args: string[], extra: Record<string, string | undefined> = {}) => async () => (await timeCommand(cmd, args, { env: cliEnv(extra) })).ms;
    const versionMs = await times(runs, run(BIN, ['--version']));
    const helpMs = await times(runs, run(BIN, ['--help']));
    const nodeMs = await times(runs, run(process.execPath, ['-e', '0']));
    write(row('gantry --version', versionMs));
    write(row('gantry --help', helpMs));
    write(row('node -e 0 (reference)', nodeMs));
    figures['latency.version'] = median(versionMs);
    figures['latency.help'] = median(helpMs);
    figures['latency.node'] = median(nodeMs);
    // Where NODE_EXTRA_CA_CERTS is set, node parses its whole root store at every start; bin/gantry spares the
    // commands that open no TLS connection that cost (docs/performance.md). Shown so the two can be told apart.
    if (process.env.NODE_EXTRA_CA_CERTS) {
      const bareMs = await times(runs, run(process.execPath, ['-e', '0'], { NODE_EXTRA_CA_CERTS: undefined }));
      write(row('node -e 0 without NODE_EXTRA_CA_CERTS', bareMs));
      figures['latency.nodeNoExtraCa'] = median(bareMs);
    }
    // What any Node CLI starts from, against the Go CLI's query (with NODE_EXTRA_CA_CERTS set, node -e 0 alone was
    // 1.5–1.8× it here; without, about 0.5×: docs/performance.md).
    if (figures['latency.query']) {
      const floor = median(nodeMs) / figures['latency.query'];
      write(`  node -e 0 / temporal workflow query: ${floor.toFixed(2)} (a Node CLI's floor against the 1.5× status target); ` +
        `gantry status / node -e 0: ${(figures['latency.status']! / median(nodeMs)).toFixed(2)}`);
    }

    // --- worker cold start --------------------------------------------------------------------------------------
    const config = path.join(dir, 'gantry.yaml');
    writeFileSync(config, SAMPLE_CONFIG_YAML);
    let idleRss = NaN;
    const coldStart = (extra: Record<string, string>) => async (): Promise<number> => {
      const t0 = performance.now();
      const p = spawnProcess(BIN, ['worker', '--config', config], { env: cliEnv({ TEMPORAL_ADDRESS: env.address, ...extra }) });
      try {
        await p.waitFor(/gantry worker: polling/, 180_000);
        const ms = performance.now() - t0;
        await pause(500);
        idleRss = rssOf(p.child.pid!).rssMb;
        return ms;
      } finally {
        await p.stop();
      }
    };
    const prebuilt = await times(Math.min(runs, 5), coldStart({}));
    const prebuiltRss = idleRss;
    const bundling = await times(Math.min(runs, 3), coldStart({ GANTRY_DEV: '1' }));
    write(row('gantry worker exec → polling, prebuilt bundle', prebuilt));
    write(row('gantry worker exec → polling, bundling at start', bundling));
    write(`  idle gantry worker RSS (prebuilt bundle): ${prebuiltRss.toFixed(0)} MB`);
    figures['latency.coldPrebuilt'] = median(prebuilt);
    figures['latency.coldBundling'] = median(bundling);
    figures['latency.idleWorkerRss'] = prebuiltRss;
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await server.dispose();
  }
  return { code: 0, figures };
}
