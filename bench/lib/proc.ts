/** Child processes for the benches: spawn and wait for a line, RSS from /proc, wall time of a command. */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

/** Resident set size and its peak (VmHWM) of a process, in MB, from /proc (Linux). */
export function rssOf(pid: number): { rssMb: number; peakMb: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rssMb: kb('VmRSS') / 1024, peakMb: kb('VmHWM') / 1024 };
}

export interface Spawned {
  child: ChildProcess;
  /** Everything written to stdout and stderr so far. */
  output(): string;
  /** Resolves when a line matching `re` has been printed (rejects when the process exits first or after `timeoutMs`). */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves on exit. */
  stop(graceMs?: number): Promise<void>;
}

export function spawnProcess(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Spawned {
  const child = spawn(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const listeners = new Set<() => void>();
  const feed = (b: Buffer): void => {
    out += b.toString();
    for (const l of listeners) l();
  };
  child.stdout.on('data', feed);
  child.stderr.on('data', feed);
  let exited = false;
  const exit = new Promise<void>((resolve) => child.once('exit', () => { exited = true; for (const l of listeners) l(); resolve(); }));
  return {
    child,
    output: () => out,
    waitFor: (re, timeoutMs = 120_000) => new Promise((resolve, reject) => {
      const timer = setTimeout(() => { listeners.delete(check); reject(new Error(`timed out after ${timeoutMs} ms waiting for ${re} from ${cmd}:\n${out.slice(-2000)}`)); }, timeoutMs);
      function check(): void {
        // The last match: progress lines repeat with growing counts.
        const all = [...out.matchAll(new RegExp(re.source, `${re.flags.replace('g', '')}g`))];
        const m = all.at(-1);
        if (m) {
          clearTimeout(timer);
          listeners.delete(check);
          resolve(m);
        } else if (exited) {
          clearTimeout(timer);
          listeners.delete(check);
          reject(new Error(`${cmd} exited before printing ${re}:\n${out.slice(-2000)}`));
        }
      }
      listeners.add(check);
      check();
    }),
    stop: async (graceMs = 10_000) => {
      if (exited) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exit;
      clearTimeout(timer);
    },
  };
}

/** Run a command to its end; its wall time in ms, exit code and output. */
export function timeCommand(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<{ ms: number; code: number | null; output: string }> {
  const t0 = performance.now();
  const p = spawnProcess(cmd, args, opts);
  return new Promise((resolve) => p.child.once('exit', (code) => resolve({ ms: performance.now() - t0, code, output: p.output() })));
}

/** Run `fn` over `items` with at most `limit` at a time. */
export async function pool<T>(items: T[], limit: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i]!, i);
    }
  });
  await Promise.all(lanes);
}
