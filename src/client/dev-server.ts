/**
 * The embedded Temporal dev server behind `gantry dev`: the official Temporal CLI's `server start-dev`, with its
 * data in a file (releases survive restarts), gantry's search attributes, updates enabled, bound to loopback.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync, readFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Connection } from '@temporalio/client';
import { SEARCH_ATTRIBUTES } from '../shared/release';
import { ensureSearchAttributes, type RegistrationResult } from './search-attributes';
import { UsageError } from './errors';

/** The Temporal CLI: GANTRY_TEMPORAL_CLI, else where scripts/provision.sh puts it. */
export function findTemporalCli(env: NodeJS.ProcessEnv = process.env): string {
  const cache = env.GANTRY_CACHE ?? path.join(os.homedir(), '.cache', 'gantry');
  const file = env.GANTRY_TEMPORAL_CLI ?? path.join(cache, 'bin', 'temporal');
  if (!existsSync(file)) {
    throw new UsageError(
      `The Temporal CLI is not at ${file}. Install it with \`bash scripts/provision.sh\` (builds it once, then cached), ` +
        'or set GANTRY_TEMPORAL_CLI to a `temporal` binary.',
    );
  }
  return file;
}

/** Where `gantry dev` keeps the server's database and log: GANTRY_STATE_DIR, else $XDG_STATE_HOME/gantry. */
export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.GANTRY_STATE_DIR) return env.GANTRY_STATE_DIR;
  return path.join(env.XDG_STATE_HOME ?? path.join(os.homedir(), '.local', 'state'), 'gantry');
}

export interface DevServerOptions {
  temporalCli: string;
  ip: string;
  port: number;
  uiPort: number;
  /** Port of the server's HTTP API (`gantry status` reads through it without the SDK: src/cli/quick-status.ts); without it, the server picks a free one. */
  httpPort?: number;
  stateDir: string;
  namespace: string;
  /** How long to wait for the server to answer. */
  readyTimeoutMs?: number;
  /** Aborted (Ctrl-C) while starting: the server is stopped and start-up fails with {@link DevServerInterrupted}. */
  signal?: AbortSignal;
}

export class DevServerInterrupted extends Error {
  override readonly name = 'DevServerInterrupted';
}

export interface DevServer {
  address: string;
  uiUrl: string;
  dbFile: string;
  logFile: string;
  registration: RegistrationResult;
  child: ChildProcess;
  /** Stop the server (SIGTERM, then SIGKILL after a grace period) and wait for it to exit. */
  stop(): Promise<void>;
}

function portAnswers(ip: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: ip, port });
    const done = (v: boolean) => {
      socket.destroy();
      resolve(v);
    };
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
    socket.setTimeout(1000, () => done(false));
  });
}

function tail(file: string, lines = 8): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Fail early, naming the flag, when a port is taken (another `gantry dev`, another Temporal server). */
export async function ensurePortsFree(ip: string, ports: (readonly [flag: string, port: number])[]): Promise<void> {
  for (const [flag, port] of ports) {
    if (await portAnswers(ip, port)) {
      throw new UsageError(`Something already listens on ${ip}:${port} (${flag}). Stop it (another \`gantry dev\`?) or pick a free port with ${flag}.`);
    }
  }
}

export async function startDevServer(opts: DevServerOptions): Promise<DevServer> {
  await ensurePortsFree(opts.ip, [['--port', opts.port], ['--ui-port', opts.uiPort], ...(opts.httpPort ? [['--http-port', opts.httpPort] as const] : [])]);
  mkdirSync(opts.stateDir, { recursive: true });
  const dbFile = path.join(opts.stateDir, 'temporal.db');
  const logFile = path.join(opts.stateDir, 'temporal.log');
  const log = openSync(logFile, 'a');
  const args = [
    'server', 'start-dev',
    '--ip', opts.ip,
    '--port', String(opts.port),
    '--ui-port', String(opts.uiPort),
    ...(opts.httpPort ? ['--http-port', String(opts.httpPort)] : []),
    '--db-filename', dbFile,
    '--namespace', opts.namespace,
    '--log-level', 'warn',
    ...SEARCH_ATTRIBUTES.flatMap((k) => ['--search-attribute', `${k.name}=Keyword`]),
    '--dynamic-config-value', 'frontend.enableUpdateWorkflowExecution=true',
    // Eager activities: a step the workflow task schedules comes back to the same worker in the task's answer,
    // instead of waiting for a poll (docs/performance.md: scheduled → started 20–40 ms → 0).
    '--dynamic-config-value', 'system.enableActivityEagerExecution=true',
  ];
  // Its own process group: Ctrl-C in the terminal reaches gantry only, which stops the worker before the server.
  const child = spawn(opts.temporalCli, args, { detached: true, stdio: ['ignore', log, log] });
  closeSync(log);
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exit = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = { code, signal };
      resolve();
    });
  });
  const killOnExit = () => {
    if (!exited) child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);

  const stop = async () => {
    process.removeListener('exit', killOnExit);
    if (exited) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exit;
    clearTimeout(timer);
  };

  const address = `${opts.ip}:${opts.port}`;
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 60_000);
  let lastProblem = 'no answer yet';
  for (;;) {
    if (opts.signal?.aborted) {
      await stop();
      throw new DevServerInterrupted('Interrupted while the Temporal dev server was starting; it was stopped.');
    }
    if (exited) {
      throw new Error(
        `The Temporal dev server exited during start-up (code ${exited.code ?? exited.signal}). Its log, ${logFile}, ends with:\n${tail(logFile)}\n` +
          `If the database is damaged, move ${dbFile} away and run \`gantry dev\` again.`,
      );
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`The Temporal dev server did not answer on ${address} within ${Math.round((opts.readyTimeoutMs ?? 60_000) / 1000)}s (${lastProblem}); see ${logFile}.`);
    }
    let connection: Connection | undefined;
    try {
      connection = await Connection.connect({ address, connectTimeout: '1s' });
      await connection.workflowService.describeNamespace({ namespace: opts.namespace });
      // A database from an earlier run keeps its attributes, but `start-dev` only registers new ones on a
      // fresh database: make sure all of gantry's are there.
      const registration = await ensureSearchAttributes(connection, opts.namespace, address);
      return { address, uiUrl: `http://${opts.ip}:${opts.uiPort}`, dbFile, logFile, registration, child, stop };
    } catch (err) {
      lastProblem = err instanceof Error ? err.message : String(err);
      await sleep(250);
    } finally {
      await connection?.close();
    }
  }
}
