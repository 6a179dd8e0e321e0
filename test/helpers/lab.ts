/**
 * A real release lab per test file (podman API, registry, sshd, bare repo, webhook receiver) in a temp dir.
 * Missing components are a loud failure naming the provisioning command; nothing is skipped.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { parseConfig } from '../../src/config/load';
import type { ServiceConfig } from '../../src/config/schema';
import { checkLabPrerequisites, type Lab, startLab } from '../../src/lab';
import type { BuildResult, ReleaseRef } from '../../src/activities/types';
import { createBuildDocker } from '../../src/activities/build-docker';

const repoRoot = path.resolve(__dirname, '..', '..');

/** provision.sh --check: packages installed and the container config written (it changes nothing). */
export function requireProvisionedLab(): void {
  checkLabPrerequisites({ managedEngine: true });
  try {
    execFileSync('bash', [path.join(repoRoot, 'scripts', 'lab', 'provision.sh'), '--check'], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  } catch (err) {
    const out = String((err as { stderr?: string }).stderr ?? err);
    throw new Error(`The release lab is not provisioned on this machine:\n${out.trim()}\nRun \`bash scripts/lab/provision.sh\` as root and rerun the tests.`);
  }
}

/** Start a lab before the file's tests and tear it down (containers, daemons, temp dir) after them. */
export function useLab(opts: { windows?: { staging?: string; production?: string } } = {}): { readonly lab: Lab; readonly service: ServiceConfig } {
  let lab: Lab | undefined;
  let service: ServiceConfig | undefined;
  let dir: string | undefined;
  beforeAll(async () => {
    requireProvisionedLab();
    dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-lab-'));
    lab = await startLab({ dir, ...(opts.windows ? { windows: opts.windows } : {}) });
    service = parseConfig(lab.configYaml, lab.configFile).services.hello!;
  });
  afterAll(async () => {
    await lab?.stop({ removeImages: true });
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  return {
    get lab() {
      if (!lab) throw new Error('the lab did not start (see the beforeAll error above)');
      return lab;
    },
    get service() {
      if (!service) throw new Error('the lab did not start (see the beforeAll error above)');
      return service;
    },
  };
}

/** Create the annotated tag `v{version}` at `commit` in the lab's bare repository (what the tag step does). */
export function tagRevision(lab: Lab, version: string, commit: string): string {
  const tag = `v${version}`;
  execFileSync('git', ['tag', '--annotate', '--force', '--message', `release ${tag}`, tag, commit], {
    cwd: lab.repo.url,
    env: { ...process.env, GIT_COMMITTER_NAME: 'test', GIT_COMMITTER_EMAIL: 'test@lab.invalid' },
    stdio: 'ignore',
  });
  return tag;
}

/**
 * Commit a change on top of `parent` in the lab repository (through a scratch clone) and return its SHA; `edit`
 * gets the work tree path.
 */
export function commitChange(lab: Lab, parent: string, message: string, edit: (tree: string) => void): string {
  const work = mkdtempSync(path.join(os.tmpdir(), 'gantry-lab-change-'));
  const env = { ...process.env, GIT_AUTHOR_NAME: 'test', GIT_AUTHOR_EMAIL: 'test@lab.invalid', GIT_COMMITTER_NAME: 'test', GIT_COMMITTER_EMAIL: 'test@lab.invalid' };
  const git = (args: string[]) => execFileSync('git', args, { cwd: work, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  try {
    git(['init', '--quiet']);
    git(['fetch', '--quiet', lab.repo.url, parent]);
    git(['checkout', '--quiet', parent]);
    edit(work);
    git(['add', '--all']);
    git(['commit', '--quiet', '-m', message]);
    const sha = git(['rev-parse', 'HEAD']);
    git(['push', '--quiet', lab.repo.url, `${sha}:refs/heads/test-${sha.slice(0, 8)}`]);
    return sha;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

let releaseSeq = 0;
export function releaseRef(version: string, service = 'hello'): ReleaseRef {
  releaseSeq += 1;
  return { service, version, workflowId: `release-${service}-${version}-test${process.pid}-${releaseSeq}` };
}

/** Run an activity function in a mock activity Context (attempt number, heartbeats recorded). */
export async function runActivity<A extends unknown[], R>(fn: (...args: A) => Promise<R>, args: A, info: { attempt?: number } = {}): Promise<{ result: R; heartbeats: unknown[] }> {
  // Failures are asserted by the tests; the SDK's own warning for each one would only be noise.
  const env = new MockActivityEnvironment({ attempt: info.attempt ?? 1 }, { logger: new DefaultLogger('ERROR') });
  const heartbeats: unknown[] = [];
  env.on('heartbeat', (d: unknown) => heartbeats.push(d));
  const result = await env.run(fn as never, ...(args as unknown as never[]));
  return { result: result as R, heartbeats };
}

/** GET a URL on loopback, polling until it answers (a fresh container needs a moment). */
export async function httpGet(url: string, timeoutMs = 10_000): Promise<{ status: number; body: string }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      return { status: res.status, body: await res.text() };
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`${url} did not answer within ${timeoutMs} ms: ${String((err as Error).cause ?? err)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/** Tag a lab revision and build its image with the real build step; what deploy and rollback tests deploy. */
export async function buildRevision(lab: Lab, service: ServiceConfig, revision: 'good' | 'broken'): Promise<BuildResult> {
  const { version, commit } = lab.repo[revision];
  const tag = tagRevision(lab, version, commit);
  const build = createBuildDocker({ env: process.env });
  return build({ release: releaseRef(version), repo: service.repo, image: service.image, build: service.build, tag, commit });
}
