import http from 'node:http';
import type net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createChecks, runChecks, type CheckOptions } from '../../src/activities/checks';
import type { VerifyRequest, VerifyResult } from '../../src/activities/types';
import type { HttpCheck } from '../../src/config/schema';
import { GantryErrorType } from '../../src/shared/errors';
import { freePort } from '../helpers/ports';

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

interface Service {
  port: number;
  base: string;
  hits: string[];
  handler: Handler;
  close(): Promise<void>;
}

const services: Service[] = [];
afterEach(async () => {
  while (services.length) await services.pop()!.close();
});

/** A real HTTP service on 127.0.0.1 whose answers a test can change while checks poll it. */
async function serve(handler: Handler, port = 0): Promise<Service> {
  const hits: string[] = [];
  const svc = { hits, handler } as Service;
  const server = http.createServer((req, res) => {
    hits.push(`${req.method} ${req.url}`);
    svc.handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  svc.port = (server.address() as net.AddressInfo).port;
  svc.base = `http://127.0.0.1:${svc.port}`;
  svc.close = () => new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });
  services.push(svc);
  return svc;
}

const json = (status: number, body: unknown): Handler => (_req, res) => {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
};

function check(name: string, url: string, expect: Partial<HttpCheck['expect']> = {}, method: HttpCheck['method'] = 'GET'): HttpCheck {
  return { name, url, method, expect: { status: 200, ...expect } };
}

function request(checks: HttpCheck[], windowMs: number, version = '1.2.3'): VerifyRequest {
  return { release: { service: 'hello', version, workflowId: `release-hello-${version}` }, environment: 'production', checks, windowMs };
}

const FAST: CheckOptions = { initialDelayMs: 100, maxDelayMs: 300, requestTimeoutMs: 1_000 };

async function verify(req: VerifyRequest, opts: CheckOptions = FAST) {
  const env = new MockActivityEnvironment({ attempt: 3 });
  const heartbeats: unknown[] = [];
  env.on('heartbeat', (d: unknown) => heartbeats.push(d));
  const run = (r: VerifyRequest) => runChecks(r, opts);
  const result = await env.run<[VerifyRequest], VerifyResult, typeof run>(run, req);
  return { result, heartbeats };
}

async function failure(req: VerifyRequest, opts: CheckOptions = FAST): Promise<ApplicationFailure> {
  const err = await verify(req, opts).then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(ApplicationFailure);
  return err as ApplicationFailure;
}

describe('HTTP checks', () => {
  it('passes status, body-contains and JSON-path checks, with {version} replaced in URL and expectations', async () => {
    const svc = await serve((req, res) => {
      if (req.url === '/health') return void res.writeHead(200, { 'content-type': 'text/plain' }).end('status: ok');
      if (req.url === '/version?want=1.2.3') return json(200, { build: { version: '1.2.3', number: 7 } })(req, res);
      if (req.url === '/ready' && req.method === 'HEAD') return void res.writeHead(204).end();
      res.writeHead(404).end();
    });
    const { result, heartbeats } = await verify(request([
      check('health', `${svc.base}/health`, { bodyContains: 'ok' }),
      check('version', `${svc.base}/version?want={version}`, { json: { path: 'build.version', equals: '{version}' } }),
      check('build', `${svc.base}/version?want={version}`, { json: { path: 'build.number', equals: 7 } }),
      check('ready', `${svc.base}/ready`, { status: 204 }, 'HEAD'),
    ], 5_000));
    expect(result.attempt).toBe(3);
    expect(result.checks.map((c) => [c.name, c.ok, c.status])).toEqual([['health', true, 200], ['version', true, 200], ['build', true, 200], ['ready', true, 204]]);
    expect(result.checks[1]!.url).toBe(`${svc.base}/version?want=1.2.3`);
    expect(heartbeats).toEqual([{ environment: 'production', round: 1, failing: [] }]);
  });

  it('keeps polling through refused connections until the service comes up within the window', async () => {
    const port = await freePort();
    const started = Date.now();
    const later = new Promise<Service>((resolve) => setTimeout(() => resolve(serve(json(200, { version: '1.2.3' }), port)), 1_200));
    const { result, heartbeats } = await verify(request([check('version', `http://127.0.0.1:${port}/version`, { json: { path: 'version', equals: '{version}' } })], 20_000));
    await later;
    expect(result.checks[0]!.ok).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_200);
    expect(heartbeats.length).toBeGreaterThan(2);
    expect(heartbeats[0]).toEqual({ environment: 'production', round: 1, failing: ['version'] });
  });

  it('waits for a wrong answer to become right within the window when the failure limit allows it (a deploy rolling over)', async () => {
    const svc = await serve(json(200, { version: '1.2.2' }));
    setTimeout(() => { svc.handler = json(200, { version: '1.2.3' }); }, 800);
    const { result } = await verify({ ...request([check('version', `${svc.base}/version`, { json: { path: 'version', equals: '{version}' } })], 15_000), failureLimit: 0 });
    expect(result.checks[0]!.ok).toBe(true);
    expect(svc.hits.length).toBeGreaterThan(1);
  });

  it('fails non-retryably with the last response when /version is still wrong as the window closes', async () => {
    const svc = await serve(json(200, { version: '1.2.2', commit: 'abc' }));
    const started = Date.now();
    const f = await failure({ ...request([
      check('health', `${svc.base}/health`),
      check('version', `${svc.base}/version`, { json: { path: 'version', equals: '{version}' } }),
    ], 1_500), failureLimit: 0 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_500);
    expect(f.type).toBe(GantryErrorType.CheckFailed);
    expect(f.nonRetryable).toBe(true);
    expect(f.message).toContain('production checks for hello 1.2.3 still failed when the 2 s window closed');
    expect(f.message).toContain(`- version ${svc.base}/version: version is "1.2.2", expected "1.2.3"; last response: 200 {"version":"1.2.2","commit":"abc"}`);
    expect(f.message).toMatch(/Look at the production service's logs/);
    expect(f.message).not.toMatch(/- health/);
  });

  it('ends at once after failureLimit wrong answers in a row (404 on /health), long before the window closes', async () => {
    const svc = await serve((req, res) => void res.writeHead(req.url === '/health' ? 404 : 200).end(req.url === '/health' ? 'no such file' : '{"version":"1.2.3"}'));
    const started = Date.now();
    const f = await failure(request([check('health', `${svc.base}/health`), check('version', `${svc.base}/version`, { json: { path: 'version', equals: '{version}' } })], 60_000));
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(f.type).toBe(GantryErrorType.CheckFailed);
    expect(f.nonRetryable).toBe(true);
    expect(f.message).toMatch(/^production checks for hello 1\.2\.3 answered wrongly 3 times in a row \(health\), \d+\.\d s into the 60 s window; gantry stopped waiting \(failureLimit 3\)/);
    expect(f.message).toContain(`- health ${svc.base}/health: expected status 200, got 404; last response: 404 no such file`);
    expect(f.message).not.toContain('- version');
    expect(svc.hits.filter((h) => h === 'GET /health')).toHaveLength(3);
  });

  it('does not count refused connections (still starting) towards the failure limit', async () => {
    const port = await freePort();
    let answers = 0;
    // Refused for a while (several rounds), then two wrong answers, then right.
    const later = new Promise<Service>((resolve) => setTimeout(() => resolve(serve((_req, res) => {
      answers += 1;
      const ok = answers >= 3;
      res.writeHead(ok ? 200 : 404).end(ok ? 'ok' : 'not yet');
    }, port)), 700));
    const { result } = await verify({ ...request([check('health', `http://127.0.0.1:${port}/health`)], 20_000), failureLimit: 3 });
    await later;
    expect(result.checks[0]!.ok).toBe(true);
    expect(answers).toBe(3);
  });

  it('takes the failure limit from the request (failureLimit 1 ends on the first wrong answer)', async () => {
    const svc = await serve(json(503, { status: 'down' }));
    const f = await failure({ ...request([check('health', `${svc.base}/health`)], 30_000), failureLimit: 1 });
    expect(f.message).toContain('answered wrongly 1 times in a row (health)');
    expect(svc.hits).toHaveLength(1);
  });

  it('names a wrong status and a missing body text with the response excerpt', async () => {
    const svc = await serve((req, res) => {
      if (req.url === '/health') return void res.writeHead(503).end('database down '.repeat(100));
      res.writeHead(200).end('hello world');
    });
    const f = await failure(request([
      check('health', `${svc.base}/health`),
      check('greeting', `${svc.base}/`, { bodyContains: 'v{version}' }),
    ], 500), { ...FAST, excerptChars: 40 });
    expect(f.type).toBe(GantryErrorType.CheckFailed);
    expect(f.message).toContain('- health');
    expect(f.message).toContain('expected status 200, got 503; last response: 503 database down database down database dow…');
    expect(f.message).toContain('- greeting');
    expect(f.message).toContain('body does not contain "v1.2.3"; last response: 200 hello world');
  });

  it('says when the body is not JSON', async () => {
    const svc = await serve((_req, res) => void res.writeHead(200).end('<html>oops</html>'));
    const f = await failure(request([check('version', `${svc.base}/v`, { json: { path: 'version', equals: '{version}' } })], 300));
    expect(f.message).toContain('body is not JSON (expected version = "1.2.3"); last response: 200 <html>oops</html>');
  });

  it('is retryable when nothing ever answers within the window', async () => {
    const port = await freePort();
    const f = await failure(request([check('health', `http://127.0.0.1:${port}/health`)], 800));
    expect(f.type).toBe(GantryErrorType.Unavailable);
    expect(f.nonRetryable).toBe(false);
    expect(f.message).toMatch(/got no answer within the 1 s window/);
    expect(f.message).toContain(`- health http://127.0.0.1:${port}/health: no answer: ECONNREFUSED`);
    expect(f.message).toMatch(/check that the production container is running/);
  });

  it('times out a request that hangs and counts it as no answer', async () => {
    const hanging = await serve(() => { /* never answers */ });
    const f = await failure(request([check('health', `${hanging.base}/health`)], 600), { ...FAST, requestTimeoutMs: 300 });
    expect(f.nonRetryable).toBe(false);
    expect(f.message).toContain('no answer: timed out after 300 ms');
  });

  it('stops polling promptly when the activity is cancelled', async () => {
    const port = await freePort();
    const env = new MockActivityEnvironment();
    const run = (r: VerifyRequest) => runChecks(r, FAST);
    const started = Date.now();
    const pending = env.run<[VerifyRequest], VerifyResult, typeof run>(run, request([check('health', `http://127.0.0.1:${port}/health`)], 60_000));
    setTimeout(() => env.cancel(), 500);
    const err = await pending.then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(CancelledFailure);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('serves both smoke and health from createChecks', async () => {
    const svc = await serve(json(200, { version: '2.0.0' }));
    const { smoke, health } = createChecks({ options: FAST });
    const env = new MockActivityEnvironment();
    const req = { ...request([check('version', `${svc.base}/version`, { json: { path: 'version', equals: '{version}' } })], 2_000, '2.0.0'), environment: 'staging' as const };
    const s = await env.run<[VerifyRequest], VerifyResult, typeof smoke>(smoke, req);
    const h = await env.run<[VerifyRequest], VerifyResult, typeof health>(health, req);
    expect(s.checks[0]!.ok).toBe(true);
    expect(h.checks[0]!.ok).toBe(true);
  });

  it('refuses an empty check list with the config fix', async () => {
    const f = await failure(request([], 1_000));
    expect(f.type).toBe(GantryErrorType.ConfigInvalid);
    expect(f.message).toContain('environments.production.checks');
  });
});
