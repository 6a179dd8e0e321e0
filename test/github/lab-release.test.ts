/**
 * One end-to-end release on the lab with GitHub in the loop: the real dev server, `gantry worker` (built), the
 * `gantry` CLI, the lab's git repo, registry, engine and sshd, and the GitHub stand-in (contract-checked) as
 * github.com. Preflight reads the commit's checks and blockers from GitHub. The build waits for the "GitHub
 * Actions run" the tag push started; that run is a real image build of the tag, pushed to the lab registry, and
 * the digest comes from the registry. Announce publishes the release, closes the milestone and marks the
 * deployment.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { devServerEnv } from '../helpers/servers';
import { releaseRef, useLab } from '../helpers/lab';
import { BIN, gantry, requireBuild, show, waitFor } from '../cli/harness';
import { createBuildDocker } from '../../src/activities/build-docker';
import type { BuildResult } from '../../src/activities/types';
import type { ReleaseStatus } from '../../src/shared/release';
import { commentMarker } from '../../src/activities/github-announce';
import type { GithubStandIn, RunStep } from './stand-in';
import { TOKEN_ENV, expectContractKept, startStandIn } from './helpers';

const ctx = useLab();
let dev: TestWorkflowEnvironment;
let worker: ChildProcess | undefined;
let workerLog = '';
let gh: GithubStandIn;
let token: string;
let cliEnv: Record<string, string>;

beforeAll(async () => {
  requireBuild();
  ({ gh, token } = await startStandIn());
  dev = await devServerEnv();
  cliEnv = { TEMPORAL_ADDRESS: dev.address, TEMPORAL_NAMESPACE: 'default', ...ctx.lab.env };
  // The worker owns the lab's config; the test rewrites that file (GitHub build and announce) and the worker reads it
  // again for the next release.
  worker = spawn(process.execPath, [BIN, 'worker', '--config', ctx.lab.configFile], { env: { ...process.env, ...cliEnv, [TOKEN_ENV]: token }, stdio: ['ignore', 'pipe', 'pipe'] });
  worker.stdout?.on('data', (d: Buffer) => (workerLog += d.toString()));
  worker.stderr?.on('data', (d: Buffer) => (workerLog += d.toString()));
  await waitFor('the worker to poll', async () => workerLog.includes('polling') || undefined, 60_000);
});

/** Started by the lab's operator, approved by alice, each with their own key. */
function signedBy(lab: typeof ctx.lab): string[] {
  return ['--requested-by', 'operator', '--key', lab.people.operator, '--approve-as', 'alice', '--approve-key', lab.people.alice];
}

afterAll(async () => {
  if (worker && worker.exitCode === null) {
    const exited = new Promise((r) => worker!.once('exit', r));
    worker.kill('SIGTERM');
    await exited;
  }
  await dev?.teardown();
  await gh?.stop();
});

describe('a lab release with GitHub Actions build polling and GitHub announcement', () => {
  it('waits for the tag’s CI run, deploys its image by the registry digest, and announces on GitHub', async () => {
    const { lab } = ctx;
    const service = ctx.service;
    const { version, commit } = lab.repo.good;
    const tag = `v${version}`;

    // GitHub's view of the repository: green checks, no blockers, a milestone with two open issues.
    gh.addCheckRun(commit, 'unit-tests', 'completed', 'success');
    gh.addStatus(commit, 'ci/lint', 'success');
    const milestone = gh.addMilestone(tag);
    const issues = [gh.addMilestoneIssue(milestone, 'Greeting is wrong'), gh.addMilestoneIssue(milestone, 'Version endpoint')];
    gh.addWorkflow('release.yml');

    // The "GitHub Actions run" the tag push starts: a real image build of the tag, pushed to the lab registry.
    let ci: Promise<BuildResult> | undefined;
    let ciState: RunStep = { status: 'in_progress' };
    gh.beforeListRuns = (_file, headSha) => {
      if (ci || headSha !== commit) return;
      const changelog = execFileSync('git', ['show', `${tag}:CHANGELOG.md`], { cwd: lab.repo.url, encoding: 'utf8' });
      gh.addFile(tag, 'CHANGELOG.md', changelog);
      ci = createBuildDocker({ env: process.env })({ release: releaseRef(version), repo: service.repo, image: service.image, build: service.build, tag, commit });
      ci.then(
        () => (ciState = { status: 'completed', conclusion: 'success' }),
        () => (ciState = { status: 'completed', conclusion: 'failure' }),
      );
      gh.addRun('release.yml', commit, tag, { steps: [{ status: 'queued' }], live: () => ciState });
    };

    const config = parse(lab.configYaml) as { services: { hello: Record<string, unknown> } };
    config.services.hello.build = { kind: 'github-actions', workflow: 'release.yml', digestFrom: { registry: true }, pollInterval: '1s' };
    config.services.hello.github = { owner: gh.owner, repo: gh.repo, token: { env: TOKEN_ENV }, baseUrl: gh.baseUrl, deploymentEnvironment: 'production' };
    const configFile = lab.configFile;
    writeFileSync(configFile, stringify(config));

    const start = await gantry(['start', 'hello', version, '--config', configFile, ...signedBy(lab)], { env: cliEnv, timeoutMs: 400_000 });
    expect(start.code, `${show(start)}\nworker log:\n${workerLog.slice(-4000)}`).toBe(0);

    const status = await gantry(['status', 'hello', version, '--json'], { env: cliEnv });
    const s = JSON.parse(status.stdout) as ReleaseStatus;
    expect(s.outcome).toBe('succeeded');
    const step = (name: string) => s.steps.find((x) => x.name === name)!;
    const built = await ci!;
    const run = gh.runs.find((r) => r.head_branch === tag)!;
    // The build step took the CI run's image, by the digest the registry reports, and recorded the run.
    expect(step('build').outputs).toMatchObject({ digest: built.digest, imageRef: built.imageRef, ciRunUrl: run.html_url });
    expect(gh.calls('actions/get-workflow-run').length).toBeGreaterThanOrEqual(1);
    const prod = await lab.docker.getContainer(lab.production.container).inspect();
    expect(prod.Config.Image).toBe(built.imageRef);
    expect(await (await fetch(`${lab.production.url}/version`)).json()).toEqual({ version });

    // Preflight asked GitHub about the commit.
    expect(gh.calls('checks/list-for-ref')[0]!.path).toContain(commit);
    expect(gh.calls('issues/list-for-repo')[0]!.path).toContain('labels=release-blocker');

    // Announce: the release with the CHANGELOG section, the milestone closed, the deployment marked.
    expect(gh.releases).toHaveLength(1);
    const release = gh.releases[0]!;
    expect(release).toMatchObject({ tag_name: tag, draft: false });
    expect(release.body).toContain(`Image: \`${built.imageRef}\``);
    expect(release.body).toContain(`Build: ${run.html_url}`);
    expect(step('announce').outputs).toMatchObject({ githubRelease: release.html_url });
    for (const issue of issues) expect(issue.state).toBe('closed');
    expect(gh.issueComments.map((c) => c.body)).toEqual(issues.map(() => `Released in ${tag}: ${release.html_url}\n\n${commentMarker('released', version)}`));
    expect(milestone.state).toBe('closed');
    expect(gh.deploymentStatuses.map((d) => d.state)).toEqual(['success']);
    // The chat message carries the CI run too.
    expect(JSON.stringify(lab.webhook.requests().at(-1)?.body)).toContain(run.html_url);

    expect(workerLog).not.toContain(token);
    expectContractKept(gh);
  });

  it('stops before staging, with the run URL, when the tag’s CI run concludes failure', async () => {
    const { lab } = ctx;
    const { version, commit } = lab.repo.broken;
    const tag = `v${version}`;
    lab.repo.moveBranch('main', commit);
    gh.addCheckRun(commit, 'unit-tests', 'completed', 'success');
    const stagingBefore = (await lab.docker.getContainer(lab.staging.container).inspect()).Config.Image;
    gh.beforeListRuns = (_file, headSha) => {
      if (headSha !== commit || gh.runs.some((r) => r.head_branch === tag)) return;
      gh.addRun('release.yml', commit, tag, { steps: [{ status: 'queued' }, { status: 'in_progress' }, { status: 'completed', conclusion: 'failure' }] });
    };

    const start = await gantry(['start', 'hello', version, '--config', lab.configFile, ...signedBy(lab)], { env: cliEnv, timeoutMs: 300_000 });
    expect(start.code, show(start)).toBe(14); // failed (docs/cli.md)
    const run = gh.runs.find((r) => r.head_branch === tag)!;
    const s = JSON.parse((await gantry(['status', 'hello', version, '--json'], { env: cliEnv })).stdout) as ReleaseStatus;
    expect(s.outcome).toBe('failed');
    const build = s.steps.find((x) => x.name === 'build')!;
    expect(build.state).toBe('failed');
    expect(build.attempts).toBe(1);
    expect(build.error).toContain(`concluded "failure": ${run.html_url}`);
    expect(s.message).toContain(run.html_url);
    expect(s.steps.find((x) => x.name === 'deployStaging')!.state).not.toBe('succeeded');
    expect((await lab.docker.getContainer(lab.staging.container).inspect()).Config.Image).toBe(stagingBefore);
    expect(gh.releases.filter((r) => r.tag_name === tag)).toEqual([]);
    expectContractKept(gh);
  });
});
