/**
 * A connected Temporal client for one CLI command, built from Temporal's standard settings (src/connection.ts)
 * plus the global --address / --namespace flags.
 */
import { Client, type Connection } from '@temporalio/client';
import { connectClient, temporalSettings, type TemporalSettings } from '../connection';

export interface ConnectOptions {
  address?: string;
  namespace?: string;
  /** Base URL of the Temporal Web UI, for links. */
  uiUrl?: string;
  env?: NodeJS.ProcessEnv;
}

export interface GantryClient {
  client: Client;
  connection: Connection;
  settings: TemporalSettings;
  namespace: string;
  /** Best-known Web UI base URL (see {@link webUiBase}). */
  uiBase: string | undefined;
  close(): Promise<void>;
}

export async function openClient(opts: ConnectOptions = {}): Promise<GantryClient> {
  const env = opts.env ?? process.env;
  const settings = temporalSettings({
    ...(opts.address ? { address: opts.address } : {}),
    ...(opts.namespace ? { namespace: opts.namespace } : {}),
    env,
  });
  const connection = await connectClient(settings);
  const client = new Client({ connection, namespace: settings.namespace });
  return {
    client,
    connection,
    settings,
    namespace: settings.namespace,
    uiBase: webUiBase(settings.address, opts.uiUrl ?? env.GANTRY_UI_URL),
    close: () => connection.close(),
  };
}

/**
 * The Web UI's base URL: given explicitly (--ui-url, GANTRY_UI_URL), or, for a server on this machine, the dev
 * server's default (its gRPC port + 1000, which is what `temporal server start-dev` and `gantry dev` use).
 */
export function webUiBase(address: string, explicit?: string): string | undefined {
  if (explicit) return explicit.replace(/\/+$/, '');
  const m = /^(localhost|127\.0\.0\.1|\[::1\]):(\d+)$/.exec(address);
  if (!m) return undefined;
  const port = Number(m[2]) + 1000;
  return port <= 65535 ? `http://${m[1]}:${port}` : undefined;
}

export function workflowUrl(uiBase: string | undefined, namespace: string, workflowId: string): string | undefined {
  if (!uiBase) return undefined;
  return `${uiBase}/namespaces/${encodeURIComponent(namespace)}/workflows/${encodeURIComponent(workflowId)}`;
}
