/**
 * The announcement channel contract. Every channel (the audit log, the release artifacts, GitHub, the chat
 * webhook, and whatever comes next: Microsoft Teams, email over SMTP…) is one module exporting a factory that
 * returns an {@link Announcer}; the announce step (../announce.ts) runs every channel in its list, in order,
 * and reports each one's {@link ChannelResult} by name. Adding a channel is its module plus one line in the
 * list in src/activities/index.ts; the workflow never changes, since it only sees `channels` and the summary
 * fields derived from them.
 *
 * A channel:
 * - says whether it has anything to do for a request (`enabled`; a disabled channel is reported as skipped);
 * - is idempotent across retries of the same action (`ctx.actionId`): what it already did on an earlier
 *   attempt it does not do again (a marker in `ctx.ledgerDir`, a line id, a lookup by tag…);
 * - resolves with its result when it succeeded (or found it already done), and throws when it failed: an
 *   ApplicationFailure whose `nonRetryable` says whether retrying can help (a missing secret cannot), with a
 *   message that names references, never secret values. The step catches it, reports the channel failed and
 *   goes on with the others;
 * - may leave something for the channels after it in `ctx` (artifacts reads the CHANGELOG section that GitHub
 *   then uses as the release body; the audit log records its line, which the signed manifest names).
 */
import type { AnnounceChannelResult, AnnounceRequest } from '../types';

export type ChannelResult = AnnounceChannelResult;

export interface AnnounceContext {
  /** The workflow run being announced (`no-run` outside an activity). */
  runId: string;
  /** `{workflowId}/{runId}/{outcome}`: the action announced, the same on every attempt. */
  actionId: string;
  /** A file-name-safe form of actionId, for markers. */
  ledgerKey: string;
  /** Where channels keep their delivery markers and locks. */
  ledgerDir: string;
  /** The activity attempt (1-based). */
  attempt: number;
  now(): Date;
  /** Secret references are resolved against this. */
  env: NodeJS.ProcessEnv;
  /** The CHANGELOG section for the version, once a channel has read it (artifacts does, from the tag). */
  section?: string;
  /** The audit log's outcome line for this action, once the audit channel has written (or found) it. */
  auditLine?: { line: number; sha256: string };
}

export interface Announcer {
  /** Stable, short, lower case: how the result names the channel (audit, artifacts, github, webhook). */
  name: string;
  /** How messages name it ("chat webhook"); defaults to `name`. */
  title?: string;
  /** Whether the channel has anything to do for this request (configured, applicable to the outcome). */
  enabled(req: AnnounceRequest): boolean;
  /** Why a disabled channel is skipped, for its result (e.g. "announce.webhook is not set"). */
  skipReason?(req: AnnounceRequest): string;
  /** Announce; throw on failure (see above). */
  announce(req: AnnounceRequest, ctx: AnnounceContext): Promise<ChannelResult>;
}
