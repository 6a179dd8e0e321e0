/**
 * The worker's Temporal Runtime with a Prometheus endpoint: the SDK's own worker and client metrics
 * (`temporal_…`) and gantry's (`release_…`, from the workflow's and the activities' metric meters) on one
 * `/metrics` route. The Runtime is process-wide and installed once, before the first connection.
 */
import type { Logger } from '@temporalio/common';
import { Runtime, type LogExporterConfig } from '@temporalio/worker';
import { UsageError } from '../client/errors';
import { HISTOGRAM_BUCKETS } from './names';

export interface RuntimeExtras {
  /** The Runtime's logger (tests quieten it). */
  logger?: Logger;
  /** Core's log settings. */
  logging?: LogExporterConfig;
}

/**
 * Install the Runtime serving Prometheus metrics on `address` (an `ip:port` from parseMetricsAddress). Throws a
 * UsageError when the port is taken, and an Error when a Runtime already exists (something connected first).
 */
export function installMetricsRuntime(address: string, extras: RuntimeExtras = {}): void {
  try {
    Runtime.install({
      ...(extras.logger ? { logger: extras.logger } : {}),
      telemetryOptions: {
        ...(extras.logging ? { logging: extras.logging } : {}),
        metrics: { prometheus: { bindAddress: address, histogramBucketOverrides: HISTOGRAM_BUCKETS } },
      },
    });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (/address already in use|address in use|os error 98|os error 48/i.test(message)) {
      throw new UsageError(`Cannot serve metrics on ${address}: the address is in use. Pick another port with --metrics (or GANTRY_METRICS_ADDRESS).`);
    }
    if (/cannot assign requested address|os error 99|os error 49/i.test(message)) {
      throw new UsageError(`Cannot serve metrics on ${address}: this machine has no such address. Use 127.0.0.1 or 0.0.0.0.`);
    }
    if (/already/i.test(message)) {
      throw new Error(`Cannot serve metrics: the Temporal Runtime was already created in this process (${message}). ` +
        'Telemetry must be set up before the first connection to Temporal.', { cause: err });
    }
    throw err;
  }
}
