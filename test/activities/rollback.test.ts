/**
 * The rollback step against the real lab: a healthy version is deployed, the broken revision replaces it, and the
 * rollback restores the healthy one; checked through the engine and over HTTP with the real HTTP checks.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApplicationFailure } from '@temporalio/common';
import { runChecks } from '../../src/activities/checks';
import { createDeploy, createDeployers } from '../../src/activities/deploy';
import { failedName, previousName } from '../../src/activities/deployer';
import { createRollback } from '../../src/activities/rollback';
import type { BuildResult, DeployRequest, DeployResult, RollbackRequest, VerifyRequest } from '../../src/activities/types';
import type { DockerDeploy } from '../../src/config/schema';
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
  for (const base of [ctx.lab.staging.container, ctx.lab.production.container, `hello-first-${ctx.lab.id}`]) {
    for (const n of [previousName(base), failedName(base)]) await ctx.lab.docker.getContainer(n).remove({ force: true }).catch(() => undefined);
  }
});

const deployers = createDeployers({ env: process.env });
const deploy = createDeploy({ deployers });
const verified: VerifyRequest[] = [];
const rollback = createRollback({
  deployers,
  verify: (req) => {
    verified.push(req);
    return runChecks(req, { initialDelayMs: 200, maxDelayMs: 1_000 });
  },
});

type Env = 'staging' | 'production';
function target(env: Env): DeployRequest['target'] {
  return ctx.service.environments[env]!.deploy;
}
async function deployImage(env: Env, image: BuildResult, version: string): Promise<DeployResult> {
  return (await runActivity(deploy, [{ release: releaseRef(version), environment: env, target: target(env), imageRef: image.imageRef, digest: image.digest }])).result;
}
function rollbackRequest(env: Env, deployed: DeployResult, version: string, windowMs = 15_000): RollbackRequest {
  return { release: releaseRef(version), environment: env, target: target(env), deployed: deployed.targets, checks: ctx.service.environments[env]!.checks, windowMs };
}
function containerOf(env: Env): string {
  return env === 'staging' ? ctx.lab.staging.container : ctx.lab.production.container;
}
function urlOf(env: Env): string {
  return env === 'staging' ? ctx.lab.staging.url : ctx.lab.production.url;
}

describe.each(['staging', 'production'] as const)('rollback on %s', (env) => {
  it('restores the previous version from its kept container (no pull, no create) and verifies health with it (engine and HTTP agree)', async () => {
    await deployImage(env, good, '1.0.0');
    const goodId = (await ctx.lab.docker.getContainer(containerOf(env)).inspect()).Id;
    const failed = await deployImage(env, broken, '1.1.0');
    expect(failed.targets[0]).toMatchObject({ previousImage: good.imageRef, image: broken.imageRef, changed: true });
    expect((await httpGet(`${urlOf(env)}/health`)).status).toBe(404);
    // The previous container is kept, stopped, under its own name; the new one records it.
    const kept = await ctx.lab.docker.getContainer(previousName(containerOf(env))).inspect();
    expect(kept).toMatchObject({ Id: goodId, State: { Running: false } });
    expect((await ctx.lab.docker.getContainer(containerOf(env)).inspect()).Config.Labels).toMatchObject({ 'gantry.previous-container': goodId, 'gantry.previous-image': good.imageRef });

    const before = verified.length;
    const { result } = await runActivity(rollback, [rollbackRequest(env, failed, '1.1.0')]);
    expect(result).toEqual({ attempt: 1, restored: [{ target: failed.targets[0]!.target, image: good.imageRef }], healthy: true });

    const c = await ctx.lab.docker.getContainer(containerOf(env)).inspect();
    expect(c.Id).toBe(goodId);
    expect(c.State.Running).toBe(true);
    expect(c.Config.Image).toBe(good.imageRef);
    expect(c.Config.Labels).toMatchObject({ 'gantry.version': '1.0.0', 'gantry.digest': good.digest });
    // The failed version's container is gone once the previous one serves.
    await expect(ctx.lab.docker.getContainer(failedName(containerOf(env))).inspect()).rejects.toMatchObject({ statusCode: 404 });
    expect((await httpGet(`${urlOf(env)}/health`)).status).toBe(200);
    expect(JSON.parse((await httpGet(`${urlOf(env)}/version`)).body)).toEqual({ version: '1.0.0' });
    // The /version check was verified against the restored version, not the failed release's.
    expect(verified.slice(before).map((v) => v.release.version)).toEqual(['1.0.0']);

    // Retrying the rollback (a crash after it restored) changes nothing and stays healthy.
    const id = c.Id;
    const { result: again } = await runActivity(rollback, [rollbackRequest(env, failed, '1.1.0')], { attempt: 2 });
    expect(again).toMatchObject({ attempt: 2, healthy: true, restored: [{ image: good.imageRef }] });
    expect((await ctx.lab.docker.getContainer(containerOf(env)).inspect()).Id).toBe(id);
  });
});

describe('rollback edge cases', () => {
  it('removes the container when nothing ran before the release (and reports it unhealthy: nothing answers)', async () => {
    const name = `hello-first-${ctx.lab.id}`;
    const first: DockerDeploy = { ...(target('staging') as DockerDeploy), container: name, ports: [] };
    const deployed = (await runActivity(deploy, [{ release: releaseRef('1.1.0'), environment: 'staging', target: first, imageRef: broken.imageRef, digest: broken.digest }])).result;
    expect(deployed.targets[0]).toMatchObject({ previousImage: null, changed: true });

    const { result } = await runActivity(rollback, [{ ...rollbackRequest('staging', deployed, '1.1.0'), target: first }]);
    expect(result).toEqual({ attempt: 1, restored: [{ target: `docker:${name}`, image: null }], healthy: false });
    const gone = await ctx.lab.docker.getContainer(name).inspect().then(() => false, (err: { statusCode?: number }) => err.statusCode === 404);
    expect(gone).toBe(true);
  });

  it('fails with RollbackUnhealthy, naming the target, when the restored version does not pass its checks', async () => {
    // "Previous" is the broken image here: restoring it works, its health does not.
    await deployImage('staging', broken, '1.1.0');
    const failed = await deployImage('staging', good, '1.0.0');
    expect(failed.targets[0]).toMatchObject({ previousImage: broken.imageRef, changed: true });
    const started = Date.now();
    const err = await runActivity(rollback, [rollbackRequest('staging', failed, '1.0.0', 30_000)]).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(ApplicationFailure);
    const failure = err as ApplicationFailure;
    expect(failure.type).toBe(GantryErrorType.RollbackUnhealthy);
    expect(failure.nonRetryable).toBe(true);
    expect(failure.message).toContain(`The rollback restored an unhealthy version: staging runs the previous version 1.1.0 again (docker:${ctx.lab.staging.container} → ${broken.imageRef}), but it fails its health checks too`);
    expect(failure.message).toContain('gantry decide retry hello 1.0.0');
    // The failure limit ends the restored version's checks early too, well before the 30 s window.
    expect(Date.now() - started).toBeLessThan(15_000);
    expect((await ctx.lab.docker.getContainer(ctx.lab.staging.container).inspect()).Config.Image).toBe(broken.imageRef);
  });

  it('fails with RollbackFailed and the manual fix when the previous image cannot be restored', async () => {
    const deployed = await deployImage('staging', good, '1.0.0');
    const gone = `${good.image.split(':v')[0]}@sha256:${'1'.repeat(64)}`;
    const req = rollbackRequest('staging', { ...deployed, targets: [{ ...deployed.targets[0]!, previousImage: gone, changed: true }] }, '1.0.0');
    const err = await runActivity(rollback, [req]).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(ApplicationFailure);
    const failure = err as ApplicationFailure;
    expect(failure.type).toBe(GantryErrorType.RollbackFailed);
    expect(failure.nonRetryable).toBe(true);
    expect(failure.message).toContain(`Could not roll docker:${ctx.lab.staging.container} back to ${gone}`);
    expect(failure.message).toMatch(/Restore it by hand/);
    expect(failure.message).toContain('The registry has no');
  });
});
