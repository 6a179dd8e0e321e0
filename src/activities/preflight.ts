/**
 * Preflight: everything that must hold before anything is changed. The version is semver and not yet released,
 * the CHANGELOG has a section for it, package.json agrees, the release commit is the head of the configured
 * branch, and the configured test command passes in a checkout of it.
 *
 * Every check runs (as far as its inputs exist) and all failures are reported together, each naming the check
 * and the fix, so an operator fixes everything in one round. A git remote that does not answer is retried.
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import * as semver from 'semver';
import { GantryErrorType, nonRetryable } from '../shared/errors';
import type { PreflightRequest, PreflightResult } from './types';
import { Git, displayUrl, gitFailure, withTempDir, type RemoteTag } from './git';
import { activityContext, cancellation, currentAttempt, withHeartbeat } from './heartbeat';
import { describeSecretRef, resolveSecret } from './secrets';

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
   * Environment of the test command. By default a minimal one (PATH, HOME, locale, TMPDIR) plus CI=true and
   * GANTRY_SERVICE / GANTRY_VERSION / GANTRY_COMMIT: the worker's secrets are not handed to repository code.
   */
  testEnv?: NodeJS.ProcessEnv;
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

export function createPreflight(deps: PreflightDeps) {
  return {
    preflight: async (req: PreflightRequest): Promise<PreflightResult> => {
      const { release, repo } = req;
      const version = release.version;
      const tagName = `v${version}`;
      const url = displayUrl(repo.url);
      const token = repo.token ? resolveSecret(repo.token, deps.env) : undefined;
      const tokenRef = repo.token ? describeSecretRef(repo.token) : undefined;
      const git = new Git({ env: deps.env, token, timeoutMs: deps.gitTimeoutMs });
      const checks: PreflightCheck[] = [];
      const add = (name: string, ok: boolean, detail: string) => checks.push({ name, ok, detail });

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
      if (state.head) {
        commit = await withTempDir('preflight', async (dir) => {
          const checkout = path.join(dir, 'checkout');
          const head = await withHeartbeat(() => ({ check: 'checkout' }), () => git.cloneBranch(repo.url, repo.branch, checkout))
            .catch((err: unknown) => { throw gitFailure(err, `check out branch ${repo.branch} of`, repo.url, tokenRef); });
          add('branch', true, `commit ${short(head)} is the head of ${repo.branch} on ${url}`);
          await checkFiles(checkout, head);
          await runTests(checkout, head);
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
      return { attempt: currentAttempt(), commit: commit!, checks };

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

      async function runTests(checkout: string, head: string): Promise<void> {
        if (!repo.testCommand) {
          add('tests', true, 'no test command configured (repo.testCommand)');
          return;
        }
        const timeoutMs = deps.testTimeoutMs ?? 480_000;
        const env: NodeJS.ProcessEnv = {
          ...pick(deps.env, ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TMPDIR', 'USER', 'SHELL']),
          ...deps.testEnv,
          CI: 'true',
          GANTRY_SERVICE: release.service,
          GANTRY_VERSION: version,
          GANTRY_COMMIT: head,
        };
        const started = Date.now();
        const r = await withHeartbeat(
          () => ({ check: 'tests', elapsedMs: Date.now() - started }),
          () => runCommand(repo.testCommand!, checkout, env, timeoutMs),
        );
        const took = `${((Date.now() - started) / 1000).toFixed(1)} s`;
        if (r.timedOut) {
          add('tests', false, `\`${repo.testCommand}\` did not finish within ${Math.round(timeoutMs / 1000)} s and was stopped. ` +
            `Fix: make the tests faster or raise the limit (and preflight's startToCloseTimeout). Last output:\n${indent(r.tail)}`);
        } else if (r.code !== 0) {
          add('tests', false, `\`${repo.testCommand}\` failed (${r.signal ? `signal ${r.signal}` : `exit ${r.code}`}) after ${took} at ${short(head)}. ` +
            `Fix: make the tests pass on ${repo.branch} and push. Last output:\n${indent(r.tail)}`);
        } else {
          add('tests', true, `\`${repo.testCommand}\` passed in ${took}`);
        }
      }
    },
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

interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  tail: string;
}

/**
 * Run a shell command line (the configured test command is one) in its own process group, keeping the last
 * 64 KiB of its output; on timeout or activity cancellation the whole group is killed.
 */
function runCommand(command: string, cwd: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<CommandResult> {
  const signal = cancellation();
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', command], { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const keep = (chunk: Buffer) => {
      out += chunk.toString('utf8');
      if (out.length > 65_536) out = out.slice(-65_536);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    let timedOut = false;
    const killGroup = () => {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, timeoutMs);
    const onAbort = () => killGroup();
    signal.addEventListener('abort', onAbort, { once: true });
    child.on('error', (err) => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      reject(err);
    });
    child.on('close', (code, sig) => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      if (signal.aborted && activityContext()) {
        reject(signal.reason instanceof Error ? signal.reason : new Error('cancelled'));
        return;
      }
      const lines = out.trimEnd().split('\n').slice(-30).join('\n');
      resolve({ code, signal: sig, timedOut, tail: lines.length > 3000 ? `…${lines.slice(-3000)}` : lines });
    });
  });
}
