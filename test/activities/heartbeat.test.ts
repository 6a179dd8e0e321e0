/**
 * The heartbeat helpers every release step is wrapped in: a silent step still heartbeats every 2 s (so its 10 s
 * heartbeat timeout measures whether the worker lives), and what an earlier attempt recorded is carried on until
 * this attempt records something itself. The defaults in steps.ts give every step but announce that timeout.
 */
import { describe, expect, it } from 'vitest';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { durationMs } from '../../src/shared/duration';
import { beat, HEARTBEAT_EVERY_MS, heartbeating } from '../../src/activities/heartbeat';
import { DEFAULT_STEP_OPTIONS, resolveStepOptions, STEP_NAMES } from '../../src/shared/steps';

function recorder(heartbeatDetails?: unknown) {
  const env = new MockActivityEnvironment({ attempt: 2, ...(heartbeatDetails !== undefined ? { heartbeatDetails } : {}) }, { logger: new DefaultLogger('ERROR') });
  const beats: { at: number; details: unknown }[] = [];
  const start = Date.now();
  env.on('heartbeat', (d: unknown) => beats.push({ at: Date.now() - start, details: d }));
  return { env, beats };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('heartbeating', () => {
  it('heartbeats at least every 2 s through a silent wait, carrying the earlier attempt\'s details until this one beats', async () => {
    const earlier = { phase: 'pull', previous: { 'docker:hello': { id: 'abc', image: 'old' } } };
    const { env, beats } = recorder(earlier);
    const step = heartbeating(async () => {
      await sleep(HEARTBEAT_EVERY_MS * 2 + 300);
      beat({ phase: 'swap' });
      await sleep(HEARTBEAT_EVERY_MS + 300);
      return 'done';
    });
    await expect(env.run(step)).resolves.toBe('done');
    const gaps = beats.map((b, i) => b.at - (i ? beats[i - 1]!.at : 0));
    expect(Math.max(...gaps)).toBeLessThanOrEqual(HEARTBEAT_EVERY_MS + 250);
    expect(beats.length).toBeGreaterThanOrEqual(4);
    expect(beats[0]!.details).toEqual(earlier);
    expect(beats[1]!.details).toEqual(earlier);
    expect(beats.at(-1)!.details).toEqual({ phase: 'swap' });
  }, 20_000);

  it('stops heartbeating when the step ends, also when it fails', async () => {
    const { env, beats } = recorder();
    await expect(env.run(heartbeating(async () => { await sleep(100); throw new Error('boom'); }))).rejects.toThrow('boom');
    const n = beats.length;
    await sleep(HEARTBEAT_EVERY_MS + 200);
    expect(beats.length).toBe(n);
  });

  it('runs the step as it is outside an activity', async () => {
    await expect(heartbeating(async (x: number) => x + 1)(1)).resolves.toBe(2);
  });
});

describe('default step options', () => {
  it('give every step a 1 s first retry, and every step but announce (its channels set theirs) a heartbeat timeout of at most 10 s', () => {
    for (const name of STEP_NAMES) expect(durationMs(DEFAULT_STEP_OPTIONS[name].retry.initialInterval), name).toBe(1_000);
    for (const name of STEP_NAMES.filter((n) => n !== 'announce')) {
      const o = DEFAULT_STEP_OPTIONS[name];
      expect(o.heartbeatTimeout, name).toBeDefined();
      expect(durationMs(o.heartbeatTimeout!), name).toBeLessThanOrEqual(10_000);
      // Heartbeats every 2 s leave room for a late one or two inside the timeout.
      expect(durationMs(o.heartbeatTimeout!), name).toBeGreaterThanOrEqual(HEARTBEAT_EVERY_MS * 3);
    }
  });

  it('are still overridden per step by the config', () => {
    const steps = resolveStepOptions({ build: { heartbeatTimeout: '2m', retry: { initialInterval: '5s' } } });
    expect(steps.build.heartbeatTimeout).toBe('2m');
    expect(steps.build.retry.initialInterval).toBe('5s');
    expect(steps.deployProduction).toEqual(DEFAULT_STEP_OPTIONS.deployProduction);
  });
});
