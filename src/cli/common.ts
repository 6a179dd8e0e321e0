/**
 * What the command files share: the global connection flags, addressing a release, connecting, output.
 */
import { Option, type Command } from 'commander';
// Types only from the client: it loads the Temporal SDK, which `withClient` loads when a command connects.
import type { GantryClient } from '../client/context';
import { releaseAddress, workflowUrl, type ReleaseAddress } from '../client/snapshot';
import { styleFor, type Style } from '../client/style';
import type { SigningOptions } from '../client/decisions';
import { UsageError } from '../client/errors';
import { durationMs, durationProblem } from '../shared/duration';

export interface GlobalOptions {
  address?: string;
  namespace?: string;
  uiUrl?: string;
}

export function addGlobalOptions(program: Command): Command {
  return program
    .option('--address <host:port>', 'Temporal server (default: TEMPORAL_ADDRESS, the Temporal config profile, or localhost:7233)')
    .option('--namespace <name>', 'Temporal namespace (default: TEMPORAL_NAMESPACE, the profile, or "default")')
    .addOption(new Option('--ui-url <url>', 'Temporal Web UI base URL for links (default: the dev server\'s, gRPC port + 1000)').env('GANTRY_UI_URL'));
}

export function globals(cmd: Command): GlobalOptions {
  return cmd.optsWithGlobals<GlobalOptions>();
}

/** `[service] [version]` plus `--id`: every command that acts on one release takes these. */
export function addReleaseArguments(cmd: Command): Command {
  return cmd
    .argument('[service]', 'service name from the config, e.g. hello')
    .argument('[version]', 'version being released, e.g. 1.2.3')
    .option('--id <workflow-id>', 'address the release by its workflow id instead');
}

export function addressOf(service: string | undefined, version: string | undefined, opts: { id?: string }): ReleaseAddress {
  return releaseAddress(service, version, opts.id);
}

export interface SigningFlags {
  key?: string;
  validFor?: string;
  print?: boolean;
}

/** `--key`, `--valid-for`, `--print`: every command that makes a decision takes these. */
export function addSigningOptions(cmd: Command, what: string): Command {
  cmd
    .addOption(new Option('--key <file>', 'SSH key to sign with: a private key file, or the .pub of a key in ssh-agent (default: GANTRY_SIGNING_KEY, the only key in ssh-agent, ~/.ssh/id_ed25519)').env('GANTRY_SIGNING_KEY'))
    .option('--valid-for <duration>', 'how long the signed statement stays valid (max 24h)', '15m');
  if (what !== 'start') cmd.option('--print', `print the exact JSON to paste into the Web UI's signal dialog (signal "${what}") instead of sending it`);
  return cmd;
}

export function signingOptions(flags: SigningFlags): SigningOptions {
  let validForMs: number | undefined;
  if (flags.validFor) {
    // A bare number would be read as milliseconds (a statement expired before it arrives): the unit is required.
    const problem = durationProblem(flags.validFor);
    if (problem) throw new UsageError(`--valid-for ${problem}; e.g. --valid-for 15m (at most 24h).`);
    validForMs = durationMs(flags.validFor);
  }
  return { ...(flags.key ? { key: flags.key } : {}), ...(validForMs ? { validForMs } : {}) };
}

/** `--timeout <seconds>` in milliseconds; anything but a positive number of seconds is a usage error. */
export function timeoutMs(seconds: string): number {
  const n = Number(seconds);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--timeout "${seconds}" is not a number of seconds; give it like 30.`);
  return n * 1000;
}

/** Connect, run, always close. */
export async function withClient<T>(cmd: Command, fn: (gc: GantryClient) => Promise<T>): Promise<T> {
  const g = globals(cmd);
  const { openClient } = require('../client/context') as typeof import('../client/context');
  const gc = await openClient({
    ...(g.address ? { address: g.address } : {}),
    ...(g.namespace ? { namespace: g.namespace } : {}),
    ...(g.uiUrl ? { uiUrl: g.uiUrl } : {}),
  });
  try {
    return await fn(gc);
  } finally {
    await gc.close();
  }
}

export function webUrlFor(gc: GantryClient, workflowId: string): string | undefined {
  return workflowUrl(gc.uiBase, gc.namespace, workflowId);
}

export const out: { style: Style; print(line?: string): void; json(value: unknown): void } = {
  style: styleFor(process.stdout),
  print(line = '') {
    process.stdout.write(`${line}\n`);
  },
  json(value: unknown) {
    process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  },
};

export const err: { style: Style; print(line?: string): void } = {
  style: styleFor(process.stderr),
  print(line = '') {
    process.stderr.write(`${line}\n`);
  },
};

/** Set the exit code without throwing (outcomes of `--wait`, partial results). */
export function setExitCode(code: number): void {
  process.exitCode = code;
}

/** Ctrl-C while following stops following, not the release. */
export function abortOnInterrupt(): { signal: AbortSignal; dispose(): void } {
  const ctrl = new AbortController();
  const onSignal = () => ctrl.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return {
    signal: ctrl.signal,
    dispose() {
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
    },
  };
}
