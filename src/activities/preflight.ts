/**
 * Preflight: everything that must hold before anything is changed. The version is semver and not yet released,
 * the CHANGELOG has a section for it, package.json agrees, the release commit is the head of the configured
 * branch, and the configured test command passes in a checkout of it.
 *
 * Every check runs (as far as its inputs exist) and all failures are reported together, each naming the check
 * and the fix, so an operator fixes everything in one round. A git remote that does not answer is retried.
 *
 * The test command is repository code, so it never runs as the worker (which can read its secret files and its
 * own environment): repo.testRunner puts it in a throwaway container that sees only the checkout, or under a
 * separate OS user. Its full output (redacted, last 1 MiB) is kept as `preflight-tests.log` in the release's
 * artifacts directory; only a short redacted tail goes into the failure, and from there into history and the UI.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { Dirent } from 'node:fs';
import { chmod, chown, lchown, mkdir, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import type Docker from 'dockerode';
import * as semver from 'semver';
import type { RepoConfig } from '../config/schema';
import { GantryErrorType, nonRetryable, retryable } from '../shared/errors';
import type { PreflightRequest, PreflightResult } from './types';
import { classifyEngineText, defaultEngine, engineAddress, engineErrorText, engineUnavailable, followStream, statusCode, StreamError, type EngineFactory } from './docker';
import { Git, displayUrl, gitFailure, withTempDir, type RemoteTag } from './git';
import { activityContext, beat, cancellation, currentAttempt, heartbeating, withHeartbeat } from './heartbeat';
import { expandReleasePath } from './paths';
import { describeSecretRef, redactOutput, resolveSecret } from './secrets';

export interface PreflightCheck {
  name: string;
  ok: boolean;
  detail: string;
}

export interface PreflightDeps {
  /** Resolves secret references (repo.token). */
  env: NodeJS.ProcessEnv;
  /** Where per-attempt checkouts go. @default os.tmpdir() */
  workDir?: string;
  /** Per git command. @default 120000 */
  gitTimeoutMs?: number;
  /** How long repo.testCommand may run. @default 480000 (inside preflight's 10-minute default timeout) */
  testTimeoutMs?: number;
  /**
   * More environment for a test command run by the `user` runner. Its environment is a minimal one (PATH, locale,
   * SHELL, a fresh HOME and TMPDIR owned by the test user) plus CI=true and GANTRY_SERVICE / GANTRY_VERSION /
   * GANTRY_COMMIT: the worker's secrets are not handed to repository code. A `container` test gets only those four.
   */
  testEnv?: NodeJS.ProcessEnv;
  /**
   * The values of every secret reference this worker can resolve (tokens, keys, webhook URLs): masked in the test
   * command's output before any of it is kept or reported, in case the command got hold of one anyway.
   */
  knownSecrets?: () => string[];
  /** The container engine for the `container` test runner. @default dockerode on socketPath, DOCKER_HOST or /var/run/docker.sock */
  engine?: EngineFactory;
  /** More checks on the release commit (GitHub: blockers, check runs); their failures join the report. */
  extraChecks?: (req: PreflightRequest, commit: string) => Promise<PreflightCheck[]>;
}

/** The CHANGELOG section for `version` (`## [1.2.3]`, `## 1.2.3`, `## v1.2.3 - 2024-05-01`), without its heading. */
export function changelogSection(text: string, version: string): string | undefined {
  const lines = text.split(/\r?\n/);
  const v = version.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const heading = new RegExp(`^##\\s+(?:\\[v?${v}\\]|v?${v}(?=$|[\\s(:]))`);
  const start = lines.findIndex((l) => heading.test(l));
  if (start < 0) return undefined;
  let end = lines.findIndex((l, i) => i > start && /^##?\s/.test(l));
  if (end < 0) end = lines.length;
  // A trailing link-reference block (`[1.2.3]: https://…`) belongs to the file, not the section.
  const body = lines.slice(start + 1, end);
  while (body.length && (body[body.length - 1]!.trim() === '' || /^\[[^\]]+\]:\s*\S+/.test(body[body.length - 1]!))) body.pop();
  while (body.length && body[0]!.trim() === '') body.shift();
  return body.join('\n');
}

/** The highest semver among the remote's tags (`v1.2.3` or `1.2.3`). */
export function latestReleased(tags: Iterable<RemoteTag>): { version: string; tag: RemoteTag } | undefined {
  let best: { version: string; tag: RemoteTag } | undefined;
  for (const t of tags) {
    const v = semver.valid(t.name.replace(/^v/, ''));
    if (v && (!best || semver.gt(v, best.version))) best = { version: v, tag: t };
  }
  return best;
}

const short = (sha: string) => sha.slice(0, 12);

/**
 * The committer time of `commit` in the checkout, as ISO 8601 in UTC: what `gantry report` measures lead time
 * from. Only a figure for the report, never a check: when git cannot tell, the result simply has none.
 */
async function committerTime(git: Git, checkout: string, commit: string): Promise<string | undefined> {
  try {
    const out = (await git.run(['show', '--no-patch', '--format=%cI', commit, '--'], checkout)).trim();
    const t = Date.parse(out);
    return Number.isNaN(t) ? undefined : new Date(t).toISOString();
  } catch {
    return undefined;
  }
}

export function createPreflight(deps: PreflightDeps) {
  return {
    preflight: heartbeating(async (req: PreflightRequest): Promise<PreflightResult> => {
      const { release, repo } = req;
      const version = release.version;
      const tagName = `v${version}`;
      const url = displayUrl(repo.url);
      const token = repo.token ? resolveSecret(repo.token, deps.env) : undefined;
      const tokenRef = repo.token ? describeSecretRef(repo.token) : undefined;
      const git = new Git({ env: deps.env, token, remote: repo.url, timeoutMs: deps.gitTimeoutMs });
      const checks: PreflightCheck[] = [];
      const add = (name: string, ok: boolean, detail: string) => checks.push({ name, ok, detail });

      // Where and as whom the test command runs, and where its output goes: settled before anything is fetched.
      const tests = repo.testCommand ? await planTests(repo, req) : undefined;

      // 1. The version itself.
      const validVersion = semver.valid(version) === version;
      add('version', validVersion, validVersion
        ? `${version} is a semantic version`
        : `"${version}" is not a semantic version. Fix: release a version written like 1.2.3 (no leading "v"; pre-releases like 1.2.3-rc.1 are fine).`);

      // 2. The remote: branch head and tags.
      const state = await withHeartbeat(() => ({ check: 'remote' }), () => git.remoteState(repo.url, repo.branch))
        .catch((err: unknown) => { throw gitFailure(err, 'read the branches and tags of', repo.url, tokenRef); });

      if (!state.head) {
        add('branch', false, `Branch "${repo.branch}" does not exist on ${url}. ` +
          `Fix: push the branch to the remote, or set repo.branch in the release config to the branch you release from.`);
      }

      // 3. Tag state: not released at another commit, not lower than the latest release.
      const existing = state.tags.get(tagName);
      const latest = latestReleased(state.tags.values());

      let commit = state.head;
      let commitTime: string | undefined;
      if (state.head) {
        commit = await withTempDir('preflight', async (dir) => {
          const checkout = path.join(dir, 'checkout');
          const head = await withHeartbeat(() => ({ check: 'checkout' }), () => git.cloneBranch(repo.url, repo.branch, checkout))
            .catch((err: unknown) => { throw gitFailure(err, `check out branch ${repo.branch} of`, repo.url, tokenRef); });
          add('branch', true, `commit ${short(head)} is the head of ${repo.branch} on ${url}`);
          commitTime = await committerTime(git, checkout, head);
          await checkFiles(checkout, head);
          await runTests(dir, checkout, head);
          return head;
        }, deps.workDir);
      }

      if (existing) {
        const atHead = commit !== undefined && existing.commit === commit;
        add('not-released', atHead, atHead
          ? `tag ${tagName} already points at ${short(existing.commit)}, the release commit (a rerun of this release)`
          : `${version} is already released: tag ${tagName} on ${url} points at ${short(existing.commit)}` +
            `${commit ? `, not at the head of ${repo.branch} (${short(commit)})` : ''}. ` +
            `Fix: release a new version (e.g. ${semver.inc(version, 'patch') ?? 'the next patch'}) with its own CHANGELOG section; never move a published tag.`);
      } else {
        add('not-released', true, `no tag ${tagName} on ${url} yet`);
      }
      if (validVersion && latest && semver.lt(version, latest.version)) {
        add('newer-than-latest', false, `${version} is lower than the latest released version ${latest.version} (tag ${latest.tag.name}). ` +
          `Fix: release a version above ${latest.version}, e.g. ${semver.inc(latest.version, 'patch')}.`);
      } else if (validVersion) {
        add('newer-than-latest', true, latest ? `${version} ≥ latest released ${latest.version}` : 'no earlier release tags');
      }

      // 4. Checks contributed by other systems (GitHub), on the commit.
      if (commit && deps.extraChecks) {
        for (const c of await deps.extraChecks(req, commit)) checks.push(c);
      }

      const failed = checks.filter((c) => !c.ok);
      if (failed.length) {
        throw nonRetryable(
          GantryErrorType.PreflightFailed,
          `Preflight failed for ${release.service} ${version}${commit ? ` at commit ${short(commit)} (${repo.branch})` : ''}: ` +
            `${failed.length} of ${checks.length} checks failed.\n` +
            failed.map((c) => `- ${c.name}: ${c.detail}`).join('\n') +
            '\nNothing was changed. Fix the above, push, and start the release again.',
          { checks, commit },
        );
      }
      return { attempt: currentAttempt(), commit: commit!, ...(commitTime ? { commitTime } : {}), checks };

      async function checkFiles(checkout: string, head: string): Promise<void> {
        // CHANGELOG section.
        const changelogPath = repo.changelog;
        const changelog = await readOptional(path.join(checkout, changelogPath));
        if (changelog === undefined) {
          add('changelog', false, `${changelogPath} does not exist at ${short(head)}. ` +
            `Fix: add ${changelogPath} with a "## [${version}]" section describing the changes (or set repo.changelog to its path), push it to ${repo.branch}.`);
        } else {
          const section = changelogSection(changelog, version);
          add('changelog', section !== undefined, section !== undefined
            ? `${changelogPath} has a section for ${version} (${section.split('\n').filter((l) => l.trim()).length} lines)`
            : `${changelogPath} has no section for ${version}. Fix: add a heading "## [${version}]" (or "## ${version}") with the changes, push it to ${repo.branch}.`);
        }

        // package.json, when the repository has one at its root.
        const pkgText = await readOptional(path.join(checkout, 'package.json'));
        if (pkgText === undefined) {
          add('package-json', true, 'no package.json at the repository root (nothing to compare)');
        } else {
          let pkgVersion: unknown;
          try {
            pkgVersion = (JSON.parse(pkgText) as { version?: unknown }).version;
          } catch (err) {
            add('package-json', false, `package.json is not valid JSON (${(err as Error).message}). Fix: repair it and push to ${repo.branch}.`);
            return;
          }
          add('package-json', pkgVersion === version, pkgVersion === version
            ? `package.json version is ${version}`
            : `package.json says version ${JSON.stringify(pkgVersion ?? null)}, not ${version}. ` +
              `Fix: set "version": "${version}" (npm version ${version} --no-git-tag-version), commit and push to ${repo.branch}.`);
        }
      }

      async function runTests(dir: string, checkout: string, head: string): Promise<void> {
        if (!repo.testCommand || !tests) {
          add('tests', true, 'no test command configured (repo.testCommand)');
          return;
        }
        const command = repo.testCommand;
        // How the command reads in the report: a multi-line script by its first line.
        const secrets = [...(deps.knownSecrets?.() ?? []), token];
        const firstLine = command.trim().split('\n')[0]!;
        const shown = redactOutput(firstLine.length > 200 || firstLine !== command.trim() ? `${firstLine.slice(0, 200)} …` : command, secrets);
        const { runner } = tests;
        const timeoutMs = deps.testTimeoutMs ?? 480_000;
        const gantryEnv = { CI: 'true', GANTRY_SERVICE: release.service, GANTRY_VERSION: version, GANTRY_COMMIT: head };
        // The checkout is handed to repository code: it keeps no remote (whose URL could carry credentials).
        await git.run(['remote', 'remove', 'origin'], checkout).catch(() => undefined);

        const started = Date.now();
        const where = runner.kind === 'container' ? `in a container of ${runner.image}` : `as user ${runner.user}`;
        const r = await withHeartbeat(
          () => ({ check: 'tests', runner: runner.kind, elapsedMs: Date.now() - started }),
          async () => {
            if (runner.kind === 'container') {
              return runInContainer(runner, command, checkout, gantryEnv, timeoutMs, deps.engine ?? defaultEngine, {
                'gantry.preflight': release.workflowId,
                'gantry.service': release.service,
                'gantry.version': version,
                'gantry.commit': head,
              });
            }
            const account = tests.account!;
            const { home, tmp } = await prepareForUser(dir, checkout, account);
            const env: NodeJS.ProcessEnv = {
              ...pick(deps.env, ['PATH', 'LANG', 'LC_ALL', 'SHELL']),
              ...deps.testEnv,
              HOME: home,
              TMPDIR: tmp,
              USER: account.name,
              LOGNAME: account.name,
              ...gantryEnv,
            };
            return runAsUser(command, checkout, env, account, timeoutMs);
          },
        );
        const took = `${((Date.now() - started) / 1000).toFixed(1)} s`;

        // Redacted before anything is kept or shown: values the worker knows, then patterns of credentials.
        const output = redactOutput(r.output, secrets);
        const kept = await keepOutput(tests.logFile, output, r.dropped);
        const leftover = r.leftover ? ` ${r.leftover}` : '';
        const last = `${kept}${leftover} Last output:\n${indent(shortTail(output))}`;
        if (r.timedOut) {
          add('tests', false, `\`${shown}\` did not finish within ${Math.round(timeoutMs / 1000)} s and was stopped. It ran ${where}. ` +
            `Fix: make the tests faster or raise the limit (and preflight's startToCloseTimeout). ${last}`);
        } else if (r.code !== 0) {
          add('tests', false, `\`${shown}\` failed (${r.signal ? `signal ${r.signal}` : `exit ${r.code}`}) after ${took} at ${short(head)} (it ran ${where}). ` +
            `Fix: make the tests pass on ${repo.branch} and push. ${last}`);
        } else {
          add('tests', true, `\`${shown}\` passed in ${took} (it ran ${where}). ${kept}${leftover}`);
        }
      }
    }),
  };
}

async function readOptional(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'EISDIR') return undefined;
    throw err;
  }
}

function pick(env: NodeJS.ProcessEnv, keys: string[]): NodeJS.ProcessEnv {
  return Object.fromEntries(keys.filter((k) => env[k] !== undefined).map((k) => [k, env[k]]));
}

function indent(text: string): string {
  return text.split('\n').map((l) => `    ${l}`).join('\n');
}

type TestRunner = NonNullable<RepoConfig['testRunner']>;
type ContainerRunner = Extract<TestRunner, { kind: 'container' }>;

/** The OS user the `user` runner switches to. */
interface TestAccount {
  name: string;
  uid: number;
  gid: number;
}

interface TestPlan {
  runner: TestRunner;
  account?: TestAccount;
  /** `<artifactsDir>/preflight-tests.log`, when the release has an artifacts directory. */
  logFile?: string;
}

/** What a test command did; `output` is the raw (unredacted) end of its stdout and stderr. */
interface CommandResult {
  code: number | null;
  signal: string | null;
  timedOut: boolean;
  output: string;
  /** Bytes of output dropped from the front to keep the last {@link OUTPUT_CAP}. */
  dropped: number;
  /** Something that could not be cleaned up afterwards, for the report. */
  leftover?: string;
}

/** How much of a test command's output is kept (its end). */
const OUTPUT_CAP = 1024 * 1024;
/** What of it reaches the failure message (and so Temporal history, status and the Web UI). */
const TAIL_LINES = 10;
const TAIL_CHARS = 800;
const LOG_NAME = 'preflight-tests.log';

const RUNNER_FORMS =
  'testRunner: { kind: container, image: node:20 } (a throwaway container on the engine that sees only the checkout; no network unless network: default) ' +
  'or testRunner: { kind: user, user: nobody } (a separate OS user on the worker; the worker must run as root)';

/** Check the runner can be used here, find the test user, and expand where the output goes; before any git work. */
async function planTests(repo: RepoConfig, req: PreflightRequest): Promise<TestPlan> {
  const runner = repo.testRunner;
  if (!runner) {
    throw nonRetryable(
      GantryErrorType.ConfigInvalid,
      `repo.testCommand is set but repo.testRunner is not. The test command is repository code: run as the worker it could read the ` +
        `worker's secret files and environment and print them into the release history. Fix: add ${RUNNER_FORMS} to the service's repo ` +
        'section of the release config and start the release again.',
    );
  }
  const logFile = req.artifactsDir
    ? path.join(path.resolve(expandReleasePath(req.artifactsDir, req.release)), LOG_NAME)
    : undefined;
  if (runner.kind === 'container') return { runner, logFile };
  return { runner, account: await testAccount(runner.user), logFile };
}

function idOf(flag: '-u' | '-g', user: string): Promise<number> {
  return new Promise((resolve, reject) => {
    execFile('id', [flag, user], { encoding: 'utf8', timeout: 10_000 }, (err, stdout) => {
      const n = Number(stdout.trim());
      if (err || !/^\d+$/.test(stdout.trim())) reject(err ?? new Error(`id printed ${JSON.stringify(stdout)}`));
      else resolve(n);
    });
  });
}

/**
 * The uid/gid of the `user` runner's account. Refused (non-retryable ConfigInvalid, suggesting the container
 * runner) when it would give no isolation or cannot work: root, the worker's own user, a worker that is not root.
 */
async function testAccount(name: string): Promise<TestAccount> {
  const refuse = (why: string) => nonRetryable(GantryErrorType.ConfigInvalid,
    `repo.testRunner { kind: user, user: ${name} } cannot be used on this worker: ${why} ` +
      `Fix: use testRunner: { kind: container, image: <an image with your toolchain> } (it needs only a container engine the worker can reach), ` +
      'or run the worker as root with an unprivileged test user such as nobody.', { user: name });
  if (!/^[A-Za-z_][A-Za-z0-9_.-]*\$?$/.test(name)) throw refuse('that is not a user name.');
  let uid: number;
  let gid: number;
  try {
    [uid, gid] = await Promise.all([idOf('-u', name), idOf('-g', name)]);
  } catch {
    throw refuse(`there is no user "${name}" here (\`id -u ${name}\` found none); create it (e.g. useradd --system --no-create-home ${name}) or name another.`);
  }
  const self = process.getuid?.();
  if (uid === 0) throw refuse(`${name} is root (uid 0), which can read every secret on the worker: it gives no isolation.`);
  if (self === uid) {
    throw refuse(`the worker itself runs as uid ${uid}, the same user: the tests could read everything the worker can (its secret files, /proc/<worker>/environ), so it gives no isolation.`);
  }
  if (self !== 0) {
    throw refuse(`the worker runs as uid ${self ?? 'unknown'}, not as root, so it cannot start processes as ${name} (uid ${uid}).`);
  }
  return { name, uid, gid };
}

/**
 * Give the checkout to the test user, make a fresh HOME and TMPDIR owned by it inside the attempt's directory, and
 * check that it can reach them (every directory above must be searchable by it).
 */
async function prepareForUser(dir: string, checkout: string, account: TestAccount): Promise<{ home: string; tmp: string }> {
  const home = path.join(dir, 'home');
  const tmp = path.join(dir, 'tmp');
  for (const d of [home, tmp]) {
    await mkdir(d, { mode: 0o700 });
    await chown(d, account.uid, account.gid);
  }
  await chownTree(checkout, account.uid, account.gid);
  // The attempt's directory: searchable (not listable) by the test user; it holds nothing else of the worker's.
  await chmod(dir, 0o711);
  for (let d = path.dirname(dir); ; d = path.dirname(d)) {
    const st = await stat(d);
    const searchable = (st.mode & 0o001) !== 0 || (st.uid === account.uid && (st.mode & 0o100) !== 0) || (st.gid === account.gid && (st.mode & 0o010) !== 0);
    if (!searchable) {
      throw nonRetryable(GantryErrorType.ConfigInvalid,
        `The test user ${account.name} cannot reach the checkout in ${dir}: ${d} is not searchable by it (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}). ` +
          `Fix: make it searchable (chmod o+x ${d}), or point the worker's work directory at one that is, or use testRunner: { kind: container, … }.`);
    }
    if (d === path.dirname(d)) break;
  }
  return { home, tmp };
}

/** chown -R without following symlinks. */
async function chownTree(root: string, uid: number, gid: number): Promise<void> {
  await lchown(root, uid, gid);
  let entries: Dirent[];
  try {
    entries = await readdir(root, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) {
    const p = path.join(root, e.name);
    if (e.isDirectory()) await chownTree(p, uid, gid);
    else await lchown(p, uid, gid);
  }
}

/** The last {@link OUTPUT_CAP} bytes of what a command prints, and how much was dropped before them. */
class OutputTail {
  private chunks: Buffer[] = [];
  private size = 0;
  dropped = 0;

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size > OUTPUT_CAP && this.chunks.length) {
      const extra = this.size - OUTPUT_CAP;
      const first = this.chunks[0]!;
      if (first.length <= extra) {
        this.chunks.shift();
        this.size -= first.length;
        this.dropped += first.length;
      } else {
        this.chunks[0] = first.subarray(extra);
        this.size -= extra;
        this.dropped += extra;
      }
    }
  }

  text(): string {
    const text = Buffer.concat(this.chunks).toString('utf8');
    // Output cut mid-line (or mid-secret) starts at the next whole line.
    if (!this.dropped) return text;
    const nl = text.indexOf('\n');
    return nl >= 0 ? text.slice(nl + 1) : text;
  }
}

/** The error a run ends with when the activity is cancelled (the SDK's CancelledFailure, as the signal's reason). */
function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error('cancelled');
}

/**
 * The `user` runner: `/bin/sh -c command` as the test user, in its own process group, keeping the end of its
 * output. When the shell exits, on timeout and on activity cancellation, its process group is killed, and so are
 * the user's processes that carry this run's fresh HOME (daemons the tests started in a session of their own).
 */
function runAsUser(command: string, cwd: string, env: NodeJS.ProcessEnv, account: TestAccount, timeoutMs: number): Promise<CommandResult> {
  const signal = cancellation();
  if (signal.aborted) return Promise.reject(abortError(signal));
  const home = env.HOME!;
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', command], { cwd, env, uid: account.uid, gid: account.gid, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const out = new OutputTail();
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => out.push(b));
    let timedOut = false;
    let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    const sweeps: Promise<number[]>[] = [];
    const killAll = () => {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
      // Whatever still holds the output pipes open is killed too, so the run ends with its shell.
      sweeps.push(killStragglers(account.uid, home));
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killAll();
    }, timeoutMs);
    signal.addEventListener('abort', killAll, { once: true });
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', killAll);
    };
    child.on('error', (err) => {
      done();
      reject(err);
    });
    child.on('exit', (code, sig) => {
      exited = { code, signal: sig };
      killAll();
    });
    child.on('close', (code, sig) => {
      done();
      sweeps.push(killStragglers(account.uid, home));
      void Promise.all(sweeps).then((killed) => {
        const stragglers = new Set(killed.flat());
        if (signal.aborted && activityContext()) return reject(abortError(signal));
        const status = exited ?? { code, signal: sig };
        resolve({
          code: status.code, signal: status.signal, timedOut, output: out.text(), dropped: out.dropped,
          ...(stragglers.size ? { leftover: `${stragglers.size} process(es) the tests left running as ${account.name} were killed.` } : {}),
        });
      });
    });
  });
}

/** Kill the test user's processes that still carry this run's HOME (daemons the tests started); returns their pids. */
async function killStragglers(uid: number, home: string): Promise<number[]> {
  let pids: string[];
  try {
    pids = (await readdir('/proc')).filter((p) => /^\d+$/.test(p));
  } catch {
    return [];
  }
  const killed: number[] = [];
  for (const pid of pids) {
    try {
      if ((await stat(`/proc/${pid}`)).uid !== uid) continue;
      const environ = (await readFile(`/proc/${pid}/environ`, 'latin1')).split('\0');
      if (!environ.includes(`HOME=${home}`)) continue;
      process.kill(Number(pid), 'SIGKILL');
      killed.push(Number(pid));
    } catch {
      /* gone meanwhile */
    }
  }
  return killed;
}

/**
 * The `container` runner: a fresh container of the runner's image (pulled when the engine does not have it) with
 * the checkout bind-mounted at /workspace, `/bin/sh -c command`, only `env`, no other mounts, network `none`
 * unless configured; removed afterwards whatever happened (success, failure, timeout, cancellation).
 */
async function runInContainer(
  runner: ContainerRunner,
  command: string,
  checkout: string,
  env: Record<string, string>,
  timeoutMs: number,
  engine: EngineFactory,
  labels: Record<string, string>,
): Promise<CommandResult> {
  const signal = cancellation();
  const docker = engine(runner.socketPath);
  const socket = runner.socketPath;
  const name = `gantry-tests-${labels['gantry.service']!.replace(/[^a-zA-Z0-9_.-]/g, '-')}-${randomBytes(4).toString('hex')}`;
  if (runner.user && process.getuid?.() === 0) {
    // The same uid on the host when the engine runs as root: the container user can write its checkout.
    const [uid, gid = uid] = runner.user.split(':').map(Number) as [number, number?];
    await chownTree(checkout, uid, gid);
  }
  const spec: Docker.ContainerCreateOptions = {
    name,
    Image: runner.image,
    // The image's entrypoint is not used: the command is what runs ([''] is how Docker and Podman both read "none").
    Entrypoint: [''],
    Cmd: ['/bin/sh', '-c', command],
    Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
    WorkingDir: '/workspace',
    ...(runner.user ? { User: runner.user } : {}),
    Labels: labels,
    Tty: false,
    OpenStdin: false,
    AttachStdin: false,
    AttachStdout: true,
    AttachStderr: true,
    HostConfig: {
      Mounts: [{ Type: 'bind', Source: checkout, Target: '/workspace', ReadOnly: false }],
      ...((runner.network ?? 'none') === 'none' ? { NetworkMode: 'none' } : {}),
      SecurityOpt: ['no-new-privileges'],
      Privileged: false,
      AutoRemove: false,
    },
  };

  let container: Docker.Container;
  try {
    container = await docker.createContainer(spec);
  } catch (err) {
    if (statusCode(err) !== 404) throw containerFailure(err, `create the test container from ${runner.image}`, socket);
    await pullImage(docker, runner.image, socket, signal);
    try {
      container = await docker.createContainer(spec);
    } catch (again) {
      throw containerFailure(again, `create the test container from ${runner.image}`, socket);
    }
  }

  let result: CommandResult | undefined;
  try {
    result = await runCreated(docker, container, runner, timeoutMs, signal, socket);
    return result;
  } finally {
    const left = await removeContainer(container);
    if (left && result) result.leftover = `The test container ${name} could not be removed (${left}); remove it with \`docker rm -f ${name}\`.`;
  }
}

async function runCreated(docker: Docker, container: Docker.Container, runner: ContainerRunner, timeoutMs: number, signal: AbortSignal, socket: string | undefined): Promise<CommandResult> {
  if (signal.aborted) throw abortError(signal);
  const out = new OutputTail();
  let stream: NodeJS.ReadWriteStream;
  try {
    stream = await container.attach({ stream: true, stdout: true, stderr: true });
  } catch (err) {
    throw containerFailure(err, 'attach to the test container', socket);
  }
  const sink = new PassThrough();
  sink.on('data', (b: Buffer) => out.push(b));
  docker.modem.demuxStream(stream, sink, sink);
  const ended = new Promise<void>((resolve) => {
    stream.on('end', () => resolve());
    stream.on('close', () => resolve());
    stream.on('error', () => resolve());
  });
  try {
    try {
      await container.start();
    } catch (err) {
      const text = engineErrorText(err);
      if (classifyEngineText(text) === 'unreachable' && statusCode(err) === undefined) throw engineUnavailable('start the test container', socket, err);
      throw nonRetryable(GantryErrorType.ConfigInvalid,
        `The test container (image ${runner.image}) did not start: ${text}. Fix: testRunner.image must be an image with /bin/sh ` +
          '(and the tools the test command needs); check it runs with `docker run --rm <image> /bin/sh -c true`.', { image: runner.image });
    }
    let timedOut = false;
    const kill = () => {
      container.kill().catch(() => undefined);
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, timeoutMs);
    let onAbort: () => void = () => undefined;
    const aborted = new Promise<never>((_resolve, reject) => {
      onAbort = () => {
        kill();
        reject(abortError(signal));
      };
      signal.addEventListener('abort', onAbort, { once: true });
    });
    let status: { StatusCode?: number };
    try {
      status = (await Promise.race([container.wait(), aborted])) as { StatusCode?: number };
    } catch (err) {
      if (signal.aborted) throw abortError(signal);
      throw containerFailure(err, 'wait for the test container', socket);
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    }
    // The attach stream ends when the container's output does; a moment's grace for what is still in flight.
    await Promise.race([ended, new Promise((r) => setTimeout(r, 2_000))]);
    const code = typeof status.StatusCode === 'number' ? status.StatusCode : null;
    return {
      code: timedOut ? null : code,
      signal: null,
      timedOut,
      output: out.text(),
      dropped: out.dropped,
    };
  } finally {
    (stream as unknown as { destroy?: () => void }).destroy?.();
  }
}

/** Remove the test container (force: it may still run); returns why not, or undefined when it is gone. */
async function removeContainer(container: Docker.Container): Promise<string | undefined> {
  let last: unknown;
  for (let i = 0; i < 3; i++) {
    try {
      await container.remove({ force: true, v: true });
      return undefined;
    } catch (err) {
      if (statusCode(err) === 404) return undefined;
      // 409: removal already in progress (engine-side), wait for it.
      last = err;
      await new Promise((r) => setTimeout(r, 500 * (i + 1)));
    }
  }
  return engineErrorText(last);
}

async function pullImage(docker: Docker, image: string, socket: string | undefined, signal: AbortSignal): Promise<void> {
  try {
    beat({ check: 'tests', runner: 'container', pulling: image });
    const stream = await docker.pull(image);
    await followStream(docker, stream, (e) => {
      if (e.status) beat({ check: 'tests', runner: 'container', pulling: image, status: e.status.slice(0, 200) });
    }, signal);
  } catch (err) {
    if (signal.aborted) throw abortError(signal);
    if (!(err instanceof StreamError) && statusCode(err) === undefined) throw engineUnavailable(`pull the test image ${image}`, socket, err);
    const text = err instanceof StreamError ? err.message : engineErrorText(err);
    if (classifyEngineText(text) === 'unreachable') {
      throw retryable(`The test image ${image} is not on the engine at ${engineAddress(socket)}, and pulling it failed because the registry did not answer (${text}). Gantry retries.`, { image });
    }
    throw nonRetryable(GantryErrorType.ConfigInvalid,
      `The test image ${image} is not on the engine at ${engineAddress(socket)} and could not be pulled (${text}). ` +
        'Fix: set repo.testRunner.image to an image the engine has or can pull (log the engine in to its registry), or load it there first.', { image });
  }
}

function containerFailure(err: unknown, what: string, socket: string | undefined): Error {
  const text = engineErrorText(err);
  if (classifyEngineText(text) === 'unreachable' || (statusCode(err) ?? 0) >= 500) return engineUnavailable(what, socket, err);
  return nonRetryable(GantryErrorType.ConfigInvalid, `Could not ${what}: the engine at ${engineAddress(socket)} refused it (${text}). ` +
    'Fix repo.testRunner in the release config (image, user, socketPath) and start the release again.');
}

/** Write the (redacted) output to the artifacts directory; returns the sentence for the report. */
async function keepOutput(file: string | undefined, output: string, dropped: number): Promise<string> {
  if (!file) {
    return 'The full output was not kept: set announce.artifactsDir in the release config to keep it as preflight-tests.log.';
  }
  const head = dropped ? `[gantry: the first ${dropped} bytes of output were dropped; this is the last ${OUTPUT_CAP} bytes]\n` : '';
  try {
    await mkdir(path.dirname(file), { recursive: true });
    const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
    await writeFile(tmp, head + output, { mode: 0o640 });
    await rename(tmp, file);
  } catch (err) {
    return `The full output could not be written to ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)}); check the worker can write to announce.artifactsDir.`;
  }
  return `Full output${dropped ? ` (its last ${OUTPUT_CAP / 1024 / 1024} MiB)` : ''}: ${file}.`;
}

/** At most {@link TAIL_LINES} lines and {@link TAIL_CHARS} characters of the end, without terminal escapes. */
function shortTail(output: string): string {
  const clean = output
    .replace(/\x1b\[[0-9;?]*[ -/]*[@-~]/g, '')
    .replace(/\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)/g, '')
    .replace(/\r\n?/g, '\n')
    .replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '');
  const lines = clean.trimEnd().split('\n').slice(-TAIL_LINES).join('\n');
  if (!lines.trim()) return '(no output)';
  return lines.length > TAIL_CHARS ? `…${lines.slice(-(TAIL_CHARS - 1))}` : lines;
}
