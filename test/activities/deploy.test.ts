/**
 * The deploy step against the real lab: `kind: docker` through dockerode on Podman's API, `kind: ssh` through
 * node-ssh to the lab's sshd and the docker CLI there. Every effect is checked on the engine and over HTTP.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApplicationFailure } from '@temporalio/common';
import { createDeploy } from '../../src/activities/deploy';
import { failedName, previousName } from '../../src/activities/deployer';
import type { DockerDeploy, SshDeploy } from '../../src/config/schema';
import type { BuildResult, DeployRequest } from '../../src/activities/types';
import { freePort } from '../../src/lab/daemon';
import { GantryErrorType } from '../../src/shared/errors';
import { buildRevision, httpGet, releaseRef, runActivity, useLab } from '../helpers/lab';

const ctx = useLab();
let good: BuildResult;
let broken: BuildResult;

beforeAll(async () => {
  good = await buildRevision(ctx.lab, ctx.service, 'good');
  broken = await buildRevision(ctx.lab, ctx.service, 'broken');
});
// The kept containers are the deployers' own; the lab removes only the containers it names.
afterAll(async () => {
  for (const base of [ctx.lab.staging.container, ctx.lab.production.container]) {
    for (const n of [previousName(base), failedName(base)]) await ctx.lab.docker.getContainer(n).remove({ force: true }).catch(() => undefined);
  }
});

const deploy = createDeploy({ env: process.env });

function stagingTarget(): DockerDeploy {
  return ctx.service.environments.staging!.deploy as DockerDeploy;
}
function productionTarget(overrides: Partial<SshDeploy> = {}): SshDeploy {
  return { ...(ctx.service.environments.production!.deploy as SshDeploy), ...overrides };
}
function request(environment: 'staging' | 'production', target: DeployRequest['target'], image: BuildResult, release = releaseRef(image.image.split(':v')[1]!)): DeployRequest {
  return { release, environment, target, imageRef: image.imageRef, digest: image.digest };
}

async function expectFailure(p: Promise<unknown>): Promise<ApplicationFailure> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err, 'the deploy should have failed').toBeInstanceOf(ApplicationFailure);
  return err as ApplicationFailure;
}

async function container(name: string) {
  return ctx.lab.docker.getContainer(name).inspect();
}

describe('deploy kind docker (dockerode on the lab engine)', () => {
  it('pulls by digest, starts the container with ports, env file and restart policy, and it answers over HTTP', async () => {
    const { lab } = ctx;
    const { result } = await runActivity(deploy, [request('staging', stagingTarget(), good)]);
    expect(result).toEqual({
      attempt: 1,
      environment: 'staging',
      targets: [{ target: `docker:${lab.staging.container}`, previousImage: null, image: good.imageRef, changed: true }],
    });

    const c = await container(lab.staging.container);
    expect(c.State.Running).toBe(true);
    expect(c.Config.Image).toBe(good.imageRef);
    expect(c.Config.Env).toContain(`LAB_ID=${lab.id}`);
    expect(c.HostConfig.RestartPolicy?.Name).toBe('unless-stopped');
    expect(c.HostConfig.PortBindings?.['80/tcp']).toEqual([{ HostIp: '127.0.0.1', HostPort: String(lab.staging.port) }]);
    expect(c.Config.Labels).toMatchObject({ 'gantry.version': '1.0.0', 'gantry.environment': 'staging', 'gantry.digest': good.digest });

    expect(JSON.parse((await httpGet(`${lab.staging.url}/version`)).body)).toEqual({ version: '1.0.0' });
    expect((await httpGet(`${lab.staging.url}/health`)).status).toBe(200);
  });

  it('is idempotent: the container already running that digest is left alone (changed: false)', async () => {
    const { lab } = ctx;
    const before = await container(lab.staging.container);
    const { result } = await runActivity(deploy, [request('staging', stagingTarget(), good)]);
    expect(result.targets).toEqual([{ target: `docker:${lab.staging.container}`, previousImage: good.imageRef, image: good.imageRef, changed: false }]);
    const after = await container(lab.staging.container);
    expect(after.Id).toBe(before.Id);
    expect(after.State.StartedAt).toBe(before.State.StartedAt);
  });

  it('replaces the container with a new version and records the image that ran before', async () => {
    const { lab } = ctx;
    const release = releaseRef('1.1.0');
    const { result } = await runActivity(deploy, [request('staging', stagingTarget(), broken, release)]);
    expect(result.targets).toEqual([{ target: `docker:${lab.staging.container}`, previousImage: good.imageRef, image: broken.imageRef, changed: true }]);
    expect((await container(lab.staging.container)).Config.Image).toBe(broken.imageRef);
    expect(JSON.parse((await httpGet(`${lab.staging.url}/version`)).body)).toEqual({ version: '1.1.0' });
    expect((await httpGet(`${lab.staging.url}/health`)).status).toBe(404);

    // A retry of the same release (after a crash that had already replaced the container) changes nothing and
    // still reports the true previous image, so a rollback can restore it.
    const { result: retried } = await runActivity(deploy, [request('staging', stagingTarget(), broken, release)], { attempt: 2 });
    expect(retried).toMatchObject({ attempt: 2, targets: [{ previousImage: good.imageRef, image: broken.imageRef, changed: false }] });
  });

  it('fails non-retryably when the registry does not have the digest', async () => {
    const missing = { ...good, digest: `sha256:${'0'.repeat(64)}`, imageRef: `${good.image.split(':v')[0]}@sha256:${'0'.repeat(64)}` };
    const err = await expectFailure(runActivity(deploy, [request('staging', stagingTarget(), missing)]));
    expect(err.type).toBe(GantryErrorType.DeployFailed);
    expect(err.nonRetryable).toBe(true);
    expect(err.message).toContain(`The registry has no ${missing.imageRef}`);
  });

  it('fails retryably when the engine is not there', async () => {
    const err = await expectFailure(runActivity(deploy, [request('staging', { ...stagingTarget(), socketPath: '/nonexistent/podman.sock' }, good)]));
    expect(err.nonRetryable).toBe(false);
    expect(err.message).toContain('/nonexistent/podman.sock did not answer');
  });
});

describe('deploy kind ssh (node-ssh to the lab host, docker CLI there)', () => {
  it('deploys over SSH: the container runs the digest and answers over HTTP', async () => {
    const { lab } = ctx;
    const { result } = await runActivity(deploy, [request('production', productionTarget(), good)]);
    const name = `ssh:${lab.ssh.user}@127.0.0.1:${lab.ssh.port}/${lab.production.container}`;
    expect(result).toEqual({ attempt: 1, environment: 'production', targets: [{ target: name, previousImage: null, image: good.imageRef, changed: true }] });

    const c = await container(lab.production.container);
    expect(c.State.Running).toBe(true);
    expect(c.Config.Image).toBe(good.imageRef);
    expect(c.Config.Env).toContain(`LAB_ID=${lab.id}`);
    expect(c.HostConfig.RestartPolicy?.Name).toBe('unless-stopped');
    expect(c.Config.Labels).toMatchObject({ 'gantry.environment': 'production', 'gantry.previous-image': '' });
    expect(JSON.parse((await httpGet(`${lab.production.url}/version`)).body)).toEqual({ version: '1.0.0' });
  });

  it('is idempotent over SSH (changed: false, same container)', async () => {
    const { lab } = ctx;
    const before = await container(lab.production.container);
    const { result } = await runActivity(deploy, [request('production', productionTarget(), good)]);
    expect(result.targets[0]).toMatchObject({ changed: false, image: good.imageRef });
    expect((await container(lab.production.container)).Id).toBe(before.Id);
  });

  it('stops at the first failing host, puts the hosts it changed back on their kept containers, and reports host by host', async () => {
    const { lab } = ctx;
    const deadPort = await freePort();
    const [labHost] = productionTarget().hosts;
    const target = productionTarget({ hosts: [labHost!, { ...labHost!, port: deadPort }] });
    const before = await container(lab.production.container);
    expect(before.Config.Image).toBe(good.imageRef);
    const err = await expectFailure(runActivity(deploy, [request('production', target, broken)]));
    const first = `ssh:${lab.ssh.user}@127.0.0.1:${lab.ssh.port}/${lab.production.container}`;
    const second = `ssh:${lab.ssh.user}@127.0.0.1:${deadPort}/${lab.production.container}`;
    expect(err.nonRetryable).toBe(false);
    expect(err.message).toContain(`${second}: could not connect over SSH`);
    expect(err.message).toContain(`Host by host:\n- ${first}: had changed to the new image; back on ${good.imageRef} (kept container started again)\n- ${second}: failed (above)`);
    expect(err.details?.[0]).toMatchObject({ failedHost: second, changedHosts: [first], restoredHosts: [first], notRestoredHosts: [], targets: [{ target: first, previousImage: good.imageRef, changed: true }] });
    // Host 1 runs the previous version again, in the very container that ran it before.
    const after = await container(lab.production.container);
    expect(after.Id).toBe(before.Id);
    expect(after.State.Running).toBe(true);
    expect(after.Config.Image).toBe(good.imageRef);
    expect(JSON.parse((await httpGet(`${lab.production.url}/version`)).body)).toEqual({ version: '1.0.0' });
  });

  it('refuses a host whose key does not match the pinned fingerprint', async () => {
    const [labHost] = productionTarget().hosts;
    const target = productionTarget({ hosts: [{ ...labHost!, hostKey: 'SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' }] });
    const err = await expectFailure(runActivity(deploy, [request('production', target, good)]));
    expect(err.type).toBe(GantryErrorType.DeployFailed);
    expect(err.nonRetryable).toBe(true);
    expect(err.message).toContain(`the host key is ${ctx.lab.ssh.hostKeyFingerprint} (ssh-ed25519), not the pinned SHA256:AAAA`);
  });

  it('says what to do when the key reference points at nothing (and never shows a key)', async () => {
    const err = await expectFailure(runActivity(deploy, [request('production', productionTarget({ privateKey: { env: 'GANTRY_TEST_NO_SUCH_KEY' } }), good)]));
    expect(err.type).toBe(GantryErrorType.SecretMissing);
    expect(err.message).toContain('GANTRY_TEST_NO_SUCH_KEY');
  });

  it('names the missing container CLI on the host', async () => {
    const err = await expectFailure(runActivity(deploy, [request('production', productionTarget({ containerCli: 'no-such-docker' }), good)]));
    expect(err.type).toBe(GantryErrorType.ConfigInvalid);
    expect(err.message).toContain('`no-such-docker` is not installed there');
  });

  it('goes host by host over sessions opened ahead: the second host (the same one again) finds the new version running', async () => {
    const { lab } = ctx;
    const [labHost] = productionTarget().hosts;
    const target = productionTarget({ hosts: [labHost!, { ...labHost! }] });
    const name = `ssh:${lab.ssh.user}@127.0.0.1:${lab.ssh.port}/${lab.production.container}`;
    const { result } = await runActivity(deploy, [request('production', target, broken)]);
    expect(result.targets).toEqual([
      { target: name, previousImage: good.imageRef, image: broken.imageRef, changed: true },
      { target: name, previousImage: good.imageRef, image: broken.imageRef, changed: false },
    ]);
    expect((await container(lab.production.container)).Config.Image).toBe(broken.imageRef);
    expect(JSON.parse((await httpGet(`${lab.production.url}/version`)).body)).toEqual({ version: '1.1.0' });
  });
});
