/**
 * The stand-in itself: it must catch requests and responses that break GitHub's published contract, or the
 * "no violations" assertions of the behaviour tests would prove nothing.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createGithubClient } from '../../src/github/client';
import type { GithubStandIn } from './stand-in';
import { COMMIT, FAST, expectContractKept, startStandIn } from './helpers';

describe('the GitHub stand-in enforces the published contract', () => {
  let gh: GithubStandIn;
  let token: string;

  beforeEach(async () => {
    ({ gh, token } = await startStandIn());
  });
  afterEach(async () => {
    await gh.stop();
  });

  const raw = (method: string, path: string, body?: string, contentType = 'application/json') =>
    fetch(`${gh.baseUrl}${path}`, {
      method,
      headers: { authorization: `token ${token}`, ...(body !== undefined ? { 'content-type': contentType } : {}) },
      body,
    });
  const messages = () => gh.violations.map((v) => `${v.kind} ${v.operation}: ${v.message}`);

  it('is built from GitHub’s own description of api.github.com', () => {
    expect(gh.contract.version).toMatch(/^\d+\.\d+/);
    expect(gh.contract.operationById('repos/create-release').template).toBe('/repos/{owner}/{repo}/releases');
  });

  it('records a release created without its required tag_name', async () => {
    await raw('POST', '/repos/acme/hello/releases', JSON.stringify({ name: 'v1.2.3', draft: 'no' }));
    expect(messages()).toEqual([
      expect.stringMatching(/^request repos\/create-release: request body: .*must have required property 'tag_name'.*\/draft must be boolean/),
    ]);
    expect(gh.releases).toEqual([]);
  });

  it('records unknown query parameters, values outside an enum and path parameters of the wrong type', async () => {
    await raw('GET', `/repos/acme/hello/commits/${COMMIT}/check-runs?bogus=1`);
    await raw('GET', '/repos/acme/hello/actions/workflows/release.yml/runs?status=finished');
    await raw('PATCH', '/repos/acme/hello/releases/latest-one', JSON.stringify({ body: 'x' }));
    await raw('PATCH', '/repos/acme/hello/issues/1', JSON.stringify({ state: 'resolved' }));
    const m = messages();
    expect(m).toContainEqual(expect.stringMatching(/^request checks\/list-for-ref: query parameters: .*must NOT have additional properties.*bogus/));
    expect(m).toContainEqual(expect.stringMatching(/^request actions\/list-workflow-runs: query parameters: \/status must be equal to one of the allowed values/));
    expect(m).toContainEqual(expect.stringMatching(/^request repos\/update-release: path parameters: \/release_id must be integer/));
    expect(m).toContainEqual(expect.stringMatching(/^request issues\/update: request body: \/state must be equal to one of the allowed values/));
  });

  it('records a body sent in the wrong content type, and endpoints GitHub does not have', async () => {
    await raw('POST', '/repos/acme/hello/issues/1/comments', 'body=hi', 'application/x-www-form-urlencoded');
    await raw('GET', '/repos/acme/hello/releases-please');
    expect(messages()).toEqual([
      'request issues/create-comment: request body content-type is application/x-www-form-urlencoded, not application/json',
      'unknown-operation ?: GitHub has no such endpoint',
    ]);
  });

  it('records responses of its own that break the contract', async () => {
    const run = gh.addCheckRun(COMMIT, 'build', 'completed', 'success');
    run.status = 'done';
    delete run.head_sha;
    await raw('GET', `/repos/acme/hello/commits/${COMMIT}/check-runs`);
    // The check run lost head_sha, so the listing (which filters by it) is empty and valid; get it into the page.
    run.head_sha = COMMIT;
    delete run.node_id;
    await raw('GET', `/repos/acme/hello/commits/${COMMIT}/check-runs`);
    expect(messages()).toEqual([
      expect.stringMatching(/^response checks\/list-for-ref: response 200 body: .*check_runs\/0 must have required property 'node_id'.*check_runs\/0\/status must be equal to one of the allowed values/),
    ]);
  });

  it('records an off-contract call made through gantry’s own client', async () => {
    const client = await createGithubClient({ baseUrl: gh.baseUrl, token, tuning: FAST, log: { warn: () => undefined } });
    // @ts-expect-error -- deliberately off-contract: Octokit's types know tag_name is required too
    await client.request('POST /repos/{owner}/{repo}/releases', { owner: 'acme', repo: 'hello', name: 'no tag' }).catch(() => undefined);
    expect(messages()).toContainEqual(expect.stringMatching(/^request repos\/create-release: request body: .*must have required property 'tag_name'/));
  });

  it('accepts a call that keeps the contract', async () => {
    const client = await createGithubClient({ baseUrl: gh.baseUrl, token, tuning: FAST, log: { warn: () => undefined } });
    const { data } = await client.rest.repos.createRelease({ owner: 'acme', repo: 'hello', tag_name: 'v1.0.0', name: 'v1.0.0', body: 'notes' });
    expect(data.tag_name).toBe('v1.0.0');
    expectContractKept(gh);
  });
});
