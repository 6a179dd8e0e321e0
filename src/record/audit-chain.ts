/**
 * The audit log as a hash chain: append-only JSON lines, each carrying the hash of the line before it, so that
 * an edited, removed or reordered line is found by `gantry audit verify`.
 *
 * Every line gantry writes is one canonical JSON object (src/record/canonical.ts: sorted keys, no whitespace)
 * followed by `\n`, holding the record's own fields plus three chain fields:
 *
 * - `seq`: the line's number in the file, 1-based;
 * - `prev`: `sha256:<hex>` of the previous line's exact bytes (without its `\n`). The first line of a file has
 *   the hash of nothing, `sha256:e3b0c442…b855` ({@link AUDIT_GENESIS}), since there is no line before it;
 * - `hash`: `sha256:<hex>` of the canonical JSON of the line without its `hash` field (its content and `prev`).
 *
 * What a check finds: an edited line (its bytes no longer match its `hash`, or they are not in canonical form);
 * an edited line whose `hash` was recomputed (the next line's `prev` no longer matches it); a removed line (a
 * `seq` missing); reordered or copied lines (a `seq` out of place). What it cannot find on its own: the last
 * lines cut off, or the whole file rewritten with fresh hashes. For that, keep the head (`gantry audit verify`
 * prints it) somewhere else; each release's signed manifest records the hash of its own audit line.
 *
 * Lines written before gantry chained its log (no chain fields) are accepted at the start of a file only, and
 * reported: the first chained line covers the last of them, the others are not protected. A file with lines
 * but no chained line at all does not verify.
 *
 * Appending is the caller's to serialise (one lock per file, see announcers/audit.ts); this module reads,
 * decides and writes, nothing else.
 */
import { mkdir, open, readFile } from 'node:fs/promises';
import path from 'node:path';
import { canonicalJson, sha256Hex } from './canonical';

/** `prev` of a file's first line: sha256 of the empty string (there is no line before it). */
export const AUDIT_GENESIS = sha256Hex('');

export interface ChainFields {
  /** The line's number in the file, 1-based. */
  seq: number;
  /** sha256 of the previous line's bytes, or {@link AUDIT_GENESIS} on the first line. */
  prev: string;
  /** sha256 of the canonical JSON of this line without `hash`. */
  hash: string;
}

const CHAIN_KEYS = ['seq', 'prev', 'hash'] as const;

/** What a chained line says about itself: where it is and the sha256 of its bytes (the next line's `prev`). */
export interface ChainedLine {
  id: string;
  seq: number;
  /** sha256 of the line's exact bytes: what the next line's `prev` is. */
  sha256: string;
  /** False when the line was already in the file (an earlier attempt wrote it). */
  appended: boolean;
}

/** The line for `content` at position `seq` after a line whose sha256 is `prev`: canonical JSON, no `\n`. */
export function sealLine(content: Record<string, unknown>, seq: number, prev: string): string {
  for (const k of CHAIN_KEYS) {
    if (k in content) throw new TypeError(`an audit record may not carry the chain field "${k}"`);
  }
  const body = { ...content, seq, prev };
  return canonicalJson({ ...body, hash: sha256Hex(canonicalJson(body)) });
}

/** The file's lines as bytes, without their `\n`; a last line without `\n` (a cut-off write) is a line too. */
export function splitLines(buf: Uint8Array): Buffer[] {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const lines: Buffer[] = [];
  let start = 0;
  for (let i = b.indexOf(0x0a); i >= 0; i = b.indexOf(0x0a, start)) {
    lines.push(b.subarray(start, i));
    start = i + 1;
  }
  if (start < b.length) lines.push(b.subarray(start));
  return lines;
}

async function readOrEmpty(file: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return Buffer.alloc(0);
    throw err;
  }
}

function idOf(line: Buffer): string | undefined {
  try {
    const v = JSON.parse(line.toString('utf8')) as unknown;
    return v && typeof v === 'object' && typeof (v as { id?: unknown }).id === 'string' ? (v as { id: string }).id : undefined;
  } catch {
    return undefined; // a line someone else wrote, or a cut-off one
  }
}

/**
 * Append the records whose `id` is not in the file yet, in order, each chained to the line before it, in one
 * write (O_APPEND) followed by fsync. Returns where every record stands, written now or before. The caller holds
 * the file's lock: two appenders at once would both chain to the same last line.
 */
export async function appendToChain(file: string, records: ({ id: string } & Record<string, unknown>)[]): Promise<ChainedLine[]> {
  const buf = await readOrEmpty(file);
  const lines = splitLines(buf);
  const where = new Map<string, number>();
  lines.forEach((line, i) => {
    const id = idOf(line);
    if (id !== undefined && !where.has(id)) where.set(id, i);
  });

  const out: ChainedLine[] = [];
  const fresh: string[] = [];
  let last: Buffer | undefined = lines[lines.length - 1];
  let seq = lines.length;
  for (const record of records) {
    const at = where.get(record.id);
    if (at !== undefined) {
      out.push({ id: record.id, seq: at + 1, sha256: sha256Hex(lines[at]!), appended: false });
      continue;
    }
    seq += 1;
    const line = sealLine(record, seq, last === undefined ? AUDIT_GENESIS : sha256Hex(last));
    fresh.push(line);
    last = Buffer.from(line, 'utf8');
    where.set(record.id, seq - 1);
    out.push({ id: record.id, seq, sha256: sha256Hex(last), appended: true });
  }
  if (fresh.length === 0) return out;

  await mkdir(path.dirname(file), { recursive: true });
  // A file whose last write was cut off gets its line ended first, so the cut-off line stays a line of its own
  // (and `audit verify` names it) instead of running into the new one.
  const torn = buf.length > 0 && buf[buf.length - 1] !== 0x0a;
  const fh = await open(file, 'a', 0o640);
  try {
    await fh.write(`${torn ? '\n' : ''}${fresh.join('\n')}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  return out;
}

// ---- verification ----

export type ChainProblemKind = 'edited' | 'removed' | 'reordered' | 'copied' | 'cut-off' | 'unchained';

export interface ChainProblem {
  /** The 1-based line number of the first line found wrong. */
  line: number;
  kind: ChainProblemKind;
  message: string;
}

export interface ChainReport {
  ok: boolean;
  /** Lines in the file. */
  lines: number;
  /** Lines at the start written before the chain (no chain fields); only the last of them is covered. */
  unchained: number;
  /** The last line: its number and the sha256 of its bytes (what the next line's `prev` will be). */
  head?: { line: number; sha256: string };
  /** The first problem found; the lines before it are intact. */
  problem?: ChainProblem;
}

interface Parsed {
  value: Record<string, unknown> & ChainFields;
  text: string;
}

/** A chained line, or undefined when the line has no chain fields (written before the chain, or not JSON). */
function parseChained(line: Buffer): Parsed | 'not-chained' {
  const text = line.toString('utf8');
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return 'not-chained';
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) return 'not-chained';
  const o = v as Record<string, unknown>;
  if (typeof o.seq !== 'number' || typeof o.prev !== 'string' || typeof o.hash !== 'string') return 'not-chained';
  return { value: o as Parsed['value'], text };
}

/** Check the chain of an audit log's bytes; the first problem is named by line number. */
export function verifyChain(buf: Uint8Array): ChainReport {
  const lines = splitLines(buf);
  const n = lines.length;
  const bad = (line: number, kind: ChainProblemKind, message: string, unchained: number): ChainReport => ({
    ok: false, lines: n, unchained, problem: { line, kind, message },
  });

  let k = 0;
  while (k < n && parseChained(lines[k]!) === 'not-chained') k++;
  if (n > 0 && k === n) {
    return bad(1, 'unchained', `none of its ${n} line(s) carries the chain fields (seq, prev, hash): it was written before gantry chained ` +
      'its audit log, or the chain fields were removed. Nothing in it can be verified.', k);
  }

  const parsed: (Parsed | undefined)[] = lines.map((l, i) => {
    if (i < k) return undefined;
    const p = parseChained(l);
    return p === 'not-chained' ? undefined : p;
  });
  const seen = new Map<number, number>(); // seq → line number
  for (let i = k; i < n; i++) {
    const lineNo = i + 1;
    const p = parsed[i];
    const bytes = lines[i]!;
    if (!p) {
      const what = bytes.length === 0 ? 'is empty' : 'is not a chained audit record';
      return bad(lineNo, 'edited', `line ${lineNo} ${what}: it was edited, or written by something other than gantry.`, k);
    }
    if (!Buffer.from(p.text, 'utf8').equals(bytes) || canonicalJson(p.value) !== p.text) {
      return bad(lineNo, 'edited', `line ${lineNo} was edited: its bytes are not in the form gantry writes (canonical JSON).`, k);
    }
    const { hash, ...rest } = p.value;
    if (sha256Hex(canonicalJson(rest)) !== hash) {
      return bad(lineNo, 'edited', `line ${lineNo} was edited: its content no longer matches its hash.`, k);
    }
    const seq = p.value.seq;
    if (seq !== lineNo) {
      if (seq > lineNo) {
        const later = parsed.findIndex((q, j) => j > i && q?.value.seq === lineNo);
        if (later >= 0) {
          return bad(lineNo, 'reordered', `line ${lineNo} holds record #${seq}, and record #${lineNo} is at line ${later + 1}: lines were reordered.`, k);
        }
        const missing = seq - lineNo === 1 ? `record #${lineNo} is` : `records #${lineNo}–#${seq - 1} are`;
        return bad(lineNo, 'removed', `${missing} missing before line ${lineNo}: ${seq - lineNo === 1 ? 'a line was' : 'lines were'} removed.`, k);
      }
      const first = seen.get(seq);
      if (first !== undefined) return bad(lineNo, 'copied', `line ${lineNo} repeats record #${seq} of line ${first}: a line was copied.`, k);
      return bad(lineNo, 'reordered', `line ${lineNo} holds record #${seq}, which belongs before it: lines were reordered.`, k);
    }
    seen.set(seq, lineNo);
    const want = i === 0 ? AUDIT_GENESIS : sha256Hex(lines[i - 1]!);
    if (p.value.prev !== want) {
      if (i === 0) return bad(1, 'edited', 'line 1 was edited: its prev is not the hash of an empty start.', k);
      return bad(i, 'edited', `line ${i} was changed after line ${lineNo} was written: line ${lineNo}'s prev does not match it.`, k);
    }
  }
  if (n > 0 && buf[buf.length - 1] !== 0x0a) {
    return bad(n, 'cut-off', `line ${n} has no line break at its end: a write was cut short, or the file was edited.`, k);
  }
  return { ok: true, lines: n, unchained: k, ...(n > 0 ? { head: { line: n, sha256: sha256Hex(lines[n - 1]!) } } : {}) };
}

/** The sha256 of line `line` (1-based) of a file's bytes, or undefined when there is no such line. */
export function lineSha256(buf: Uint8Array, line: number): string | undefined {
  const l = splitLines(buf)[line - 1];
  return l === undefined ? undefined : sha256Hex(l);
}
