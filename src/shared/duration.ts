/**
 * Durations, converted in one place: config and step options hold Temporal's duration form (`30s`, `5m`, `72h`,
 * or milliseconds); code that needs a number of milliseconds calls `durationMs`. Deterministic (workflow code).
 * What an operator writes in the config always carries its unit: the schema refuses a bare number such as
 * `window: 30` (src/config/schema.ts `durationProblem`), which this function would read as 30 ms. Numbers here
 * come from gantry's own defaults and from releases recorded before that rule, which replay as they ran.
 */
// The SDK's own parser, so gantry reads a duration exactly as Temporal does (its only home is this subpath).
import { msToNumber } from '@temporalio/common/lib/time';

/** Temporal's duration form. */
export type Duration = string | number;

export function durationMs(d: Duration): number {
  return msToNumber(d as Parameters<typeof msToNumber>[0]);
}
