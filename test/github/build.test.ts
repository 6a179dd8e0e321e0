import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createGithubActionsBuild, type BuildProgress } from '../../src/activities/github-build';
import { GantryErrorType } from '../../src/shared/errors';
import type { GithubStandIn } from './stand-in';
import { startRegistry, type TestRegistry } from './registry-server';
import { COMMIT, FAST, buildRequest, expectContractKept, expectNoToken, failureOf, githubConfig, inActivity, startStandIn } from './helpers';

const DIGEST = `sha256:${'4e'.repeat(32)}`;
const manifest = (digest = DIGEST) => JSON.stringify({ image: '127.0.0.1:5000/hello', tag: 'v1.2.3', digest });
const RUNNING = [{ status: 'queued' as const }, { status: 'in_progress' as const }, { status: 'in_progress' as const }];

describe('build kind github-actions', () => {
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

  const build = (deps: Partial<Parameters<typeof createGithubActionsBuild>[0]> = {}) =>
    createGithubActionsBuild({ env, tuning: FAST, heartbeatEveryMs: 20, runAppearTimeoutMs: 2_000, ...deps });

  it('finds the run the tag push started, polls it to success with heartbeats and backoff, and reads the digest from its artifact', async () => {
    gh.addWorkflow('release.yml');
    // Same commit on the branch: not the tag's run. Another workflow's run for the tag: not ours either.
    gh.addRun('release.yml', COMMIT, 'main', { steps: [{ status: 'completed', conclusion: 'failure' }] });
    gh.addRun('lint.yml', COMMIT, 'v1.2.3', { steps: [{ status: 'completed', conclusion: 'success' }] });
    const run = gh.addRun('release.yml', COMMIT, 'v1.2.3', { steps: [...RUNNING, { status: 'completed', conclusion: 'success' }] }, { visibleAfterListCalls: 2 });
    gh.addArtifact(run, 'image-manifest', { 'out/manifest.json': manifest() });
    gh.addArtifact(run, 'logs', { 'log.txt': 'hello' });

    const { result, heartbeats } = await inActivity(() => build()(buildRequest(githubConfig(gh))));

    expect(result).toEqual({
      attempt: 1,
      image: '127.0.0.1:5000/hello:v1.2.3',
      digest: DIGEST,
      imageRef: `127.0.0.1:5000/hello@${DIGEST}`,
      built: true,
      ciRunId: run.id,
      ciRunUrl: run.html_url,
    });
    // It waited for the run to appear, then polled it until completed.
    expect(gh.calls('actions/list-workflow-runs')).toHaveLength(3);
    expect(gh.calls('actions/list-workflow-runs')[0]!.path).toContain(`head_sha=${COMMIT}`);
    const polls = gh.calls('actions/get-workflow-run');
    // queued (as listed), then queued, in_progress, in_progress, completed on successive polls.
    expect(polls).toHaveLength(4);
    const gaps = polls.slice(1).map((p, i) => p.at - polls[i]!.at);
    // Backoff from pollInterval (20 ms): 30, 45, 67 ms between polls.
    expect(gaps[0]).toBeGreaterThanOrEqual(29);
    expect(gaps[1]).toBeGreaterThanOrEqual(44);
    expect(gaps[2]).toBeGreaterThanOrEqual(66);
    const progress = heartbeats.filter((h) => h !== undefined) as BuildProgress[]; // the first beat has no details yet
    expect(progress.some((h) => h.phase === 'waiting for run')).toBe(true);
    expect(progress).toContainEqual({ phase: 'polling run', runId: run.id, runUrl: run.html_url, status: 'in_progress' });
    // The artifact came from storage on another origin, without the token.
    expect(gh.blobRequests).toEqual([{ path: `/artifacts/${gh.artifacts[0]!.id}.zip`, authorization: undefined }]);
    expect(gh.calls('actions/list-workflow-run-artifacts')[0]!.path).toContain('name=image-manifest');
  });

  it('resumes the run recorded in the heartbeat after a worker loss, without looking for it again', async () => {
    const run = gh.addRun('release.yml', COMMIT, 'v1.2.3', { steps: [{ status: 'in_progress' }, { status: 'completed', conclusion: 'success' }] });
    gh.addArtifact(run, 'image-manifest', { 'manifest.json': manifest() });
    const { result } = await inActivity(() => build()(buildRequest(githubConfig(gh))), { attempt: 2, heartbeatDetails: { phase: 'polling run', runId: run.id } });
    expect(result).toMatchObject({ attempt: 2, digest: DIGEST, ciRunId: run.id });
    expect(gh.calls('actions/list-workflow-runs')).toHaveLength(0);
  });

  it('fails non-retryably with the run URL when the run concludes failure', async () => {
    const run = gh.addRun('release.yml', COMMIT, 'v1.2.3', { steps: [{ status: 'in_progress' }, { status: 'completed', conclusion: 'failure' }] });
    const failure = await failureOf(inActivity(() => build()(buildRequest(githubConfig(gh)))));
    expect(failure.type).toBe(GantryErrorType.BuildFailed);
    expect(failure.nonRetryable).toBe(true);
    expect(failure.message).toBe(
      `GitHub Actions run #1 of .github/workflows/release.yml for v1.2.3 concluded "failure": ${run.html_url}. Nothing was deployed. ` +
        'Open the run to see why; after fixing the cause, re-run it on GitHub (or push a fix and release a new version), then start the release again.',
    );
    expect(failure.details).toEqual([{ ciRunId: run.id, ciRunUrl: run.html_url, conclusion: 'failure' }]);
    expect(gh.calls('actions/list-workflow-run-artifacts')).toHaveLength(0);
  });

  it('fails non-retryably, naming the file and the fix, when the workflow file does not exist (404)', async () => {
    const failure = await failureOf(inActivity(() => build()(buildRequest(githubConfig(gh), { workflow: 'relase.yml' }))));
    expect(failure.type).toBe(GantryErrorType.ConfigInvalid);
    expect(failure.nonRetryable).toBe(true);
    expect(failure.message).toMatch(/^GitHub has no workflow "relase\.yml" in acme\/hello \(404\)\. Add \.github\/workflows\/relase\.yml to the repository's default branch/);
    expect(failure.message).toContain('or set build.workflow to the file name of the workflow that builds the image');
    expect(gh.calls('actions/list-workflow-runs').map((c) => c.status)).toEqual([404]);
    expectNoToken(token, failure.message, failure.details);
  });

  it('rides out 5xx answers while polling (retried by the client)', async () => {
    const run = gh.addRun('release.yml', COMMIT, 'v1.2.3', { steps: [{ status: 'in_progress' }, { status: 'completed', conclusion: 'success' }] });
    gh.addArtifact(run, 'image-manifest', { 'manifest.json': manifest() });
    gh.fail('actions/get-workflow-run', { status: 502, message: 'Server Error', times: 2 });
    const { result } = await inActivity(() => build()(buildRequest(githubConfig(gh))));
    expect(result.digest).toBe(DIGEST);
    expect(gh.calls('actions/get-workflow-run').map((c) => c.status)).toEqual([502, 502, 200, 200]);
  });

  it('fails retryably when GitHub keeps answering 5xx after the client’s retries', async () => {
    gh.addRun('release.yml', COMMIT, 'v1.2.3', { steps: [{ status: 'in_progress' }] });
    gh.fail('actions/get-workflow-run', { status: 500, message: 'Server Error', times: 20 });
    const failure = await failureOf(inActivity(() => build()(buildRequest(githubConfig(gh)))));
    expect(failure.nonRetryable).toBe(false);
    expect(failure.type).toBe(GantryErrorType.Unavailable);
    expect(failure.message).toMatch(/failed while polling workflow run \d+ \(500: Server Error\), also after retries\. The step retries/);
  });

  it('waits out a rate limit that outlasts the client’s own retries, heartbeating, and carries on polling', async () => {
    const run = gh.addRun('release.yml', COMMIT, 'v1.2.3', { steps: [{ status: 'in_progress' }, { status: 'completed', conclusion: 'success' }] });
    gh.addArtifact(run, 'image-manifest', { 'manifest.json': manifest() });
    gh.fail('actions/get-workflow-run', { status: 429, message: 'You have exceeded a secondary rate limit.', headers: { 'retry-after': '1' }, times: 3 });
    const started = Date.now();
    const { result, heartbeats } = await inActivity(() => build({ tuning: { ...FAST, rateLimitRetries: 2 } })(buildRequest(githubConfig(gh))));
    expect(result.digest).toBe(DIGEST);
    expect(gh.calls('actions/get-workflow-run').map((c) => c.status)).toEqual([429, 429, 429, 200, 200]);
    // The client retried twice (retry-after scaled for tests); the step then waited the real second GitHub asked for.
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    expect(heartbeats.length).toBeGreaterThan(10);
  });

  it('gives up non-retryably when no run for the tag starts, naming runs of the commit on other refs', async () => {
    const other = gh.addRun('release.yml', COMMIT, 'main', { steps: [{ status: 'completed', conclusion: 'success' }] });
    const failure = await failureOf(inActivity(() => build({ runAppearTimeoutMs: 150 })(buildRequest(githubConfig(gh)))));
    expect(failure.type).toBe(GantryErrorType.BuildFailed);
    expect(failure.nonRetryable).toBe(true);
    expect(failure.message).toContain(`No run of .github/workflows/release.yml for v1.2.3 (commit ${COMMIT.slice(0, 12)}) started within 0s of the tag push.`);
    expect(failure.message).toContain(`It ran for this commit on other refs (main #1 ${other.html_url}), not for the tag.`);
    expect(failure.message).toContain('Make the workflow run on tag pushes (on: push: tags: ["v*"])');
    expect(gh.calls('actions/list-workflow-runs').length).toBeGreaterThan(1);
  });

  it('fails non-retryably when the successful run has no artifact of that name', async () => {
    const run = gh.addRun('release.yml', COMMIT, 'v1.2.3', { steps: [{ status: 'completed', conclusion: 'success' }] });
    gh.addArtifact(run, 'something-else', { 'manifest.json': manifest() });
    const failure = await failureOf(inActivity(() => build()(buildRequest(githubConfig(gh)))));
    expect(failure.type).toBe(GantryErrorType.BuildFailed);
    expect(failure.message).toContain(`succeeded but has no artifact named "image-manifest" (${run.html_url})`);
    expect(failure.message).toContain('actions/upload-artifact with name: image-manifest');
  });

  it('fails non-retryably when the artifact’s manifest has no usable digest', async () => {
    const run = gh.addRun('release.yml', COMMIT, 'v1.2.3', { steps: [{ status: 'completed', conclusion: 'success' }] });
    gh.addArtifact(run, 'image-manifest', { 'manifest.json': JSON.stringify({ image: { digest: 'latest' } }) });
    const failure = await failureOf(inActivity(() => build()(buildRequest(githubConfig(gh), { digestFrom: { artifact: 'image-manifest', field: 'image.digest' } }))));
    expect(failure.type).toBe(GantryErrorType.BuildFailed);
    expect(failure.message).toContain('field "image.digest" of manifest.json is "latest", not a digest of the form sha256:<64 hex digits>');
  });

  it('reads a nested digest field from a custom manifest file', async () => {
    const run = gh.addRun('release.yml', COMMIT, 'v1.2.3', { steps: [{ status: 'completed', conclusion: 'success' }] });
    gh.addArtifact(run, 'build-info', { 'dist/image.json': JSON.stringify({ image: { digest: DIGEST } }) });
    const { result } = await inActivity(() =>
      build()(buildRequest(githubConfig(gh), { digestFrom: { artifact: 'build-info', file: 'image.json', field: 'image.digest' } })),
    );
    expect(result.digest).toBe(DIGEST);
  });
});

describe('build kind github-actions, digest from the registry', () => {
  let registry: TestRegistry;
  let gh: GithubStandIn;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    registry = await startRegistry();
  });
  afterAll(async () => {
    await registry?.stop();
  });
  beforeEach(async () => {
    ({ gh, env } = await startStandIn());
  });
  afterEach(async () => {
    expectContractKept(gh);
    await gh.stop();
  });

  const request = (version = '1.2.3') => {
    const req = buildRequest(githubConfig(gh), { digestFrom: { registry: true } }, version);
    req.image = { registry: registry.host, name: 'team/hello' };
    return req;
  };

  it('takes the manifest digest of {registry}/{image}:v{version} once the run succeeded', async () => {
    const pushed = await registry.push('team/hello', 'v1.2.3');
    await registry.push('team/hello', 'v1.2.2');
    const run = gh.addRun('release.yml', COMMIT, 'v1.2.3', { steps: [{ status: 'in_progress' }, { status: 'completed', conclusion: 'success' }] });
    const { result } = await inActivity(() => createGithubActionsBuild({ env, tuning: FAST })(request()));
    expect(result).toMatchObject({ digest: pushed, imageRef: `${registry.host}/team/hello@${pushed}`, image: `${registry.host}/team/hello:v1.2.3`, ciRunUrl: run.html_url });
    expect(gh.calls('actions/list-workflow-run-artifacts')).toHaveLength(0);
  });

  it('fails non-retryably when the run succeeded but the image is not in the registry', async () => {
    gh.addRun('release.yml', COMMIT, 'v9.9.9', { steps: [{ status: 'completed', conclusion: 'success' }] });
    const failure = await failureOf(inActivity(() => createGithubActionsBuild({ env, tuning: FAST })(request('9.9.9'))));
    expect(failure.type).toBe(GantryErrorType.BuildFailed);
    expect(failure.message).toContain(`but ${registry.host}/team/hello:v9.9.9 is not in the registry. Make the workflow push the image tagged v9.9.9`);
  });
});
