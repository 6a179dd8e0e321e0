/**
 * Real git repositories for activity tests: a bare "remote" and a working clone in a temp directory, and
 * optionally `git daemon` serving the remote over git:// on a loopback port (so a test can take it down).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './ports';

const GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: 'Dev',
  GIT_AUTHOR_EMAIL: 'dev@example.test',
  GIT_COMMITTER_NAME: 'Dev',
  GIT_COMMITTER_EMAIL: 'dev@example.test',
  LC_ALL: 'C',
};

export function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', args, { cwd, env: GIT_ENV, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

export interface TestRepo {
  root: string;
  /** Path of the bare remote (usable as repo.url). */
  remote: string;
  /** Working clone that pushes to the remote. */
  work: string;
  branch: string;
  /** Write files, commit, push; returns the new commit. */
  commit(files: Record<string, string | null>, message?: string): string;
  /** Create a tag in the working clone and push it. */
  tag(name: string, at?: string, annotated?: boolean): void;
  head(): string;
  cleanup(): void;
}

export function createTestRepo(files: Record<string, string>, opts: { branch?: string } = {}): TestRepo {
  const branch = opts.branch ?? 'main';
  const root = mkdtempSync(path.join(os.tmpdir(), 'gantry-test-repo-'));
  const remote = path.join(root, 'remote.git');
  const work = path.join(root, 'work');
  git(root, 'init', '--quiet', '--bare', '--initial-branch', branch, remote);
  git(root, 'init', '--quiet', '--initial-branch', branch, work);
  git(work, 'remote', 'add', 'origin', remote);
  const repo: TestRepo = {
    root,
    remote,
    work,
    branch,
    commit(changes, message = 'change') {
      for (const [file, content] of Object.entries(changes)) {
        const full = path.join(work, file);
        if (content === null) {
          rmSync(full, { force: true });
        } else {
          mkdirSync(path.dirname(full), { recursive: true });
          writeFileSync(full, content);
        }
      }
      git(work, 'add', '-A');
      git(work, 'commit', '--quiet', '--allow-empty', '-m', message);
      git(work, 'push', '--quiet', 'origin', `HEAD:refs/heads/${branch}`);
      return repo.head();
    },
    tag(name, at = 'HEAD', annotated = true) {
      if (annotated) git(work, 'tag', '-a', '-m', `tag ${name}`, name, at);
      else git(work, 'tag', name, at);
      git(work, 'push', '--quiet', 'origin', `refs/tags/${name}`);
    },
    head: () => git(work, 'rev-parse', 'HEAD'),
    cleanup: () => rmSync(root, { recursive: true, force: true }),
  };
  repo.commit(files, 'initial');
  return repo;
}


async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`git daemon did not listen on 127.0.0.1:${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface GitDaemon {
  port: number;
  /** git:// URL of a repository under the served directory. */
  url(relative: string): string;
  stop(): Promise<void>;
}

/** `git daemon` serving `baseDir` (read and push) on a free loopback port. */
export async function startGitDaemon(baseDir: string): Promise<GitDaemon> {
  const port = await freePort();
  const child: ChildProcess = spawn('git', [
    'daemon', '--reuseaddr', '--export-all', '--enable=receive-pack', `--base-path=${baseDir}`,
    '--listen=127.0.0.1', `--port=${port}`, baseDir,
  ], { stdio: 'ignore' });
  await waitForPort(port, 10_000);
  return {
    port,
    url: (relative) => `git://127.0.0.1:${port}/${relative}`,
    stop: () => new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    }),
  };
}

export interface GitHttpServer {
  /** http:// URL of a repository under the served directory. */
  url(relative: string): string;
  /** Authorization headers seen, in order. */
  authorizations: (string | undefined)[];
  stop(): Promise<void>;
}

/**
 * Smart-HTTP git (`git http-backend` behind node's http server) on a loopback port. With `token`, every request
 * must carry `Authorization: Basic base64(x-access-token:<token>)`, else 401, as a hosted git service would.
 */
export async function startGitHttp(baseDir: string, token?: string): Promise<GitHttpServer> {
  const authorizations: (string | undefined)[] = [];
  const expected = token ? `Basic ${Buffer.from(`x-access-token:${token}`).toString('base64')}` : undefined;
  const server = http.createServer((req, res) => {
    authorizations.push(req.headers.authorization);
    if (expected && req.headers.authorization !== expected) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="git"' }).end('unauthorized');
      return;
    }
    const u = new URL(req.url ?? '/', 'http://127.0.0.1');
    const cgi = spawn('git', ['http-backend'], {
      env: {
        PATH: process.env.PATH,
        GIT_PROJECT_ROOT: baseDir,
        GIT_HTTP_EXPORT_ALL: '1',
        REMOTE_USER: 'tester',
        REQUEST_METHOD: req.method,
        PATH_INFO: decodeURIComponent(u.pathname),
        QUERY_STRING: u.search.replace(/^\?/, ''),
        CONTENT_TYPE: req.headers['content-type'] ?? '',
        ...(req.headers['git-protocol'] ? { GIT_PROTOCOL: String(req.headers['git-protocol']) } : {}),
        ...(req.headers['content-encoding'] ? { HTTP_CONTENT_ENCODING: String(req.headers['content-encoding']) } : {}),
      },
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    req.pipe(cgi.stdin);
    let head = Buffer.alloc(0);
    let headersDone = false;
    cgi.stdout.on('data', (chunk: Buffer) => {
      if (headersDone) return void res.write(chunk);
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      headersDone = true;
      let status = 200;
      const headers: Record<string, string> = {};
      for (const line of head.subarray(0, end).toString('utf8').split('\r\n')) {
        const i = line.indexOf(':');
        const k = line.slice(0, i).trim();
        const v = line.slice(i + 1).trim();
        if (k.toLowerCase() === 'status') status = parseInt(v, 10);
        else headers[k] = v;
      }
      res.writeHead(status, headers);
      res.write(head.subarray(end + 4));
    });
    cgi.stdout.on('end', () => res.end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: (relative) => `http://127.0.0.1:${port}/${relative}`,
    authorizations,
    stop: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
