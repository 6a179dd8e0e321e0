/**
 * The notify activity against the lab's webhook receiver (src/lab/webhook.ts, the one `gantry dev` uses): the
 * webhook comes from the worker's config, the receiver gets the Slack-format message, the notice as data and the
 * idempotency key; a receiver that answers 500 or cannot be reached is retried, one that answers 404 is not; and
 * the URL, which is the secret, never shows in a result or an error.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createNotify, NOTICE_SCHEMA, type NotifyDeps, type NotifyResult } from '../../src/activities/notify';
import type { ConfigSource } from '../../src/activities/resolve';
import { startWebhookReceiver, type WebhookReceiver } from '../../src/lab/webhook';
import { GantryErrorType } from '../../src/shared/errors';
import { noticeMessage, type GateSummary, type NoticeRequest } from '../../src/shared/notices';
import { loadedFrom, SAMPLE_CONFIG_YAML } from '../helpers/fixtures';

const TOKEN = 'T0SECRET/B0HOOK/x9f3k2s3cr3tpath';
const RUN = '0195c2c4-7cb7-7deb-9e74-4dfd914f7bff';

/** The sample config with a `notices:` section for hello (and the Web UI address when given). */
function configWith(notices: string | undefined): ConfigSource {
  const yaml = notices === undefined ? SAMPLE_CONFIG_YAML : SAMPLE_CONFIG_YAML.replace('    approvals:\n', `    notices: ${notices}\n    approvals:\n`);
  const loaded = loadedFrom(yaml);
  return { path: 'sample.yaml', load: () => loaded };
}
const NOTICES = '{ webhook: { env: GANTRY_TEST_NOTICES }, webUi: "http://127.0.0.1:8233" }';

function summary(overrides: Partial<GateSummary> = {}): GateSummary {
  return {
    service: 'hello',
    version: '1.4.0',
    environment: 'production',
    tag: 'v1.4.0',
    commit: '4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c',
    digest: 'sha256:4f5e6d7c8b9a00112233445566778899aabbccddeeff00112233445566778899',
    smoke: 'version: 200 with version = 1.4.0; health: 200',
    requester: 'operator',
    needs: 'needs 1 more from sre (carol or dave)',
    approveCommand: 'gantry approve hello 1.4.0 --as <name>',
    deadline: '2026-02-04T10:00:00.000Z',
    ...overrides,
  };
}
function request(overrides: Partial<NoticeRequest> = {}, s: Partial<GateSummary> = {}): NoticeRequest {
  return { kind: 'gate-opened', workflowId: 'release-hello-1.4.0', runId: RUN, summary: summary(s), ...overrides };
}

let dir: string;
let lab: WebhookReceiver;
/** What the activity handed to fetch: the URL and the headers, as the receiver would see them. */
let sent: { url: string; headers: Record<string, string> }[];

beforeEach(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-notify-'));
  lab = await startWebhookReceiver({ file: path.join(dir, 'requests.jsonl'), token: TOKEN });
  sent = [];
});
afterEach(async () => {
  await lab.close();
  rmSync(dir, { recursive: true, force: true });
});

const recordingFetch: typeof fetch = async (input, init) => {
  sent.push({ url: typeof input === 'string' ? input : input instanceof URL ? input.href : input.url, headers: Object.fromEntries(new Headers(init?.headers).entries()) });
  return fetch(input, init);
};

function deps(extra: Partial<NotifyDeps> = {}, url = lab.url): NotifyDeps {
  return { config: configWith(NOTICES), env: { GANTRY_TEST_NOTICES: url }, fetch: recordingFetch, ...extra };
}

async function notify(req: NoticeRequest, d: NotifyDeps = deps(), attempt = 1): Promise<NotifyResult> {
  const env = new MockActivityEnvironment({ attempt, namespace: 'default', workflowExecution: { workflowId: req.workflowId, runId: req.runId } });
  const { notify: fn } = createNotify(d);
  return env.run<[NoticeRequest], NotifyResult, typeof fn>(fn, req);
}

async function failure(req: NoticeRequest, d: NotifyDeps): Promise<ApplicationFailure> {
  const err = await notify(req, d).then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(ApplicationFailure);
  return err as ApplicationFailure;
}

/** Neither the whole URL nor its secret path may appear anywhere in what a failure or result carries. */
function expectNoUrl(value: unknown, url: string): void {
  const all = value instanceof Error
    ? [value.message, value.stack, String(value.cause), JSON.stringify((value as ApplicationFailure).details ?? null)].join('\n')
    : JSON.stringify(value);
  expect(all).not.toContain(url);
  expect(all).not.toContain('x9f3k2s3cr3tpath');
  expect(all).not.toContain('T0SECRET');
}

/** A receiver in front of the lab's that answers with the scripted statuses first, then passes requests on. */
async function flakyFront(script: number[]): Promise<{ url: string; hits: number; close(): Promise<void> }> {
  const front = { url: '', hits: 0, close: async () => undefined as void };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      front.hits++;
      const status = script.shift();
      if (status !== undefined) {
        res.writeHead(status, { 'content-type': 'text/plain' }).end(`trouble at ${front.url}`);
        return;
      }
      fetch(`${lab.url.replace(/\/hooks\/.*$/, '')}${req.url ?? ''}`, { method: 'POST', headers: { 'content-type': req.headers['content-type'] ?? '' }, body: Buffer.concat(chunks) })
        .then(async (r) => res.writeHead(r.status).end(await r.text()))
        .catch(() => res.writeHead(502).end());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  front.url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/hooks/${TOKEN}`;
  front.close = () => new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });
  return front;
}

describe('notify', () => {
  it('posts the Slack-format notice to the webhook in the worker\'s config, with the idempotency key', async () => {
    const result = await notify(request(), deps(), 2);
    expect(result).toEqual({ attempt: 2, sent: true, detail: 'gate-opened notice sent to env GANTRY_TEST_NOTICES (200)' });
    expectNoUrl(result, lab.url);

    const [got, ...more] = lab.requests();
    expect(more).toEqual([]);
    expect(got).toMatchObject({ method: 'POST', contentType: 'application/json' });
    const body = got!.body as Record<string, unknown> & { text: string; blocks: Array<{ type: string; text?: { text: string }; elements?: Array<{ url?: string }> }> };
    const webUi = `http://127.0.0.1:8233/namespaces/default/workflows/release-hello-1.4.0/${RUN}/history`;
    expect(body).toMatchObject({
      schema: NOTICE_SCHEMA,
      kind: 'gate-opened',
      idempotencyKey: `release-hello-1.4.0/${RUN}/gate-opened/production`,
      release: { service: 'hello', version: '1.4.0', environment: 'production', workflowId: 'release-hello-1.4.0', runId: RUN },
    });
    expect(body.text).toBe('⏳ hello 1.4.0 waits for approval to production: needs 1 more from sre (carol or dave). Approve: gantry approve hello 1.4.0 --as &lt;name&gt;');
    expect(body.blocks[0]).toMatchObject({ type: 'header', text: { type: 'plain_text', text: '⏳ hello 1.4.0 waits for approval to production' } });
    expect(JSON.stringify(body.blocks)).toContain('`gantry approve hello 1.4.0 --as &lt;name&gt;`');
    expect(JSON.stringify(body.blocks)).toContain('*Smoke*\\nversion: 200 with version = 1.4.0; health: 200');
    expect(body.blocks.find((b) => b.type === 'actions')!.elements![0]!.url).toBe(webUi);
    expect(body.blocks).toEqual(noticeMessage('gate-opened', { ...summary(), webUiUrl: webUi }).blocks);

    expect(sent).toHaveLength(1);
    expect(sent[0]!.headers).toMatchObject({ 'content-type': 'application/json', 'idempotency-key': `release-hello-1.4.0/${RUN}/gate-opened/production` });
  });

  it('keys each kind and environment of a run apart', async () => {
    await notify(request());
    await notify(request({ kind: 'gate-reminder' }));
    await notify(request({ kind: 'lane-wait' }, { environment: 'staging', lane: { holder: 'hello 1.3.9', heldSince: 'a', waitingSince: 'b' } }));
    expect(sent.map((s) => s.headers['idempotency-key'])).toEqual([
      `release-hello-1.4.0/${RUN}/gate-opened/production`,
      `release-hello-1.4.0/${RUN}/gate-reminder/production`,
      `release-hello-1.4.0/${RUN}/lane-wait/staging`,
    ]);
    const texts = lab.requests().map((r) => (r.body as { text: string }).text);
    expect(texts).toHaveLength(3);
    expect(texts[0]).toMatch(/^⏳ hello 1\.4\.0 waits for approval to production: /);
    expect(texts[1]).toMatch(/^⏰ Reminder: hello 1\.4\.0 still waits for approval to production and times out at 2026-02-04T10:00:00\.000Z: /);
    expect(texts[2]).toMatch(/^🚦 hello 1\.4\.0 has waited for the staging lane since b: hello 1\.3\.9 holds it \(since a\)\. /);
  });

  it('uses the worker\'s Web UI address, not a link the request brings', async () => {
    await notify(request({}, { webUiUrl: 'https://phish.example/approve', buildRunUrl: 'https://ci.example/run/1' }));
    const all = JSON.stringify(lab.requests()[0]!.body);
    expect(all).not.toContain('phish.example');
    expect(all).toContain(`http://127.0.0.1:8233/namespaces/default/workflows/release-hello-1.4.0/${RUN}/history`);

    // Another notice (its own idempotency key: the lab's receiver keeps one message per key).
    await notify(request({ kind: 'gate-reminder' }, { webUiUrl: 'https://phish.example/approve' }), deps({ config: configWith('{ webhook: { env: GANTRY_TEST_NOTICES } }') }));
    const second = lab.requests()[1]!.body as { blocks: Array<{ type: string }> };
    expect(JSON.stringify(second)).not.toContain('phish.example');
    expect(second.blocks.some((b) => b.type === 'actions')).toBe(false);
  });

  it('sends nothing when the service has no notices configured, or the worker does not know it', async () => {
    expect(await notify(request(), deps({ config: configWith(undefined) }))).toEqual({ attempt: 1, sent: false, detail: 'no notices webhook configured' });
    expect(await notify(request({}, { service: 'ghost' }))).toEqual({ attempt: 1, sent: false, detail: 'the worker\'s config defines no service "ghost"' });
    expect(lab.count()).toBe(0);
    expect(sent).toEqual([]);
  });

  it('retries a webhook that answers 500, and the next attempt is received', async () => {
    const front = await flakyFront([500]);
    try {
      const f = await failure(request(), deps({}, front.url));
      expect(f.type).toBe(GantryErrorType.Unavailable);
      expect(f.nonRetryable).toBe(false);
      expect(f.message).toBe('The approvers\' webhook (env GANTRY_TEST_NOTICES) answered 500 "trouble at ***". Gantry retries.');
      expectNoUrl(f, front.url);
      expect(lab.count()).toBe(0);

      const ok = await notify(request(), deps({}, front.url), 2);
      expect(ok).toMatchObject({ attempt: 2, sent: true });
      expect(front.hits).toBe(2);
      expect(lab.count()).toBe(1);
      expect(sent.map((s) => s.headers['idempotency-key'])).toEqual([`release-hello-1.4.0/${RUN}/gate-opened/production`, `release-hello-1.4.0/${RUN}/gate-opened/production`]);
    } finally {
      await front.close();
    }
  });

  it('does not retry a webhook that answers 404 (revoked), and names only the reference', async () => {
    const revoked = lab.url.replace('x9f3k2s3cr3tpath', 'revoked-path');
    const f = await failure(request(), deps({}, revoked));
    expect(f.type).toBe(GantryErrorType.ConfigInvalid);
    expect(f.nonRetryable).toBe(true);
    expect(f.message).toContain('The approvers\' webhook (env GANTRY_TEST_NOTICES) answered 404 "no_service": it refused the notice.');
    expect(f.message).toContain('Check that env GANTRY_TEST_NOTICES holds a current incoming-webhook URL');
    expectNoUrl(f, revoked);
    expect(f.message).not.toContain('revoked-path');
    expect(f.message).not.toContain('127.0.0.1');
    expect(lab.count()).toBe(0);
  });

  it('retries an unreachable webhook without quoting its URL', async () => {
    const url = lab.url;
    await lab.close();
    const f = await failure(request(), deps({}, url));
    expect(f.nonRetryable).toBe(false);
    expect(f.message).toBe('The approvers\' webhook (env GANTRY_TEST_NOTICES) could not be reached: ECONNREFUSED. Gantry retries; check the worker can reach the chat service.');
    expectNoUrl(f, url);
    lab = await startWebhookReceiver({ file: path.join(dir, 'requests.jsonl'), token: TOKEN });
  });

  it('gives up after its timeout on a webhook that never answers, and retries', async () => {
    const silent = http.createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}/hooks/${TOKEN}`;
    try {
      const f = await failure(request(), deps({ timeoutMs: 300 }, url));
      expect(f.nonRetryable).toBe(false);
      expect(f.message).toContain('could not be reached: no answer within 300 ms');
      expectNoUrl(f, url);
    } finally {
      silent.closeAllConnections();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  it('refuses, without its value, a secret that is missing or is not a URL', async () => {
    const missing = await failure(request(), deps({ env: {} }));
    expect(missing.type).toBe(GantryErrorType.SecretMissing);
    expect(missing.message).toContain('{env: GANTRY_TEST_NOTICES} is not set');

    const notUrl = await failure(request(), deps({ env: { GANTRY_TEST_NOTICES: 'x9f3k2s3cr3tpath' } }));
    expect(notUrl.type).toBe(GantryErrorType.ConfigInvalid);
    expect(notUrl.nonRetryable).toBe(true);
    expect(notUrl.message).toBe('The approvers\' webhook (env GANTRY_TEST_NOTICES) is not an http(s) URL. Put the incoming-webhook URL into env GANTRY_TEST_NOTICES on the worker.');
    expect(sent).toEqual([]);
  });

  it('refuses a request that names no valid service or kind', async () => {
    const f = await failure(request({ kind: 'deploy-now' as NoticeRequest['kind'] }), deps());
    expect(f.nonRetryable).toBe(true);
    expect((await failure(request({}, { service: '../etc' }), deps())).message).toBe('Refusing the notice: it names no valid service and kind.');
    expect(lab.count()).toBe(0);
  });
});
