/**
 * Reading and validating the release config. Errors name the file, the path inside it, the problem and the fix.
 */
import path from 'node:path';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { configSchema, type GantryConfig } from './schema';
import type { PrincipalKey } from '../shared/gate';
import { parseAllowedSigners } from '../shared/sshsig';

// Its own module, so the CLI can tell a config error without loading the schema.
import { ConfigError } from './errors';
import { configBaseDir, configFiles, ConfigHash, readConfigText } from './digest';

export { ConfigError };

function formatPath(path: readonly PropertyKey[]): string {
  if (path.length === 0) return '(top level)';
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`)).join('');
}

/** A zod schema as far as the messages look into it (zod 4's definition object). */
interface SchemaNode {
  _zod: { def: { type: string; shape?: Record<string, SchemaNode>; innerType?: SchemaNode; options?: SchemaNode[]; valueType?: SchemaNode; element?: SchemaNode; in?: SchemaNode; values?: unknown[] } };
}

/** The schemas a value may be checked against, wrappers (optional, default, union …) taken off. */
function unwrap(s: SchemaNode): SchemaNode[] {
  const d = s._zod.def;
  if (d.innerType) return unwrap(d.innerType);
  if (d.type === 'pipe' && d.in) return unwrap(d.in);
  if (d.type === 'union' && d.options) return d.options.flatMap(unwrap);
  return [s];
}

function childAt(nodes: SchemaNode[], seg: PropertyKey): SchemaNode[] {
  return nodes.flatMap(unwrap).flatMap((n) => {
    const d = n._zod.def;
    if (d.type === 'object') return d.shape?.[String(seg)] ? [d.shape[String(seg)]!] : [];
    if (d.type === 'record' && d.valueType) return [d.valueType];
    if (d.type === 'array' && d.element) return [d.element];
    return [];
  });
}

/** The keys the schema allows at `path`; of a discriminated union, the keys of the member the value names. */
function keysAt(path: readonly PropertyKey[], input: unknown): string[] {
  let nodes: SchemaNode[] = [configSchema as unknown as SchemaNode];
  let value = input;
  for (const seg of path) {
    nodes = childAt(nodes, seg);
    value = value !== null && typeof value === 'object' ? (value as Record<PropertyKey, unknown>)[seg] : undefined;
  }
  const objects = nodes.flatMap(unwrap).filter((n) => n._zod.def.type === 'object');
  const v = (value ?? {}) as Record<string, unknown>;
  const matching = objects.filter((o) => Object.entries(o._zod.def.shape ?? {}).every(([k, f]) => {
    const lit = unwrap(f).find((x) => x._zod.def.type === 'literal');
    return !lit || lit._zod.def.values?.includes(v[k]);
  }));
  return [...new Set((matching.length > 0 ? matching : objects).flatMap((o) => Object.keys(o._zod.def.shape ?? {})))];
}

/** Edit distance (insertions, deletions, substitutions, swaps of neighbours), case-insensitive. */
function distance(a: string, b: string): number {
  const x = a.toLowerCase();
  const y = b.toLowerCase();
  const d = Array.from({ length: x.length + 1 }, (_, i) => Array.from({ length: y.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= x.length; i++) {
    for (let j = 1; j <= y.length; j++) {
      const cost = x[i - 1] === y[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && x[i - 1] === y[j - 2] && x[i - 2] === y[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[x.length]![y.length]!;
}

/** The known key an unknown one is most likely a typo of. */
function closest(key: string, known: string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const dist = distance(key, k);
    if (dist < bestD) [best, bestD] = [k, dist];
  }
  return best !== undefined && bestD <= Math.max(1, Math.floor(Math.min(key.length, best.length) / 3)) ? best : undefined;
}

function unknownKeys(where: string, keys: string[], known: string[]): string {
  const guesses = keys.flatMap((k) => {
    const near = closest(k, known.filter((n) => !keys.includes(n)));
    return near ? [`did you mean "${near}" for "${k}"?`] : [];
  });
  const hints = [...(keys.length === 1 ? guesses.map((g) => g.replace(/ for "[^"]*"\?$/, '?')) : guesses), ...(known.length > 0 ? [`the keys here are ${known.join(', ')}`] : [])];
  return `${where}: unknown key${keys.length > 1 ? 's' : ''} ${keys.map((k) => `"${k}"`).join(', ')}; remove or correct ${keys.length > 1 ? 'them' : 'it'}` +
    (hints.length > 0 ? ` (${hints.join('; ')})` : '');
}

/** What a value is, as a message shows it: `the text "two"`, `the number 30`, `a list`. */
function shown(value: unknown): string {
  if (typeof value === 'string') return `the text "${value.length > 40 ? `${value.slice(0, 40)}…` : value}"`;
  if (typeof value === 'number' || typeof value === 'boolean') return `the ${typeof value} ${String(value)}`;
  if (value === null) return 'null (an empty value)';
  if (Array.isArray(value)) return 'a list';
  return 'a mapping';
}

/** How to write a value of the expected type, for wrong-type messages. */
function typeFix(expected: string, value: unknown): string {
  switch (expected) {
    case 'number': return 'write a number without quotes, e.g. 2';
    case 'boolean': return 'write true or false, without quotes';
    case 'string': return `write it as text${typeof value === 'number' || typeof value === 'boolean' ? ` in quotes, e.g. "${String(value)}"` : ''}`;
    case 'array': return typeof value === 'string' ? `write a list, e.g. [${value}]` : 'write a list, e.g. [a, b]';
    case 'object': return 'write a mapping of keys and values, e.g. { key: value }';
    default: return `write a ${expected}`;
  }
}

function describeIssue(issue: z.core.$ZodIssue, input: unknown): string {
  const where = formatPath(issue.path);
  switch (issue.code) {
    case 'unrecognized_keys':
      return unknownKeys(where, issue.keys, keysAt(issue.path, input));
    case 'invalid_type':
      return issue.input === undefined
        ? `${where}: is required (expected ${issue.expected}); add it`
        : `${where}: expected ${issue.expected === 'array' ? 'a list' : `a ${issue.expected}`}, got ${shown(issue.input)}; ${issue.message.startsWith('Invalid input') ? typeFix(issue.expected, issue.input) : issue.message}`;
    case 'invalid_union': {
      const m = /^Invalid discriminator value\. Expected (.*)$/.exec(issue.message);
      const field = (issue as { discriminator?: string }).discriminator;
      if (m && field) {
        const given = (issue.input as Record<string, unknown> | undefined)?.[field];
        const at = issue.path.at(-1) === field ? where : `${where}.${field}`;
        return `${at}: ${given === undefined ? 'is missing' : `${JSON.stringify(given)} is not a ${field} gantry knows`}; write one of ${m[1]!.replace(/'/g, '')}`;
      }
      return `${where}: ${issue.message}`;
    }
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
  const input: unknown = doc.toJS();
  const result = configSchema.safeParse(input, { reportInput: true });
  if (!result.success) throw new ConfigError(source, result.error.issues.map((i) => describeIssue(i, input)));
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

/**
 * Load the release config from a file, or from every YAML file of a directory (services merged; a service defined
 * twice is an error), resolve allowedSigners, and check that every person the services name has a key when their
 * approvals are signed. Throws ConfigError with every problem found.
 */
export function loadConfig(target: string): LoadedConfig {
  const files = configFiles(target);
  const hash = new ConfigHash(files.length === 1);
  let merged: GantryConfig | undefined;
  const problems: string[] = [];
  for (const file of files) {
    const text = readConfigText(file, 'the config file');
    hash.file(file, text);
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
  const baseDir = configBaseDir(target);
  let signersText = '';
  let signersSource = 'allowedSigners';
  if (typeof config.allowedSigners === 'string') {
    signersText = config.allowedSigners;
  } else if (config.allowedSigners) {
    const file = path.resolve(baseDir, config.allowedSigners.file);
    signersSource = file;
    signersText = readConfigText(file, `the allowedSigners file (allowedSigners.file: ${config.allowedSigners.file})`);
    hash.signers(signersText);
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
  const sha256 = hash.digest();
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
