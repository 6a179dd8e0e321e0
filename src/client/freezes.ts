/**
 * Freezes from the CLI: the signed freeze or unfreeze statement, sending it to the freeze registry with
 * update-with-start (the registry starts on the first freeze), reading the registry, and the words
 * `gantry freeze`, `unfreeze` and `freezes` print.
 */
import {
  WithStartWorkflowOperation,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  WorkflowUpdateRPCTimeoutOrCancelledError,
  type Client,
} from '@temporalio/client';
import {
  describeScope,
  FREEZE_REGISTRY_ID,
  FREEZE_WORKFLOW_TYPE,
  freezesQuery,
  freezeUpdate,
  initialFreezeRegistryState,
  unfreezeUpdate,
  type Freeze,
  type FreezeAnswer,
  type FreezeKind,
  type FreezeMessage,
  type FreezeScope,
  type FreezesView,
} from '../shared/freezes';
import { TASK_QUEUE } from '../shared/release';
import { DEFAULT_VALIDITY_MS, formatStatement, MAX_VALIDITY_MS } from '../shared/statement';
import { windowsAt, type DenyWindowSpec } from '../shared/windows';
import type { GantryConfig } from '../config/schema';
import { NoWorkerError, RefusedError, UsageError } from './errors';
import { timedOut } from './release';
import { formatDuration, formatTime } from './format';
import { openSigner, SigningError } from './signing';
import type { SigningOptions } from './decisions';

export interface FreezeWho {
  as: string;
  reason?: string;
  /** ISO 8601 UTC. */
  until?: string;
}

/** `--until`: an ISO time (UTC unless it says otherwise), or a duration from now (`2h`, `3d`). */
export function parseUntil(text: string, now = Date.now()): string {
  if (/^\d+$/.test(text.trim())) {
    throw new UsageError(`--until "${text.trim()}" has no unit; write a duration from now with its unit (${text.trim()}m, ${text.trim()}h or ${text.trim()}d) or a time (2026-12-24T00:00:00Z).`);
  }
  const rel = /^(\d+)\s*(m|h|d)$/.exec(text.trim());
  if (rel) return new Date(now + Number(rel[1]) * { m: 60_000, h: 3_600_000, d: 86_400_000 }[rel[2] as 'm' | 'h' | 'd']).toISOString();
  const t = Date.parse(/[zZ]|[+-]\d\d:?\d\d$/.test(text) || !/T/.test(text) ? text : `${text}Z`);
  if (Number.isNaN(t)) throw new UsageError(`--until "${text}" is neither a time (2026-12-24T00:00:00Z) nor a duration from now (2h, 3d).`);
  if (t <= now) throw new UsageError(`--until ${new Date(t).toISOString()} has passed; give a time in the future.`);
  return new Date(t).toISOString();
}

/**
 * The message to send: a statement signed with the person's key. The worker's config decides whether the scope
 * takes declared names; without any key (and no --key given) the declared form is sent, which only
 * declared-mode services accept (the registry says so otherwise).
 */
export async function freezeMessage(kind: FreezeKind, scope: FreezeScope, who: FreezeWho, opts: SigningOptions): Promise<FreezeMessage> {
  const ms = opts.validForMs ?? DEFAULT_VALIDITY_MS;
  if (!(ms > 0) || ms > MAX_VALIDITY_MS) throw new UsageError('--valid-for must be between 1s and 24h: a signed statement is an instruction for now, not for later.');
  const statement = formatStatement({
    action: kind, workflow: FREEZE_REGISTRY_ID, service: scope.service, ...(scope.environment ? { environment: scope.environment } : {}),
    principal: who.as, expires: new Date(Date.now() + ms).toISOString(),
    ...(kind === 'freeze' && who.until ? { until: who.until } : {}), ...(who.reason ? { reason: who.reason } : {}),
  });
  try {
    const signer = await openSigner({ ...(opts.key ? { keyFile: opts.key } : {}), env: opts.env ?? process.env });
    return { statement, signature: await signer.sign(statement) };
  } catch (err) {
    if (err instanceof SigningError && !opts.key && !(opts.env ?? process.env).GANTRY_SIGNING_KEY) {
      return { by: who.as, service: scope.service, ...(scope.environment ? { environment: scope.environment } : {}), ...(who.reason ? { reason: who.reason } : {}), ...(kind === 'freeze' && who.until ? { until: who.until } : {}) };
    }
    throw err;
  }
}

/** Send a freeze or unfreeze to the registry, starting it if it does not run. */
export async function sendFreeze(client: Client, kind: FreezeKind, message: FreezeMessage, opts: { timeoutMs?: number; taskQueue?: string } = {}): Promise<FreezeAnswer> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const start = new WithStartWorkflowOperation(FREEZE_WORKFLOW_TYPE, {
    workflowId: FREEZE_REGISTRY_ID, taskQueue: opts.taskQueue ?? TASK_QUEUE, args: [initialFreezeRegistryState()], workflowIdConflictPolicy: 'USE_EXISTING',
  });
  const what = describeScope(scopeOf(message));
  try {
    return await client.connection.withDeadline(Date.now() + timeoutMs, () =>
      client.workflow.executeUpdateWithStart(kind === 'freeze' ? freezeUpdate : unfreezeUpdate, { args: [message], startWorkflowOperation: start }));
  } catch (err) {
    if (err instanceof WorkflowUpdateFailedError) {
      throw new RefusedError(`The freeze registry refused to ${kind} ${what}: ${err.cause?.message ?? err.message}`);
    }
    if (err instanceof WorkflowUpdateRPCTimeoutOrCancelledError || timedOut(err)) {
      throw new NoWorkerError(`No worker answered within ${Math.round(timeoutMs / 1000)}s, so the ${kind} of ${what} was not taken. ` +
        'Start a worker (`gantry worker`, or `gantry dev` on a laptop) and retry; nothing was recorded.');
    }
    throw err;
  }
}

function scopeOf(message: FreezeMessage): FreezeScope {
  if ('statement' in message) {
    const service = /\nservice: ([^\n]*)\n/.exec(message.statement)?.[1] ?? '?';
    const environment = /\nenvironment: ([^\n]*)\n/.exec(message.statement)?.[1];
    return { service, ...(environment ? { environment } : {}) };
  }
  return { service: message.service, ...(message.environment ? { environment: message.environment } : {}) };
}

/** The registry's freezes; none when it does not run (nobody froze anything yet, or it was ended). */
export async function readFreezes(client: Client, timeoutMs = 10_000): Promise<FreezesView | undefined> {
  const handle = client.workflow.getHandle(FREEZE_REGISTRY_ID);
  try {
    const d = await handle.describe();
    if (d.status.name !== 'RUNNING') return undefined;
    return await client.connection.withDeadline(Date.now() + timeoutMs, () => handle.query(freezesQuery));
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return undefined;
    if (timedOut(err)) {
      throw new NoWorkerError(`No worker answered the freeze registry's query within ${Math.round(timeoutMs / 1000)}s. Start a worker (\`gantry worker\` or \`gantry dev\`) and retry.`);
    }
    throw err;
  }
}

/** One line for a freeze: `hello in production: frozen by alice since 12:01Z until 18:00Z (frz-3): incident 42`. */
export function freezeLine(f: Freeze, now = Date.now()): string {
  const until = f.until ? `until ${formatTime(f.until)} (${formatDuration(Date.parse(f.until) - now)} left)` : 'until lifted';
  return `${describeScope(f)}: frozen by ${f.by.principal}${f.by.verified ? '' : ' (declared)'} since ${formatTime(f.since)} ${until} [${f.id}]: ${f.reason}`;
}

export interface WindowNow {
  service: string;
  environment: string;
  name: string;
  reason?: string;
  start: string;
  end: string;
}

/** The deny windows open now for every service and environment of a (local) config. */
export function windowsNow(config: GantryConfig, now = Date.now()): WindowNow[] {
  const c = config as GantryConfig & { denyWindows?: DenyWindowSpec[] };
  const rows: WindowNow[] = [];
  for (const [service, svc] of Object.entries(c.services)) {
    const windows = [...(c.denyWindows ?? []), ...((svc as { denyWindows?: DenyWindowSpec[] }).denyWindows ?? [])];
    for (const environment of Object.keys(svc.environments ?? {})) {
      for (const w of windowsAt(windows, now, environment).active) {
        rows.push({ service, environment, name: w.name, ...(w.reason ? { reason: w.reason } : {}), start: w.start, end: w.end });
      }
    }
  }
  return rows;
}

export function windowLine(w: WindowNow, now = Date.now()): string {
  return `${w.service} in ${w.environment}: deny window ${w.name} until ${formatTime(w.end)} (${formatDuration(Date.parse(w.end) - now)} left)${w.reason ? `: ${w.reason}` : ''}`;
}
