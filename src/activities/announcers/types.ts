/**
 * The announcement channel contract. Every channel (the audit log, the release artifacts, GitHub, the chat
 * webhook, and whatever comes next: Microsoft Teams, email over SMTP…) is one module exporting a factory that
 * returns an {@link Announcer}; the worker's list of channels is in src/activities/index.ts. Adding a channel is
 * its module plus one line in that list; the workflow never changes: it asks the worker for its channels
 * (`announcePlan`) and runs one `announceChannel` activity per enabled channel (../announce.ts).
 *
 * A channel:
 * - says whether it has anything to do for a request (`enabled`; a disabled channel is reported as skipped);
 * - delivers once per action (`ctx.actionId`), however often it is retried and on whichever worker. Its
 *   activity's completion, in the release's history, is the record that it delivered, so a channel that
 *   completed is never run again; what it must make safe is the retry of an attempt that died (or timed out)
 *   after its effect landed and before it completed. It keeps no local state for that: the effect is found
 *   where it landed (the audit log's line id, the GitHub release by its tag, a comment by its hidden marker),
 *   rewritten whole (artifacts), or sent with an idempotency key the receiver dedupes by (`ctx.idempotencyKey`);
 * - resolves with its result when it succeeded (or found it already done), and throws when it failed: an
 *   ApplicationFailure whose `nonRetryable` says whether retrying can help (a missing secret cannot), with a
 *   message that names references, never secret values;
 * - may leave something for the channels after it in `ctx` (artifacts reads the CHANGELOG section that GitHub
 *   then uses as the release body; the audit log records its line, which the signed manifest names). Those
 *   travel in the deliveries' results and requests, through history: never a secret.
 */
import type { AnnounceChannelResult, AnnounceRequest } from '../types';

export type ChannelResult = AnnounceChannelResult;

export interface AnnounceContext {
  /** The workflow run being announced (`no-run` outside an activity). */
  runId: string;
  /** `{workflowId}/{runId}/{outcome}`: the action announced, the same on every attempt and every worker. */
  actionId: string;
  /** What a receiver dedupes deliveries of this action by (the `Idempotency-Key` header): the action id. */
  idempotencyKey: string;
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
  /**
   * When it runs: channels of one stage at once, stages in ascending order. The audit log is stage 1 (the record
   * exists first, and the manifest names its line), artifacts stage 2 (its CHANGELOG section goes to GitHub),
   * every other channel stage 3 (the default).
   */
  stage?: number;
  /** Why a disabled channel is skipped, for its result (e.g. "announce.webhook is not set"). */
  skipReason?(req: AnnounceRequest): string;
  /** Announce; throw on failure (see above). */
  announce(req: AnnounceRequest, ctx: AnnounceContext): Promise<ChannelResult>;
}
