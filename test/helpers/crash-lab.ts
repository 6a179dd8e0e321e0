/**
 * What the crash matrix (test/e2e/crash-matrix.test.ts) runs around the lab: `gantry worker` processes it can
 * SIGKILL, a dev server it can kill and restart on the same database, a slow HTTP check endpoint, a wrapper in
 * front of the lab's webhook receiver that can answer 500 or hold its answer, new lab revisions to release, and
 * the attempt timing read back from the workflow history. Everything here is a real process or a real HTTP
 * server; nothing stands in for a component of the release path.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import path from 'node:path';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { parse, stringify } from 'yaml';
import { parseConfig } from '../../src/config/load';
import type { GantryConfig } from '../../src/config/schema';
import { startDevServer, type DevServer } from '../../src/client/dev-server';
import type { Lab } from '../../src/lab/lab';
import { BIN } from '../cli/harness';
import { commitChange } from './lab';
import { freePort } from './ports';
import { TEMPORAL_CLI, requireBinary } from './servers';

// ---- gantry worker processes --------------------------------------------------------------------------------

export interface WorkerProcess {
  child: ChildProcess;
  pid: number;
  log(): string;
  /** Resolves once the worker polls its task queue. */
  polling(): Promise<void>;
  exited: Promise<void>;
}

/** Spawn `gantry worker` from the built CLI, as an operator runs it. */
export function spawnWorker(configFile: string, env: Record<string, string>): WorkerProcess {
  const child = spawn(process.execPath, [BIN, 'worker', '--config', configFile], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  let onPoll: (() => void) | undefined;
  const seen = new Promise<void>((resolve) => { onPoll = resolve; });
  const take = (d: Buffer) => {
    log += d.toString();
    if (log.includes('polling')) onPoll?.();
  };
  child.stdout?.on('data', take);
  child.stderr?.on('data', take);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    child,
    pid: child.pid!,
    log: () => log,
    polling: () => Promise.race([seen, exited.then(() => { throw new Error(`gantry worker exited before polling:\n${log.slice(-3000)}`); })]),
    exited,
  };
}

/** SIGKILL a worker this test started; returns when it is gone and when it was killed. */
export async function killWorker(w: WorkerProcess): Promise<number> {
  const at = Date.now();
  w.child.kill('SIGKILL');
  await w.exited;
  return at;
}

/** Stop a worker gracefully (SIGTERM), as at the end of a test. */
export async function stopWorker(w: WorkerProcess | undefined): Promise<void> {
  if (!w || w.child.exitCode !== null || w.child.signalCode !== null) return;
  w.child.kill('SIGTERM');
  const timer = setTimeout(() => w.child.kill('SIGKILL'), 20_000);
  await w.exited;
  clearTimeout(timer);
}

// ---- a dev server that can be killed and started again on the same database ---------------------------------

export interface RestartableServer {
  address: string;
  client: Client;
  /** SIGKILL the server process (no shutdown of any kind). */
  kill(): Promise<void>;
  /** Start it again on the same port and database file. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

export async function restartableDevServer(stateDir: string): Promise<RestartableServer> {
  const temporalCli = requireBinary(TEMPORAL_CLI, 'The Temporal CLI (dev server)');
  const port = await freePort();
  const uiPort = await freePort();
  const opts = { temporalCli, ip: '127.0.0.1', port, uiPort, stateDir, namespace: 'default', readyTimeoutMs: 90_000 };
  let server: DevServer = await startDevServer(opts);
  const connection = await Connection.connect({ address: server.address });
  const client = new Client({ connection, namespace: 'default' });
  return {
    address: server.address,
    client,
    kill: async () => {
      const exited = new Promise((r) => server.child.once('exit', r));
      server.child.kill('SIGKILL');
      await exited;
    },
    start: async () => {
      server = await startDevServer(opts);
    },
    stop: async () => {
      await connection.close().catch(() => undefined);
      await server.stop();
    },
  };
}

// ---- HTTP: a slow check endpoint and a wrapper around the webhook receiver ----------------------------------

async function listen(server: http.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return (server.address() as net.AddressInfo).port;
}

function close(server: http.Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A check endpoint per environment (`/staging`, `/production`) that answers 200 `ok`, at once, or after
 * `hold[env]` ms: a smoke or health check that takes a while, so a worker can be killed in the middle of one.
 */
export interface SlowEndpoint {
  url(env: string): string;
  hold: Record<string, number>;
  hits: { env: string; time: number }[];
  /** Resolves at the next request for `env`. */
  nextHit(env: string): Promise<number>;
  close(): Promise<void>;
}

export async function slowEndpoint(): Promise<SlowEndpoint> {
  const hits: SlowEndpoint['hits'] = [];
  const hold: Record<string, number> = {};
  const waiters: { env: string; resolve: (t: number) => void }[] = [];
  const server = http.createServer((req, res) => {
    const env = (req.url ?? '/').slice(1);
    const time = Date.now();
    hits.push({ env, time });
    for (const w of waiters.splice(0).filter((x) => (x.env === env ? (x.resolve(time), false) : true))) waiters.push(w);
    const ms = hold[env] ?? 0;
    void wait(ms).then(() => { if (!res.destroyed) res.writeHead(200, { 'content-type': 'text/plain' }).end('ok'); });
  });
  const port = await listen(server);
  return {
    url: (env) => `http://127.0.0.1:${port}/${env}`,
    hold,
    hits,
    nextHit: (env) => new Promise((resolve) => waiters.push({ env, resolve })),
    close: () => close(server),
  };
}

/**
 * In front of the lab's webhook receiver (src/lab/webhook.ts, which always answers 200): answers 500 to the next
 * `failNext` requests without passing them on, or passes a request on and then holds its answer `holdMs` (the
 * receiver has the message; the sender does not know yet). What arrived is counted at the receiver itself.
 */
export interface WebhookWrapper {
  url: string;
  failNext: number;
  holdMs: number;
  /** Requests answered 500. */
  failed: number;
  /** Resolves when the next request has been passed on to the receiver. */
  nextForwarded(): Promise<number>;
  close(): Promise<void>;
}

export async function wrapWebhook(target: string): Promise<WebhookWrapper> {
  const waiters: ((t: number) => void)[] = [];
  const w: Omit<WebhookWrapper, 'url' | 'close' | 'nextForwarded'> = { failNext: 0, holdMs: 0, failed: 0 };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (w.failNext > 0) {
        w.failNext -= 1;
        w.failed += 1;
        res.writeHead(500, { 'content-type': 'text/plain' }).end('internal_error');
        return;
      }
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && !['host', 'content-length', 'connection'].includes(k)) headers[k] = v;
      void fetch(target, { method: req.method ?? 'POST', headers, body: Buffer.concat(chunks) }).then(async (answer) => {
        const text = await answer.text();
        for (const resolve of waiters.splice(0)) resolve(Date.now());
        if (w.holdMs > 0) await wait(w.holdMs);
        if (!res.destroyed) res.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? 'text/plain' }).end(text);
      }, () => {
        if (!res.destroyed) res.writeHead(502).end('receiver down');
      });
    });
  });
  const port = await listen(server);
  const token = new URL(target).pathname;
  return Object.assign(w, {
    url: `http://127.0.0.1:${port}${token}`,
    nextForwarded: () => new Promise<number>((resolve) => waiters.push(resolve)),
    close: () => close(server),
  });
}

// ---- the worker's config and the revisions to release -------------------------------------------------------

export interface ConfigVariant {
  /** Preflight runs `sleep 3` as the repository's tests, in a container of the lab's base image. */
  slowTests?: boolean;
  /** Staging checks only /version, so a revision without /health reaches production (the rollback demo). */
  stagingVersionOnly?: boolean;
}

/**
 * Write the worker's release config: the lab's, with a `slow` check on each environment (the slow endpoint;
 * answering at once unless held) and the variant's changes. The worker reads it again for every release.
 */
export function writeWorkerConfig(lab: Lab, file: string, slow: SlowEndpoint, variant: ConfigVariant = {}): void {
  const doc = parse(lab.configYaml) as GantryConfig;
  const svc = doc.services.hello!;
  for (const [name, e] of Object.entries(svc.environments)) {
    if (variant.stagingVersionOnly && name === 'staging') e.checks = e.checks.filter((c) => c.name === 'version');
    e.checks.push({ name: 'slow', url: slow.url(name), expect: { status: 200 } } as (typeof e.checks)[number]);
  }
  if (variant.slowTests) {
    Object.assign(svc.repo, { testCommand: 'sleep 3', testRunner: { kind: 'container', image: lab.baseImage, socketPath: lab.engine.socketPath } });
  }
  const text = `# The crash matrix's worker config (test/helpers/crash-lab.ts), from the lab's.\n${stringify(doc)}`;
  parseConfig(text, file);
  writeFileSync(file, text);
}

/** Releases of new versions: each a commit on top of the last (version files and a CHANGELOG section), made `main`. */
export class Revisions {
  private head: string;
  private patch = 0;
  constructor(private readonly lab: Lab) {
    this.head = lab.repo.good.commit;
  }

  /** The next version's commit, on main. `broken`: its /health answers 404. */
  next(opts: { broken?: boolean } = {}): { version: string; commit: string } {
    this.patch += 1;
    const version = `1.0.${this.patch}`;
    const commit = commitChange(this.lab, this.head, `hello ${version}${opts.broken ? ' (drops /health)' : ''}`, (tree) => {
      const pkgFile = path.join(tree, 'package.json');
      writeFileSync(pkgFile, `${JSON.stringify({ ...JSON.parse(readFileSync(pkgFile, 'utf8')), version }, null, 2)}\n`);
      writeFileSync(path.join(tree, 'version.json'), `${JSON.stringify({ version })}\n`);
      const changelog = path.join(tree, 'CHANGELOG.md');
      writeFileSync(changelog, readFileSync(changelog, 'utf8').replace(/\n## /, `\n## [${version}] - 2026-12-01\n\n### Changed\n- Release ${version} of the crash matrix.\n\n## `));
      if (opts.broken) rmSync(path.join(tree, 'www', 'health'), { force: true });
    });
    this.lab.repo.moveBranch('main', commit);
    // A broken revision is released once; the next good one goes on top of the last good one.
    if (!opts.broken) this.head = commit;
    return { version, commit };
  }
}

// ---- attempt timing from the workflow history ---------------------------------------------------------------

type Timestamp = { seconds?: { toString(): string } | number | null; nanos?: number | null } | null | undefined;

/** A protobuf timestamp (seconds as a Long) in milliseconds since the epoch. */
function ms(t: Timestamp): number {
  if (!t) return 0;
  return Number((t.seconds ?? 0).toString()) * 1000 + Math.round((t.nanos ?? 0) / 1e6);
}

/** The activity running when a worker was killed, as the server saw it. */
export interface RunningActivity {
  activityId: string;
  type: string;
  attempt: number;
  worker: string;
}

/** The release's activities pending on the server now (scheduled or started). */
export async function runningActivities(handle: WorkflowHandle): Promise<RunningActivity[]> {
  const d = await handle.describe();
  return (d.raw.pendingActivities ?? [])
    .map((a) => ({ activityId: a.activityId ?? '', type: a.activityType?.name ?? '', attempt: a.attempt ?? 0, worker: a.lastWorkerIdentity ?? '' }));
}

/**
 * When the attempt after `killed` of the same activity started, from the history (the start event of a retried
 * activity carries its attempt and its start time); undefined when no later attempt started.
 */
export async function nextAttemptStart(handle: WorkflowHandle, killed: RunningActivity): Promise<{ attempt: number; at: number } | undefined> {
  const history = await handle.fetchHistory();
  const events = history.events ?? [];
  const scheduled = events.find((e) => e.activityTaskScheduledEventAttributes?.activityId === killed.activityId);
  if (!scheduled) return undefined;
  const started = events.find((e) => e.activityTaskStartedEventAttributes && Number(e.activityTaskStartedEventAttributes.scheduledEventId) === Number(scheduled.eventId));
  const attempt = started?.activityTaskStartedEventAttributes?.attempt ?? 0;
  if (!started || attempt <= killed.attempt) return undefined;
  return { attempt, at: ms(started.eventTime) };
}
