/**
 * The client's behaviour under GitHub's limits and failures: retry-after honoured on 403 and 429, rate-limit
 * retries bounded, 5xx retried on reads then classified retryable, writes never sent again by the client, and
 * the ESM-only Octokit loading from compiled CommonJS on this Node.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { githubPreflightChecks } from '../../src/activities/github-preflight';
import { createGithubClient } from '../../src/github/client';
import { GantryErrorType } from '../../src/shared/errors';
import type { GithubStandIn } from './stand-in';
import { COMMIT, FAST, expectContractKept, expectNoToken, failureOf, githubConfig, inActivity, preflightRequest, startStandIn } from './helpers';

const run = promisify(execFile);

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

const SECONDARY = 'You have exceeded a secondary rate limit. Please wait a few minutes before you try again.';
const UNIT = FAST.retryAfterUnitMs!;

describe('GitHub client limits and retries', () => {
  let gh: GithubStandIn;
  let env: NodeJS.ProcessEnv;
  let token: string;
  let warnings: string[];

  beforeEach(async () => {
    warnings = [];
    ({ gh, env, token } = await startStandIn());
    gh.addCheckRun(COMMIT, 'build', 'completed', 'success');
  });
  afterEach(async () => {
    expectContractKept(gh);
    await gh.stop();
  });

  const listChecks = async () => {
    const client = await createGithubClient({ baseUrl: gh.baseUrl, token, tuning: FAST, log: { warn: (m) => warnings.push(m) } });
    return client.rest.checks.listForRef({ owner: gh.owner, repo: gh.repo, ref: COMMIT });
  };
  /** Milliseconds between the failed request and its retry. */
  const gap = (op: string) => {
    const [first, second] = gh.calls(op);
    return second!.at - first!.at;
  };

  it('waits out a 403 secondary rate limit for its retry-after, then succeeds', async () => {
    gh.fail('checks/list-for-ref', { status: 403, message: SECONDARY, headers: { 'retry-after': '4' } });
    const { data } = await listChecks();
    expect(data.total_count).toBe(1);
    expect(gh.calls('checks/list-for-ref').map((c) => c.status)).toEqual([403, 200]);
    expect(gap('checks/list-for-ref')).toBeGreaterThanOrEqual(4 * UNIT - 5);
    expect(warnings).toContain('secondary rate limit on GET /repos/{owner}/{repo}/commits/{ref}/check-runs; retrying in 4s (retry 1 of 2)');
  });

  it('waits out a 429 for its retry-after: a longer retry-after waits longer', async () => {
    gh.fail('checks/list-for-ref', { status: 429, message: SECONDARY, headers: { 'retry-after': '2' } });
    await listChecks();
    const short = gap('checks/list-for-ref');
    gh.requests.length = 0;
    gh.fail('checks/list-for-ref', { status: 429, message: SECONDARY, headers: { 'retry-after': '8' } });
    await listChecks();
    const long = gap('checks/list-for-ref');
    expect(short).toBeGreaterThanOrEqual(2 * UNIT - 5);
    expect(long).toBeGreaterThanOrEqual(8 * UNIT - 5);
    expect(long - short).toBeGreaterThanOrEqual(4 * UNIT);
  });

  it('waits for the reset time of an exhausted primary rate limit', async () => {
    const reset = Math.floor(Date.now() / 1000) + 3;
    gh.fail('checks/list-for-ref', {
      status: 403,
      message: 'API rate limit exceeded for user ID 1.',
      headers: { 'x-ratelimit-remaining': '0', 'x-ratelimit-limit': '5000', 'x-ratelimit-reset': String(reset) },
    });
    await listChecks();
    expect(gh.calls('checks/list-for-ref').map((c) => c.status)).toEqual([403, 200]);
    // The plugin waits until the reset (2–4 "seconds" from now, plus one) in units of UNIT ms.
    expect(gap('checks/list-for-ref')).toBeGreaterThanOrEqual(2 * UNIT);
  });

  it('gives up after the configured number of rate-limit retries, and the step fails retryably', async () => {
    gh.fail('checks/list-for-ref', { status: 429, message: SECONDARY, headers: { 'retry-after': '1' }, times: 10 });
    const failure = await failureOf(inActivity(() => githubPreflightChecks({ env, tuning: FAST })(preflightRequest(githubConfig(gh)), COMMIT)));
    expect(gh.calls('checks/list-for-ref')).toHaveLength(1 + FAST.rateLimitRetries!);
    expect(failure.nonRetryable).toBe(false);
    expect(failure.type).toBe(GantryErrorType.Unavailable);
    expect(failure.message).toMatch(/^GitHub rate-limited gantry while listing check runs for 3f786850e387 \(429: You have exceeded a secondary rate limit/);
    expect(failure.message).toContain('The step retries on its own');
    expectNoToken(token, failure.message, failure.details);
  });

  it('does not sit in a wait longer than the configured limit; the step fails retryably and says when the limit lifts', async () => {
    gh.fail('checks/list-for-ref', { status: 403, message: SECONDARY, headers: { 'retry-after': '3600' } });
    const started = Date.now();
    const failure = await failureOf(inActivity(() => githubPreflightChecks({ env, tuning: FAST })(preflightRequest(githubConfig(gh)), COMMIT)));
    expect(Date.now() - started).toBeLessThan(FAST.maxRateLimitWaitMs!);
    expect(gh.calls('checks/list-for-ref')).toHaveLength(1);
    expect(failure.nonRetryable).toBe(false);
    expect(failure.message).toContain('it lifts in about 3600s');
  });

  it('retries 5xx answers and succeeds when GitHub recovers', async () => {
    gh.fail('checks/list-for-ref', { status: 502, message: 'Server Error', times: 2 });
    const { data } = await listChecks();
    expect(data.check_runs).toHaveLength(1);
    expect(gh.calls('checks/list-for-ref').map((c) => c.status)).toEqual([502, 502, 200]);
  });

  it('never sends a write again on its own: a POST answered 502 (which may have landed) is the caller\'s to check', async () => {
    gh.addLabelledIssue('An issue', []);
    gh.fail('issues/create-comment', { status: 502, message: 'Bad Gateway', landed: true, times: 5 });
    const client = await createGithubClient({ baseUrl: gh.baseUrl, token, tuning: FAST, log: { warn: (m) => warnings.push(m) } });
    const err = await client.rest.issues.createComment({ owner: gh.owner, repo: gh.repo, issue_number: 1, body: 'once' }).then(() => undefined, (e: unknown) => e);
    expect((err as { status?: number }).status).toBe(502);
    expect(gh.calls('issues/create-comment')).toHaveLength(1);
    expect(gh.issueComments).toHaveLength(1);
    // Reads are still retried.
    gh.fail('issues/list-comments', { status: 502, times: 1 });
    const { data } = await client.rest.issues.listComments({ owner: gh.owner, repo: gh.repo, issue_number: 1 });
    expect(data).toHaveLength(1);
    expect(gh.calls('issues/list-comments').map((c) => c.status)).toEqual([502, 200]);
  });

  it('still waits out a rate limit on a write (GitHub refused it, nothing landed) and sends it then', async () => {
    gh.addLabelledIssue('An issue', []);
    gh.fail('issues/create-comment', { status: 429, message: SECONDARY, headers: { 'retry-after': '1' } });
    const client = await createGithubClient({ baseUrl: gh.baseUrl, token, tuning: FAST, log: { warn: (m) => warnings.push(m) } });
    await client.rest.issues.createComment({ owner: gh.owner, repo: gh.repo, issue_number: 1, body: 'once' });
    expect(gh.calls('issues/create-comment').map((c) => c.status)).toEqual([429, 201]);
    expect(gh.issueComments).toHaveLength(1);
  });

  it('after the configured 5xx retries, fails the step retryably', async () => {
    gh.fail('checks/list-for-ref', { status: 503, message: 'Service Unavailable', times: 10 });
    const failure = await failureOf(inActivity(() => githubPreflightChecks({ env, tuning: FAST })(preflightRequest(githubConfig(gh)), COMMIT)));
    expect(gh.calls('checks/list-for-ref')).toHaveLength(1 + FAST.retries!);
    expect(failure.nonRetryable).toBe(false);
    expect(failure.message).toMatch(/failed while listing check runs for 3f786850e387 \(503: Service Unavailable\), also after retries\. The step retries/);
  });

  it('classifies an unreachable GitHub as retryable, naming the URL', async () => {
    const closed = await closedPort();
    const github = githubConfig(gh, { baseUrl: `http://127.0.0.1:${closed}` });
    const failure = await failureOf(inActivity(() => githubPreflightChecks({ env, tuning: { ...FAST, retries: 0 } })(preflightRequest(github), COMMIT)));
    expect(failure.nonRetryable).toBe(false);
    expect(failure.message).toMatch(new RegExp(`^GitHub \\(http://127\\.0\\.0\\.1:${closed}\\) did not answer while listing check runs for 3f786850e387: .*ECONNREFUSED`));
    expect(failure.message).toContain(`check that the worker can reach http://127.0.0.1:${closed}`);
    expectNoToken(token, failure.message);
  });
});

describe('loading the ESM-only Octokit from CommonJS', () => {
  it('works from the compiled output on this Node (not only under vitest)', async () => {
    const { gh, token } = await startStandIn();
    const out = mkdtempSync(path.join(os.tmpdir(), 'gantry-cjs-'));
    try {
      gh.addCheckRun(COMMIT, 'build', 'completed', 'success');
      const root = path.resolve(__dirname, '../..');
      writeFileSync(
        path.join(out, 'tsconfig.json'),
        JSON.stringify({ extends: path.join(root, 'tsconfig.json'), compilerOptions: { rootDir: root, outDir: path.join(out, 'dist'), sourceMap: false, typeRoots: [path.join(root, 'node_modules/@types')] }, include: [], files: [path.join(root, 'src/github/client.ts')] }),
      );
      await run(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', path.join(out, 'tsconfig.json')]);
      symlinkSync(path.join(root, 'node_modules'), path.join(out, 'node_modules'));
      const script = `
        const { createGithubClient } = require('./dist/src/github/client.js');
        createGithubClient({ baseUrl: process.argv[1], token: process.env.T })
          .then((c) => c.rest.checks.listForRef({ owner: 'acme', repo: 'hello', ref: '${COMMIT}' }))
          .then((r) => console.log(JSON.stringify({ total: r.data.total_count })));`;
      // Asynchronously: the stand-in answering it runs in this process.
      const { stdout } = await run(process.execPath, ['-e', script, gh.baseUrl], { cwd: out, env: { ...process.env, T: token }, timeout: 60_000 });
      expect(JSON.parse(stdout.trim())).toEqual({ total: 1 });
      // It really was CommonJS loading the ESM packages through import().
      const compiled = readFileSync(path.join(out, 'dist/src/github/client.js'), 'utf8');
      expect(compiled).toContain('exports.createGithubClient = createGithubClient');
      expect(compiled).toContain("import('@octokit/rest')");
      expectContractKept(gh);
    } finally {
      rmSync(out, { recursive: true, force: true });
      await gh.stop();
    }
  });
});
