/**
 * Background processes of the lab (podman's API service, the registry, sshd): started in their own process group
 * with output to a log file, waited for until they answer, stopped by process group. A process that dies while
 * being waited for fails the start with the tail of its log, which is where the reason is.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import net from 'node:net';

export interface Daemon {
  name: string;
  pid: number;
  logFile: string;
  /** Set once the process has exited. */
  exitCode(): number | null | undefined;
  stop(graceMs?: number): Promise<void>;
}

const running = new Set<Daemon>();
let exitHookInstalled = false;

/** On any exit of this process, signal the lab's daemons, so a crashed test does not leave them behind. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const d of running) killGroup(d.pid, 'SIGTERM');
  });
}

export function killGroup(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    try {
      process.kill(pid, signal);
      return true;
    } catch {
      return false;
    }
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function logTail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

export function startDaemon(name: string, command: string, args: string[], logFile: string, env?: NodeJS.ProcessEnv): Daemon {
  const fd = openSync(logFile, 'a');
  const child = spawn(command, args, { detached: true, stdio: ['ignore', fd, fd], env: env ?? process.env });
  closeSync(fd);
  let code: number | null | undefined;
  let spawnError: Error | undefined;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (c, sig) => {
      code = c ?? (sig ? -1 : null);
      resolve();
    });
    child.once('error', (err) => {
      spawnError = err;
      code = -1;
      resolve();
    });
  });
  if (child.pid === undefined) {
    throw new Error(`could not start ${name} (${command}): ${spawnError?.message ?? 'spawn failed'}; run \`bash scripts/lab/provision.sh\``);
  }
  const daemon: Daemon = {
    name,
    pid: child.pid,
    logFile,
    exitCode: () => code,
    async stop(graceMs = 5_000) {
      running.delete(daemon);
      if (code !== undefined) return;
      killGroup(daemon.pid, 'SIGTERM');
      const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), graceMs).unref());
      if ((await Promise.race([exited.then(() => 'exited' as const), timer])) === 'timeout') {
        killGroup(daemon.pid, 'SIGKILL');
        await exited;
      }
    },
  };
  running.add(daemon);
  installExitHook();
  return daemon;
}

/**
 * Poll `ready` until it returns true. Fails when `timeoutMs` passes or the daemon exits, with its log's tail.
 */
export async function waitUntilReady(daemon: Daemon, what: string, ready: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await ready().catch(() => false)) return;
    const code = daemon.exitCode();
    if (code !== undefined) {
      throw new Error(`${daemon.name} exited (code ${code}) before ${what}. Its log (${daemon.logFile}) ends:\n${logTail(daemon.logFile)}`);
    }
    if (Date.now() > deadline) {
      throw new Error(`${daemon.name} did not get ready (${what}) within ${timeoutMs / 1000}s. Its log (${daemon.logFile}) ends:\n${logTail(daemon.logFile)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** True when something accepts TCP connections on 127.0.0.1:port. */
export function tcpOpen(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host });
    sock.setTimeout(1_000);
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('timeout', () => {
      sock.destroy();
      resolve(false);
    });
    sock.once('error', () => resolve(false));
  });
}

/** A port free on 127.0.0.1 right now (the kernel's choice, or the preferred one when it is free). */
export async function freePort(preferred?: number): Promise<number> {
  if (preferred && (await canBind(preferred))) return preferred;
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/**
 * Keep `port` on 127.0.0.1 taken while the daemon that owns it is stopped (a fault injected by a test): every
 * connection is reset at once, as a service that is down behind its address would, and no other process (another
 * lab starting meanwhile) can take the port. Returns the function that frees it again.
 */
export async function holdPort(port: number): Promise<() => Promise<void>> {
  const srv = net.createServer((sock) => sock.resetAndDestroy());
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(port, '127.0.0.1', () => resolve());
  });
  return () => new Promise<void>((resolve) => srv.close(() => resolve()));
}
