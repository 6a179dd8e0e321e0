/**
 * Durations, converted in one place: config and step options hold Temporal's duration form (`30s`, `5m`, `72h`,
 * or milliseconds); code that needs a number of milliseconds calls `durationMs`. Deterministic (workflow code).
 * What an operator writes in the config always carries its unit: the schema refuses a bare number such as
 * `window: 30` ({@link durationProblem}), which this function would read as 30 ms. Numbers here
 * come from gantry's own defaults and from releases recorded before that rule, which replay as they ran.
 */
// The SDK's own parser, so gantry reads a duration exactly as Temporal does (its only home is this subpath).
import { msToNumber } from '@temporalio/common/lib/time';

/** Temporal's duration form. */
export type Duration = string | number;

export function durationMs(d: Duration): number {
  return msToNumber(d as Parameters<typeof msToNumber>[0]);
}

/** Why a duration an operator wrote (config or a CLI flag) is not one, or undefined when it is: it must carry its unit. */
export function durationProblem(value: string | number): string | undefined {
  const text = String(value).trim();
  if (/^-?\d+(\.\d+)?$/.test(text)) {
    const n = Number(text);
    return n > 0
      ? `${typeof value === 'number' ? text : `"${text}"`} has no unit, and a bare number would be read as ${text} millisecond${n === 1 ? '' : 's'}; ` +
          `write the unit: ${text}s for seconds (or ${text}m, ${text}h, ${text}d; ${text}ms if you do mean milliseconds)`
      : `"${text}" is not a positive duration; write it like 30s, 5m, 2h or 3d`;
  }
  try {
    const ms = msToNumber(text as Parameters<typeof msToNumber>[0]);
    if (!(ms > 0)) throw new Error('not positive');
  } catch {
    return `"${text}" is not a duration; write it like 30s, 5m, 2h or 3d`;
  }
  return undefined;
}
