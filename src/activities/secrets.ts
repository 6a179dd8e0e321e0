/**
 * Secret references, resolved on the worker. Config and workflow input only ever hold `{ env: NAME }` or
 * `{ file: PATH }`; the value is read here, at the moment an activity needs it, and never put into a message.
 */
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { SecretRef } from '../config/schema';
import { GantryErrorType, nonRetryable } from '../shared/errors';

/** How a reference reads in messages: `env GANTRY_WEBHOOK_URL` or `file /etc/gantry/deploy_key`. */
export function describeSecretRef(ref: SecretRef): string {
  return 'env' in ref ? `env ${ref.env}` : `file ${ref.file}`;
}

/**
 * The secret's value. A reference that points at nothing is a non-retryable SecretMissing naming the reference
 * (never a value) and how to provide it; retrying cannot make an environment variable appear.
 *
 * File values lose trailing line breaks (editors add one); keys and tokens keep everything else.
 */
export function resolveSecret(ref: SecretRef, env: NodeJS.ProcessEnv): string {
  if ('env' in ref) {
    const value = env[ref.env];
    if (value === undefined || value.trim() === '') {
      throw nonRetryable(
        GantryErrorType.SecretMissing,
        `The secret reference {env: ${ref.env}} is ${value === undefined ? 'not set' : 'empty'} on this worker. ` +
          `Set the environment variable ${ref.env} in the worker's environment (systemd unit, compose file, shell) and restart the worker, ` +
          'or point the reference at a file with {file: /path/readable/by/the/worker}.',
        { reference: describeSecretRef(ref) },
      );
    }
    return value;
  }
  const file = path.resolve(ref.file);
  let problem: string;
  try {
    if (statSync(file).isDirectory()) {
      problem = 'is a directory, not a file';
    } else {
      const value = readFileSync(file, 'utf8').replace(/[\r\n]+$/, '');
      if (value.trim() !== '') return value;
      problem = 'is empty';
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    problem = code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'is not readable by the worker user' : `cannot be read (${code ?? 'error'})`;
  }
  throw nonRetryable(
    GantryErrorType.SecretMissing,
    `The secret reference {file: ${ref.file}} ${problem}${file !== ref.file ? ` (resolved to ${file})` : ''} on this worker. ` +
      'Write the secret into that file on the worker host (readable by the worker user, e.g. mode 600), ' +
      'or point the reference at an environment variable with {env: NAME}.',
    { reference: describeSecretRef(ref) },
  );
}

/** Replace every occurrence of the given secret values in `text` (for error output from tools). */
export function redact(text: string, secrets: (string | undefined)[]): string {
  let out = text;
  for (const s of secrets) {
    if (s && s.length >= 4) out = out.split(s).join('***');
  }
  return out;
}
