/** `gantry cancel`: stop a release (a signed decision). Before production changes it ends `cancelled`; after, production work finishes first. */
import os from 'node:os';
import { Command } from 'commander';
import { buildCancel, cancelRelease } from '../client/actions';
import { addReleaseArguments, addressOf, addSigningOptions, out, signingOptions, timeoutMs, withClient, type SigningFlags } from './common';
import { followAndExit } from './following';

interface CancelOptions extends SigningFlags {
  id?: string;
  wait?: boolean;
  as: string;
  reason?: string;
  timeout: string;
  json?: boolean;
}

function defaultUser(): string {
  try {
    return process.env.USER ?? os.userInfo().username;
  } catch {
    return 'unknown';
  }
}

export function cancelCommand(): Command {
  const cmd = new Command('cancel')
    .summary('cancel a running release')
    .description(
      'Ask the release to stop. Before the production deploy it ends `cancelled` and production is untouched; once ' +
        'the production deploy has begun, deploy, health and any rollback finish first, then it ends `cancelled`. ' +
        'In signed mode the cancellation is a statement signed with your SSH key, from one of the service\'s operators.',
    );
  addReleaseArguments(cmd)
    .option('--as <name>', 'your name, as in the worker\'s allowedSigners (default: $USER)', defaultUser())
    .option('--reason <text>', 'why, recorded with the cancellation')
    .option('--timeout <seconds>', 'how long to wait for a worker to take the cancellation', '30')
    .option('--json', 'print the answer as JSON')
    .option('-w, --wait', 'wait until the release has ended and exit with its outcome\'s code (13 for cancelled)');
  addSigningOptions(cmd, 'cancel')
    .action(async (service: string | undefined, version: string | undefined, opts: CancelOptions, c: Command) => {
      const addr = addressOf(service, version, opts);
      const waitMs = timeoutMs(opts.timeout);
      await withClient(c, async (gc) => {
        const message = await buildCancel(gc, addr, { as: opts.as, ...(opts.reason ? { reason: opts.reason } : {}) }, signingOptions(opts), waitMs);
        if (opts.print) {
          out.print(JSON.stringify(message));
          return;
        }
        const answer = await cancelRelease(gc, addr, message, waitMs);
        if (opts.json && !opts.wait) {
          out.json({ cancelled: true, message: answer });
          return;
        }
        out.print(`${out.style.ok('✓')} ${answer}`);
        if (!opts.wait) {
          out.print(`  \`gantry status ${addr.args}\` shows when it has ended.`);
          return;
        }
        await followAndExit(gc, addr);
      });
    });
  return cmd;
}
