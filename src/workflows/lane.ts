/**
 * The lane of one service and environment: one release holds it at a time, the others wait in order.
 *
 *   free and someone waiting → the first in the queue holds the lane (every waiting release is told)
 *   held → an activity watches the holder until it leaves: it ended (any way at all, terminate included) or its
 *          status says it released this environment → the lane passes on
 *   idle for LANE_IDLE_MS → the lane completes (the next enqueue starts it again, update-with-start)
 *
 * Nothing a message says is taken on trust: an enqueue must name a release of this service with its run id, and
 * `leave` only makes the lane check the release itself now rather than at the watcher's next look.
 */
import {
  allHandlersFinished,
  CancellationScope,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  isCancellation,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import {
  LANE_HANDLER_DESCRIPTIONS,
  LANE_IDLE_MS,
  LANE_RECENT_KEPT,
  laneChangedSignal,
  laneEnqueueUpdate,
  laneLeaveSignal,
  laneQuery,
  laneView,
  MAX_LANE_QUEUE,
  parseEnqueue,
  type HolderCheck,
  type LaneEntry,
  type LaneState,
  type LaneView,
} from '../shared/lanes';
import type { LaneActivities } from '../activities/lanes';

/** The watcher looks every second and heartbeats; it gives up its turn after a while so the lane can continue as new. */
const { watchLaneHolder } = proxyActivities<LaneActivities>({
  startToCloseTimeout: '15m',
  heartbeatTimeout: '10s',
  retry: { initialInterval: '1s', maximumInterval: '10s', backoffCoefficient: 2 },
});
const { checkLaneHolder } = proxyActivities<LaneActivities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '1s', maximumInterval: '5s', maximumAttempts: 5 },
});

const DEFAULT_MAX_HISTORY = 2_000;
/** How long one watch lasts before the lane looks at its own history again. */
const WATCH_TURN_MS = 10 * 60_000;

export async function laneWorkflow(input: LaneState): Promise<LaneView> {
  const state: LaneState = {
    service: input.service,
    environment: input.environment,
    ...(input.holder ? { holder: input.holder } : {}),
    queue: [...(input.queue ?? [])],
    recent: [...(input.recent ?? [])],
    updatedAt: input.updatedAt ?? new Date().toISOString(),
    ...(input.maxHistory !== undefined ? { maxHistory: input.maxHistory } : {}),
    ...(input.idleMs !== undefined ? { idleMs: input.idleMs } : {}),
    ...(input.maxQueue !== undefined ? { maxQueue: input.maxQueue } : {}),
  };
  const maxQueue = Math.min(state.maxQueue ?? MAX_LANE_QUEUE, MAX_LANE_QUEUE);
  const lane = { service: state.service, environment: state.environment };
  /** Releases whose `leave` hint waits to be checked. */
  const hints: { workflowId: string; runId: string }[] = [];
  const notices: Promise<void>[] = [];

  const touch = (): void => {
    state.updatedAt = new Date().toISOString();
  };
  const notifyAll = (): void => {
    for (const e of [...(state.holder ? [state.holder] : []), ...state.queue]) {
      // Fire and forget: a release that ended cannot take it, and that is fine.
      notices.push(getExternalWorkflowHandle(e.workflowId, e.runId).signal(laneChangedSignal).catch(() => undefined));
    }
  };

  /** A free lane goes to the first in the queue at once (also inside the enqueue, so its answer says so). */
  const grantIfFree = (): void => {
    if (state.holder || state.queue.length === 0) return;
    const next = state.queue.shift()!;
    state.holder = { ...next, heldSince: new Date().toISOString() };
    touch();
    notifyAll();
  };

  setHandler(laneQuery, () => laneView(state), { description: LANE_HANDLER_DESCRIPTIONS.lane });
  setHandler(laneEnqueueUpdate, (payload) => {
    const p = parseEnqueue(payload, lane);
    if (!p.ok) return laneView(state); // the validator refused it already; on replay only the handler runs
    const req = p.value;
    const known = state.holder?.runId === req.runId || state.queue.some((e) => e.runId === req.runId);
    if (!known && state.queue.length < maxQueue) {
      // A rerun of the same release replaces its earlier (ended) run in the queue.
      state.queue = state.queue.filter((e) => e.workflowId !== req.workflowId);
      const entry: LaneEntry = {
        workflowId: req.workflowId, runId: req.runId, version: req.version, since: new Date().toISOString(),
        ...(req.requestedBy ? { requestedBy: req.requestedBy } : {}),
      };
      state.queue.push(entry);
      touch();
      grantIfFree();
    }
    return laneView(state, req.runId);
  }, {
    validator: (payload) => {
      const p = parseEnqueue(payload, lane);
      if (!p.ok) throw new Error(`Lane ${lane.service}/${lane.environment} refused the release: ${p.problem}.`);
      const known = state.holder?.runId === p.value.runId || state.queue.some((e) => e.runId === p.value.runId);
      if (!known && state.queue.length >= maxQueue) {
        throw new Error(`Lane ${lane.service}/${lane.environment} already has ${maxQueue} releases waiting; ` +
          'let some finish or cancel the ones no longer needed (`gantry lanes` lists them), then start it again.');
      }
    },
    description: LANE_HANDLER_DESCRIPTIONS.enqueue,
  });
  setHandler(laneLeaveSignal, (hint) => {
    if (typeof hint !== 'object' || hint === null || typeof hint.workflowId !== 'string' || typeof hint.runId !== 'string') return;
    const named = state.holder?.runId === hint.runId || state.queue.some((e) => e.runId === hint.runId);
    if (named && hints.length < 10 && !hints.some((h) => h.runId === hint.runId)) hints.push({ workflowId: hint.workflowId, runId: hint.runId });
  }, { description: LANE_HANDLER_DESCRIPTIONS.leave });

  const historyFull = (): boolean => {
    const info = workflowInfo();
    return info.continueAsNewSuggested || info.historyLength > (state.maxHistory ?? DEFAULT_MAX_HISTORY);
  };

  const passOn = (check: HolderCheck): void => {
    const h = state.holder;
    if (!h) return;
    state.recent.push({ version: h.version, workflowId: h.workflowId, runId: h.runId, from: h.heldSince, to: new Date().toISOString(), ended: check.how });
    if (state.recent.length > LANE_RECENT_KEPT) state.recent.splice(0, state.recent.length - LANE_RECENT_KEPT);
    delete state.holder;
    touch();
  };

  /** Check queued releases named by a hint; drop those that left. */
  const checkQueuedHints = async (): Promise<boolean> => {
    let changed = false;
    for (const hint of hints.splice(0)) {
      const queued = state.queue.find((e) => e.runId === hint.runId);
      if (!queued) continue;
      const c = await checkLaneHolder({ workflowId: queued.workflowId, runId: queued.runId, environment: state.environment });
      if (c.left) {
        state.queue = state.queue.filter((e) => e.runId !== queued.runId);
        touch();
        changed = true;
      }
    }
    return changed;
  };

  /** Watch the holder until it left (or the watcher's turn is over, or the history is full). */
  const hold = async (): Promise<HolderCheck | undefined> => {
    const h = state.holder!;
    const ref = { workflowId: h.workflowId, runId: h.runId, environment: state.environment };
    const scope = new CancellationScope();
    let watched: HolderCheck | undefined;
    let watchEnded = false;
    const watch = scope.run(() => watchLaneHolder({ ...ref, maxMs: WATCH_TURN_MS })).then(
      (r) => { watched = r; },
      (err: unknown) => { if (!isCancellation(err)) watched = { attempt: 0, left: false, how: 'the watcher failed' }; },
    ).finally(() => { watchEnded = true; });
    try {
      for (;;) {
        await condition(() => watchEnded || hints.length > 0 || historyFull());
        if (watchEnded) return watched?.left ? watched : undefined;
        if (historyFull()) return undefined;
        const forHolder = hints.some((x) => x.runId === h.runId);
        if (forHolder) {
          hints.splice(hints.findIndex((x) => x.runId === h.runId), 1);
          const c = await checkLaneHolder(ref);
          if (c.left) return c;
        }
        if (await checkQueuedHints()) notifyAll();
      }
    } finally {
      scope.cancel();
      await watch;
    }
  };

  for (;;) {
    grantIfFree();
    if (state.holder) {
      const left = await hold();
      if (left) {
        passOn(left);
        notifyAll();
        continue;
      }
    } else {
      const idleMs = state.idleMs ?? LANE_IDLE_MS;
      const busy = await condition(() => state.holder !== undefined || state.queue.length > 0 || hints.length > 0 || historyFull(), idleMs);
      hints.splice(0); // nothing to check: nobody holds or waits
      if (!busy) {
        await condition(allHandlersFinished);
        if (!state.holder && state.queue.length === 0) {
          await Promise.all(notices.splice(0));
          return laneView(state);
        }
      }
    }
    if (historyFull()) {
      await condition(allHandlersFinished);
      await Promise.all(notices.splice(0));
      await continueAsNew<typeof laneWorkflow>(state);
    }
  }
}
