/**
 * The worker's release signer: an SSHSIG signature (the `ssh-keygen -Y sign` format, sha512) made with the
 * worker's own SSH key, for release manifests (namespace `gantry-release`, so a manifest signature can never
 * pass for a signed decision, namespace `gantry`, or the other way round).
 *
 * The key is an unencrypted OpenSSH (or PEM) private key of type ssh-ed25519 or ecdsa-sha2-nistp256, given as
 * its text: the caller resolves the worker's secret reference (`announce.signingKey: { file: … }` or
 * `{ env: … }`) and passes what it holds. The worker signs unattended, so there is no passphrase and no agent.
 * Every signature is verified with src/shared/sshsig.ts before it is handed out.
 */
import { p256 } from '@noble/curves/p256';
import { utils, type ParsedKey } from 'ssh2';
import { armorSshSignature, parsePublicKey, sshSigSignedData, SSHSIG_MAX_MESSAGE_BYTES, verifySshSignature, type SshPublicKey } from '../shared/sshsig';

export const RELEASE_SIG_NAMESPACE = 'gantry-release';
const HASH = 'sha512' as const;

export class ReleaseSigningError extends Error {
  override readonly name = 'ReleaseSigningError';
}

export interface ReleaseSigner {
  publicKey: SshPublicKey;
  /** Armored SSHSIG over the UTF-8 bytes of `message`, namespace {@link RELEASE_SIG_NAMESPACE}, ending with `\n`. */
  sign(message: string): string;
}

/** A signer over a private key's text; `what` names where it came from in messages (never the key). */
export function releaseSigner(keyText: string, what: string): ReleaseSigner {
  if (!/PRIVATE KEY-----/.test(keyText)) {
    throw new ReleaseSigningError(`${what} does not hold a private key: the worker signs release manifests itself, so it needs the private key ` +
      '(unencrypted, readable only by the worker user, e.g. made with `ssh-keygen -t ed25519 -N ""`), not a .pub.');
  }
  const parsed = utils.parseKey(keyText) as ParsedKey | ParsedKey[] | Error;
  if (parsed instanceof Error) {
    if (/passphrase|encrypted/i.test(parsed.message)) {
      throw new ReleaseSigningError(`${what} is encrypted with a passphrase; the worker signs unattended and cannot ask for one. ` +
        'Give it a key without a passphrase (`ssh-keygen -p -N "" -f <file>` removes it), readable only by the worker user.');
    }
    throw new ReleaseSigningError(`${what} is not a readable private key (${parsed.message}); give an OpenSSH ed25519 key (ssh-keygen -t ed25519).`);
  }
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key || !key.isPrivateKey()) throw new ReleaseSigningError(`${what} holds no private key; give an OpenSSH ed25519 key (ssh-keygen -t ed25519).`);
  const pub = key.type === 'ssh-ed25519' || key.type === 'ecdsa-sha2-nistp256' ? parsePublicKey(`${key.type} ${key.getPublicSSH().toString('base64')}`) : undefined;
  if (!pub?.ok) throw new ReleaseSigningError(`${what} is a ${key.type} key; release manifests are signed with ssh-ed25519 or ecdsa-sha2-nistp256 keys (ssh-keygen -t ed25519).`);
  const publicKey = pub.value;
  const blob = new Uint8Array(Buffer.from(publicKey.base64, 'base64'));

  return {
    publicKey,
    sign(message: string): string {
      const size = Buffer.byteLength(message, 'utf8');
      if (size > SSHSIG_MAX_MESSAGE_BYTES) throw new ReleaseSigningError(`the manifest is ${size} bytes; at most ${SSHSIG_MAX_MESSAGE_BYTES} are signed`);
      const raw = key.sign(Buffer.from(sshSigSignedData(message, RELEASE_SIG_NAMESPACE, HASH))) as Buffer | Error;
      if (raw instanceof Error) throw new ReleaseSigningError(`signing with ${what} failed (${raw.message})`);
      // Node's crypto (under ssh2) gives ed25519 signatures raw and ECDSA ones DER-encoded; SSH wants mpint r, mpint s.
      const sigBytes = publicKey.type === 'ssh-ed25519' ? new Uint8Array(raw) : ecdsaDerToSsh(raw);
      const armored = armorSshSignature(blob, RELEASE_SIG_NAMESPACE, HASH, Buffer.concat([wire(Buffer.from(publicKey.type)), wire(sigBytes)]));
      const check = verifySshSignature(armored, message, RELEASE_SIG_NAMESPACE);
      if (!check.ok || check.value.key.base64 !== publicKey.base64) {
        throw new ReleaseSigningError(`the signature made with ${what} does not verify (${check.ok ? 'it names another key' : check.problem})`);
      }
      return armored;
    },
  };
}

function wire(b: Uint8Array): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(b.length, 0);
  return Buffer.concat([len, b]);
}

/** SSH mpint of a non-negative integer: big-endian, minimal, with a 0 byte in front when the top bit is set. */
function mpintOf(n: bigint): Buffer {
  if (n === 0n) return Buffer.alloc(0);
  const hex = n.toString(16);
  const bytes = Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex');
  return (bytes[0] ?? 0) & 0x80 ? Buffer.concat([Buffer.from([0]), bytes]) : bytes;
}

function ecdsaDerToSsh(der: Uint8Array): Uint8Array {
  const sig = p256.Signature.fromBytes(der, 'der');
  return Buffer.concat([wire(mpintOf(sig.r)), wire(mpintOf(sig.s))]);
}
