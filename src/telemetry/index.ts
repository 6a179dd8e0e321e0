/**
 * The worker's telemetry in one call: the Prometheus endpoint (Runtime metrics, SDK and gantry's) and
 * OpenTelemetry tracing, as TelemetrySettings ask. `setupTelemetry` runs before the worker's first connection.
 * Metric names: docs/metrics.md.
 */
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';
import { installMetricsRuntime, type RuntimeExtras } from './runtime';
import { metricsUrl, type TelemetrySettings } from './settings';
import { startTracing, type Tracing } from './tracing';

export { instrumentActivities, serviceOf, stepOf } from './activities';
export { METRIC, HISTOGRAM_BUCKETS } from './names';
export { installMetricsRuntime } from './runtime';
export { metricsUrl, parseMetricsAddress, telemetrySettings, type TelemetryFlags, type TelemetrySettings } from './settings';
export { bundleHasTracing, currentTraceId, startTracing, tracingWorkerOptions, TRACING_WORKFLOW_MODULES, type Tracing } from './tracing';

export interface Telemetry {
  readonly settings: TelemetrySettings;
  /** `http://…/metrics` when the worker serves metrics. */
  readonly metricsUrl: string | undefined;
  /** Set when releases are traced: hand it to createReleaseWorker. */
  readonly tracing: Tracing | undefined;
  /** One line per thing enabled, for the worker's start-up output. */
  describe(): string[];
  /** Flush and stop tracing (the Runtime, and its metrics endpoint, live as long as the process). */
  shutdown(): Promise<void>;
}

export interface SetupOptions {
  /** Tests: where spans go instead of OTLP. */
  spanExporter?: SpanExporter;
  runtime?: RuntimeExtras;
  env?: NodeJS.ProcessEnv;
}

export function setupTelemetry(settings: TelemetrySettings, opts: SetupOptions = {}): Telemetry {
  if (settings.metricsAddress) installMetricsRuntime(settings.metricsAddress, opts.runtime);
  const tracing = settings.tracing
    ? startTracing({ ...(opts.spanExporter ? { exporter: opts.spanExporter } : {}), ...(opts.env ? { env: opts.env } : {}) })
    : undefined;
  const url = settings.metricsAddress ? metricsUrl(settings.metricsAddress) : undefined;
  return {
    settings,
    metricsUrl: url,
    tracing,
    describe: () => [
      ...(url ? [`metrics at ${url}`] : []),
      ...(tracing ? [`tracing releases to ${tracing.endpoint ?? 'the configured span exporter'} (OpenTelemetry)`] : []),
    ],
    shutdown: async () => {
      await tracing?.shutdown();
    },
  };
}
