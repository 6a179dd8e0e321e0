/**
 * The `gantry` CLI's exit codes (documented in docs/cli.md). Scripts branch on these, so they never change
 * meaning; new ones get new numbers.
 */
import type { Outcome } from '../shared/release';

export const ExitCode = {
  /** The command did what was asked. */
  Ok: 0,
  /** Something unexpected (a defect, or an error gantry does not know how to explain). */
  Unexpected: 1,
  /** Usage or bad input: unknown option, missing argument, unknown service, version not semver. */
  Usage: 2,
  /** The config file is invalid (the message names the path inside it, the problem and the fix). */
  InvalidConfig: 3,
  /** No release with that service and version (or workflow id). */
  NotFound: 4,
  /** The release already exists (running, or succeeded before). */
  AlreadyExists: 5,
  /** The release refused the request: gate not open, gate closed, approver not allowed, duplicate vote, no decision pending. */
  Refused: 6,
  /** The server is reachable but not set up for gantry: its search attributes are not registered (`gantry setup`). */
  SetupRequired: 7,
  /** No worker answered within the time allowed (start one with `gantry worker` or `gantry dev`). */
  NoWorker: 8,
  /** A decision could not be signed: no SSH key found, an encrypted key outside ssh-agent, an unsupported key type. */
  SigningFailed: 9,
  /** The Temporal server cannot be reached (EX_UNAVAILABLE). */
  ServerUnreachable: 69,
  /** `start --wait` / `status --follow`: how the release ended. */
  RolledBack: 10,
  Rejected: 11,
  Aborted: 12,
  Cancelled: 13,
  Failed: 14,
  /** Interrupted by Ctrl-C while following (the release itself keeps running). */
  Interrupted: 130,
  /** `gantry audit verify`: the audit log's hash chain is broken (a line edited, removed, reordered or cut off). */
  AuditChainBroken: 15,
  /** `gantry verify`: the release manifest does not verify (changed, unsigned, wrong key, a bad approval signature). */
  ManifestInvalid: 16,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** The exit code `start --wait` ends with for each outcome. */
export function outcomeExitCode(outcome: Outcome): ExitCode {
  switch (outcome) {
    case 'succeeded':
    case 'planned':
      return ExitCode.Ok;
    case 'rolled_back':
      return ExitCode.RolledBack;
    case 'rejected':
      return ExitCode.Rejected;
    case 'aborted':
      return ExitCode.Aborted;
    case 'cancelled':
      return ExitCode.Cancelled;
    case 'failed':
      return ExitCode.Failed;
  }
}

/** The table printed by `gantry --help` and docs/cli.md. */
export const EXIT_CODE_HELP = `Exit codes:
  0   ok (with --wait: the release succeeded)
  1   unexpected error
  2   usage or bad input
  3   invalid config
  4   release not found
  5   release already exists
  6   refused (gate not open, gate closed, approver not allowed, duplicate vote, no decision pending)
  7   server not set up for gantry (run \`gantry setup\`)
  8   no worker answered (run \`gantry worker\` or \`gantry dev\`)
  9   could not sign the decision (no SSH key: --key FILE, GANTRY_SIGNING_KEY or ssh-agent)
  10  rolled back   11 rejected   12 aborted   13 cancelled   14 failed   (with --wait / --follow)
  69  Temporal server unreachable
  130 interrupted while following (the release keeps running)
  15  audit log chain broken (gantry audit verify)   16  release manifest does not verify (gantry verify)`;
