/**
 * A release as an operator follows it: `gantry status --json` through the built CLI, polled until the release
 * reaches a given point. On a timeout the error carries the last status and whatever the caller adds (worker
 * and server logs), so a failure in CI says where the release stood.
 */
import type { ReleaseStatus } from '../../src/shared/release';
import { gantry, show, waitFor } from '../cli/harness';

export interface ReleaseWatch {
  /** The release's status now (the CLI's exit code must be 0). */
  status(version: string): Promise<ReleaseStatus>;
  /** Poll the status every second until `pred` holds, for up to `timeoutMs`. */
  until(version: string, pred: (s: ReleaseStatus) => boolean, what: string, timeoutMs?: number): Promise<ReleaseStatus>;
}

export function watchRelease(service: string, env: () => Record<string, string>, diagnostics: () => string = () => ''): ReleaseWatch {
  const status = async (version: string): Promise<ReleaseStatus> => {
    const r = await gantry(['status', service, version, '--json'], { env: env() });
    if (r.code !== 0) throw new Error(show(r));
    return JSON.parse(r.stdout) as ReleaseStatus;
  };
  const until = (version: string, pred: (s: ReleaseStatus) => boolean, what: string, timeoutMs = 240_000): Promise<ReleaseStatus> =>
    waitFor(what, async () => {
      const s = await status(version);
      return pred(s) ? s : undefined;
    }, timeoutMs, 1_000).catch(async (err: unknown) => {
      const last = await status(version).then((s) => JSON.stringify(s, null, 1).slice(0, 4000), (e: unknown) => String(e));
      throw new Error(`${String(err)}\nlast status: ${last}\n${diagnostics()}`);
    });
  return { status, until };
}
