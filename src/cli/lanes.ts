/** `gantry lanes [service]`: which release holds each environment, and who waits for it. */
import { Command } from 'commander';
import { lanesText, listLanes } from '../client/lanes';
import { out, withClient } from './common';

export function lanesCommand(): Command {
  return new Command('lanes')
    .summary('which release holds each environment, and which wait for it')
    .description('One release at a time changes an environment of a service: it holds the lane, the others wait in the order they came. ' +
      'Lists every running lane (of one service with [service]): its holder, since when and for how long, and the releases waiting in order.')
    .argument('[service]', 'only this service\'s lanes')
    .option('--json', 'print the lanes as JSON')
    .action(async (service: string | undefined, opts: { json?: boolean }, c: Command) => {
      await withClient(c, async (gc) => {
        const views = await listLanes(gc, service);
        if (opts.json) {
          out.json(views);
          return;
        }
        for (const line of lanesText(views, Date.now(), service)) out.print(line);
      });
    });
}
