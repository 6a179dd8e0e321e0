/**
 * Temporal connection settings, the same for the worker and the CLI: Temporal's standard environment variables
 * (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_CLIENT_CERT_PATH / _KEY_PATH,
 * TEMPORAL_TLS_SERVER_CA_CERT_PATH, TEMPORAL_TLS_SERVER_NAME, TEMPORAL_TLS) and the profiles of the Temporal
 * config file (TEMPORAL_CONFIG_FILE, TEMPORAL_PROFILE), read through @temporalio/envconfig.
 */
import { loadClientConnectConfig } from '@temporalio/envconfig';
import { Connection } from '@temporalio/client';
import type { ConnectionOptions } from '@temporalio/client';
import type { NativeConnection, NativeConnectionOptions } from '@temporalio/worker';

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
  constructor(readonly address: string, cause: unknown) {
    super(
      `Cannot reach the Temporal server at ${address}: ${cause instanceof Error ? cause.message : String(cause)}. ` +
        'Start one with `gantry dev`, or point TEMPORAL_ADDRESS (and TEMPORAL_NAMESPACE, TLS or API key settings) at your cluster.',
    );
    this.name = 'ServerUnreachableError';
  }
}

export function temporalSettings(overrides: { address?: string; namespace?: string; env?: NodeJS.ProcessEnv } = {}): TemporalSettings {
  const env = overrides.env ?? process.env;
  const envVars = Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => typeof e[1] === 'string'));
  const loaded = loadClientConnectConfig({ profile: env.TEMPORAL_PROFILE, overrideEnvVars: envVars });
  const native: NativeConnectionOptions = { ...loaded.connectionOptions };
  if (overrides.address) native.address = overrides.address;
  native.address ??= 'localhost:7233';
  const namespace = overrides.namespace ?? loaded.namespace ?? 'default';
  const client: ConnectionOptions = {
    address: native.address,
    ...(native.tls !== undefined ? { tls: native.tls } : {}),
    ...(native.apiKey !== undefined ? { apiKey: native.apiKey } : {}),
    ...(native.metadata !== undefined ? { metadata: native.metadata } : {}),
  };
  return { address: native.address, namespace, native, client };
}

export async function connectClient(settings: TemporalSettings): Promise<Connection> {
  try {
    return await Connection.connect({ ...settings.client, connectTimeout: '5s' });
  } catch (err) {
    throw new ServerUnreachableError(settings.address, err);
  }
}

export async function connectWorker(settings: TemporalSettings): Promise<NativeConnection> {
  // Loaded here, not at the top: the CLI's commands share this module and never need the worker's native code.
  const { NativeConnection: Native } = await import('@temporalio/worker');
  try {
    return await Native.connect(settings.native);
  } catch (err) {
    throw new ServerUnreachableError(settings.address, err);
  }
}
