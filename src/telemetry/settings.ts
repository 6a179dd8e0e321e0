/**
 * What telemetry a worker runs with, from its flags and environment:
 *
 * - metrics: `--metrics <host:port>` or GANTRY_METRICS_ADDRESS. The worker serves Prometheus metrics at
 *   `http://<host:port>/metrics`. The host is an IP address (`127.0.0.1`, `0.0.0.0`, `[::1]`) or `localhost`;
 *   `:9464` alone binds every interface (what a container needs).
 * - tracing: `--otel`, GANTRY_OTEL=1, or any OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
 *   (GANTRY_OTEL=0 keeps it off even then).
 */
import { isIP } from 'node:net';
import { UsageError } from '../client/errors';

export interface TelemetrySettings {
  /** `ip:port` the Prometheus endpoint binds (normalized), or undefined for no metrics endpoint. */
  metricsAddress?: string;
  /** Trace releases with OpenTelemetry. */
  tracing: boolean;
}

export interface TelemetryFlags {
  /** `--metrics <host:port>` */
  metrics?: string;
  /** `--otel` */
  otel?: boolean;
}

const ON = new Set(['1', 'true', 'yes', 'on']);
const OFF = new Set(['0', 'false', 'no', 'off']);

/** `host:port` as the Prometheus exporter binds it; throws a UsageError naming the problem and the form. */
export function parseMetricsAddress(value: string, flag = '--metrics'): string {
  const v = value.trim();
  const form = `Use host:port, e.g. 127.0.0.1:9464 (this machine only), 0.0.0.0:9464 or :9464 (every interface).`;
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d+)$/.exec(v);
  if (!m) throw new UsageError(`${flag} "${value}" is not host:port. ${form}`);
  const port = Number(m[3]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError(`${flag} "${value}": the port must be 1-65535. ${form}`);
  if (m[1] !== undefined) {
    if (isIP(m[1]) !== 6) throw new UsageError(`${flag} "${value}": ${m[1]} is not an IPv6 address. ${form}`);
    return `[${m[1]}]:${port}`;
  }
  const host = m[2] === '' ? '0.0.0.0' : m[2] === 'localhost' ? '127.0.0.1' : m[2]!;
  if (isIP(host) !== 4) throw new UsageError(`${flag} "${value}": the host must be an IP address or localhost, not "${host}". ${form}`);
  return `${host}:${port}`;
}

/** Resolve flags over the environment. Flags win; a bad address is a UsageError. */
export function telemetrySettings(flags: TelemetryFlags = {}, env: NodeJS.ProcessEnv = process.env): TelemetrySettings {
  const raw = flags.metrics ?? (env.GANTRY_METRICS_ADDRESS || undefined);
  const metricsAddress = raw === undefined ? undefined : parseMetricsAddress(raw, flags.metrics !== undefined ? '--metrics' : 'GANTRY_METRICS_ADDRESS');
  const otelEnv = env.GANTRY_OTEL?.trim().toLowerCase();
  if (otelEnv && !ON.has(otelEnv) && !OFF.has(otelEnv)) throw new UsageError(`GANTRY_OTEL "${env.GANTRY_OTEL}" is not 1 or 0.`);
  const tracing = flags.otel === true ||
    (!OFF.has(otelEnv ?? '') && (ON.has(otelEnv ?? '') || Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT) || Boolean(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)));
  return { ...(metricsAddress ? { metricsAddress } : {}), tracing };
}

/** Where the metrics are scraped (for the start-up line). */
export function metricsUrl(address: string): string {
  return `http://${address}/metrics`;
}
