/**
 * Secrets go only where the worker's config binds them. The attacks these refuse, as a new user found them:
 * point `repo.url` at your own server and `repo.token` at `{file: <deploy key>}`, or `github.baseUrl` at yours,
 * in a workflow input, and the worker sends the secret there. Now every step checks its request against the
 * worker's own config first, a git token is sent only to its repository's origin, and a GitHub token only to
 * its API base URL. Real git, real HTTP servers on loopback.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MockActivityEnvironment } from '@temporalio/testing';
import { ApplicationFailure } from '@temporalio/common';
import { createActivities } from '../../src/activities';
import { fileConfigSource } from '../../src/activities/resolve';
import { Git } from '../../src/activities/git';
import { createGithubClient } from '../../src/github/client';
import { verifyChain } from '../../src/record/audit-chain';
import type { PreflightRequest } from '../../src/activities/types';
import { SAMPLE_CONFIG_YAML } from '../helpers/fixtures';

interface Seen { url: string; authorization?: string }

function recorder(): Promise<{ url: string; seen: Seen[]; close: () => Promise<void> }> {
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    seen.push({ url: req.url ?? '', ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}) });
    res.writeHead(401, { 'www-authenticate': 'Basic realm="x"' }).end();
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: () => new Promise<void>((r) => server.close(() => r())),
  })));
}

let dir: string;
let configFile: string;
let secretFile: string;
const SECRET = 'deploy-key-material-7f3a9c';

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-bindings-'));
  secretFile = path.join(dir, 'deploy_key');
  writeFileSync(secretFile, SECRET, { mode: 0o600 });
  configFile = path.join(dir, 'gantry.yaml');
  writeFileSync(configFile, SAMPLE_CONFIG_YAML.replace('url: /srv/git/hello.git', 'url: https://git.acme.example/hello.git\n      token: { env: GIT_TOKEN }'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('a step checks its request against the worker\'s config', () => {
  it('refuses a preflight whose repository and token differ from the config, before any secret is read or sent', async () => {
    const attacker = await recorder();
    try {
      const acts = createActivities({ config: fileConfigSource(configFile), env: { ...process.env, GIT_TOKEN: 'tok' } });
      const req: PreflightRequest = {
        release: { service: 'hello', version: '1.2.3', workflowId: 'release-hello-1.2.3' },
        repo: { url: `${attacker.url}/steal.git`, branch: 'main', changelog: 'CHANGELOG.md', token: { file: secretFile } },
      };
      const err = await new MockActivityEnvironment().run((r: PreflightRequest) => acts.preflight(r), req).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(ApplicationFailure);
      expect((err as ApplicationFailure).type).toBe('GantryConfigInvalid');
      expect((err as Error).message).toContain("the request's repository (repo.url, repo.token) differs from the worker's config");
      expect(attacker.seen).toEqual([]); // nothing reached the attacker's server
    } finally {
      await attacker.close();
    }
  });

  it('refuses a deploy whose target (hosts, key reference) is not the configured one', async () => {
    const acts = createActivities({ config: fileConfigSource(configFile), env: process.env });
    const err = await new MockActivityEnvironment().run((r: Parameters<typeof acts.deploy>[0]) => acts.deploy(r), {
      release: { service: 'hello', version: '1.2.3', workflowId: 'release-hello-1.2.3' },
      environment: 'production' as const,
      target: { kind: 'ssh', container: 'hello', ports: [], restart: 'unless-stopped', hosts: [{ host: '127.0.0.9', port: 22, user: 'root', hostKey: 'SHA256:x' }],
        privateKey: { file: secretFile }, containerCli: 'docker', cliEnv: {} } as never,
      imageRef: 'r/hello@sha256:0', digest: 'sha256:0',
    }).then(() => undefined, (e: unknown) => e);
    expect((err as Error).message).toContain("the request's production deploy target differs from the worker's config");
  });

  it('refuses a request for a service the worker does not know, or whose workflow id does not match', async () => {
    const acts = createActivities({ config: fileConfigSource(configFile), env: process.env });
    const run = (release: PreflightRequest['release']) => new MockActivityEnvironment().run((r: Parameters<typeof acts.tag>[0]) => acts.tag(r), {
      release, repo: { url: 'x', branch: 'main', changelog: 'CHANGELOG.md' }, commit: 'a'.repeat(40),
    }).then(() => undefined, (e: unknown) => (e as Error).message);
    expect(await run({ service: 'other', version: '1.0.0', workflowId: 'release-other-1.0.0' })).toContain('defines no service "other"');
    expect(await run({ service: 'hello', version: '1.0.0', workflowId: 'release-hello-9.9.9' })).toContain('service, version and workflow id must agree');
  });
});

describe('a git token goes only to its repository\'s origin', () => {
  it('is sent to the configured origin and not to another one, with real git', async () => {
    const origin = await recorder();
    const other = await recorder();
    try {
      const git = new Git({ token: 's3cret-token', remote: `${origin.url}/hello.git`, timeoutMs: 20_000 });
      await git.lsRemote(`${origin.url}/hello.git`).catch(() => undefined);
      await git.lsRemote(`${other.url}/elsewhere.git`).catch(() => undefined);
      const basic = `Basic ${Buffer.from('x-access-token:s3cret-token').toString('base64')}`;
      expect(origin.seen.length).toBeGreaterThan(0);
      expect(origin.seen.every((r) => r.authorization === basic)).toBe(true);
      expect(other.seen.length).toBeGreaterThan(0); // git did ask the other server…
      expect(other.seen.some((r) => r.authorization !== undefined)).toBe(false); // …without the token
    } finally {
      await origin.close();
      await other.close();
    }
  });

  it('is not used at all for a remote that is not http(s)', () => {
    const git = new Git({ token: 's3cret-token', remote: 'git@github.com:acme/hello.git' });
    const env = (git as unknown as { env: NodeJS.ProcessEnv }).env;
    expect(Object.values(env).some((v) => typeof v === 'string' && v.includes('Basic '))).toBe(false);
    expect(execFileSync('git', ['--version'], { encoding: 'utf8' })).toMatch(/git version/);
  });
});

describe('a GitHub token goes only to the configured API base URL', () => {
  it('is sent with API calls and dropped from a request to any other URL', async () => {
    const api = await recorder();
    const other = await recorder();
    try {
      const gh = await createGithubClient({ baseUrl: api.url, token: 'ghp_bound', tuning: { requestTimeoutMs: 5000 } });
      await gh.request('GET /repos/{owner}/{repo}', { owner: 'acme', repo: 'hello' }).catch(() => undefined);
      await gh.request(`GET ${other.url}/download`).catch(() => undefined);
      expect(api.seen.length).toBeGreaterThan(0);
      expect(api.seen[0]!.authorization).toMatch(/ghp_bound/);
      expect(other.seen.length).toBeGreaterThan(0);
      expect(other.seen.every((r) => r.authorization === undefined)).toBe(true);
    } finally {
      await api.close();
      await other.close();
    }
  });
});

describe('the record of a release that was not announced', () => {
  it('writes its actions and its outcome as chained audit lines, once however often the step retries', async () => {
    const auditLog = path.join(dir, 'audit.jsonl');
    const file = path.join(dir, 'gantry-audit.yaml');
    writeFileSync(file, SAMPLE_CONFIG_YAML.replace('    steps:', `    announce: { auditLog: ${auditLog} }\n    steps:`));
    const acts = createActivities({ config: fileConfigSource(file), env: process.env });
    const req = {
      release: { service: 'hello', version: '1.2.3', workflowId: 'release-hello-1.2.3' },
      outcome: 'rejected' as const, announce: { auditLog }, repo: { url: '/srv/git/hello.git', branch: 'main', changelog: 'CHANGELOG.md' },
      commit: 'a'.repeat(40), tag: 'v1.2.3', digest: 'sha256:0', imageRef: '', approvers: [], hosts: [], durations: {}, reason: 'Rejected by carol',
      actions: [
        { kind: 'start-accepted', actor: 'dave', verified: true, at: '2026-12-01T10:00:00.000Z' },
        { kind: 'approve-refused', actor: 'mallory', verified: false, at: '2026-12-01T10:01:00.000Z', detail: 'mallory is not an approver for hello' },
        { kind: 'reject-accepted', actor: 'carol', verified: true, at: '2026-12-01T10:02:00.000Z', detail: 'changelog is wrong' },
      ],
    };
    const run = () => new MockActivityEnvironment().run((r: typeof req) => acts.recordEnd(r), req);
    await run();
    await run(); // a retry adds nothing
    const lines = readFileSync(auditLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { action: string; actor: string; prev: string });
    expect(lines.map((l) => [l.action, l.actor])).toEqual([
      ['start-accepted', 'dave'], ['approve-refused', 'mallory'], ['reject-accepted', 'carol'], ['rejected', expect.any(String)],
    ]);
    expect(verifyChain(readFileSync(auditLog))).toMatchObject({ ok: true });
  });
});
