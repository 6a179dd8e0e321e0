/**
 * The docker build step against the real lab: git repo, Podman's Docker API (dockerode) and the registry.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ApplicationFailure } from '@temporalio/common';
import { createBuildDocker } from '../../src/activities/build-docker';
import { canBind } from '../../src/lab/daemon';
import type { BuildRequest } from '../../src/activities/types';
import { GantryErrorType } from '../../src/shared/errors';
import { commitChange, releaseRef, runActivity, tagRevision, useLab } from '../helpers/lab';

const ctx = useLab();

function request(version: string, commit: string, overrides: Partial<BuildRequest> = {}): BuildRequest {
  const { service } = ctx;
  return { release: releaseRef(version), repo: service.repo, image: service.image, build: service.build, tag: `v${version}`, commit, ...overrides };
}

async function registryDigest(registry: string, name: string, tag: string): Promise<string | null> {
  const res = await fetch(`http://${registry}/v2/${name}/manifests/${tag}`, {
    method: 'HEAD',
    headers: { Accept: 'application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json' },
  });
  return res.status === 200 ? res.headers.get('docker-content-digest') : null;
}

async function expectFailure(p: Promise<unknown>): Promise<ApplicationFailure> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err, 'the build should have failed').toBeInstanceOf(ApplicationFailure);
  return err as ApplicationFailure;
}

describe('build (kind docker) on the lab', () => {
  const build = createBuildDocker({ env: process.env });

  it('builds the tagged tree, pushes v{version} and records the digest the registry serves', async () => {
    const { lab } = ctx;
    tagRevision(lab, lab.repo.good.version, lab.repo.good.commit);
    const { result, heartbeats } = await runActivity(build, [request(lab.repo.good.version, lab.repo.good.commit)]);

    expect(result.built).toBe(true);
    expect(result.attempt).toBe(1);
    expect(result.image).toBe(`${lab.registry.host}/hello:v1.0.0`);
    expect(result.digest).toMatch(/^sha256:[a-f0-9]{64}$/);
    expect(result.digest).toBe(await registryDigest(lab.registry.host, 'hello', 'v1.0.0'));
    expect(result.imageRef).toBe(`${lab.registry.host}/hello@${result.digest}`);

    // The engine's image carries the commit/version labels and the configured build arg.
    const image = await lab.docker.getImage(result.image).inspect();
    expect(image.Config.Labels).toMatchObject({ 'gantry.commit': lab.repo.good.commit, 'gantry.version': '1.0.0', 'lab.greeting': 'hello from the gantry lab' });

    // Progress was reported phase by phase, including the Dockerfile steps.
    // (The first beat, before the step recorded anything, has no details.)
    const progress = heartbeats.filter((h) => h !== undefined) as { phase: string; detail?: string }[];
    expect(progress.map((h) => h.phase)).toEqual(expect.arrayContaining(['check-registry', 'export', 'build', 'push', 'verify']));
    expect(progress.some((h) => /STEP \d+\/\d+/.test(h.detail ?? ''))).toBe(true);
  });

  it('reuses the pushed image on a retry after a crash (built: false, nothing rebuilt)', async () => {
    const { lab } = ctx;
    const first = await registryDigest(lab.registry.host, 'hello', 'v1.0.0');
    expect(first, 'the previous test pushed v1.0.0').toMatch(/^sha256:/);
    const before = await lab.docker.getImage(`${lab.registry.host}/hello:v1.0.0`).inspect();

    const { result } = await runActivity(build, [request('1.0.0', lab.repo.good.commit)], { attempt: 2 });
    expect(result).toMatchObject({ built: false, attempt: 2, digest: first, imageRef: `${lab.registry.host}/hello@${first}` });
    // No new image was built: the engine's image for the tag is the same object, created at the same time.
    const after = await lab.docker.getImage(`${lab.registry.host}/hello:v1.0.0`).inspect();
    expect(after.Id).toBe(before.Id);
    expect(after.Created).toBe(before.Created);
  });

  it('refuses to reuse a tag the registry holds from another commit (a version is immutable)', async () => {
    const { lab } = ctx;
    const err = await expectFailure(runActivity(build, [request('1.0.0', lab.repo.broken.commit)]));
    expect(err.type).toBe(GantryErrorType.BuildFailed);
    expect(err.nonRetryable).toBe(true);
    expect(err.message).toContain(`built from commit ${lab.repo.good.commit}`);
    expect(err.message).toMatch(/release a new version/);
  });

  it('fails retryably when the registry is down', async () => {
    const { lab, service } = ctx;
    // A port in the lab's insecure range with nothing listening: a registry that is down.
    let port = lab.registry.port + 1;
    while (!(await canBind(port))) port += 1;
    tagRevision(lab, '1.0.1', lab.repo.good.commit);
    const err = await expectFailure(runActivity(build, [request('1.0.1', lab.repo.good.commit, { image: { ...service.image, registry: `127.0.0.1:${port}` } })]));
    expect(err.type).toBe(GantryErrorType.Unavailable);
    expect(err.nonRetryable).toBe(false);
    expect(err.message).toContain(`The registry 127.0.0.1:${port} did not answer (ECONNREFUSED)`);
    expect(err.message).toMatch(/Gantry retries/);
  });

  it('fails non-retryably with the build output when the Dockerfile is broken', async () => {
    const { lab } = ctx;
    const commit = commitChange(lab, lab.repo.good.commit, 'break the Dockerfile', (tree) => {
      writeFileSync(path.join(tree, 'Dockerfile'), 'FROM localhost/gantry-lab/busybox:1\nCOPY no-such-file /www/\n');
    });
    tagRevision(lab, '1.0.2', commit);
    const err = await expectFailure(runActivity(build, [request('1.0.2', commit)]));
    expect(err.type).toBe(GantryErrorType.BuildFailed);
    expect(err.nonRetryable).toBe(true);
    expect(err.message).toMatch(/no-such-file/);
    expect(err.message).toMatch(/Fix the Dockerfile/);
  });

  it('says where the Dockerfile was looked for when there is none', async () => {
    const { lab, service } = ctx;
    tagRevision(lab, '1.0.3', lab.repo.good.commit);
    const err = await expectFailure(runActivity(build, [request('1.0.3', lab.repo.good.commit, { build: { ...service.build, dockerfile: 'docker/Dockerfile.prod' } as BuildRequest['build'] })]));
    expect(err.type).toBe(GantryErrorType.BuildFailed);
    expect(err.message).toContain('No docker/Dockerfile.prod in v1.0.3');
  });

  it('refuses a tag that no longer points at the release commit', async () => {
    const { lab } = ctx;
    tagRevision(lab, '1.0.4', lab.repo.broken.commit);
    const err = await expectFailure(runActivity(build, [request('1.0.4', lab.repo.good.commit)]));
    expect(err.type).toBe(GantryErrorType.TagConflict);
    expect(err.message).toContain(`points at ${lab.repo.broken.commit}`);
  });
});
