/**
 * A worker asked to serve metrics on an address it cannot bind stops at start with a usage error naming the
 * address, before it connects anywhere. Its own file: installing the Runtime is once per process.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../../src/client/errors';
import { report } from '../../src/cli/errors';
import { ExitCode } from '../../src/cli/exit-codes';
import { setupTelemetry, telemetrySettings } from '../../src/telemetry';
import { QUIET_RUNTIME } from './release';

let taken: net.Server;
let port: number;

beforeAll(async () => {
  taken = net.createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  port = (taken.address() as net.AddressInfo).port;
});

afterAll(async () => {
  await new Promise((resolve) => taken?.close(resolve));
});

describe('a metrics address that is taken', () => {
  it('stops the worker with a usage error naming the address and how to pick another', () => {
    let caught: unknown;
    try {
      setupTelemetry(telemetrySettings({ metrics: `127.0.0.1:${port}` }, {}), { runtime: QUIET_RUNTIME });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(UsageError);
    expect((caught as Error).message).toContain(`127.0.0.1:${port}`);
    expect((caught as Error).message).toMatch(/in use.*--metrics/);
    expect(report(caught).code).toBe(ExitCode.Usage);
  });
});
