/**
 * Reading and validating the release config. Errors name the file, the path inside it, the problem and the fix.
 */
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { configSchema, type GantryConfig } from './schema';

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
  /** `path@sha256:…`, recorded in the release input. */
  source: string;
}

export function loadConfig(file: string): LoadedConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(file, [
      code === 'ENOENT' ? 'file not found; pass --config <file> or set GANTRY_CONFIG (see README for an example)' : `cannot read it: ${String(err)}`,
    ]);
  }
  const sha = createHash('sha256').update(text).digest('hex').slice(0, 16);
  return { config: parseConfig(text, file), source: `${file}@sha256:${sha}` };
}
