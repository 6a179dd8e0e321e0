/**
 * `gantry`, the release operator's command line: start a release, follow it, approve or reject it at the gate,
 * decide after a failed step, cancel it, list and inspect releases, and run the worker or a local dev server.
 * Each command lives in src/cli/ as a thin adapter over src/client/.
 */
import { Command } from 'commander';
import { approveCommand, rejectCommand } from './cli/approve';
import { auditCommand } from './cli/audit';
import { cancelCommand } from './cli/cancel';
import { addGlobalOptions, err } from './cli/common';
import { decideCommand } from './cli/decide';
import { devCommand } from './cli/dev';
import { report } from './cli/errors';
import { EXIT_CODE_HELP } from './cli/exit-codes';
import { freezeCommand, freezesCommand, unfreezeCommand } from './cli/freeze';
import { historyCommand } from './cli/history';
import { lanesCommand } from './cli/lanes';
import { listCommand } from './cli/list';
import { reportCommand } from './cli/report';
import { setupCommand } from './cli/setup';
import { startCommand } from './cli/start';
import { statusCommand } from './cli/status';
import { verifyCommand } from './cli/verify';
import { workerCommand } from './cli/worker';

const { version } = require('../../package.json') as { version: string };

export function buildProgram(): Command {
  const program = new Command('gantry')
    .description('Durable releases on Temporal: preflight → tag → build → staging + smoke → approval → production + health → announce.')
    .version(version, '-V, --version')
    .showHelpAfterError('(run `gantry help <command>` for its options)')
    .configureOutput({ outputError: (str, write) => write(err.style.bad(str)) })
    .exitOverride()
    .addHelpText('after', `\nA release is addressed as <service> <version> (or --id <workflow-id>).\n\n${EXIT_CODE_HELP}\n\nDocs: docs/cli.md`);
  addGlobalOptions(program);
  for (const cmd of [
    startCommand(), statusCommand(), listCommand(), reportCommand(), historyCommand(), approveCommand(), rejectCommand(), decideCommand(),
    cancelCommand(), lanesCommand(), freezeCommand(), unfreezeCommand(), freezesCommand(), workerCommand(), devCommand(), setupCommand(), auditCommand(), verifyCommand(),
  ]) {
    program.addCommand(cmd.exitOverride().showHelpAfterError(`(run \`gantry ${cmd.name()} --help\` for its options)`)
      .configureOutput({ outputError: (str, write) => write(err.style.bad(str)) }));
  }
  return program;
}

export async function main(argv: string[] = process.argv): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    const { code, message } = report(e);
    if (message) err.print(`${err.style.bad('gantry:')} ${message}`);
    return code;
  }
}

if (require.main === module) {
  main().then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`gantry: ${String(e)}\n`);
      process.exit(1);
    },
  );
}
