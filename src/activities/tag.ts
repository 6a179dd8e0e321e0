/**
 * Tag: an annotated tag `v{version}` at the release commit, pushed to the remote and verified there (the remote's
 * peeled tag must be the commit). Idempotent: a tag already at that commit is success (`created: false`), so a
 * retry after a crash, or a rerun of the release, changes nothing. A tag at another commit is never moved.
 */
import { GantryErrorType, nonRetryable, retryable } from '../shared/errors';
import type { TagRequest, TagResult } from './types';
import { Git, GitError, displayUrl, gitFailure, withTempDir, type RemoteTag } from './git';
import { currentAttempt, heartbeating, withHeartbeat } from './heartbeat';
import { describeSecretRef, resolveSecret } from './secrets';

export interface TagDeps {
  /** Resolves secret references (repo.token). */
  env: NodeJS.ProcessEnv;
  /** Where per-attempt repositories go. @default os.tmpdir() */
  workDir?: string;
  /** Per git command. @default 120000 */
  gitTimeoutMs?: number;
  /** The tagger. @default { name: 'gantry', email: 'gantry@localhost' } */
  identity?: { name: string; email: string };
}

export function createTag(deps: TagDeps) {
  return {
    tag: heartbeating(async (req: TagRequest): Promise<TagResult> => {
      const { release, repo, commit } = req;
      const tag = `v${release.version}`;
      const url = displayUrl(repo.url);
      if (!/^([0-9a-f]{40}|[0-9a-f]{64})$/.test(commit)) {
        throw nonRetryable(GantryErrorType.ConfigInvalid, `Cannot tag ${tag}: "${commit}" is not a full commit id. ` +
          'The tag step takes the commit preflight resolved; start the release again so preflight records it.');
      }
      const token = repo.token ? resolveSecret(repo.token, deps.env) : undefined;
      const tokenRef = repo.token ? describeSecretRef(repo.token) : undefined;
      const git = new Git({ env: deps.env, token, remote: repo.url, timeoutMs: deps.gitTimeoutMs, identity: deps.identity });
      const beat = () => ({ tag, commit });

      const readTag = () => withHeartbeat(beat, () => git.remoteTag(repo.url, tag))
        .catch((err: unknown) => { throw gitFailure(err, `read tag ${tag} from`, repo.url, tokenRef); });
      const conflict = (other: RemoteTag) => nonRetryable(
        GantryErrorType.TagConflict,
        `Tag ${tag} already exists on ${url} at commit ${other.commit}, but this release is for commit ${commit}. ` +
          'A published tag is never moved. Fix: release a new version (bump it and add its CHANGELOG section); ' +
          `only if ${tag} was pushed by mistake and nothing uses it, delete it (git push --delete origin ${tag}) and start the release again.`,
        { tag, remoteCommit: other.commit, commit },
      );

      const before = await readTag();
      if (before) {
        if (before.commit === commit) return { attempt: currentAttempt(), tag, commit, created: false };
        throw conflict(before);
      }

      let created = true;
      await withTempDir('tag', async (dir) => {
        try {
          await withHeartbeat(beat, () => git.fetchCommit(repo.url, commit, repo.branch, dir));
        } catch (err) {
          if (err instanceof GitError && (err.kind === 'other' || err.kind === 'rejected' || err.kind === 'missing-ref')) {
            throw nonRetryable(GantryErrorType.TagConflict, `Cannot tag ${tag}: commit ${commit} is not on ${url} any more ` +
              `(was ${repo.branch} rewritten?). Nothing was tagged. Fix: start the release again so preflight picks the current head of ${repo.branch}.`,
              { tag, commit });
          }
          throw gitFailure(err, `fetch commit ${commit.slice(0, 12)} from`, repo.url, tokenRef);
        }
        await git.createAnnotatedTag(dir, tag, commit,
          `Release ${release.service} ${release.version}\n\nTagged by gantry for workflow ${release.workflowId}.`);
        try {
          await withHeartbeat(beat, () => git.pushTag(dir, repo.url, tag));
        } catch (err) {
          // Someone (an earlier attempt whose reply was lost, a person) pushed the tag meanwhile: decide by where it is.
          if (err instanceof GitError && err.kind === 'rejected') {
            const now = await readTag();
            if (now?.commit === commit) {
              created = false;
              return;
            }
            if (now) throw conflict(now);
          }
          throw gitFailure(err, `push tag ${tag} to`, repo.url, tokenRef);
        }
      }, deps.workDir);

      const after = await readTag();
      if (!after) {
        throw retryable(`Pushed tag ${tag} to ${url}, but the remote does not list it. Gantry retries (the tag step is idempotent); ` +
          'if it persists, check the remote for hooks that drop tags.');
      }
      if (after.commit !== commit) throw conflict(after);
      return { attempt: currentAttempt(), tag, commit, created };
    }),
  };
}
