import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CHECK_NAMES, githubPreflightChecks } from '../../src/activities/github-preflight';
import { GantryErrorType } from '../../src/shared/errors';
import type { GithubStandIn } from './stand-in';
import { COMMIT, FAST, TOKEN_ENV, expectContractKept, expectNoToken, failureOf, githubConfig, inActivity, preflightRequest, startStandIn } from './helpers';

describe('GitHub preflight checks', () => {
  let gh: GithubStandIn;
  let env: NodeJS.ProcessEnv;
  let token: string;

  beforeEach(async () => {
    ({ gh, env, token } = await startStandIn());
  });
  afterEach(async () => {
    expectContractKept(gh);
    await gh.stop();
  });

  const checks = (github = githubConfig(gh)) => inActivity(() => githubPreflightChecks({ env, tuning: FAST })(preflightRequest(github), COMMIT));

  it('passes when every check run (over several pages) and status is green and nothing blocks', async () => {
    for (let i = 0; i < 150; i++) gh.addCheckRun(COMMIT, `job-${i}`, 'completed', i % 10 === 0 ? 'skipped' : 'success');
    gh.addCheckRun('0'.repeat(40), 'other-commit', 'completed', 'failure');
    gh.addStatus(COMMIT, 'ci/legacy', 'success');
    gh.addLabelledIssue('Not a blocker', ['bug']);

    const { result } = await checks();

    expect(result).toEqual([
      { name: CHECK_NAMES.checkRuns, ok: true, detail: `all 150 check runs on ${COMMIT.slice(0, 12)} passed` },
      { name: CHECK_NAMES.statuses, ok: true, detail: `all 1 commit statuses on ${COMMIT.slice(0, 12)} are success` },
      { name: CHECK_NAMES.blockers, ok: true, detail: 'no open issues labelled "release-blocker" in acme/hello' },
    ]);
    expect(gh.calls('checks/list-for-ref')).toHaveLength(2);
  });

  it('names the failing and unfinished check runs, failing statuses and blocking issues with their URLs', async () => {
    for (let i = 0; i < 120; i++) gh.addCheckRun(COMMIT, `job-${i}`, 'completed', 'success');
    const failed = gh.addCheckRun(COMMIT, 'integration-tests', 'completed', 'failure');
    const running = gh.addCheckRun(COMMIT, 'e2e', 'in_progress', null);
    gh.addStatus(COMMIT, 'ci/jenkins', 'failure');
    gh.addStatus(COMMIT, 'ci/lint', 'success');
    const blockers = [];
    for (let i = 0; i < 103; i++) blockers.push(gh.addLabelledIssue(`Blocker ${i}`, ['release-blocker']));
    gh.addLabelledIssue('Closed blocker', ['release-blocker'], { state: 'closed', state_reason: 'completed', closed_at: '2024-05-01T00:00:00Z' });

    const { result } = await checks();
    const [runs, statuses, blocking] = result;

    expect(runs!.ok).toBe(false);
    expect(runs!.detail).toContain(`integration-tests (failure) ${failed.html_url}`);
    expect(runs!.detail).toContain(`e2e (in_progress) ${running.html_url}`);
    expect(runs!.detail).toMatch(/Fix or re-run the failing checks, then start the release again/);
    expect(statuses!.ok).toBe(false);
    expect(statuses!.detail).toContain('ci/jenkins (failure) https://ci.example.test/ci/jenkins/');
    expect(statuses!.detail).not.toContain('ci/lint');
    expect(blocking!.ok).toBe(false);
    expect(blocking!.detail).toMatch(/^103 open issues are labelled "release-blocker" in acme\/hello: /);
    // Newest first, as GitHub lists them; the first ten are named with their URLs.
    expect(blocking!.detail).toContain(`#103 Blocker 102 ${blockers[102]!.html_url}`);
    expect(blocking!.detail).toContain('and 93 more');
    expect(blocking!.detail).toMatch(/then start the release again\.$/);
    expect(gh.calls('issues/list-for-repo')).toHaveLength(2);
    expect(gh.calls('issues/list-for-repo')[0]!.path).toContain('labels=release-blocker');
  });

  it('uses the configured blocker label and skips CI checks when green checks are not required', async () => {
    gh.addCheckRun(COMMIT, 'build', 'completed', 'failure');
    gh.addLabelledIssue('Stop the train', ['ship-stopper']);
    const { result } = await checks(githubConfig(gh, { blockerLabel: 'ship-stopper', requireGreenChecks: false }));
    expect(result).toHaveLength(1);
    expect(result[0]).toMatchObject({ name: CHECK_NAMES.blockers, ok: false });
    expect(result[0]!.detail).toContain('#1 Stop the train');
    expect(gh.calls('checks/list-for-ref')).toHaveLength(0);
  });

  it('adds no checks for a service without a github section', async () => {
    const { result } = await inActivity(() => githubPreflightChecks({ env, tuning: FAST })({ ...preflightRequest(githubConfig(gh)), github: undefined }, COMMIT));
    expect(result).toEqual([]);
    expect(gh.requests).toHaveLength(0);
  });

  it('fails non-retryably, naming the token reference but never the token, when GitHub rejects the token', async () => {
    const wrong = { [TOKEN_ENV]: 'ghp_wrongtoken0000000000' };
    const failure = await failureOf(inActivity(() => githubPreflightChecks({ env: wrong, tuning: FAST })(preflightRequest(githubConfig(gh)), COMMIT)));
    expect(failure.type).toBe(GantryErrorType.ConfigInvalid);
    expect(failure.nonRetryable).toBe(true);
    expect(failure.message).toContain(`GitHub rejected the token while listing check runs for ${COMMIT.slice(0, 12)} (401: Bad credentials)`);
    expect(failure.message).toContain(`env ${TOKEN_ENV}`);
    expectNoToken('ghp_wrongtoken0000000000', failure.message, failure.details);
    expectNoToken(token, failure.message, failure.details);
    // The stand-in saw the wrong token and said so; that is what this test is about.
    expect(gh.violations.map((v) => v.message)).toEqual(['request without the expected token (authorization: another value)']);
    gh.violations.length = 0;
  });

  it('fails with SecretMissing when the token reference points at nothing', async () => {
    const failure = await failureOf(inActivity(() => githubPreflightChecks({ env: {}, tuning: FAST })(preflightRequest(githubConfig(gh)), COMMIT)));
    expect(failure.type).toBe(GantryErrorType.SecretMissing);
    expect(failure.message).toContain(`{env: ${TOKEN_ENV}} is not set`);
    expect(gh.requests).toHaveLength(0);
  });

  it('fails non-retryably when the repository is not there', async () => {
    const failure = await failureOf(checks(githubConfig(gh, { repo: 'no-such-repo' })));
    expect(failure.nonRetryable).toBe(true);
    expect(failure.message).toMatch(/GitHub answered 404 while listing check runs .*acme\/no-such-repo .* does not exist or the token from env GANTRY_TEST_GITHUB_TOKEN cannot see it\. Check github\.owner, github\.repo/);
  });
});

describe('GitHub Enterprise', () => {
  it('talks to the configured base URL (…/api/v3)', async () => {
    const { gh, env } = await startStandIn({ prefix: '/api/v3' });
    try {
      gh.addCheckRun(COMMIT, 'build', 'completed', 'success');
      const github = githubConfig(gh);
      expect(github.baseUrl).toMatch(/\/api\/v3$/);
      const { result } = await inActivity(() => githubPreflightChecks({ env, tuning: FAST })(preflightRequest(github), COMMIT));
      expect(result.every((c) => c.ok)).toBe(true);
      expect(gh.requests.every((r) => r.path.startsWith('/api/v3/repos/acme/hello/'))).toBe(true);
      expectContractKept(gh);
    } finally {
      await gh.stop();
    }
  });
});
