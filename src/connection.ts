/**
 * Temporal connection settings, the same for the worker and the CLI: Temporal's standard environment variables
 * (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_CLIENT_CERT_PATH / _KEY_PATH,
 * TEMPORAL_TLS_SERVER_CA_CERT_PATH, TEMPORAL_TLS_SERVER_NAME, TEMPORAL_TLS) and the profiles of the Temporal
 * config file (TEMPORAL_CONFIG_FILE, TEMPORAL_PROFILE), read through @temporalio/envconfig.
 */
import type { X509Certificate as X509 } from 'node:crypto';
import { createConnection } from 'node:net';
import { loadClientConnectConfig } from '@temporalio/envconfig';
import type { Connection, ConnectionOptions } from '@temporalio/client';
import type { NativeConnection, NativeConnectionOptions } from '@temporalio/worker';
import { UsageError } from './client/errors';
import { trustedRoots } from './client/extra-ca';

export interface TemporalSettings {
  address: string;
  namespace: string;
  /** What the worker's NativeConnection takes (TLS, API key, metadata included). */
  native: NativeConnectionOptions;
  /** What the client's Connection takes. */
  client: ConnectionOptions;
}

/** Thrown when the server cannot be reached; the CLI maps it to its exit code. */
export class ServerUnreachableError extends Error {
  constructor(readonly address: string, cause: unknown, tls?: boolean, port?: PortState) {
    const why = cause instanceof Error ? cause.message : String(cause);
    super(
      `Cannot reach the Temporal server at ${address}: ${why}. ` +
        (tls
          ? 'TLS is on for this connection (TEMPORAL_TLS, the TLS files or an API key): if the server speaks plaintext (a dev server), unset them; ' +
            'if it uses TLS, check TEMPORAL_TLS_SERVER_CA_CERT_PATH and TEMPORAL_TLS_SERVER_NAME. '
          : port === 'refused'
            ? 'Nothing listens on that port (connection refused). '
            : port === 'open'
              ? 'Something answers on that port, but not as a Temporal server: check that the address is the server\'s gRPC port (7233 by default; the Web UI\'s port does not take these calls). '
              : '') +
        'Start one with `gantry dev`, or point TEMPORAL_ADDRESS (and TEMPORAL_NAMESPACE, TLS or API key settings) at your cluster.',
    );
    this.name = 'ServerUnreachableError';
  }
}

/** What a plain TCP connection to the address found, to say why the server could not be reached. */
export type PortState = 'refused' | 'open' | 'unknown';

function probePort(address: string): Promise<PortState> {
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(address);
  if (!m) return Promise.resolve('unknown');
  return new Promise((resolve) => {
    const sock = createConnection({ host: m[1], port: Number(m[2]) });
    const done = (state: PortState) => {
      sock.destroy();
      resolve(state);
    };
    sock.setTimeout(1_000, () => done('unknown'));
    sock.once('connect', () => done('open'));
    sock.once('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED' ? 'refused' : 'unknown'));
  });
}

/**
 * The connection settings cannot be used as given (a TLS file missing, unreadable or not PEM, a key that does
 * not belong to its certificate, half of a client pair): bad input, so the CLI exits 2 before it connects.
 */
export class ConnectionSettingsError extends UsageError {}

const TLS_FILES = {
  TEMPORAL_TLS_CLIENT_CERT_PATH: 'client certificate',
  TEMPORAL_TLS_CLIENT_KEY_PATH: 'client key',
  TEMPORAL_TLS_SERVER_CA_CERT_PATH: 'server CA certificate',
} as const;
type TlsVar = keyof typeof TLS_FILES;

/** Where a TLS file was named: the variable that holds its path, else the Temporal config profile. */
function namedBy(env: NodeJS.ProcessEnv, file: string | undefined): string {
  const v = (Object.keys(TLS_FILES) as TlsVar[]).find((k) => env[k] !== undefined && env[k] === file);
  return v ? `${v}=${file}` : `${file ?? 'a TLS file'} (named in the Temporal config profile, TEMPORAL_CONFIG_FILE / TEMPORAL_PROFILE)`;
}

function readProblem(err: unknown, env: NodeJS.ProcessEnv): ConnectionSettingsError | undefined {
  const e = err as NodeJS.ErrnoException;
  if (!e || typeof e.code !== 'string' || typeof e.path !== 'string') return undefined;
  const what = e.code === 'ENOENT' ? 'does not exist' : e.code === 'EACCES' ? 'is not readable by this user' : e.code === 'EISDIR' ? 'is a directory' : `cannot be read (${e.code})`;
  return new ConnectionSettingsError(
    `The TLS file ${namedBy(env, e.path)} ${what}. Point the setting at the PEM file (client certificate, client key or server CA), ` +
      'or unset it to connect without it; nothing was sent to the server.',
  );
}

function pemProblem(what: string, where: string, fix: string): ConnectionSettingsError {
  return new ConnectionSettingsError(`The TLS ${what} ${where} is not ${fix}. Point the setting at the right PEM file; nothing was sent to the server.`);
}

/** The TLS material, checked before any connection: PEM that parses, and a client key that belongs to its certificate. */
function checkTls(tls: ConnectionOptions['tls'], env: NodeJS.ProcessEnv): void {
  const cert = env.TEMPORAL_TLS_CLIENT_CERT_PATH;
  const key = env.TEMPORAL_TLS_CLIENT_KEY_PATH;
  if ((cert === undefined) !== (key === undefined)) {
    const [given, missing] = cert === undefined ? ['TEMPORAL_TLS_CLIENT_KEY_PATH', 'TEMPORAL_TLS_CLIENT_CERT_PATH'] : ['TEMPORAL_TLS_CLIENT_CERT_PATH', 'TEMPORAL_TLS_CLIENT_KEY_PATH'];
    throw new ConnectionSettingsError(`${given} is set but ${missing} is not: mTLS needs both the client certificate and its key. Set ${missing} too, or unset ${given}; nothing was sent to the server.`);
  }
  if (!tls || typeof tls !== 'object') return;
  // node:crypto loads only for TLS material (`gantry status`'s quick path reads plaintext settings).
  const { createPrivateKey, X509Certificate } = require('node:crypto') as typeof import('node:crypto');
  const pair = tls.clientCertPair;
  if (pair) {
    let x509: X509;
    try {
      x509 = new X509Certificate(pair.crt);
    } catch {
      throw pemProblem('client certificate', namedBy(env, cert), 'a PEM certificate (a -----BEGIN CERTIFICATE----- block)');
    }
    let privateKey;
    try {
      privateKey = createPrivateKey(Buffer.from(pair.key));
    } catch {
      throw pemProblem('client key', namedBy(env, key), 'an unencrypted PEM private key (a -----BEGIN PRIVATE KEY----- block)');
    }
    if (!x509.checkPrivateKey(privateKey)) {
      throw new ConnectionSettingsError(
        `The TLS client key ${namedBy(env, key)} does not belong to the client certificate ${namedBy(env, cert)} (${x509.subject.replace(/\n/g, ', ')}). ` +
          'Point both settings at the certificate and the key issued together; nothing was sent to the server.',
      );
    }
  }
  if (tls.serverRootCACertificate) {
    try {
      new X509Certificate(tls.serverRootCACertificate);
    } catch {
      throw pemProblem('server CA certificate', namedBy(env, env.TEMPORAL_TLS_SERVER_CA_CERT_PATH), 'a PEM certificate (a -----BEGIN CERTIFICATE----- block)');
    }
  }
}

/**
 * The client's TLS with the roots bin/gantry moved to GANTRY_EXTRA_CA_CERTS (src/client/extra-ca.ts), when the
 * connection is TLS (TLS settings, or an API key, which implies TLS) and names no server CA of its own: a given CA
 * replaces the default roots, with NODE_EXTRA_CA_CERTS as without. The worker's native connection does not read
 * NODE_EXTRA_CA_CERTS, and bin/gantry leaves it in place for the worker anyway.
 */
function withExtraRoots(tls: ConnectionOptions['tls'], apiKey: unknown, env: NodeJS.ProcessEnv): ConnectionOptions['tls'] {
  const on = tls ?? (apiKey !== undefined ? true : undefined);
  if (!on) return tls;
  const given = typeof on === 'object' ? on : {};
  if (given.serverRootCACertificate) return tls;
  const roots = trustedRoots(env);
  return roots ? { ...given, serverRootCACertificate: Buffer.from(`${roots.join('\n')}\n`) } : tls;
}

export function temporalSettings(overrides: { address?: string; namespace?: string; env?: NodeJS.ProcessEnv } = {}): TemporalSettings {
  const env = overrides.env ?? process.env;
  const envVars = Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => typeof e[1] === 'string'));
  let loaded: ReturnType<typeof loadClientConnectConfig>;
  try {
    loaded = loadClientConnectConfig({ profile: env.TEMPORAL_PROFILE, overrideEnvVars: envVars });
  } catch (err) {
    throw readProblem(err, env) ?? err;
  }
  checkTls(loaded.connectionOptions.tls, env);
  const native: NativeConnectionOptions = { ...loaded.connectionOptions };
  if (overrides.address) native.address = overrides.address;
  native.address ??= 'localhost:7233';
  const namespace = overrides.namespace ?? loaded.namespace ?? 'default';
  const clientTls = withExtraRoots(native.tls, native.apiKey, env);
  const client: ConnectionOptions = {
    address: native.address,
    ...(clientTls !== undefined ? { tls: clientTls } : {}),
    ...(native.apiKey !== undefined ? { apiKey: native.apiKey } : {}),
    ...(native.metadata !== undefined ? { metadata: native.metadata } : {}),
  };
  return { address: native.address, namespace, native, client };
}

export async function connectClient(settings: TemporalSettings): Promise<Connection> {
  // Loaded here, not at the top: `gantry status`'s quick path reads the settings and never connects over gRPC.
  const { Connection: Client } = await import('@temporalio/client');
  try {
    return await Client.connect({ ...settings.client, connectTimeout: '5s' });
  } catch (err) {
    throw new ServerUnreachableError(settings.address, err, Boolean(settings.client.tls), await probePort(settings.address));
  }
}

export async function connectWorker(settings: TemporalSettings): Promise<NativeConnection> {
  // Loaded here, not at the top: the CLI's commands share this module and never need the worker's native code.
  const { NativeConnection: Native } = await import('@temporalio/worker');
  try {
    return await Native.connect(settings.native);
  } catch (err) {
    throw new ServerUnreachableError(settings.address, err, Boolean(settings.native.tls), await probePort(settings.address));
  }
}
