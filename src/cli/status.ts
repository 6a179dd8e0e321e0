/** `gantry status`: one release: stage, every step, the gate, any pending decision, the outcome. */
import { Command } from 'commander';
import { formatStatus } from '../client/format';
import { readRelease } from '../client/release';
import { addReleaseArguments, addressOf, err, out, setExitCode, webUrlFor, withClient } from './common';
import { ExitCode } from './exit-codes';
import { followAndExit } from './following';

interface StatusOptions {
  id?: string;
  json?: boolean;
  follow?: boolean;
  plain?: boolean;
}

export function statusCommand(): Command {
  const cmd = new Command('status')
    .summary('show a release: stage, steps, gate, decision, outcome')
    .description(
      'Show one release: its stage; each step with its state, attempts, start and end times and outputs (commit, ' +
        'tag, digest, targets); the approval gate with approvals and refused attempts and why; a pending decision; ' +
        'the outcome and what to do next.',
    );
  addReleaseArguments(cmd)
    .option('--json', 'print the release status (ReleaseStatus) as JSON')
    .option('-f, --follow', 'keep following until the release ends; exit with the outcome\'s code (on a terminal the steps and the gate are redrawn in place)')
    .option('--plain', 'with --follow: print plain lines as things change, even on a terminal')
    .action(async (service: string | undefined, version: string | undefined, opts: StatusOptions, c: Command) => {
      const addr = addressOf(service, version, opts);
      await withClient(c, async (gc) => {
        const snap = await readRelease(gc, addr.workflowId);
        const webUrl = webUrlFor(gc, addr.workflowId);
        if (opts.json) {
          if (snap.status) out.json(snap.status);
          else {
            out.json({ workflowId: addr.workflowId, execution: snap.description.status.name, statusProblem: snap.statusProblem });
            setExitCode(ExitCode.NoWorker);
          }
        } else {
          out.print(formatStatus(addr, snap, { style: out.style, webUrl }));
          if (!snap.status) setExitCode(ExitCode.NoWorker);
        }
        if (opts.follow && !opts.json && snap.status && !snap.status.outcome) {
          out.print('');
          out.print(out.style.dim('Following; Ctrl-C stops following (the release keeps running).'));
          await followAndExit(gc, addr, { plain: opts.plain === true });
        } else if (!snap.status) {
          err.print(`Could not read the status of ${addr.label}: ${snap.statusProblem ?? 'unknown reason'}.`);
        }
      });
    });
  return cmd;
}
