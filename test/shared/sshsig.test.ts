/**
 * SSH signatures against the real OpenSSH tools: signatures made by `ssh-keygen -Y sign` verify here, and
 * signatures made here (from a key file or through a real ssh-agent) verify with `ssh-keygen -Y verify`.
 * These tests need openssh-client; without it they fail, they do not skip.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NODE_SIGNATURE_CHECK, openSigner, SigningError } from '../../src/client/signing';
import {
  armorSshSignature,
  GANTRY_SIG_NAMESPACE,
  parseAllowedSigners,
  parsePublicKey,
  sshSigSignedData,
  verifySshSignature,
} from '../../src/shared/sshsig';

const MESSAGE = 'gantry approve\nrelease: hello@1.2.3\nreason: ça marche ✓ — shipped 🚀\n';

let root: string;
const agents: ChildProcess[] = [];

interface Key {
  priv: string;
  pub: string;
  /** "type base64" of the .pub, no comment */
  line: string;
  fingerprint: string;
}

function run(cmd: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv } = {}): { status: number; stdout: string; stderr: string } {
  const common = { env: opts.env ?? process.env, encoding: 'utf8' as const };
  // Only feed stdin to commands that read it: writing to one that exits first fails with EPIPE.
  const r = opts.input === undefined ? spawnSync(cmd, args, { ...common, stdio: ['ignore', 'pipe', 'pipe'] }) : spawnSync(cmd, args, { ...common, input: opts.input });
  if (r.error) throw new Error(`${cmd} could not run (${r.error.message}); these tests need openssh-client (ssh-keygen, ssh-agent, ssh-add)`);
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function must(cmd: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv } = {}): string {
  const r = run(cmd, args, opts);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

function keygen(name: string, type: 'ed25519' | 'ecdsa' | 'ecdsa384' | 'rsa', passphrase = ''): Key {
  const priv = path.join(root, name);
  const typeArgs = type === 'ecdsa' ? ['-t', 'ecdsa', '-b', '256'] : type === 'ecdsa384' ? ['-t', 'ecdsa', '-b', '384'] : type === 'rsa' ? ['-t', 'rsa', '-b', '2048'] : ['-t', 'ed25519'];
  must('ssh-keygen', ['-q', ...typeArgs, '-N', passphrase, '-C', `${name}@laptop`, '-f', priv]);
  const pub = `${priv}.pub`;
  const line = readFileSync(pub, 'utf8').trim().split(' ').slice(0, 2).join(' ');
  const fingerprint = must('ssh-keygen', ['-l', '-E', 'sha256', '-f', pub]).split(' ')[1]!;
  return { priv, pub, line, fingerprint };
}

let fileCounter = 0;
function tempFile(content: string): string {
  const file = path.join(root, `f${++fileCounter}`);
  writeFileSync(file, content);
  return file;
}

/** `ssh-keygen -Y sign -f key -n ns file` → the armored signature it writes to file.sig. */
function sshKeygenSign(key: Key, message: string, namespace = 'gantry', extra: string[] = []): string {
  const file = tempFile(message);
  must('ssh-keygen', ['-Y', 'sign', '-f', key.priv, '-n', namespace, ...extra, file]);
  return readFileSync(`${file}.sig`, 'utf8');
}

/** `ssh-keygen -Y verify -f allowed_signers -I principal -n gantry -s sig < msg` */
function sshKeygenVerify(key: Key, signature: string, message: string, principal = 'alice'): { status: number; stdout: string; stderr: string } {
  const allowed = tempFile(`${principal} ${key.line}\n`);
  const sig = tempFile(signature);
  return run('ssh-keygen', ['-Y', 'verify', '-f', allowed, '-I', principal, '-n', 'gantry', '-s', sig], { input: message });
}

async function startAgent(name: string, keys: Key[]): Promise<string> {
  const sock = path.join(root, `${name}.sock`);
  const agent = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' });
  agents.push(agent);
  const spawnError = new Promise<never>((_, reject) => agent.once('error', (err) => reject(new Error(`ssh-agent could not start: ${err.message}`))));
  const ready = (async () => {
    for (let i = 0; i < 100 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));
    if (!existsSync(sock)) throw new Error(`ssh-agent did not create ${sock}`);
  })();
  await Promise.race([ready, spawnError]);
  for (const k of keys) must('ssh-add', ['-q', k.priv], { env: { ...process.env, SSH_AUTH_SOCK: sock } });
  return sock;
}

/** The fields of an armored SSHSIG, decoded with Buffer (independent of the module under test). */
function sigFields(armored: string): { publicKey: Buffer; namespace: string; reserved: Buffer; hash: string; signature: Buffer } {
  const b64 = armored.trim().split('\n').slice(1, -1).join('');
  const buf = Buffer.from(b64, 'base64');
  let p = 10; // "SSHSIG" + uint32 version
  const str = (): Buffer => {
    const n = buf.readUInt32BE(p);
    const out = buf.subarray(p + 4, p + 4 + n);
    p += 4 + n;
    return out;
  };
  const publicKey = str();
  const namespace = str().toString();
  const reserved = str();
  const hash = str().toString();
  const signature = str();
  return { publicKey, namespace, reserved, hash, signature };
}

/** Deterministic pseudo-random numbers for the mutation tests (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

let alice: Key;
let aliceEc: Key;
let bobEc: Key;
let bob: Key;
let rsa: Key;
let emptyHome: string;

beforeAll(() => {
  // Fails the whole file (no skipping) when openssh-client is missing.
  for (const tool of ['ssh-keygen', 'ssh-agent', 'ssh-add']) {
    const r = spawnSync(tool, ['-h'], { encoding: 'utf8' });
    if (r.error) throw new Error(`${tool} is missing (${r.error.message}); install openssh-client to run these tests`);
  }
  root = mkdtempSync(path.join(os.tmpdir(), 'gantry-sshsig-'));
  emptyHome = path.join(root, 'empty-home');
  mkdirSync(emptyHome);
  alice = keygen('alice', 'ed25519');
  aliceEc = keygen('alice-ec', 'ecdsa');
  bobEc = keygen('bob-ec', 'ecdsa');
  bob = keygen('bob', 'ed25519');
  rsa = keygen('rsa', 'rsa');
});

afterAll(() => {
  for (const agent of agents) agent.kill('SIGTERM');
  if (root) rmSync(root, { recursive: true, force: true });
});

describe.each([
  ['ed25519', () => alice],
  ['ecdsa-p256', () => aliceEc],
])('SSH signatures with an %s key', (keyName, keyOf) => {
  it('verifies a signature made by ssh-keygen -Y sign and returns the key with the fingerprint ssh-keygen prints', () => {
    const key = keyOf();
    const result = verifySshSignature(sshKeygenSign(key, MESSAGE), MESSAGE, GANTRY_SIG_NAMESPACE);
    expect(result).toEqual({ ok: true, value: { key: expect.objectContaining({ text: key.line, fingerprint: key.fingerprint }), hashAlgorithm: 'sha512' } });
  });

  it('verifies a signature that ssh-keygen made with -O hashalg=sha256', () => {
    const key = keyOf();
    const result = verifySshSignature(sshKeygenSign(key, MESSAGE, 'gantry', ['-O', 'hashalg=sha256']), MESSAGE, 'gantry');
    expect(result.ok && result.value.hashAlgorithm).toBe('sha256');
  });

  it('armors a signature exactly as ssh-keygen does', () => {
    const sig = sshKeygenSign(keyOf(), MESSAGE);
    const f = sigFields(sig);
    expect(armorSshSignature(new Uint8Array(f.publicKey), f.namespace, f.hash as 'sha512', new Uint8Array(f.signature))).toBe(sig);
  });

  it('signs from the private key file so that ssh-keygen -Y verify says Good "gantry" signature', async () => {
    const key = keyOf();
    const signer = await openSigner({ keyFile: key.priv, env: { HOME: emptyHome } });
    expect(signer.source).toBe(`key file ${key.priv}`);
    expect(signer.publicKey.fingerprint).toBe(key.fingerprint);
    const sig = await signer.sign(MESSAGE);
    const r = sshKeygenVerify(key, sig, MESSAGE);
    expect(r.stdout + r.stderr).toContain('Good "gantry" signature for alice');
    expect(r.status).toBe(0);
    expect(sigFields(sig).hash).toBe('sha512');
  });

  it('refuses the signature when one byte of the message changes', () => {
    const sig = sshKeygenSign(keyOf(), MESSAGE);
    const changed = MESSAGE.replace('1.2.3', '1.2.4');
    const result = verifySshSignature(sig, changed, 'gantry');
    expect(result).toEqual({ ok: false, problem: expect.stringContaining('does not match the message') });
    expect(verifySshSignature(sig, `${MESSAGE} `, 'gantry').ok).toBe(false);
    expect(verifySshSignature(sig, MESSAGE.slice(0, -1), 'gantry').ok).toBe(false);
  });

  it("gives the CLI's check with Node's crypto the same answers as the workflow's pure-JS curves", () => {
    // The CLI checks each signature it makes with Node's crypto (src/client/signing.ts), the workflow with the curves.
    const key = keyOf();
    const sig = sshKeygenSign(key, MESSAGE);
    const changed = MESSAGE.replace('1.2.3', '1.2.4');
    expect(verifySshSignature(sig, MESSAGE, 'gantry', NODE_SIGNATURE_CHECK)).toEqual(verifySshSignature(sig, MESSAGE, 'gantry'));
    expect(verifySshSignature(sig, MESSAGE, 'gantry', NODE_SIGNATURE_CHECK).ok).toBe(true);
    expect(verifySshSignature(sig, changed, 'gantry', NODE_SIGNATURE_CHECK)).toEqual({ ok: false, problem: expect.stringContaining('does not match the message') });
    const other = sshKeygenSign(keyName === 'ed25519' ? bob : bobEc, MESSAGE);
    const swapped = armorSshSignature(new Uint8Array(sigFields(sig).publicKey), 'gantry', 'sha512', new Uint8Array(sigFields(other).signature));
    expect(verifySshSignature(swapped, MESSAGE, 'gantry', NODE_SIGNATURE_CHECK).ok).toBe(false);
    expect(verifySshSignature(swapped, MESSAGE, 'gantry').ok).toBe(false);
  });

  it('refuses a signature made for another namespace, and a good one checked for another namespace', () => {
    const key = keyOf();
    const gitSig = sshKeygenSign(key, MESSAGE, 'git');
    expect(verifySshSignature(gitSig, MESSAGE, 'gantry')).toEqual({ ok: false, problem: expect.stringContaining('namespace "git", not "gantry"') });
    expect(verifySshSignature(sshKeygenSign(key, MESSAGE), MESSAGE, 'git').ok).toBe(false);
  });

  it('never throws and never accepts a signature with one byte of its armor changed', () => {
    const sig = sshKeygenSign(keyOf(), MESSAGE);
    expect(verifySshSignature(sig, MESSAGE, 'gantry').ok).toBe(true);
    const next = rng(keyName === 'ed25519' ? 1 : 2);
    for (let n = 0; n < 300; n++) {
      const at = Math.floor(next() * (sig.length - 1)); // not the final newline: trailing whitespace is ignored
      let code = Math.floor(next() * 256);
      if (code === sig.charCodeAt(at)) code = (code + 1) % 256;
      const mutated = sig.slice(0, at) + String.fromCharCode(code) + sig.slice(at + 1);
      const result = verifySshSignature(mutated, MESSAGE, 'gantry');
      expect(result.ok, `mutation at ${at} to ${code}`).toBe(false);
      if (!result.ok) expect(result.problem.length).toBeLessThanOrEqual(200);
    }
  });

  it('never throws and never accepts a signature with one byte of its decoded blob changed', () => {
    const sig = sshKeygenSign(keyOf(), MESSAGE);
    const blob = Buffer.from(sig.trim().split('\n').slice(1, -1).join(''), 'base64');
    const next = rng(keyName === 'ed25519' ? 3 : 4);
    for (let n = 0; n < 300; n++) {
      const mutated = Buffer.from(blob);
      const at = Math.floor(next() * mutated.length);
      mutated[at] = (mutated[at]! + 1 + Math.floor(next() * 255)) % 256;
      const b64 = mutated.toString('base64');
      const armored = `-----BEGIN SSH SIGNATURE-----\n${b64.match(/.{1,70}/g)!.join('\n')}\n-----END SSH SIGNATURE-----\n`;
      const result = verifySshSignature(armored, MESSAGE, 'gantry');
      expect(result.ok, `blob byte ${at}`).toBe(false);
    }
  });
});

describe('SSH signatures through a real ssh-agent', () => {
  let oneKeySock: string;
  let twoKeySock: string;
  let noKeySock: string;

  beforeAll(async () => {
    oneKeySock = await startAgent('agent-one', [alice]);
    twoKeySock = await startAgent('agent-two', [alice, aliceEc]);
    noKeySock = await startAgent('agent-none', []);
  });

  it.each([
    ['ed25519', () => alice],
    ['ecdsa-p256', () => aliceEc],
  ])('signs with the agent key named by its %s .pub file so that ssh-keygen -Y verify accepts it', async (_name, keyOf) => {
    const key = keyOf();
    const signer = await openSigner({ keyFile: key.pub, env: { HOME: emptyHome, SSH_AUTH_SOCK: twoKeySock } });
    expect(signer.source).toBe(`ssh-agent key ${key.fingerprint} (${path.basename(key.priv)}@laptop)`);
    const sig = await signer.sign(MESSAGE);
    const r = sshKeygenVerify(key, sig, MESSAGE);
    expect(r.stdout + r.stderr).toContain('Good "gantry" signature for alice');
    expect(r.status).toBe(0);
  });

  it('takes the .pub file from GANTRY_SIGNING_KEY when no --key is given', async () => {
    const signer = await openSigner({ env: { HOME: emptyHome, SSH_AUTH_SOCK: twoKeySock, GANTRY_SIGNING_KEY: aliceEc.pub } });
    expect(signer.publicKey.fingerprint).toBe(aliceEc.fingerprint);
  });

  it('uses the only key in the agent when no key file is given', async () => {
    const signer = await openSigner({ env: { HOME: emptyHome, SSH_AUTH_SOCK: oneKeySock } });
    expect(signer.source).toBe(`ssh-agent key ${alice.fingerprint} (alice@laptop)`);
    const sig = await signer.sign(MESSAGE);
    expect(sshKeygenVerify(alice, sig, MESSAGE).status).toBe(0);
    // ed25519 signatures are deterministic: the agent's equals ssh-keygen's, byte for byte.
    expect(sig).toBe(sshKeygenSign(alice, MESSAGE));
  });

  it('refuses to guess between several agent keys and lists their fingerprints and comments', async () => {
    const err = await openSigner({ env: { HOME: emptyHome, SSH_AUTH_SOCK: twoKeySock } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SigningError);
    const text = (err as Error).message;
    expect(text).toContain(alice.fingerprint);
    expect(text).toContain(aliceEc.fingerprint);
    expect(text).toContain('(alice@laptop)');
    expect(text).toContain('(alice-ec@laptop)');
    expect(text).toContain('--key <file.pub>');
    expect(text).toContain('GANTRY_SIGNING_KEY');
  });

  it('falls through from an empty agent to ~/.ssh/id_ed25519', async () => {
    const home = path.join(root, 'home-with-key');
    mkdirSync(path.join(home, '.ssh'), { recursive: true });
    writeFileSync(path.join(home, '.ssh', 'id_ed25519'), readFileSync(bob.priv));
    const signer = await openSigner({ env: { HOME: home, SSH_AUTH_SOCK: noKeySock } });
    expect(signer.source).toBe(`key file ${path.join(home, '.ssh', 'id_ed25519')}`);
    expect(signer.publicKey.fingerprint).toBe(bob.fingerprint);
  });

  it('says to ssh-add the key when its .pub is given but the agent does not hold it', async () => {
    const err = await openSigner({ keyFile: bob.pub, env: { HOME: emptyHome, SSH_AUTH_SOCK: oneKeySock } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SigningError);
    expect((err as Error).message).toContain(`ssh-add ${bob.priv}`);
    expect((err as Error).message).toContain(bob.fingerprint);
  });
});

describe('choosing a signing key', () => {
  it('says what to do when there is no key anywhere', async () => {
    await expect(openSigner({ env: { HOME: emptyHome } })).rejects.toThrow(
      new SigningError(
        'No signing key: pass --key FILE (your SSH private key, or its .pub when the key is in ssh-agent), set GANTRY_SIGNING_KEY, or load a key into ssh-agent.',
      ),
    );
  });

  it('says to ssh-add an encrypted key and pass its .pub', async () => {
    const enc = keygen('encrypted', 'ed25519', 'secret passphrase');
    const err = await openSigner({ keyFile: enc.priv, env: { HOME: emptyHome } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SigningError);
    expect((err as Error).message).toContain(`ssh-add ${enc.priv}`);
    expect((err as Error).message).toContain(`--key ${enc.priv}.pub`);
  });

  it('says to start an agent when a .pub is given without SSH_AUTH_SOCK', async () => {
    await expect(openSigner({ keyFile: alice.pub, env: { HOME: emptyHome } })).rejects.toThrow(/SSH_AUTH_SOCK is not set.*ssh-add/);
  });

  it('names a missing key file', async () => {
    const missing = path.join(root, 'no-such-key');
    await expect(openSigner({ keyFile: missing, env: { HOME: emptyHome } })).rejects.toThrow(`Signing key ${missing} does not exist`);
  });

  it('refuses an RSA private key and says to use ed25519', async () => {
    await expect(openSigner({ keyFile: rsa.priv, env: { HOME: emptyHome } })).rejects.toThrow(/ssh-rsa.*ssh-keygen -t ed25519/);
  });

  it('refuses a file that is no key at all', async () => {
    await expect(openSigner({ keyFile: tempFile('hello\n'), env: { HOME: emptyHome } })).rejects.toThrow(/neither an OpenSSH private key nor a public key/);
  });
});

describe('refused signatures', () => {
  it('refuses a signature by another key presented with the first key swapped in', () => {
    const bobSig = sigFields(sshKeygenSign(bob, MESSAGE));
    const aliceBlob = sigFields(sshKeygenSign(alice, MESSAGE)).publicKey;
    const forged = armorSshSignature(new Uint8Array(aliceBlob), 'gantry', 'sha512', new Uint8Array(bobSig.signature));
    expect(verifySshSignature(forged, MESSAGE, 'gantry')).toEqual({ ok: false, problem: expect.stringContaining(`signature by key ${alice.fingerprint} does not match`) });
  });

  it('refuses an ECDSA signature presented with an ed25519 key blob', () => {
    const ecSig = sigFields(sshKeygenSign(aliceEc, MESSAGE));
    const aliceBlob = sigFields(sshKeygenSign(alice, MESSAGE)).publicKey;
    const forged = armorSshSignature(new Uint8Array(aliceBlob), 'gantry', 'sha512', new Uint8Array(ecSig.signature));
    expect(verifySshSignature(forged, MESSAGE, 'gantry')).toEqual({ ok: false, problem: expect.stringContaining('does not match the key type') });
  });

  it('refuses an RSA signature with a clear unsupported key type problem', () => {
    const result = verifySshSignature(sshKeygenSign(rsa, MESSAGE), MESSAGE, 'gantry');
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.problem).toContain('unsupported key type ssh-rsa');
      expect(result.problem).toContain('ed25519');
    }
  });

  it('refuses truncated, garbled and empty armor with a short problem, never throwing', () => {
    const sig = sshKeygenSign(alice, MESSAGE);
    const lines = sig.trim().split('\n');
    const cases: [unknown, RegExp][] = [
      ['', /empty/],
      ['   \n', /empty/],
      [sig.slice(0, sig.length / 2), /does not end with/],
      [lines.slice(0, -1).join('\n'), /does not end with/],
      [lines.slice(1).join('\n'), /does not start with/],
      [[lines[0], lines[2], ...lines.slice(3)].join('\n'), /garbled|truncated/],
      [sig.replace(lines[1]!, lines[1]!.replace(/[A-Z]/, '!')), /garbled/],
      [sig.replace(/=/g, ''), /garbled/],
      ['-----BEGIN SSH SIGNATURE-----\n-----END SSH SIGNATURE-----\n', /nothing between/],
      [`-----BEGIN SSH SIGNATURE-----\n${Buffer.from('SSHSIG').toString('base64')}\n-----END SSH SIGNATURE-----\n`, /truncated/],
      [`-----BEGIN SSH SIGNATURE-----\n${Buffer.from('NOTSIG\0\0\0\x01').toString('base64')}\n-----END SSH SIGNATURE-----\n`, /SSHSIG magic/],
      ['x'.repeat(20_000), /16 KiB/],
      [`${sig}${' '.repeat(17_000)}`, /16 KiB/],
      [undefined, /not text/],
      [42, /not text/],
    ];
    for (const [armored, problem] of cases) {
      const result = verifySshSignature(armored as string, MESSAGE, 'gantry');
      expect(result.ok).toBe(false);
      if (!result.ok) {
        expect(result.problem).toMatch(problem);
        expect(result.problem.length).toBeLessThanOrEqual(200);
      }
    }
  });

  it('accepts CRLF line ends and surrounding whitespace, as pasted from another system', () => {
    const sig = sshKeygenSign(alice, MESSAGE);
    expect(verifySshSignature(`\n  ${sig.replace(/\n/g, '\r\n')}  \n`, MESSAGE, 'gantry').ok).toBe(true);
  });

  it('refuses a message longer than 64 KiB without hashing it', () => {
    const sig = sshKeygenSign(alice, MESSAGE);
    const result = verifySshSignature(sig, 'x'.repeat(64 * 1024 + 1), 'gantry');
    expect(result).toEqual({ ok: false, problem: expect.stringContaining('64 KiB') });
    // Multi-byte characters count as their UTF-8 bytes.
    expect(verifySshSignature(sig, 'é'.repeat(33 * 1024), 'gantry')).toEqual({ ok: false, problem: expect.stringContaining('64 KiB') });
  });

  it('signs the data that PROTOCOL.sshsig describes', () => {
    const data = Buffer.from(sshSigSignedData('hi', 'gantry', 'sha256'));
    expect(data.subarray(0, 6).toString()).toBe('SSHSIG');
    expect(data.readUInt32BE(6)).toBe(6);
    expect(data.subarray(10, 16).toString()).toBe('gantry');
    expect(data.readUInt32BE(16)).toBe(0);
    expect(data.readUInt32BE(20)).toBe(6);
    expect(data.subarray(24, 30).toString()).toBe('sha256');
    expect(data.readUInt32BE(30)).toBe(32);
    expect(data.length).toBe(34 + 32);
    expect(Buffer.from(sshSigSignedData('hi', 'gantry')).subarray(24, 30).toString()).toBe('sha512');
  });
});

describe('public keys', () => {
  it.each([
    ['ed25519', () => alice, 'ssh-ed25519'],
    ['ecdsa-p256', () => aliceEc, 'ecdsa-sha2-nistp256'],
  ])('reads an ssh-keygen %s .pub file with the fingerprint ssh-keygen prints', (_n, keyOf, type) => {
    const key = keyOf();
    const parsed = parsePublicKey(readFileSync(key.pub, 'utf8'));
    expect(parsed).toEqual({ ok: true, value: { type, base64: key.line.split(' ')[1], text: key.line, fingerprint: key.fingerprint } });
  });

  it('refuses RSA and ECDSA P-384 keys, naming the type and saying to use ed25519', () => {
    const p384 = keygen('p384', 'ecdsa384');
    for (const [key, type] of [[rsa, 'ssh-rsa'], [p384, 'ecdsa-sha2-nistp384']] as const) {
      const parsed = parsePublicKey(readFileSync(key.pub, 'utf8'));
      expect(parsed).toEqual({ ok: false, problem: expect.stringMatching(new RegExp(`unsupported key type ${type}.*ed25519`)) });
    }
  });

  it('refuses a key whose text type does not match its blob, bad base64, a truncated blob and trailing bytes', () => {
    const b64 = alice.line.split(' ')[1]!;
    const blob = Buffer.from(b64, 'base64');
    const cases: [string, RegExp][] = [
      [`ecdsa-sha2-nistp256 ${b64}`, /says ecdsa-sha2-nistp256 but its blob holds a ssh-ed25519 key/],
      [`ssh-ed25519 ${b64.slice(0, -1)}`, /not valid base64/],
      [`ssh-ed25519 ${b64.replace(/A/, '*')}`, /not valid base64/],
      [`ssh-ed25519 ${blob.subarray(0, blob.length - 3).toString('base64')}`, /malformed/],
      [`ssh-ed25519 ${Buffer.concat([blob, Buffer.from([0])]).toString('base64')}`, /trailing bytes/],
      ['ssh-ed25519', /no base64 part/],
      ['', /empty/],
      [`ssh-ed25519 ${'A'.repeat(20_000)}`, /longer than/],
    ];
    for (const [text, problem] of cases) expect(parsePublicKey(text)).toEqual({ ok: false, problem: expect.stringMatching(problem) });
    const ecBlob = Buffer.from(aliceEc.line.split(' ')[1]!, 'base64');
    ecBlob[ecBlob.length - 1] = ecBlob[ecBlob.length - 1]! ^ 1; // no longer a point on the curve
    expect(parsePublicKey(`ecdsa-sha2-nistp256 ${ecBlob.toString('base64')}`)).toEqual({ ok: false, problem: expect.stringContaining('not a point on the curve') });
  });
});

describe('allowed signers files', () => {
  it('reads the lines git and ssh-keygen use, with namespaces, valid-after and valid-before, and ssh-keygen agrees with the file', () => {
    const text = [
      '# gantry approvers (gpg.ssh.allowedSignersFile)',
      `alice@example.com ${alice.line} alice@laptop`,
      '',
      `bob@example.com,robert@example.com namespaces="git,gantry" ${aliceEc.line}`,
      `"carol@example.com" valid-after="20240101",valid-before="20301231235959Z" ${bob.line} carol's key`,
      `dave@example.com NAMESPACES="gantry",valid-after="202402291230Z" ${bob.line}\r`,
    ].join('\n');
    const { signers, problems } = parseAllowedSigners(text);
    expect(problems).toEqual([]);
    expect(signers).toEqual([
      { principals: ['alice@example.com'], key: expect.objectContaining({ text: alice.line, fingerprint: alice.fingerprint }), line: 2 },
      { principals: ['bob@example.com', 'robert@example.com'], key: expect.objectContaining({ text: aliceEc.line }), namespaces: ['git', 'gantry'], line: 4 },
      {
        principals: ['carol@example.com'],
        key: expect.objectContaining({ fingerprint: bob.fingerprint }),
        validAfter: '2024-01-01T00:00:00.000Z',
        validBefore: '2030-12-31T23:59:59.000Z',
        line: 5,
      },
      { principals: ['dave@example.com'], key: expect.objectContaining({ fingerprint: bob.fingerprint }), namespaces: ['gantry'], validAfter: '2024-02-29T12:30:00.000Z', line: 6 },
    ]);
    // The same file works for ssh-keygen itself.
    const file = tempFile(text);
    const sig = tempFile(sshKeygenSign(aliceEc, MESSAGE));
    const r = run('ssh-keygen', ['-Y', 'verify', '-f', file, '-I', 'robert@example.com', '-n', 'gantry', '-s', sig], { input: MESSAGE });
    expect(r.stdout).toContain('Good "gantry" signature for robert@example.com');
    const found = run('ssh-keygen', ['-Y', 'find-principals', '-f', file, '-n', 'gantry', '-s', sig]);
    expect(found.stdout.trim().split('\n')).toEqual(['bob@example.com', 'robert@example.com']);
  });

  it('reports cert-authority, garbage and bad options with their line numbers and the fix, and keeps the good lines', () => {
    const text = [
      `alice@example.com ${alice.line}`,
      `*@example.com cert-authority ${alice.line}`,
      'this is not a key line',
      `bob@example.com namespaces=gantry ${bob.line}`,
      `bob@example.com valid-after="20241301" ${bob.line}`,
      `bob@example.com valid-after="20250101Z",valid-before="20240101Z" ${bob.line}`,
      `bob@example.com ${readFileSync(rsa.pub, 'utf8').trim()}`,
      `bob@example.com ssh-ed25519 AAAAnotbase64!`,
      alice.line,
      `bob@example.com restrict ${bob.line}`,
      `"bob@example.com ${bob.line}`,
      `bob@example.com namespaces="" ${bob.line}`,
    ].join('\n');
    const { signers, problems } = parseAllowedSigners(text);
    expect(signers.map((s) => s.line)).toEqual([1]);
    expect(problems).toEqual([
      expect.stringMatching(/^line 2: cert-authority is not supported.*list each person's own public key/),
      expect.stringMatching(/^line 3: unknown option "is".*namespaces=/),
      expect.stringMatching(/^line 4: the value of option namespaces must be in double quotes/),
      expect.stringMatching(/^line 5: valid-after="20241301" is not a time; write YYYYMMDD/),
      expect.stringMatching(/^line 6: valid-before .* is not after valid-after .*fix the dates/),
      expect.stringMatching(/^line 7: unsupported key type ssh-rsa.*ssh-keygen -t ed25519/),
      expect.stringMatching(/^line 8: .*not valid base64.*copy the whole line/),
      expect.stringMatching(/^line 9: the line has a key but no principal/),
      expect.stringMatching(/^line 10: unknown option "restrict"/),
      expect.stringMatching(/^line 11: a double quote is not closed/),
      expect.stringMatching(/^line 12: option namespaces needs a value/),
    ]);
    for (const p of problems) expect(p.length).toBeLessThanOrEqual(220);
  });

  it('bounds its work on huge or hostile input', () => {
    expect(parseAllowedSigners('x'.repeat(2 * 1024 * 1024)).problems).toEqual([expect.stringContaining('longer than')]);
    const many = parseAllowedSigners('junk\n'.repeat(500));
    expect(many.problems).toHaveLength(51);
    expect(many.problems[50]).toBe('… and 450 more lines with problems');
    expect(parseAllowedSigners(undefined as unknown as string).problems).toHaveLength(1);
  });
});
