/** `gantry worker`: run the release steps and workflows from the task queue until Ctrl-C / SIGTERM. */
import { Command } from 'commander';
import { createActivities } from '../activities';
import { runWorker } from '../worker';
import { globals } from './common';

interface WorkerOptions {
  taskQueue?: string;
}

export function workerCommand(): Command {
  return new Command('worker')
    .summary('run a gantry worker (stateless; run as many as you like)')
    .description(
      'Poll the release task queue and run releases and their steps with the real step implementations. Stops ' +
        'gracefully on Ctrl-C or SIGTERM: running steps get time to finish, anything unfinished moves to another worker.',
    )
    .option('--task-queue <name>', 'task queue to poll (default gantry-releases)')
    .action(async (opts: WorkerOptions, c: Command) => {
      const g = globals(c);
      await runWorker(createActivities(), {
        ...(g.address ? { address: g.address } : {}),
        ...(g.namespace ? { namespace: g.namespace } : {}),
        ...(opts.taskQueue ? { taskQueue: opts.taskQueue } : {}),
      });
    });
}
