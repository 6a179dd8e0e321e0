/**
 * Canonical JSON: the one byte form gantry hashes and signs, so that the same record always gives the same
 * bytes on every worker and every Node version.
 *
 * - object keys sorted by UTF-16 code unit (plain `Array.prototype.sort()`), at every depth;
 * - no whitespace outside strings (no indentation, no spaces after `:` or `,`);
 * - strings, finite numbers, booleans and null written exactly as `JSON.stringify` writes them;
 * - object members whose value is `undefined` are left out (as `JSON.stringify` does); arrays keep their order.
 *
 * Anything else (NaN, Infinity, bigint, functions, symbols, `undefined` inside an array, cycles) is refused
 * with a TypeError: a record that cannot be written canonically is a defect, not something to paper over.
 */
import { createHash } from 'node:crypto';

export function canonicalJson(value: unknown): string {
  return write(value, new Set());
}

function write(value: unknown, seen: Set<object>): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`canonical JSON cannot hold the number ${value}`);
      return JSON.stringify(value);
    case 'object':
      break;
    default:
      throw new TypeError(`canonical JSON cannot hold a ${typeof value}`);
  }
  const obj = value;
  if (seen.has(obj)) throw new TypeError('canonical JSON cannot hold a cycle');
  seen.add(obj);
  try {
    if (Array.isArray(obj)) {
      return `[${obj.map((v: unknown) => {
        if (v === undefined) throw new TypeError('canonical JSON cannot hold undefined in an array');
        return write(v, seen);
      }).join(',')}]`;
    }
    const rec = obj as Record<string, unknown>;
    const keys = Object.keys(rec).filter((k) => rec[k] !== undefined).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${write(rec[k], seen)}`).join(',')}}`;
  } finally {
    seen.delete(obj);
  }
}

/** `sha256:<hex>` of the UTF-8 bytes of `data` (or of the bytes given). */
export function sha256Hex(data: string | Uint8Array): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}
