/**
 * `gantry dev`: everything a laptop needs in one process: the Temporal dev server with its Web UI (data in a
 * file, so releases survive restarts), gantry's search attributes, and a worker. Ctrl-C stops the worker, then
 * the server.
 */
import path from 'node:path';
import { Command, Option } from 'commander';
import { defaultStateDir, DevServerInterrupted, ensurePortsFree, findTemporalCli, startDevServer, type DevServer } from '../client/dev-server';
import { UsageError } from '../client/errors';
import { HTTP_PORT_OFFSET } from '../client/http-api';
import { UI_PORT_OFFSET } from '../client/snapshot';
import { createActivities } from '../activities';
import { maxCachedWorkflowsFrom, runWorker, workerConfig } from '../worker';
import { err, globals, out } from './common';
import { ExitCode } from './exit-codes';
import { addTelemetryOptions, addWorkerTuningOptions, telemetryFromFlags } from './worker';

interface DevOptions {
  port: string;
  uiPort?: string;
  httpPort?: string;
  ip: string;
  stateDir: string;
  worker: boolean;
  config?: string;
  metrics?: string;
  otel?: boolean;
  maxCachedWorkflows?: string;
}

function port(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new UsageError(`${flag} "${value}" is not a port number (1-65535).`);
  return n;
}

/** Resolves on the first SIGINT/SIGTERM. */
function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (sig: NodeJS.Signals) => {
      process.removeListener('SIGINT', on);
      process.removeListener('SIGTERM', on);
      resolve(sig);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}

export function devCommand(): Command {
  const cmd = new Command('dev')
    .summary('run a local Temporal dev server with the Web UI and a gantry worker')
    .description(
      'Start the Temporal dev server (the Temporal CLI from GANTRY_TEMPORAL_CLI or ~/.cache/gantry/bin/temporal; ' +
        'install it with `bash scripts/provision.sh`) on loopback, keep its data in <state-dir>/temporal.db so releases ' +
        'survive restarts, register gantry\'s search attributes, and run a worker in this process. Ctrl-C stops the ' +
        'worker, then the server.',
    )
    .option('--port <port>', 'gRPC port of the server', '7233')
    .option('--ui-port <port>', 'port of the Web UI (default: --port + 1000)')
    .option('--http-port <port>', 'port of the server\'s HTTP API, which `gantry status` reads through (default: --port + 10, as Temporal\'s own servers)')
    .option('--ip <ip>', 'address to bind', '127.0.0.1')
    .addOption(new Option('--state-dir <dir>', 'where the database and the server log live').env('GANTRY_STATE_DIR').default(defaultStateDir()))
    .option('--no-worker', 'run only the server (run `gantry worker` yourself, e.g. under a debugger)')
    .option('-c, --config <file|dir>', 'the release config the worker owns (default: GANTRY_CONFIG)');
  // The worker's telemetry (docs/metrics.md): checked before the server starts, set up when the worker starts.
  return addWorkerTuningOptions(addTelemetryOptions(cmd))
    .action(async (opts: DevOptions, c: Command) => {
      const g = globals(c);
      const grpcPort = port(opts.port, '--port');
      const uiPort = opts.uiPort ? port(opts.uiPort, '--ui-port') : grpcPort + UI_PORT_OFFSET;
      const httpPort = opts.httpPort ? port(opts.httpPort, '--http-port') : grpcPort + HTTP_PORT_OFFSET;
      const namespace = g.namespace ?? 'default';
      const temporalCli = findTemporalCli();
      const stateDir = path.resolve(opts.stateDir);
      const telemetry = telemetryFromFlags(opts);
      const maxCachedWorkflows = maxCachedWorkflowsFrom(opts.maxCachedWorkflows);
      await ensurePortsFree(opts.ip, [['--port', grpcPort], ['--ui-port', uiPort], ['--http-port', httpPort]]);
      const cfg = opts.worker ? workerConfig(opts.config) : undefined;
      if (!cfg && (opts.metrics !== undefined || opts.otel)) err.print('--metrics and --otel apply to the worker, and --no-worker runs none: ignored.');
      const activities = cfg ? createActivities({ config: cfg.source, env: process.env }) : undefined;

      // Ctrl-C during start-up: stop the server we are starting rather than leave it behind.
      const startup = new AbortController();
      const onSignal = () => startup.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      out.print(`Starting the Temporal dev server on ${opts.ip}:${grpcPort} (data in ${path.join(stateDir, 'temporal.db')})…`);
      let server: DevServer;
      try {
        server = await startDevServer({ temporalCli, ip: opts.ip, port: grpcPort, uiPort, httpPort, stateDir, namespace, signal: startup.signal });
      } catch (e) {
        if (e instanceof DevServerInterrupted) {
          err.print(e.message);
          process.exitCode = ExitCode.Interrupted;
          return;
        }
        throw e;
      } finally {
        process.removeListener('SIGINT', onSignal);
        process.removeListener('SIGTERM', onSignal);
      }
      try {
        const st = out.style;
        out.print(st.bold(`Temporal dev server ready at ${server.address}, namespace ${namespace}.`));
        out.print(`  Web UI      ${server.uiUrl}/namespaces/${namespace}/workflows`);
        const httpApi = `http://${opts.ip}:${httpPort}`;
        out.print(`  HTTP API    ${httpApi}`);
        out.print(`  server log  ${server.logFile}`);
        if (server.registration.added.length > 0) out.print(`  registered search attributes ${server.registration.added.join(', ')}`);
        const exports = [
          ...(grpcPort !== 7233 || opts.ip !== '127.0.0.1' ? [`TEMPORAL_ADDRESS=${server.address}`] : []),
          ...(uiPort !== grpcPort + UI_PORT_OFFSET ? [`GANTRY_UI_URL=${server.uiUrl}`] : []),
          ...(httpPort !== grpcPort + HTTP_PORT_OFFSET ? [`GANTRY_HTTP_API=${httpApi}`] : []),
        ];
        if (exports.length > 0) out.print(`  point gantry at it: export ${exports.join(' ')}`);
        out.print(`  start a release: gantry start <service> <version> --wait`);
        if (!activities) {
          out.print('No worker in this process (--no-worker): run `gantry worker` next to it. Ctrl-C stops the server.');
          await untilSignal();
        } else {
          out.print(`Running the worker here with the release config ${cfg!.summary}. Ctrl-C stops the worker, then the server.`);
          await runWorker(activities, { address: server.address, namespace, telemetry, maxCachedWorkflows });
        }
      } finally {
        err.print('Stopping the Temporal dev server…');
        await server.stop();
        err.print(`Stopped. Releases are kept in ${server.dbFile}; \`gantry dev\` picks them up again.`);
      }
    });
}
