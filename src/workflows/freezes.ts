/**
 * The freeze registry: one long-lived workflow (`gantry-freezes`) holding the freezes in force.
 *
 *   freeze / unfreeze (updates) → shape checked by the validator → the worker's config says who may freeze the
 *   scope and their keys (authorizeFreeze) → the statement is verified here, deterministically → applied
 *   a freeze whose `until` passed drops out; the history grows long → continue as new with the state
 *
 * A refusal fails the update with the reason (the CLI prints it) and is kept in the log; it never ends the
 * registry. Releases ask it through the checkFreeze activity.
 */
import {
  allHandlersFinished,
  ApplicationFailure,
  condition,
  continueAsNew,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import {
  activeFreezes,
  describeScope,
  FREEZE_HANDLER_DESCRIPTIONS,
  FREEZE_LOG_KEPT,
  freezesQuery,
  freezeUpdate,
  judgeFreeze,
  liftedBy,
  MAX_FREEZES,
  parseFreezeMessage,
  unfreezeUpdate,
  type Freeze,
  type FreezeAnswer,
  type FreezeKind,
  type FreezeLogEntry,
  type FreezeMessage,
  type FreezeRegistryState,
} from '../shared/freezes';
import type { FreezeActivities } from '../activities/freezes';

const { authorizeFreeze } = proxyActivities<FreezeActivities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '1s', maximumInterval: '5s', maximumAttempts: 5 },
});

const DEFAULT_MAX_HISTORY = 2_000;

export async function freezeRegistryWorkflow(input?: FreezeRegistryState): Promise<void> {
  const state: FreezeRegistryState = {
    freezes: [...(input?.freezes ?? [])],
    log: [...(input?.log ?? [])],
    seq: input?.seq ?? 0,
    ...(input?.maxHistory !== undefined ? { maxHistory: input.maxHistory } : {}),
  };
  let updatedAt = new Date().toISOString();

  const record = (e: FreezeLogEntry): void => {
    state.log.push(e);
    if (state.log.length > FREEZE_LOG_KEPT) state.log.splice(0, state.log.length - FREEZE_LOG_KEPT);
    updatedAt = e.at;
  };
  const expire = (): void => {
    const now = Date.now();
    const live = activeFreezes(state.freezes, now);
    const gone = state.freezes.filter((f) => !live.includes(f));
    if (gone.length === 0) return;
    state.freezes = live;
    for (const f of gone) {
      record({
        at: new Date(now).toISOString(), action: 'expired', verdict: 'accepted', service: f.service,
        ...(f.environment ? { environment: f.environment } : {}), by: f.by.principal, verified: f.by.verified, ids: [f.id],
      });
    }
  };

  const handle = async (kind: FreezeKind, payload: FreezeMessage): Promise<FreezeAnswer> => {
    const parsed = parseFreezeMessage(kind, payload);
    const at = (): string => new Date().toISOString();
    if (!parsed.ok) throw ApplicationFailure.create({ type: 'GantryFreezeRefused', message: parsed.problem, nonRetryable: true });
    const req = parsed.value;
    const authority = await authorizeFreeze({ ...req.scope, kind });
    expire();
    const judged = judgeFreeze(req, authority, Date.now());
    const refuse = (why: string): never => {
      record({
        at: at(), action: kind, verdict: 'refused', service: req.scope.service, ...(req.scope.environment ? { environment: req.scope.environment } : {}),
        by: req.claimed, verified: false, why,
      });
      throw ApplicationFailure.create({ type: 'GantryFreezeRefused', message: why, nonRetryable: true });
    };
    if (!judged.ok) return refuse(judged.problem);
    const j = judged.value;
    const base = {
      at: at(), action: kind, verdict: 'accepted' as const, service: j.scope.service, ...(j.scope.environment ? { environment: j.scope.environment } : {}),
      by: j.actor.principal, verified: j.actor.verified, ...(j.reason ? { reason: j.reason } : {}),
    };
    const what = describeScope(j.scope);
    if (kind === 'freeze') {
      if (state.freezes.length >= MAX_FREEZES) return refuse(`${MAX_FREEZES} freezes are in force already; lift the ones no longer needed (\`gantry freezes\` lists them) and freeze again`);
      state.seq += 1;
      const freeze: Freeze = {
        id: `frz-${state.seq}`, service: j.scope.service, ...(j.scope.environment ? { environment: j.scope.environment } : {}),
        by: j.actor, reason: j.reason!, since: at(), ...(j.until ? { until: j.until } : {}),
        ...(req.signed ? { statement: req.signed.statement, signature: req.signed.signature } : {}),
      };
      state.freezes.push(freeze);
      record({ ...base, ids: [freeze.id] });
      return {
        message: `${what} is frozen${j.until ? ` until ${j.until}` : ' until it is lifted (`gantry unfreeze`)'}, by ${j.actor.principal} (${freeze.id}): ${j.reason}.`,
        freeze, lifted: [], active: [...state.freezes],
      };
    }
    const lifted = liftedBy(state.freezes, j.scope);
    state.freezes = state.freezes.filter((f) => !lifted.includes(f));
    record({ ...base, ids: lifted.map((f) => f.id) });
    return {
      message: lifted.length > 0
        ? `Lifted ${lifted.length} freeze(s) of ${what} (${lifted.map((f) => f.id).join(', ')}), by ${j.actor.principal}.`
        : `${what} had no freeze of its own to lift; nothing changed.`,
      lifted, active: [...state.freezes],
    };
  };

  setHandler(freezesQuery, () => ({ active: activeFreezes(state.freezes, Date.now()), log: [...state.log], updatedAt }), { description: FREEZE_HANDLER_DESCRIPTIONS.freezes });
  for (const [def, kind] of [[freezeUpdate, 'freeze'], [unfreezeUpdate, 'unfreeze']] as const) {
    setHandler(def, (payload) => handle(kind, payload), {
      validator: (payload) => {
        const p = parseFreezeMessage(kind, payload);
        if (!p.ok) throw new Error(p.problem);
      },
      description: FREEZE_HANDLER_DESCRIPTIONS[kind],
    });
  }

  const historyFull = (): boolean => {
    const info = workflowInfo();
    return info.continueAsNewSuggested || info.historyLength > (state.maxHistory ?? DEFAULT_MAX_HISTORY);
  };
  for (;;) {
    const ends = state.freezes.flatMap((f) => (f.until ? [Date.parse(f.until)] : []));
    const next = ends.length > 0 ? Math.max(1, Math.min(...ends) - Date.now() + 1) : undefined;
    const seq = state.seq;
    // Wake when the first freeze ends, when a new one may end sooner, or to continue as new.
    const wake = (): boolean => historyFull() || state.seq !== seq;
    if (next !== undefined) await condition(wake, next);
    else await condition(wake);
    expire();
    if (historyFull()) {
      await condition(allHandlersFinished);
      expire();
      await continueAsNew<typeof freezeRegistryWorkflow>(state);
    }
  }
}
