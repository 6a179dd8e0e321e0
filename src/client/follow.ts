/**
 * Following a release as it runs (`gantry start --wait`, `gantry status --follow`): stage changes, each step as
 * it starts and ends, retries and heartbeat progress of the running step, and, at the gate, the Web UI address
 * and the exact commands to approve or reject. Optionally approves on the operator's behalf when the gate opens.
 *
 * On a terminal (`live`), the steps, their progress and the gate are one block redrawn in place (src/client/live.ts)
 * and only the rest (gate instructions, votes, decisions, warnings) is printed, above it; otherwise plain lines.
 */
import { setMaxListeners } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { WorkflowExecutionDescription } from '@temporalio/client';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import type { Outcome, ReleaseStatus } from '../shared/release';
import type { SigningOptions } from './decisions';
import { approveCommand, webUiInstruction } from '../shared/gate';
import type { GantryClient } from './context';
import { formatDuration, formatOutputs, formatTime, durationBetween, plural } from './format';
import { describeRelease, queryStatus, type ReleaseAddress } from './release';
import { PLAIN, type Style } from './style';
import { LiveBlock, liveLines, type LiveTerminal, type StepProgress } from './live';
import { ReleaseNotFoundError } from './errors';
import { ServerUnreachableError } from '../connection';

export interface FollowOptions {
  print: (line: string) => void;
  style?: Style;
  /** Link to the release in the Web UI, printed at the gate. */
  webUrl?: string | undefined;
  /** Approve as this approver as soon as the gate opens (non-interactive runs). */
  approveAs?: string | undefined;
  approveReason?: string | undefined;
  /** How `approveAs` signs its vote (signed mode). */
  signing?: SigningOptions;
  /** The release's run, when the caller knows it (it started it): the vote names it without asking the server. */
  runId?: string | undefined;
  /** Return once the gate is open (after printing how to approve) instead of waiting for the end. */
  stopAtGate?: boolean;
  /** How often the status is read while the release runs; its end is noticed at once whatever this is. @default 500 */
  intervalMs?: number;
  /** Aborted on Ctrl-C: following stops, the release does not. */
  signal?: AbortSignal;
  /** Draw the steps and the gate as a live block on this terminal instead of printing them as lines. */
  live?: LiveTerminal | undefined;
}

export type FollowResult =
  | { kind: 'ended'; outcome: Outcome; status: ReleaseStatus }
  | { kind: 'gate'; status: ReleaseStatus }
  /** The execution closed and no status could be read (terminated, or no worker to answer the query). */
  | { kind: 'closed'; description: WorkflowExecutionDescription }
  | { kind: 'interrupted' };

type ActivityProgress = StepProgress;

function decodePayload(p: Payload | null | undefined): unknown {
  if (!p) return undefined;
  try {
    return defaultPayloadConverter.fromPayload(p);
  } catch {
    return '(undecodable)';
  }
}

function heartbeatText(d: WorkflowExecutionDescription, activityType: string): ActivityProgress | undefined {
  const pending = d.raw.pendingActivities?.find((a) => a.activityType?.name === activityType) ?? d.raw.pendingActivities?.[0];
  if (!pending) return undefined;
  const details = pending.heartbeatDetails?.payloads?.map((p) => decodePayload(p)).filter((v) => v !== undefined) ?? [];
  const heartbeat = details.length === 0 ? undefined : details.map(progressText).join(' ');
  return {
    attempt: pending.attempt ?? 1,
    ...(pending.lastFailure?.message ? { failure: pending.lastFailure.message } : {}),
    ...(heartbeat ? { heartbeat } : {}),
  };
}

/**
 * A step's heartbeat details in words. The steps report `{ phase, target, detail }` (e.g. pull, the container,
 * the engine's status line); anything else is shown as its fields.
 */
export function progressText(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return JSON.stringify(v);
  const o = { ...(v as Record<string, unknown>) };
  const head = [o.phase, o.target].filter((x) => typeof x === 'string' && x !== '').join(' ');
  const detail = typeof o.detail === 'string' ? o.detail : undefined;
  delete o.phase;
  delete o.target;
  delete o.detail;
  const rest = Object.entries(o).map(([k, x]) => `${k}=${typeof x === 'string' ? x : JSON.stringify(x)}`).join(' ');
  return [head && detail ? `${head}: ${detail}` : head || detail, rest].filter(Boolean).join(' ');
}

/** The activity type that runs a step (`deployStaging` and `deployProduction` both run `deploy`). */
function activityTypeOf(step: string): string {
  return step.startsWith('deploy') ? 'deploy' : step;
}

export async function followRelease(gc: GantryClient, addr: ReleaseAddress, opts: FollowOptions): Promise<FollowResult> {
  if (!opts.live) return follow(gc, addr, opts, undefined);
  const st = opts.style ?? PLAIN;
  let shown: { status: ReleaseStatus; progress: ActivityProgress | undefined } | undefined;
  const block = new LiveBlock(opts.live, (frame) =>
    shown ? liveLines(shown.status, { now: Date.now(), frame, progress: shown.progress, style: st }) : []);
  try {
    return await follow(gc, addr, { ...opts, print: (line) => block.log(line) }, {
      show(status, progress) {
        shown = { status, progress };
        block.start();
        block.draw();
      },
      stop: () => block.stop(),
    });
  } finally {
    block.stop();
  }
}

/** Where the live view goes while following on a terminal. */
interface LiveSink {
  /** The status just read, and the running step's progress. */
  show(status: ReleaseStatus, progress: ActivityProgress | undefined): void;
  /** Leave the block as it is: what is printed next goes below it. */
  stop(): void;
}

/** How often a follower that approves as someone reads the status until the gate opens, when the history cannot be watched. */
const APPROVER_INTERVAL_MS = 100;

/** temporal.api.enums.v1.EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED: the workflow ran, so its status may have changed. */
const WORKFLOW_TASK_COMPLETED = 7;

/** Counts the release's completed workflow tasks as the server appends them. */
export interface TaskWatch {
  /** How many batches with a completed workflow task have arrived so far. */
  seen(): number;
  /** Resolves once more than `count` have arrived (at once if they already have). */
  after(count: number): Promise<void>;
  /** False once the watch stopped (following then reads the status on its interval alone). */
  alive(): boolean;
}

/** How many times one read of the status is asked again while its first question waits (see readStatus). */
const STATUS_REASKS = 3;

/**
 * The release's status, asked again each time a workflow task completes while the question waits. A query that
 * reaches the server while a workflow task runs can be held there long after that task ended (1.0–1.5 s on the dev
 * server, with the gate open meanwhile, so an approving follower voted that much late), where one asked after it is
 * answered at once. The first answer wins (each reflects the release at least as of when it was asked); a read
 * fails only when every question failed, with the last one's error. At most STATUS_REASKS more questions.
 */
export async function readStatus(ask: () => Promise<ReleaseStatus>, tasks: Pick<TaskWatch, 'seen' | 'after' | 'alive'>): Promise<ReleaseStatus> {
  const asked: Promise<ReleaseStatus>[] = [];
  for (let round = 0; ; round++) {
    const seen = tasks.seen();
    const question = ask();
    question.catch(() => undefined); // its failure counts only once every question has failed
    asked.push(question);
    const answer = Promise.any(asked).then((status) => ({ status }), (err: AggregateError) => { throw err.errors.at(-1); });
    const again = round < STATUS_REASKS && tasks.alive() ? tasks.after(seen).then(() => 'again' as const) : new Promise<never>(() => undefined);
    const first = await Promise.race([answer, again]);
    if (first !== 'again') return first.status;
  }
}

/**
 * Run one call under a signal of its own that `parent` aborts. The SDK adds an abort listener to the signal of every
 * call it makes and never removes it, so a signal shared by a long watch collects one per long poll (and Node warns
 * on the user's terminal past ten); this one is dropped with its call.
 */
async function underOwnSignal<T>(parent: AbortSignal, fn: (own: AbortSignal) => Promise<T>): Promise<T> {
  const own = new AbortController();
  const abort = (): void => own.abort(parent.reason);
  if (parent.aborted) abort();
  else parent.addEventListener('abort', abort, { once: true });
  try {
    return await fn(own.signal);
  } finally {
    parent.removeEventListener('abort', abort);
  }
}

/**
 * Wakes the follower whenever the release's history gains a completed workflow task, i.e. whenever its status can
 * have changed (the gate opened, a step was scheduled or ended, a vote was taken): the server's long poll on the
 * history, as `temporal workflow show --follow` reads it. The status is read then, and on the interval for the
 * running step's heartbeats, so a follower sees the gate open at once instead of up to an interval late, and an
 * approving one sends its vote without reading the status ten times a second. Any error ends the watch quietly:
 * following goes on by the interval.
 */
/**
 * The counter behind a TaskWatch: `complete()` for each batch with a completed workflow task, `stop()` when the
 * watch ends (waking whoever waits, so they fall back to their interval).
 */
export function taskCounter(): { watch: TaskWatch; complete: () => void; stop: () => void } {
  let count = 0;
  let alive = true;
  let wake!: () => void;
  let next = new Promise<void>((resolve) => { wake = resolve; });
  const complete = (): void => {
    count += 1;
    const done = wake;
    next = new Promise<void>((resolve) => { wake = resolve; });
    done();
  };
  return {
    watch: { seen: () => count, after: (n) => (count > n ? Promise.resolve() : next), alive: () => alive },
    complete,
    stop: () => {
      alive = false;
      complete();
    },
  };
}

function watchTasks(gc: GantryClient, workflowId: string, signal: AbortSignal): TaskWatch {
  const tasks = taskCounter();
  void (async () => {
    let nextPageToken: Uint8Array | undefined;
    try {
      while (!signal.aborted) {
        const res = await underOwnSignal(signal, (own) => gc.connection.withAbortSignal(own, () => gc.client.workflowService.getWorkflowExecutionHistory({
          namespace: gc.namespace, execution: { workflowId }, waitNewEvent: true, skipArchival: true, ...(nextPageToken ? { nextPageToken } : {}),
        })));
        if (res.history?.events?.some((e) => Number(e.eventType) === WORKFLOW_TASK_COMPLETED)) tasks.complete();
        // No token: the execution closed (its end is seen through the release's result).
        if (!res.nextPageToken || res.nextPageToken.length === 0) break;
        nextPageToken = res.nextPageToken;
      }
    } catch {
      // Aborted, or the server would not long-poll: the interval alone drives following.
    } finally {
      tasks.stop();
    }
  })();
  return tasks.watch;
}

async function follow(gc: GantryClient, addr: ReleaseAddress, opts: FollowOptions, live: LiveSink | undefined): Promise<FollowResult> {
  const st = opts.style ?? PLAIN;
  const say = opts.print;
  const interval = opts.intervalMs ?? 500;
  const handle = gc.client.workflow.getHandle(addr.workflowId);
  // Signing needs ssh2 and the curves, which following alone never does: loaded only to approve, and then up front,
  // so loading them is not between the gate opening and the approval.
  const approving = opts.approveAs ? import('./actions.js') : undefined;
  approving?.catch(() => undefined); // awaited (and its failure thrown) only once the gate opens
  // The server's long poll for the release's end wakes the loop the moment it closes, so a follower exits with the
  // release instead of up to one interval later. Aborted when following stops.
  const stopWatching = new AbortController();
  // The wait for the end is one SDK call that long-polls again at each of the server's expiries, each adding a
  // listener to this signal (see underOwnSignal): a release waiting hours at the gate adds one every ~20 s. They
  // are freed with the controller when following stops, so the count is not a leak to warn about.
  const stopWaitingForEnd = new AbortController();
  setMaxListeners(0, stopWaitingForEnd.signal);
  stopWatching.signal.addEventListener('abort', () => stopWaitingForEnd.abort(), { once: true });
  let endSeen = false;
  // A release that completed returns its final status: shown as it is, with no query (which a worker would answer
  // by replaying the whole release). One that failed is asked as before.
  let endResult: ReleaseStatus | undefined;
  const ended = gc.client.withAbortSignal(stopWaitingForEnd.signal, () => handle.result())
    .then((r) => { endResult = r as ReleaseStatus; }, () => undefined)
    .finally(() => { endSeen = true; });
  const tasks = watchTasks(gc, addr.workflowId, stopWatching.signal);
  let prev: ReleaseStatus | undefined;
  let progress: ActivityProgress | undefined;
  let waitingForWorkerSaid = false;
  let gateShown = false;
  let approvalSent = false;
  let decisionShown = false;

  try {
    for (;;) {
      if (opts.signal?.aborted) return { kind: 'interrupted' };
      // What the status read below reflects: a task completed while it is read wakes the next round at once.
      const tasksSeen = tasks.seen();
      let s: ReleaseStatus | undefined = endResult?.outcome ? endResult : undefined;
      if (!s) try {
        s = await readStatus(() => queryStatus(gc, handle, 10_000), tasks);
      } catch (err) {
        if (err instanceof ReleaseNotFoundError || err instanceof ServerUnreachableError) throw err;
        const d = await describeRelease(gc, addr.workflowId);
        if (d.status.name !== 'RUNNING') {
          if (d.status.name === 'COMPLETED') {
            const result = (await handle.result()) as ReleaseStatus;
            if (result.outcome) return { kind: 'ended', outcome: result.outcome, status: result };
          }
          return { kind: 'closed', description: d };
        }
        if (!waitingForWorkerSaid) {
          say(st.warn(`No worker is answering for ${addr.label} yet; waiting. Start one with \`gantry worker\` (or \`gantry dev\`).`));
          waitingForWorkerSaid = true;
        }
      }

      if (s) {
        const t = st.dim(`[${formatTime(new Date()).slice(11, 19)}]`);
        // Steps that ended since the last look, then the stage now, then the step that runs in it.
        const running: string[] = [];
        for (const step of s.steps) {
          const before = prev?.steps.find((x) => x.name === step.name);
          const changed = !before || before.state !== step.state || before.runs !== step.runs;
          if (!changed) continue;
          if (step.state === 'running') {
            running.push(`  ${st.info('▶')} ${step.title}${step.runs > 1 ? ` (run ${step.runs})` : ''}…`);
            progress = undefined;
          } else if (live) {
            // The live block shows how the step ended.
          } else if (step.state === 'succeeded') {
            const out = formatOutputs(step.outputs);
            say(`  ${st.ok('✓')} ${step.title} (${plural(step.attempts, 'attempt')}, ${formatDuration(durationBetween(step.startedAt, step.endedAt))})${out ? `: ${st.dim(out)}` : ''}`);
          } else if (step.state === 'failed') {
            say(`  ${st.bad('✗')} ${step.title} failed after ${plural(step.attempts, 'attempt')}: ${step.error ?? 'no message'}`);
          } else if (step.state === 'skipped' && before && before.state !== 'pending') {
            say(`  - ${step.title} skipped${step.error ? `: ${step.error}` : ''}`);
          }
        }

        if (!live) {
          if (!prev || prev.stage !== s.stage) say(`${t} stage: ${st.bold(s.stage)}`);
          for (const line of running) say(line);
        }

        // Retries and heartbeat progress of the step that is running now.
        const current = s.steps.find((x) => x.state === 'running');
        if (current) {
          const d = await describeRelease(gc, addr.workflowId);
          const p = heartbeatText(d, activityTypeOf(current.name));
          if (p) {
            if (!live && p.attempt > 1 && p.attempt !== progress?.attempt) {
              say(`    ${st.warn(`attempt ${p.attempt}`)}${p.failure ? `, after: ${p.failure}` : ''}`);
            }
            if (!live && p.heartbeat && p.heartbeat !== progress?.heartbeat) say(`    ${st.dim(p.heartbeat)}`);
            progress = p;
          }
        }
        live?.show(s, current ? progress : undefined);

        const g = s.gate;
        if (g.state === 'open' && !gateShown) {
          gateShown = true;
          say('');
          say(st.bold(`Waiting at the approval gate: it ${g.needs ?? `needs ${g.required} approval(s)`}; approvers ${g.approvers.join(', ')}${g.deadline ? ` (times out ${formatTime(g.deadline)})` : ''}.`));
          if (g.digest) say(`  Image:    ${g.digest}`);
          const [svc, ver] = [s.request.service, s.request.version];
          say(`  Approve:  ${approveCommand(svc, ver, g)}`);
          say(`  Reject:   gantry reject ${addr.args} --as <name> --reason "<why>"`);
          if (opts.webUrl) say(`  Web UI:   ${opts.webUrl}  (More actions → Send a signal). ${webUiInstruction(svc, ver, g)}.`);
          say('');
          if (opts.stopAtGate && !opts.approveAs) return { kind: 'gate', status: s };
        }
        if (g.state === 'open' && opts.approveAs && !approvalSent) {
          approvalSent = true;
          const who = { as: opts.approveAs, ...(opts.approveReason ? { reason: opts.approveReason } : {}) };
          const { vote, voteMessage } = await approving!;
          // The status just read is what the vote names (the gate's digest, its environment), with the run the start
          // returned (or, not given, the one the server describes).
          const runId = opts.runId ?? (await describeRelease(gc, addr.workflowId)).runId;
          const answer = await vote(gc, addr, 'approve', await voteMessage('approve', s, runId, who, opts.signing ?? {}));
          say(`  ${st.ok('✓')} approved as ${opts.approveAs}: ${answer.message}`);
          if (opts.stopAtGate) return { kind: 'gate', status: s };
        }
        for (const v of g.approvals.slice(prev?.gate.approvals.length ?? 0)) {
          if (v.approver === opts.approveAs && v.via === 'update') continue;
          say(`  ${st.ok('✓')} approved by ${v.approver} via ${v.via}${v.reason ? `: ${v.reason}` : ''} (${g.approvals.length} of ${g.required})`);
        }
        if (g.rejection && !prev?.gate.rejection) say(`  ${st.bad('✗')} rejected by ${g.rejection.approver}${g.rejection.reason ? `: ${g.rejection.reason}` : ''}`);
        for (const r of g.refused.slice(prev?.gate.refused.length ?? 0)) {
          say(`  ${st.warn('!')} refused ${r.name}${r.approver ? ` by ${r.approver}` : ''} (${r.via}): ${r.why}`);
        }

        if (s.pendingDecision && !decisionShown) {
          decisionShown = true;
          const title = s.steps.find((x) => x.name === s.pendingDecision?.step)?.title ?? s.pendingDecision.step;
          say('');
          say(st.warn(st.bold(`Decision needed: ${title} failed after its retries: ${s.pendingDecision.error}`)));
          say(`  Fix the cause, then: gantry decide retry ${addr.args} --as <name>`);
          say(`  or give up:         gantry decide abort ${addr.args} --as <name> --reason "<why>"`);
          say(`  Without a decision the release aborts at ${formatTime(s.pendingDecision.deadline)}.`);
          say('');
        }
        if (!s.pendingDecision) decisionShown = false;

        if (s.cancellation.requested && !prev?.cancellation.requested) {
          const c = s.cancellation;
          say(st.warn(`  cancellation requested${c.note ? `: ${c.note}` : c.by ? ` by ${c.by}` : ''}`));
        }

        if (s.outcome) {
          live?.stop();
          say('');
          const colour = s.outcome === 'succeeded' ? st.ok : st.bad;
          say(`${st.bold('Outcome:')} ${colour(s.outcome)}: ${s.message}`);
          return { kind: 'ended', outcome: s.outcome, status: s };
        }
        prev = s;
        waitingForWorkerSaid = false;
      }

      try {
        // Approving as someone (`--approve-as`) without the history's long poll: look often until the gate opens, so
        // the approval goes out at once.
        const wait = opts.approveAs && !approvalSent && !tasks.alive() ? Math.min(interval, APPROVER_INTERVAL_MS) : interval;
        const pause = sleep(wait, undefined, opts.signal ? { signal: opts.signal } : {});
        // Once the end has woken the loop, later rounds (a closed release still without an outcome) wait the interval.
        await (endSeen ? pause : Promise.race([pause, ended, tasks.after(tasksSeen)]));
      } catch {
        return { kind: 'interrupted' };
      }
    }
  } finally {
    stopWatching.abort();
  }
}
