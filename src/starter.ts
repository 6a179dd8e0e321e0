/**
 * `gantry`, the release operator's command line: start a release, follow it, approve or reject it at the gate,
 * decide after a failed step, cancel it, list and inspect releases, and run the worker or a local dev server.
 * Each command lives in src/cli/ as a thin adapter over src/client/.
 */
import { Command } from 'commander';
import { addGlobalOptions, err } from './cli/common';
import { EXIT_CODE_HELP } from './cli/exit-codes';

const { version } = require('../../package.json') as { version: string };

/**
 * Each command, loaded only when asked for: a command's module pulls in what it needs (the Temporal client, the
 * worker and every step, the lab…), and loading all of them took most of the CLI's start-up (docs/performance.md).
 */
const COMMANDS: Record<string, () => Command[]> = {
  start: () => [(require('./cli/start') as typeof import('./cli/start')).startCommand()],
  status: () => [(require('./cli/status') as typeof import('./cli/status')).statusCommand()],
  list: () => [(require('./cli/list') as typeof import('./cli/list')).listCommand()],
  report: () => [(require('./cli/report') as typeof import('./cli/report')).reportCommand()],
  history: () => [(require('./cli/history') as typeof import('./cli/history')).historyCommand()],
  approve: () => [(require('./cli/approve') as typeof import('./cli/approve')).approveCommand()],
  reject: () => [(require('./cli/approve') as typeof import('./cli/approve')).rejectCommand()],
  decide: () => [(require('./cli/decide') as typeof import('./cli/decide')).decideCommand()],
  cancel: () => [(require('./cli/cancel') as typeof import('./cli/cancel')).cancelCommand()],
  lanes: () => [(require('./cli/lanes') as typeof import('./cli/lanes')).lanesCommand()],
  freeze: () => [(require('./cli/freeze') as typeof import('./cli/freeze')).freezeCommand()],
  unfreeze: () => [(require('./cli/freeze') as typeof import('./cli/freeze')).unfreezeCommand()],
  freezes: () => [(require('./cli/freeze') as typeof import('./cli/freeze')).freezesCommand()],
  worker: () => [(require('./cli/worker') as typeof import('./cli/worker')).workerCommand()],
  dev: () => [(require('./cli/dev') as typeof import('./cli/dev')).devCommand()],
  setup: () => [(require('./cli/setup') as typeof import('./cli/setup')).setupCommand()],
  audit: () => [(require('./cli/audit') as typeof import('./cli/audit')).auditCommand()],
  verify: () => [(require('./cli/verify') as typeof import('./cli/verify')).verifyCommand()],
};

/** Global options that take a value (the token after them is not the command). */
const VALUE_OPTIONS = new Set(['--address', '--namespace', '--ui-url']);

/**
 * The commands to register for these arguments: the one named, or all of them when none is (`gantry`, `gantry
 * help …`, a mistyped name, so that help lists every command and commander can suggest the right one).
 */
export function commandsFor(argv: string[]): Command[] {
  const args = argv.slice(2);
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') break;
    if (a.startsWith('-')) {
      if (VALUE_OPTIONS.has(a)) i += 1;
      continue;
    }
    const load = Object.hasOwn(COMMANDS, a) ? COMMANDS[a] : undefined;
    if (load) return load();
    break;
  }
  return Object.values(COMMANDS).flatMap((load) => load());
}

export function buildProgram(argv: string[] = []): Command {
  const program = new Command('gantry')
    .description('Durable releases on Temporal: preflight → tag → build → staging + smoke → approval → production + health → announce.')
    .version(version, '-V, --version')
    .showHelpAfterError('(run `gantry help <command>` for its options)')
    .configureOutput({ outputError: (str, write) => write(err.style.bad(str)) })
    .exitOverride()
    .addHelpText('after', `\nA release is addressed as <service> <version> (or --id <workflow-id>).\n\n${EXIT_CODE_HELP}\n\nDocs: docs/cli.md`);
  addGlobalOptions(program);
  for (const cmd of commandsFor(argv)) {
    program.addCommand(cmd.exitOverride().showHelpAfterError(`(run \`gantry ${cmd.name()} --help\` for its options)`)
      .configureOutput({ outputError: (str, write) => write(err.style.bad(str)) }));
  }
  return program;
}

export async function main(argv: string[] = process.argv): Promise<number> {
  try {
    await buildProgram(argv).parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    // Loaded only on a failure: it knows every error the CLI can meet, and loads the SDK's and the signing code's.
    const { report } = require('./cli/errors') as typeof import('./cli/errors');
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
