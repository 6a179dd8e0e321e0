/**
 * The swap against the real lab (Podman's API through dockerode, sshd and the docker CLI on the "host"): a new
 * version that cannot start leaves the old one serving, and a deploy that crashed halfway is finished by its
 * retry with the true previous image, which the rollback then restores from the kept container.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApplicationFailure } from '@temporalio/common';
import { runChecks } from '../../src/activities/checks';
import { createDeploy, createDeployers } from '../../src/activities/deploy';
import { containerLabels, failedName, LABELS, previousName } from '../../src/activities/deployer';
import { createRollback } from '../../src/activities/rollback';
import type { BuildResult, DeployRequest } from '../../src/activities/types';
import { freePort } from '../../src/lab/daemon';
import { GantryErrorType } from '../../src/shared/errors';
import { buildRevision, httpGet, releaseRef, runActivity, useLab } from '../helpers/lab';

const ctx = useLab();
let good: BuildResult;
let broken: BuildResult;
let holder: net.Server | undefined;

beforeAll(async () => {
  good = await buildRevision(ctx.lab, ctx.service, 'good');
  broken = await buildRevision(ctx.lab, ctx.service, 'broken');
});
afterAll(async () => {
  holder?.close();
  for (const base of [ctx.lab.staging.container, ctx.lab.production.container]) {
    for (const n of [previousName(base), failedName(base)]) await ctx.lab.docker.getContainer(n).remove({ force: true }).catch(() => undefined);
  }
});

const deployers = createDeployers({ env: process.env });
const deploy = createDeploy({ deployers });
const rollback = createRollback({ deployers, verify: (req) => runChecks(req, { initialDelayMs: 100, maxDelayMs: 500 }) });

type Env = 'staging' | 'production';
const targetOf = (env: Env) => ctx.service.environments[env]!.deploy;
const containerOf = (env: Env) => (env === 'staging' ? ctx.lab.staging.container : ctx.lab.production.container);
const urlOf = (env: Env) => (env === 'staging' ? ctx.lab.staging.url : ctx.lab.production.url);
function request(env: Env, image: BuildResult, version: string, target = targetOf(env)): DeployRequest {
  return { release: releaseRef(version), environment: env, target, imageRef: image.imageRef, digest: image.digest };
}
const inspect = (name: string) => ctx.lab.docker.getContainer(name).inspect();

/** A port some other process holds on 127.0.0.1. */
async function heldPort(): Promise<number> {
  const port = await freePort();
  holder = net.createServer();
  await new Promise<void>((resolve) => holder!.listen(port, '127.0.0.1', resolve));
  return port;
}

describe.each(['staging', 'production'] as const)('swap on %s', (env) => {
  it('keeps the old container serving when the new one cannot start (its port is taken)', async () => {
    await runActivity(deploy, [request(env, good, '1.0.0')]);
    const before = await inspect(containerOf(env));
    const port = await heldPort();
    const clash = { ...targetOf(env), ports: [`127.0.0.1:${port}:80`] };
    const err = await runActivity(deploy, [request(env, broken, '1.1.0', clash)]).then(() => undefined, (e: unknown) => e);
    holder?.close();
    expect(err).toBeInstanceOf(ApplicationFailure);
    const failure = err as ApplicationFailure;
    expect(failure.type).toBe(GantryErrorType.DeployFailed);
    expect(failure.nonRetryable).toBe(true);
    expect(failure.message).toContain(`${containerOf(env)} did not start from ${broken.imageRef}`);
    expect(failure.message).toContain(`The previous container (${good.imageRef}) was started again and serves as ${containerOf(env)}.`);
    expect(failure.message).toMatch(/Check the ports/);

    const after = await inspect(containerOf(env));
    expect(after.Id).toBe(before.Id);
    expect(after.State.Running).toBe(true);
    expect(JSON.parse((await httpGet(`${urlOf(env)}/version`)).body)).toEqual({ version: '1.0.0' });
  });

  it('finishes a deploy that crashed between stopping the old container and starting the new one: the retry reports the true previous image, the rollback restores it', async () => {
    await runActivity(deploy, [request(env, good, '1.0.0')]);
    const goodId = (await inspect(containerOf(env))).Id;
    const req = request(env, broken, '1.1.0');
    // What the crashed attempt had done: kept the old container (renamed, stopped) and created the new one, not started.
    const main = containerOf(env);
    await ctx.lab.docker.getContainer(previousName(main)).remove({ force: true }).catch(() => undefined);
    await ctx.lab.docker.getContainer(main).rename({ name: previousName(main) });
    await ctx.lab.docker.createContainer({ name: main, Image: broken.imageRef, Labels: containerLabels(req, broken.imageRef, good.imageRef, { [LABELS.previousContainer]: goodId }) });
    await ctx.lab.docker.getContainer(previousName(main)).stop({ t: 1 });

    const { result } = await runActivity(deploy, [req], { attempt: 2 });
    expect(result.targets).toEqual([expect.objectContaining({ previousImage: good.imageRef, image: broken.imageRef, changed: true })]);
    expect((await httpGet(`${urlOf(env)}/health`)).status).toBe(404);

    const { result: rb } = await runActivity(rollback, [{
      release: req.release, environment: env, target: req.target, deployed: result.targets, checks: ctx.service.environments[env]!.checks, windowMs: 20_000,
    }]);
    expect(rb.healthy).toBe(true);
    const restored = await inspect(main);
    expect(restored.Id).toBe(goodId);
    expect(JSON.parse((await httpGet(`${urlOf(env)}/version`)).body)).toEqual({ version: '1.0.0' });
  });

  it('a retry after a crash right after the rename (no container under the name) still reports the previous image', async () => {
    await runActivity(deploy, [request(env, good, '1.0.0')]);
    const main = containerOf(env);
    await ctx.lab.docker.getContainer(previousName(main)).remove({ force: true }).catch(() => undefined);
    await ctx.lab.docker.getContainer(main).rename({ name: previousName(main) });
    // The old version still serves under its kept name while the worker is gone.
    expect((await httpGet(`${urlOf(env)}/health`)).status).toBe(200);
    const { result } = await runActivity(deploy, [request(env, broken, '1.1.0')], { attempt: 2 });
    expect(result.targets).toEqual([expect.objectContaining({ previousImage: good.imageRef, changed: true })]);
  });
});
