/**
 * repo.testCommand under both runners, for real: the container runner on the lab's Podman (its Docker API,
 * the lab's busybox base image), the user runner as `nobody` on this machine (the suite runs as root in CI).
 * A hostile test command tries to read the worker's secrets; neither the report nor the kept output may hold them.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { createPreflight, type PreflightDeps } from '../../src/activities/preflight';
import { resolveSecret } from '../../src/activities/secrets';
import type { PreflightRequest, PreflightResult } from '../../src/activities/types';
import type { RepoConfig } from '../../src/config/schema';
import { GantryErrorType } from '../../src/shared/errors';
import { createTestRepo, type TestRepo } from '../helpers/git-repos';
import { useLab } from '../helpers/lab';

const ctx = useLab();

const CHANGELOG = '# Changelog\n\n## [1.2.3]\n- the thing\n';
type Runner = NonNullable<RepoConfig['testRunner']>;

// The worker's secrets: a {file:} secret only the worker (root) can read, and a value in the worker's environment.
const FILE_SECRET = `file-secret-${randomBytes(12).toString('hex')}`;
const ENV_SECRET = `env-secret-${randomBytes(12).toString('hex')}`;
let secretDir: string;
let secretFile: string;
let scratch: string;
const repos: TestRepo[] = [];

beforeAll(() => {
  if (process.getuid?.() !== 0) {
    // CI runs the suite as root; the user runner cannot be tested otherwise, and is not skipped.
    throw new Error(`These tests run test commands as the user nobody, which needs the test process to run as root (it runs as uid ${process.getuid?.()}). ` +
      'Run the suite as root (CI does).');
  }
  secretDir = mkdtempSync(path.join(os.tmpdir(), 'gantry-worker-secrets-'));
  secretFile = path.join(secretDir, 'deploy_key');
  writeFileSync(secretFile, `${FILE_SECRET}\n`, { mode: 0o600 });
  chmodSync(secretFile, 0o600);
  scratch = mkdtempSync(path.join(os.tmpdir(), 'gantry-test-runner-'));
  process.env.GANTRY_TEST_WORKER_SECRET = ENV_SECRET;
});
afterAll(() => {
  delete process.env.GANTRY_TEST_WORKER_SECRET;
  if (secretDir) rmSync(secretDir, { recursive: true, force: true });
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});
afterEach(() => {
  while (repos.length) repos.pop()!.cleanup();
});

function containerRunner(): Extract<Runner, { kind: 'container' }> {
  return { kind: 'container', image: ctx.lab.baseImage, network: 'none', socketPath: ctx.lab.engine.socketPath };
}
const userRunner: Runner = { kind: 'user', user: 'nobody' };

let seq = 0;
function request(testRunner: Runner, testCommand: string, artifacts = true): { req: PreflightRequest; repo: TestRepo; log: string } {
  const repo = createTestRepo({ 'CHANGELOG.md': CHANGELOG });
  repos.push(repo);
  seq += 1;
  const workflowId = `release-hello-1.2.3-runner-${process.pid}-${seq}`;
  const base = path.join(scratch, `run-${seq}`);
  return {
    req: {
      release: { service: 'hello', version: '1.2.3', workflowId },
      repo: { url: repo.remote, branch: 'main', changelog: 'CHANGELOG.md', testCommand, testRunner },
      ...(artifacts ? { artifactsDir: path.join(base, '{service}', '{version}') } : {}),
    },
    repo,
    log: path.join(base, 'hello', '1.2.3', 'preflight-tests.log'),
  };
}

function deps(extra: Partial<PreflightDeps> = {}): PreflightDeps {
  return { env: { ...process.env, GANTRY_TEST_WORKER_SECRET: ENV_SECRET }, ...extra };
}

async function run(req: PreflightRequest, d: PreflightDeps = deps()): Promise<PreflightResult> {
  const env = new MockActivityEnvironment({ attempt: 1 }, { logger: new DefaultLogger('ERROR') });
  const { preflight } = createPreflight(d);
  return env.run<[PreflightRequest], PreflightResult, typeof preflight>(preflight, req);
}

async function failure(req: PreflightRequest, d: PreflightDeps = deps()): Promise<ApplicationFailure> {
  const err = await run(req, d).then(() => undefined, (e: unknown) => e);
  expect(err, 'preflight should have failed').toBeInstanceOf(ApplicationFailure);
  return err as ApplicationFailure;
}

function testsDetail(f: ApplicationFailure): string {
  const { checks } = f.details?.[0] as { checks: { name: string; ok: boolean; detail: string }[] };
  const tests = checks.find((c) => c.name === 'tests');
  expect(tests?.ok).toBe(false);
  return tests!.detail;
}

/** The tail as reported: what follows "Last output:", without the indentation the report adds. */
function reportedTail(detail: string): string {
  const [, tail] = detail.split('Last output:\n');
  expect(tail, `no "Last output:" in ${detail}`).toBeDefined();
  return tail!.split('\n').map((l) => l.replace(/^ {4}/, '')).join('\n');
}

async function testContainers(workflowId: string) {
  return ctx.lab.docker.listContainers({ all: true, filters: { label: [`gantry.preflight=${workflowId}`] } });
}

/** A test command that goes after the worker's secrets, prints what it saw, floods the output and fails. */
function hostileCommand(marker: string): string {
  return [
    `echo "${marker}"`,
    'echo "--- id"; id',
    'echo "--- env"; env',
    `echo "--- secret file"; cat '${secretFile}' || echo "secret file not readable"`,
    'echo "--- /proc/1/environ"; cat /proc/1/environ | tr "\\0" "\\n" || echo "pid 1 environ not readable"',
    `echo "--- worker environ"; cat /proc/${process.pid}/environ | tr "\\0" "\\n" || echo "worker environ not readable"`,
    `echo "--- worker parent environ"; cat /proc/${process.ppid}/environ | tr "\\0" "\\n" || echo "worker parent environ not readable"`,
    'echo "--- mounts"; cat /proc/mounts',
    'echo "--- network"; cat /proc/net/dev',
    'i=0; while [ $i -lt 40 ]; do echo "filler line $i $(printf "%0150d" 0)"; i=$((i+1)); done',
    'exit 1',
  ].join('\n');
}

function expectNoSecrets(text: string): void {
  expect(text).not.toContain(FILE_SECRET);
  expect(text).not.toContain(ENV_SECRET);
}

function expectShortTail(detail: string): void {
  const tail = reportedTail(detail);
  expect(tail.split('\n').length).toBeLessThanOrEqual(10);
  expect(tail.length).toBeLessThanOrEqual(800);
  expect(tail).toContain('filler line 39');
}

describe('test commands that go after the worker secrets', () => {
  it('the secrets are there to take: the worker itself can read them', () => {
    expect(resolveSecret({ file: secretFile }, process.env)).toBe(FILE_SECRET);
    expect(statSync(secretFile).mode & 0o777).toBe(0o600);
    expect(process.env.GANTRY_TEST_WORKER_SECRET).toBe(ENV_SECRET);
  });

  it('in a container: runs, sees only the checkout and four variables, leaks nothing, and the container is gone', async () => {
    const marker = `marker-${randomBytes(6).toString('hex')}`;
    const { req, log } = request(containerRunner(), hostileCommand(marker));
    const f = await failure(req);
    expect(f.type).toBe(GantryErrorType.PreflightFailed);
    const detail = testsDetail(f);
    expect(detail).toMatch(/failed \(exit 1\) after .* \(it ran in a container of localhost\/gantry-lab\/busybox:1\)/);
    expect(detail).toContain(`Full output: ${log}.`);
    expect(f.message).toContain(log);

    // It really ran, in the container, with the checkout as its working directory and only gantry's variables.
    const artifact = readFileSync(log, 'utf8');
    expect(artifact).toContain(marker);
    expect(artifact).toMatch(/^GANTRY_SERVICE=hello$/m);
    expect(artifact).toMatch(/^GANTRY_VERSION=1\.2\.3$/m);
    expect(artifact).toMatch(/^GANTRY_COMMIT=[0-9a-f]{40}$/m);
    expect(artifact).toMatch(/^CI=true$/m);
    expect(artifact).toMatch(/^PWD=\/workspace$/m);
    expect(artifact).toContain('secret file not readable');
    expect(artifact).toMatch(/cat: can't open '.*deploy_key': No such file/);
    // Mounted: the checkout, and nothing of the worker's (no engine socket, no secrets directory).
    const mounts = artifact.slice(artifact.indexOf('--- mounts'), artifact.indexOf('--- network'));
    expect(mounts).toContain(' /workspace ');
    expect(mounts).not.toContain(ctx.lab.engine.socketPath);
    expect(mounts).not.toMatch(/docker\.sock|podman\.sock/);
    expect(mounts).not.toContain(secretDir);
    expect(artifact).not.toMatch(/^\s*eth\d|^\s*en[a-z]\d/m);
    expectNoSecrets(artifact);
    expectNoSecrets(f.message);
    expectNoSecrets(JSON.stringify(f.details));
    expectShortTail(detail);

    expect(await testContainers(req.release.workflowId)).toEqual([]);
  });

  it('as the user nobody: runs, cannot read the secret file or the worker environment, leaks nothing', async () => {
    const nobodyUid = execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).trim();
    const marker = `marker-${randomBytes(6).toString('hex')}`;
    const { req, log } = request(userRunner, `${hostileCommand(marker).replace('exit 1', '')}\necho "uid:$(id -u)"; touch "$HOME/home-is-writable" && touch ./checkout-is-writable && exit 1`);
    const f = await failure(req);
    const detail = testsDetail(f);
    expect(detail).toMatch(/failed \(exit 1\) after .* \(it ran as user nobody\)/);
    expect(detail).toContain(`Full output: ${log}.`);

    const artifact = readFileSync(log, 'utf8');
    expect(artifact).toContain(marker);
    expect(artifact).toContain(`uid:${nobodyUid}`);
    expect(artifact).toMatch(/^USER=nobody$/m);
    expect(artifact).toMatch(/^GANTRY_SERVICE=hello$/m);
    expect(artifact).toMatch(/^HOME=\/.*\/home$/m);
    expect(artifact).toMatch(/deploy_key.*Permission denied/);
    expect(artifact).toMatch(new RegExp(`/proc/${process.pid}/environ.*Permission denied`));
    expect(artifact).not.toMatch(/^GANTRY_TEST_WORKER_SECRET=/m);
    expectNoSecrets(artifact);
    expectNoSecrets(f.message);
    expectNoSecrets(JSON.stringify(f.details));
    // The tail: the flood's end, short. (The last lines here are the filler and uid; the limit holds.)
    const tail = reportedTail(detail);
    expect(tail.split('\n').length).toBeLessThanOrEqual(10);
    expect(tail.length).toBeLessThanOrEqual(800);
    expect(tail).toContain(`uid:${nobodyUid}`);
  });
});

describe('passing test commands', () => {
  it.each([
    ['container', () => containerRunner(), '/workspace'],
    ['user nobody', () => userRunner, undefined],
  ] as const)('pass preflight with the %s runner and keep their output', async (_name, runner, cwd) => {
    const { req, log, repo } = request(runner(), 'test -f CHANGELOG.md && echo made > made-by-tests && echo "tests ok for $GANTRY_VERSION in $PWD"');
    const result = await run(req);
    expect(result.commit).toBe(repo.head());
    expect(result.checks.every((c) => c.ok)).toBe(true);
    const tests = result.checks.find((c) => c.name === 'tests')!;
    expect(tests.detail).toMatch(/passed in .* \(it ran (in a container of|as user nobody)/);
    expect(tests.detail).toContain(`Full output: ${log}.`);
    expect(readFileSync(log, 'utf8')).toContain(`tests ok for 1.2.3 in ${cwd ?? ''}`);
    if (runner().kind === 'container') expect(await testContainers(req.release.workflowId)).toEqual([]);
  });

  it('in a container of an image with an entrypoint: the test command is what runs', async () => {
    const { docker } = ctx.lab;
    const repo = 'localhost/gantry-test-entrypoint';
    const tag = String(process.pid);
    const scratchContainer = await docker.createContainer({ Image: ctx.lab.baseImage, Cmd: ['/bin/true'] });
    try {
      await scratchContainer.commit({ repo, tag, changes: 'ENTRYPOINT ["/bin/echo","entrypoint-ran"]' });
    } finally {
      await scratchContainer.remove({ force: true });
    }
    try {
      expect((await docker.getImage(`${repo}:${tag}`).inspect()).Config.Entrypoint).toEqual(['/bin/echo', 'entrypoint-ran']);
      const { req, log } = request({ ...containerRunner(), image: `${repo}:${tag}` }, 'echo "the command ran"');
      const result = await run(req);
      expect(result.checks.find((c) => c.name === 'tests')).toMatchObject({ ok: true });
      const kept = readFileSync(log, 'utf8');
      expect(kept).toBe('the command ran\n');
      expect(await testContainers(req.release.workflowId)).toEqual([]);
    } finally {
      await docker.getImage(`${repo}:${tag}`).remove({ force: true }).catch(() => undefined);
    }
  });

  it('as nobody: processes the tests leave running, even in a session of their own, are killed when the shell exits', async () => {
    const { req } = request(userRunner, 'setsid sleep 317 & sleep 318 & sleep 1; echo "started daemons"');
    const started = Date.now();
    const result = await run(req);
    expect(Date.now() - started).toBeLessThan(20_000);
    const tests = result.checks.find((c) => c.name === 'tests')!;
    expect(tests.ok).toBe(true);
    expect(tests.detail).toMatch(/process\(es\) the tests left running as nobody were killed/);
    const left = execFileSync('ps', ['-eo', 'user:20,args'], { encoding: 'utf8' }).split('\n').filter((l) => /sleep 31[78]/.test(l));
    expect(left).toEqual([]);
  });

  it('without an artifacts directory says the full output was not kept and how to keep it', async () => {
    const { req } = request(userRunner, 'echo "only the tail"; exit 2', false);
    const f = await failure(req);
    const detail = testsDetail(f);
    expect(detail).toContain('The full output was not kept: set announce.artifactsDir in the release config to keep it as preflight-tests.log.');
    expect(reportedTail(detail)).toBe('only the tail');
  });

  it('refuses an artifacts directory that a version would leave', async () => {
    const { req } = request(userRunner, 'true');
    const f = await failure({ ...req, release: { ...req.release, version: '../../escaped' } });
    expect(f.type).toBe(GantryErrorType.ConfigInvalid);
    expect(f.message).toMatch(/announce\.artifactsDir .* the version "\.\.\/\.\.\/escaped" is not a plain name/);
  });
});

describe('the test container is removed whatever happens', () => {
  it('after a timeout', async () => {
    const { req } = request(containerRunner(), 'echo started; sleep 60');
    const f = await failure(req, deps({ testTimeoutMs: 2_000 }));
    const detail = testsDetail(f);
    expect(detail).toMatch(/did not finish within 2 s and was stopped\. It ran in a container/);
    expect(reportedTail(detail)).toBe('started');
    expect(await testContainers(req.release.workflowId)).toEqual([]);
  });

  it('after the activity is cancelled while the tests run', async () => {
    const { req } = request(containerRunner(), 'echo started; sleep 60');
    const env = new MockActivityEnvironment({ attempt: 1 }, { logger: new DefaultLogger('ERROR') });
    const { preflight } = createPreflight(deps());
    const running = env.run<[PreflightRequest], PreflightResult, typeof preflight>(preflight, req).then(() => undefined, (e: unknown) => e);
    const deadline = Date.now() + 30_000;
    let seen: Awaited<ReturnType<typeof testContainers>> = [];
    while (Date.now() < deadline) {
      seen = (await testContainers(req.release.workflowId)).filter((c) => c.State === 'running');
      if (seen.length) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(seen, 'the test container should be running').toHaveLength(1);
    env.cancel();
    const err = await running;
    expect(err).toBeInstanceOf(Error);
    expect(await testContainers(req.release.workflowId)).toEqual([]);
  });

});
