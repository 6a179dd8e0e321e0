/**
 * The signed release manifest: what was released (or rolled back), where, approved by whom, as one canonical
 * JSON file, `release-manifest.json`, and its SSH signature, `release-manifest.json.sig`, made with the worker's
 * signing key in namespace `gantry-release`.
 *
 * The file is the canonical JSON of {@link ReleaseManifest} (src/record/canonical.ts: keys sorted at every
 * depth, no whitespace outside strings) followed by one `\n`. The signature covers the file's exact bytes, so
 * `ssh-keygen -Y verify -n gantry-release -f allowed_signers -I <principal> -s release-manifest.json.sig
 * < release-manifest.json` accepts it, and `gantry verify` checks it offline: the signature, the signer against
 * an allowed signers file, each approval's own signed statement, and (given the audit log) the manifest's
 * audit line. Any changed byte in either file is found.
 *
 * Pure apart from hashing: building, writing out and checking take and give text and bytes; files are the
 * caller's (announcers/artifacts.ts writes them, cli/verify.ts reads them).
 */
import type { AnnouncedApproval } from '../activities/types';
import { parseAllowedSigners, verifySshSignature } from '../shared/sshsig';
import { parseStatement, SIGNATURE_NAMESPACE } from '../shared/statement';
import { canonicalJson, sha256Hex } from './canonical';
import { lineSha256, verifyChain } from './audit-chain';
import { RELEASE_SIG_NAMESPACE } from './sign';

export const MANIFEST_FILE = 'release-manifest.json';
export const MANIFEST_SIG_FILE = `${MANIFEST_FILE}.sig`;
export const MANIFEST_SCHEMA = 'gantry.release-manifest/v1';
export { RELEASE_SIG_NAMESPACE };

export type ManifestApproval = AnnouncedApproval;

export interface ReleaseManifest {
  schema: typeof MANIFEST_SCHEMA;
  service: string;
  version: string;
  tag: string;
  commit: string;
  digest: string;
  imageRef: string;
  /** The production targets, as deploy named them. */
  hosts: string[];
  outcome: 'released' | 'rolled_back';
  /** Why it was rolled back. */
  reason?: string;
  /** Who approved at the gate (names). */
  approvers: string[];
  /** The approvals in detail, with their signed statements, when the workflow handed them over. */
  approvals: ManifestApproval[];
  /** Step durations in the order the steps ran. */
  steps: { step: string; durationMs: number }[];
  workflowId: string;
  runId: string;
  /** The repository URL, without credentials. */
  repo: string;
  ciRunUrl?: string;
  /** sha256 of the worker config the release ran with. */
  configSha256?: string;
  /** The release's outcome line in the audit log: its number and the sha256 of its bytes. */
  auditLine?: { line: number; sha256: string };
  /** The key that signs this manifest (absent: written unsigned). */
  signer?: { key: string; fingerprint: string };
  /** ISO 8601, when the manifest was written. */
  createdAt: string;
}

/** The exact bytes (as text) of release-manifest.json. */
export function manifestText(m: ReleaseManifest): string {
  return `${canonicalJson(m)}\n`;
}

// ---- checking ----

export interface ApprovalCheck {
  approver: string;
  verified: boolean;
  via?: string;
  at?: string;
  fingerprint?: string;
  /** valid: the embedded signature verifies over the embedded statement, which names this release; none: not signed. */
  signature: 'valid' | 'invalid' | 'none';
  detail: string;
}

export interface ManifestCheck {
  /** Everything checked out: the signature, the signer (when allowed signers were given), every approval, the audit line (when the log was given). */
  ok: boolean;
  manifest?: ReleaseManifest;
  sha256: string;
  signature: {
    ok: boolean;
    detail: string;
    fingerprint?: string;
    key?: string;
    /** Principals the allowed signers list for the key (when given). */
    principals?: string[];
  };
  approvals: ApprovalCheck[];
  audit?: { ok: boolean; detail: string };
  /** Every problem found, in words; empty when ok. */
  problems: string[];
}

export interface ManifestCheckInput {
  manifest: Uint8Array;
  /** The armored signature file's text; undefined when there is none. */
  signature?: string;
  /** The text of an ALLOWED SIGNERS file: the signing key must be listed (namespace gantry-release, valid now). */
  allowedSigners?: string;
  /** With allowedSigners: the key must be listed for this principal. */
  principal?: string;
  /** The audit log's bytes: the manifest's audit line must be there, with an intact chain up to it. */
  auditLog?: Uint8Array;
  now?: Date;
}

const ARMOR_BEGIN = '-----BEGIN SSH SIGNATURE-----';
const ARMOR_END = '-----END SSH SIGNATURE-----';

/** The one text form ssh-keygen (and gantry) write a signature in: BEGIN, base64 in lines of 70, END, `\n`. */
function isStrictArmor(text: string): boolean {
  const lines = text.split('\n');
  if (lines.length < 4 || lines[0] !== ARMOR_BEGIN || lines[lines.length - 2] !== ARMOR_END || lines[lines.length - 1] !== '') return false;
  const body = lines.slice(1, -2);
  return body.every((l, i) => /^[A-Za-z0-9+/=]+$/.test(l) && (i === body.length - 1 ? l.length > 0 && l.length <= 70 : l.length === 70));
}

const str = (v: unknown) => typeof v === 'string';
const strs = (v: unknown) => Array.isArray(v) && v.every(str);

/** What is wrong with the shape of a parsed manifest (empty: it is a manifest). */
function shapeProblems(m: Record<string, unknown>): string[] {
  const p: string[] = [];
  if (m.schema !== MANIFEST_SCHEMA) p.push(`its schema is ${JSON.stringify(m.schema)}, not "${MANIFEST_SCHEMA}"`);
  for (const f of ['service', 'version', 'tag', 'commit', 'digest', 'imageRef', 'workflowId', 'runId', 'repo', 'createdAt'] as const) {
    if (!str(m[f])) p.push(`its ${f} is missing or not text`);
  }
  if (m.outcome !== 'released' && m.outcome !== 'rolled_back') p.push('its outcome is neither released nor rolled_back');
  if (!strs(m.hosts)) p.push('its hosts are missing or not a list of names');
  if (!strs(m.approvers)) p.push('its approvers are missing or not a list of names');
  if (!Array.isArray(m.approvals) || !m.approvals.every((a) => a && typeof a === 'object' && str((a as { approver?: unknown }).approver))) {
    p.push('its approvals are missing or malformed');
  }
  if (!Array.isArray(m.steps) || !m.steps.every((s) => s && typeof s === 'object' && str((s as { step?: unknown }).step) && typeof (s as { durationMs?: unknown }).durationMs === 'number')) {
    p.push('its steps are missing or malformed');
  }
  return p;
}

/** Check one approval's own signature: over its statement, by its key, naming this release, run, digest and approver. */
function checkApproval(a: ManifestApproval, m: ReleaseManifest): ApprovalCheck {
  const base = { approver: a.approver, verified: a.verified === true, via: a.via, at: a.at, ...(a.fingerprint ? { fingerprint: a.fingerprint } : {}) };
  if (a.statement === undefined && a.signature === undefined) {
    return { ...base, signature: 'none', detail: a.verified ? 'taken as verified by the worker; its signed statement was not kept' : 'declared by name (not signed)' };
  }
  const invalid = (why: string): ApprovalCheck => ({ ...base, signature: 'invalid', detail: why });
  if (typeof a.statement !== 'string' || typeof a.signature !== 'string') return invalid('it has a statement or a signature, not both');
  const sig = verifySshSignature(a.signature, a.statement, SIGNATURE_NAMESPACE);
  if (!sig.ok) return invalid(`its signature does not verify: ${sig.problem}`);
  const fp = sig.value.key.fingerprint;
  if (a.fingerprint && a.fingerprint !== fp) return invalid(`it is signed by key ${fp}, but the approval names key ${a.fingerprint}`);
  const st = parseStatement(a.statement);
  if (!st.ok) return invalid(`its statement cannot be read: ${st.problem}`);
  const s = st.value;
  const mismatch =
    s.action !== 'approve' ? `the statement is for "${s.action}", not approve`
      : s.principal !== a.approver ? `the statement is signed as ${s.principal}, not ${a.approver}`
        : s.workflow !== m.workflowId ? `the statement is for release ${s.workflow}, not ${m.workflowId}`
          : s.run !== m.runId ? `the statement is for run ${s.run ?? '(none)'}, not ${m.runId}`
            : s.digest !== m.digest ? `the statement approves image ${s.digest ?? '(none)'}, not ${m.digest}`
              : a.at && Date.parse(s.expires) < Date.parse(a.at) ? `the statement expired at ${s.expires}, before it was taken at ${a.at}`
                : undefined;
  if (mismatch) return invalid(mismatch);
  return { ...base, fingerprint: fp, signature: 'valid', detail: `signed by ${a.approver} with key ${fp}${s.reason ? `, reason "${s.reason}"` : ''}` };
}

/** Check a manifest and its signature, offline. */
export function checkManifest(input: ManifestCheckInput): ManifestCheck {
  const problems: string[] = [];
  const bytes = Buffer.from(input.manifest.buffer, input.manifest.byteOffset, input.manifest.byteLength);
  const text = bytes.toString('utf8');
  const sha256 = sha256Hex(bytes);
  if (!Buffer.from(text, 'utf8').equals(bytes)) problems.push('the manifest is not valid UTF-8: it was changed after it was written');

  let manifest: ReleaseManifest | undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    problems.push('the manifest is not JSON: it was changed after it was written, or it is not a release manifest');
  }
  if (parsed !== undefined) {
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
      problems.push('the manifest is not a JSON object');
    } else {
      const shape = shapeProblems(parsed as Record<string, unknown>);
      if (shape.length) problems.push(`the manifest is not a release manifest: ${shape.join('; ')}`);
      else manifest = parsed as ReleaseManifest;
      let canonical: string | undefined;
      try {
        canonical = `${canonicalJson(parsed)}\n`;
      } catch {
        canonical = undefined;
      }
      if (canonical !== text) problems.push('the manifest is not in the canonical form gantry writes (sorted keys, no whitespace, one final newline): it was changed after it was written');
    }
  }

  // The signature, over the file's exact bytes.
  const signature: ManifestCheck['signature'] = { ok: false, detail: '' };
  if (input.signature === undefined) {
    signature.detail = manifest && !manifest.signer
      ? 'not signed: the worker wrote this manifest without a signing key (announce.signingKey)'
      : 'not signed: no signature file';
    problems.push(signature.detail);
  } else if (!isStrictArmor(input.signature)) {
    signature.detail = 'the signature file is not in the form ssh-keygen writes (BEGIN line, base64 in lines of 70, END line): it was changed';
    problems.push(signature.detail);
  } else {
    const v = verifySshSignature(input.signature, text, RELEASE_SIG_NAMESPACE);
    if (!v.ok) {
      signature.detail = `the signature does not verify: ${v.problem}`;
      problems.push(signature.detail);
    } else {
      const key = v.value.key;
      signature.fingerprint = key.fingerprint;
      signature.key = key.text;
      signature.ok = true;
      signature.detail = `valid signature by key ${key.fingerprint} (${key.type}, namespace ${RELEASE_SIG_NAMESPACE})`;
      if (manifest?.signer && manifest.signer.fingerprint !== key.fingerprint) {
        signature.ok = false;
        problems.push(`the manifest names signing key ${manifest.signer.fingerprint}, but the signature is by ${key.fingerprint}`);
      }
      if (input.allowedSigners !== undefined) {
        const { signers, problems: listProblems } = parseAllowedSigners(input.allowedSigners);
        if (listProblems.length) problems.push(`the allowed signers file has problems: ${listProblems.join('; ')}`);
        const nowIso = (input.now ?? new Date()).toISOString();
        const matching = signers.filter((s) => s.key.base64 === key.base64
          && (!s.namespaces || s.namespaces.includes(RELEASE_SIG_NAMESPACE))
          && (!s.validAfter || s.validAfter <= nowIso) && (!s.validBefore || nowIso < s.validBefore));
        const principals = [...new Set(matching.flatMap((s) => s.principals))];
        signature.principals = principals;
        if (!matching.length) {
          signature.ok = false;
          problems.push(`the signing key ${key.fingerprint} is not in the allowed signers for namespace ${RELEASE_SIG_NAMESPACE} (or not valid now)`);
        } else if (input.principal !== undefined && !principals.includes(input.principal)) {
          signature.ok = false;
          problems.push(`the signing key ${key.fingerprint} is allowed for ${principals.join(', ')}, not for ${input.principal}`);
        } else {
          signature.detail += `, listed for ${input.principal ?? principals.join(', ')} in the allowed signers`;
        }
      } else if (input.principal !== undefined) {
        problems.push('--principal needs --allowed-signers: the principal is looked up there');
      }
    }
  }

  const approvals = manifest ? manifest.approvals.map((a) => checkApproval(a, manifest)) : [];
  for (const a of approvals) if (a.signature === 'invalid') problems.push(`the approval by ${a.approver}: ${a.detail}`);

  let audit: ManifestCheck['audit'];
  if (input.auditLog !== undefined && manifest) {
    const at = manifest.auditLine;
    if (!at) {
      audit = { ok: false, detail: 'the manifest records no audit line (the service had no announce.auditLog)' };
    } else {
      const chain = verifyChain(input.auditLog);
      const got = lineSha256(input.auditLog, at.line);
      if (got === undefined) audit = { ok: false, detail: `the audit log has no line ${at.line}: it was cut short` };
      else if (got !== at.sha256) audit = { ok: false, detail: `line ${at.line} of the audit log is not the one the manifest recorded (${at.sha256}): the log was changed` };
      else if (chain.problem && chain.problem.line <= at.line) audit = { ok: false, detail: `the audit log's chain is broken at line ${chain.problem.line}, before the manifest's line ${at.line}: ${chain.problem.message}` };
      else audit = { ok: true, detail: `line ${at.line} of the audit log is the one recorded, and the chain up to it is intact` };
    }
    if (!audit.ok) problems.push(audit.detail);
  }

  return { ok: problems.length === 0, ...(manifest ? { manifest } : {}), sha256, signature, approvals, ...(audit ? { audit } : {}), problems };
}
