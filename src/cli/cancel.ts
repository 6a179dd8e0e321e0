/** `gantry cancel`: stop a release. Before production changes it ends `cancelled`; after, production work finishes first. */
import { Command } from 'commander';
import { cancelRelease } from '../client/actions';
import { addReleaseArguments, addressOf, out, withClient } from './common';
import { followAndExit } from './following';

interface CancelOptions {
  id?: string;
  wait?: boolean;
}

export function cancelCommand(): Command {
  const cmd = new Command('cancel')
    .summary('cancel a running release')
    .description(
      'Ask the release to stop. Before the production deploy it ends `cancelled` and production is untouched; once ' +
        'the production deploy has begun, deploy, health and any rollback finish first, then it ends `cancelled`.',
    );
  addReleaseArguments(cmd)
    .option('-w, --wait', 'wait until the release has ended and exit with its outcome\'s code (13 for cancelled)')
    .action(async (service: string | undefined, version: string | undefined, opts: CancelOptions, c: Command) => {
      const addr = addressOf(service, version, opts);
      await withClient(c, async (gc) => {
        await cancelRelease(gc, addr);
        out.print(`Cancellation requested for release ${addr.label}. Before the production deploy it stops at once; ` +
          'if production is already changing, deploy, health and any rollback finish first.');
        if (!opts.wait) {
          out.print(`  \`gantry status ${addr.args}\` shows when it has ended.`);
          return;
        }
        await followAndExit(gc, addr);
      });
    });
  return cmd;
}
