/** `gantry decide retry|abort`: the operator's decision after a step used up its retries. */
import { Argument, Command } from 'commander';
import { decide } from '../client/actions';
import type { Decision } from '../shared/release';
import { addReleaseArguments, addressOf, out, withClient } from './common';

interface DecideOptions {
  as: string;
  reason?: string;
  id?: string;
  timeout: string;
}

export function decideCommand(): Command {
  const cmd = new Command('decide')
    .summary('retry or abort a release waiting for a decision')
    .description(
      'When a step fails after all its retries, the release waits for an operator: `retry` runs the step again ' +
        '(fix the cause first), `abort` ends the release. Refused when no decision is pending.',
    )
    .addArgument(new Argument('<decision>', 'what to do').choices(['retry', 'abort']));
  addReleaseArguments(cmd)
    .requiredOption('--as <name>', 'your name, recorded with the decision')
    .option('--reason <text>', 'why, recorded with the decision')
    .option('--timeout <seconds>', 'how long to wait for a worker to take the decision', '30')
    .action(async (decision: Decision, service: string | undefined, version: string | undefined, opts: DecideOptions, c: Command) => {
      const addr = addressOf(service, version, opts);
      const answer = await withClient(c, (gc) =>
        decide(gc, addr, { decision, operator: opts.as, ...(opts.reason ? { reason: opts.reason } : {}) }, Number(opts.timeout) * 1000));
      out.print(`${out.style.ok('✓')} ${answer}`);
      out.print(`  Follow it with \`gantry status ${addr.args} --follow\`.`);
    });
  return cmd;
}
