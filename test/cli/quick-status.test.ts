/**
 * `gantry status`'s quick path (src/cli/quick-status.ts): the built CLI reads a release through the server's HTTP
 * API without loading the Temporal SDK, prints exactly what the ordinary gRPC path prints, and leaves everything
 * it does not answer whole to that path. A real dev server with its HTTP API on a known port, the harness worker.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Worker } from '@temporalio/worker';
import type { ReleaseStatus } from '../../src/shared/release';
import { executionFromHttp, httpApiBase, statusFromHttp } from '../../src/client/http-api';
import { devServerEnv, requireBinary, TEMPORAL_CLI } from '../helpers/servers';
import { freePort } from '../helpers/ports';
import { endOpenReleases, gantry, removeTempDirs, requireBuild, routedActivities, show, startWorker, tempDir, waitFor, writeConfig, type CliResult } from './harness';

let env: TestWorkflowEnvironment;
let worker: Worker;
let workerRunning: Promise<void>;
let dir: string;
let config: string;
let httpApi: string;
/** A loopback port nothing listens on. */
let closedPort: number;

beforeAll(async () => {
  requireBuild();
  requireBinary(TEMPORAL_CLI, 'The Temporal CLI');
  // The HTTP port is picked free, then bound by the server a moment later: another process may take it in between
  // (seen once in CI, the server then fails to start), so a start that fails is tried again on another port.
  for (let attempt = 1; ; attempt++) {
    const httpPort = await freePort();
    try {
      env = await devServerEnv({ httpPort });
      httpApi = `http://127.0.0.1:${httpPort}`;
      break;
    } catch (err) {
      if (attempt === 3) throw err;
    }
  }
  closedPort = await freePort();
  dir = tempDir();
  config = writeConfig(dir, 'one.yaml');
  const { activities } = routedActivities({ config: () => config, behaviour: () => ({}) });
  ({ worker, running: workerRunning } = await startWorker(env, activities));
});

afterAll(async () => {
  if (env) await endOpenReleases(env.client);
  worker?.shutdown();
  await workerRunning;
  await env?.teardown();
  removeTempDirs();
});

/** `gantry …` pointed at the dev server; `http` sets GANTRY_HTTP_API (`off`: the gRPC path only). */
function cli(args: string[], http: string, extra: Record<string, string> = {}): Promise<CliResult> {
  return gantry(args, { env: { TEMPORAL_ADDRESS: env.address, GANTRY_HTTP_API: http, ...extra }, cwd: dir });
}

describe('gantry status through the HTTP API', () => {
  it('prints what the gRPC path prints, in text and --json, for a release at the gate and for one that ended', async () => {
    const start = await cli(['start', 'hello', '31.0.0', '--config', config], 'off');
    expect(start.code, show(start)).toBe(0);
    await waitFor('hello 31.0.0 at the gate', async () => {
      const r = await cli(['status', 'hello', '31.0.0', '--json'], 'off');
      return r.code === 0 && (JSON.parse(r.stdout) as ReleaseStatus).stage === 'awaiting-approval';
    });
    for (const args of [['status', 'hello', '31.0.0'], ['status', '--json', 'hello', 'v31.0.0'], ['status', '--id', 'release-hello-31.0.0']]) {
      const [quick, grpc] = [await cli(args, httpApi), await cli(args, 'off')];
      expect(quick.code, show(quick)).toBe(0);
      expect(quick.stdout, args.join(' ')).toBe(grpc.stdout);
      expect(quick.stderr).toBe('');
    }
    expect((await cli(['status', 'hello', '31.0.0'], httpApi)).stdout).toContain('awaiting-approval');

    const approve = await cli(['approve', 'hello', '31.0.0', '--as', 'alice'], 'off');
    expect(approve.code, show(approve)).toBe(0);
    await waitFor('hello 31.0.0 to end', async () => {
      const r = await cli(['status', 'hello', '31.0.0', '--json'], 'off');
      return r.code === 0 && (JSON.parse(r.stdout) as ReleaseStatus).outcome !== undefined;
    });
    const [quick, grpc] = [await cli(['status', 'hello', '31.0.0'], httpApi), await cli(['status', 'hello', '31.0.0'], 'off')];
    expect(quick.stdout).toBe(grpc.stdout);
    expect(quick.stdout).toContain('succeeded');
  });

  it('answers without gRPC at all: the gRPC address may be dead when the HTTP API is given', async () => {
    const dead = { TEMPORAL_ADDRESS: `127.0.0.1:${closedPort}` };
    const quick = await cli(['status', 'hello', '31.0.0'], httpApi, dead);
    expect(quick.code, show(quick)).toBe(0);
    expect(quick.stdout).toContain('Release hello 31.0.0: succeeded');
    // Without the HTTP API the same command has only gRPC, and says the server is unreachable.
    const grpc = await cli(['status', 'hello', '31.0.0'], 'off', dead);
    expect(grpc.code, show(grpc)).not.toBe(0);
    expect(grpc.stderr).toContain(`127.0.0.1:${closedPort}`);
  });

  it('leaves to the gRPC path whatever it does not answer: no HTTP API there, an unknown release, options it does not take, TLS or an API key', async () => {
    const grpc = await cli(['status', 'hello', '31.0.0'], 'off');
    const noApi = await cli(['status', 'hello', '31.0.0'], `http://127.0.0.1:${closedPort}`);
    expect(noApi.code, show(noApi)).toBe(0);
    expect(noApi.stdout).toBe(grpc.stdout);

    const missing = await cli(['status', 'hello', '9.9.9'], httpApi);
    expect(missing.code, show(missing)).toBe(4);
    expect(missing.stderr).toContain('No release release-hello-9.9.9');

    const typo = await cli(['status', 'hello', '31.0.0', '--jsn'], httpApi);
    expect(typo.code, show(typo)).toBe(2);
    expect(typo.stderr).toContain("unknown option '--jsn'");

    // An API key is a setting only the SDK applies: with a dead gRPC address, the command must fail rather than
    // answer over HTTP without it.
    const keyed = await cli(['status', 'hello', '31.0.0'], httpApi, { TEMPORAL_ADDRESS: `127.0.0.1:${closedPort}`, TEMPORAL_API_KEY: 'k' });
    expect(keyed.code, show(keyed)).not.toBe(0);
  });
});

describe('reading the HTTP API answers', () => {
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  const json = (v: unknown) => ({ metadata: { encoding: b64('json/plain') }, data: b64(JSON.stringify(v)) });

  it('finds the HTTP API of a server on this machine at its gRPC port + 10, never guesses a remote one, and takes GANTRY_HTTP_API', () => {
    expect(httpApiBase('localhost:7233', {})).toBe('http://localhost:7243');
    expect(httpApiBase('127.0.0.1:40000', {})).toBe('http://127.0.0.1:40010');
    expect(httpApiBase('temporal.example.com:7233', {})).toBeUndefined();
    expect(httpApiBase('127.0.0.1:65530', {})).toBeUndefined();
    expect(httpApiBase('temporal.example.com:7233', { GANTRY_HTTP_API: 'https://temporal.example.com:7243/' })).toBe('https://temporal.example.com:7243');
    expect(httpApiBase('localhost:7233', { GANTRY_HTTP_API: 'off' })).toBeUndefined();
    expect(httpApiBase('localhost:7233', { GANTRY_HTTP_API: 'temporal:7243' })).toBeUndefined();
  });

  it('takes only whole answers in the SDK\'s JSON encoding', () => {
    const info = {
      execution: { workflowId: 'release-hello-1.0.0', runId: 'r1' }, status: 'WORKFLOW_EXECUTION_STATUS_RUNNING', startTime: '2026-12-01T10:00:00Z',
      searchAttributes: { indexedFields: { GantryStage: json('smoke'), GantryService: json('hello') } },
    };
    expect(executionFromHttp({ workflowExecutionInfo: info }, 'release-hello-1.0.0')).toEqual({
      workflowId: 'release-hello-1.0.0', runId: 'r1', status: { name: 'RUNNING' }, startTime: new Date('2026-12-01T10:00:00Z'), fields: { stage: 'smoke', service: 'hello' },
    });
    expect(executionFromHttp({ workflowExecutionInfo: info }, 'release-hello-2.0.0')).toBeUndefined();
    expect(executionFromHttp({ workflowExecutionInfo: { ...info, startTime: 'yesterday' } }, 'release-hello-1.0.0')).toBeUndefined();
    const binary = { metadata: { encoding: b64('binary/encrypted') }, data: b64('x') };
    expect(executionFromHttp({ workflowExecutionInfo: { ...info, searchAttributes: { indexedFields: { GantryStage: binary } } } }, 'release-hello-1.0.0')).toBeUndefined();

    const status = { workflowId: 'release-hello-1.0.0', stage: 'smoke', approvals: [] };
    expect(statusFromHttp({ queryResult: { payloads: [json(status)] } })).toEqual(status);
    expect(statusFromHttp({ queryResult: { payloads: [binary] } })).toBeUndefined();
    expect(statusFromHttp({ queryRejected: { status: 'WORKFLOW_EXECUTION_STATUS_FAILED' } })).toBeUndefined();
    expect(statusFromHttp({ queryResult: { payloads: [json('not a status')] } })).toBeUndefined();
  });
});
