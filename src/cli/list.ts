/** `gantry list`: releases found through their search attributes (service, stage, outcome). */
import { Command } from 'commander';
import { formatReleaseList, listReleases, OUTCOMES, STAGES } from '../client/list';
import { UsageError } from '../client/errors';
import { out, withClient } from './common';

interface ListOptions {
  service?: string;
  stage?: string;
  outcome?: string;
  limit: string;
  json?: boolean;
}

export function listCommand(): Command {
  return new Command('list')
    .summary('list releases, filtered by service, stage or outcome')
    .description(`List releases, newest first, through the server's visibility store.\nStages: ${STAGES.join(', ')}.\nOutcomes: ${OUTCOMES.join(', ')}.`)
    .option('--service <name>', 'only this service')
    .option('--stage <stage>', 'only releases at this stage (e.g. awaiting-approval, awaiting-decision, done)')
    .option('--outcome <outcome>', 'only releases that ended this way (e.g. failed, rolled_back)')
    .option('--limit <n>', 'at most this many', '50')
    .option('--json', 'print the releases as JSON')
    .action(async (opts: ListOptions, c: Command) => {
      const limit = Number(opts.limit);
      if (!Number.isInteger(limit) || limit < 1) throw new UsageError(`--limit "${opts.limit}" is not a positive whole number.`);
      const filters = {
        ...(opts.service ? { service: opts.service } : {}),
        ...(opts.stage ? { stage: opts.stage } : {}),
        ...(opts.outcome ? { outcome: opts.outcome } : {}),
        limit,
      };
      const rows = await withClient(c, (gc) => listReleases(gc, filters));
      if (opts.json) out.json(rows);
      else out.print(formatReleaseList(rows, filters, out.style));
    });
}
