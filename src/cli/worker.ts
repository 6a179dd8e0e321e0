/** `gantry worker`: run the release steps and workflows from the task queue until Ctrl-C / SIGTERM. */
import { Command } from 'commander';
import { createActivities } from '../activities';
import { telemetrySettings, type TelemetrySettings } from '../telemetry/settings';
import { DEFAULT_MAX_CACHED_WORKFLOWS, maxCachedWorkflowsFrom, runWorker, workerConfig } from '../worker';
import { err, globals } from './common';

interface WorkerOptions {
  taskQueue?: string;
  config?: string;
  metrics?: string;
  otel?: boolean;
  maxCachedWorkflows?: string;
}

/** The worker's cache size, shared with `gantry dev` (docs/performance.md). */
export function addWorkerTuningOptions(cmd: Command): Command {
  return cmd.option('--max-cached-workflows <n>', 'workflows kept in memory; releases parked beyond that are evicted and replayed from their ' +
    'history when a message arrives; the workflow heap (96 MB + 1 MB each) and workflow task slots (half, at most 40) follow from it ' +
    `(a whole number ≥ 2; default: GANTRY_MAX_CACHED_WORKFLOWS, else ${DEFAULT_MAX_CACHED_WORKFLOWS})`);
}

/** `--metrics` and `--otel`, shared with `gantry dev` (docs/metrics.md). */
export function addTelemetryOptions(cmd: Command): Command {
  return cmd
    .option('--metrics <host:port>', 'serve Prometheus metrics (the SDK\'s and gantry\'s) at http://<host:port>/metrics, e.g. 127.0.0.1:9464 ' +
      'or :9464 (default: GANTRY_METRICS_ADDRESS; none when unset)')
    .option('--otel', 'trace releases with OpenTelemetry over OTLP/HTTP to OTEL_EXPORTER_OTLP_ENDPOINT (default http://localhost:4318); ' +
      'also on with GANTRY_OTEL=1 or when OTEL_EXPORTER_OTLP_ENDPOINT is set');
}

/** The telemetry the flags ask for, over the environment (a bad address is a usage error, exit 2). */
export function telemetryFromFlags(opts: { metrics?: string; otel?: boolean }, env: NodeJS.ProcessEnv = process.env): TelemetrySettings {
  return telemetrySettings({ ...(opts.metrics !== undefined ? { metrics: opts.metrics } : {}), ...(opts.otel ? { otel: true } : {}) }, env);
}

export function workerCommand(): Command {
  const cmd = new Command('worker')
    .summary('run a gantry worker (stateless; run as many as you like)')
    .description(
      'Poll the release task queue and run releases and their steps with the real step implementations. Stops ' +
        'gracefully on Ctrl-C or SIGTERM: running steps get time to finish, anything unfinished moves to another worker.',
    )
    .option('--task-queue <name>', 'task queue to poll (default gantry-releases)')
    .option('-c, --config <file|dir>', 'the release config this worker owns (default: GANTRY_CONFIG); read again for every release');
  return addWorkerTuningOptions(addTelemetryOptions(cmd))
    .action(async (opts: WorkerOptions, c: Command) => {
      const g = globals(c);
      const maxCachedWorkflows = maxCachedWorkflowsFrom(opts.maxCachedWorkflows);
      const telemetry = telemetryFromFlags(opts);
      const { source, summary } = workerConfig(opts.config);
      err.print(`gantry worker: release config ${summary}`);
      await runWorker(createActivities({ config: source, env: process.env }), {
        ...(g.address ? { address: g.address } : {}),
        ...(g.namespace ? { namespace: g.namespace } : {}),
        ...(opts.taskQueue ? { taskQueue: opts.taskQueue } : {}),
        telemetry,
        maxCachedWorkflows,
      });
    });
}
