/**
 * Freezes: a person stops releases of a service (or of every service, `*`) from reaching an environment (or
 * every environment) until they lift it or it ends by itself. They live in one long-lived workflow, the freeze
 * registry (`gantry-freezes`), which checks every freeze and unfreeze like a decision at the gate: a statement
 * signed with the person's SSH key, verified in the workflow against the keys of the worker's config, from
 * someone allowed to freeze that scope. Definitions shared by the registry, the worker's activities and the CLI.
 *
 * Deterministic: imported by workflow code.
 */
import { defineQuery, defineUpdate } from '@temporalio/workflow';
import { verifyStatement, type Actor, type PrincipalKey } from './gate';
import { SERVICE_NAME } from './release';
import { parseSignedPayload, type SignedStatement, type Statement } from './statement';
import { checkName, checkReason, displayText } from './text';

export const FREEZE_REGISTRY_ID = 'gantry-freezes';
export const FREEZE_WORKFLOW_TYPE = 'freezeRegistryWorkflow';
/** How many freeze and unfreeze actions (accepted or refused) the registry keeps. */
export const FREEZE_LOG_KEPT = 50;
/** Most freezes in force at once. */
export const MAX_FREEZES = 500;
/** Longest a freeze may be set to last by `until` (a freeze without `until` lasts until it is lifted). */
export const MAX_FREEZE_MS = 366 * 24 * 3600_000;

const ENVIRONMENT_NAME = /^[a-z][a-z0-9-]{0,30}$/;

/** A freeze in force. */
export interface Freeze {
  /** `frz-<n>`, n counting the registry's freezes. */
  id: string;
  /** A service name, or `*` for every service. */
  service: string;
  /** Absent: every environment. */
  environment?: string;
  by: Actor;
  reason: string;
  /** ISO 8601. */
  since: string;
  /** ISO 8601: when it ends by itself; absent: when it is lifted. */
  until?: string;
  /** The signed statement and its signature (signed mode), for the record. */
  statement?: string;
  signature?: string;
}

export interface FreezeLogEntry {
  at: string;
  action: 'freeze' | 'unfreeze' | 'expired';
  verdict: 'accepted' | 'refused';
  service: string;
  environment?: string;
  /** Who it came from: verified principal, declared name, or the name it claimed (refused). */
  by?: string;
  verified?: boolean;
  reason?: string;
  /** The freezes it made or lifted. */
  ids?: string[];
  why?: string;
}

export interface FreezeRegistryState {
  freezes: Freeze[];
  log: FreezeLogEntry[];
  /** How many freezes were ever made (ids count on from it). */
  seq: number;
  /** Continue as new past this many history events (default 2,000; tests lower it). */
  maxHistory?: number;
}

export function initialFreezeRegistryState(): FreezeRegistryState {
  return { freezes: [], log: [], seq: 0 };
}

/** A freeze or unfreeze with a declared name (services whose approvals.identity is declared). */
export interface DeclaredFreeze {
  by: string;
  service: string;
  environment?: string;
  reason?: string;
  until?: string;
}

export type FreezeMessage = SignedStatement | DeclaredFreeze;

/** The scope a freeze message names: what `authorizeFreeze` is asked about. */
export interface FreezeScope {
  service: string;
  environment?: string;
}

/**
 * What the worker's config says about a scope (from the `authorizeFreeze` activity): who may freeze it and
 * their keys. Public, fine in history.
 */
export interface FreezeAuthority {
  /** `signed` unless every service the scope covers is in declared mode. */
  identity: 'signed' | 'declared';
  /** Who may freeze the scope; `anyone`: anyone with a key (signed) or any name (declared). */
  freezers: string[] | 'anyone';
  keys: PrincipalKey[];
  /** Set when the scope itself is wrong (an unknown service or environment): the refusal, in words. */
  problem?: string;
}

/** What the registry answers to an accepted freeze or unfreeze. */
export interface FreezeAnswer {
  message: string;
  /** The freeze made (freeze) or the ones lifted (unfreeze). */
  freeze?: Freeze;
  lifted: Freeze[];
  active: Freeze[];
}

export interface FreezesView {
  active: Freeze[];
  log: FreezeLogEntry[];
  updatedAt: string;
}

export const freezeUpdate = defineUpdate<FreezeAnswer, [FreezeMessage]>('freeze');
export const unfreezeUpdate = defineUpdate<FreezeAnswer, [FreezeMessage]>('unfreeze');
export const freezesQuery = defineQuery<FreezesView>('freezes');

export const FREEZE_HANDLER_DESCRIPTIONS = {
  freeze: 'Freeze a service (or "*" for all) so no release reaches it: signed, the JSON from `gantry freeze <service> --reason … --as <name> --print`; ' +
    'declared-mode services, {"by": "<name>", "service": "<service>", "environment": "optional", "reason": "why", "until": "optional ISO time"}.',
  unfreeze: 'Lift the freezes of a scope: signed, the JSON from `gantry unfreeze <service> --as <name> --print`; declared, {"by": "<name>", "service": "<service>", "environment": "optional"}.',
  freezes: 'The freezes in force, and the last 50 freeze and unfreeze actions.',
} as const;

type Parsed<T> = { ok: true; value: T } | { ok: false; problem: string };
export type FreezeKind = 'freeze' | 'unfreeze';

/** A message, checked for shape only: what the update validator refuses, and the scope to authorize. */
export interface FreezeRequest {
  kind: FreezeKind;
  scope: FreezeScope;
  signed?: SignedStatement;
  /** Declared form: the name typed. Signed form: the principal the statement claims (not yet verified). */
  claimed: string;
  reason?: string;
  until?: string;
}

const ISO_UTC = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,3})?Z$/;

function scopeProblem(service: unknown, environment: unknown): string | undefined {
  if (typeof service !== 'string' || (service !== '*' && !SERVICE_NAME.test(service))) return '"service" must be a service name, or "*" for every service';
  if (environment !== undefined && (typeof environment !== 'string' || !ENVIRONMENT_NAME.test(environment))) return '"environment" must be an environment name such as production';
  return undefined;
}

/** Check a freeze or unfreeze message for shape (anything may arrive from the Web UI). */
export function parseFreezeMessage(kind: FreezeKind, payload: unknown): Parsed<FreezeRequest> {
  const example = `sign it with \`gantry ${kind} <service>|--all --as <name>${kind === 'freeze' ? ' --reason "why"' : ''}\` (--print gives the JSON for the Web UI)`;
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) return { ok: false, problem: `the ${kind} request is not an object; ${example}` };
  const o = payload as Record<string, unknown>;
  if ('statement' in o || 'signature' in o) {
    const p = parseSignedPayload(payload);
    if (!p.ok) return p;
    const m = /\nservice: ([^\n]*)\n/.exec(p.value.statement);
    const env = /\nenvironment: ([^\n]*)\n/.exec(p.value.statement)?.[1];
    const principal = /\nprincipal: ([^\n]*)\n/.exec(p.value.statement)?.[1] ?? '';
    const problem = scopeProblem(m?.[1], env);
    if (problem) return { ok: false, problem: `the signed ${kind}: ${problem}` };
    return { ok: true, value: { kind, scope: { service: m![1]!, ...(env ? { environment: env } : {}) }, signed: p.value, claimed: displayText(principal, 64) } };
  }
  const allowed = ['by', 'service', 'environment', 'reason', 'until'];
  const extra = Object.keys(o).filter((k) => !allowed.includes(k));
  if (extra.length > 0) return { ok: false, problem: `unknown field(s) ${extra.slice(0, 5).map((k) => displayText(k, 30)).join(', ')}; ${example}` };
  if (typeof o.by !== 'string') return { ok: false, problem: `"by" is missing: who ${kind}s; ${example}` };
  const by = checkName(o.by, '"by"');
  if (!by.ok) return by;
  const problem = scopeProblem(o.service, o.environment);
  if (problem) return { ok: false, problem };
  let reason: string | undefined;
  if (o.reason !== undefined) {
    if (typeof o.reason !== 'string') return { ok: false, problem: '"reason" must be text' };
    const r = checkReason(o.reason);
    if (!r.ok) return r;
    reason = r.value || undefined;
  }
  if (o.until !== undefined && (typeof o.until !== 'string' || !ISO_UTC.test(o.until) || Number.isNaN(Date.parse(o.until)))) {
    return { ok: false, problem: '"until" must be an ISO 8601 UTC time such as 2026-12-24T00:00:00Z' };
  }
  return {
    ok: true,
    value: {
      kind, scope: { service: o.service as string, ...(o.environment ? { environment: o.environment as string } : {}) }, claimed: by.value,
      ...(reason ? { reason } : {}), ...(typeof o.until === 'string' ? { until: o.until } : {}),
    },
  };
}

export interface JudgedFreeze {
  actor: Actor;
  scope: FreezeScope;
  reason?: string;
  until?: string;
  statement?: Statement;
}

/**
 * Judge a message with what the worker's config says about its scope: the signature (signed mode) against the
 * keys, what the statement names, who may freeze the scope, and the freeze's own rules (a reason, an `until` in
 * the future). `nowMs` is workflow time.
 */
export function judgeFreeze(req: FreezeRequest, authority: FreezeAuthority, nowMs: number): Parsed<JudgedFreeze> {
  const { kind, scope } = req;
  const what = describeScope(scope);
  if (authority.problem) return { ok: false, problem: authority.problem };
  let actor: Actor;
  let reason = req.reason;
  let until = req.until;
  let statement: Statement | undefined;
  if (req.signed) {
    const v = verifyStatement(req.signed, { action: kind, workflow: FREEZE_REGISTRY_ID, service: scope.service }, authority.keys, nowMs);
    if (!v.ok) return { ok: false, problem: `the signed ${kind} is refused: ${v.problem}` };
    statement = v.value.statement;
    if ((statement.environment ?? undefined) !== scope.environment) return { ok: false, problem: `the statement names environment ${statement.environment ?? '(all)'}, not ${scope.environment ?? '(all)'}` };
    actor = v.value.actor;
    reason = statement.reason;
    until = statement.until;
  } else {
    if (authority.identity === 'signed') {
      return {
        ok: false,
        problem: `${what} takes only signed freezes, and this ${kind} is not signed. Run \`gantry ${kind} ${scope.service === '*' ? '--all' : scope.service}` +
          `${scope.environment ? ` --env ${scope.environment}` : ''}${kind === 'freeze' ? ' --reason "…"' : ''} --as <name>\` with your SSH key (--print gives the JSON for the Web UI)`,
      };
    }
    actor = { principal: req.claimed, verified: false };
  }
  if (authority.freezers !== 'anyone' && !authority.freezers.includes(actor.principal)) {
    const who = authority.freezers.length > 0 ? `only ${authority.freezers.join(', ')} may` : 'nobody may';
    const where = scope.service === '*' ? 'the top-level freezers: list' : `services.${scope.service}.freezers (or its operators)`;
    return { ok: false, problem: `${actor.principal} may not ${kind} ${what}: ${who} (${where} in the worker's config)` };
  }
  if (kind === 'freeze') {
    if (!reason || reason.trim() === '') return { ok: false, problem: `a freeze needs a reason; ${kind} again with --reason "why" so on-call knows` };
    if (until !== undefined) {
      const ends = Date.parse(until);
      if (ends <= nowMs) return { ok: false, problem: `the freeze would end at ${until}, which has passed; give an --until in the future` };
      if (ends - nowMs > MAX_FREEZE_MS) return { ok: false, problem: `the freeze would end at ${until}, more than a year ahead; leave --until out to freeze until it is lifted` };
    }
  }
  return { ok: true, value: { actor, scope, ...(reason ? { reason } : {}), ...(until ? { until } : {}), ...(statement ? { statement } : {}) } };
}

/** The freezes in force at `nowMs` (expired ones drop out). */
export function activeFreezes(freezes: readonly Freeze[], nowMs: number): Freeze[] {
  return freezes.filter((f) => f.until === undefined || Date.parse(f.until) > nowMs);
}

/** True when a freeze stops releases of `service` to `environment`. */
export function freezeCovers(f: Freeze, service: string, environment: string): boolean {
  return (f.service === '*' || f.service === service) && (f.environment === undefined || f.environment === environment);
}

/** The freezes an unfreeze of `scope` lifts: the scope's service (all of them for `*`), that environment or all. */
export function liftedBy(freezes: readonly Freeze[], scope: FreezeScope): Freeze[] {
  return freezes.filter((f) => f.service === scope.service && (scope.environment === undefined || f.environment === scope.environment));
}

export function describeScope(scope: FreezeScope): string {
  const svc = scope.service === '*' ? 'every service' : scope.service;
  return scope.environment ? `${svc} in ${scope.environment}` : svc;
}
