/** `gantry approve` / `gantry reject`: a vote at the approval gate, answered by the release itself. */
import { Command } from 'commander';
import { vote } from '../client/actions';
import { addReleaseArguments, addressOf, out, withClient } from './common';

interface VoteOptions {
  as: string;
  reason?: string;
  id?: string;
  timeout: string;
  json?: boolean;
}

function voteCommand(kind: 'approve' | 'reject'): Command {
  const cmd = new Command(kind)
    .summary(kind === 'approve' ? 'approve the production deploy of a release' : 'reject a release at the gate: nothing reaches production')
    .description(
      kind === 'approve'
        ? 'Approve the release at its gate. Counts only while the gate is open, from an approver listed in the config, once per approver; the command prints the gate\'s answer or the reason it refused.'
        : 'Reject the release at its gate: it ends `rejected` and nothing is deployed to production.',
    );
  addReleaseArguments(cmd)
    .requiredOption('--as <name>', 'your name as listed under approvals.approvers in the config')
    .option('--reason <text>', kind === 'approve' ? 'why (recorded with the vote)' : 'why it is rejected (recorded and announced)')
    .option('--timeout <seconds>', 'how long to wait for a worker to take the vote', '30')
    .option('--json', 'print the gate\'s answer as JSON')
    .action(async (service: string | undefined, version: string | undefined, opts: VoteOptions, c: Command) => {
      const addr = addressOf(service, version, opts);
      const answer = await withClient(c, (gc) =>
        vote(gc, addr, kind, { approver: opts.as, ...(opts.reason ? { reason: opts.reason } : {}) }, Number(opts.timeout) * 1000));
      if (opts.json) {
        out.json(answer);
        return;
      }
      out.print(`${out.style.ok('✓')} ${answer.message}`);
      out.print(`  gate ${answer.gate}: ${answer.approvals} of ${answer.required} approval(s). \`gantry status ${addr.args}\` shows the release.`);
    });
  return cmd;
}

export const approveCommand = (): Command => voteCommand('approve');
export const rejectCommand = (): Command => voteCommand('reject');
