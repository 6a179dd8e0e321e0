/**
 * `gantry status <service> <version>` (or `--id`, `--json`) without the Temporal SDK: bin/gantry.js calls this
 * before loading the CLI. It reads the release through the server's HTTP API (src/client/http-api.ts) and prints
 * exactly what `gantry status` prints. It takes only the plain case: connection settings (read as every command
 * reads them, src/connection.ts) with no TLS, API key or gRPC metadata, an HTTP API it can find, and a release
 * that answers in time. Anything else (other options, a mistyped argument, unusable settings, no answer, an
 * error) returns `undefined` and the ordinary command runs, which explains the problem with its exit code. Nothing is printed unless the whole status was read.
 */
import { parseArgs } from 'node:util';
import { temporalSettings, type TemporalSettings } from '../connection';
import { formatStatus } from '../client/format';
import { httpApiFor, readReleaseOverHttp } from '../client/http-api';
import { releaseAddress, webUiBase, workflowUrl } from '../client/snapshot';
import { styleFor } from '../client/style';

/** How long the status query may take here before the ordinary path (which waits longer and explains) asks again. */
const QUICK_TIMEOUT_MS = 2000;

export async function quickStatus(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number | undefined> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv.slice(2));
  } catch {
    return undefined;
  }
  const { values, positionals } = parsed;
  if (positionals[0] !== 'status' || positionals.length > 3) return undefined;
  let settings: TemporalSettings;
  try {
    settings = temporalSettings({ ...(values.address ? { address: values.address } : {}), ...(values.namespace ? { namespace: values.namespace } : {}), env });
  } catch {
    return undefined; // unusable settings: the ordinary path says which, with its exit code
  }
  const { address, namespace } = settings;
  const base = httpApiFor(settings, env);
  if (!base) return undefined;
  let addr: ReturnType<typeof releaseAddress>;
  try {
    addr = releaseAddress(positionals[1], positionals[2], values.id);
  } catch {
    return undefined;
  }
  const snap = await readReleaseOverHttp(base, namespace, addr.workflowId, QUICK_TIMEOUT_MS);
  if (!snap?.status) return undefined;
  if (values.json) {
    process.stdout.write(`${JSON.stringify(snap.status, null, 2)}\n`);
  } else {
    const webUrl = workflowUrl(webUiBase(address, values['ui-url'] ?? env.GANTRY_UI_URL), namespace, addr.workflowId);
    process.stdout.write(`${formatStatus(addr, snap, { style: styleFor(process.stdout, env), webUrl })}\n`);
  }
  return 0;
}

/** The global options and `status`'s own, as commander reads them (src/cli/common.ts, src/cli/status.ts). */
function parse(args: string[]) {
  return parseArgs({
    args,
    strict: true,
    allowPositionals: true,
    options: {
      address: { type: 'string' },
      namespace: { type: 'string' },
      'ui-url': { type: 'string' },
      id: { type: 'string' },
      json: { type: 'boolean' },
    },
  });
}
