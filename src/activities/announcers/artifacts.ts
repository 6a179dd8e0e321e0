/**
 * The release artifacts channel, in announce.artifactsDir (`{service}` and `{version}` expanded):
 *
 * - `release-notes.md`: `# service version` and the CHANGELOG section, read from the tag on the remote;
 * - `release-metadata.json`: what was released, indented for people;
 * - `release-manifest.json` and `release-manifest.json.sig`: the signed release manifest (src/record/manifest.ts),
 *   signed with the worker's key from announce.signingKey (a secret reference to an unencrypted private key).
 *   Without a signing key the manifest is written unsigned (a stale signature is removed) and the result says so.
 *
 * Rewritten whole on every attempt: idempotent by construction. The CHANGELOG section is left in the context
 * for the channels after this one (GitHub uses it as the release body).
 */
import { currentTraceId } from '../../telemetry/tracing';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { GantryErrorType, nonRetryable } from '../../shared/errors';
import type { AnnounceRequest } from '../types';
import { Git, gitFailure, withTempDir } from '../git';
import { changelogSection } from '../preflight';
import { expandReleasePath } from '../paths';
import { describeSecretRef, resolveSecret } from '../secrets';
import { MANIFEST_FILE, MANIFEST_SCHEMA, MANIFEST_SIG_FILE, manifestText, type ReleaseManifest } from '../../record/manifest';
import { ReleaseSigningError, releaseSigner } from '../../record/sign';
import { writeAtomic } from './files';
import type { Announcer, AnnounceContext, ChannelResult } from './types';

export interface ArtifactsDeps {
  /** Resolves the repo token and the signing key references. */
  env: NodeJS.ProcessEnv;
  workDir?: string;
  gitTimeoutMs?: number;
}

const publicUrl = (url: string) => url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^@/]+@/i, '$1');

/** The manifest for this announcement (without `signer`, which the caller adds when it signs). */
export function releaseManifest(req: AnnounceRequest, ctx: Pick<AnnounceContext, 'runId' | 'now' | 'auditLine'>): ReleaseManifest {
  return {
    schema: MANIFEST_SCHEMA,
    service: req.release.service,
    version: req.release.version,
    tag: req.tag,
    commit: req.commit,
    digest: req.digest,
    imageRef: req.imageRef,
    hosts: req.hosts,
    outcome: req.outcome,
    ...(req.reason ? { reason: req.reason } : {}),
    approvers: req.approvers,
    approvals: req.approvals ?? [],
    steps: Object.entries(req.durations).map(([step, durationMs]) => ({ step, durationMs })),
    workflowId: req.release.workflowId,
    runId: ctx.runId,
    repo: publicUrl(req.repo.url),
    ...(req.ciRunUrl ? { ciRunUrl: req.ciRunUrl } : {}),
    ...(req.configSha256 ? { configSha256: req.configSha256 } : {}),
    ...(ctx.auditLine ? { auditLine: ctx.auditLine } : {}),
    createdAt: ctx.now().toISOString(),
  };
}

export function artifactsAnnouncer(deps: ArtifactsDeps): Announcer {
  return {
    name: 'artifacts',
    title: 'release artifacts',
    stage: 2,
    enabled: (req) => Boolean(req.announce.artifactsDir),
    skipReason: () => 'announce.artifactsDir is not set',
    async announce(req, ctx): Promise<ChannelResult> {
      // A release path that is refused fails this channel only.
      const dir = path.resolve(expandReleasePath(req.announce.artifactsDir!, req.release));
      const { notes, section } = await releaseNotes(req, deps);
      ctx.section = section;
      const files: Record<string, string> = {
        notes: path.join(dir, 'release-notes.md'),
        metadata: path.join(dir, 'release-metadata.json'),
        manifest: path.join(dir, MANIFEST_FILE),
      };
      await writeAtomic(files.notes!, notes);
      // The release's trace (when the worker traces): find its spans from the record.
      const traceId = currentTraceId();
      const metadata = {
        service: req.release.service,
        version: req.release.version,
        outcome: req.outcome,
        ...(req.reason ? { reason: req.reason } : {}),
        tag: req.tag,
        commit: req.commit,
        digest: req.digest,
        imageRef: req.imageRef,
        approvers: req.approvers,
        hosts: req.hosts,
        durationsMs: req.durations,
        ...(req.ciRunUrl ? { ciRunUrl: req.ciRunUrl } : {}),
        workflowId: req.release.workflowId,
        runId: ctx.runId,
        repo: publicUrl(req.repo.url),
        ...(traceId ? { traceId } : {}),
        announcedAt: ctx.now().toISOString(),
      };
      await writeAtomic(files.metadata!, `${JSON.stringify(metadata, null, 2)}\n`);

      const manifest = releaseManifest(req, ctx);
      const sigFile = path.join(dir, MANIFEST_SIG_FILE);
      const ref = req.announce.signingKey;
      if (!ref) {
        await rm(sigFile, { force: true });
        await writeAtomic(files.manifest!, manifestText(manifest));
        return { channel: 'artifacts', ok: true, path: dir, files, detail: `release notes, metadata and an UNSIGNED manifest written to ${dir} (announce.signingKey is not set)` };
      }
      const what = `the signing key (${describeSecretRef(ref)})`;
      let signed: { text: string; sig: string; fingerprint: string };
      try {
        const signer = releaseSigner(resolveSecret(ref, ctx.env), what);
        const text = manifestText({ ...manifest, signer: { key: signer.publicKey.text, fingerprint: signer.publicKey.fingerprint } });
        signed = { text, sig: signer.sign(text), fingerprint: signer.publicKey.fingerprint };
      } catch (err) {
        if (err instanceof ApplicationFailure) throw err;
        if (err instanceof ReleaseSigningError) {
          throw nonRetryable(GantryErrorType.ConfigInvalid, `The release manifest could not be signed: ${err.message}. Fix announce.signingKey on the worker and retry the announce step.`);
        }
        throw err;
      }
      // Signature first: a reader never finds a new signature missing its manifest for longer than one rename.
      await writeAtomic(sigFile, signed.sig);
      await writeAtomic(files.manifest!, signed.text);
      files.signature = sigFile;
      return { channel: 'artifacts', ok: true, path: dir, files, detail: `release notes, metadata and the manifest signed by ${signed.fingerprint} written to ${dir}` };
    },
  };
}

/** `# service version` and the CHANGELOG section for the version, read from the release tag on the remote. */
async function releaseNotes(req: AnnounceRequest, deps: ArtifactsDeps): Promise<{ notes: string; section: string | undefined }> {
  const token = req.repo.token ? resolveSecret(req.repo.token, deps.env) : undefined;
  const tokenRef = req.repo.token ? describeSecretRef(req.repo.token) : undefined;
  const git = new Git({ env: deps.env, token, remote: req.repo.url, timeoutMs: deps.gitTimeoutMs });
  const changelog = await withTempDir('announce', async (dir) => {
    try {
      await git.fetchTag(req.repo.url, req.tag, dir);
      return await git.showFile(dir, `refs/tags/${req.tag}`, req.repo.changelog);
    } catch (err) {
      throw gitFailure(err, `read ${req.repo.changelog} at tag ${req.tag} from`, req.repo.url, tokenRef);
    }
  }, deps.workDir);
  const section = changelog === undefined ? undefined : changelogSection(changelog, req.release.version);
  const body = section?.trim()
    ? section.trim()
    : `_No "${req.release.version}" section in ${req.repo.changelog} at ${req.tag}._`;
  return { notes: `# ${req.release.service} ${req.release.version}\n\n${body}\n`, section: section?.trim() || undefined };
}
