import { afterEach, describe, expect, it } from 'vitest';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createTag, type TagDeps } from '../../src/activities/tag';
import type { TagRequest, TagResult } from '../../src/activities/types';
import type { RepoConfig } from '../../src/config/schema';
import { GantryErrorType } from '../../src/shared/errors';
import { createTestRepo, git, startGitDaemon, startGitHttp, type TestRepo } from '../helpers/git-repos';

const repos: TestRepo[] = [];
const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (stops.length) await stops.pop()!();
  while (repos.length) repos.pop()!.cleanup();
});

function repoWith(): TestRepo {
  const r = createTestRepo({ 'CHANGELOG.md': '## [1.2.3]\n- x\n' });
  repos.push(r);
  return r;
}

function request(url: string, commit: string, repo: Partial<RepoConfig> = {}): TagRequest {
  return {
    release: { service: 'hello', version: '1.2.3', workflowId: 'release-hello-1.2.3' },
    repo: { url, branch: 'main', changelog: 'CHANGELOG.md', ...repo },
    commit,
  };
}

async function runTag(req: TagRequest, deps: Partial<TagDeps> = {}) {
  const { tag } = createTag({ env: process.env, ...deps });
  return new MockActivityEnvironment({ attempt: 1 }).run<[TagRequest], TagResult, typeof tag>(tag, req);
}

async function failure(req: TagRequest, deps: Partial<TagDeps> = {}): Promise<ApplicationFailure> {
  const err = await runTag(req, deps).then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(ApplicationFailure);
  return err as ApplicationFailure;
}

/** The remote's view of a tag: [tag object, peeled commit, object type]. */
function remoteTag(repo: TestRepo, tag: string): [string, string, string] {
  return [git(repo.remote, 'rev-parse', `refs/tags/${tag}`), git(repo.remote, 'rev-parse', `refs/tags/${tag}^{commit}`), git(repo.remote, 'cat-file', '-t', `refs/tags/${tag}`)];
}

describe('tag', () => {
  it('pushes an annotated tag at the commit and verifies it on the remote', async () => {
    const repo = repoWith();
    const commit = repo.head();
    const result = await runTag(request(repo.remote, commit), { identity: { name: 'Gantry Bot', email: 'bot@example.test' } });
    expect(result).toEqual({ attempt: 1, tag: 'v1.2.3', commit, created: true });
    const [, peeled, type] = remoteTag(repo, 'v1.2.3');
    expect(type).toBe('tag');
    expect(peeled).toBe(commit);
    const body = git(repo.remote, 'cat-file', '-p', 'refs/tags/v1.2.3');
    expect(body).toContain('tagger Gantry Bot <bot@example.test>');
    expect(body).toContain('Release hello 1.2.3');
    expect(body).toContain('workflow release-hello-1.2.3');
  });

  it('tags an older commit of the branch (the head moved after preflight)', async () => {
    const repo = repoWith();
    const commit = repo.head();
    repo.commit({ 'later.txt': 'later' });
    const result = await runTag(request(repo.remote, commit));
    expect(result.created).toBe(true);
    expect(remoteTag(repo, 'v1.2.3')[1]).toBe(commit);
  });

  it('is idempotent: a rerun finds the tag at the commit and changes nothing', async () => {
    const repo = repoWith();
    const commit = repo.head();
    await runTag(request(repo.remote, commit));
    const before = remoteTag(repo, 'v1.2.3');
    const again = await runTag(request(repo.remote, commit));
    expect(again).toMatchObject({ tag: 'v1.2.3', commit, created: false });
    expect(remoteTag(repo, 'v1.2.3')).toEqual(before);
    expect(git(repo.remote, 'tag', '--list')).toBe('v1.2.3');
  });

  it('accepts a lightweight tag someone already pushed at the commit', async () => {
    const repo = repoWith();
    repo.tag('v1.2.3', 'HEAD', false);
    expect(await runTag(request(repo.remote, repo.head()))).toMatchObject({ created: false });
  });

  it('refuses a tag at another commit as a non-retryable conflict naming both commits and the fix', async () => {
    const repo = repoWith();
    const old = repo.head();
    repo.tag('v1.2.3', old);
    const commit = repo.commit({ 'next.txt': 'n' });
    const f = await failure(request(repo.remote, commit));
    expect(f.type).toBe(GantryErrorType.TagConflict);
    expect(f.nonRetryable).toBe(true);
    expect(f.message).toContain(`at commit ${old}`);
    expect(f.message).toContain(`this release is for commit ${commit}`);
    expect(f.message).toMatch(/Fix: release a new version/);
    expect(remoteTag(repo, 'v1.2.3')[1]).toBe(old);
  });

  it('refuses a commit that is not on the remote', async () => {
    const repo = repoWith();
    const f = await failure(request(repo.remote, 'f'.repeat(40)));
    expect(f.type).toBe(GantryErrorType.TagConflict);
    expect(f.nonRetryable).toBe(true);
    expect(f.message).toMatch(/commit f{40} is not on .* any more/);
    expect(git(repo.remote, 'tag', '--list')).toBe('');
  });

  it('refuses something that is not a commit id', async () => {
    const repo = repoWith();
    const f = await failure(request(repo.remote, 'main'));
    expect(f.type).toBe(GantryErrorType.ConfigInvalid);
    expect(f.message).toContain('"main" is not a full commit id');
  });

  it('pushes through a git daemon, and retries when the remote is down', async () => {
    const repo = repoWith();
    const daemon = await startGitDaemon(repo.root);
    stops.push(() => daemon.stop());
    const url = daemon.url('remote.git');
    const commit = repo.head();
    expect(await runTag(request(url, commit))).toMatchObject({ created: true });
    expect(remoteTag(repo, 'v1.2.3')[1]).toBe(commit);
    await daemon.stop();
    const f = await failure(request(url, commit));
    expect(f.type).toBe(GantryErrorType.Unavailable);
    expect(f.nonRetryable).toBe(false);
    expect(f.message).toMatch(/Could not read tag v1\.2\.3 from git:\/\/127\.0\.0\.1:\d+\/remote\.git: the git remote did not answer/);
  });

  it('sends the HTTPS token as a header, never in argv or messages, and names its reference when refused', async () => {
    const repo = repoWith();
    const token = 'ghp_test_token_1234567890';
    const server = await startGitHttp(repo.root, token);
    stops.push(() => server.stop());
    const url = server.url('remote.git');
    const commit = repo.head();
    const result = await runTag(request(url, commit, { token: { env: 'GANTRY_TEST_TOKEN' } }), { env: { ...process.env, GANTRY_TEST_TOKEN: token } });
    expect(result.created).toBe(true);
    expect(remoteTag(repo, 'v1.2.3')[1]).toBe(commit);
    expect(server.authorizations.length).toBeGreaterThan(2);

    const f = await failure(request(url, commit, { token: { env: 'GANTRY_TEST_TOKEN' } }), { env: { ...process.env, GANTRY_TEST_TOKEN: 'wrong-token-value' } });
    expect(f.type).toBe(GantryErrorType.ConfigInvalid);
    expect(f.nonRetryable).toBe(true);
    expect(f.message).toContain('Check the token in env GANTRY_TEST_TOKEN');
    expect(f.message).not.toContain('wrong-token-value');
    expect(f.message).not.toContain(Buffer.from('x-access-token:wrong-token-value').toString('base64'));
  });
});
