/**
 * Deny windows: times when no release may reach an environment (Friday evening to Monday morning, the holidays).
 * A window starts at each occurrence of its schedule, a cron expression (cron-parser) or an RFC 5545 recurrence
 * (rrule), and lasts its duration; an instant is inside it from the start (inclusive) to the end (exclusive).
 *
 * Pure: the time to evaluate at is handed in (workflow time, so time-skipping tests work), nothing is read from
 * the clock. `denyWindowProblem` is the config-time check the schema calls, so a bad cron, recurrence or time
 * zone stops the worker at start with the fix rather than a release later.
 */
import type { CronExpressionParser as CronParser } from 'cron-parser';
import type { RRule, RRuleSet, rrulestr as RRuleStr } from 'rrule';
import { durationMs } from './duration';

// Loaded when a window has a schedule of that kind: a config without deny windows (and every CLI command that only
// validates one) never pays for the parsers (cron-parser brings luxon).
const cronParser = (): typeof CronParser => (require('cron-parser') as { CronExpressionParser: typeof CronParser }).CronExpressionParser;
const rrulestr: typeof RRuleStr = (...args) => (require('rrule') as { rrulestr: typeof RRuleStr }).rrulestr(...args);

/** One deny window as the config states it (top-level `denyWindows:` or a service's). */
export interface DenyWindowSpec {
  name: string;
  /** Five or six cron fields (`0 18 * * 5`: Fridays at 18:00), in `timezone`. */
  cron?: string;
  /** RFC 5545 lines: `DTSTART:…` then `RRULE:…` (and optionally `RDATE:` / `EXDATE:`). */
  rrule?: string;
  /** How long each occurrence lasts, in Temporal's duration form (`62h`, `30m`, or milliseconds). */
  duration: string | number;
  /** IANA time zone the schedule is read in (default UTC). */
  timezone?: string;
  /** The environments it closes (default: all). */
  environments?: string[];
  reason?: string;
}

/** A window that is open (denying) at the instant asked about. */
export interface ActiveWindow {
  name: string;
  reason?: string;
  /** The occurrence that opened it. */
  start: string;
  /** When it closes; overlapping or back-to-back occurrences are merged into one stretch. */
  end: string;
  startMs: number;
  endMs: number;
}

export interface WindowsAt {
  /** The windows open at the instant, soonest-ending first. */
  active: ActiveWindow[];
  /** The next time a window (of those that apply) opens after the instant. */
  next?: { name: string; start: string; startMs: number };
}

/** Largest number of occurrences looked at for one question (a `* * * * *` window of 62 h is 3,720). */
const MAX_STEPS = 20_000;

/** The windows that apply to `environment` (all of them when it is not given). */
export function windowsFor(windows: readonly DenyWindowSpec[], environment?: string): DenyWindowSpec[] {
  return windows.filter((w) => environment === undefined || !w.environments || w.environments.length === 0 || w.environments.includes(environment));
}

/** Which windows deny at `atMs`, until when, and when the next one opens. */
export function windowsAt(windows: readonly DenyWindowSpec[], atMs: number, environment?: string): WindowsAt {
  const active: ActiveWindow[] = [];
  let next: WindowsAt['next'];
  for (const w of windowsFor(windows, environment)) {
    const s = schedule(w);
    const dur = durationMs(w.duration);
    const open = openAt(s, dur, atMs);
    if (open) {
      active.push({
        name: w.name, ...(w.reason ? { reason: w.reason } : {}),
        start: iso(open.startMs), end: iso(open.endMs), startMs: open.startMs, endMs: open.endMs,
      });
    }
    const n = s.after(atMs, false);
    if (n !== undefined && (!next || n < next.startMs)) next = { name: w.name, start: iso(n), startMs: n };
  }
  active.sort((a, b) => a.endMs - b.endMs || a.name.localeCompare(b.name));
  return { active, ...(next ? { next } : {}) };
}

/**
 * What is wrong with a window, in words with the fix, or undefined when it is fine. The schema calls it for
 * every window; `where` prefixes nothing, the caller adds the path.
 */
export function denyWindowProblem(w: DenyWindowSpec): string | undefined {
  if (typeof w.name !== 'string' || w.name.trim() === '') return 'a deny window needs a name (e.g. name: weekend)';
  if ((w.cron === undefined) === (w.rrule === undefined)) {
    return `deny window "${w.name}" needs exactly one of cron (e.g. cron: "0 18 * * 5") or rrule (e.g. rrule: "DTSTART:20261224T000000Z\\nRRULE:FREQ=YEARLY")`;
  }
  if (w.timezone !== undefined && !validZone(w.timezone)) {
    return `deny window "${w.name}": timezone "${w.timezone}" is not an IANA time zone; write it like Europe/Berlin, America/New_York or UTC`;
  }
  let dur: number;
  try {
    dur = durationMs(w.duration);
  } catch {
    dur = Number.NaN;
  }
  if (!(dur > 0)) return `deny window "${w.name}": duration "${String(w.duration)}" is not a duration; write it like 62h, 90m or 1d`;
  if (w.cron !== undefined) {
    try {
      cronParser().parse(w.cron, { tz: w.timezone ?? 'UTC', currentDate: 0 }).next();
    } catch (err) {
      return `deny window "${w.name}": cron "${w.cron}" does not parse (${errorText(err)}); write five fields, minute hour day-of-month month day-of-week, like "0 18 * * 5" for Fridays at 18:00`;
    }
    return undefined;
  }
  const r = parseRecurrence(w.rrule!, w.timezone);
  if (!r.ok) return `deny window "${w.name}": rrule ${r.problem}`;
  if (r.value.rule.after(new Date(0), true) === null) return `deny window "${w.name}": rrule never occurs; check its BY… parts (e.g. BYMONTH=12;BYMONTHDAY=24)`;
  return undefined;
}

// ---- schedules ----

interface Schedule {
  /** The latest start at or before `ms` (inclusive) or strictly before. */
  before(ms: number, inclusive: boolean): number | undefined;
  /** The earliest start after `ms` (strictly) or at or after it. */
  after(ms: number, inclusive: boolean): number | undefined;
}

/** The stretch of time the window is open at `atMs`: occurrences that overlap or touch are one stretch. */
function openAt(s: Schedule, dur: number, atMs: number): { startMs: number; endMs: number } | undefined {
  let startMs: number | undefined;
  let endMs = -Infinity;
  // Occurrences that started at most `dur` ago are open now; the earliest of them is the stretch's start.
  let cursor = s.before(atMs, true);
  for (let i = 0; cursor !== undefined && cursor > atMs - dur && i < MAX_STEPS; i++) {
    startMs = cursor;
    endMs = Math.max(endMs, cursor + dur);
    cursor = s.before(cursor, false);
  }
  if (startMs === undefined) return undefined;
  // Later occurrences that begin before it closes extend it.
  let n = s.after(atMs, false);
  for (let i = 0; n !== undefined && n <= endMs && i < MAX_STEPS; i++) {
    endMs = Math.max(endMs, n + dur);
    n = s.after(n, false);
  }
  return { startMs, endMs };
}

function schedule(w: DenyWindowSpec): Schedule {
  if (w.cron !== undefined) return cronSchedule(w.cron, w.timezone ?? 'UTC');
  const r = parseRecurrence(w.rrule ?? '', w.timezone);
  if (!r.ok) throw new Error(`deny window "${w.name}": rrule ${r.problem}`);
  return recurrenceSchedule(r.value.rule, r.value.zone);
}

function cronSchedule(expr: string, tz: string): Schedule {
  const at = (currentDate: number) => cronParser().parse(expr, { tz, currentDate });
  const step = (fn: () => number): number | undefined => {
    try {
      return fn();
    } catch {
      return undefined; // out of the expression's range
    }
  };
  return {
    // prev() is strictly before currentDate; cron has minute (or second) resolution.
    before: (ms, inclusive) => step(() => at(inclusive ? ms + 1 : ms).prev().getTime()),
    after: (ms, inclusive) => step(() => at(inclusive ? ms - 1 : ms).next().getTime()),
  };
}

/**
 * rrule is evaluated in "floating" time: the rule's wall-clock times are read as if UTC, then placed in the
 * rule's zone. The zone's offset is at most ±14 h, so the search looks a day around and keeps what fits.
 */
function recurrenceSchedule(rule: RRule | RRuleSet, zone: string): Schedule {
  const real = (floating: Date): number => (zone === 'UTC' ? floating.getTime() : wallClockToInstant(zone, floating.getTime()));
  const MARGIN = 24 * 3600_000;
  return {
    before: (ms, inclusive) => {
      let f = rule.before(new Date(ms + MARGIN), true);
      for (let i = 0; f && i < MAX_STEPS; i++) {
        const t = real(f);
        if (inclusive ? t <= ms : t < ms) return t;
        f = rule.before(f, false);
      }
      return undefined;
    },
    after: (ms, inclusive) => {
      let f = rule.after(new Date(ms - MARGIN), true);
      for (let i = 0; f && i < MAX_STEPS; i++) {
        const t = real(f);
        if (inclusive ? t >= ms : t > ms) return t;
        f = rule.after(f, false);
      }
      return undefined;
    },
  };
}

type Parsed<T> = { ok: true; value: T } | { ok: false; problem: string };

const DATE_TIME = /^(\d{8})(T(\d{6})(Z?))?$/;

/**
 * Parse the recurrence text. Its zone: DTSTART's TZID if it has one; UTC when DTSTART ends in Z; else the
 * window's `timezone` (default UTC). Every date in the text is then a wall-clock time in that zone.
 */
function parseRecurrence(text: string, timezone: string | undefined): Parsed<{ rule: RRule | RRuleSet; zone: string }> {
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '');
  const dtstart = lines.find((l) => /^DTSTART[;:]/i.test(l));
  if (!dtstart) return { ok: false, problem: 'has no DTSTART line; start it with one, e.g. "DTSTART:20261224T000000Z" then "RRULE:FREQ=YEARLY"' };
  if (!lines.some((l) => /^(RRULE|RDATE)[;:]/i.test(l))) return { ok: false, problem: 'has no RRULE (or RDATE) line; add one, e.g. "RRULE:FREQ=YEARLY"' };
  const tzid = /;TZID=([^;:]+)/i.exec(dtstart)?.[1];
  const startValue = dtstart.slice(dtstart.lastIndexOf(':') + 1);
  const m = DATE_TIME.exec(startValue);
  if (!m) return { ok: false, problem: `DTSTART "${startValue}" is not a date-time such as 20261224T000000Z` };
  const utc = m[4] === 'Z';
  if (tzid !== undefined && !validZone(tzid)) return { ok: false, problem: `DTSTART's TZID "${tzid}" is not an IANA time zone; write it like Europe/Berlin` };
  if (utc && timezone !== undefined && timezone !== 'UTC') {
    return { ok: false, problem: `DTSTART ends in Z (UTC) but timezone is ${timezone}; drop the Z to mean local time in ${timezone}, or drop timezone` };
  }
  const zone = tzid ?? (utc ? 'UTC' : timezone ?? 'UTC');
  // Rewrite as floating UTC: strip TZID and VALUE parameters, give every date-time a time and a Z.
  const floating: string[] = [];
  for (const line of lines) {
    const dated = /^(DTSTART|RDATE|EXDATE)(;[^:]*)?:(.*)$/i.exec(line);
    if (!dated) {
      floating.push(line);
      continue;
    }
    const values: string[] = [];
    for (const v of dated[3]!.split(',')) {
      const d = DATE_TIME.exec(v.trim());
      if (!d) return { ok: false, problem: `${dated[1]} value "${v}" is not a date-time such as 20261224T000000` };
      if (d[4] === 'Z' && zone !== 'UTC') {
        return { ok: false, problem: `${dated[1]} value "${v}" ends in Z but the rule is in ${zone}; drop the Z` };
      }
      values.push(`${d[1]}T${d[3] ?? '000000'}Z`);
    }
    floating.push(`${dated[1]!.toUpperCase()}:${values.join(',')}`);
  }
  try {
    const rule = rrulestr(floating.join('\n'), { forceset: floating.some((l) => /^(RDATE|EXDATE)/.test(l)) });
    // rrulestr accepts some unknown parts silently; asking for the first occurrence surfaces the rest.
    rule.after(new Date(0), true);
    return { ok: true, value: { rule, zone } };
  } catch (err) {
    return { ok: false, problem: `does not parse (${errorText(err)}); write RFC 5545 lines such as "DTSTART:20261224T000000Z" and "RRULE:FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=24"` };
  }
}

// ---- time zones, without a date library ----

function validZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** The zone's offset from UTC at an instant, in ms (Berlin in winter: +3,600,000). */
function offsetAt(zone: string, ms: number): number {
  let f = formatters.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: zone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric',
    });
    formatters.set(zone, f);
  }
  const p: Record<string, number> = {};
  for (const part of f.formatToParts(ms)) if (part.type !== 'literal') p[part.type] = Number(part.value);
  const wall = Date.UTC(p.year!, p.month! - 1, p.day, p.hour, p.minute, p.second);
  return wall - (ms - (((ms % 1000) + 1000) % 1000));
}

/**
 * The instant a wall-clock time (given as if UTC) names in a zone. In the hour skipped by a spring-forward
 * change it is the instant after the gap; in the hour repeated in autumn, the first of the two.
 */
export function wallClockToInstant(zone: string, wallMs: number): number {
  const first = wallMs - offsetAt(zone, wallMs);
  const second = wallMs - offsetAt(zone, first);
  if (first === second) return first;
  // Around a change the two guesses differ: prefer the one that reads back as the wall time asked for.
  const reads = (t: number) => t + offsetAt(zone, t) === wallMs;
  if (reads(second) && reads(first)) return Math.min(first, second);
  if (reads(second)) return second;
  if (reads(first)) return first;
  return Math.max(first, second);
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
