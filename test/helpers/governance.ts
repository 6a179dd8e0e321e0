/**
 * Small builders for the governance workflow tests: a ConfigSource over the sample config with extra service
 * keys (notices, deny windows…), for the real activities that read the worker's config (checkFreeze, notify);
 * people with real ssh keys, for signed votes.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { ConfigSource } from '../../src/activities/resolve';
import { openSigner, type StatementSigner } from '../../src/client/signing';
import type { PrincipalKey } from '../../src/shared/gate';
import { parseAllowedSigners } from '../../src/shared/sshsig';
import { formatStatement, type SignedStatement, type Statement } from '../../src/shared/statement';
import type { ReleaseInput, ReleaseStatus } from '../../src/shared/release';
import { loadedFrom, SAMPLE_CONFIG_YAML } from './fixtures';

/**
 * The sample config with extra lines under `services.hello` (each a `key: value` in YAML flow form), as the
 * worker would load it from its file. The lines go before `approvals:`, at the service's indentation.
 */
export function configSourceWith(serviceLines: string[]): ConfigSource {
  const extra = serviceLines.map((l) => `    ${l}\n`).join('');
  const yaml = SAMPLE_CONFIG_YAML.replace('    approvals:\n', `${extra}    approvals:\n`);
  if (yaml === SAMPLE_CONFIG_YAML && serviceLines.length > 0) throw new Error('the sample config changed: no "approvals:" line to insert before');
  const loaded = loadedFrom(yaml);
  return { path: 'governance-test.yaml', load: () => loaded };
}

/** The service's config as a ConfigSource loads it (to copy sections into a test input). */
export function serviceConfigOf(source: ConfigSource): ReleaseInput['config'] {
  const svc = source.load().config.services.hello;
  if (!svc) throw new Error('the config has no service hello');
  return svc;
}

/** One step's status by id (the harness's stepOf takes only the fixed step names). */
export function stepById(s: ReleaseStatus, id: string): ReleaseStatus['steps'][number] {
  const step = s.steps.find((x) => x.name === id);
  if (!step) throw new Error(`status has no step ${id}; it has ${s.steps.map((x) => x.name).join(', ')}`);
  return step;
}

/** A notices section whose webhook the test doubles never call (the fakes record notices; nothing is sent). */
export const RECORDED_NOTICES: NonNullable<ReleaseInput['config']['notices']> = {
  webhook: { env: 'GANTRY_TEST_UNUSED_WEBHOOK' }, reminderBefore: '1h', laneWaitLongerThan: '30m',
};

/** A person with an ed25519 key made by ssh-keygen, and gantry's signer over it (no agent). */
export interface KeyedPerson {
  name: string;
  /** "ssh-ed25519 AAAA…" */
  line: string;
  fingerprint: string;
  signer: StatementSigner;
}

export async function keyedPerson(dir: string, name: string): Promise<KeyedPerson> {
  const priv = path.join(dir, name);
  const run = (args: string[]) => {
    const r = spawnSync('ssh-keygen', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    if (r.error || r.status !== 0) throw new Error(`ssh-keygen ${args.join(' ')} failed: ${r.error?.message ?? r.stderr}; these tests need openssh-client`);
    return r.stdout;
  };
  run(['-q', '-t', 'ed25519', '-N', '', '-C', `${name}@laptop`, '-f', priv]);
  const line = readFileSync(`${priv}.pub`, 'utf8').trim().split(' ').slice(0, 2).join(' ');
  const fingerprint = run(['-l', '-E', 'sha256', '-f', `${priv}.pub`]).split(' ')[1]!;
  return { name, line, fingerprint, signer: await openSigner({ keyFile: priv, env: {} }) };
}

/** Keys as the config loader reads an allowed_signers text (a line may name several principals: `carol,erin ssh-ed25519 …`). */
export function allowedKeys(text: string): PrincipalKey[] {
  const parsed = parseAllowedSigners(text);
  if (parsed.problems.length > 0) throw new Error(`allowed signers: ${parsed.problems.join('; ')}`);
  return parsed.signers.flatMap((s) => s.principals.map((principal) => ({ principal, key: s.key.text, fingerprint: s.key.fingerprint })));
}

export async function signedBy(signer: StatementSigner, s: Statement): Promise<SignedStatement> {
  const statement = formatStatement(s);
  return { statement, signature: await signer.sign(statement) };
}
