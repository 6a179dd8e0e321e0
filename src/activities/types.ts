/**
 * The contract between the release workflow and the steps it runs. The workflow only ever sees these types
 * (`import type`); each step's implementation lives in its own module as a factory over its dependencies, and
 * the worker assembles them with {@link ReleaseActivities}.
 *
 * Requests carry config slices from the workflow input, never secrets: a secret is a reference the activity
 * resolves on the worker. Every result carries `attempt`, the activity attempt that succeeded, for status.
 */
import type { LaneView } from '../shared/lanes';
import type { NoticeRequest } from '../shared/notices';
import type { GateFreeze } from '../shared/release';
import type {
  AnnounceConfig,
  BuildConfig,
  DeployTarget,
  GithubConfig,
  HttpCheck,
  ImageConfig,
  RepoConfig,
} from '../config/schema';
import type { ReleaseInput } from '../shared/release';

export interface ReleaseRef {
  service: string;
  version: string;
  workflowId: string;
}

interface Attempted {
  /** The activity attempt (1-based) that produced this result. */
  attempt: number;
}

export interface ResolveRequest {
  service: string;
  version: string;
  requestedBy: string;
  dryRun: boolean;
  workflowId: string;
}
export interface ResolveResult extends Attempted {
  /** The plan the release runs on, from the worker's config (recorded in history). */
  input: ReleaseInput;
}

export interface PreflightRequest {
  release: ReleaseRef;
  repo: RepoConfig;
  github?: GithubConfig;
  /**
   * The service's announce.artifactsDir (`{service}` and `{version}` not yet expanded): where the full output of
   * repo.testCommand is kept, as `preflight-tests.log`. Without it only a short, redacted tail is reported.
   */
  artifactsDir?: string;
}
export interface PreflightResult extends Attempted {
  /** Full SHA of the commit to release (the head of the configured branch). */
  commit: string;
  /**
   * The release commit's committer time (ISO 8601, UTC), as git records it in the checkout. `gantry report`
   * measures lead time for changes from it. Absent in releases recorded before it existed, or when git could
   * not tell.
   */
  commitTime?: string;
  checks: { name: string; ok: boolean; detail: string }[];
}

export interface TagRequest {
  release: ReleaseRef;
  repo: RepoConfig;
  commit: string;
}
export interface TagResult extends Attempted {
  tag: string;
  commit: string;
  /** False when the tag was already there at this commit (a retry or a rerun). */
  created: boolean;
}

export interface BuildRequest {
  release: ReleaseRef;
  repo: RepoConfig;
  image: ImageConfig;
  build: BuildConfig;
  github?: GithubConfig;
  tag: string;
  commit: string;
}
export interface BuildResult extends Attempted {
  /** `{registry}/{image}:v{version}` */
  image: string;
  /** `sha256:…` manifest digest */
  digest: string;
  /** `{registry}/{image}@{digest}`: what deploys pull. */
  imageRef: string;
  /** False when an image already pushed for this tag and commit was reused. */
  built: boolean;
  ciRunId?: number;
  ciRunUrl?: string;
}

/** An environment's name as the service's config lists it (staging, qa, production…). */
export type EnvironmentName = string;

export interface DeployRequest {
  release: ReleaseRef;
  environment: EnvironmentName;
  target: DeployTarget;
  imageRef: string;
  digest: string;
}
export interface DeployedTarget {
  /** `docker:hello-staging` or `ssh:deploy@10.0.0.5:22/hello` */
  target: string;
  /** The image reference that ran before, or null when the container did not exist. */
  previousImage: string | null;
  image: string;
  /** False when the target already ran this digest. */
  changed: boolean;
}
export interface DeployResult extends Attempted {
  environment: EnvironmentName;
  targets: DeployedTarget[];
}

export interface VerifyRequest {
  release: ReleaseRef;
  environment: EnvironmentName;
  checks: HttpCheck[];
  /** How long wrong answers and refused connections are tolerated, in ms. */
  windowMs: number;
  /**
   * Wrong answers in a row from one check that end the checks at once (the environment's `failureLimit`);
   * 0 waits out the whole window. @default 3
   */
  failureLimit?: number;
}
export interface CheckOutcome {
  name: string;
  url: string;
  ok: boolean;
  status?: number;
  detail: string;
}
export interface VerifyResult extends Attempted {
  checks: CheckOutcome[];
}

export interface RollbackRequest {
  release: ReleaseRef;
  environment: EnvironmentName;
  target: DeployTarget;
  /** What the failed deploy changed; each changed target goes back to its previousImage. */
  deployed: DeployedTarget[];
  checks: HttpCheck[];
  windowMs: number;
  /** As in {@link VerifyRequest}: the restored version's checks end early after this many wrong answers in a row. @default 3 */
  failureLimit?: number;
}
export interface RollbackResult extends Attempted {
  restored: { target: string; image: string | null }[];
  /**
   * False only when nothing ran before the release (its containers were removed, nothing answers); a restored
   * version that fails its checks is a GantryRollbackUnhealthy failure instead.
   */
  healthy: boolean;
}

export type AnnouncedOutcome = 'released' | 'rolled_back';
/** How a release that was not announced ended: what its last audit line says. */
export type RecordedOutcome = AnnouncedOutcome | 'rejected' | 'aborted' | 'cancelled' | 'failed';

export interface AnnounceRequest {
  release: ReleaseRef;
  outcome: AnnouncedOutcome;
  announce: AnnounceConfig;
  github?: GithubConfig;
  repo: RepoConfig;
  commit: string;
  tag: string;
  digest: string;
  imageRef: string;
  approvers: string[];
  hosts: string[];
  /** Step name → duration in ms. */
  durations: Record<string, number>;
  ciRunUrl?: string;
  reason?: string;
  /**
   * The release's actions in order (started, approved, decided…), each written to the audit log as a chained
   * line of its own before the outcome line. Without it only the outcome line is written.
   */
  actions?: AnnouncedAction[];
  /** The gate's approvals with their signed statements, as the signed release manifest records them. */
  approvals?: AnnouncedApproval[];
  /** What governance let happen, in words: a hotfix and why, a freeze passed by break-glass, a skipped step. Always announced. */
  governance?: string[];
  /** sha256 of the worker config the release ran with (`sha256:<hex>`), recorded in the release manifest. */
  configSha256?: string;
}
export interface AnnouncedAction {
  /** e.g. started, approved, rejected, decided, cancelled */
  kind: string;
  actor: string;
  /** The actor's signed statement verified (false: a declared name). */
  verified: boolean;
  /** ISO 8601 */
  at: string;
  detail?: string;
}
export interface AnnouncedApproval {
  approver: string;
  verified: boolean;
  /** The approver's key (`SHA256:…`) when the approval was signed. */
  fingerprint?: string;
  reason?: string;
  /** ISO 8601 */
  at: string;
  /** signal | update | start */
  via: string;
  /** The signed statement (its exact text) and its armored SSH signature, when the approval was signed. */
  statement?: string;
  signature?: string;
}
/** One announcement channel's part of the answer (src/activities/announcers/types.ts). */
export interface AnnounceChannelResult {
  /** The channel's name: audit, artifacts, github, webhook, … */
  channel: string;
  /** False when the channel failed; detail says why. */
  ok: boolean;
  /** The channel is not configured for this release (or has nothing to do for this outcome). */
  skipped?: boolean;
  detail: string;
  /** A file or directory the channel wrote. */
  path?: string;
  /** A page the channel published (the GitHub release). */
  url?: string;
  /** Files the channel wrote, by role (notes, metadata, manifest, signature). */
  files?: Record<string, string>;
}
export interface AnnounceResult extends Attempted {
  webhookSent: boolean;
  auditLogged: boolean;
  notesPath?: string;
  metadataPath?: string;
  githubReleaseUrl?: string;
  /** The release manifest and its signature (absent when the manifest was written unsigned). */
  manifestPath?: string;
  manifestSignaturePath?: string;
  /** Every channel's result, by name, in the order they ran (one failing channel does not hide the others). */
  channels?: AnnounceChannelResult[];
}

/**
 * What a release's announcement goes through, as the worker has it (`announcePlan`): every channel it runs, in
 * order, each with the stage it runs in. The workflow runs one `announceChannel` activity per enabled channel:
 * channels of one stage at once, stages one after another; a channel's completed activity is its delivery
 * record, in the release's history, so a retry of the step (or of the workflow task, on any worker) never
 * repeats a channel that already delivered.
 */
export interface AnnouncePlan extends Attempted {
  channels: PlannedChannel[];
}
export interface PlannedChannel {
  /** The channel's name (audit, artifacts, github, webhook, …). */
  name: string;
  /** How messages name it ("chat webhook"). */
  title: string;
  /** Channels of one stage run at once; stages run in ascending order (audit 1, artifacts 2, the others 3). */
  stage: number;
  /** False: nothing to do for this release (not configured); `skipReason` says why. */
  enabled: boolean;
  skipReason?: string;
}
/** What one channel's delivery leaves for the channels after it (never a secret: these go through history). */
export interface AnnounceShared {
  /** The CHANGELOG section for the version, read from the tag by the artifacts channel (GitHub's release body). */
  section?: string;
  /** The audit log's outcome line for this action, once the audit channel wrote (or found) it. */
  auditLine?: { line: number; sha256: string };
}
/** One channel's delivery: the announcement, the channel to deliver it on, and what earlier channels left. */
export interface AnnounceChannelRequest extends AnnounceRequest, AnnounceShared {
  channel: string;
}
/** A delivered channel: its result, and what it leaves for the channels after it. */
export type AnnounceDelivery = Attempted & AnnounceChannelResult & AnnounceShared;

/** Every activity the release workflow calls. */
/**
 * The end-of-release record for a release that did not reach (or finish) its announcement: its actions and its
 * outcome as chained lines in the audit log, so rejections, aborts, cancellations and refusals are on the record
 * too. The same shape as an announcement; unknown facts (tag, digest before the build) are empty.
 */
export type RecordEndRequest = Omit<AnnounceRequest, 'outcome'> & { outcome: RecordedOutcome };

export interface ReleaseActivities {
  resolvePlan(req: ResolveRequest): Promise<ResolveResult>;
  recordEnd(req: RecordEndRequest): Promise<AnnounceResult>;
  preflight(req: PreflightRequest): Promise<PreflightResult>;
  tag(req: TagRequest): Promise<TagResult>;
  build(req: BuildRequest): Promise<BuildResult>;
  deploy(req: DeployRequest): Promise<DeployResult>;
  smoke(req: VerifyRequest): Promise<VerifyResult>;
  health(req: VerifyRequest): Promise<VerifyResult>;
  rollback(req: RollbackRequest): Promise<RollbackResult>;
  /** Releases recorded before per-channel deliveries: every channel in one activity. */
  announce(req: AnnounceRequest): Promise<AnnounceResult>;
  /** The channels this worker announces on, for this request. */
  announcePlan(req: AnnounceRequest): Promise<AnnouncePlan>;
  /** One channel's delivery (its completion is the delivery record). */
  announceChannel(req: AnnounceChannelRequest): Promise<AnnounceDelivery>;
}

/** A release asks for one environment's lane (src/activities/lanes.ts). */
export interface LaneRequest {
  service: string;
  environment: string;
  workflowId: string;
  runId: string;
  version: string;
  requestedBy?: string;
}

/** Which freezes hold a gate at a given (workflow) time: manual freezes and the config's deny windows. */
export interface FreezeCheckRequest {
  service: string;
  environment: string;
  nowMs: number;
}

export interface FreezeCheckResult extends Attempted {
  frozen: boolean;
  freezes: GateFreeze[];
  /** When the earliest of them ends, if any ends by itself. */
  until?: string;
}

/**
 * Governance: lanes, freezes and notices. Separate from the runbook's steps: they hold or tell, and never change
 * what a release deploys.
 */
export interface GovernanceActivities {
  laneEnqueue(req: LaneRequest): Promise<LaneView & Attempted>;
  checkFreeze(req: FreezeCheckRequest): Promise<FreezeCheckResult>;
  notify(req: NoticeRequest): Promise<{ attempt: number; sent: boolean; detail: string }>;
}
