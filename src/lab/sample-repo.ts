/**
 * The lab's git remote: a bare repository holding the sample service (lab/sample-service) in two revisions.
 *
 *   main    → 1.0.0, healthy      (the sources as they are in lab/sample-service)
 *   broken  → 1.1.0, /health 404  (a child of 1.0.0 whose health file is gone)
 *
 * `refs/lab/good` and `refs/lab/broken` keep pointing at them when a test moves `main` (e.g. to release the
 * broken revision and watch production roll back). Commits have fixed authors and dates, so their SHAs are the
 * same in every lab built from the same sources.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import { parseConfig } from '../config/load';
import type { GantryConfig } from '../config/schema';

export interface SampleRevision {
  name: 'good' | 'broken';
  version: string;
  commit: string;
  /** Whether the image built from it answers /health with 200. */
  healthy: boolean;
}

export interface SampleRepo {
  /** Path of the bare repository: what `repo.url` in the config holds. */
  url: string;
  branch: 'main';
  good: SampleRevision;
  broken: SampleRevision;
}

const GOOD_VERSION = '1.0.0';
const BROKEN_VERSION = '1.1.0';

/** lab/sample-service, found from this module whether it runs from src/ (tsx) or dist/ (compiled). */
export function sampleServiceDir(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'lab', 'sample-service');
    if (existsSync(path.join(candidate, 'Dockerfile'))) return candidate;
    if (path.dirname(dir) === dir) throw new Error(`lab/sample-service not found above ${__dirname}; run from a gantry checkout`);
  }
}

function git(args: string[], cwd: string, date?: string): string {
  const env = {
    ...process.env,
    LC_ALL: 'C',
    GIT_AUTHOR_NAME: 'Lab Developer',
    GIT_AUTHOR_EMAIL: 'dev@lab.invalid',
    GIT_COMMITTER_NAME: 'Lab Developer',
    GIT_COMMITTER_EMAIL: 'dev@lab.invalid',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    ...(date ? { GIT_AUTHOR_DATE: date, GIT_COMMITTER_DATE: date } : {}),
  };
  return execFileSync('git', args, { cwd, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

function setVersion(tree: string, version: string): void {
  const pkgFile = path.join(tree, 'package.json');
  const pkg = JSON.parse(readFileSync(pkgFile, 'utf8')) as { version: string };
  pkg.version = version;
  writeFileSync(pkgFile, `${JSON.stringify(pkg, null, 2)}\n`);
  writeFileSync(path.join(tree, 'version.json'), `${JSON.stringify({ version })}\n`);
}

function readRevision(bare: string, name: 'good' | 'broken'): SampleRevision {
  const commit = git(['rev-parse', `refs/lab/${name}^{commit}`], bare);
  const pkg = JSON.parse(git(['show', `${commit}:package.json`], bare)) as { version: string };
  return { name, version: pkg.version, commit, healthy: name === 'good' };
}

/** Create the bare repository under `dir` unless it is already there; either way describe its revisions. */
export function ensureSampleRepo(dir: string): SampleRepo {
  const bare = path.join(dir, 'hello.git');
  if (!existsSync(path.join(bare, 'refs', 'lab'))) {
    rmSync(bare, { recursive: true, force: true });
    const work = mkdtempSync(path.join(os.tmpdir(), 'gantry-lab-sample-'));
    try {
      cpSync(sampleServiceDir(), work, { recursive: true });
      setVersion(work, GOOD_VERSION);
      git(['init', '--quiet', '--initial-branch', 'main'], work);
      git(['add', '--all'], work);
      git(['commit', '--quiet', '-m', `hello ${GOOD_VERSION}: /health and /version`], work, '2026-11-01T10:00:00Z');

      setVersion(work, BROKEN_VERSION);
      unlinkSync(path.join(work, 'www', 'health'));
      const changelog = path.join(work, 'CHANGELOG.md');
      writeFileSync(changelog, readFileSync(changelog, 'utf8').replace(/\n## /, `\n## [${BROKEN_VERSION}] - 2026-11-15\n\n` +
        '### Changed\n- Reorganised the static files. (This revision lost `/health`, which now answers 404: the lab\'s failing release.)\n\n## '));
      git(['add', '--all'], work);
      git(['commit', '--quiet', '-m', `hello ${BROKEN_VERSION}: reorganise static files (drops /health)`], work, '2026-11-15T10:00:00Z');

      git(['init', '--quiet', '--bare', '--initial-branch', 'main', bare], dir);
      git(['push', '--quiet', bare, 'HEAD~1:refs/heads/main', 'HEAD:refs/heads/broken', 'HEAD~1:refs/lab/good', 'HEAD:refs/lab/broken'], work);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }
  installPushHooks(bare);
  return { url: bare, branch: 'main', good: readRevision(bare, 'good'), broken: readRevision(bare, 'broken') };
}

/** One ref update the lab repository received, as its hooks logged it (time in ms since the epoch). */
export interface RefUpdate {
  time: number;
  old: string;
  new: string;
  ref: string;
}

const PUSH_DELAY_FILE = 'lab-push-delay';
const RECEIVING_LOG = 'lab-receiving.log';
const PUSHES_LOG = 'lab-pushes.log';

/**
 * Hooks of the lab's bare repository, so tests can count and slow pushes on the real remote: `pre-receive` logs
 * every ref update offered (lab-receiving.log) and then sleeps as long as lab-push-delay says (seconds; no file,
 * no delay), `post-receive` logs every ref update accepted (lab-pushes.log). Written on every start (idempotent).
 */
function installPushHooks(bare: string): void {
  const log = (file: string) => `while read old new ref; do printf '%s %s %s %s\n' "$(date +%s%3N)" "$old" "$new" "$ref" >> ${file}; done`;
  const hooks = {
    'pre-receive': [`${log(RECEIVING_LOG)}`, `d=$(cat ${PUSH_DELAY_FILE} 2>/dev/null)`, '[ -n "$d" ] && sleep "$d"', 'exit 0'],
    'post-receive': [`${log(PUSHES_LOG)}`, 'exit 0'],
  };
  for (const [name, lines] of Object.entries(hooks)) {
    writeFileSync(path.join(bare, 'hooks', name), `#!/bin/sh\n# The lab's push log (src/lab/sample-repo.ts)\n${lines.join('\n')}\n`, { mode: 0o755 });
  }
}

function readRefLog(file: string): RefUpdate[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((line) => {
    const [time = '0', old = '', next = '', ref = ''] = line.split(' ');
    return { time: Number(time), old, new: next, ref };
  });
}

/** Every ref update the lab repository accepted (post-receive), in order. */
export function acceptedPushes(repo: Pick<SampleRepo, 'url'>): RefUpdate[] {
  return readRefLog(path.join(repo.url, PUSHES_LOG));
}

/** Every ref update offered to the lab repository (pre-receive, before any delay), in order. */
export function offeredPushes(repo: Pick<SampleRepo, 'url'>): RefUpdate[] {
  return readRefLog(path.join(repo.url, RECEIVING_LOG));
}

/** Hold every push this long in pre-receive (0: not at all), e.g. to kill a worker while its tag push is in flight. */
export function setPushDelay(repo: Pick<SampleRepo, 'url'>, seconds: number): void {
  const file = path.join(repo.url, PUSH_DELAY_FILE);
  if (seconds > 0) writeFileSync(file, `${seconds}\n`);
  else rmSync(file, { force: true });
}

/** Point `branch` of the lab repository at a revision (e.g. main → broken, to release the failing version). */
export function moveBranch(repo: SampleRepo, branch: string, commit: string): void {
  git(['update-ref', `refs/heads/${branch}`, commit], repo.url);
}

/**
 * Switch the lab's worker config to the rollback demo: the same config with staging checking only /version. The
 * broken revision answers its version but lost /health, so with this config it passes staging and reaches
 * production, as a release that only breaks under production traffic would; production's health check then
 * rolls it back. The file is rewritten in place, because the worker owns its config and reads it again for
 * every release (the standard one is kept beside it for restoreStandardConfig). Returns the path written.
 */
export function writeRollbackDemoConfig(configFile: string): string {
  const standard = standardCopy(configFile);
  if (!existsSync(standard)) copyFileSync(configFile, standard);
  const doc = parse(readFileSync(standard, 'utf8')) as GantryConfig;
  for (const svc of Object.values(doc.services)) {
    svc.environments.staging!.checks = svc.environments.staging!.checks.filter((c) => c.name === 'version');
  }
  const text = `# The lab config with staging checking only /version (src/lab/sample-repo.ts writeRollbackDemoConfig).\n${stringify(doc)}`;
  parseConfig(text, configFile); // as valid as a user's config
  writeFileSync(configFile, text);
  return configFile;
}

/** Put the lab's standard worker config back after writeRollbackDemoConfig (no-op when it was never switched). */
export function restoreStandardConfig(configFile: string): string {
  const standard = standardCopy(configFile);
  if (existsSync(standard)) copyFileSync(standard, configFile);
  return configFile;
}

function standardCopy(configFile: string): string {
  return path.join(path.dirname(configFile), 'gantry-standard.yaml');
}
