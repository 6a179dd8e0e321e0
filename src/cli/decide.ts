/** `gantry decide retry|abort`: the operator's (signed) decision after a step used up its retries. */
import { Argument, Command } from 'commander';
import { buildDecision, decide } from '../client/actions';
import type { Decision } from '../shared/release';
import { addReleaseArguments, addressOf, addSigningOptions, out, signingOptions, timeoutMs, withClient, type SigningFlags } from './common';

interface DecideOptions extends SigningFlags {
  as: string;
  reason?: string;
  id?: string;
  timeout: string;
  json?: boolean;
}

export function decideCommand(): Command {
  const cmd = new Command('decide')
    .summary('retry or abort a release waiting for a decision')
    .description(
      'When a step fails after all its retries, the release waits for an operator: `retry` runs the step again ' +
        '(fix the cause first), `abort` ends the release, `skip` passes a step the config marks skippable (smoke, announce) and goes on. Refused when no decision is pending or you are not one of the ' +
        'service\'s operators. In signed mode the decision names the pending step and is signed with your SSH key.',
    )
    .addArgument(new Argument('<decision>', 'what to do (skip: only steps the config marks skippable, e.g. announce)').choices(['retry', 'abort', 'skip']));
  addReleaseArguments(cmd)
    .requiredOption('--as <name>', 'your name, as in the worker\'s allowedSigners; recorded with the decision')
    .option('--reason <text>', 'why, recorded with the decision')
    .option('--timeout <seconds>', 'how long to wait for a worker to take the decision', '30')
    .option('--json', 'print the answer as JSON');
  addSigningOptions(cmd, 'decide')
    .action(async (decision: Decision, service: string | undefined, version: string | undefined, opts: DecideOptions, c: Command) => {
      const addr = addressOf(service, version, opts);
      const waitMs = timeoutMs(opts.timeout);
      await withClient(c, async (gc) => {
        const message = await buildDecision(gc, addr, decision, { as: opts.as, ...(opts.reason ? { reason: opts.reason } : {}) }, signingOptions(opts), waitMs);
        if (opts.print) {
          out.print(JSON.stringify(message));
          return;
        }
        const answer = await decide(gc, addr, decision, message, waitMs);
        if (opts.json) {
          out.json({ decision, message: answer });
          return;
        }
        out.print(`${out.style.ok('✓')} ${answer}`);
        out.print(`  Follow it with \`gantry status ${addr.args} --follow\`.`);
      });
    });
  return cmd;
}
