/**
 * Deny windows evaluated at given instants: a weekend window by cron, a daily one, holidays by RRULE, windows
 * read in a time zone across a daylight-saving change, and the instants exactly at a window's start and end.
 */
import { describe, expect, it } from 'vitest';
import { denyWindowProblem, wallClockToInstant, windowsAt, type DenyWindowSpec } from '../../src/shared/windows';

const at = (iso: string): number => Date.parse(iso);
const names = (windows: DenyWindowSpec[], iso: string, env?: string): string[] => windowsAt(windows, at(iso), env).active.map((w) => w.name);

const weekend: DenyWindowSpec = { name: 'weekend', cron: '0 18 * * 5', duration: '62h', reason: 'nobody is around to watch' };
const nightly: DenyWindowSpec = { name: 'nightly-backup', cron: '0 2 * * *', duration: '1h', environments: ['production'] };
const holidays: DenyWindowSpec = {
  name: 'holidays',
  rrule: 'DTSTART:20261224T000000Z\nRRULE:FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=24',
  duration: '9d',
  reason: 'end-of-year freeze',
};

describe('deny windows', () => {
  it('denies from Friday 18:00 to Monday 08:00 and says when the next weekend starts', () => {
    // 2026-01-02 is a Friday.
    expect(names([weekend], '2026-01-02T17:59:59Z')).toEqual([]);
    const sat = windowsAt([weekend], at('2026-01-03T12:00:00Z'));
    expect(sat.active).toEqual([expect.objectContaining({
      name: 'weekend', start: '2026-01-02T18:00:00.000Z', end: '2026-01-05T08:00:00.000Z', reason: 'nobody is around to watch',
    })]);
    expect(sat.next).toEqual(expect.objectContaining({ name: 'weekend', start: '2026-01-09T18:00:00.000Z' }));
    expect(names([weekend], '2026-01-05T09:00:00Z')).toEqual([]);
  });

  it('counts the start instant in and the end instant out', () => {
    expect(names([weekend], '2026-01-02T18:00:00.000Z')).toEqual(['weekend']);
    expect(names([weekend], '2026-01-05T07:59:59.999Z')).toEqual(['weekend']);
    expect(names([weekend], '2026-01-05T08:00:00.000Z')).toEqual([]);
    expect(windowsAt([weekend], at('2026-01-02T17:59:59.999Z')).next?.start).toBe('2026-01-02T18:00:00.000Z');
  });

  it('applies a daily window only to the environments it names', () => {
    expect(names([nightly], '2026-03-10T02:30:00Z', 'production')).toEqual(['nightly-backup']);
    expect(names([nightly], '2026-03-10T02:30:00Z', 'staging')).toEqual([]);
    expect(names([nightly], '2026-03-10T03:00:00Z', 'production')).toEqual([]);
    expect(names([nightly], '2026-03-11T02:00:00Z', 'production')).toEqual(['nightly-backup']);
  });

  it('closes the holidays every year by RRULE, with the next start a year on', () => {
    expect(names([holidays], '2026-12-23T23:59:59Z')).toEqual([]);
    expect(names([holidays], '2026-12-31T10:00:00Z')).toEqual(['holidays']);
    expect(names([holidays], '2027-01-02T00:00:00Z')).toEqual([]);
    expect(names([holidays], '2027-12-25T00:00:00Z')).toEqual(['holidays']);
    expect(windowsAt([holidays], at('2027-01-05T00:00:00Z')).next?.start).toBe('2027-12-24T00:00:00.000Z');
    // Before DTSTART nothing occurs.
    expect(names([holidays], '2025-12-25T00:00:00Z')).toEqual([]);
  });

  it('reads a cron window in its time zone, across the change to summer time', () => {
    const berlin: DenyWindowSpec = { name: 'evening', cron: '0 18 * * *', duration: '2h', timezone: 'Europe/Berlin' };
    // Winter (UTC+1): 18:00 in Berlin is 17:00 UTC.
    expect(names([berlin], '2026-03-27T17:00:00Z')).toEqual(['evening']);
    expect(names([berlin], '2026-03-27T16:59:59Z')).toEqual([]);
    // Summer (UTC+2) from 2026-03-29: 18:00 in Berlin is 16:00 UTC.
    expect(windowsAt([berlin], at('2026-03-30T16:30:00Z')).active[0]?.start).toBe('2026-03-30T16:00:00.000Z');
    expect(names([berlin], '2026-03-30T18:00:00Z')).toEqual([]);
  });

  it('reads an RRULE without Z in the window\'s time zone, and one with a TZID in that zone', () => {
    const local: DenyWindowSpec = { name: 'eve', rrule: 'DTSTART:20261224T120000\nRRULE:FREQ=YEARLY', duration: '12h', timezone: 'America/New_York' };
    // Noon in New York in December is 17:00 UTC.
    expect(windowsAt([local], at('2026-12-24T18:00:00Z')).active[0]?.start).toBe('2026-12-24T17:00:00.000Z');
    expect(names([local], '2026-12-24T16:59:00Z')).toEqual([]);
    const tzid: DenyWindowSpec = { name: 'eve', rrule: 'DTSTART;TZID=Europe/Berlin:20260701T090000\nRRULE:FREQ=WEEKLY;BYDAY=WE', duration: '1h' };
    // 2026-07-01 is a Wednesday; 09:00 in Berlin in summer is 07:00 UTC.
    expect(windowsAt([tzid], at('2026-07-08T07:30:00Z')).active[0]?.start).toBe('2026-07-08T07:00:00.000Z');
  });

  it('merges occurrences that overlap into one stretch', () => {
    const hourly: DenyWindowSpec = { name: 'busy', cron: '0 9-11 * * *', duration: '90m' };
    const w = windowsAt([hourly], at('2026-05-05T10:15:00Z')).active[0];
    expect(w).toEqual(expect.objectContaining({ start: '2026-05-05T09:00:00.000Z', end: '2026-05-05T12:30:00.000Z' }));
  });

  it('finds wall-clock instants in a zone, also next to a daylight-saving change', () => {
    expect(new Date(wallClockToInstant('Europe/Berlin', at('2026-01-15T12:00:00Z'))).toISOString()).toBe('2026-01-15T11:00:00.000Z');
    expect(new Date(wallClockToInstant('Europe/Berlin', at('2026-07-15T12:00:00Z'))).toISOString()).toBe('2026-07-15T10:00:00.000Z');
    // 02:30 on 2026-03-29 does not exist in Berlin: the instant after the gap.
    expect(new Date(wallClockToInstant('Europe/Berlin', at('2026-03-29T02:30:00Z'))).toISOString()).toBe('2026-03-29T01:30:00.000Z');
  });

  it('refuses bad windows at config time with the fix', () => {
    expect(denyWindowProblem(weekend)).toBeUndefined();
    expect(denyWindowProblem(holidays)).toBeUndefined();
    expect(denyWindowProblem({ name: 'x', cron: '0 18 * * 8', duration: '1h' })).toMatch(/cron "0 18 \* \* 8" does not parse.*five fields/);
    expect(denyWindowProblem({ name: 'x', duration: '1h' })).toMatch(/exactly one of cron .* or rrule/);
    expect(denyWindowProblem({ name: 'x', cron: '0 18 * * 5', rrule: 'RRULE:FREQ=DAILY', duration: '1h' })).toMatch(/exactly one/);
    expect(denyWindowProblem({ name: 'x', cron: '0 18 * * 5', duration: '1h', timezone: 'Mars/Olympus' })).toMatch(/"Mars\/Olympus" is not an IANA time zone/);
    expect(denyWindowProblem({ name: 'x', cron: '0 18 * * 5', duration: 'soon' })).toMatch(/duration "soon" is not a duration/);
    expect(denyWindowProblem({ name: 'x', rrule: 'RRULE:FREQ=YEARLY', duration: '1h' })).toMatch(/no DTSTART line/);
    expect(denyWindowProblem({ name: 'x', rrule: 'DTSTART:20261224T000000Z\nRRULE:FREQ=YEARY', duration: '1h' })).toMatch(/does not parse/);
    expect(denyWindowProblem({ name: 'x', rrule: 'DTSTART:20261224T000000Z\nRRULE:FREQ=YEARLY;BYMONTH=13', duration: '1h' })).toMatch(/BYMONTH|never occurs|does not parse/);
    expect(denyWindowProblem({ name: 'x', rrule: 'DTSTART:20261224T000000Z\nRRULE:FREQ=YEARLY', duration: '1h', timezone: 'Europe/Berlin' })).toMatch(/drop the Z/);
  });
});
