import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { changelogSection, createPreflight, type PreflightDeps } from '../../src/activities/preflight';
import type { PreflightRequest, PreflightResult } from '../../src/activities/types';
import type { RepoConfig } from '../../src/config/schema';
import { ConfigError, parseConfig } from '../../src/config/load';
import { GantryErrorType } from '../../src/shared/errors';
import { SAMPLE_CONFIG_YAML } from '../helpers/fixtures';
import { createTestRepo, startGitDaemon, type TestRepo } from '../helpers/git-repos';

const CHANGELOG = `# Changelog

## [1.2.3] - 2026-01-10
### Fixed
- the thing

## [1.2.2] - 2026-01-01
- older

[1.2.3]: https://example.test/compare/v1.2.2...v1.2.3
`;

const repoRoot = path.resolve(__dirname, '..', '..');

/** Test commands here run as nobody (CI runs the suite as root); test-runner.test.ts covers both runners. */
const AS_NOBODY = { kind: 'user', user: 'nobody' } as const;

const repos: TestRepo[] = [];
afterEach(() => {
  while (repos.length) repos.pop()!.cleanup();
});

function repoWith(files: Record<string, string>): TestRepo {
  const r = createTestRepo(files);
  repos.push(r);
  return r;
}

function request(repo: Partial<RepoConfig> & { url: string }, version = '1.2.3'): PreflightRequest {
  return {
    release: { service: 'hello', version, workflowId: `release-hello-${version}` },
    repo: { branch: 'main', changelog: 'CHANGELOG.md', ...repo },
  };
}

async function run(req: PreflightRequest, deps: Partial<PreflightDeps> = {}) {
  const env = new MockActivityEnvironment({ attempt: 2 });
  const heartbeats: unknown[] = [];
  env.on('heartbeat', (d: unknown) => heartbeats.push(d));
  const { preflight } = createPreflight({ env: process.env, ...deps });
  const result = await env.run<[PreflightRequest], PreflightResult, typeof preflight>(preflight, req);
  return { result, heartbeats };
}

async function failure(req: PreflightRequest, deps: Partial<PreflightDeps> = {}): Promise<ApplicationFailure> {
  const err = await run(req, deps).then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(ApplicationFailure);
  return err as ApplicationFailure;
}

describe('preflight', () => {
  it('passes a releasable commit and returns the head of the branch with every check', async () => {
    const repo = repoWith({ 'CHANGELOG.md': CHANGELOG, 'package.json': '{"name":"hello","version":"1.2.3"}\n' });
    repo.tag('v1.2.2', 'HEAD');
    const head = repo.commit({ 'src.txt': 'new' }, 'feature');
    const { result, heartbeats } = await run(request({ url: repo.remote, testRunner: AS_NOBODY, testCommand: 'test -f CHANGELOG.md && echo "tests ok for $GANTRY_VERSION"' }));
    expect(result.commit).toBe(head);
    expect(result.attempt).toBe(2);
    expect(result.checks.every((c) => c.ok)).toBe(true);
    expect(result.checks.map((c) => c.name).sort()).toEqual(['branch', 'changelog', 'newer-than-latest', 'not-released', 'package-json', 'tests', 'version']);
    expect(result.checks.find((c) => c.name === 'newer-than-latest')!.detail).toContain('1.2.2');
    expect(heartbeats.length).toBeGreaterThan(0);
  });

  it('reports every failing check together, each with its fix', async () => {
    const repo = repoWith({ 'CHANGELOG.md': '# Changelog\n\n## [1.2.3-rc.1]\n- pre\n', 'package.json': '{"version":"1.2.0"}' });
    const old = repo.head();
    repo.tag('v1.2.3', old);
    repo.tag('v2.0.0', old);
    repo.commit({ 'x.txt': 'x' });
    const f = await failure(request({ url: repo.remote, testRunner: AS_NOBODY, testCommand: 'echo "boom-output from the tests"; exit 3' }));
    expect(f.type).toBe(GantryErrorType.PreflightFailed);
    expect(f.nonRetryable).toBe(true);
    const m = f.message;
    expect(m).toMatch(/5 of 7 checks failed/);
    expect(m).toMatch(/- changelog: CHANGELOG\.md has no section for 1\.2\.3\. Fix: add a heading "## \[1\.2\.3\]"/);
    expect(m).toMatch(/- package-json: package\.json says version "1\.2\.0", not 1\.2\.3\. Fix: set "version": "1\.2\.3"/);
    expect(m).toMatch(new RegExp(`- not-released: 1\\.2\\.3 is already released: tag v1\\.2\\.3 .* points at ${old.slice(0, 12)}.*Fix: release a new version \\(e\\.g\\. 1\\.2\\.4\\)`));
    expect(m).toMatch(/- newer-than-latest: 1\.2\.3 is lower than the latest released version 2\.0\.0 \(tag v2\.0\.0\)\. Fix: release a version above 2\.0\.0, e\.g\. 2\.0\.1/);
    expect(m).toMatch(/- tests: `echo "boom-output from the tests"; exit 3` failed \(exit 3\)/);
    expect(m).toContain('boom-output from the tests');
    expect(m).toContain('Nothing was changed');
    const details = f.details?.[0] as { checks: { name: string; ok: boolean }[] };
    expect(details.checks.filter((c) => !c.ok).map((c) => c.name).sort()).toEqual(['changelog', 'newer-than-latest', 'not-released', 'package-json', 'tests']);
  });

  it('treats a tag already at the branch head as a rerun of this release', async () => {
    const repo = repoWith({ 'CHANGELOG.md': '## 1.2.3\n- plain heading style\n' });
    repo.tag('v1.2.3');
    const { result } = await run(request({ url: repo.remote }));
    expect(result.checks.find((c) => c.name === 'not-released')).toMatchObject({ ok: true, detail: expect.stringContaining('rerun') });
    expect(result.checks.find((c) => c.name === 'package-json')).toMatchObject({ ok: true, detail: expect.stringContaining('no package.json') });
  });

  it('names a version that is not semver', async () => {
    const repo = repoWith({ 'CHANGELOG.md': CHANGELOG });
    const f = await failure(request({ url: repo.remote }, 'v1.2'));
    expect(f.message).toMatch(/- version: "v1\.2" is not a semantic version\. Fix: release a version written like 1\.2\.3/);
  });

  it('names a branch that does not exist on the remote', async () => {
    const repo = repoWith({ 'CHANGELOG.md': CHANGELOG });
    const f = await failure(request({ url: repo.remote, branch: 'release' }));
    expect(f.type).toBe(GantryErrorType.PreflightFailed);
    expect(f.message).toMatch(/- branch: Branch "release" does not exist on .*remote\.git\. Fix: push the branch/);
  });

  it('names a missing CHANGELOG file and invalid package.json', async () => {
    const repo = repoWith({ 'README.md': 'hi', 'package.json': '{ nope' });
    const f = await failure(request({ url: repo.remote }));
    expect(f.message).toMatch(/- changelog: CHANGELOG\.md does not exist at [0-9a-f]{12}\. Fix: add CHANGELOG\.md with a "## \[1\.2\.3\]" section/);
    expect(f.message).toMatch(/- package-json: package\.json is not valid JSON .*Fix: repair it/);
  });

  it('stops a test command that runs past its limit and reports it', async () => {
    const repo = repoWith({ 'CHANGELOG.md': CHANGELOG });
    const started = Date.now();
    const f = await failure(request({ url: repo.remote, testRunner: AS_NOBODY, testCommand: 'echo started; sleep 30' }), { testTimeoutMs: 1_000 });
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(f.message).toMatch(/- tests: `echo started; sleep 30` did not finish within 1 s and was stopped\..*Last output:\n\s+started/s);
  });

  it('does not hand the worker environment to the test command', async () => {
    const repo = repoWith({ 'CHANGELOG.md': CHANGELOG });
    const f = await failure(request({ url: repo.remote, testRunner: AS_NOBODY, testCommand: 'echo "seen:${WORKER_SECRET:-none}"; exit 1' }), {
      env: { ...process.env, WORKER_SECRET: 'hunter2-secret' },
    });
    expect(f.message).toContain('seen:none');
    expect(f.message).not.toContain('hunter2-secret');
  });

  it('keeps the full output, redacted, and reports only a short redacted tail', async () => {
    const repo = repoWith({ 'CHANGELOG.md': CHANGELOG });
    const artifacts = mkdtempSync(path.join(os.tmpdir(), 'gantry-preflight-artifacts-'));
    try {
      const command = 'echo "first line"; i=0; while [ $i -lt 30 ]; do echo "line $i"; i=$((i+1)); done; ' +
        'echo "the key is known-secret-value-42"; echo "token ghp_abcdefghijklmnopqrstuvwxyz0123456789"; exit 4';
      const f = await failure({ ...request({ url: repo.remote, testRunner: AS_NOBODY, testCommand: command }), artifactsDir: path.join(artifacts, '{service}', '{version}') },
        { knownSecrets: () => ['known-secret-value-42'] });
      const log = path.join(artifacts, 'hello', '1.2.3', 'preflight-tests.log');
      expect(f.message).toContain(`Full output: ${log}. Last output:\n`);
      const kept = readFileSync(log, 'utf8');
      expect(kept).toContain('first line');
      expect(kept).toContain('the key is ***');
      expect(kept).toContain('token ghp_***');
      expect(kept).not.toContain('known-secret-value-42');
      const tail = f.message.split('Last output:\n')[1]!.split('\nNothing was changed')[0]!;
      expect(tail.split('\n')).toHaveLength(10);
      expect(tail).not.toContain('first line');
      expect(tail).toContain('the key is ***');
      expect(f.message).not.toContain('known-secret-value-42');
      expect(f.message).not.toContain('ghp_abcdefghijklmnopqrstuvwxyz0123456789');
    } finally {
      rmSync(artifacts, { recursive: true, force: true });
    }
  });

  it('adds checks contributed by other systems to the report', async () => {
    const repo = repoWith({ 'CHANGELOG.md': CHANGELOG });
    const seen: string[] = [];
    const f = await failure(request({ url: repo.remote }), {
      extraChecks: async (_req, commit) => {
        seen.push(commit);
        return [{ name: 'github-blockers', ok: false, detail: 'issue #12 is labelled release-blocker. Fix: close it or remove the label.' }];
      },
    });
    expect(seen).toEqual([repo.head()]);
    expect(f.message).toMatch(/1 of 8 checks failed/);
    expect(f.message).toContain('- github-blockers: issue #12 is labelled release-blocker');
  });

  it('retries when the git remote does not answer', async () => {
    const repo = repoWith({ 'CHANGELOG.md': CHANGELOG });
    const daemon = await startGitDaemon(repo.root);
    const url = daemon.url('remote.git');
    const ok = await run(request({ url }));
    expect(ok.result.commit).toBe(repo.head());
    await daemon.stop();
    const f = await failure(request({ url }));
    expect(f.type).toBe(GantryErrorType.Unavailable);
    expect(f.nonRetryable).toBe(false);
    expect(f.message).toMatch(/Could not read the branches and tags of git:\/\/127\.0\.0\.1:\d+\/remote\.git: the git remote did not answer .*Connection refused/s);
  });

  it('refuses a repository that does not exist with the config fix', async () => {
    const f = await failure(request({ url: '/nonexistent/gantry/repo.git' }));
    expect(f.type).toBe(GantryErrorType.ConfigInvalid);
    expect(f.nonRetryable).toBe(true);
    expect(f.message).toMatch(/no git repository there.*Check repo\.url/s);
  });

  it('names a missing token reference before touching the remote', async () => {
    const repo = repoWith({ 'CHANGELOG.md': CHANGELOG });
    const f = await failure(request({ url: repo.remote, token: { env: 'GANTRY_TEST_NO_SUCH_TOKEN' } }));
    expect(f.type).toBe(GantryErrorType.SecretMissing);
    expect(f.message).toContain('{env: GANTRY_TEST_NO_SUCH_TOKEN}');
  });
});

describe('changelogSection', () => {
  it('finds bracketed, plain and v-prefixed headings and stops at the next release', () => {
    expect(changelogSection(CHANGELOG, '1.2.3')).toBe('### Fixed\n- the thing');
    expect(changelogSection('## 1.2.3\nbody\n## 1.2.2\nold', '1.2.3')).toBe('body');
    expect(changelogSection('## v1.2.3 (2026-01-01)\nbody', '1.2.3')).toBe('body');
    expect(changelogSection('## [1.2.30]\nx\n## [1.2.3-rc.1]\ny', '1.2.3')).toBeUndefined();
    expect(changelogSection('## [1.2.3-rc.1]\ny', '1.2.3-rc.1')).toBe('y');
  });
});

describe('repo.testRunner', () => {
  it('is required with testCommand, and the config error says why and shows both forms', () => {
    const withCommand = SAMPLE_CONFIG_YAML.replace('      branch: main\n', '      branch: main\n      testCommand: npm test\n');
    expect(withCommand).toContain('testCommand: npm test');
    let problems: string[] = [];
    try {
      parseConfig(withCommand, 'gantry.yaml');
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      problems = (err as ConfigError).problems;
    }
    const text = problems.join('\n');
    expect(text).toContain('services.hello.repo.testRunner: is required with testCommand');
    expect(text).toMatch(/could read the worker's secret files and environment/);
    expect(text).toContain('testRunner: { kind: container, image: node:20 }');
    expect(text).toContain('testRunner: { kind: user, user: nobody }');

    const container = parseConfig(withCommand.replace('testCommand: npm test\n', 'testCommand: npm test\n      testRunner: { kind: container, image: "node:20" }\n'), 'gantry.yaml');
    expect(container.services.hello!.repo.testRunner).toEqual({ kind: 'container', image: 'node:20', network: 'none' });
    const user = parseConfig(withCommand.replace('testCommand: npm test\n', 'testCommand: npm test\n      testRunner: { kind: user, user: nobody }\n'), 'gantry.yaml');
    expect(user.services.hello!.repo.testRunner).toEqual({ kind: 'user', user: 'nobody' });
  });

  it('refuses a request with testCommand but no runner before touching the remote', async () => {
    const f = await failure(request({ url: '/nonexistent/gantry/repo.git', testCommand: 'true' }));
    expect(f.type).toBe(GantryErrorType.ConfigInvalid);
    expect(f.nonRetryable).toBe(true);
    expect(f.message).toContain('repo.testCommand is set but repo.testRunner is not');
    expect(f.message).toContain('testRunner: { kind: container, image: node:20 }');
  });

  it('refuses root and unknown users for the user runner, suggesting the container runner', async () => {
    const root = await failure(request({ url: '/nonexistent/gantry/repo.git', testCommand: 'true', testRunner: { kind: 'user', user: 'root' } }));
    expect(root.type).toBe(GantryErrorType.ConfigInvalid);
    expect(root.nonRetryable).toBe(true);
    expect(root.message).toMatch(/root is root \(uid 0\).*gives no isolation.*Fix: use testRunner: \{ kind: container/s);
    const missing = await failure(request({ url: '/nonexistent/gantry/repo.git', testCommand: 'true', testRunner: { kind: 'user', user: 'gantry-no-such-user' } }));
    expect(missing.type).toBe(GantryErrorType.ConfigInvalid);
    expect(missing.message).toMatch(/there is no user "gantry-no-such-user" here.*kind: container/s);
  });

  // The check runs in a real worker process started as another user (daemon, uid 1, or nobody itself).
  it.each([
    ['daemon', /the worker runs as uid \d+, not as root, so it cannot start processes as nobody/],
    ['nobody', /the worker itself runs as uid \d+, the same user.*gives no isolation/s],
  ])('refuses the user runner in a worker running as %s (no isolation possible)', (workerUser, expected) => {
    expect(process.getuid?.(), 'this test starts a worker as another user, so the suite must run as root (CI does)').toBe(0);
    const uid = Number(execFileSync('id', ['-u', workerUser], { encoding: 'utf8' }).trim());
    const home = mkdtempSync(path.join(os.tmpdir(), 'gantry-worker-home-'));
    chmodSync(home, 0o777);
    try {
      const script = `
        import { createPreflight } from ${JSON.stringify(path.join(repoRoot, 'src/activities/preflight.ts'))};
        createPreflight({ env: process.env }).preflight({
          release: { service: 'hello', version: '1.2.3', workflowId: 'w' },
          repo: { url: '/nonexistent/repo.git', branch: 'main', changelog: 'CHANGELOG.md', testCommand: 'true', testRunner: { kind: 'user', user: 'nobody' } },
        }).then(() => console.log(JSON.stringify({ passed: true })), (e) => console.log(JSON.stringify({ type: e.type, nonRetryable: e.nonRetryable, message: e.message })));`;
      const out = spawnSync(path.join(repoRoot, 'node_modules', '.bin', 'tsx'), ['--eval', script], {
        cwd: repoRoot, uid, gid: uid, encoding: 'utf8', timeout: 60_000,
        env: { PATH: process.env.PATH, HOME: home, TMPDIR: home },
      });
      const last = out.stdout.trim().split('\n').pop() ?? '';
      expect(last, `worker as ${workerUser} printed: ${out.stdout}\n${out.stderr}`).toMatch(/^\{/);
      const f = JSON.parse(last) as { type?: string; nonRetryable?: boolean; message?: string };
      expect(f.type).toBe(GantryErrorType.ConfigInvalid);
      expect(f.nonRetryable).toBe(true);
      expect(f.message).toMatch(expected);
      expect(f.message).toContain('Fix: use testRunner: { kind: container');
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});
