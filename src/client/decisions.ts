/**
 * What the CLI sends for a human decision. In signed mode (the service's `approvals.identity`, as the running
 * release reports it) a statement naming the action, the release, its run, the digest at the gate or the
 * pending decision, the principal and an expiry, signed with the user's SSH key (ssh-agent or --key). In
 * declared mode the plain payload with the name typed.
 */
// gate-rules and ids, not gate and release: those load the curves and the workflow SDK, which signing never needs.
import { describeNeeds } from '../shared/gate-rules';
import { releaseWorkflowId } from '../shared/ids';
import {
  type CancelMessage,
  type Decision,
  type DecisionMessage,
  type ReleaseStatus,
  type VoteMessage,
} from '../shared/release';
import { DEFAULT_VALIDITY_MS, formatStatement, MAX_VALIDITY_MS, type SignedStatement, type Statement } from '../shared/statement';
import { RefusedError, UsageError } from './errors';
import { openSigner, SigningError } from './signing';

export { SigningError };

export interface SigningOptions {
  /** --key: a private key file, or a .pub whose key is in ssh-agent. */
  key?: string;
  /** How long the statement stays valid. */
  validForMs?: number;
  env?: NodeJS.ProcessEnv;
}

async function sign(statement: Statement, opts: SigningOptions): Promise<SignedStatement> {
  const text = formatStatement(statement);
  const signer = await openSigner({ ...(opts.key ? { keyFile: opts.key } : {}), env: opts.env ?? process.env });
  return { statement: text, signature: await signer.sign(text) };
}

function expiry(opts: SigningOptions, now = Date.now()): string {
  const ms = opts.validForMs ?? DEFAULT_VALIDITY_MS;
  if (!(ms > 0) || ms > MAX_VALIDITY_MS) throw new UsageError('--valid-for must be between 1s and 24h: a signed decision is an instruction for now, not for later.');
  return new Date(now + ms).toISOString();
}

/** The identity mode the running release uses (known once its plan is resolved). */
function mode(status: ReleaseStatus | undefined): 'signed' | 'declared' {
  return status?.input ? status.gate.identity : 'signed';
}

/** A vote: needs the gate open (the statement names the digest being approved). */
export async function voteMessage(kind: 'approve' | 'reject', status: ReleaseStatus, runId: string, who: { as: string; reason?: string; breakGlass?: boolean }, opts: SigningOptions): Promise<VoteMessage> {
  if (mode(status) === 'declared') return { approver: who.as, ...(who.reason ? { reason: who.reason } : {}), ...(who.breakGlass ? { breakGlass: true } : {}) };
  const g = status.gate;
  if (g.state !== 'open' || !g.digest) {
    throw new RefusedError(`The approval gate of ${status.request.service} ${status.request.version} is ${g.state.replace('_', ' ')} (stage ${status.stage}); ` +
      `a signed ${kind} names the image digest at the gate, so ${kind} once the gate is open (it ${g.needs ?? describeNeeds(g.approvals, { identity: g.identity, approvers: g.approvers, required: g.required, allowSelfApproval: false, operators: [], keys: [] })}).`);
  }
  return sign({
    action: kind, workflow: status.workflowId, run: runId, ...(g.environment ? { environment: g.environment } : {}), digest: g.digest,
    ...(who.breakGlass && kind === 'approve' ? { decision: 'break-glass' } : {}), principal: who.as, expires: expiry(opts),
    ...(who.reason ? { reason: who.reason } : {}),
  }, opts);
}

export async function decisionMessage(decision: Decision, status: ReleaseStatus, runId: string, who: { as: string; reason?: string }, opts: SigningOptions): Promise<DecisionMessage> {
  if (mode(status) === 'declared') return { decision, operator: who.as, ...(who.reason ? { reason: who.reason } : {}) };
  const p = status.pendingDecision;
  if (!p) throw new RefusedError(`No decision is pending for ${status.request.service} ${status.request.version} (stage ${status.stage}): decide applies only after a step used up its retries.`);
  return sign({
    action: 'decide', workflow: status.workflowId, run: runId, decision, step: p.id, principal: who.as, expires: expiry(opts),
    ...(who.reason ? { reason: who.reason } : {}),
  }, opts);
}

export async function cancelMessage(status: ReleaseStatus | undefined, workflowId: string, runId: string, who: { as: string; reason?: string }, opts: SigningOptions): Promise<CancelMessage> {
  if (mode(status) === 'declared') return { operator: who.as, ...(who.reason ? { reason: who.reason } : {}) };
  return sign({ action: 'cancel', workflow: workflowId, run: runId, principal: who.as, expires: expiry(opts), ...(who.reason ? { reason: who.reason } : {}) }, opts);
}

/**
 * The signed start statement. The CLI does not know whether the service is signed (the config is the
 * worker's), so it signs whenever it has a key; without one the start goes unsigned, which only a service in
 * declared mode accepts.
 */
export async function startStatement(service: string, version: string, principal: string, opts: SigningOptions & { required: boolean; hotfix?: { reason: string } }): Promise<SignedStatement | undefined> {
  try {
    return await sign({
      action: 'start', workflow: releaseWorkflowId(service, version), service, version,
      ...(opts.hotfix ? { decision: 'hotfix' } : {}), principal, expires: expiry(opts), ...(opts.hotfix ? { reason: opts.hotfix.reason } : {}),
    }, opts);
  } catch (err) {
    if (err instanceof SigningError && !opts.required) return undefined;
    throw err;
  }
}
