/** `gantry history`: the on-call timeline of a release, from its event history. */
import { Command } from 'commander';
import { buildTimeline, formatTimeline } from '../client/history';
import { describeRelease, readRelease, translateRpcError } from '../client/release';
import { addReleaseArguments, addressOf, out, withClient } from './common';

interface HistoryOptions {
  id?: string;
  json?: boolean;
}

export function historyCommand(): Command {
  const cmd = new Command('history')
    .summary('the timeline of a release, read from its event history')
    .description(
      'The on-call view: when the release started and who asked; each stage; each step with attempts, failures and ' +
        'duration; every approve/reject/decide with who sent it, when, and whether it was taken or refused; ' +
        'cancellation; the rollback; how it ended. Reads the event history, so it works without a worker ' +
        '(refused signals are marked when a worker answers the status query).',
    );
  addReleaseArguments(cmd)
    .option('--json', 'print the timeline entries as JSON')
    .action(async (service: string | undefined, version: string | undefined, opts: HistoryOptions, c: Command) => {
      const addr = addressOf(service, version, opts);
      await withClient(c, async (gc) => {
        const d = await describeRelease(gc, addr.workflowId);
        let history;
        try {
          history = await gc.client.workflow.getHandle(addr.workflowId, d.runId).fetchHistory();
        } catch (e) {
          throw translateRpcError(e, gc, addr.workflowId);
        }
        const snap = await readRelease(gc, addr.workflowId, 3000);
        const entries = buildTimeline(history, snap.status);
        if (opts.json) out.json({ workflowId: d.workflowId, runId: d.runId, entries });
        else out.print(formatTimeline(addr.label, d.workflowId, d.runId, entries, out.style));
      });
    });
  return cmd;
}
