/**
 * Signing statements with the person's SSH key, on the CLI side: an unencrypted key file, or a key held by
 * ssh-agent. The output is an SSHSIG signature (`ssh-keygen -Y sign -n gantry` form, sha512) that
 * src/shared/sshsig.ts verifies in the workflow, and that `ssh-keygen -Y verify` accepts too.
 *
 * Which key (first match wins):
 * 1. `keyFile` (--key FILE, else GANTRY_SIGNING_KEY): a private key file, or a `.pub` whose private half is in
 *    ssh-agent (SSH_AUTH_SOCK).
 * 2. ssh-agent, when it holds exactly one ed25519 / ecdsa-p256 key (several: the person must choose).
 * 3. ~/.ssh/id_ed25519, then ~/.ssh/id_ecdsa.
 */
import { createPublicKey, verify } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { OpenSSHAgent, utils, type ParsedKey } from 'ssh2';
import {
  armorSshSignature,
  GANTRY_SIG_NAMESPACE,
  parsePublicKey,
  sshSigSignedData,
  SSHSIG_MAX_MESSAGE_BYTES,
  verifySshSignature,
  type SignatureCheck,
  type SshPublicKey,
} from '../shared/sshsig';

export class SigningError extends Error {
  override readonly name = 'SigningError';
}

export interface StatementSigner {
  publicKey: SshPublicKey;
  /** e.g. "ssh-agent key SHA256:… (alice@laptop)" or "key file /home/alice/.ssh/id_ed25519" */
  source: string;
  /** armored SSHSIG over message, namespace 'gantry', hash sha512 */
  sign(message: string): Promise<string>;
}

const SUPPORTED = ['ssh-ed25519', 'ecdsa-sha2-nistp256'];
const HASH = 'sha512' as const;
const MAX_KEY_FILE_BYTES = 64 * 1024;
const NO_KEY =
  'No signing key: pass --key FILE (your SSH private key, or its .pub when the key is in ssh-agent), set GANTRY_SIGNING_KEY, or load a key into ssh-agent.';
const USE_ED25519 = 'create one with `ssh-keygen -t ed25519` and add its .pub to the allowed signers';

export async function openSigner(opts: { keyFile?: string; env?: NodeJS.ProcessEnv }): Promise<StatementSigner> {
  const env = opts.env ?? process.env;
  const keyFile = nonEmpty(opts.keyFile) ?? nonEmpty(env.GANTRY_SIGNING_KEY);
  const sock = nonEmpty(env.SSH_AUTH_SOCK);
  if (keyFile) return fromKeyFile(path.resolve(expandHome(keyFile, env)), sock);

  let agentTrouble: string | undefined;
  if (sock) {
    const listed = await agentIdentities(sock).then(
      (keys) => ({ keys }),
      (err: unknown) => ({ err: errorText(err) }),
    );
    if ('err' in listed) {
      agentTrouble = `ssh-agent at SSH_AUTH_SOCK=${sock} did not answer (${listed.err})`;
    } else {
      const usable = listed.keys.flatMap((k) => {
        const pub = publicKeyOf(k);
        return pub ? [{ parsed: k, pub }] : [];
      });
      if (usable.length === 1) {
        const only = usable[0]!;
        return agentSigner(sock, only.parsed, only.pub);
      }
      if (usable.length > 1) {
        const list = usable.map((u) => `  ${u.pub.fingerprint} ${u.pub.type}${u.parsed.comment ? ` (${u.parsed.comment})` : ''}`).join('\n');
        throw new SigningError(
          `ssh-agent holds ${usable.length} keys that can sign:\n${list}\n` +
            'Choose one with --key <file.pub> (the public key file of the one to use) or set GANTRY_SIGNING_KEY to it.',
        );
      }
    }
  }

  const home = nonEmpty(env.HOME);
  if (home) {
    for (const name of ['id_ed25519', 'id_ecdsa']) {
      const file = path.join(home, '.ssh', name);
      if (await isFile(file)) return fromKeyFile(file, sock);
    }
  }
  throw new SigningError(agentTrouble ? `${NO_KEY} (${agentTrouble}.)` : NO_KEY);
}

async function fromKeyFile(file: string, sock: string | undefined): Promise<StatementSigner> {
  let text: string;
  try {
    const info = await stat(file);
    if (!info.isFile()) throw new SigningError(`Signing key ${file} is not a file: pass your SSH private key file, or its .pub when the key is in ssh-agent.`);
    if (info.size > MAX_KEY_FILE_BYTES) throw new SigningError(`Signing key ${file} is ${info.size} bytes, too large for an SSH key: pass your SSH private key file, or its .pub.`);
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (err instanceof SigningError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new SigningError(`Signing key ${file} does not exist: check the path given with --key or GANTRY_SIGNING_KEY.`);
    throw new SigningError(`Cannot read signing key ${file} (${errorText(err)}): check its permissions, or pass another key with --key.`);
  }

  if (/PRIVATE KEY-----/.test(text)) return fromPrivateKey(file, text);

  const line = text.split('\n').map((l) => l.trim()).find((l) => l !== '' && !l.startsWith('#')) ?? '';
  const pub = parsePublicKey(line);
  if (!pub.ok) {
    throw new SigningError(
      `Signing key ${file} is neither an OpenSSH private key nor a public key (${pub.problem}). ` +
        'Pass your SSH private key file, or its .pub when the key is in ssh-agent.',
    );
  }
  const fp = pub.value.fingerprint;
  if (!sock) {
    throw new SigningError(
      `${file} is a public key (${fp}), so gantry signs through ssh-agent, but SSH_AUTH_SOCK is not set. ` +
        `Start an agent (eval "$(ssh-agent)") and \`ssh-add\` the private key, or pass the private key file with --key.`,
    );
  }
  let keys: ParsedKey[];
  try {
    keys = await agentIdentities(sock);
  } catch (err) {
    throw new SigningError(
      `${file} is a public key (${fp}), but ssh-agent at SSH_AUTH_SOCK=${sock} did not answer (${errorText(err)}). ` +
        'Check that the agent is running, or pass the private key file with --key.',
    );
  }
  const held = keys.find((k) => k.getPublicSSH().toString('base64') === pub.value.base64);
  if (!held) {
    throw new SigningError(
      `The key ${fp} of ${file} is not in ssh-agent (SSH_AUTH_SOCK=${sock}; it holds ${keys.length} keys). ` +
        `Load it with \`ssh-add ${privateHalfOf(file)}\`, or pass the private key file with --key.`,
    );
  }
  return agentSigner(sock, held, pub.value);
}

function fromPrivateKey(file: string, text: string): StatementSigner {
  const parsed = utils.parseKey(text) as ParsedKey | ParsedKey[] | Error;
  if (parsed instanceof Error) {
    if (/passphrase|encrypted/i.test(parsed.message)) {
      throw new SigningError(
        `Signing key ${file} is encrypted with a passphrase, and gantry does not ask for passphrases. ` +
          `Load it into ssh-agent with \`ssh-add ${file}\`, then pass its public key: --key ${file}.pub (or GANTRY_SIGNING_KEY=${file}.pub).`,
      );
    }
    throw new SigningError(`Cannot read the private key ${file} (${parsed.message}). Pass an OpenSSH private key (ssh-keygen -t ed25519), or its .pub when the key is in ssh-agent.`);
  }
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key || !key.isPrivateKey()) throw new SigningError(`${file} holds no private key. Pass an OpenSSH private key, or its .pub when the key is in ssh-agent.`);
  const pub = publicKeyOf(key);
  if (!pub) throw new SigningError(`The key in ${file} is of type ${key.type}, which gantry does not accept: ${USE_ED25519}.`);
  return makeSigner(pub, `key file ${file}`, async (data) => {
    const out = key.sign(Buffer.from(data)) as Buffer | Error;
    if (out instanceof Error) throw new SigningError(`Signing with ${file} failed (${out.message}). Check the key file, or load the key into ssh-agent and pass its .pub.`);
    // ssh2 signs with Node's crypto: raw 64 bytes for ed25519, DER (SEQUENCE { r, s }) for ECDSA.
    return pub.type === 'ssh-ed25519' ? new Uint8Array(out) : derEcdsaToSsh(out);
  });
}

function agentSigner(sock: string, key: ParsedKey, pub: SshPublicKey): StatementSigner {
  const label = `ssh-agent key ${pub.fingerprint}${key.comment ? ` (${key.comment})` : ''}`;
  return makeSigner(pub, label, (data) =>
    new Promise<Uint8Array>((resolve, reject) => {
      // ssh2 returns the signature bytes with the signature type stripped; for ECDSA they are mpint r ‖ mpint s.
      new OpenSSHAgent(sock).sign(key, Buffer.from(data), (err, sig) => {
        if (err || !sig) {
          reject(
            new SigningError(
              `ssh-agent (SSH_AUTH_SOCK=${sock}) refused to sign with ${pub.fingerprint} (${err ? errorText(err) : 'no signature'}). ` +
                'If the key was added with confirmation (ssh-add -c), approve the prompt; otherwise check the agent is running and the key is loaded (ssh-add -l).',
            ),
          );
        } else {
          resolve(new Uint8Array(sig));
        }
      });
    }),
  );
}

/** Wrap a raw signer (signed data → signature bytes) into the SSHSIG form, checked before it is handed out. */
function makeSigner(pub: SshPublicKey, source: string, rawSign: (data: Uint8Array) => Promise<Uint8Array>): StatementSigner {
  const blob = new Uint8Array(Buffer.from(pub.base64, 'base64'));
  return {
    publicKey: pub,
    source,
    async sign(message: string): Promise<string> {
      const size = Buffer.byteLength(message, 'utf8');
      if (size > SSHSIG_MAX_MESSAGE_BYTES) throw new SigningError(`The statement is ${size} bytes; gantry signs at most ${SSHSIG_MAX_MESSAGE_BYTES}. Shorten the reason.`);
      const sigBytes = await rawSign(sshSigSignedData(message, GANTRY_SIG_NAMESPACE, HASH));
      const armored = armorSshSignature(blob, GANTRY_SIG_NAMESPACE, HASH, concat([sshString(Buffer.from(pub.type)), sshString(sigBytes)]));
      const check = verifySshSignature(armored, message, GANTRY_SIG_NAMESPACE, NODE_SIGNATURE_CHECK);
      if (!check.ok || check.value.key.base64 !== pub.base64) {
        throw new SigningError(
          `The signature made with ${source} does not verify (${check.ok ? 'it names another key' : check.problem}). ` +
            'This is a bug in gantry or the agent; sign with an ed25519 key file (--key ~/.ssh/id_ed25519) meanwhile.',
        );
      }
      return armored;
    },
  };
}

function publicKeyOf(key: ParsedKey): SshPublicKey | undefined {
  if (!SUPPORTED.includes(key.type)) return undefined;
  const parsed = parsePublicKey(`${key.type} ${key.getPublicSSH().toString('base64')}`);
  return parsed.ok ? parsed.value : undefined;
}

function agentIdentities(sock: string): Promise<ParsedKey[]> {
  return new Promise((resolve, reject) => {
    new OpenSSHAgent(sock).getIdentities((err, keys) => {
      if (err) reject(err);
      // OpenSSHAgent lists parsed keys (the typing also allows { pubKey } entries, which it never returns).
      else resolve((keys ?? []).filter((k): k is ParsedKey => typeof (k as Partial<ParsedKey>).getPublicSSH === 'function'));
    });
  });
}

/**
 * The check of each signature before it is sent, with Node's own crypto: the same framing as the workflow reads
 * (src/shared/sshsig.ts), without computing the pure-JS curves' tables, which cost a command ~0.1 s of start-up.
 */
export const NODE_SIGNATURE_CHECK: SignatureCheck = {
  ed25519: (sig, signed, pk) =>
    verify(null, signed, createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: base64url(pk) }, format: 'jwk' }), sig),
  p256: (rs, signed, q) => q.length === 65 && q[0] === 4 &&
    verify('sha256', signed, {
      key: createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: base64url(q.subarray(1, 33)), y: base64url(q.subarray(33)) }, format: 'jwk' }),
      dsaEncoding: 'ieee-p1363',
    }, rs),
};

function base64url(b: Uint8Array): string {
  return Buffer.from(b).toString('base64url');
}

/** DER ECDSA signature → SSH form: mpint r ‖ mpint s. */
function derEcdsaToSsh(der: Uint8Array): Uint8Array {
  let sig: { r: bigint; s: bigint };
  try {
    // Loaded only for an ECDSA key file: every other signer skips the curve's start-up.
    const { p256 } = require('@noble/curves/p256') as typeof import('@noble/curves/p256');
    sig = p256.Signature.fromBytes(der, 'der');
  } catch (err) {
    throw new SigningError(`The ECDSA signature from the key file could not be read (${errorText(err)}). Load the key into ssh-agent and pass its .pub instead.`);
  }
  return concat([sshString(mpint(sig.r)), sshString(mpint(sig.s))]);
}

/** Minimal two's-complement big-endian bytes of a non-negative integer, as SSH's mpint wants them. */
function mpint(n: bigint): Uint8Array {
  if (n === 0n) return new Uint8Array(0);
  let hex = n.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  const bytes = Buffer.from(hex, 'hex');
  return (bytes[0] ?? 0) & 0x80 ? concat([new Uint8Array([0]), bytes]) : new Uint8Array(bytes);
}

function sshString(b: Uint8Array): Uint8Array {
  const out = Buffer.alloc(4 + b.length);
  out.writeUInt32BE(b.length, 0);
  out.set(b, 4);
  return new Uint8Array(out);
}

function concat(parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

function privateHalfOf(pubFile: string): string {
  return pubFile.endsWith('.pub') ? pubFile.slice(0, -4) : '<private key file>';
}

function expandHome(file: string, env: NodeJS.ProcessEnv): string {
  const home = nonEmpty(env.HOME);
  return home && (file === '~' || file.startsWith('~/')) ? path.join(home, file.slice(1)) : file;
}

async function isFile(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}

function nonEmpty(v: string | undefined): string | undefined {
  return v !== undefined && v.trim() !== '' ? v : undefined;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
