/** `gantry list`: releases found through their search attributes (service, stage, outcome); `--json`/`--csv` export them. */
import { Command } from 'commander';
import { formatReleaseList, listReleases, OUTCOMES, releasesCsv, STAGES } from '../client/list';
import { UsageError } from '../client/errors';
import { out, withClient } from './common';

interface ListOptions {
  service?: string;
  stage?: string;
  outcome?: string;
  limit: string;
  json?: boolean;
  csv?: boolean;
}

export function listCommand(): Command {
  return new Command('list')
    .summary('list releases, filtered by service, stage or outcome; export them as JSON or CSV')
    .description(`List releases, newest first, through the server's visibility store.\nStages: ${STAGES.join(', ')}.\nOutcomes: ${OUTCOMES.join(', ')}.\n` +
      '--json and --csv export the release history: service, version, workflowId, runId, status, stage, outcome, startedAt, endedAt, ' +
      'durationSeconds, requestedBy (CSV with a header row).')
    .option('--service <name>', 'only this service')
    .option('--stage <stage>', 'only releases at this stage (e.g. awaiting-approval, awaiting-decision, done)')
    .option('--outcome <outcome>', 'only releases that ended this way (e.g. failed, rolled_back)')
    .option('--limit <n>', 'at most this many', '50')
    .option('--json', 'print the releases as JSON')
    .option('--csv', 'print the releases as CSV (RFC 4180, a header row first)')
    .action(async (opts: ListOptions, c: Command) => {
      const limit = Number(opts.limit);
      if (!Number.isInteger(limit) || limit < 1) throw new UsageError(`--limit "${opts.limit}" is not a positive whole number.`);
      if (opts.json && opts.csv) throw new UsageError('Give either --json or --csv, not both.');
      const filters = {
        ...(opts.service ? { service: opts.service } : {}),
        ...(opts.stage ? { stage: opts.stage } : {}),
        ...(opts.outcome ? { outcome: opts.outcome } : {}),
        limit,
      };
      // The export also says who asked for each release, which only the history keeps (one small read each).
      const rows = await withClient(c, (gc) => listReleases(gc, filters, { requestedBy: Boolean(opts.json || opts.csv) }));
      if (opts.json) out.json(rows);
      else if (opts.csv) process.stdout.write(releasesCsv(rows));
      else out.print(formatReleaseList(rows, filters, out.style));
    });
}
