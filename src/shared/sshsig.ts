/**
 * SSH signatures: the SSHSIG format that `ssh-keygen -Y sign` writes and git uses for SSH-signed commits
 * (OpenSSH's PROTOCOL.sshsig), the public key text of authorized_keys / `*.pub`, and the ALLOWED SIGNERS file
 * of ssh-keygen(1). Supported key types: ssh-ed25519 and ecdsa-sha2-nistp256.
 *
 * The workflow imports this module, so it is pure and deterministic: no Node builtins, no Buffer, no I/O, no
 * clock, no randomness. No function here throws: bad input of any kind comes back as `{ ok: false, problem }`
 * (or as a problem in a list), with a short text that never echoes large input. The work is bounded: armored
 * signatures over 16 KiB and messages over 64 KiB are refused before anything is decoded or hashed.
 */
import { ed25519 } from '@noble/curves/ed25519';
import { p256 } from '@noble/curves/p256';
import { sha256, sha512 } from '@noble/hashes/sha2';

export const GANTRY_SIG_NAMESPACE = 'gantry';

/** Longest armored signature accepted, in characters. A real one is well under 1 KiB. */
export const SSHSIG_MAX_ARMOR_CHARS = 16 * 1024;
/** Longest message accepted for verification, in UTF-8 bytes. */
export const SSHSIG_MAX_MESSAGE_BYTES = 64 * 1024;
/** Longest public key text accepted, in characters. */
const MAX_KEY_TEXT_CHARS = 16 * 1024;
/** Longest allowed signers text accepted, in characters, and most problems listed for it. */
const MAX_ALLOWED_SIGNERS_CHARS = 1024 * 1024;
const MAX_PROBLEMS = 50;

export type Parsed<T> = { ok: true; value: T } | { ok: false; problem: string };

export interface SshPublicKey {
  /** OpenSSH key type: 'ssh-ed25519' or 'ecdsa-sha2-nistp256' (others are refused with a message naming the type and saying to use ed25519) */
  type: string;
  /** base64 of the wire-format public key blob, as in authorized_keys */
  base64: string;
  /** "ssh-ed25519 AAAA…" (type + base64, no comment) */
  text: string;
  /** "SHA256:…" exactly as `ssh-keygen -l -E sha256` prints it (unpadded base64 of sha256(blob)) */
  fingerprint: string;
}

export interface AllowedSigner {
  /** As written; ssh-keygen treats them as patterns (`*@example.com`), gantry's callers compare them as names. */
  principals: string[];
  key: SshPublicKey;
  /** from namespaces="a,b" */
  namespaces?: string[];
  /**
   * From valid-after= / valid-before= (YYYYMMDD[HHMM[SS]][Z]), as ISO 8601 UTC in the shape of
   * `Date.prototype.toISOString()` ("2024-01-31T12:00:00.000Z"). ssh-keygen reads a time without Z as local
   * time; gantry runs on servers of any time zone, so it reads such a time as UTC too. Write the Z to be exact.
   */
  validAfter?: string;
  validBefore?: string;
  /** 1-based line number in the text */
  line: number;
}

const ED25519 = 'ssh-ed25519';
const ECDSA_P256 = 'ecdsa-sha2-nistp256';
const SUPPORTED_TYPES: readonly string[] = [ED25519, ECDSA_P256];
const ARMOR_BEGIN = '-----BEGIN SSH SIGNATURE-----';
const ARMOR_END = '-----END SSH SIGNATURE-----';
const ARMOR_LINE = 70; // ssh-keygen wraps the base64 at 70 columns
const MAGIC = [0x53, 0x53, 0x48, 0x53, 0x49, 0x47]; // "SSHSIG"
const FIX_TYPE = 'use an ed25519 key (ssh-keygen -t ed25519)';

// ---------------------------------------------------------------------------------------------------------
// Public keys

/** "type base64 [comment]" → key; checks that the blob's embedded type equals the text type and the blob is well-formed. */
export function parsePublicKey(text: string): Parsed<SshPublicKey> {
  try {
    if (typeof text !== 'string') return fail('the public key is not text');
    if (text.length > MAX_KEY_TEXT_CHARS) return fail(`the public key text is longer than ${MAX_KEY_TEXT_CHARS} characters; pass one "type base64 [comment]" line`);
    const fields = text.trim().split(/\s+/);
    const [type, b64] = fields;
    if (!type) return fail('the public key is empty; expected "ssh-ed25519 AAAA… [comment]"');
    if (!b64) return fail(`the public key has no base64 part after "${show(type)}"; expected "ssh-ed25519 AAAA… [comment]"`);
    if (!SUPPORTED_TYPES.includes(type)) return fail(unsupported(type));
    const blob = base64Decode(b64);
    if (!blob) return fail(`the ${type} public key's base64 is not valid base64`);
    return keyFromBlob(blob, type);
  } catch {
    return fail('the public key could not be read');
  }
}

/** Check a wire-format public key blob and describe it. `expectType`: the type the text said it is. */
function keyFromBlob(blob: Uint8Array, expectType?: string): Parsed<SshPublicKey> {
  const r = new Reader(blob);
  const typeBytes = r.string();
  if (!typeBytes) return fail('the public key blob is truncated (no key type)');
  const type = latin1(typeBytes);
  if (expectType !== undefined && type !== expectType) {
    return fail(`the public key text says ${show(expectType)} but its blob holds a ${show(type)} key; copy the whole line from the .pub file`);
  }
  if (type === ED25519) {
    const pk = r.string();
    if (!pk || pk.length !== 32) return fail('the ssh-ed25519 public key blob is malformed (the key is not 32 bytes)');
  } else if (type === ECDSA_P256) {
    const curve = r.string();
    if (!curve || latin1(curve) !== 'nistp256') return fail('the ecdsa-sha2-nistp256 public key blob is malformed (curve is not nistp256)');
    const q = r.string();
    if (!q || q.length !== 65 || q[0] !== 0x04) return fail('the ecdsa-sha2-nistp256 public key blob is malformed (the point is not 65 uncompressed bytes)');
    try {
      p256.Point.fromBytes(q).assertValidity();
    } catch {
      return fail('the ecdsa-sha2-nistp256 public key is not a point on the curve');
    }
  } else {
    return fail(unsupported(type));
  }
  if (!r.done()) return fail(`the ${type} public key blob has trailing bytes`);
  const base64 = base64Encode(blob);
  return { ok: true, value: { type, base64, text: `${type} ${base64}`, fingerprint: fingerprintOf(blob) } };
}

function fingerprintOf(blob: Uint8Array): string {
  return `SHA256:${base64Encode(sha256(blob)).replace(/=+$/, '')}`;
}

function unsupported(type: string): string {
  return `unsupported key type ${show(type)}: gantry accepts ssh-ed25519 and ecdsa-sha2-nistp256 keys; ${FIX_TYPE}`;
}

// ---------------------------------------------------------------------------------------------------------
// Allowed signers

/** The ALLOWED SIGNERS format of ssh-keygen(1) / git's gpg.ssh.allowedSignersFile: `principals [options] keytype base64 [comment]`; '#' comments and blank lines skipped; principals comma-separated (quoted allowed); options: namespaces, valid-after, valid-before; `cert-authority` is reported as a problem (not supported: list each person's own key). Every problem names the line number and the fix. */
export function parseAllowedSigners(text: string): { signers: AllowedSigner[]; problems: string[] } {
  const signers: AllowedSigner[] = [];
  const problems: string[] = [];
  try {
    if (typeof text !== 'string') return { signers, problems: ['the allowed signers are not text; give the contents of an allowed_signers file'] };
    if (text.length > MAX_ALLOWED_SIGNERS_CHARS) {
      return { signers, problems: [`the allowed signers text is longer than ${MAX_ALLOWED_SIGNERS_CHARS} characters; list one line per key, nothing else`] };
    }
    const lines = text.split('\n');
    let more = 0;
    for (let i = 0; i < lines.length; i++) {
      const parsed = parseSignerLine((lines[i] ?? '').replace(/\r$/, ''), i + 1);
      if (parsed === null) continue;
      if (parsed.ok) signers.push(parsed.value);
      else if (problems.length < MAX_PROBLEMS) problems.push(`line ${i + 1}: ${parsed.problem}`);
      else more++;
    }
    if (more > 0) problems.push(`… and ${more} more lines with problems`);
  } catch {
    problems.push('the allowed signers could not be read');
  }
  return { signers, problems };
}

const LINE_FORMAT = 'write "principal[,principal…] [namespaces="gantry"] ssh-ed25519 AAAA… [comment]"';

interface SignerOptions {
  namespaces?: string[];
  validAfter?: string;
  validBefore?: string;
}

function parseSignerLine(raw: string, line: number): Parsed<AllowedSigner> | null {
  let s = raw.trim();
  if (s === '' || s.startsWith('#')) return null;

  const principalsTok = takeToken(s);
  if (!principalsTok.ok) return principalsTok;
  s = principalsTok.value.rest;
  const first = principalsTok.value.token;
  if (looksLikeKeyType(first) && /^AAAA/.test(s)) return fail(`the line has a key but no principal before it; ${LINE_FORMAT}`);
  const principals = dequote(first).split(',').map((p) => p.trim());
  if (principals.some((p) => p === '')) return fail(`empty principal in "${show(dequote(first))}"; ${LINE_FORMAT}`);
  if (s === '') return fail(`no key after the principals; ${LINE_FORMAT}`);

  let options: SignerOptions = {};
  const firstWord = s.split(/\s/, 1)[0] ?? '';
  if (!looksLikeKeyType(firstWord)) {
    const optsTok = takeToken(s);
    if (!optsTok.ok) return optsTok;
    s = optsTok.value.rest;
    const opts = parseOptions(optsTok.value.token);
    if (!opts.ok) return opts;
    options = opts.value;
    if (s === '') return fail(`no key after the options; ${LINE_FORMAT}`);
  }
  const [type, b64] = s.split(/\s+/);
  if (!type || !looksLikeKeyType(type)) return fail(`expected a key type such as ssh-ed25519, found "${show(type ?? '')}"; ${LINE_FORMAT}`);
  if (!SUPPORTED_TYPES.includes(type)) return fail(unsupported(type));
  if (!b64) return fail(`the ${type} key has no base64 part; copy the whole line of the person's .pub file`);
  const key = parsePublicKey(`${type} ${b64}`);
  if (!key.ok) return fail(`${key.problem}; copy the whole line of the person's .pub file`);
  const { validAfter, validBefore } = options;
  if (validAfter !== undefined && validBefore !== undefined && validBefore <= validAfter) {
    return fail(`valid-before (${validBefore}) is not after valid-after (${validAfter}), so the key is never valid; fix the dates`);
  }
  return { ok: true, value: { principals, key: key.value, ...options, line } };
}

function looksLikeKeyType(word: string): boolean {
  return /^(ssh-|ecdsa-|sk-|rsa-sha2-|x509v3-)[A-Za-z0-9@._-]+$/.test(word);
}

/** One whitespace-delimited token, as written (quotes kept); double-quoted parts may hold spaces. */
function takeToken(s: string): Parsed<{ token: string; rest: string }> {
  let quoted = false;
  let i = 0;
  for (; i < s.length; i++) {
    const c = s[i];
    if (c === '"') quoted = !quoted;
    else if (!quoted && (c === ' ' || c === '\t')) break;
  }
  if (quoted) return fail('a double quote is not closed; close it or remove it');
  return { ok: true, value: { token: s.slice(0, i), rest: s.slice(i).trim() } };
}

function dequote(token: string): string {
  return token.replaceAll('"', '');
}

/** `namespaces="a,b",valid-after="…",valid-before="…"`: comma-separated, values in double quotes as ssh-keygen wants them. */
function parseOptions(token: string): Parsed<SignerOptions> {
  const out: SignerOptions = {};
  const seen = new Set<string>();
  let i = 0;
  while (i < token.length) {
    const nameMatch = /^[A-Za-z0-9_-]*/.exec(token.slice(i));
    const name = (nameMatch?.[0] ?? '').toLowerCase();
    i += nameMatch?.[0].length ?? 0;
    if (name === '') return fail(`cannot read the options "${show(token)}"; write them like namespaces="gantry",valid-after="20250101Z"`);
    let value: string | undefined;
    if (token[i] === '=') {
      i++;
      if (token[i] !== '"') return fail(`the value of option ${show(name)} must be in double quotes, like ${show(name)}="…"`);
      const close = token.indexOf('"', i + 1);
      if (close < 0) return fail('a double quote is not closed; close it or remove it');
      value = token.slice(i + 1, close);
      i = close + 1; // takeToken guarantees the quote is closed
    }
    if (i < token.length) {
      if (token[i] !== ',') return fail(`cannot read the options "${show(token)}"; separate them with commas and no spaces`);
      i++;
      if (i === token.length) return fail('the options end with a comma; remove it');
    }
    if (seen.has(name)) return fail(`option ${show(name)} is given twice; keep one`);
    seen.add(name);
    if (name === 'cert-authority') {
      return fail("cert-authority is not supported: gantry checks each person's own key; list each person's own public key instead of the CA");
    }
    if (name !== 'namespaces' && name !== 'valid-after' && name !== 'valid-before') {
      return fail(`unknown option "${show(name)}"; the options are namespaces="…", valid-after="…" and valid-before="…" (or is a key type missing here?)`);
    }
    if (value === undefined || value === '') return fail(`option ${name} needs a value, like ${name}=${name === 'namespaces' ? '"gantry"' : '"20250101Z"'}`);
    if (name === 'namespaces') {
      const list = value.split(',').map((n) => n.trim());
      if (list.some((n) => n === '')) return fail(`namespaces="${show(value)}" has an empty name; write namespaces="gantry" or namespaces="git,gantry"`);
      out.namespaces = list;
    } else {
      const iso = sshTimeToIso(value);
      if (!iso) return fail(`${name}="${show(value)}" is not a time; write YYYYMMDD, YYYYMMDDHHMM or YYYYMMDDHHMMSS, with a Z for UTC (e.g. ${name}="20250131Z")`);
      if (name === 'valid-after') out.validAfter = iso;
      else out.validBefore = iso;
    }
  }
  return { ok: true, value: out };
}

/** YYYYMMDD[HHMM[SS]][Z] → "YYYY-MM-DDTHH:MM:SS.000Z"; a time without Z is read as UTC. */
function sshTimeToIso(v: string): string | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})(\d{2})?)?Z?$/i.exec(v);
  if (!m) return undefined;
  const [, y, mo, d, h = '00', mi = '00', se = '00'] = m;
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  if (year < 1970 || month < 1 || month > 12 || day < 1) return undefined;
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1] ?? 0;
  if (day > days || Number(h) > 23 || Number(mi) > 59 || Number(se) > 59) return undefined;
  return `${y}-${mo}-${d}T${h}:${mi}:${se}.000Z`;
}

// ---------------------------------------------------------------------------------------------------------
// Signatures

/** Verify an armored SSH signature ("-----BEGIN SSH SIGNATURE-----" … ) over `message` (UTF-8 encoded exactly as given) for `namespace`. Checks: armor, magic "SSHSIG", version 1, namespace equal, hash algorithm sha256 or sha512, signature type matches the embedded key type, and the cryptographic signature over the SSHSIG signed data. Returns the embedded public key (the caller then checks it is an allowed key). */
export function verifySshSignature(armored: string, message: string, namespace: string, check: SignatureCheck = CURVES): Parsed<{ key: SshPublicKey; hashAlgorithm: 'sha256' | 'sha512' }> {
  try {
    return verifyUnsafe(armored, message, namespace, check);
  } catch {
    return fail('the signature could not be checked (malformed)');
  }
}

/**
 * The cryptographic check under an SSH signature, once its framing has been read: `signed` is the SSHSIG signed
 * data. The workflow checks with the pure-JS curves ({@link CURVES}: no Node builtins in workflow code); the CLI,
 * which checks each signature it makes before sending it, passes Node's own crypto instead and never computes the
 * curves' tables (src/client/signing.ts).
 */
export interface SignatureCheck {
  /** ed25519 over `signed`: 64-byte signature, 32-byte public key. */
  ed25519(signature: Uint8Array, signed: Uint8Array, publicKey: Uint8Array): boolean;
  /** ECDSA P-256 over SHA-256 of `signed`: 64-byte r ‖ s, 65-byte uncompressed point. */
  p256(rs: Uint8Array, signed: Uint8Array, point: Uint8Array): boolean;
}

export const CURVES: SignatureCheck = {
  ed25519: (sig, signed, pk) => ed25519.verify(sig, signed, pk, { zip215: false }),
  // SSH's ecdsa-sha2-nistp256 signs SHA-256 of the data; OpenSSH does not require low S.
  p256: (rs, signed, q) => p256.verify(rs, sha256(signed), q, { prehash: false, lowS: false, format: 'compact' }),
};

function verifyUnsafe(armored: string, message: string, namespace: string, check: SignatureCheck): Parsed<{ key: SshPublicKey; hashAlgorithm: 'sha256' | 'sha512' }> {
  if (typeof armored !== 'string') return fail('the signature is not text');
  if (typeof message !== 'string') return fail('the signed message is not text');
  if (typeof namespace !== 'string' || namespace === '') return fail('no signature namespace given');
  if (armored.length > SSHSIG_MAX_ARMOR_CHARS) return fail(`the signature is longer than ${SSHSIG_MAX_ARMOR_CHARS / 1024} KiB; a real SSH signature is under 1 KiB`);
  if (message.length > SSHSIG_MAX_MESSAGE_BYTES) return fail(`the signed message is longer than ${SSHSIG_MAX_MESSAGE_BYTES / 1024} KiB`);
  const msg = utf8(message);
  if (msg.length > SSHSIG_MAX_MESSAGE_BYTES) return fail(`the signed message is longer than ${SSHSIG_MAX_MESSAGE_BYTES / 1024} KiB`);

  const blob = dearmor(armored);
  if (!blob.ok) return blob;
  const r = new Reader(blob.value);
  const magic = r.bytes(6);
  if (!magic || !MAGIC.every((b, i) => magic[i] === b)) return fail('not an SSH signature (the SSHSIG magic is missing)');
  const version = r.u32();
  if (version === undefined) return fail('the signature is truncated (no version)');
  if (version !== 1) return fail(`unsupported SSH signature version ${version}; sign with ssh-keygen -Y sign`);
  const keyBlob = r.string();
  if (!keyBlob) return fail('the signature is truncated (no public key)');
  const nsBytes = r.string();
  if (!nsBytes) return fail('the signature is truncated (no namespace)');
  const reserved = r.string();
  if (!reserved) return fail('the signature is truncated (no reserved field)');
  const hashBytes = r.string();
  if (!hashBytes) return fail('the signature is truncated (no hash algorithm)');
  const sigBlob = r.string();
  if (!sigBlob) return fail('the signature is truncated (no signature)');
  if (!r.done()) return fail('the signature has trailing bytes');
  if (reserved.length !== 0) return fail('the signature\'s reserved field is not empty');

  const key = keyFromBlob(keyBlob);
  if (!key.ok) return fail(`the signature's public key: ${key.problem}`);
  if (!bytesEqual(nsBytes, utf8(namespace))) {
    return fail(`the signature is for namespace "${show(latin1(nsBytes))}", not "${show(namespace)}"; sign with -n ${show(namespace)}`);
  }
  const hashAlgorithm = latin1(hashBytes);
  if (hashAlgorithm !== 'sha512' && hashAlgorithm !== 'sha256') return fail(`unsupported signature hash algorithm "${show(hashAlgorithm)}"; use sha512 or sha256`);

  const sr = new Reader(sigBlob);
  const sigTypeBytes = sr.string();
  if (!sigTypeBytes) return fail('the signature blob is truncated (no signature type)');
  const sigType = latin1(sigTypeBytes);
  const sigBytes = sr.string();
  if (!sigBytes) return fail('the signature blob is truncated (no signature bytes)');
  if (!sr.done()) return fail('the signature blob has trailing bytes');
  if (sigType !== key.value.type) return fail(`the signature type ${show(sigType)} does not match the key type ${key.value.type}`);

  const signed = signedData(msg, utf8(namespace), hashAlgorithm);
  const kr = new Reader(keyBlob);
  kr.string(); // type, checked by keyFromBlob
  let good = false;
  if (key.value.type === ED25519) {
    const pk = kr.string();
    if (!pk || sigBytes.length !== 64) return fail('the ssh-ed25519 signature is not 64 bytes');
    good = attempt(() => check.ed25519(sigBytes, signed, pk));
  } else {
    kr.string(); // curve name, checked by keyFromBlob
    const q = kr.string();
    const rs = ecdsaSigToCompact(sigBytes);
    if (!q || !rs) return fail('the ecdsa-sha2-nistp256 signature is malformed (expected mpint r, mpint s)');
    good = attempt(() => check.p256(rs, signed, q));
  }
  if (!good) return fail(`the signature by key ${key.value.fingerprint} does not match the message (changed, or signed by another key)`);
  return { ok: true, value: { key: key.value, hashAlgorithm } };
}

/** The bytes a key signs for SSHSIG: "SSHSIG" ‖ string(namespace) ‖ string("") ‖ string(hashAlg) ‖ string(H(message)). */
export function sshSigSignedData(message: string, namespace: string, hashAlgorithm: 'sha512' | 'sha256' = 'sha512'): Uint8Array {
  return signedData(utf8(String(message)), utf8(String(namespace)), hashAlgorithm === 'sha256' ? 'sha256' : 'sha512');
}

function signedData(msg: Uint8Array, namespace: Uint8Array, hashAlgorithm: 'sha256' | 'sha512'): Uint8Array {
  const digest = hashAlgorithm === 'sha256' ? sha256(msg) : sha512(msg);
  return concat([new Uint8Array(MAGIC), wireString(namespace), wireString(new Uint8Array(0)), wireString(ascii(hashAlgorithm)), wireString(digest)]);
}

/** Armor a signature the way ssh-keygen does (base64 wrapped at 70 columns between the BEGIN/END lines), ending with a newline. signatureBlob is the SSH wire signature: string(sigtype) ‖ string(sigbytes) (for ECDSA sigbytes = mpint r ‖ mpint s). */
export function armorSshSignature(publicKeyBlob: Uint8Array, namespace: string, hashAlgorithm: 'sha512' | 'sha256', signatureBlob: Uint8Array): string {
  const version = new Uint8Array([0, 0, 0, 1]);
  const blob = concat([
    new Uint8Array(MAGIC),
    version,
    wireString(publicKeyBlob),
    wireString(utf8(String(namespace))),
    wireString(new Uint8Array(0)),
    wireString(ascii(hashAlgorithm === 'sha256' ? 'sha256' : 'sha512')),
    wireString(signatureBlob),
  ]);
  const b64 = base64Encode(blob);
  const lines: string[] = [ARMOR_BEGIN];
  for (let i = 0; i < b64.length; i += ARMOR_LINE) lines.push(b64.slice(i, i + ARMOR_LINE));
  lines.push(ARMOR_END);
  return `${lines.join('\n')}\n`;
}

/**
 * The armor's bytes. Strict, so that a signature has exactly one text form (besides surrounding whitespace and
 * CRLF line ends): the BEGIN and END lines exactly, base64 lines in between, canonical base64.
 */
function dearmor(armored: string): Parsed<Uint8Array> {
  const text = armored.trim();
  if (text === '') return fail('the signature is empty; paste the whole "-----BEGIN SSH SIGNATURE-----" block');
  const lines = text.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  if (lines[0] !== ARMOR_BEGIN) return fail(`the signature does not start with "${ARMOR_BEGIN}"; paste the whole block`);
  if (lines.length === 2 && lines[1] === ARMOR_END) return fail('the signature has nothing between its BEGIN and END lines; paste the whole block');
  if (lines.length < 3 || lines[lines.length - 1] !== ARMOR_END) return fail(`the signature does not end with "${ARMOR_END}" (truncated?); paste the whole block`);
  const body = lines.slice(1, -1).join('');
  const bytes = base64Decode(body);
  if (!bytes) return fail('the signature\'s base64 is garbled; paste it again, unchanged');
  return { ok: true, value: bytes };
}

/** SSH ECDSA signature bytes (mpint r ‖ mpint s, canonical and positive) → 64 bytes r ‖ s, or undefined. */
function ecdsaSigToCompact(sig: Uint8Array): Uint8Array | undefined {
  const r = new Reader(sig);
  const rb = r.string();
  const sb = r.string();
  if (!rb || !sb || !r.done()) return undefined;
  const out = new Uint8Array(64);
  const parts = [rb, sb];
  for (let k = 0; k < 2; k++) {
    const v = canonicalPositiveMpint(parts[k] ?? new Uint8Array(0));
    if (!v || v.length > 32) return undefined;
    out.set(v, k * 32 + (32 - v.length));
  }
  return out;
}

function canonicalPositiveMpint(b: Uint8Array): Uint8Array | undefined {
  if (b.length === 0) return undefined; // zero
  const first = b[0] ?? 0;
  if (first & 0x80) return undefined; // negative
  if (first === 0) {
    if (b.length === 1 || ((b[1] ?? 0) & 0x80) === 0) return undefined; // needless leading zero
    return b.subarray(1);
  }
  return b;
}

// ---------------------------------------------------------------------------------------------------------
// Bytes

class Reader {
  private pos = 0;
  constructor(private readonly buf: Uint8Array) {}
  u32(): number | undefined {
    if (this.pos + 4 > this.buf.length) return undefined;
    const b = this.buf;
    const p = this.pos;
    this.pos += 4;
    return (((b[p] ?? 0) << 24) >>> 0) + ((b[p + 1] ?? 0) << 16) + ((b[p + 2] ?? 0) << 8) + (b[p + 3] ?? 0);
  }
  bytes(n: number): Uint8Array | undefined {
    if (n < 0 || this.pos + n > this.buf.length) return undefined;
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  string(): Uint8Array | undefined {
    const start = this.pos;
    const n = this.u32();
    if (n === undefined) return undefined;
    const out = this.bytes(n);
    if (!out) this.pos = start;
    return out;
  }
  done(): boolean {
    return this.pos === this.buf.length;
  }
}

function wireString(b: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + b.length);
  const n = b.length;
  out[0] = (n >>> 24) & 0xff;
  out[1] = (n >>> 16) & 0xff;
  out[2] = (n >>> 8) & 0xff;
  out[3] = n & 0xff;
  out.set(b, 4);
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function ascii(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
  return out;
}

/** Bytes → text, one char per byte (for names on the wire, compared against ASCII). */
function latin1(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length && i < 256; i++) s += String.fromCharCode(b[i] ?? 0);
  return b.length > 256 ? `${s}…` : s;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** UTF-8, as TextEncoder and Buffer write it (a lone surrogate becomes U+FFFD). */
function utf8(s: string): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
      if (d >= 0xdc00 && d <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
      } else {
        c = 0xfffd;
      }
    } else if (c >= 0xdc00 && c <= 0xdfff) {
      c = 0xfffd;
    }
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 0x3f));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 0x3f), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
  }
  return new Uint8Array(out);
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const B64_INDEX: Record<string, number> = Object.fromEntries([...B64].map((c, i) => [c, i]));

function base64Encode(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 3) {
    const x = b[i] ?? 0;
    const y = b[i + 1] ?? 0;
    const z = b[i + 2] ?? 0;
    const n = (x << 16) | (y << 8) | z;
    s += B64[(n >> 18) & 63];
    s += B64[(n >> 12) & 63];
    s += i + 1 < b.length ? B64[(n >> 6) & 63] : '=';
    s += i + 2 < b.length ? B64[n & 63] : '=';
  }
  return s;
}

/** Canonical padded base64 → bytes; undefined for anything else (bad characters or length, non-zero pad bits). */
function base64Decode(s: string): Uint8Array | undefined {
  if (s.length === 0 || s.length % 4 !== 0) return undefined;
  const pad = s.endsWith('==') ? 2 : s.endsWith('=') ? 1 : 0;
  const out = new Uint8Array((s.length / 4) * 3 - pad);
  let o = 0;
  for (let i = 0; i < s.length; i += 4) {
    const last = i + 4 === s.length;
    const v: number[] = [];
    for (let j = 0; j < 4; j++) {
      const c = s[i + j] ?? '';
      if (c === '=' && last && j >= 4 - pad) {
        v.push(0);
        continue;
      }
      const k = B64_INDEX[c];
      if (k === undefined || !Object.prototype.hasOwnProperty.call(B64_INDEX, c)) return undefined;
      v.push(k);
    }
    const n = ((v[0] ?? 0) << 18) | ((v[1] ?? 0) << 12) | ((v[2] ?? 0) << 6) | (v[3] ?? 0);
    if (last && pad === 2 && (n & 0xffff) !== 0) return undefined;
    if (last && pad === 1 && (n & 0xff) !== 0) return undefined;
    out[o++] = (n >> 16) & 0xff;
    if (o < out.length) out[o++] = (n >> 8) & 0xff;
    if (o < out.length) out[o++] = n & 0xff;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------

/** noble throws on some malformed points and scalars; any throw is a bad signature. */
function attempt(check: () => boolean): boolean {
  try {
    return check() === true;
  } catch {
    return false;
  }
}

function fail(problem: string): { ok: false; problem: string } {
  return { ok: false, problem: problem.length > 200 ? `${problem.slice(0, 199)}…` : problem };
}

/** A short, printable rendering of untrusted text for a problem message. */
function show(s: string): string {
  const clean = s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, '?');
  return clean.length > 40 ? `${clean.slice(0, 40)}…` : clean;
}
