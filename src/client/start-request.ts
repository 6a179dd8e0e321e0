/**
 * What `gantry start` sends, built without the Temporal SDK: the request (service, version, requester, the signed
 * start statement, the local config copy's hash), and the words the Web UI shows for it. `gantry start` builds and
 * sends this before it loads the SDK (src/cli/start.ts), so nothing here may import it, nor the config schema.
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import * as semver from 'semver';
import { configDigest } from '../config/digest';
import { releaseWorkflowId, SA_NAMES, SERVICE_NAME, startKeywords, TASK_QUEUE, WORKFLOW_TYPE } from '../shared/ids';
import type { StartRequest } from '../shared/release';
import { startStatement, type SigningOptions } from './decisions';
import { UsageError } from './errors';
import type { StartCall } from './http-api';
import { normalizeVersion } from './snapshot';

export interface ReleaseRequest {
  service: string;
  version: string;
  requestedBy: string;
}

/** True for a version gantry can release: semver, as written (no leading v, no spaces). */
function isReleasableVersion(v: string): boolean {
  return semver.valid(v) === v;
}

/** Check what the operator typed: a service name, a semver version, a name. */
export function checkRequest(req: ReleaseRequest): ReleaseRequest {
  if (!SERVICE_NAME.test(req.service)) {
    throw new UsageError(`"${req.service}" is not a service name (lowercase letters, digits and dashes, as in the worker's config).`);
  }
  const version = normalizeVersion(req.version);
  if (!isReleasableVersion(version)) {
    throw new UsageError(`Version "${req.version}" is not semver; give it as MAJOR.MINOR.PATCH, e.g. 1.4.0 or 2.0.0-rc.1.`);
  }
  const requestedBy = req.requestedBy.normalize('NFC').trim();
  if (!requestedBy) throw new UsageError('--requested-by is empty; give your name (it defaults to $USER).');
  return { service: req.service, version, requestedBy };
}

/**
 * The operator's local copy of the config as a start first sees it: `file` (from --config or GANTRY_CONFIG,
 * `explicit`) or ./gantry.yaml when it exists. Undefined when there is none to speak of.
 * - `sha256`: its hash, sent with the start; the copy is validated only if the worker's hash differs
 *   (`localCopy` in ./start), since an identical copy is the worker's own valid config.
 * - `problem`: why it cannot be compared (not found).
 * - neither: the files could not even be hashed (YAML errors, an odd allowedSigners); `localCopy` says why.
 */
export interface LocalDigest {
  file: string;
  sha256?: string;
  problem?: string;
}

export function localDigest(file: string, explicit: boolean): LocalDigest | undefined {
  if (!existsSync(file)) return explicit ? { file, problem: 'was not found' } : undefined;
  const sha256 = configDigest(file);
  return sha256 ? { file, sha256 } : { file };
}

/** The start request the workflow receives: nothing but the request, signed when a key is at hand. */
export async function buildStartRequest(req: ReleaseRequest, opts: { signing: SigningOptions; requireSignature: boolean; localSha256?: string; hotfix?: { reason: string } }): Promise<StartRequest> {
  const signed = await startStatement(req.service, req.version, req.requestedBy, {
    ...opts.signing, required: opts.requireSignature, ...(opts.hotfix ? { hotfix: opts.hotfix } : {}),
  });
  return {
    service: req.service,
    version: req.version,
    requestedBy: req.requestedBy,
    ...(signed ? { signed } : {}),
    ...(opts.localSha256 ? { localConfigSha256: opts.localSha256 } : {}),
    ...(opts.hotfix ? { hotfix: opts.hotfix } : {}),
  };
}

function releaseSummary(req: ReleaseRequest): string {
  return `Release ${req.service} ${req.version} requested by ${req.requestedBy}`;
}

/** The release's static summary and details in the Web UI, the same whichever way it was started. */
export function startDescription(request: StartRequest): { summary: string; details: string } {
  const summary = releaseSummary(request);
  return {
    summary,
    details: `**${summary}**${request.signed ? ' (signed)' : ''}.\n\n` +
      'The worker resolves the plan from its own release config; the resolve step\'s result in the history is the plan this release runs on.',
  };
}

/**
 * The whole start, whichever way it is sent (src/client/http-api.ts `startOverHttp`, or the SDK in ./start): the
 * id derived from service and version, the request as the only argument, the search attributes the workflow keeps
 * current, the Web UI's words, the request id the server keeps with the run it starts, and the SDK's own identity
 * (pid@host).
 */
export function startCall(request: StartRequest): StartCall {
  const { summary, details } = startDescription(request);
  const keywords = Object.entries(startKeywords(request)).map(([field, value]) => [SA_NAMES[field as keyof typeof SA_NAMES], value]);
  return {
    workflowId: releaseWorkflowId(request.service, request.version),
    workflowType: WORKFLOW_TYPE,
    taskQueue: TASK_QUEUE,
    args: [request],
    keywords: Object.fromEntries(keywords) as Record<string, string>,
    summary,
    details,
    requestId: randomUUID(),
    identity: `${process.pid}@${hostname()}`,
  };
}
