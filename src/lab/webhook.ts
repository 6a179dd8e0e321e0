/**
 * The lab's chat webhook: an HTTP server on loopback that answers like Slack's incoming webhooks (200 `ok`) and
 * appends every request it gets to a JSON-lines file. `GET /_count` answers `{"count": n}` so another process
 * (a test, `gantry dev`) can check how many messages arrived; so does {@link WebhookReceiver.count}.
 */
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import type net from 'node:net';

export interface WebhookRequest {
  time: string;
  method: string;
  path: string;
  contentType: string | null;
  /** Parsed JSON when the body is JSON, the raw text otherwise. */
  body: unknown;
}

export interface WebhookReceiver {
  /** The URL to post to (includes a random path segment, as real webhook URLs do). */
  url: string;
  port: number;
  file: string;
  count(): number;
  requests(): WebhookRequest[];
  close(): Promise<void>;
}

export function readWebhookFile(file: string): WebhookRequest[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as WebhookRequest);
}

export async function startWebhookReceiver(opts: { file: string; token: string; port?: number }): Promise<WebhookReceiver> {
  const hookPath = `/hooks/${opts.token}`;
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/_count') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ count: readWebhookFile(opts.file).length }));
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url !== hookPath) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('no_service');
        return;
      }
      const text = Buffer.concat(chunks).toString('utf8');
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        // not JSON: keep the text
      }
      const entry: WebhookRequest = {
        time: new Date().toISOString(),
        method: req.method ?? 'GET',
        path: '/hooks/***',
        contentType: req.headers['content-type'] ?? null,
        body,
      };
      appendFileSync(opts.file, `${JSON.stringify(entry)}\n`);
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}${hookPath}`,
    port,
    file: opts.file,
    count: () => readWebhookFile(opts.file).length,
    requests: () => readWebhookFile(opts.file),
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
