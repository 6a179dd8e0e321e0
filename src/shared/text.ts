/**
 * Bounds on what people type into a release (names, reasons) and how it is shown. Anything that arrives by
 * signal or update can be of any size and contain anything; before it is kept or shown it is normalized to NFC,
 * stripped of control and format characters (newlines, escapes, bidi overrides that make a name read as another),
 * and cut to a known length. Pure, used by the workflow and the CLI alike.
 */

/** Longest principal or approver name accepted. */
export const MAX_NAME = 64;
/** Longest reason accepted with a vote, decision or cancellation. */
export const MAX_REASON = 1000;
/** How many refused attempts the status keeps whole; older ones are only counted. */
export const REFUSED_KEPT = 50;

// Cc: controls (incl. newline, ESC), Cf: format characters (bidi overrides, zero-width joiners), Zl/Zp separators.
const UNPRINTABLE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu;

/** Text fit to show: NFC, without control/format characters, at most `max` characters (… when cut). */
export function displayText(value: unknown, max: number): string {
  const s = typeof value === 'string' ? value : value === undefined ? '' : safeString(value);
  const clean = s.slice(0, max * 4 + 16).normalize('NFC').replace(UNPRINTABLE, '');
  return clean.length > max ? `${clean.slice(0, max - 1)}…` : clean;
}

function safeString(value: unknown): string {
  try {
    return String(value);
  } catch {
    return '?';
  }
}

/** True when `s` has characters that would be stripped for display. */
export function hasUnprintable(s: string): boolean {
  return new RegExp(UNPRINTABLE.source, 'u').test(s);
}

/**
 * Check a name as given (approver, operator, principal): non-blank, at most MAX_NAME characters, no control or
 * format characters. Returns the NFC form, or the problem in words.
 */
export function checkName(value: string, what: string): { ok: true; value: string } | { ok: false; problem: string } {
  const s = value.normalize('NFC').trim();
  if (s === '') return { ok: false, problem: `${what} is blank` };
  if (s.length > MAX_NAME) return { ok: false, problem: `${what} is ${s.length} characters long; names are at most ${MAX_NAME}` };
  if (hasUnprintable(s)) return { ok: false, problem: `${what} contains control or invisible characters; type the name plainly` };
  return { ok: true, value: s };
}

/** Check a reason: at most MAX_REASON characters, no control or format characters but for nothing (one line). */
export function checkReason(value: string): { ok: true; value: string } | { ok: false; problem: string } {
  const s = value.normalize('NFC').trim();
  if (s.length > MAX_REASON) return { ok: false, problem: `"reason" is ${s.length} characters long; keep it under ${MAX_REASON}` };
  if (hasUnprintable(s)) return { ok: false, problem: '"reason" contains control or invisible characters (a newline?); write it on one line' };
  return { ok: true, value: s };
}
