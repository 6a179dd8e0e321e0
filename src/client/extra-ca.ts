/**
 * The extra CA certificates that bin/gantry moved out of NODE_EXTRA_CA_CERTS into GANTRY_EXTRA_CA_CERTS, so that
 * node does not parse its whole root store at every start (bin/gantry says why). A TLS connection the CLI opens
 * trusts what node would have trusted with NODE_EXTRA_CA_CERTS: node's default roots and the certificates in that
 * file. Without GANTRY_EXTRA_CA_CERTS nothing changes: node's own defaults apply (NODE_EXTRA_CA_CERTS included).
 */
import { readFileSync } from 'node:fs';

const EXTRA_CA_ENV = 'GANTRY_EXTRA_CA_CERTS';

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** The roots for the last file read: the CLI reads it once, however many connections it opens. */
let cached: { file: string; roots: string[] } | undefined;

/**
 * The roots a TLS connection should trust, or `undefined` for node's defaults (no GANTRY_EXTRA_CA_CERTS). Like node
 * with NODE_EXTRA_CA_CERTS, a file that cannot be read or holds no certificate is reported once on stderr and the
 * default roots stay in force.
 */
export function trustedRoots(env: NodeJS.ProcessEnv = process.env, warn: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): string[] | undefined {
  const file = env[EXTRA_CA_ENV]?.trim();
  if (!file) return undefined;
  if (cached?.file === file) return cached.roots;
  // node:tls loads only here: building its root list is the cost this module exists to defer.
  const { rootCertificates } = require('node:tls') as typeof import('node:tls');
  let extra: string[] = [];
  try {
    extra = readFileSync(file, 'utf8').match(PEM_CERT) ?? [];
    if (extra.length === 0) warn(`gantry: NODE_EXTRA_CA_CERTS=${file} holds no PEM certificate; TLS connections trust the default roots only. Point it at a PEM bundle, or unset it.`);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    warn(`gantry: cannot read NODE_EXTRA_CA_CERTS=${file} (${code}); TLS connections trust the default roots only. Point it at a readable PEM bundle, or unset it.`);
  }
  const roots = [...rootCertificates, ...extra];
  cached = { file, roots };
  return roots;
}
