/**
 * Reading an image digest from a registry that hands out bearer tokens (as ghcr.io and Docker Hub do even for
 * public images): a real docker-registry with token auth, the token service in this process.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createGithubActionsBuild } from '../../src/activities/github-build';
import { RegistryError, registryBaseUrl, registryDigest } from '../../src/github/registry';
import { GantryErrorType } from '../../src/shared/errors';
import { freePort } from '../../src/lab/daemon';
import type { GithubStandIn } from './stand-in';
import { startRegistry, type TestRegistry } from './registry-server';
import { COMMIT, FAST, buildRequest, expectContractKept, failureOf, githubConfig, inActivity, startStandIn } from './helpers';

describe('registry base URL', () => {
  it('uses plain HTTP for loopback registries, HTTPS elsewhere, and an explicit scheme as given', () => {
    expect(registryBaseUrl('127.0.0.1:5000')).toBe('http://127.0.0.1:5000');
    expect(registryBaseUrl('localhost:5000')).toBe('http://localhost:5000');
    expect(registryBaseUrl('[::1]:5000')).toBe('http://[::1]:5000');
    expect(registryBaseUrl('ghcr.io')).toBe('https://ghcr.io');
    expect(registryBaseUrl('registry.example.com:8443')).toBe('https://registry.example.com:8443');
    expect(registryBaseUrl('docker.io')).toBe('https://registry-1.docker.io');
    expect(registryBaseUrl('http://10.0.0.5:5000/')).toBe('http://10.0.0.5:5000');
  });
});

describe('digest from a registry with token auth', () => {
  let registry: TestRegistry;

  beforeAll(async () => {
    registry = await startRegistry({ tokenAuth: true });
  });
  afterAll(async () => {
    await registry?.stop();
  });
  beforeEach(() => {
    registry.refusePulls = false;
    registry.tokenRequests.length = 0;
  });

  it('answers the bearer challenge with an anonymous pull token and reads Docker-Content-Digest', async () => {
    const pushed = await registry.push('team/hello', 'v1.2.3');
    registry.tokenRequests.length = 0;
    expect(await registryDigest(registry.host, 'team/hello', 'v1.2.3')).toBe(pushed);
    expect(registry.tokenRequests).toEqual([{ scope: 'repository:team/hello:pull', refused: false }]);
  });

  it('reports a registry that wants credentials to read', async () => {
    await registry.push('team/private', 'v1.0.0');
    registry.refusePulls = true;
    const err = await registryDigest(registry.host, 'team/private', 'v1.0.0').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect(err).toMatchObject({ kind: 'unauthorized', status: 401 });
    expect((err as Error).message).toBe(`the registry refused to show ${registry.host}/team/private:v1.0.0 without credentials (401)`);
  });

  describe('through the build step', () => {
    let gh: GithubStandIn;
    let env: NodeJS.ProcessEnv;
    beforeEach(async () => {
      ({ gh, env } = await startStandIn());
      gh.addRun('release.yml', COMMIT, 'v1.0.0', { steps: [{ status: 'completed', conclusion: 'success' }] });
    });
    afterEach(async () => {
      expectContractKept(gh);
      await gh.stop();
    });
    const request = (host: string) => {
      const req = buildRequest(githubConfig(gh), { digestFrom: { registry: true } }, '1.0.0');
      req.image = { registry: host, name: 'team/private' };
      return req;
    };

    it('fails non-retryably, pointing at the artifact option, when the registry wants credentials', async () => {
      registry.refusePulls = true;
      const failure = await failureOf(inActivity(() => createGithubActionsBuild({ env, tuning: FAST })(request(registry.host))));
      expect(failure.type).toBe(GantryErrorType.ConfigInvalid);
      expect(failure.nonRetryable).toBe(true);
      expect(failure.message).toContain('gantry reads registry digests anonymously');
      expect(failure.message).toContain('build.digestFrom: { artifact: NAME }');
    });

    it('fails retryably when the registry does not answer', async () => {
      const closed = `127.0.0.1:${await freePort()}`;
      const failure = await failureOf(inActivity(() => createGithubActionsBuild({ env, tuning: FAST })(request(closed))));
      expect(failure.nonRetryable).toBe(false);
      expect(failure.type).toBe(GantryErrorType.Unavailable);
      expect(failure.message).toContain(`reading the digest of ${closed}/team/private:v1.0.0 failed: the registry at http://${closed} did not answer (ECONNREFUSED)`);
    });
  });
});
