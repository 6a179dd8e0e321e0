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

/**
 * Patterns of credentials that may turn up in a tool's output whatever this worker knows: private key blocks,
 * GitHub and Slack tokens, authorization headers and bearer tokens, AWS access key ids, passwords in URLs.
 */
const SECRET_PATTERNS: { pattern: RegExp; replace: string }[] = [
  // PEM / OpenSSH / PGP private key blocks, whole (a block cut off by the output's end is masked to the end).
  {
    pattern: /-----BEGIN ([A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?)-----[\s\S]*?(?:-----END \1-----|$(?![\s\S]))/g,
    replace: '-----BEGIN $1----- *** -----END $1-----',
  },
  { pattern: /\bgithub_pat_[A-Za-z0-9_]{20,}/g, replace: 'github_pat_***' },
  { pattern: /\b(gh[pousr])_[A-Za-z0-9]{20,}/g, replace: '$1_***' },
  { pattern: /\b(xox[abpr])-[A-Za-z0-9-]{6,}/g, replace: '$1-***' },
  // `Authorization: Basic …`, `authorization=token …`, `"Authorization": "…"`: everything after the name.
  { pattern: /(\bauthorization["']?\s*[:=]\s*["']?)[^\r\n"']+/gi, replace: '$1***' },
  { pattern: /\b(bearer)\s+[A-Za-z0-9\-._~+/]{4,}=*/gi, replace: '$1 ***' },
  { pattern: /\b(AKIA|ASIA)[A-Z0-9]{16}\b/g, replace: '$1***' },
  { pattern: /(\baws_secret_access_key["']?\s*[:=]\s*["']?)[A-Za-z0-9/+=]{16,}/gi, replace: '$1***' },
  // scheme://user:password@host: the whole user info.
  { pattern: /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/@:]*:[^\s/@]*@/gi, replace: '$1***@' },
];

/**
 * Mask secrets in the output of a command gantry ran for a repository (its test command) before any of it is
 * kept or shown: every value in `knownSecrets` (the secret references this worker resolves; a multi-line value
 * also line by line, so a partly printed key is caught), then the {@link SECRET_PATTERNS} of common credentials.
 */
export function redactOutput(text: string, knownSecrets: readonly (string | undefined)[] = []): string {
  const values = new Set<string>();
  for (const s of knownSecrets) {
    if (!s) continue;
    const trimmed = s.trim();
    values.add(s);
    values.add(trimmed);
    if (/[\r\n]/.test(trimmed)) {
      for (const line of trimmed.split(/\r?\n/)) if (line.trim().length >= 12) values.add(line.trim());
    }
  }
  // Longest first: a secret that contains another is masked whole.
  let out = redact(text, [...values].sort((a, b) => b.length - a.length));
  // A key block whose BEGIN line was cut off (output kept from its end): mask from the start to its END line.
  out = out.replace(/^(?:(?!-----BEGIN )[\s\S])*?-----END ([A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?)-----/, (_m, kind: string) => `*** -----END ${kind}-----`);
  for (const { pattern, replace } of SECRET_PATTERNS) {
    out = out.replace(pattern, replace);
  }
  return out;
}
