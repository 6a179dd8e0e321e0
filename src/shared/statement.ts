/**
 * Signed statements: what a person signs to start, approve, reject, decide or cancel a release.
 *
 * A statement is a few lines of text in one canonical form, so the same bytes are signed by `gantry` and by
 * `ssh-keygen -Y sign -n gantry`, and verified by the workflow:
 *
 *   gantry-statement v1
 *   action: approve
 *   workflow: release-hello-1.4.0
 *   run: 0195c2c4-…
 *   digest: sha256:4f1c…
 *   principal: alice
 *   expires: 2026-12-01T10:30:00.000Z
 *   reason: staging looks good
 *
 * Fields appear in this order, each at most once, one line each, and the text ends with one newline. What each
 * action must name (its run, the image digest for votes, the step for decisions) is what stops a signature
 * being replayed onto another release, run, digest or decision. Pure and deterministic: the workflow uses it.
 */
import { MAX_NAME, MAX_REASON, hasUnprintable } from './text';

export const STATEMENT_HEADER = 'gantry-statement v1';
/** The SSH signature namespace (`ssh-keygen -Y sign -n gantry`). */
export const SIGNATURE_NAMESPACE = 'gantry';
/** Longest validity a statement may claim: a signature is an instruction for now, not for next week. */
export const MAX_VALIDITY_MS = 24 * 3600_000;
/** Default validity the CLI signs with. */
export const DEFAULT_VALIDITY_MS = 15 * 60_000;
/** Largest signed payload accepted (statement + signature), in characters. */
export const MAX_SIGNED_PAYLOAD = 8192;

export const STATEMENT_ACTIONS = ['start', 'approve', 'reject', 'decide', 'cancel', 'freeze', 'unfreeze'] as const;
export type StatementAction = (typeof STATEMENT_ACTIONS)[number];

export interface Statement {
  action: StatementAction;
  /** The release's workflow id (`gantry-freezes` for freeze and unfreeze). */
  workflow: string;
  /** The run id (every action but start: a start precedes its run). */
  run?: string;
  /** The image digest at the gate (approve, reject). */
  digest?: string;
  /** retry | abort | skip (decide); `break-glass` on an approval that passes a freeze; `hotfix` on a start. */
  decision?: string;
  /** The step waiting for the decision (decide). */
  step?: string;
  /** The service and version (start); the service, or `*` for all, of a freeze. */
  service?: string;
  version?: string;
  /** The environment whose gate a vote is for, or which a freeze covers. */
  environment?: string;
  principal: string;
  /** ISO 8601, UTC. */
  expires: string;
  /** When a freeze ends by itself (ISO 8601, UTC). */
  until?: string;
  reason?: string;
}

/** Field order of the canonical form. */
const FIELDS = ['action', 'workflow', 'run', 'service', 'version', 'environment', 'digest', 'decision', 'step', 'principal', 'expires', 'until', 'reason'] as const;
type Field = (typeof FIELDS)[number];

/** What each action must name, beyond action/workflow/principal/expires. */
export const REQUIRED_FIELDS: Record<StatementAction, Field[]> = {
  start: ['service', 'version'],
  approve: ['run', 'digest'],
  reject: ['run', 'digest'],
  decide: ['run', 'decision', 'step'],
  cancel: ['run'],
  freeze: ['service'],
  unfreeze: ['service'],
};
/** What each action may name besides (fields added later are optional, so statements signed before still read the same). */
const OPTIONAL_FIELDS: Record<StatementAction, Field[]> = {
  start: ['decision', 'reason'],
  approve: ['environment', 'decision', 'reason'],
  reject: ['environment', 'reason'],
  decide: ['reason'],
  cancel: ['reason'],
  freeze: ['environment', 'until', 'reason'],
  unfreeze: ['environment', 'reason'],
};

/** A statement and its armored SSH signature, as carried in a signal, an update or the start request. */
export interface SignedStatement {
  statement: string;
  signature: string;
}

type Parsed<T> = { ok: true; value: T } | { ok: false; problem: string };

/** The canonical text of a statement (what is signed). Throws on a value that cannot be written on one line. */
export function formatStatement(s: Statement): string {
  const lines = [STATEMENT_HEADER];
  for (const f of FIELDS) {
    const v = s[f];
    if (v === undefined) continue;
    if (/[\r\n]/.test(v)) throw new Error(`statement field ${f} must be one line`);
    lines.push(`${f}: ${v}`);
  }
  return `${lines.join('\n')}\n`;
}

/** Parse a statement's text; only the canonical form is accepted (so what was signed is what is read). */
export function parseStatement(text: unknown): Parsed<Statement> {
  if (typeof text !== 'string') return { ok: false, problem: '"statement" must be the statement text' };
  if (text.length > 4096) return { ok: false, problem: `the statement is ${text.length} characters long; at most 4096` };
  if (!text.endsWith('\n')) return { ok: false, problem: 'the statement must end with a newline (sign the file gantry printed, unchanged)' };
  const lines = text.slice(0, -1).split('\n');
  if (lines[0] !== STATEMENT_HEADER) return { ok: false, problem: `the statement must start with "${STATEMENT_HEADER}"` };
  const got: Partial<Record<Field, string>> = {};
  let last = -1;
  for (const line of lines.slice(1)) {
    const m = /^([a-z]+): (.*)$/.exec(line);
    if (!m) return { ok: false, problem: `statement line "${line.slice(0, 40)}" is not "field: value"` };
    const field = m[1] as Field;
    const at = FIELDS.indexOf(field);
    if (at < 0) return { ok: false, problem: `unknown statement field "${field.slice(0, 20)}"` };
    if (at <= last) return { ok: false, problem: `statement field "${field}" is repeated or out of order (order: ${FIELDS.join(', ')})` };
    last = at;
    const value = m[2]!;
    if (value.trim() !== value || value === '') return { ok: false, problem: `statement field "${field}" is blank or has surrounding spaces` };
    if (hasUnprintable(value)) return { ok: false, problem: `statement field "${field}" contains control or invisible characters` };
    got[field] = value;
  }
  const action = got.action as StatementAction | undefined;
  if (!action || !STATEMENT_ACTIONS.includes(action)) {
    return { ok: false, problem: `statement "action" must be one of ${STATEMENT_ACTIONS.join(', ')}` };
  }
  const needed: Field[] = ['workflow', 'principal', 'expires', ...REQUIRED_FIELDS[action]];
  for (const f of needed) if (got[f] === undefined) return { ok: false, problem: `a ${action} statement must name its ${f}` };
  const allowed = new Set<Field>(['action', ...needed, ...OPTIONAL_FIELDS[action]]);
  const extra = (Object.keys(got) as Field[]).filter((f) => !allowed.has(f));
  if (extra.length > 0) return { ok: false, problem: `a ${action} statement has no field ${extra.join(', ')}` };
  if (got.principal!.length > MAX_NAME) return { ok: false, problem: `statement principal is longer than ${MAX_NAME} characters` };
  if ((got.reason?.length ?? 0) > MAX_REASON) return { ok: false, problem: `statement reason is longer than ${MAX_REASON} characters` };
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,3})?Z$/.test(got.expires!) || Number.isNaN(Date.parse(got.expires!))) {
    return { ok: false, problem: 'statement "expires" must be an ISO 8601 UTC time such as 2026-12-01T10:30:00Z' };
  }
  if (got.until !== undefined && (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,3})?Z$/.test(got.until) || Number.isNaN(Date.parse(got.until)))) {
    return { ok: false, problem: 'statement "until" must be an ISO 8601 UTC time such as 2026-12-24T00:00:00Z' };
  }
  return { ok: true, value: { ...(got as Statement) } };
}

/** `{statement, signature}` as it arrived (anything at all from the Web UI), checked for shape and size. */
export function parseSignedPayload(payload: unknown): Parsed<SignedStatement> {
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
    return { ok: false, problem: 'expected {"statement": "…", "signature": "-----BEGIN SSH SIGNATURE-----…"}' };
  }
  const o = payload as Record<string, unknown>;
  if (typeof o.statement !== 'string' || typeof o.signature !== 'string') {
    return { ok: false, problem: '"statement" and "signature" must both be text' };
  }
  if (o.statement.length + o.signature.length > MAX_SIGNED_PAYLOAD) {
    return { ok: false, problem: `the signed statement is larger than ${MAX_SIGNED_PAYLOAD} characters` };
  }
  const extra = Object.keys(o).filter((k) => k !== 'statement' && k !== 'signature');
  if (extra.length > 0) return { ok: false, problem: `unknown field(s) ${extra.slice(0, 5).map((k) => k.slice(0, 30)).join(', ')} next to statement and signature` };
  return { ok: true, value: { statement: o.statement, signature: o.signature } };
}

/** True when the payload looks like a signed statement (so the refusal can say what is wrong with it). */
export function looksSigned(payload: unknown): boolean {
  return typeof payload === 'object' && payload !== null && ('signature' in payload || 'statement' in payload);
}
