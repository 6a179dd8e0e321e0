/**
 * What telemetry a worker runs with, from `--metrics` / `--otel` and the environment, and how steps are named
 * and measured: no server, no Runtime.
 */
import { describe, expect, it } from 'vitest';
import { Command } from 'commander';
import { UsageError } from '../../src/client/errors';
import { addTelemetryOptions, telemetryFromFlags } from '../../src/cli/worker';
import { devCommand } from '../../src/cli/dev';
import { workerCommand } from '../../src/cli/worker';
import { instrumentActivities, isInstrumented, serviceOf, stepOf } from '../../src/telemetry/activities';
import { HISTOGRAM_BUCKETS, METRIC } from '../../src/telemetry/names';
import { parseMetricsAddress, telemetrySettings } from '../../src/telemetry/settings';

describe('the metrics address', () => {
  it('accepts an IPv4 or bracketed IPv6 address with a port, localhost as 127.0.0.1, and :port as every interface', () => {
    expect(parseMetricsAddress('127.0.0.1:9464')).toBe('127.0.0.1:9464');
    expect(parseMetricsAddress('0.0.0.0:9464')).toBe('0.0.0.0:9464');
    expect(parseMetricsAddress(':9464')).toBe('0.0.0.0:9464');
    expect(parseMetricsAddress('localhost:9464')).toBe('127.0.0.1:9464');
    expect(parseMetricsAddress('[::1]:9464')).toBe('[::1]:9464');
    expect(parseMetricsAddress(' 10.0.0.5:19464 ')).toBe('10.0.0.5:19464');
  });

  it('refuses anything else with a usage error that shows the expected form', () => {
    for (const bad of ['9464', 'metrics.internal:9464', '127.0.0.1', '127.0.0.1:0', '127.0.0.1:70000', '::1:9464', '[nope]:9464', '127.0.0.1:94x']) {
      expect(() => parseMetricsAddress(bad), bad).toThrow(UsageError);
      expect(() => parseMetricsAddress(bad), bad).toThrow(/e\.g\. 127\.0\.0\.1:9464/);
    }
  });
});

describe('the telemetry a worker runs with', () => {
  it('serves no metrics and traces nothing unless asked', () => {
    expect(telemetrySettings({}, {})).toEqual({ tracing: false });
  });

  it('takes the metrics address from --metrics, else GANTRY_METRICS_ADDRESS, naming the source of a bad one', () => {
    expect(telemetrySettings({}, { GANTRY_METRICS_ADDRESS: '127.0.0.1:9000' }).metricsAddress).toBe('127.0.0.1:9000');
    expect(telemetrySettings({ metrics: ':9100' }, { GANTRY_METRICS_ADDRESS: '127.0.0.1:9000' }).metricsAddress).toBe('0.0.0.0:9100');
    expect(telemetrySettings({}, { GANTRY_METRICS_ADDRESS: '' }).metricsAddress).toBeUndefined();
    expect(() => telemetrySettings({}, { GANTRY_METRICS_ADDRESS: 'nope' })).toThrow(/^GANTRY_METRICS_ADDRESS "nope"/);
    expect(() => telemetrySettings({ metrics: 'nope' }, {})).toThrow(/^--metrics "nope"/);
  });

  it('traces with --otel, GANTRY_OTEL=1 or an OTLP endpoint in the environment, and not with GANTRY_OTEL=0', () => {
    expect(telemetrySettings({ otel: true }, {}).tracing).toBe(true);
    expect(telemetrySettings({}, { GANTRY_OTEL: '1' }).tracing).toBe(true);
    expect(telemetrySettings({}, { GANTRY_OTEL: 'true' }).tracing).toBe(true);
    expect(telemetrySettings({}, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }).tracing).toBe(true);
    expect(telemetrySettings({}, { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:4318/v1/traces' }).tracing).toBe(true);
    expect(telemetrySettings({}, { GANTRY_OTEL: '0', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }).tracing).toBe(false);
    expect(telemetrySettings({ otel: true }, { GANTRY_OTEL: '0' }).tracing).toBe(true);
    expect(() => telemetrySettings({}, { GANTRY_OTEL: 'maybe' })).toThrow(/GANTRY_OTEL "maybe" is not 1 or 0/);
  });

  it('gives `gantry worker` and `gantry dev` the same --metrics and --otel options', () => {
    for (const cmd of [workerCommand(), devCommand()]) {
      const flags = cmd.options.map((o) => o.long);
      expect(flags, cmd.name()).toEqual(expect.arrayContaining(['--metrics', '--otel']));
    }
    const cmd = addTelemetryOptions(new Command('x')).exitOverride();
    cmd.parse(['--metrics', 'localhost:9464', '--otel'], { from: 'user' });
    expect(telemetryFromFlags(cmd.opts(), {})).toEqual({ metricsAddress: '127.0.0.1:9464', tracing: true });
  });
});

describe('step measurements', () => {
  it('name each activity call by its runbook step: deploy by its environment, resolvePlan as resolve', () => {
    expect(stepOf('deploy', { environment: 'staging' })).toBe('deployStaging');
    expect(stepOf('deploy', { environment: 'production' })).toBe('deployProduction');
    expect(stepOf('resolvePlan', { service: 'hello' })).toBe('resolve');
    expect(stepOf('health', {})).toBe('health');
  });

  it('label the service only with a valid service name, so a request cannot mint label values', () => {
    expect(serviceOf({ release: { service: 'hello' } })).toBe('hello');
    expect(serviceOf({ service: 'hello' })).toBe('hello');
    expect(serviceOf({ release: { service: 'Not A Service!' } })).toBe('unknown');
    expect(serviceOf(undefined)).toBe('unknown');
  });

  it('wrap every activity once, keep other members, and run the step unchanged outside a worker', async () => {
    const calls: string[] = [];
    const acts = { calls, async tag(req: { n: number }) { return req.n + 1; } };
    const wrapped = instrumentActivities(acts);
    expect(isInstrumented(wrapped)).toBe(true);
    expect(instrumentActivities(wrapped)).toBe(wrapped);
    expect(wrapped.calls).toBe(calls);
    expect(Object.keys(wrapped).sort()).toEqual(['calls', 'tag']);
    await expect(wrapped.tag({ n: 1 })).resolves.toBe(2);
    const failing = instrumentActivities({ async smoke(): Promise<void> { throw new Error('refused'); } });
    await expect(failing.smoke()).rejects.toThrow('refused');
  });

  it('give every histogram its own buckets, in ascending order', () => {
    const histograms = [METRIC.releaseDuration, METRIC.gateWait, METRIC.stepDuration, METRIC.stepAttempts, METRIC.stepAttemptDuration, METRIC.laneWait];
    expect(Object.keys(HISTOGRAM_BUCKETS).sort()).toEqual([...histograms].sort());
    for (const [name, bounds] of Object.entries(HISTOGRAM_BUCKETS)) expect([...bounds].sort((a, b) => a - b), name).toEqual(bounds);
  });
});
