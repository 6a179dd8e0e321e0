/**
 * A small typed wrapper over the git CLI, used by preflight, tag and announce. Every command runs through
 * execFile (no shell), in a temporary working directory owned by one activity attempt, with a timeout and the
 * activity's cancellation signal.
 *
 * An HTTPS token is handed to git through GIT_CONFIG_* environment variables (an `http.extraHeader`), so it never
 * appears in argv, in URLs or in error output; anything git prints is redacted before it reaches a message.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { GantryErrorType, nonRetryable, retryable } from '../shared/errors';
import { cancellation } from './heartbeat';
import { redact } from './secrets';

/** Why a git command failed, as far as its output tells. */
export type GitFailureKind = 'unreachable' | 'auth' | 'not-found' | 'missing-ref' | 'rejected' | 'missing-git' | 'other';

export class GitError extends Error {
  constructor(
    readonly command: string,
    readonly kind: GitFailureKind,
    /** git's own output, redacted, trimmed to its last lines. */
    readonly output: string,
    readonly exitCode: number | string | undefined,
  ) {
    super(`\`${command}\` failed (${kind}): ${output || `exit ${String(exitCode)}`}`);
    this.name = 'GitError';
  }
}

export interface GitOptions {
  /** Base environment for git (PATH, HOME); defaults to the worker's. */
  env?: NodeJS.ProcessEnv;
  /** HTTPS token (already resolved from its reference), sent as a Basic authorization header to `remote` only. */
  token?: string;
  /**
   * The one repository URL the token is for. The header is configured for that URL's origin alone
   * (`http.<origin>/.extraHeader`), so git never sends it anywhere else (another host, a redirect target is
   * refused by git's own rules for scoped headers). Without an http(s) remote the token is not used at all.
   */
  remote?: string;
  /** Per-command timeout. @default 120000 */
  timeoutMs?: number;
  /** Who annotated tags are made by. @default { name: 'gantry', email: 'gantry@localhost' } */
  identity?: { name: string; email: string };
}

export interface RemoteRef {
  ref: string;
  sha: string;
}

/** A remote tag: the ref's object (the tag object for annotated tags) and the commit it peels to. */
export interface RemoteTag {
  name: string;
  object: string;
  commit: string;
}

const UNREACHABLE =
  /connection refused|could not resolve host|timed out|network is unreachable|no route to host|unable to connect|failed to connect|early eof|hung up unexpectedly|connection reset|rpc failed|returned error: 5\d\d|http 5\d\d|gnutls|ssl|unable to access|killed by timeout/i;
const AUTH = /authentication failed|could not read (username|password)|permission denied|returned error: 40[13]|terminal prompts disabled|access denied/i;
const NOT_FOUND = /does not appear to be a git repository|repository not found|not exported|returned error: 404|no such (file|repository)/i;
const MISSING_REF = /couldn't find remote ref|remote ref does not exist/i;
const REJECTED = /\[rejected\]|already exists|non-fast-forward|failed to push|remote rejected/i;

export function classifyGitOutput(output: string): GitFailureKind {
  if (NOT_FOUND.test(output)) return 'not-found';
  if (AUTH.test(output)) return 'auth';
  if (MISSING_REF.test(output)) return 'missing-ref';
  if (UNREACHABLE.test(output)) return 'unreachable';
  if (REJECTED.test(output)) return 'rejected';
  return 'other';
}

/** `https://host[:port]` of an http(s) URL, or undefined for paths, ssh and scp-like remotes. */
export function httpOrigin(url: string): string | undefined {
  try {
    const u = new URL(url);
    if (u.protocol !== 'https:' && u.protocol !== 'http:') return undefined;
    return `${u.protocol}//${u.host}`;
  } catch {
    return undefined;
  }
}

/** A URL fit for messages: user info (which may hold a token) is masked. */
export function displayUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^@/]+@/i, '$1***@');
}

function tail(text: string, lines = 12, chars = 1500): string {
  const t = text.trim().split('\n').slice(-lines).join('\n');
  return t.length > chars ? `…${t.slice(-chars)}` : t;
}

export class Git {
  private readonly env: NodeJS.ProcessEnv;
  private readonly timeoutMs: number;
  private readonly secrets: string[];

  constructor(private readonly opts: GitOptions = {}) {
    const identity = opts.identity ?? { name: 'gantry', email: 'gantry@localhost' };
    const env: NodeJS.ProcessEnv = {
      ...(opts.env ?? process.env),
      LC_ALL: 'C',
      GIT_TERMINAL_PROMPT: '0',
      GIT_ASKPASS: '',
      GIT_COMMITTER_NAME: identity.name,
      GIT_COMMITTER_EMAIL: identity.email,
      GIT_AUTHOR_NAME: identity.name,
      GIT_AUTHOR_EMAIL: identity.email,
    };
    env.GIT_SSH_COMMAND ??= 'ssh -o BatchMode=yes';
    this.secrets = [];
    const origin = opts.remote ? httpOrigin(opts.remote) : undefined;
    if (opts.token && origin) {
      const basic = Buffer.from(`x-access-token:${opts.token}`).toString('base64');
      env.GIT_CONFIG_COUNT = '1';
      env.GIT_CONFIG_KEY_0 = `http.${origin}/.extraHeader`;
      env.GIT_CONFIG_VALUE_0 = `Authorization: Basic ${basic}`;
      this.secrets.push(opts.token, basic);
    }
    this.env = env;
    this.timeoutMs = opts.timeoutMs ?? 120_000;
  }

  /** Run `git args…` in `cwd`; resolves to stdout, rejects with a classified GitError. */
  run(args: string[], cwd?: string): Promise<string> {
    const signal = cancellation();
    const shown = `git ${args.map((a) => displayUrl(a)).join(' ')}`;
    return new Promise((resolve, reject) => {
      execFile(
        'git',
        args,
        { cwd, env: this.env, timeout: this.timeoutMs, maxBuffer: 64 * 1024 * 1024, signal, encoding: 'utf8' },
        (err, stdout, stderr) => {
          if (!err) return resolve(stdout);
          if (signal.aborted) return reject(signal.reason instanceof Error ? signal.reason : err);
          const e = err as NodeJS.ErrnoException & { killed?: boolean; code?: number | string };
          const output = redact(tail(`${stderr}\n${stdout}`), this.secrets);
          if (e.code === 'ENOENT') {
            return reject(new GitError(shown, 'missing-git', 'the git executable was not found on PATH', e.code));
          }
          if (e.killed) {
            return reject(new GitError(shown, 'unreachable', `killed by timeout after ${this.timeoutMs} ms. ${output}`.trim(), e.code));
          }
          reject(new GitError(shown, classifyGitOutput(output), output, e.code));
        },
      );
    });
  }

  /** `git ls-remote url patterns…`, parsed. */
  async lsRemote(url: string, patterns: string[] = []): Promise<RemoteRef[]> {
    const out = await this.run(['ls-remote', '--', url, ...patterns]);
    return out
      .split('\n')
      .filter((l) => l.includes('\t'))
      .map((l) => {
        const [sha, ref] = l.split('\t') as [string, string];
        return { sha, ref };
      });
  }

  /** The branch head and every tag of the remote, in one round trip. */
  async remoteState(url: string, branch: string): Promise<{ head: string | undefined; tags: Map<string, RemoteTag> }> {
    const refs = await this.lsRemote(url, [`refs/heads/${branch}`, 'refs/tags/*']);
    const head = refs.find((r) => r.ref === `refs/heads/${branch}`)?.sha;
    return { head, tags: parseTags(refs) };
  }

  /** One remote tag (peeled), or undefined. */
  async remoteTag(url: string, tag: string): Promise<RemoteTag | undefined> {
    const refs = await this.lsRemote(url, [`refs/tags/${tag}`, `refs/tags/${tag}^{}`]);
    return parseTags(refs).get(tag);
  }

  /** Shallow checkout of the branch head into `dir` (which must not exist or be empty); returns the commit. */
  async cloneBranch(url: string, branch: string, dir: string): Promise<string> {
    await this.run(['clone', '--quiet', '--no-tags', '--single-branch', '--depth', '1', '--branch', branch, '--', url, dir]);
    return (await this.run(['rev-parse', 'HEAD'], dir)).trim();
  }

  /** Make `dir` a repository holding `commit` (fetched by id, or with the branch's history if the server refuses). */
  async fetchCommit(url: string, commit: string, branch: string, dir: string): Promise<void> {
    await this.run(['init', '--quiet', dir]);
    try {
      await this.run(['fetch', '--quiet', '--no-tags', '--depth', '1', '--', url, commit], dir);
    } catch (err) {
      if (!(err instanceof GitError) || err.kind === 'unreachable' || err.kind === 'auth') throw err;
      await this.run(['fetch', '--quiet', '--no-tags', '--', url, `refs/heads/${branch}`], dir);
    }
    await this.run(['cat-file', '-e', `${commit}^{commit}`], dir);
  }

  /** Make `dir` a repository holding the tag and the tree it points at. */
  async fetchTag(url: string, tag: string, dir: string): Promise<void> {
    await this.run(['init', '--quiet', dir]);
    await this.run(['fetch', '--quiet', '--no-tags', '--depth', '1', '--', url, `+refs/tags/${tag}:refs/tags/${tag}`], dir);
  }

  /** A file's content at `rev`, or undefined when the file is not in that tree. */
  async showFile(dir: string, rev: string, file: string): Promise<string | undefined> {
    try {
      return await this.run(['show', `${rev}:${file.replace(/^\.\//, '')}`], dir);
    } catch (err) {
      if (err instanceof GitError && /does not exist|exists on disk, but not in|invalid object name|not a valid object/i.test(err.output)) {
        return undefined;
      }
      throw err;
    }
  }

  async createAnnotatedTag(dir: string, tag: string, commit: string, message: string): Promise<void> {
    await this.run(['tag', '--annotate', '--message', message, '--', tag, commit], dir);
  }

  /** Push one tag; a remote that already has a different tag of that name rejects it ('rejected'). */
  async pushTag(dir: string, url: string, tag: string): Promise<void> {
    await this.run(['push', '--porcelain', '--', url, `refs/tags/${tag}:refs/tags/${tag}`], dir);
  }
}

function parseTags(refs: RemoteRef[]): Map<string, RemoteTag> {
  const tags = new Map<string, RemoteTag>();
  for (const r of refs) {
    if (!r.ref.startsWith('refs/tags/') || r.ref.endsWith('^{}')) continue;
    const name = r.ref.slice('refs/tags/'.length);
    tags.set(name, { name, object: r.sha, commit: r.sha });
  }
  for (const r of refs) {
    if (!r.ref.startsWith('refs/tags/') || !r.ref.endsWith('^{}')) continue;
    const t = tags.get(r.ref.slice('refs/tags/'.length, -3));
    if (t) t.commit = r.sha;
  }
  return tags;
}

/** Run `fn` with a fresh temporary directory, removed afterwards whatever happens. */
export async function withTempDir<T>(prefix: string, fn: (dir: string) => Promise<T>, base = os.tmpdir()): Promise<T> {
  const dir = await mkdtemp(path.join(base, `gantry-${prefix}-`));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The activity failure for a git error: an unreachable remote is retried; bad credentials, a missing repository
 * or a missing git are non-retryable with the fix. `what` says what gantry was doing ("read the tags of").
 */
export function gitFailure(err: unknown, what: string, url: string, tokenRef?: string): Error {
  if (!(err instanceof GitError)) return err instanceof Error ? err : new Error(String(err));
  const where = displayUrl(url);
  switch (err.kind) {
    case 'unreachable':
      return retryable(`Could not ${what} ${where}: the git remote did not answer (${err.output}). ` +
        'Gantry retries; if it persists, check that the git server is up and reachable from the worker.', { command: err.command });
    case 'auth':
      return nonRetryable(GantryErrorType.ConfigInvalid, `Could not ${what} ${where}: the git remote refused the credentials (${err.output}). ` +
        (tokenRef ? `Check the token in ${tokenRef} (repo.token) can read and push to this repository.` : 'Set repo.token to a token reference ({env: NAME} or {file: PATH}) with read and push access, or give the worker an SSH key for this remote.'),
        { command: err.command });
    case 'not-found':
      return nonRetryable(GantryErrorType.ConfigInvalid, `Could not ${what} ${where}: no git repository there (${err.output}). ` +
        'Check repo.url in the release config points at the service\'s repository and the worker can read it.', { command: err.command });
    case 'missing-ref':
      return retryable(`Could not ${what} ${where}: the remote does not have it (${err.output}). ` +
        'If it was deleted after gantry created it, push it again; gantry retries.', { command: err.command });
    case 'missing-git':
      return nonRetryable(GantryErrorType.ConfigInvalid, `Could not ${what} ${where}: git is not installed on the worker. ` +
        'Install git on the worker host (e.g. apt-get install git) and restart the worker.');
    default:
      return retryable(`Could not ${what} ${where}: ${err.message}. Gantry retries; if it persists, run the command by hand on the worker to see why.`,
        { command: err.command });
  }
}
