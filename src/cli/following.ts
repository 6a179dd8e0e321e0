/** Following a release from a command (`start --wait`, `status --follow`, `cancel --wait`) and the exit code it ends with. */
import type { GantryClient } from '../client/context';
import { followRelease, type FollowOptions, type FollowResult } from '../client/follow';
import { formatTime } from '../client/format';
import { liveTerminal } from '../client/live';
import { describeState, type ReleaseAddress } from '../client/release';
import { abortOnInterrupt, err, out, setExitCode, webUrlFor } from './common';
import { ExitCode, outcomeExitCode } from './exit-codes';

/**
 * Follow until the end (or the gate), print the closing words, and set the exit code. Ctrl-C stops following only.
 * On a terminal the steps and the gate are a block redrawn in place; `plain` (`--plain`), NO_COLOR, TERM=dumb or
 * output that is not a terminal print plain lines instead.
 */
export async function followAndExit(
  gc: GantryClient,
  addr: ReleaseAddress,
  opts: Pick<FollowOptions, 'approveAs' | 'approveReason' | 'stopAtGate' | 'signing' | 'runId'> & { plain?: boolean } = {},
): Promise<void> {
  const { plain, ...follow } = opts;
  const interrupt = abortOnInterrupt();
  let result: FollowResult;
  try {
    result = await followRelease(gc, addr, {
      print: (line) => out.print(line),
      style: out.style,
      webUrl: webUrlFor(gc, addr.workflowId),
      signal: interrupt.signal,
      live: liveTerminal(process.stdout, process.env, plain === true),
      ...follow,
    });
  } finally {
    interrupt.dispose();
  }
  setExitCode(followExitCode(result, addr));
}

export function followExitCode(result: FollowResult, addr: ReleaseAddress): number {
  switch (result.kind) {
    case 'ended':
      if (result.outcome !== 'succeeded') {
        err.print(`Release ${addr.label} ended ${result.outcome}. \`gantry history ${addr.args}\` shows every step and failure.`);
      }
      return outcomeExitCode(result.outcome);
    case 'gate':
      out.print(`The release waits at the gate. Follow it again with \`gantry status ${addr.args} --follow\`.`);
      return ExitCode.Ok;
    case 'interrupted':
      err.print(`Stopped following at ${formatTime(new Date())}; the release keeps running on the server. Follow it again with \`gantry status ${addr.args} --follow\`.`);
      return ExitCode.Interrupted;
    case 'closed':
      err.print(`Release ${addr.label} ${describeState(result.description)} without reporting an outcome (${result.description.status.name.toLowerCase()}). ` +
        `\`gantry history ${addr.args}\` shows what happened.`);
      return result.description.status.name === 'CANCELLED' ? ExitCode.Cancelled : ExitCode.Failed;
  }
}
