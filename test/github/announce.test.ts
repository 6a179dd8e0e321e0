import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { commentMarker, githubAnnouncer } from '../../src/activities/github-announce';
import { createAnnounce } from '../../src/activities/announce';
import { githubChannel } from '../../src/activities/announcers/github';
import { GantryErrorType } from '../../src/shared/errors';
import type { AnnounceRequest, AnnounceResult } from '../../src/activities/types';
import type { GithubStandIn } from './stand-in';
import { COMMIT, FAST, announceRequest, expectContractKept, expectNoToken, failureOf, githubConfig, inActivity, startStandIn } from './helpers';

const CHANGELOG = `# Changelog

## [Unreleased]

## [1.2.3] - 2024-05-01
### Fixed
- The /version endpoint answers the running version.

## [1.2.2] - 2024-04-01
- Older things.
`;

const WRITES = ['repos/create-release', 'repos/update-release', 'issues/create-comment', 'issues/update', 'issues/update-milestone', 'repos/create-deployment', 'repos/create-deployment-status', 'repos/create-commit-comment'];

/** The `pull_request` field that marks an item of the issues list as a pull request. */
const pullRequest = (n: number) => ({
  pull_request: {
    url: `https://api.github.example/repos/acme/hello/pulls/${n}`,
    html_url: `https://github.example/acme/hello/pull/${n}`,
    diff_url: `https://github.example/acme/hello/pull/${n}.diff`,
    patch_url: `https://github.example/acme/hello/pull/${n}.patch`,
    merged_at: null,
  },
});

describe('GitHub announcement', () => {
  let gh: GithubStandIn;
  let env: NodeJS.ProcessEnv;
  let token: string;

  beforeEach(async () => {
    ({ gh, env, token } = await startStandIn());
    gh.addFile('v1.2.3', 'CHANGELOG.md', CHANGELOG);
    // A run at the release commit for the tag, so deployments created for the tag resolve to COMMIT.
    gh.addRun('release.yml', COMMIT, 'v1.2.3', { steps: [{ status: 'completed', conclusion: 'success' }] });
  });
  afterEach(async () => {
    expectContractKept(gh);
    await gh.stop();
  });

  const announce = (req: AnnounceRequest, notes?: string) => inActivity(() => githubAnnouncer({ env, tuning: FAST })(req, notes));
  const writes = () => gh.requests.filter((r) => WRITES.includes(r.operationId ?? '')).map((r) => r.operationId);

  it('publishes the release with the CHANGELOG section, closes the milestone’s open issues with a comment, then the milestone', async () => {
    const milestone = gh.addMilestone('v1.2.3');
    const other = gh.addMilestone('v1.3.0');
    const a = gh.addMilestoneIssue(milestone, 'Version endpoint is wrong');
    const b = gh.addMilestoneIssue(milestone, 'Health flaps');
    const done = gh.addMilestoneIssue(milestone, 'Already done', { state: 'closed', state_reason: 'completed', closed_at: '2024-04-01T00:00:00Z' });
    const pr = gh.addMilestoneIssue(milestone, 'Fix version endpoint', pullRequest(9));
    const later = gh.addMilestoneIssue(other, 'Next release');

    const { result } = await announce(announceRequest(githubConfig(gh)));

    const release = gh.releases[0]!;
    expect(result).toEqual({ githubReleaseUrl: release.html_url });
    expect(release).toMatchObject({ tag_name: 'v1.2.3', name: 'v1.2.3', draft: false, prerelease: false });
    expect(release.body).toBe(
      '### Fixed\n- The /version endpoint answers the running version.\n\n---\n' +
        `Image: \`127.0.0.1:5000/hello@sha256:${'ab'.repeat(32)}\`\nBuild: https://github.example/acme/hello/actions/runs/1`,
    );
    expect(gh.calls('repos/get-content')[0]!.path).toContain('ref=v1.2.3');
    for (const issue of [a, b]) {
      expect(issue.state).toBe('closed');
      expect(issue.state_reason).toBe('completed');
      const comments = gh.issueComments.filter((c) => c.issue_url.endsWith(`/issues/${issue.number}`));
      expect(comments.map((c) => c.body)).toEqual([`Released in v1.2.3: ${release.html_url}\n\n${commentMarker('released', '1.2.3')}`]);
    }
    // Closed before, a pull request, and another milestone's issue: untouched.
    expect(gh.calls('issues/update').map((c) => c.path)).toEqual([`/repos/acme/hello/issues/${b.number}`, `/repos/acme/hello/issues/${a.number}`]);
    expect(done.closed_at).toBe('2024-04-01T00:00:00Z');
    expect(pr.state).toBe('open');
    expect(later.state).toBe('open');
    expect(milestone.state).toBe('closed');
    expect(other.state).toBe('open');
    expect(gh.deployments).toHaveLength(0);
  });

  it('is idempotent: a second run (a retry) changes nothing and posts nothing', async () => {
    const milestone = gh.addMilestone('v1.2.3');
    gh.addMilestoneIssue(milestone, 'One');
    const github = githubConfig(gh, { deploymentEnvironment: 'production' });

    const first = await announce(announceRequest(github));
    const firstWrites = writes();
    const second = await announce(announceRequest(github));

    expect(second.result).toEqual(first.result);
    expect(firstWrites).toEqual(['repos/create-release', 'issues/create-comment', 'issues/update', 'issues/update-milestone', 'repos/create-deployment', 'repos/create-deployment-status']);
    expect(writes()).toEqual(firstWrites);
    expect(gh.releases).toHaveLength(1);
    expect(gh.issueComments).toHaveLength(1);
    expect(gh.deploymentStatuses).toHaveLength(1);
  });

  it('finishes a half-done earlier attempt: no second comment where one was posted, the issue still gets closed', async () => {
    const milestone = gh.addMilestone('1.2.3');
    const issue = gh.addMilestoneIssue(milestone, 'Half done');
    gh.addIssueComment(issue.number, `Released in v1.2.3: somewhere\n\n${commentMarker('released', '1.2.3')}`);
    await announce(announceRequest(githubConfig(gh)));
    expect(gh.issueComments).toHaveLength(1);
    expect(issue.state).toBe('closed');
    expect(milestone.state).toBe('closed');
  });

  it('updates a release that already exists for the tag instead of creating another', async () => {
    const existing = gh.addRelease('v1.2.3', { body: 'written by hand', name: 'Hand-made' });
    const { result } = await announce(announceRequest(githubConfig(gh, { closeMilestone: false })), 'Notes from the caller.');
    expect(result.githubReleaseUrl).toBe(existing.html_url);
    expect(gh.releases).toHaveLength(1);
    expect(existing.name).toBe('v1.2.3');
    expect(existing.body).toMatch(/^Notes from the caller\.\n\n---\nImage: /);
    expect(writes()).toEqual(['repos/update-release']);
    // The caller's notes were used; the CHANGELOG was not read again.
    expect(gh.calls('repos/get-content')).toHaveLength(0);
  });

  it('publishes a draft release holding the tag (not found by tag) instead of failing on the duplicate', async () => {
    const draft = gh.addRelease('v1.2.3', { draft: true, body: 'draft notes' });
    const { result } = await announce(announceRequest(githubConfig(gh, { closeMilestone: false })));
    expect(gh.calls('repos/create-release').map((c) => c.status)).toEqual([422]);
    expect(draft.draft).toBe(false);
    expect(result.githubReleaseUrl).toBe(draft.html_url);
    expect(gh.releases).toHaveLength(1);
  });

  it('marks a prerelease version as a prerelease and says so when the CHANGELOG has no section', async () => {
    const req = announceRequest(githubConfig(gh, { closeMilestone: false }), { release: { service: 'hello', version: '2.0.0-rc.1', workflowId: 'w' }, tag: 'v2.0.0-rc.1' });
    await announce(req);
    expect(gh.releases[0]).toMatchObject({ tag_name: 'v2.0.0-rc.1', prerelease: true });
    expect(gh.releases[0]!.body).toMatch(/^_No section for 2\.0\.0-rc\.1 in CHANGELOG\.md\._/);
  });

  it('closes the milestone’s issues over more than one page (pull requests in it are left alone)', async () => {
    const milestone = gh.addMilestone('v1.2.3');
    // GitHub lists newest first, 100 a page: the oldest issue lands on page 2, behind 99 pull requests.
    const oldest = gh.addMilestoneIssue(milestone, 'Oldest issue');
    for (let i = 0; i < 99; i++) gh.addMilestoneIssue(milestone, `PR ${i}`, pullRequest(i));
    const newest = gh.addMilestoneIssue(milestone, 'Newest issue');
    await announce(announceRequest(githubConfig(gh, { release: false })));
    expect(gh.calls('issues/list-for-repo')).toHaveLength(2);
    expect(oldest.state).toBe('closed');
    expect(newest.state).toBe('closed');
    expect(gh.issues.filter((i) => i.state === 'open')).toHaveLength(99);
    expect(gh.issueComments).toHaveLength(2);
    // Without a release, the comment names the tag and the image.
    expect(gh.issueComments[0]!.body).toMatch(/^Released in v1\.2\.3: v1\.2\.3 \(127\.0\.0\.1:5000\/hello@sha256:/);
    expect(gh.releases).toHaveLength(0);
  });

  it('marks the configured deployment environment success, with the release as its log', async () => {
    const { result } = await announce(announceRequest(githubConfig(gh, { closeMilestone: false, deploymentEnvironment: 'production' })));
    expect(gh.deployments).toHaveLength(1);
    expect(gh.deployments[0]).toMatchObject({ ref: 'v1.2.3', sha: COMMIT, environment: 'production' });
    expect(gh.calls('repos/create-deployment')[0]!.body).toMatchObject({ auto_merge: false, required_contexts: [] });
    expect(gh.deploymentStatuses.map((s) => [s.state, s.log_url])).toEqual([['success', result.githubReleaseUrl]]);
  });

  it('on a rollback publishes no release, comments on the release commit once, and marks the deployment failure', async () => {
    const milestone = gh.addMilestone('v1.2.3');
    const issue = gh.addMilestoneIssue(milestone, 'Stays open');
    const req = announceRequest(githubConfig(gh, { deploymentEnvironment: 'production' }), {
      outcome: 'rolled_back',
      reason: 'health check version: /version answered 1.2.2',
    });

    const { result } = await announce(req);
    await announce(req);

    expect(result).toEqual({});
    expect(gh.releases).toHaveLength(0);
    expect(issue.state).toBe('open');
    expect(milestone.state).toBe('open');
    expect(gh.commitComments).toHaveLength(1);
    const body = gh.commitComments[0]!.body as string;
    expect(body).toMatch(/^\*\*hello v1\.2\.3 was rolled back\.\*\* Production failed its health checks after the deploy, and gantry put the previous image back\./);
    expect(body).toContain('Reason: health check version: /version answered 1.2.2');
    expect(body).toContain('No GitHub release was published for this tag. Fix the cause and release a new version.');
    expect(body).toContain(commentMarker('rolled_back', '1.2.3'));
    expect(gh.deploymentStatuses.map((s) => s.state)).toEqual(['failure']);
    expect(writes()).toEqual(['repos/create-commit-comment', 'repos/create-deployment', 'repos/create-deployment-status']);
  });

  it('does nothing for a service without a github section', async () => {
    const { result } = await announce({ ...announceRequest(githubConfig(gh)), github: undefined });
    expect(result).toEqual({});
    expect(gh.requests).toHaveLength(0);
  });

  describe('as a channel of the announce step', () => {
    const step = (req: AnnounceRequest) => inActivity(() => createAnnounce({ env, extraAnnouncers: [githubChannel({ env, tuning: FAST })] }).announce(req));

    it('reports the release it published as the github channel, and the step derives githubReleaseUrl from it', async () => {
      const github = githubConfig(gh, { closeMilestone: false, deploymentEnvironment: 'production' });
      const { result } = await step(announceRequest(github));
      const url = gh.releases[0]!.html_url;
      expect(result.githubReleaseUrl).toBe(url);
      expect(result.channels!.find((c) => c.channel === 'github')).toEqual({
        channel: 'github', ok: true, url,
        detail: `acme/hello: release v1.2.3 published at ${url}; deployment to production marked success`,
      });
      const rolledBack = await step(announceRequest(github, { outcome: 'rolled_back', reason: 'health failed' }));
      expect(rolledBack.result.channels!.find((c) => c.channel === 'github')!.detail)
        .toBe(`acme/hello: commented on commit ${COMMIT.slice(0, 12)} that v1.2.3 was rolled back (no release published); deployment to production marked failure`);
    });

    it('lists a GitHub refusal as the github channel failing, with every other channel still reported', async () => {
      gh.fail('repos/create-release', { status: 403, message: 'Resource not accessible by personal access token' });
      const failure = await failureOf(step(announceRequest(githubConfig(gh, { closeMilestone: false }))));
      expect(failure.nonRetryable).toBe(true);
      expect(failure.message).toContain('- GitHub: GitHub refused creating the GitHub release v1.2.3 for acme/hello');
      expect(failure.message).toContain('  github: FAILED (above)');
      const result = (failure.details?.[0] as { result: AnnounceResult }).result;
      expect(result.channels!.map((c) => [c.channel, c.ok, c.skipped ?? false])).toEqual([['audit', true, true], ['artifacts', true, true], ['github', false, false], ['webhook', true, true]]);
      expectNoToken(token, failure.message, failure.details);
    });
  });

  describe('a write that lands but is answered badly', () => {
    /** Writes of an operation: how many were sent, and how many of them landed (the stand-in carried them out). */
    const posted = (op: string) => ({ sent: gh.calls(op).length, landed: gh.calls(op).filter((c) => c.landed).length });
    const slowClient = { ...FAST, requestTimeoutMs: 400 };
    const run = (req: AnnounceRequest, tuning = FAST) => inActivity(() => githubAnnouncer({ env, tuning })(req));

    it('a comment GitHub posted but answered 502 for is found by its marker, not posted again (the retry plugin used to post it again on every 5xx)', async () => {
      const milestone = gh.addMilestone('v1.2.3');
      const issue = gh.addMilestoneIssue(milestone, 'One');
      gh.fail('issues/create-comment', { status: 502, message: 'Bad Gateway', landed: true, times: 3 });
      await run(announceRequest(githubConfig(gh, { release: false })));
      expect(gh.issueComments).toHaveLength(1);
      expect(posted('issues/create-comment')).toEqual({ sent: 1, landed: 1 });
      expect(issue.state).toBe('closed');
    });

    it('a release created but answered after the client gave up is found by its tag, not created again', async () => {
      gh.answerLate('repos/create-release', 2_000);
      const { result } = await run(announceRequest(githubConfig(gh, { closeMilestone: false })), slowClient);
      expect(gh.releases).toHaveLength(1);
      expect(result.githubReleaseUrl).toBe(gh.releases[0]!.html_url);
      expect(posted('repos/create-release')).toEqual({ sent: 1, landed: 1 });
    });

    it('a write that did not land (502 before GitHub did it) is looked for, then sent again: one release, one POST per landed effect', async () => {
      gh.fail('repos/create-release', { status: 502, message: 'Bad Gateway' });
      await run(announceRequest(githubConfig(gh, { closeMilestone: false })));
      expect(gh.releases).toHaveLength(1);
      expect(posted('repos/create-release')).toEqual({ sent: 2, landed: 1 });
      // Looked up by tag before the first POST, and again before the second.
      expect(gh.calls('repos/get-release-by-tag').map((c) => c.status)).toEqual([404, 404]);
    });

    it('a deployment and its status that landed behind 502s are each made once', async () => {
      gh.fail('repos/create-deployment', { status: 502, landed: true });
      gh.fail('repos/create-deployment-status', { status: 502, landed: true });
      await run(announceRequest(githubConfig(gh, { closeMilestone: false, deploymentEnvironment: 'production' })));
      expect(gh.deployments).toHaveLength(1);
      expect(gh.deploymentStatuses.map((d) => d.state)).toEqual(['success']);
      expect(posted('repos/create-deployment')).toEqual({ sent: 1, landed: 1 });
      expect(posted('repos/create-deployment-status')).toEqual({ sent: 1, landed: 1 });
    });

    it('closing an issue and its milestone that landed behind 502s is checked, not sent again', async () => {
      const milestone = gh.addMilestone('v1.2.3');
      const issue = gh.addMilestoneIssue(milestone, 'One');
      gh.fail('issues/update', { status: 502, landed: true });
      gh.fail('issues/update-milestone', { status: 502, landed: true });
      await run(announceRequest(githubConfig(gh, { release: false })));
      expect(issue.state).toBe('closed');
      expect(milestone.state).toBe('closed');
      expect(posted('issues/update')).toEqual({ sent: 1, landed: 1 });
      expect(posted('issues/update-milestone')).toEqual({ sent: 1, landed: 1 });
      expect(gh.calls('issues/get')).toHaveLength(1);
      expect(gh.calls('issues/get-milestone')).toHaveLength(1);
    });

    it('after a rollback, a commit comment answered late is found by its marker', async () => {
      gh.answerLate('repos/create-commit-comment', 2_000);
      await run(announceRequest(githubConfig(gh), { outcome: 'rolled_back', reason: 'health failed' }), slowClient);
      expect(gh.commitComments).toHaveLength(1);
      expect(posted('repos/create-commit-comment')).toEqual({ sent: 1, landed: 1 });
    });

    it('a retry of the step on another worker, after an attempt died with its comment posted, posts nothing again', async () => {
      const milestone = gh.addMilestone('v1.2.3');
      const issue = gh.addMilestoneIssue(milestone, 'One');
      // The first attempt's comment lands; its answer never comes back, and the attempt gives up (no retries left).
      gh.answerLate('issues/create-comment', 2_000);
      const first = await failureOf(run(announceRequest(githubConfig(gh, { release: false })), { ...slowClient, retries: 0 }));
      expect(first.nonRetryable).toBe(false);
      expect(posted('issues/create-comment')).toEqual({ sent: 1, landed: 1 });
      expect(issue.state).toBe('open');
      // The retry: a new attempt, a new client, on a worker that knows nothing of the first.
      await inActivity(() => githubAnnouncer({ env, tuning: FAST })(announceRequest(githubConfig(gh, { release: false }))), { attempt: 2 });
      expect(gh.issueComments).toHaveLength(1);
      expect(posted('issues/create-comment')).toEqual({ sent: 1, landed: 1 });
      expect(issue.state).toBe('closed');
    });
  });

  it('fails non-retryably, saying which permission is missing, when GitHub refuses to create the release', async () => {
    gh.fail('repos/create-release', { status: 403, message: 'Resource not accessible by personal access token' });
    const failure = await failureOf(announce(announceRequest(githubConfig(gh))));
    expect(failure.type).toBe(GantryErrorType.ConfigInvalid);
    expect(failure.nonRetryable).toBe(true);
    expect(failure.message).toContain('GitHub refused creating the GitHub release v1.2.3 for acme/hello');
    expect(failure.message).toContain('(403: Resource not accessible by personal access token). The token from env GANTRY_TEST_GITHUB_TOKEN lacks a permission');
    expectNoToken(token, failure.message, failure.details);
  });
});
