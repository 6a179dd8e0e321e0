/** `gantry worker`: run the release steps and workflows from the task queue until Ctrl-C / SIGTERM. */
import { Command } from 'commander';
import { createActivities } from '../activities';
import { runWorker, workerConfig } from '../worker';
import { err, globals } from './common';

interface WorkerOptions {
  taskQueue?: string;
  config?: string;
}

export function workerCommand(): Command {
  return new Command('worker')
    .summary('run a gantry worker (stateless; run as many as you like)')
    .description(
      'Poll the release task queue and run releases and their steps with the real step implementations. Stops ' +
        'gracefully on Ctrl-C or SIGTERM: running steps get time to finish, anything unfinished moves to another worker.',
    )
    .option('--task-queue <name>', 'task queue to poll (default gantry-releases)')
    .option('-c, --config <file|dir>', 'the release config this worker owns (default: GANTRY_CONFIG); read again for every release')
    .action(async (opts: WorkerOptions, c: Command) => {
      const g = globals(c);
      const { source, summary } = workerConfig(opts.config);
      err.print(`gantry worker: release config ${summary}`);
      await runWorker(createActivities({ config: source, env: process.env }), {
        ...(g.address ? { address: g.address } : {}),
        ...(g.namespace ? { namespace: g.namespace } : {}),
        ...(opts.taskQueue ? { taskQueue: opts.taskQueue } : {}),
      });
    });
}
