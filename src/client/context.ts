/**
 * A connected Temporal client for one CLI command, built from Temporal's standard settings (src/connection.ts)
 * plus the global --address / --namespace flags.
 */
import { Client, type Connection } from '@temporalio/client';
import { connectClient, temporalSettings, type TemporalSettings } from '../connection';
import { webUiBase } from './snapshot';

export { webUiBase, workflowUrl } from './snapshot';

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
