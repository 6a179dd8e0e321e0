/**
 * Reading and validating the release config. Errors name the file, the path inside it, the problem and the fix.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { configSchema, type GantryConfig } from './schema';
import type { PrincipalKey } from '../shared/gate';
import { parseAllowedSigners } from '../shared/sshsig';

export class ConfigError extends Error {
  constructor(readonly source: string, readonly problems: string[]) {
    super(`Invalid config ${source}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

function formatPath(path: readonly PropertyKey[]): string {
  if (path.length === 0) return '(top level)';
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`)).join('');
}

function describeIssue(issue: z.core.$ZodIssue): string {
  const where = formatPath(issue.path);
  switch (issue.code) {
    case 'unrecognized_keys':
      return `${where}: unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}; remove or correct ${issue.keys.length > 1 ? 'them' : 'it'} (check the spelling against README's config reference)`;
    case 'invalid_type':
      return issue.input === undefined
        ? `${where}: is required (expected ${issue.expected}); add it`
        : `${where}: expected ${issue.expected}, got ${typeof issue.input}; ${issue.message.startsWith('Invalid input') ? 'change the value' : issue.message}`;
    case 'invalid_union':
    case 'invalid_value':
      return `${where}: ${issue.message}`;
    default:
      return `${where}: ${issue.message}`;
  }
}

export function parseConfig(text: string, source: string): GantryConfig {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(source, doc.errors.map((e) => `YAML syntax: ${e.message.split('\n')[0]}; fix the file's indentation or quoting`));
  }
  const result = configSchema.safeParse(doc.toJS());
  if (!result.success) throw new ConfigError(source, result.error.issues.map(describeIssue));
  return result.data;
}

export interface LoadedConfig {
  config: GantryConfig;
  /** `path@sha256:…` (first 16 hex digits), for messages. */
  source: string;
  /** sha256 over the config file(s) and the allowed_signers file: the same on every worker that agrees. */
  sha256: string;
  /** Every principal's keys, from allowedSigners. */
  keys: PrincipalKey[];
}

/** The config files of a path: the file itself, or a directory's *.yaml / *.yml files in name order. */
function configFiles(target: string): string[] {
  let st;
  try {
    st = statSync(target);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(target, [
      code === 'ENOENT'
        ? 'not found; give the worker its release config with --config <file or directory> or GANTRY_CONFIG (see README for an example)'
        : `cannot read it: ${String(err)}`,
    ]);
  }
  if (!st.isDirectory()) return [target];
  const files = readdirSync(target).filter((f) => /\.ya?ml$/.test(f)).sort().map((f) => path.join(target, f));
  if (files.length === 0) throw new ConfigError(target, ['the directory holds no .yaml or .yml files; put the release config there']);
  return files;
}

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(file, [code === 'ENOENT' ? `${what} not found` : `cannot read ${what}: ${String(err)}`]);
  }
}

/**
 * Load the release config from a file, or from every YAML file of a directory (services merged; a service defined
 * twice is an error), resolve allowedSigners, and check that every person the services name has a key when their
 * approvals are signed. Throws ConfigError with every problem found.
 */
export function loadConfig(target: string): LoadedConfig {
  const files = configFiles(target);
  const hash = createHash('sha256');
  let merged: GantryConfig | undefined;
  const problems: string[] = [];
  for (const file of files) {
    const text = readText(file, 'the config file');
    // A single file is hashed by its content alone (a local copy under another name is the same config); a
    // directory's files by name and content, in name order.
    hash.update(files.length === 1 ? `${text}\0` : `${path.basename(file)}\0${text}\0`);
    const one = parseConfig(text, file);
    if (!merged) {
      merged = one;
      continue;
    }
    for (const [name, svc] of Object.entries(one.services)) {
      if (merged.services[name]) problems.push(`${file}: services.${name} is already defined in another file of ${target}; define each service once`);
      else merged.services[name] = svc;
    }
    if (one.allowedSigners !== undefined) {
      if (merged.allowedSigners !== undefined) problems.push(`${file}: allowedSigners is already set in another file of ${target}; set it once`);
      else merged.allowedSigners = one.allowedSigners;
    }
  }
  const config = merged!;
  const baseDir = statSync(target).isDirectory() ? target : path.dirname(target);
  let signersText = '';
  let signersSource = 'allowedSigners';
  if (typeof config.allowedSigners === 'string') {
    signersText = config.allowedSigners;
  } else if (config.allowedSigners) {
    const file = path.resolve(baseDir, config.allowedSigners.file);
    signersSource = file;
    signersText = readText(file, `the allowedSigners file (allowedSigners.file: ${config.allowedSigners.file})`);
    hash.update(`allowed_signers\0${signersText}\0`);
  }
  const parsedSigners = parseAllowedSigners(signersText);
  for (const p of parsedSigners.problems) problems.push(`allowedSigners (${signersSource}): ${p}`);
  const keys: PrincipalKey[] = parsedSigners.signers.flatMap((s) => s.principals.map((principal) => ({
    principal,
    key: s.key.text,
    fingerprint: s.key.fingerprint,
    ...(s.namespaces ? { namespaces: s.namespaces } : {}),
    ...(s.validAfter ? { validAfter: s.validAfter } : {}),
    ...(s.validBefore ? { validBefore: s.validBefore } : {}),
  })));
  problems.push(...identityProblems(config, keys));
  if (problems.length > 0) throw new ConfigError(target, problems);
  const sha256 = hash.digest('hex');
  return { config, source: `${target}@sha256:${sha256.slice(0, 16)}`, sha256, keys };
}

/** In signed mode every approver and operator needs a key usable for gantry. */
function identityProblems(config: GantryConfig, keys: PrincipalKey[]): string[] {
  const problems: string[] = [];
  const usable = new Set(keys.filter((k) => !k.namespaces || k.namespaces.includes('gantry')).map((k) => k.principal));
  for (const [name, svc] of Object.entries(config.services)) {
    if (svc.approvals.identity !== 'signed') continue;
    const people = [...new Set([...svc.approvals.approvers, ...svc.operators])];
    const missing = people.filter((p) => !usable.has(p));
    if (missing.length > 0) {
      problems.push(
        `services.${name}.approvals: identity is signed, but ${missing.join(', ')} ${missing.length === 1 ? 'has' : 'have'} no key in allowedSigners ` +
          `(with namespaces including "gantry" if limited); add a line such as \`${missing[0]} ssh-ed25519 AAAA…\` with their public key ` +
          '(~/.ssh/id_ed25519.pub), or set approvals.identity: declared (README: Trust model says what that gives up)',
      );
    }
  }
  return problems;
}
