/**
 * The signed release manifest, end to end with real parts: the announce step (real git repository for the
 * CHANGELOG, real files) signs release-manifest.json with a worker key made by `ssh-keygen`, over approvals
 * signed by `ssh-keygen -Y sign -n gantry`; `ssh-keygen -Y verify -n gantry-release` accepts the signature;
 * the BUILT `gantry verify` prints what was signed and exits 0, and exits 16 when one byte of the manifest or
 * the signature is changed, the principal is not the signer, an approval's own signature does not hold, the
 * audit line was changed, or the manifest is unsigned.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createAnnounce } from '../../src/activities/announce';
import type { AnnouncedApproval, AnnounceRequest, AnnounceResult } from '../../src/activities/types';
import { canonicalJson } from '../../src/record/canonical';
import { MANIFEST_SCHEMA, type ReleaseManifest } from '../../src/record/manifest';
import { releaseSigner, RELEASE_SIG_NAMESPACE } from '../../src/record/sign';
import { formatStatement } from '../../src/shared/statement';
import { gantry, removeTempDirs, requireBuild, show, sshKeygen, tempDir, type Person } from '../cli/harness';
import { createTestRepo, type TestRepo } from '../helpers/git-repos';

const CHANGELOG = '# Changelog\n\n## [1.2.3] - 2026-01-10\n### Fixed\n- the login loop\n';
const DIGEST = `sha256:${'4f'.repeat(32)}`;
const RUN = 'run-1';

let dir: string;
let repo: TestRepo;
let worker: Person;
let alice: Person;
let allowed: string;
let approvals: AnnouncedApproval[];

function sshKeygenSign(key: Person, namespace: string, text: string): string {
  const file = path.join(dir, `msg-${Math.random().toString(36).slice(2)}`);
  writeFileSync(file, text);
  execFileSync('ssh-keygen', ['-q', '-Y', 'sign', '-f', key.keyFile, '-n', namespace, file], { stdio: ['ignore', 'pipe', 'pipe'] });
  return readFileSync(`${file}.sig`, 'utf8');
}

/** `ssh-keygen -Y verify -f allowed -I principal -n gantry-release -s sig < manifest` */
function sshKeygenVerify(manifest: string, sig: string, principal = 'release-bot') {
  return spawnSync('ssh-keygen', ['-Y', 'verify', '-f', allowed, '-I', principal, '-n', RELEASE_SIG_NAMESPACE, '-s', sig], { input: readFileSync(manifest), encoding: 'utf8' });
}

function request(overrides: Partial<AnnounceRequest> = {}): AnnounceRequest {
  return {
    release: { service: 'hello', version: '1.2.3', workflowId: 'release-hello-1.2.3' },
    outcome: 'released',
    announce: {
      auditLog: path.join(dir, 'audit', 'releases.jsonl'),
      artifactsDir: path.join(dir, 'artifacts', '{service}-{version}'),
      signingKey: { file: worker.keyFile },
    },
    repo: { url: repo.remote, branch: 'main', changelog: 'CHANGELOG.md' },
    commit: repo.head(),
    tag: 'v1.2.3',
    digest: DIGEST,
    imageRef: `127.0.0.1:5000/hello@${DIGEST}`,
    approvers: ['alice', 'bob'],
    approvals,
    hosts: ['ssh:deploy@10.0.0.5:22/hello', 'ssh:deploy@10.0.0.6:22/hello'],
    durations: { preflight: 4_200, build: 62_000, deployProduction: 12_400, health: 900 },
    configSha256: `sha256:${'c0'.repeat(32)}`,
    ...overrides,
  };
}

async function announce(req: AnnounceRequest): Promise<AnnounceResult> {
  const env = new MockActivityEnvironment({ attempt: 1, workflowExecution: { workflowId: req.release.workflowId, runId: RUN } });
  const { announce: fn } = createAnnounce({ env: { ...process.env }, now: () => new Date('2026-02-01T10:20:00Z') });
  return env.run<[AnnounceRequest], AnnounceResult, typeof fn>(fn, req);
}

/** Copies of the manifest and its signature in a fresh directory, with one byte of one of them flipped. */
function flipped(manifest: string, which: 'manifest' | 'sig', at: (size: number) => number): string {
  const d = path.join(dir, `flip-${Math.random().toString(36).slice(2)}`);
  mkdirSync(d);
  const m = path.join(d, 'release-manifest.json');
  copyFileSync(manifest, m);
  copyFileSync(`${manifest}.sig`, `${m}.sig`);
  const target = which === 'manifest' ? m : `${m}.sig`;
  const bytes = readFileSync(target);
  const i = at(bytes.length);
  bytes[i] = bytes[i]! ^ 0x01;
  writeFileSync(target, bytes);
  return m;
}

beforeAll(() => {
  requireBuild();
  dir = tempDir('gantry-manifest-');
  repo = createTestRepo({ 'CHANGELOG.md': CHANGELOG });
  repo.tag('v1.2.3');
  worker = sshKeygen(dir, 'release-bot');
  alice = sshKeygen(dir, 'alice');
  const pub = (p: Person) => readFileSync(`${p.keyFile}.pub`, 'utf8').trim().split(/\s+/).slice(0, 2).join(' ');
  allowed = path.join(dir, 'allowed_signers');
  writeFileSync(allowed, `release-bot namespaces="${RELEASE_SIG_NAMESPACE}" ${pub(worker)}\nalice namespaces="gantry" ${pub(alice)}\n`);
  const statement = formatStatement({ action: 'approve', workflow: 'release-hello-1.2.3', run: RUN, digest: DIGEST, principal: 'alice', expires: '2026-02-01T10:15:00.000Z', reason: 'staging looks good' });
  approvals = [
    { approver: 'alice', verified: true, fingerprint: alice.fingerprint, reason: 'staging looks good', at: '2026-02-01T10:01:00.000Z', via: 'signal', statement, signature: sshKeygenSign(alice, 'gantry', statement) },
    { approver: 'bob', verified: false, at: '2026-02-01T10:02:00.000Z', via: 'update' },
  ];
});
afterAll(() => {
  repo.cleanup();
  removeTempDirs();
});

describe('the signed release manifest', () => {
  let result: AnnounceResult;
  let manifest: string;
  let sig: string;

  beforeAll(async () => {
    result = await announce(request());
    manifest = result.manifestPath!;
    sig = result.manifestSignaturePath!;
  });

  it('is canonical JSON covering the release, signed with the worker key from announce.signingKey', () => {
    expect(manifest).toBe(path.join(dir, 'artifacts', 'hello-1.2.3', 'release-manifest.json'));
    expect(sig).toBe(`${manifest}.sig`);
    expect(result.channels!.find((c) => c.channel === 'artifacts')!.detail).toContain(`the manifest signed by ${worker.fingerprint}`);
    const text = readFileSync(manifest, 'utf8');
    const m = JSON.parse(text) as ReleaseManifest;
    expect(text).toBe(`${canonicalJson(m)}\n`);
    const auditText = readFileSync(path.join(dir, 'audit', 'releases.jsonl'), 'utf8');
    expect(m).toEqual({
      schema: MANIFEST_SCHEMA,
      service: 'hello', version: '1.2.3', tag: 'v1.2.3', commit: repo.head(), digest: DIGEST, imageRef: `127.0.0.1:5000/hello@${DIGEST}`,
      hosts: ['ssh:deploy@10.0.0.5:22/hello', 'ssh:deploy@10.0.0.6:22/hello'],
      outcome: 'released',
      approvers: ['alice', 'bob'],
      approvals,
      steps: [{ step: 'preflight', durationMs: 4_200 }, { step: 'build', durationMs: 62_000 }, { step: 'deployProduction', durationMs: 12_400 }, { step: 'health', durationMs: 900 }],
      workflowId: 'release-hello-1.2.3', runId: RUN, repo: repo.remote,
      configSha256: `sha256:${'c0'.repeat(32)}`,
      auditLine: { line: 1, sha256: `sha256:${execFileSync('sha256sum', { input: auditText.split('\n')[0] }).toString().split(' ')[0]}` },
      signer: { key: readFileSync(`${worker.keyFile}.pub`, 'utf8').trim().split(/\s+/).slice(0, 2).join(' '), fingerprint: worker.fingerprint },
      createdAt: '2026-02-01T10:20:00.000Z',
    });
  });

  it('is accepted by ssh-keygen -Y verify -n gantry-release, which refuses a changed byte', () => {
    const ok = sshKeygenVerify(manifest, sig);
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toContain(`Good "${RELEASE_SIG_NAMESPACE}" signature for release-bot`);
    const bad = flipped(manifest, 'manifest', (n) => Math.floor(n / 2));
    expect(sshKeygenVerify(bad, `${bad}.sig`).status).not.toBe(0);
  });

  it('gantry verify prints what was signed, in words, and exits 0', async () => {
    const r = await gantry(['verify', manifest, '--allowed-signers', allowed, '--principal', 'release-bot', '--audit-log', path.join(dir, 'audit', 'releases.jsonl')]);
    expect(r.code, show(r)).toBe(0);
    for (const words of [
      `hello 1.2.3 (tag v1.2.3, commit ${repo.head().slice(0, 12)}): released to production`,
      `digest     ${DIGEST}`,
      'hosts      ssh:deploy@10.0.0.5:22/hello, ssh:deploy@10.0.0.6:22/hello',
      `alice: signature valid: signed by alice with key ${alice.fingerprint}, reason "staging looks good" (via signal at 2026-02-01 10:01:00Z)`,
      'bob: declared by name (not signed) (via update at 2026-02-01 10:02:00Z)',
      'steps      preflight 4.2s · build 1m02s · deployProduction 12s · health 0.9s · total 1m20s',
      'audit log  line 1, sha256:',
      'line 1 of the audit log is the one recorded, and the chain up to it is intact',
      `Signature: valid signature by key ${worker.fingerprint} (ssh-ed25519, namespace gantry-release), listed for release-bot in the allowed signers`,
      'VALID: the manifest is exactly what the worker signed.',
    ]) {
      expect(r.stdout).toContain(words);
    }

    const bare = await gantry(['verify', manifest]);
    expect(bare.code, show(bare)).toBe(0);
    expect(bare.stdout).toContain('The key was not checked against an allowed signers file');
    const json = await gantry(['verify', manifest, '--json']);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: true, signature: { ok: true, fingerprint: worker.fingerprint }, approvals: [{ approver: 'alice', signature: 'valid' }, { approver: 'bob', signature: 'none' }], problems: [] });
  });

  it('exits 16 when one byte of the manifest or of its signature is changed', async () => {
    const cases: [string, string, string][] = [
      ['first byte of the manifest', flipped(manifest, 'manifest', () => 0), 'the signature does not verify'],
      ['a byte in the middle of the manifest', flipped(manifest, 'manifest', (n) => Math.floor(n / 2)), 'the signature does not verify'],
      ['the manifest\'s final newline', flipped(manifest, 'manifest', (n) => n - 1), 'the signature does not verify'],
      ['a byte of the signature', flipped(manifest, 'sig', (n) => Math.floor(n / 2)), 'NOT VALID'],
      ['the signature\'s final newline', flipped(manifest, 'sig', (n) => n - 1), 'the signature file is not in the form ssh-keygen writes'],
    ];
    for (const [what, file, says] of cases) {
      const r = await gantry(['verify', file]);
      expect(r.code, `${what}: ${show(r)}`).toBe(16);
      expect(r.stdout, what).toContain(says);
    }
  });

  it('exits 16 for a principal the key is not listed for, and for a changed audit line', async () => {
    const r = await gantry(['verify', manifest, '--allowed-signers', allowed, '--principal', 'mallory']);
    expect(r.code, show(r)).toBe(16);
    expect(r.stdout).toContain(`the signing key ${worker.fingerprint} is allowed for release-bot, not for mallory`);

    const log = path.join(dir, 'audit-copy.jsonl');
    writeFileSync(log, readFileSync(path.join(dir, 'audit', 'releases.jsonl'), 'utf8').replace('"actor":"alice,bob"', '"actor":"alice"'));
    const a = await gantry(['verify', manifest, '--audit-log', log]);
    expect(a.code, show(a)).toBe(16);
    expect(a.stdout).toContain('line 1 of the audit log is not the one the manifest recorded');
  });

  it('exits 16 when an approval\'s own signature does not hold, though the worker signed the manifest', async () => {
    const forged = { ...approvals[0]!, statement: approvals[0]!.statement!.replace('staging looks good', 'ship it') };
    const res = await announce(request({ release: { service: 'hello', version: '1.2.3', workflowId: 'release-hello-1.2.3' }, approvals: [forged], announce: { ...request().announce, artifactsDir: path.join(dir, 'forged') } }));
    const r = await gantry(['verify', res.manifestPath!]);
    expect(r.code, show(r)).toBe(16);
    expect(r.stdout).toContain('alice: signature INVALID: its signature does not verify');
    expect(r.stdout).toContain(`Signature: valid signature by key ${worker.fingerprint}`);
  });

  it('writes the manifest unsigned without a signing key, says so, and gantry verify refuses it', async () => {
    const res = await announce(request({ announce: { artifactsDir: path.join(dir, 'unsigned') } }));
    expect(res.manifestSignaturePath).toBeUndefined();
    expect(existsSync(`${res.manifestPath!}.sig`)).toBe(false);
    expect(res.channels!.find((c) => c.channel === 'artifacts')!.detail).toContain('an UNSIGNED manifest');
    const r = await gantry(['verify', res.manifestPath!]);
    expect(r.code, show(r)).toBe(16);
    expect(r.stdout).toContain('not signed: the worker wrote this manifest without a signing key (announce.signingKey)');
  });
});

describe('the release signer', () => {
  it('signs with an ecdsa-sha2-nistp256 key too, in a form ssh-keygen accepts', () => {
    const key = path.join(dir, 'ecdsa_key');
    execFileSync('ssh-keygen', ['-q', '-t', 'ecdsa', '-b', '256', '-N', '', '-C', 'bot', '-f', key]);
    const signer = releaseSigner(readFileSync(key, 'utf8'), 'the test key');
    const file = path.join(dir, 'ecdsa-manifest.json');
    writeFileSync(file, '{"a":1}\n');
    writeFileSync(`${file}.sig`, signer.sign('{"a":1}\n'));
    const list = path.join(dir, 'ecdsa_allowed');
    writeFileSync(list, `bot ${readFileSync(`${key}.pub`, 'utf8')}`);
    const r = spawnSync('ssh-keygen', ['-Y', 'verify', '-f', list, '-I', 'bot', '-n', RELEASE_SIG_NAMESPACE, '-s', `${file}.sig`], { input: readFileSync(file), encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
  });

  it('refuses a public key and an encrypted key, saying what to give instead', () => {
    expect(() => releaseSigner(readFileSync(`${worker.keyFile}.pub`, 'utf8'), 'the key')).toThrow(/does not hold a private key: the worker signs release manifests itself/);
    const enc = path.join(dir, 'enc_key');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', 'secret-pass', '-f', enc]);
    expect(() => releaseSigner(readFileSync(enc, 'utf8'), 'the key')).toThrow(/encrypted with a passphrase/);
  });
});
