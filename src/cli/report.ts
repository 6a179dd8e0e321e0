/** `gantry report`: deployment frequency, lead time, change failure rate and time to restore, from visibility and histories. */
import { Command } from 'commander';
import { UsageError } from '../client/errors';
import { DEFAULT_SINCE, deliveryReport, formatReport, reportCsv, reportWindow } from '../client/report';
import { out, withClient } from './common';

interface ReportOptions {
  service?: string;
  since: string;
  until?: string;
  json?: boolean;
  csv?: boolean;
}

export function reportCommand(): Command {
  return new Command('report')
    .summary('delivery figures: deployment frequency, lead time, change failure rate, time to restore')
    .description(
      'The delivery figures of the releases that ended in a window, computed from the visibility store and each ' +
        'release\'s event history (no worker needed): deployments and their frequency per day and week; lead time for ' +
        'changes (commit time to production healthy), median and p90; change failure rate (rolled back, or failed after ' +
        'production changed, over deployments); time to restore (a failed change\'s production deploy to the next healthy ' +
        'production), median. docs/cli.md defines each figure exactly.',
    )
    .option('--service <name>', 'only this service')
    .option('--since <when>', 'start of the window: a duration back from now (7d, 30d, 12h, 2w) or a date (2026-05-01, UTC) or date and time', DEFAULT_SINCE)
    .option('--until <when>', 'end of the window, written like --since (default: now)')
    .option('--json', 'print the figures and every deployment as JSON')
    .option('--csv', 'print the figures as CSV (a header row and one row)')
    .action(async (opts: ReportOptions, c: Command) => {
      if (opts.json && opts.csv) throw new UsageError('Give either --json or --csv, not both.');
      const window = reportWindow({ since: opts.since, ...(opts.until !== undefined ? { until: opts.until } : {}) });
      const report = await withClient(c, (gc) => deliveryReport(gc, { ...window, ...(opts.service ? { service: opts.service } : {}) }));
      if (opts.json) out.json(report);
      else if (opts.csv) process.stdout.write(reportCsv(report));
      else out.print(formatReport(report, out.style));
    });
}
