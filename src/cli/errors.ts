/** Turning any error into the message the user sees and the documented exit code. */
import { CommanderError } from 'commander';
import { ConfigError } from '../config/errors';
import { ServerUnreachableError } from '../connection';
import {
  NoWorkerError,
  RefusedError,
  ReleaseExistsError,
  ReleaseNotFoundError,
  SetupRequiredError,
  UsageError,
} from '../client/errors';
import { isUnavailable } from '../client/release';
import { SigningError } from '../client/signing';
import { NamespaceNotFoundError } from '@temporalio/common';
import { ExitCode } from './exit-codes';

export interface Reported {
  code: ExitCode;
  /** Empty when the message was already printed (commander prints its own usage errors). */
  message: string;
}

export function report(err: unknown, env: NodeJS.ProcessEnv = process.env): Reported {
  if (err instanceof CommanderError) {
    const ok = ['commander.helpDisplayed', 'commander.help', 'commander.version'].includes(err.code);
    return { code: ok ? ExitCode.Ok : ExitCode.Usage, message: '' };
  }
  if (err instanceof ConfigError) {
    return { code: ExitCode.InvalidConfig, message: `${err.message}\nFix the file and run the command again.` };
  }
  if (err instanceof UsageError) return { code: ExitCode.Usage, message: err.message };
  if (err instanceof ReleaseNotFoundError) return { code: ExitCode.NotFound, message: err.message };
  if (err instanceof ReleaseExistsError) return { code: ExitCode.AlreadyExists, message: err.message };
  if (err instanceof RefusedError) return { code: ExitCode.Refused, message: err.message };
  if (err instanceof SetupRequiredError) return { code: ExitCode.SetupRequired, message: err.message };
  if (err instanceof NoWorkerError) return { code: ExitCode.NoWorker, message: err.message };
  if (err instanceof SigningError) return { code: ExitCode.SigningFailed, message: err.message };
  if (err instanceof ServerUnreachableError) return { code: ExitCode.ServerUnreachable, message: err.message };
  if (isUnavailable(err)) {
    return {
      code: ExitCode.ServerUnreachable,
      message: `Lost the connection to the Temporal server (${err instanceof Error ? err.message : String(err)}). Check that it runs (\`gantry dev\`) and retry.`,
    };
  }
  if (err instanceof NamespaceNotFoundError) {
    return {
      code: ExitCode.Usage,
      message: `Namespace ${err.namespace} does not exist on this server. Pass an existing one with --namespace (or TEMPORAL_NAMESPACE), or create it with \`temporal operator namespace create\`.`,
    };
  }
  let detail = err instanceof Error ? (env.GANTRY_DEBUG ? err.stack ?? err.message : err.message) : String(err);
  // The client's ServiceError says only which call failed; the server's reason is in its cause.
  if (err instanceof Error && err.cause instanceof Error && !detail.includes(err.cause.message)) detail += ` (${err.cause.message})`;
  return {
    code: ExitCode.Unexpected,
    message: `Unexpected error: ${detail}\nIf this persists, rerun with GANTRY_DEBUG=1 for the stack trace and report it with the command you ran.`,
  };
}
