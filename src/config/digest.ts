/**
 * Which files make up a release config, and the sha256 over them that says whether two copies are the same config.
 * Its own module, without the schema: `gantry start` hashes the operator's local copy with it before the start and
 * validates that copy (src/config/load.ts, which hashes with the same code) only when the worker's hash differs.
 */
import { createHash, type Hash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parseDocument } from 'yaml';
import { ConfigError } from './errors';

/** The config files of a path: the file itself, or a directory's *.yaml / *.yml files in name order. */
export function configFiles(target: string): string[] {
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

export function readConfigText(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(file, [code === 'ENOENT' ? `${what} not found` : `cannot read ${what}: ${String(err)}`]);
  }
}

/** The directory an `allowedSigners.file` is relative to. */
export function configBaseDir(target: string): string {
  return statSync(target).isDirectory() ? target : path.dirname(target);
}

/**
 * The config's hash, fed in reading order: a single file by its content alone (a local copy under another name is
 * the same config), a directory's files by name and content in name order, then the allowedSigners file's content
 * when the config names one.
 */
export class ConfigHash {
  private readonly hash: Hash = createHash('sha256');

  constructor(private readonly single: boolean) {}

  file(file: string, text: string): void {
    this.hash.update(this.single ? `${text}\0` : `${path.basename(file)}\0${text}\0`);
  }

  signers(text: string): void {
    this.hash.update(`allowed_signers\0${text}\0`);
  }

  digest(): string {
    return this.hash.digest('hex');
  }
}

/**
 * The sha256 `loadConfig` would give `target`, without validating it: each file is only parsed as YAML, to find the
 * allowedSigners file it names. Undefined when the files are not plain enough to tell (YAML errors, an
 * allowedSigners that is neither text nor `{file}`, set in two files, an unreadable file): `loadConfig` then says
 * what is wrong. For a valid config the answer always equals `loadConfig(target).sha256` (test/config/trust-config.test.ts).
 */
export function configDigest(target: string): string | undefined {
  try {
    const files = configFiles(target);
    const hash = new ConfigHash(files.length === 1);
    let signersFile: string | undefined;
    let signersSet = false;
    for (const file of files) {
      const text = readConfigText(file, 'the config file');
      hash.file(file, text);
      const doc = parseDocument(text, { uniqueKeys: true });
      if (doc.errors.length > 0) return undefined;
      const signers: unknown = (doc.toJS() as { allowedSigners?: unknown } | null)?.allowedSigners;
      if (signers === undefined) continue;
      if (signersSet) return undefined;
      signersSet = true;
      if (typeof signers === 'string') continue;
      const named = typeof signers === 'object' && signers !== null ? (signers as Record<string, unknown>).file : undefined;
      if (typeof named !== 'string') return undefined;
      signersFile = named;
    }
    if (signersFile !== undefined) hash.signers(readConfigText(path.resolve(configBaseDir(target), signersFile), 'the allowedSigners file'));
    return hash.digest();
  } catch {
    return undefined;
  }
}
