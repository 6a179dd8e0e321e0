/**
 * Reading a value out of a GitHub Actions artifact: the artifact arrives as a zip archive; the configured file
 * inside it is JSON, and the configured (dotted) field holds the image digest.
 */
import { strFromU8, unzipSync } from 'fflate';

export const DIGEST_PATTERN = /^sha256:[a-f0-9]{64}$/;

/** Why an artifact did not yield a digest, in words for the operator (the caller adds what to do). */
export class ArtifactContentError extends Error {
  override name = 'ArtifactContentError';
}

/** `a.b.c` into a parsed JSON value. */
export function fieldAt(value: unknown, dotted: string): unknown {
  let cur: unknown = value;
  for (const key of dotted.split('.')) {
    if (typeof cur !== 'object' || cur === null || !(key in cur)) return undefined;
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
}

/**
 * The `sha256:…` digest at `field` of the JSON file `file` inside the artifact zip. The file may sit at the
 * archive's root or in a folder (upload-artifact keeps paths relative to the common parent).
 */
export function digestFromArtifactZip(zip: Uint8Array, file: string, field: string): string {
  let entries: Record<string, Uint8Array>;
  try {
    entries = unzipSync(zip);
  } catch (err) {
    throw new ArtifactContentError(`the artifact is not a readable zip archive (${(err as Error).message})`);
  }
  const names = Object.keys(entries).filter((n) => !n.endsWith('/'));
  const wanted = file.replace(/^\.?\//, '');
  const name = names.find((n) => n === wanted) ?? names.find((n) => n.endsWith(`/${wanted}`));
  if (name === undefined) {
    throw new ArtifactContentError(`the artifact has no file ${wanted} (it holds: ${names.length ? names.slice(0, 10).join(', ') : 'nothing'})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(strFromU8(entries[name]!));
  } catch (err) {
    throw new ArtifactContentError(`${name} in the artifact is not JSON (${(err as Error).message})`);
  }
  const value = fieldAt(parsed, field);
  if (typeof value !== 'string') {
    throw new ArtifactContentError(`${name} in the artifact has no string field "${field}"`);
  }
  if (!DIGEST_PATTERN.test(value)) {
    throw new ArtifactContentError(`field "${field}" of ${name} is "${value.slice(0, 100)}", not a digest of the form sha256:<64 hex digits>`);
  }
  return value;
}
