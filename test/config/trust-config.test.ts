/**
 * The worker's release config as the trust boundary sees it: the people and their keys (allowed_signers, inline
 * or a file), the identity mode per service, configs split over a directory, URLs that would leak credentials,
 * and the sha256 every release records. Real ssh-keygen keys.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/load';
import { configDigest } from '../../src/config/digest';
import { SAMPLE_CONFIG_YAML } from '../helpers/fixtures';

let dir: string;
let alicePub: string;
let bobPub: string;

function key(name: string): string {
  const file = path.join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `${name}@test`, '-f', file]);
  return readFileSync(`${file}.pub`, 'utf8').trim();
}

function write(name: string, text: string): string {
  const file = path.join(dir, name);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, text);
  return file;
}

function problems(file: string): string[] {
  try {
    loadConfig(file);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error(`${file} loaded without problems`);
}

const signed = SAMPLE_CONFIG_YAML.replace('identity: declared', 'identity: signed');

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-trust-config-'));
  alicePub = key('alice');
  bobPub = key('bob');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('signed mode needs a key for every person it names', () => {
  it('is the default identity mode', () => {
    const file = write('default.yaml', SAMPLE_CONFIG_YAML.replace('      identity: declared\n', ''));
    expect(problems(file).join('\n')).toMatch(/identity is signed, but alice, bob, carol have no key in allowedSigners/);
  });

  it('loads inline allowed signers and lists every principal\'s key', () => {
    const file = write('inline.yaml', `allowedSigners: |\n  alice ${alicePub}\n  bob,carol ${bobPub}\n${signed}`);
    const loaded = loadConfig(file);
    expect(loaded.keys.map((k) => k.principal).sort()).toEqual(['alice', 'bob', 'carol']);
    expect(loaded.keys.find((k) => k.principal === 'alice')!.fingerprint)
      .toBe(execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', path.join(dir, 'alice.pub')], { encoding: 'utf8' }).split(' ')[1]);
  });

  it('reads an allowed_signers file relative to the config and names who is missing', () => {
    write('people/allowed_signers', `# people\nalice namespaces="gantry" ${alicePub}\nbob namespaces="git" ${bobPub}\n`);
    const file = write('by-file.yaml', `allowedSigners: { file: people/allowed_signers }\n${signed}`);
    const p = problems(file).join('\n');
    expect(p).toContain('bob, carol have no key in allowedSigners (with namespaces including "gantry" if limited)');
    expect(p).toContain('or set approvals.identity: declared');
  });

  it('reports a broken allowed_signers line with its number', () => {
    const file = write('broken.yaml', `allowedSigners: |\n  alice ${alicePub}\n  bob ssh-ed25519 notbase64!!\n${signed.replace('[alice, bob, carol]', '[alice]')}`);
    expect(problems(file).join('\n')).toMatch(/allowedSigners \(allowedSigners\): line 2/);
  });

  it('refuses a missing allowed_signers file naming it', () => {
    const file = write('missing.yaml', `allowedSigners: { file: /nonexistent/allowed_signers }\n${signed}`);
    expect(() => loadConfig(file)).toThrow(/allowedSigners file \(allowedSigners.file: \/nonexistent\/allowed_signers\) not found/);
  });
});

describe('a config directory', () => {
  it('merges its YAML files, each service once, and hashes all of them', () => {
    const d = path.join(dir, 'conf.d');
    write('conf.d/10-hello.yaml', SAMPLE_CONFIG_YAML);
    write('conf.d/20-other.yaml', SAMPLE_CONFIG_YAML.replace('  hello:', '  other:'));
    const a = loadConfig(d);
    expect(Object.keys(a.config.services).sort()).toEqual(['hello', 'other']);
    write('conf.d/20-other.yaml', SAMPLE_CONFIG_YAML.replace('  hello:', '  other:').replace('required: 1', 'required: 2'));
    expect(loadConfig(d).sha256).not.toBe(a.sha256);
  });

  it('refuses a service defined in two files', () => {
    write('dup.d/a.yaml', SAMPLE_CONFIG_YAML);
    write('dup.d/b.yaml', SAMPLE_CONFIG_YAML);
    expect(problems(path.join(dir, 'dup.d')).join('\n')).toMatch(/services.hello is already defined in another file/);
  });
});

describe('the hash `gantry start` sends for a local copy, without the schema', () => {
  it('is the hash loadConfig gives: one file, allowedSigners inline or a file (its content counted), a directory', () => {
    write('hash/people/allowed_signers', `alice ${alicePub}\nbob,carol ${bobPub}\n`);
    const byFile = write('hash/by-file.yaml', `allowedSigners: { file: people/allowed_signers }\n${signed}`);
    const inline = write('hash/inline.yaml', `allowedSigners: |\n  alice ${alicePub}\n  bob,carol ${bobPub}\n${signed}`);
    write('hash/conf.d/10-hello.yaml', SAMPLE_CONFIG_YAML);
    write('hash/conf.d/20-people.yaml', `allowedSigners: { file: ../people/allowed_signers }\n${signed.replace('  hello:', '  other:')}`);
    const d = path.join(dir, 'hash', 'conf.d');
    for (const target of [byFile, inline, d]) expect(configDigest(target), target).toBe(loadConfig(target).sha256);
    const before = configDigest(byFile);
    write('hash/people/allowed_signers', `alice ${alicePub}\nbob,carol,dave ${bobPub}\n`);
    expect(configDigest(byFile)).not.toBe(before);
    expect(configDigest(byFile)).toBe(loadConfig(byFile).sha256);
  });

  it('hashes a copy the schema refuses (it is compared, then validated), and gives nothing where YAML or allowedSigners is unclear', () => {
    const typo = write('hash/typo.yaml', SAMPLE_CONFIG_YAML.replace('    approvals:\n', '    aprovals: {}\n    approvals:\n'));
    expect(problems(typo).join('\n')).toContain('unknown key "aprovals"');
    expect(configDigest(typo)).toMatch(/^[0-9a-f]{64}$/);
    expect(configDigest(write('hash/broken.yaml', 'services: [\n'))).toBeUndefined();
    expect(configDigest(write('hash/odd.yaml', `allowedSigners: 42\n${signed}`))).toBeUndefined();
    expect(configDigest(path.join(dir, 'hash', 'nope.yaml'))).toBeUndefined();
  });
});

describe('URLs never carry credentials', () => {
  it.each([
    ['repo.url', 'url: /srv/git/hello.git', 'url: https://x-access-token:ghp_abc@github.com/acme/hello.git'],
    ['a check URL', 'url: "http://127.0.0.1:18081/health"', 'url: "http://admin:pw@127.0.0.1:18081/health"'],
  ])('refuses %s with user:password@ and says to use a token reference', (_what, from, to) => {
    const file = write(`cred-${_what.replace(/\W/g, '')}.yaml`, SAMPLE_CONFIG_YAML.replace(from, to));
    expect(problems(file).join('\n')).toContain('the URL carries credentials');
    expect(problems(file).join('\n')).toContain('give the secret as a reference instead');
  });

  it('accepts an ssh user name, which is not a credential', () => {
    const file = write('ssh-user.yaml', SAMPLE_CONFIG_YAML.replace('url: /srv/git/hello.git', 'url: ssh://git@github.com/acme/hello.git'));
    expect(loadConfig(file).config.services.hello!.repo.url).toBe('ssh://git@github.com/acme/hello.git');
  });
});
