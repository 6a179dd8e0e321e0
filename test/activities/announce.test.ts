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
import type { AnnounceRequest, AnnounceResult } from '../../src/activities/types';
import { AUDIT_GENESIS, verifyChain } from '../../src/record/audit-chain';
import { GantryErrorType, retryable } from '../../src/shared/errors';
import { createTestRepo, type TestRepo } from '../helpers/git-repos';

interface Receiver {
  url: string;
  /** Every request received, accepted or not. */
  received: { status: number; body: { text: string; blocks: { type: string; text?: { text: string }; fields?: { text: string }[] }[] } }[];
  /** Status codes to answer with, in order; 200 once exhausted. */
  script: number[];
  close(): Promise<void>;
}

/** A Slack-style incoming-webhook receiver on loopback; the secret is in the path, as with Slack. */
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
      r.received.push({ status, body: JSON.parse(data) });
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

  it('is idempotent: announcing the same action twice sends one message and writes one audit line', async () => {
    await announce(request());
    const again = await announce(request(), deps(), 3);
    expect(again).toMatchObject({ webhookSent: true, auditLogged: true, attempt: 3 });
    expect(hook.received).toHaveLength(1);
    expect(auditLines()).toHaveLength(1);
  });

  it('sends once when two attempts of the same announcement run at the same time', async () => {
    const results = await Promise.all([announce(request()), announce(request(), deps(), 2)]);
    expect(results.every((r) => r.webhookSent && r.auditLogged)).toBe(true);
    expect(hook.received).toHaveLength(1);
    expect(auditLines()).toHaveLength(1);
  });

  it('announces a rollback as its own action, once', async () => {
    await announce(request());
    const rolledBack = request({ outcome: 'rolled_back', reason: 'version is "1.2.2", expected "1.2.3"' });
    await announce(rolledBack);
    await announce(rolledBack);
    expect(hook.received).toHaveLength(2);
    expect(hook.received[1]!.body.text).toContain('hello 1.2.3 was rolled back: production health failed (version is "1.2.2", expected "1.2.3")');
    expect(hook.received[1]!.body.text).toContain('Next: fix the problem and release a new version');
    expect(auditLines().map((l) => [l.action, l.actor])).toEqual([['released', 'alice,bob'], ['rolled_back', 'gantry']]);
    const metadata = JSON.parse(readFileSync(path.join(dir, 'artifacts', 'hello-1.2.3', 'release-metadata.json'), 'utf8'));
    expect(metadata).toMatchObject({ outcome: 'rolled_back', reason: 'version is "1.2.2", expected "1.2.3"' });
  });

  it('treats a new run of the same release as a new announcement', async () => {
    await announce(request(), deps(), 1, 'run-1');
    await announce(request(), deps(), 1, 'run-2');
    expect(hook.received).toHaveLength(2);
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
    const result = await announce(request({ announce: {} }), deps({ ledgerDir: path.join(dir, 'ledger') }));
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

  it('keeps webhook markers in ledgerDir when there is no audit log', async () => {
    const d = deps({ ledgerDir: path.join(dir, 'ledger') });
    const req = request({ announce: { webhook: { env: 'GANTRY_TEST_WEBHOOK' } } });
    await announce(req, d);
    await announce(req, d);
    expect(hook.received).toHaveLength(1);
    expect(readdirSync(path.join(dir, 'ledger')).filter((f) => f.endsWith('.webhook.sent'))).toHaveLength(1);
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

  it('a webhook answering 500 does not stop the audit log or the artifacts; the failure lists every channel; the retry sends once', async () => {
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
    const again = await announce(request(), deps(), 3);
    expect(again.channels!.find((c) => c.channel === 'webhook')!.detail).toBe('already sent to env GANTRY_TEST_WEBHOOK (an earlier attempt)');
    expect(hook.received.map((r) => r.status)).toEqual([500, 200]);
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
