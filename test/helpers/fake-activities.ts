/**
 * Test doubles for the release steps: they return plausible results, count calls, and fail on demand, so
 * workflow tests can drive every branch. They are test doubles, never registered by the real worker.
 */
import { Context } from '@temporalio/activity';
import { GantryErrorType, nonRetryable, retryable } from '../../src/shared/errors';
import type { AnnounceChannelRequest, AnnounceRequest, FreezeCheckResult, GovernanceActivities, PlannedChannel, ReleaseActivities } from '../../src/activities/types';
import type { NoticeRequest } from '../../src/shared/notices';

type StepKey = keyof ReleaseActivities;

export interface FakeBehaviour {
  /** Fail this step: 'retryable' fails every attempt (retries exhausted), 'fatal' fails non-retryably. */
  fail?: Partial<Record<StepKey | 'deploy:production' | 'deploy:staging', 'retryable' | 'fatal'>>;
  /** Steps that fail until this function returns false (checked on every attempt). */
  failWhile?: Partial<Record<StepKey, () => boolean>>;
  /** Milliseconds a step takes (with heartbeats), to leave room for cancellation. */
  delayMs?: Partial<Record<StepKey | 'deploy:production', number>>;
  /**
   * Steps (build, deploy) that keep running, heartbeating, until this promise settles: the test decides when
   * they finish, so "while the step runs" does not depend on the machine's speed.
   */
  holdUntil?: Partial<Record<'build' | 'deploy' | 'deploy:production', Promise<unknown>>>;
  /**
   * The freeze check's answer (default: nothing frozen). Workflow tests on the time-skipping server use this
   * double; the real check (registry and deny windows) is tested on real servers in freezes.test.ts.
   */
  freeze?: (req: { service: string; environment: string; nowMs: number }) => Omit<FreezeCheckResult, 'attempt'>;
  /** Real governance activities to use instead of the doubles (e.g. the real notify against the lab's receiver). */
  governance?: Partial<GovernanceActivities>;
  /**
   * The announcement channels the fake worker plans (announcePlan), in order, each enabled. Default: the real
   * worker's list (audit, artifacts, github, webhook), each enabled when the request configures it.
   */
  channels?: string[];
  /** Channels whose delivery fails: 'retryable' on every attempt (retries exhausted), 'fatal' non-retryably. */
  failChannel?: Partial<Record<string, 'retryable' | 'fatal'>>;
  /** Channels whose delivery fails while this returns true (checked on every attempt). */
  failChannelWhile?: Partial<Record<string, () => boolean>>;
}

export interface FakeActivities extends Omit<ReleaseActivities, 'resolvePlan'>, GovernanceActivities {
  calls: string[];
  /** Notices asked for, in order. */
  notices: NoticeRequest[];
  /** Freeze checks made (environment and workflow time). */
  freezeChecks: Array<{ environment: string; nowMs: number }>;
  /** The end-of-release records asked for (recordEnd), by outcome: kept apart from `calls`, which lists the steps. */
  recorded: string[];
  /**
   * Every attempt of a channel's delivery (announceChannel), as `channel:outcome#attempt`, kept apart from
   * `calls`, where the announce step appears once per run (`announce:<outcome>`, its announcePlan).
   */
  deliveries: string[];
  /** The requests of those attempts, in the same order. */
  deliveryRequests: AnnounceChannelRequest[];
  /** When absent, the test harness answers with the test's input. */
  resolvePlan?: ReleaseActivities['resolvePlan'];
}

const attempt = (): number => Context.current().info.attempt;

async function work(ms: number | undefined): Promise<void> {
  if (!ms) return;
  const ctx = Context.current();
  const until = Date.now() + ms;
  while (Date.now() < until) {
    ctx.heartbeat();
    await Promise.race([ctx.sleep(100), ctx.cancelled]);
  }
}

async function held(until: Promise<unknown> | undefined): Promise<void> {
  if (!until) return;
  const ctx = Context.current();
  let settled = false;
  const done = until.then(() => { settled = true; }, () => { settled = true; });
  while (!settled) {
    ctx.heartbeat();
    await Promise.race([ctx.sleep(100), ctx.cancelled, done]);
  }
}

/** The real worker's channels (src/activities/announce.ts), and when each has something to do. */
const CHANNELS: { name: string; title: string; stage: number; enabled: (req: AnnounceRequest) => boolean }[] = [
  { name: 'audit', title: 'audit log', stage: 1, enabled: (req) => Boolean(req.announce.auditLog) },
  { name: 'artifacts', title: 'release artifacts', stage: 2, enabled: (req) => Boolean(req.announce.artifactsDir) },
  { name: 'github', title: 'GitHub', stage: 3, enabled: (req) => Boolean(req.github) },
  { name: 'webhook', title: 'chat webhook', stage: 3, enabled: (req) => Boolean(req.announce.webhook) },
];

function plannedChannels(req: AnnounceRequest, names: string[] | undefined): PlannedChannel[] {
  if (names) return names.map((name) => ({ name, title: CHANNELS.find((c) => c.name === name)?.title ?? name, stage: CHANNELS.find((c) => c.name === name)?.stage ?? 3, enabled: true }));
  return CHANNELS.map((c) => ({ name: c.name, title: c.title, stage: c.stage, enabled: c.enabled(req), ...(c.enabled(req) ? {} : { skipReason: 'not configured (fake)' }) }));
}

export function fakeActivities(b: FakeBehaviour = {}): FakeActivities {
  const calls: string[] = [];
  const deliveries: string[] = [];
  const deliveryRequests: AnnounceChannelRequest[] = [];
  const recorded: string[] = [];
  const notices: NoticeRequest[] = [];
  const freezeChecks: Array<{ environment: string; nowMs: number }> = [];
  const maybeFail = (key: string, step: StepKey): void => {
    const mode = b.fail?.[key as StepKey] ?? (key !== step ? b.fail?.[step] : undefined);
    if (mode === 'fatal') throw nonRetryable(GantryErrorType.CheckFailed, `${key} failed for good (fake)`, { attempt: attempt() });
    if (mode === 'retryable' || b.failWhile?.[step]?.()) throw retryable(`${key} unavailable (fake), attempt ${attempt()}`);
  };
  const acts: Omit<ReleaseActivities, 'resolvePlan'> = {
    async preflight() {
      calls.push('preflight');
      maybeFail('preflight', 'preflight');
      // The release commit was made a minute before preflight looked at it (lead time for `gantry report`).
      const commitTime = new Date(Date.now() - 60_000).toISOString();
      return { attempt: attempt(), commit: 'a'.repeat(40), commitTime, checks: [{ name: 'semver', ok: true, detail: 'ok' }] };
    },
    async tag(req) {
      calls.push('tag');
      maybeFail('tag', 'tag');
      return { attempt: attempt(), tag: `v${req.release.version}`, commit: req.commit, created: true };
    },
    async build(req) {
      calls.push('build');
      await work(b.delayMs?.build);
      await held(b.holdUntil?.build);
      maybeFail('build', 'build');
      const digest = `sha256:${'b'.repeat(64)}`;
      const repo = `${req.image.registry}/${req.image.name}`;
      return { attempt: attempt(), image: `${repo}:${req.tag}`, digest, imageRef: `${repo}@${digest}`, built: true };
    },
    async deploy(req) {
      calls.push(`deploy:${req.environment}`);
      await work(b.delayMs?.[req.environment === 'production' ? 'deploy:production' : 'deploy']);
      await held(b.holdUntil?.[req.environment === 'production' ? 'deploy:production' : 'deploy']);
      maybeFail(`deploy:${req.environment}`, 'deploy');
      return {
        attempt: attempt(),
        environment: req.environment,
        targets: [{ target: `${req.target.kind}:${req.target.container}`, previousImage: 'old@sha256:0', image: req.imageRef, changed: true }],
      };
    },
    async smoke(req) {
      calls.push('smoke');
      maybeFail('smoke', 'smoke');
      return { attempt: attempt(), checks: req.checks.map((c) => ({ name: c.name, url: c.url, ok: true, status: 200, detail: '200 OK' })) };
    },
    async health(req) {
      calls.push('health');
      maybeFail('health', 'health');
      return { attempt: attempt(), checks: req.checks.map((c) => ({ name: c.name, url: c.url, ok: true, status: 200, detail: '200 OK' })) };
    },
    async rollback(req) {
      calls.push('rollback');
      maybeFail('rollback', 'rollback');
      return { attempt: attempt(), restored: req.deployed.map((t) => ({ target: t.target, image: t.previousImage })), healthy: true };
    },
    async recordEnd(req) {
      recorded.push(req.outcome);
      return { attempt: attempt(), webhookSent: false, auditLogged: false };
    },
    async announce(req) {
      calls.push(`announce:${req.outcome}`);
      maybeFail('announce', 'announce');
      return { attempt: attempt(), webhookSent: false, auditLogged: false };
    },
    // The per-channel announce: the plan stands for the step in `calls` (and fails as `announce` does).
    async announcePlan(req) {
      calls.push(`announce:${req.outcome}`);
      maybeFail('announce', 'announce');
      return { attempt: attempt(), channels: plannedChannels(req, b.channels) };
    },
    async announceChannel(req) {
      deliveries.push(`${req.channel}:${req.outcome}#${attempt()}`);
      deliveryRequests.push(req);
      const mode = b.failChannel?.[req.channel];
      if (mode === 'fatal') throw nonRetryable(GantryErrorType.ConfigInvalid, `${req.channel} refused the announcement (fake)`);
      if (mode === 'retryable' || b.failChannelWhile?.[req.channel]?.()) throw retryable(`${req.channel} unavailable (fake), attempt ${attempt()}`);
      return {
        attempt: attempt(),
        channel: req.channel,
        ok: true,
        detail: `delivered (fake)`,
        // What the real channels leave for the ones after them.
        ...(req.channel === 'artifacts' ? { section: `notes for ${req.release.version} (fake)` } : {}),
        ...(req.channel === 'audit' ? { auditLine: { line: 1, sha256: `sha256:${'c'.repeat(64)}` } } : {}),
      };
    },
  };
  // Lanes on the time-skipping server: granted at once. A real lane runs a watching activity for as long as a
  // release holds it, and a running activity stops the test server from skipping time; lanes are tested on the
  // dev server with the real lane workflow (lanes.test.ts, governance.test.ts).
  const governance: GovernanceActivities = {
    async laneEnqueue(req) {
      const at = new Date().toISOString();
      const entry = { workflowId: req.workflowId, runId: req.runId, version: req.version, since: at };
      return { attempt: attempt(), service: req.service, environment: req.environment, holder: { ...entry, heldSince: at }, queue: [], position: 0, updatedAt: at };
    },
    async checkFreeze(req) {
      freezeChecks.push({ environment: req.environment, nowMs: req.nowMs });
      return { attempt: attempt(), ...(b.freeze?.(req) ?? { frozen: false, freezes: [] }) };
    },
    async notify(req) {
      notices.push(req);
      return { attempt: attempt(), sent: false, detail: 'recorded by the test double' };
    },
    ...b.governance,
  };
  if (b.governance?.notify) {
    const real = b.governance.notify;
    governance.notify = async (req) => { notices.push(req); return real(req); };
  }
  return Object.assign(acts, governance, { calls, recorded, notices, freezeChecks, deliveries, deliveryRequests });
}
