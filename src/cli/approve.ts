/** `gantry approve` / `gantry reject`: a (signed) vote at the approval gate, answered by the release itself. */
import { Command } from 'commander';
import { buildVote, vote } from '../client/actions';
import { addReleaseArguments, addressOf, addSigningOptions, out, signingOptions, timeoutMs, withClient, type SigningFlags } from './common';
import { UsageError } from '../client/errors';

interface VoteOptions extends SigningFlags {
  as: string;
  breakGlass?: boolean;
  reason?: string;
  id?: string;
  timeout: string;
  json?: boolean;
}

function voteCommand(kind: 'approve' | 'reject'): Command {
  const cmd = new Command(kind)
    .summary(kind === 'approve' ? 'approve the production deploy of a release' : 'reject a release at the gate: nothing reaches production')
    .description(
      (kind === 'approve'
        ? 'Approve the release at its gate. Counts only while the gate is open, from an approver listed in the worker\'s config, once per approver and key; ' +
          'the requester may not approve their own release unless the config allows it. '
        : 'Reject the release at its gate: it ends `rejected` and nothing is deployed to production. ') +
        'In signed mode (the default) the vote is a statement naming the release, its run and the image digest at the gate, signed with your SSH key ' +
        '(ssh-agent or --key); --print prints it as JSON for the Web UI\'s signal dialog instead of sending it.',
    );
  addReleaseArguments(cmd)
    .requiredOption('--as <name>', 'your name as listed under approvals.approvers (and in allowedSigners) in the worker\'s config')
    .option('--reason <text>', kind === 'approve' ? 'why (recorded with the vote)' : 'why it is rejected (recorded and announced)')
    .option('--timeout <seconds>', 'how long to wait for a worker to take the vote', '30')
    .option('--json', 'print the gate\'s answer as JSON');
  if (kind === 'approve') cmd.option('--break-glass', 'an extra approval that lets the release through a freeze (members of the service\'s breakGlass group; needs --reason; recorded and announced)');
  addSigningOptions(cmd, kind)
    .action(async (service: string | undefined, version: string | undefined, opts: VoteOptions, c: Command) => {
      const addr = addressOf(service, version, opts);
      const waitMs = timeoutMs(opts.timeout);
      if (opts.breakGlass && !opts.reason?.trim()) throw new UsageError('--break-glass needs --reason "…": a break-glass approval is recorded and announced with its reason.');
      await withClient(c, async (gc) => {
        const message = await buildVote(gc, addr, kind, { as: opts.as, ...(opts.reason ? { reason: opts.reason } : {}), ...(opts.breakGlass ? { breakGlass: true } : {}) }, signingOptions(opts), waitMs);
        if (opts.print) {
          out.print(JSON.stringify(message));
          return;
        }
        const answer = await vote(gc, addr, kind, message, waitMs);
        if (opts.json) {
          out.json(answer);
          return;
        }
        out.print(`${out.style.ok('✓')} ${answer.message}`);
        out.print(`  gate ${answer.gate}: ${answer.approvals} of ${answer.required} approval(s). \`gantry status ${addr.args}\` shows the release.`);
      });
    });
  return cmd;
}

export const approveCommand = (): Command => voteCommand('approve');
export const rejectCommand = (): Command => voteCommand('reject');
