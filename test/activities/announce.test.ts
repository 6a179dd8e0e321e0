import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createAnnounce, formatDuration, webhookMessage, type AnnounceDeps, type Announcer, type AuditLine, type AuditRecord } from '../../src/activities/announce';
import { githubChannel } from '../../src/activities/announcers/github';
import type { AnnounceDelivery, AnnouncePlan, AnnounceRequest, AnnounceResult, AnnounceShared } from '../../src/activities/types';
import { AUDIT_GENESIS, verifyChain } from '../../src/record/audit-chain';
import { GantryErrorType, retryable } from '../../src/shared/errors';
import { createTestRepo, type TestRepo } from '../helpers/git-repos';
import { startWebhookReceiver, type WebhookReceiver } from '../../src/lab/webhook';

/** The lab's webhook receiver (it honours the Idempotency-Key), in this test's directory. */
function labReceiver(opts: { idempotency?: boolean } = {}): Promise<WebhookReceiver> {
  const hookDir = mkdtempSync(path.join(dir, 'hook-'));
  return startWebhookReceiver({ file: path.join(hookDir, 'requests.jsonl'), token: 's3cr3tpath', ...opts });
}

interface Receiver {
  url: string;
  /** Every request received, accepted or not. */
  received: { status: number; key: string | undefined; body: { text: string; blocks: { type: string; text?: { text: string }; fields?: { text: string }[] }[] } }[];
  /** Status codes to answer with, in order; 200 once exhausted. */
  script: number[];
  close(): Promise<void>;
}

/**
 * A Slack-style incoming-webhook receiver on loopback; the secret is in the path, as with Slack. Like Slack's, it
 * ignores the Idempotency-Key (it records it); the lab's receiver (src/lab/webhook.ts) honours it.
 */
async function receiver(): Promise<Receiver> {
  const r = { received: [], script: [] } as unknown as Receiver;
  const server = http.createServer((req, res) => {
    let data = '';
    req.on('data', (c: Buffer) => (data += c.toString('utf8')));
    req.on('end', () => {
      const status = r.script.shift() ?? 200;
      if (req.url !== '/services/T000/B000/s3cr3tpath' || req.headers['content-type'] !== 'application/json') {
        res.writeHead(404).end('no_service');
        return;
      }
      r.received.push({ status, key: req.headers['idempotency-key'] as string | undefined, body: JSON.parse(data) });
      res.writeHead(status, { 'content-type': 'text/plain' }).end(status === 200 ? 'ok' : status === 400 ? 'invalid_payload' : 'try later');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  r.url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/services/T000/B000/s3cr3tpath`;
  r.close = () => new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });
  return r;
}

const CHANGELOG = '# Changelog\n\n## [1.2.3] - 2026-01-10\n### Fixed\n- the login loop\n\n## [1.2.2]\n- older\n';

let dir: string;
let repo: TestRepo;
let hook: Receiver;
let commit: string;

beforeEach(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-announce-'));
  repo = createTestRepo({ 'CHANGELOG.md': CHANGELOG });
  commit = repo.head();
  repo.tag('v1.2.3');
  repo.commit({ 'CHANGELOG.md': `${CHANGELOG}\n<!-- edited after the tag: must not appear -->\n` });
  hook = await receiver();
});
afterEach(async () => {
  await hook.close();
  repo.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

function request(overrides: Partial<AnnounceRequest> = {}): AnnounceRequest {
  return {
    release: { service: 'hello', version: '1.2.3', workflowId: 'release-hello-1.2.3' },
    outcome: 'released',
    announce: {
      webhook: { env: 'GANTRY_TEST_WEBHOOK' },
      auditLog: path.join(dir, 'audit', 'releases.jsonl'),
      artifactsDir: path.join(dir, 'artifacts', '{service}-{version}'),
    },
    repo: { url: repo.remote, branch: 'main', changelog: 'CHANGELOG.md' },
    commit,
    tag: 'v1.2.3',
    digest: 'sha256:4f5e6d7c8b9a00112233445566778899aabbccddeeff00112233445566778899',
    imageRef: '127.0.0.1:5000/hello@sha256:4f5e6d7c8b9a00112233445566778899aabbccddeeff00112233445566778899',
    approvers: ['alice', 'bob'],
    hosts: ['deploy@10.0.0.5', 'deploy@10.0.0.6'],
    durations: { build: 62_000, deployStaging: 12_400, health: 900 },
    ...overrides,
  };
}

function deps(extra: Partial<AnnounceDeps> = {}): AnnounceDeps {
  return { env: { ...process.env, GANTRY_TEST_WEBHOOK: hook.url }, now: () => new Date('2026-02-01T10:00:00Z'), ...extra };
}

async function announce(req: AnnounceRequest, d: AnnounceDeps = deps(), attempt = 1, runId?: string): Promise<AnnounceResult> {
  const env = new MockActivityEnvironment({ attempt, ...(runId ? { workflowExecution: { workflowId: req.release.workflowId, runId } } : {}) });
  const { announce: fn } = createAnnounce(d);
  return env.run<[AnnounceRequest], AnnounceResult, typeof fn>(fn, req);
}

async function failure(req: AnnounceRequest, d: AnnounceDeps = deps()): Promise<ApplicationFailure> {
  const err = await announce(req, d).then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(ApplicationFailure);
  return err as ApplicationFailure;
}

function auditLines(): AuditRecord[] {
  const file = path.join(dir, 'audit', 'releases.jsonl');
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as AuditRecord);
}

describe('announce', () => {
  it('sends one webhook message, writes one audit line, the release notes and metadata', async () => {
    const result = await announce(request(), deps(), 2);
    const artifacts = path.join(dir, 'artifacts', 'hello-1.2.3');
    expect(result).toEqual({
      attempt: 2,
      webhookSent: true,
      auditLogged: true,
      notesPath: path.join(artifacts, 'release-notes.md'),
      metadataPath: path.join(artifacts, 'release-metadata.json'),
      manifestPath: path.join(artifacts, 'release-manifest.json'),
      channels: [
        expect.objectContaining({ channel: 'audit', ok: true }),
        expect.objectContaining({ channel: 'artifacts', ok: true }),
        expect.objectContaining({ channel: 'webhook', ok: true }),
      ],
    });

    expect(hook.received).toHaveLength(1);
    const msg = hook.received[0]!.body;
    expect(msg.text).toContain('hello 1.2.3 is released');
    expect(msg.text).toContain(commit.slice(0, 12));
    expect(msg.text).toContain('approved by alice, bob');
    const all = JSON.stringify(msg.blocks);
    for (const want of ['hello', '1.2.3 (v1.2.3)', commit.slice(0, 12), 'sha256:4f5e6d7c8b9a0011', 'alice, bob', 'deploy@10.0.0.5, deploy@10.0.0.6',
      'build 1m 02s · deployStaging 12s · health 900 ms · total 1m 15s', 'released']) {
      expect(all).toContain(want);
    }
    expect(msg.blocks[0]).toMatchObject({ type: 'header' });

    const lines = auditLines();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      time: '2026-02-01T10:00:00.000Z',
      actor: 'alice,bob',
      action: 'released',
      release: { service: 'hello', version: '1.2.3', tag: 'v1.2.3', commit, workflowId: 'release-hello-1.2.3' },
      digest: request().digest,
      hosts: ['deploy@10.0.0.5', 'deploy@10.0.0.6'],
    });

    const notes = readFileSync(result.notesPath!, 'utf8');
    expect(notes).toBe('# hello 1.2.3\n\n### Fixed\n- the login loop\n');
    const metadata = JSON.parse(readFileSync(result.metadataPath!, 'utf8'));
    expect(metadata).toMatchObject({ service: 'hello', version: '1.2.3', outcome: 'released', tag: 'v1.2.3', commit, digest: request().digest, approvers: ['alice', 'bob'] });
  });

  it('is idempotent: announcing the same action twice writes one audit line and sends the webhook with the same key, which a receiver that honours it keeps once', async () => {
    const lab = await labReceiver();
    try {
      await announce(request(), deps({ env: { ...process.env, GANTRY_TEST_WEBHOOK: lab.url } }), 1, 'run-1');
      const again = await announce(request(), deps({ env: { ...process.env, GANTRY_TEST_WEBHOOK: lab.url } }), 3, 'run-1');
      expect(again).toMatchObject({ webhookSent: true, auditLogged: true, attempt: 3 });
      expect(auditLines()).toHaveLength(1);
      expect(lab.count()).toBe(1);
      expect(lab.duplicates()).toBe(1);
      expect(lab.duplicateRequests()[0]!.idempotencyKey).toBe(lab.requests()[0]!.idempotencyKey);
      expect(lab.requests()[0]!.idempotencyKey).toBe('release-hello-1.2.3/run-1/released');
    } finally {
      await lab.close();
    }
  });

  it('writes one audit line and keeps one message when two attempts of the same announcement run at the same time', async () => {
    const lab = await labReceiver();
    try {
      const d = deps({ env: { ...process.env, GANTRY_TEST_WEBHOOK: lab.url } });
      const results = await Promise.all([announce(request(), d, 1, 'run-1'), announce(request(), d, 2, 'run-1')]);
      expect(results.every((r) => r.webhookSent && r.auditLogged)).toBe(true);
      expect(lab.count()).toBe(1);
      expect(auditLines()).toHaveLength(1);
    } finally {
      await lab.close();
    }
  });

  it('announces a rollback as its own action, with its own key', async () => {
    await announce(request());
    const rolledBack = request({ outcome: 'rolled_back', reason: 'version is "1.2.2", expected "1.2.3"' });
    await announce(rolledBack);
    await announce(rolledBack);
    // The receiver ignores keys: the repeat of the rollback arrives, with the rollback's key.
    expect(hook.received.map((r) => r.key)).toEqual(['release-hello-1.2.3/00000000-0000-0000-0000-000000000000/released', 'release-hello-1.2.3/00000000-0000-0000-0000-000000000000/rolled_back', 'release-hello-1.2.3/00000000-0000-0000-0000-000000000000/rolled_back']);
    expect(hook.received[1]!.body.text).toContain('hello 1.2.3 was rolled back: production health failed (version is "1.2.2", expected "1.2.3")');
    expect(hook.received[1]!.body.text).toContain('Next: fix the problem and release a new version');
    expect(auditLines().map((l) => [l.action, l.actor])).toEqual([['released', 'alice,bob'], ['rolled_back', 'gantry']]);
    const metadata = JSON.parse(readFileSync(path.join(dir, 'artifacts', 'hello-1.2.3', 'release-metadata.json'), 'utf8'));
    expect(metadata).toMatchObject({ outcome: 'rolled_back', reason: 'version is "1.2.2", expected "1.2.3"' });
  });

  it('treats a new run of the same release as a new announcement', async () => {
    await announce(request(), deps(), 1, 'run-1');
    await announce(request(), deps(), 1, 'run-2');
    expect(hook.received.map((r) => r.key)).toEqual(['release-hello-1.2.3/run-1/released', 'release-hello-1.2.3/run-2/released']);
    expect(auditLines().map((l) => l.release.runId)).toEqual(['run-1', 'run-2']);
  });

  it('retries a webhook that answers 503 without repeating the audit line, then sends exactly once', async () => {
    hook.script = [503];
    const f = await failure(request());
    expect(f.type).toBe(GantryErrorType.Unavailable);
    expect(f.nonRetryable).toBe(false);
    expect(f.message).toContain('chat webhook: The chat webhook (env GANTRY_TEST_WEBHOOK) answered 503 "try later". Gantry retries.');
    expect(f.message).toContain('audit log written');
    expect(f.message).not.toContain('s3cr3tpath');
    expect(auditLines()).toHaveLength(1);

    const ok = await announce(request(), deps(), 2);
    expect(ok.webhookSent).toBe(true);
    expect(hook.received.map((r) => r.status)).toEqual([503, 200]);
    expect(auditLines()).toHaveLength(1);
  });

  it('fails non-retryably, without the URL, when the webhook refuses the message', async () => {
    const f = await failure(request(), deps({ env: { ...process.env, GANTRY_TEST_WEBHOOK: hook.url.replace('s3cr3tpath', 'revoked-path') } }));
    expect(f.type).toBe(GantryErrorType.ConfigInvalid);
    expect(f.nonRetryable).toBe(true);
    expect(f.message).toContain('The chat webhook (env GANTRY_TEST_WEBHOOK) answered 404 "no_service": it refused the message.');
    expect(f.message).toMatch(/Check that the URL in env GANTRY_TEST_WEBHOOK is a current incoming-webhook URL/);
    expect(f.message).not.toContain('revoked-path');
    expect(f.message).not.toContain('127.0.0.1');
  });

  it('retries an unreachable webhook and names only its reference', async () => {
    const url = hook.url;
    await hook.close();
    const f = await failure(request(), deps({ env: { ...process.env, GANTRY_TEST_WEBHOOK: url } }));
    expect(f.nonRetryable).toBe(false);
    expect(f.message).toContain('The chat webhook (env GANTRY_TEST_WEBHOOK) could not be reached: ECONNREFUSED');
    expect(f.message).not.toContain('s3cr3tpath');
    hook = await receiver();
  });

  it('writes the audit record and artifacts even when the webhook secret is missing', async () => {
    const f = await failure(request(), deps({ env: { ...process.env } }));
    expect(f.type).toBe(GantryErrorType.SecretMissing);
    expect(f.nonRetryable).toBe(true);
    expect(f.message).toContain('{env: GANTRY_TEST_WEBHOOK} is not set');
    expect(f.message).toContain('audit log written, webhook not sent, artifacts written');
    expect(auditLines()).toHaveLength(1);
    expect(existsSync(path.join(dir, 'artifacts', 'hello-1.2.3', 'release-notes.md'))).toBe(true);
  });

  it('merges what extra announcers return and hands them the CHANGELOG section', async () => {
    const seen: (string | undefined)[] = [];
    const result = await announce(request(), deps({
      extraAnnouncers: [async (_req, notes) => {
        seen.push(notes);
        return { githubReleaseUrl: 'https://github.example/acme/hello/releases/tag/v1.2.3', attempt: 99 };
      }],
    }), 4);
    expect(seen).toEqual(['### Fixed\n- the login loop']);
    expect(result.githubReleaseUrl).toBe('https://github.example/acme/hello/releases/tag/v1.2.3');
    expect(result.attempt).toBe(4);
  });

  it('does only what is configured', async () => {
    const result = await announce(request({ announce: {} }), deps());
    expect(result).toEqual({
      attempt: 1,
      webhookSent: false,
      auditLogged: false,
      channels: [
        { channel: 'audit', ok: true, skipped: true, detail: 'announce.auditLog is not set' },
        { channel: 'artifacts', ok: true, skipped: true, detail: 'announce.artifactsDir is not set' },
        { channel: 'webhook', ok: true, skipped: true, detail: 'announce.webhook is not set' },
      ],
    });
    expect(hook.received).toHaveLength(0);
  });

  it('keeps no local state: besides the audit log and the artifacts it writes no file, here or under HOME', async () => {
    const home = mkdtempSync(path.join(os.tmpdir(), 'gantry-home-'));
    const saved = { HOME: process.env.HOME, GANTRY_STATE_DIR: process.env.GANTRY_STATE_DIR };
    process.env.HOME = home;
    process.env.GANTRY_STATE_DIR = path.join(home, 'state');
    try {
      await announce(request(), deps({ env: { ...process.env, GANTRY_TEST_WEBHOOK: hook.url } }));
      await announce(request({ announce: { webhook: { env: 'GANTRY_TEST_WEBHOOK' } } }), deps({ env: { ...process.env, GANTRY_TEST_WEBHOOK: hook.url } }));
      expect(readdirSync(home)).toEqual([]);
      expect(readdirSync(path.join(dir, 'audit'))).toEqual(['releases.jsonl']);
      expect(readdirSync(path.join(dir, 'artifacts', 'hello-1.2.3')).sort()).toEqual(['release-manifest.json', 'release-metadata.json', 'release-notes.md']);
      expect(readdirSync(dir).sort()).toEqual(['artifacts', 'audit']);
    } finally {
      process.env.HOME = saved.HOME;
      if (saved.GANTRY_STATE_DIR === undefined) delete process.env.GANTRY_STATE_DIR;
      else process.env.GANTRY_STATE_DIR = saved.GANTRY_STATE_DIR;
      rmSync(home, { recursive: true, force: true });
    }
  });

  it('names a tag that is missing from the repository when writing the notes', async () => {
    const f = await failure(request({ tag: 'v9.9.9' }));
    expect(f.message).toMatch(/release artifacts: Could not read CHANGELOG\.md at tag v9\.9\.9 from .*remote\.git/);
    expect(f.message).toMatch(/the remote does not have it \(fatal: couldn't find remote ref refs\/tags\/v9\.9\.9\)\. If it was deleted after gantry created it, push it again/);
    expect(f.nonRetryable).toBe(false);
    expect(hook.received).toHaveLength(1);
  });
});

describe('webhook message', () => {
  it('escapes Slack mrkdwn control characters and formats durations', () => {
    const msg = webhookMessage(request({ approvers: ['<!channel>'], durations: {} }));
    expect(JSON.stringify(msg.blocks)).toContain('&lt;!channel&gt;');
    expect(formatDuration(3_725_000)).toBe('1h 02m');
    expect(formatDuration(59_400)).toBe('59s');
  });
});

/** A channel plugged in the way a new one (Teams, email…) would be: its own module, one entry in the list. */
function postingChannel(name: string, url: string): Announcer {
  return {
    name,
    enabled: () => true,
    async announce(req) {
      const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text: `${name}: ${req.release.version}`, blocks: [] }) });
      if (!res.ok) throw retryable(`${name} answered ${res.status}`);
      return { channel: name, ok: true, detail: `posted (${res.status})` };
    },
  };
}

const sha = (b: string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const auditFile = () => path.join(dir, 'audit', 'releases.jsonl');
const rawLines = () => readFileSync(auditFile(), 'utf8').split('\n').slice(0, -1);

describe('announcement channels', () => {
  it('reports every channel by name and in order, one added without any change to the workflow included', async () => {
    const teams = await receiver();
    try {
      const result = await announce(request(), deps({ extraAnnouncers: [githubChannel({ env: {} }), postingChannel('teams', teams.url)] }));
      expect(result.channels!.map((c) => [c.channel, c.ok, c.skipped ?? false])).toEqual([
        ['audit', true, false], ['artifacts', true, false], ['github', true, true], ['teams', true, false], ['webhook', true, false],
      ]);
      const by = Object.fromEntries(result.channels!.map((c) => [c.channel, c]));
      expect(by.audit!.detail).toBe(`1 chained line(s) appended to ${auditFile()} (line 1)`);
      expect(by.audit!.path).toBe(auditFile());
      expect(by.artifacts!.detail).toContain('an UNSIGNED manifest');
      expect(by.artifacts!.files).toEqual({
        notes: result.notesPath, metadata: result.metadataPath, manifest: result.manifestPath,
      });
      expect(by.github!.detail).toBe('the service has no github section');
      expect(by.teams!.detail).toBe('posted (200)');
      expect(by.webhook!.detail).toBe('sent to env GANTRY_TEST_WEBHOOK');
      expect(teams.received.map((r) => r.body.text)).toEqual(['teams: 1.2.3']);
      expect(hook.received).toHaveLength(1);
    } finally {
      await teams.close();
    }
  });

  it('a webhook answering 500 does not stop the audit log or the artifacts; the failure lists every channel; the retry sends with the same key', async () => {
    hook.script = [500];
    const f = await failure(request());
    expect(f.nonRetryable).toBe(false);
    expect(f.message).toContain('failed on 1 channel(s) (audit log written, webhook not sent, artifacts written)');
    expect(f.message).toContain('- chat webhook: The chat webhook (env GANTRY_TEST_WEBHOOK) answered 500 "try later". Gantry retries.');
    expect(f.message).toMatch(/Every channel:\n {2}audit: ok \(1 chained line\(s\) appended to .*\)\n {2}artifacts: ok \(release notes, metadata and an UNSIGNED manifest written to .*\)\n {2}webhook: FAILED \(above\)\n/);
    const failed = (f.details?.[0] as { result: AnnounceResult }).result;
    expect(failed).toMatchObject({ auditLogged: true, webhookSent: false, notesPath: expect.any(String) });
    expect(failed.channels!.find((c) => c.channel === 'webhook')).toMatchObject({ ok: false, detail: expect.stringContaining('answered 500') });
    expect(auditLines()).toHaveLength(1);
    expect(existsSync(failed.notesPath!)).toBe(true);
    expect(existsSync(failed.manifestPath!)).toBe(true);

    const ok = await announce(request(), deps(), 2);
    expect(ok.channels!.map((c) => [c.channel, c.ok])).toEqual([['audit', true], ['artifacts', true], ['webhook', true]]);
    expect(ok.channels!.find((c) => c.channel === 'audit')!.detail).toBe(`already written (line 1 of ${auditFile()})`);
    expect(ok.channels!.find((c) => c.channel === 'webhook')!.detail)
      .toBe('sent to env GANTRY_TEST_WEBHOOK (attempt 2, Idempotency-Key release-hello-1.2.3/00000000-0000-0000-0000-000000000000/released: a receiver that honours it keeps one message)');
    expect(hook.received.map((r) => [r.status, r.key])).toEqual([[500, 'release-hello-1.2.3/00000000-0000-0000-0000-000000000000/released'], [200, 'release-hello-1.2.3/00000000-0000-0000-0000-000000000000/released']]);
    expect(auditLines()).toHaveLength(1);
  });

  it('a failing extra channel does not stop the webhook after it, and is named in the failure', async () => {
    const down = await receiver();
    down.script = [503, 503];
    try {
      const f = await failure(request(), deps({ extraAnnouncers: [postingChannel('teams', down.url)] }));
      expect(f.message).toContain('- teams: teams answered 503');
      expect(f.message).toContain('  webhook: ok (sent to env GANTRY_TEST_WEBHOOK)');
      expect(hook.received).toHaveLength(1);
    } finally {
      await down.close();
    }
  });

  it('posts the Slack-compatible message and the generic JSON event in one body', async () => {
    await announce(request(), deps(), 1, 'run-7');
    const body = hook.received[0]!.body as unknown as Record<string, unknown>;
    expect(body).toMatchObject({
      schema: 'gantry.announce/v1',
      event: 'release.released',
      outcome: 'released',
      release: { service: 'hello', version: '1.2.3', tag: 'v1.2.3', commit, workflowId: 'release-hello-1.2.3', runId: 'run-7' },
      digest: request().digest,
      imageRef: request().imageRef,
      hosts: ['deploy@10.0.0.5', 'deploy@10.0.0.6'],
      approvers: ['alice', 'bob'],
      durationsMs: { build: 62_000, deployStaging: 12_400, health: 900 },
      totalMs: 75_300,
      at: '2026-02-01T10:00:00.000Z',
    });
    expect(body.text).toBe(webhookMessage(request()).text);
    expect(body.blocks).toEqual(webhookMessage(request()).blocks);
    // The key the delivery carries, in the header and in the body, for receivers that dedupe by either.
    expect(body.idempotencyKey).toBe('release-hello-1.2.3/run-7/released');
    expect(hook.received[0]!.key).toBe('release-hello-1.2.3/run-7/released');
  });

  it('writes one chained line per release action, then the outcome line; retries and the rollback add no copies', async () => {
    const actions = [
      { kind: 'started', actor: 'operator', verified: true, at: '2026-02-01T09:00:00.000Z' },
      { kind: 'approved', actor: 'alice', verified: true, at: '2026-02-01T09:30:00.000Z', detail: 'staging looks good' },
      { kind: 'approved', actor: 'bob', verified: false, at: '2026-02-01T09:31:00.000Z' },
    ];
    await announce(request({ actions }), deps(), 1, 'run-1');
    await announce(request({ actions }), deps(), 2, 'run-1');
    const lines = auditLines() as unknown as AuditLine[];
    expect(lines.map((l) => [l.seq, l.action, l.actor])).toEqual([[1, 'started', 'operator'], [2, 'approved', 'alice'], [3, 'approved', 'bob'], [4, 'released', 'alice,bob']]);
    expect(lines[1]).toMatchObject({ time: '2026-02-01T09:30:00.000Z', verified: true, detail: 'staging looks good', release: { runId: 'run-1', version: '1.2.3' }, digest: request().digest });
    const raw = rawLines();
    expect(lines[0]!.prev).toBe(AUDIT_GENESIS);
    expect(AUDIT_GENESIS).toBe(sha(''));
    for (let i = 1; i < raw.length; i++) expect(lines[i]!.prev).toBe(sha(raw[i - 1]!));
    // today's fields stay on the outcome line
    expect(lines[3]).toMatchObject({ id: 'release-hello-1.2.3/run-1/released', hosts: request().hosts, approvers: ['alice', 'bob'], imageRef: request().imageRef });

    await announce(request({ actions, outcome: 'rolled_back', reason: 'health failed' }), deps(), 1, 'run-1');
    expect((auditLines() as unknown as AuditLine[]).map((l) => [l.seq, l.action])).toEqual([[1, 'started'], [2, 'approved'], [3, 'approved'], [4, 'released'], [5, 'rolled_back']]);
    expect(verifyChain(readFileSync(auditFile()))).toMatchObject({ ok: true, lines: 5, unchained: 0 });
  });

  it('serialises appends of different releases to one audit log, so the chain stays whole', async () => {
    const releases = ['1.2.3', '1.2.3', '1.2.3', '1.2.3'].map((v, i) => request({ release: { service: 'hello', version: v, workflowId: `release-hello-${i}` }, announce: { auditLog: auditFile() } }));
    await Promise.all(releases.map((r) => announce(r, deps())));
    expect(auditLines()).toHaveLength(4);
    expect(verifyChain(readFileSync(auditFile()))).toMatchObject({ ok: true, lines: 4 });
  });

  it('chains on from an audit log written before the chain', async () => {
    mkdirSync(path.dirname(auditFile()), { recursive: true });
    const legacy = JSON.stringify({ id: 'release-hello-1.2.2/r/released', time: '2026-01-01T00:00:00.000Z', actor: 'alice', action: 'released' });
    appendFileSync(auditFile(), `${legacy}\n`);
    await announce(request());
    const [, line] = auditLines() as unknown as AuditLine[];
    expect(line).toMatchObject({ seq: 2, prev: sha(legacy), action: 'released' });
    expect(verifyChain(readFileSync(auditFile()))).toMatchObject({ ok: true, lines: 2, unchained: 1 });
  });

  it('reports a signing key that is not there as the artifacts channel failing, and still does the others', async () => {
    const f = await failure(request({ announce: { ...request().announce, signingKey: { file: path.join(dir, 'no-such-key') } } }));
    expect(f.type).toBe(GantryErrorType.SecretMissing);
    expect(f.nonRetryable).toBe(true);
    expect(f.message).toContain('- release artifacts: The secret reference {file: ');
    const result = (f.details?.[0] as { result: AnnounceResult }).result;
    expect(result.channels!.map((c) => [c.channel, c.ok])).toEqual([['audit', true], ['artifacts', false], ['webhook', true]]);
    expect(hook.received).toHaveLength(1);
  });
});

/** One channel's delivery as the worker runs it: `announceChannel` in an activity of the given attempt and run. */
async function deliver(req: AnnounceRequest, channel: string, opts: { shared?: AnnounceShared; deps?: AnnounceDeps; attempt?: number; runId?: string; heartbeats?: unknown[] } = {}): Promise<AnnounceDelivery> {
  const env = new MockActivityEnvironment({ attempt: opts.attempt ?? 1, workflowExecution: { workflowId: req.release.workflowId, runId: opts.runId ?? 'run-1' } });
  if (opts.heartbeats) env.on('heartbeat', (d: unknown) => opts.heartbeats!.push(d));
  const { announceChannel } = createAnnounce(opts.deps ?? deps());
  return env.run(announceChannel, { ...req, ...opts.shared, channel });
}

async function deliveryFailure(p: Promise<unknown>): Promise<ApplicationFailure> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(ApplicationFailure);
  return err as ApplicationFailure;
}

describe('deliveries, one activity per channel', () => {
  it('plans every channel of the worker in order, with its stage and whether it has anything to do', async () => {
    const env = new MockActivityEnvironment({ attempt: 1 });
    const { announcePlan } = createAnnounce(deps({ extraAnnouncers: [githubChannel({ env: {} })] }));
    const plan = await env.run<[AnnounceRequest], AnnouncePlan, typeof announcePlan>(announcePlan, request({ announce: { auditLog: auditFile(), webhook: { env: 'GANTRY_TEST_WEBHOOK' } } }));
    expect(plan).toEqual({
      attempt: 1,
      channels: [
        { name: 'audit', title: 'audit log', stage: 1, enabled: true },
        { name: 'artifacts', title: 'release artifacts', stage: 2, enabled: false, skipReason: 'announce.artifactsDir is not set' },
        { name: 'github', title: 'GitHub', stage: 3, enabled: false, skipReason: 'the service has no github section' },
        { name: 'webhook', title: 'chat webhook', stage: 3, enabled: true },
      ],
    });
  });

  it('passes what a channel leaves on to the next through results and requests: the audit line into the manifest, the CHANGELOG section to GitHub', async () => {
    const seen: (string | undefined)[] = [];
    const d = deps({ extraAnnouncers: [async (_req, notes) => { seen.push(notes); return {}; }] });
    const audit = await deliver(request(), 'audit', { deps: d });
    expect(audit).toMatchObject({ attempt: 1, channel: 'audit', ok: true, auditLine: { line: 1, sha256: expect.stringMatching(/^sha256:[0-9a-f]{64}$/) } });
    const artifacts = await deliver(request(), 'artifacts', { deps: d, shared: { auditLine: audit.auditLine! } });
    expect(artifacts.section).toBe('### Fixed\n- the login loop');
    expect(artifacts.auditLine).toBeUndefined();
    const manifest = JSON.parse(readFileSync(artifacts.files!.manifest!, 'utf8'));
    expect(manifest.auditLine).toEqual(audit.auditLine);
    const extra = await deliver(request(), 'announcer 1', { deps: d, shared: { section: artifacts.section!, auditLine: audit.auditLine! } });
    expect(extra).toMatchObject({ channel: 'announcer 1', ok: true });
    expect(seen).toEqual(['### Fixed\n- the login loop']);
    const webhook = await deliver(request(), 'webhook', { deps: d });
    expect(webhook).toEqual({ attempt: 1, channel: 'webhook', ok: true, detail: 'sent to env GANTRY_TEST_WEBHOOK' });
    expect(hook.received).toHaveLength(1);
  });

  it('a retry of the audit delivery on another worker (its own work directory, no shared state but the log) writes no second line', async () => {
    const first = await deliver(request({ actions: [{ kind: 'approved', actor: 'alice', verified: true, at: '2026-02-01T09:30:00.000Z' }] }), 'audit');
    const other = deps({ workDir: mkdtempSync(path.join(dir, 'other-worker-')) });
    const retry = await deliver(request({ actions: [{ kind: 'approved', actor: 'alice', verified: true, at: '2026-02-01T09:30:00.000Z' }] }), 'audit', { deps: other, attempt: 2 });
    expect(retry.auditLine).toEqual(first.auditLine);
    expect(retry.detail).toBe(`already written (line 2 of ${auditFile()})`);
    expect(auditLines().map((l) => l.action)).toEqual(['approved', 'released']);
    expect(verifyChain(readFileSync(auditFile()))).toMatchObject({ ok: true, lines: 2 });
  });

  it('a receiver that accepts the message and answers after the timeout sees one message: the retry carries the same key', async () => {
    const lab = await labReceiver();
    try {
      lab.script({ answerAfterMs: 2_000 });
      const d = deps({ env: { ...process.env, GANTRY_TEST_WEBHOOK: lab.url }, webhookTimeoutMs: 300 });
      const f = await deliveryFailure(deliver(request(), 'webhook', { deps: d }));
      expect(f.nonRetryable).toBe(false);
      expect(f.message).toBe('The chat webhook (env GANTRY_TEST_WEBHOOK) could not be reached: no answer within 300 ms. ' +
        'It may have accepted the message all the same: Gantry retries with the same Idempotency-Key, so a receiver that honours it keeps one.');
      expect(lab.count()).toBe(1);
      const retry = await deliver(request(), 'webhook', { deps: d, attempt: 2 });
      expect(retry).toMatchObject({ ok: true, attempt: 2, detail: expect.stringContaining('Idempotency-Key release-hello-1.2.3/run-1/released') });
      expect(lab.count()).toBe(1);
      expect(lab.duplicates()).toBe(1);
      expect(lab.requests()[0]).toMatchObject({ idempotencyKey: 'release-hello-1.2.3/run-1/released', body: { idempotencyKey: 'release-hello-1.2.3/run-1/released', event: 'release.released' } });
      expect((await (await fetch(`http://127.0.0.1:${lab.port}/_count`)).json())).toEqual({ count: 1, duplicates: 1 });
    } finally {
      await lab.close();
    }
  });

  it('a receiver that ignores the key gets the message again on a retry (at-least-once), with the key to dedupe by', async () => {
    const lab = await labReceiver({ idempotency: false });
    try {
      lab.script({ answerAfterMs: 2_000 });
      const d = deps({ env: { ...process.env, GANTRY_TEST_WEBHOOK: lab.url }, webhookTimeoutMs: 300 });
      await deliveryFailure(deliver(request(), 'webhook', { deps: d }));
      await deliver(request(), 'webhook', { deps: d, attempt: 2 });
      expect(lab.count()).toBe(2);
      expect(lab.duplicates()).toBe(0);
      expect(new Set(lab.requests().map((r) => r.idempotencyKey))).toEqual(new Set(['release-hello-1.2.3/run-1/released']));
    } finally {
      await lab.close();
    }
  });

  it('retries a 409 (a delivery with the same key is still being processed)', async () => {
    hook.script = [409];
    const f = await deliveryFailure(deliver(request(), 'webhook'));
    expect(f.nonRetryable).toBe(false);
    expect(f.message).toContain('answered 409 "try later": an earlier delivery with the same Idempotency-Key is still being processed. Gantry retries.');
    await deliver(request(), 'webhook', { attempt: 2 });
    expect(hook.received.map((r) => [r.status, r.key])).toEqual([[409, 'release-hello-1.2.3/run-1/released'], [200, 'release-hello-1.2.3/run-1/released']]);
  });

  it('heartbeats while a delivery waits on a slow receiver, so a worker that dies there is noticed', async () => {
    const lab = await labReceiver();
    try {
      lab.script({ answerAfterMs: 4_500 });
      const heartbeats: unknown[] = [];
      await deliver(request(), 'webhook', { deps: deps({ env: { ...process.env, GANTRY_TEST_WEBHOOK: lab.url } }), heartbeats });
      // One when it starts, then every 2 s while it waits.
      expect(heartbeats.length).toBeGreaterThanOrEqual(3);
      expect(heartbeats[0]).toEqual({ channel: 'webhook', attempt: 1 });
    } finally {
      await lab.close();
    }
  });

  it('reports a disabled channel as skipped, and a channel this worker does not have as retryable (another worker may have it)', async () => {
    expect(await deliver(request({ announce: {} }), 'webhook')).toEqual({ attempt: 1, channel: 'webhook', ok: true, skipped: true, detail: 'announce.webhook is not set' });
    const f = await deliveryFailure(deliver(request(), 'teams'));
    expect(f.nonRetryable).toBe(false);
    expect(f.message).toMatch(/^This worker has no announcement channel "teams" \(it has audit, artifacts, webhook\)/);
    expect(hook.received).toHaveLength(0);
  });
});
