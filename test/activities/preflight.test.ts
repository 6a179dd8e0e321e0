import { afterEach, describe, expect, it } from 'vitest';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { changelogSection, createPreflight, type PreflightDeps } from '../../src/activities/preflight';
import type { PreflightRequest, PreflightResult } from '../../src/activities/types';
import type { RepoConfig } from '../../src/config/schema';
import { GantryErrorType } from '../../src/shared/errors';
import { createTestRepo, startGitDaemon, type TestRepo } from '../helpers/git-repos';

const CHANGELOG = `# Changelog

## [1.2.3] - 2026-01-10
### Fixed
- the thing

## [1.2.2] - 2026-01-01
- older

[1.2.3]: https://example.test/compare/v1.2.2...v1.2.3
`;

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
    const { result, heartbeats } = await run(request({ url: repo.remote, testCommand: 'test -f CHANGELOG.md && echo "tests ok for $GANTRY_VERSION"' }));
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
    const f = await failure(request({ url: repo.remote, testCommand: 'echo "boom-output from the tests"; exit 3' }));
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
    const f = await failure(request({ url: repo.remote, testCommand: 'echo started; sleep 30' }), { testTimeoutMs: 1_000 });
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(f.message).toMatch(/- tests: `echo started; sleep 30` did not finish within 1 s and was stopped\..*Last output:\n\s+started/s);
  });

  it('does not hand the worker environment to the test command', async () => {
    const repo = repoWith({ 'CHANGELOG.md': CHANGELOG });
    const f = await failure(request({ url: repo.remote, testCommand: 'echo "seen:${WORKER_SECRET:-none}"; exit 1' }), {
      env: { ...process.env, WORKER_SECRET: 'hunter2-secret' },
    });
    expect(f.message).toContain('seen:none');
    expect(f.message).not.toContain('hunter2-secret');
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
