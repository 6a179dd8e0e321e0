/**
 * The lab's chat webhook: an HTTP server on loopback that answers like Slack's incoming webhooks (200 `ok`) and
 * appends every message it accepts to a JSON-lines file. `GET /_count` answers `{"count": n, "duplicates": d}`
 * so another process (a test, `gantry dev`) can check how many messages arrived; so do
 * {@link WebhookReceiver.count} and {@link WebhookReceiver.duplicates}.
 *
 * It honours the `Idempotency-Key` header, as chat services and webhook receivers with idempotency do: a
 * request whose key it already accepted is answered 200 `ok` again (the sender may retry a delivery whose answer
 * it never got) and is not a second message. Such refused duplicates go to their own file beside the messages
 * (`<file without .jsonl>.duplicates.jsonl`) and are counted. Both files survive a restart of the receiver, and
 * so does what it remembers of the keys. With `{ idempotency: false }` it ignores the key, like Slack's
 * incoming webhooks: every delivery is a message (at-least-once; the key is still recorded with each).
 *
 * For tests, it can be told to misbehave for the next requests ({@link WebhookReceiver.script}): answer an
 * accepted message late (after the sender's timeout: "accepted but answered late"), or refuse with a status
 * before accepting anything (a 500 while the chat service is down).
 */
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import type net from 'node:net';

export interface WebhookRequest {
  time: string;
  method: string;
  path: string;
  contentType: string | null;
  /** The `Idempotency-Key` the delivery carried, if any. */
  idempotencyKey?: string;
  /** Parsed JSON when the body is JSON, the raw text otherwise. */
  body: unknown;
}

/** What the receiver does with the next request it gets (then it behaves again). */
export type WebhookBehaviour =
  /** Accept the message (record it), then answer only after `ms`. */
  | { answerAfterMs: number }
  /** Answer `status` without accepting the message. */
  | { refuse: number };

export interface WebhookReceiver {
  /** The URL to post to (includes a random path segment, as real webhook URLs do). */
  url: string;
  port: number;
  /** The messages accepted, one JSON line each. */
  file: string;
  /** The deliveries refused as duplicates of an accepted message (same Idempotency-Key). */
  duplicatesFile: string;
  /** Messages accepted. */
  count(): number;
  requests(): WebhookRequest[];
  /** Deliveries refused as duplicates (their key was accepted before). */
  duplicates(): number;
  duplicateRequests(): WebhookRequest[];
  /** The next requests, one behaviour each, in order. */
  script(...behaviours: WebhookBehaviour[]): void;
  close(): Promise<void>;
}

export function readWebhookFile(file: string): WebhookRequest[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as WebhookRequest);
}

/** Where the refused duplicates of the messages in `file` go. */
export function duplicatesFileOf(file: string): string {
  return `${file.replace(/\.jsonl$/, '')}.duplicates.jsonl`;
}

/** The key as sent: a bare token, or a structured-field string (`"…"`, the IETF draft's form). */
function keyOf(header: string | string[] | undefined): string | undefined {
  const raw = Array.isArray(header) ? header[0] : header;
  const key = raw?.trim().replace(/^"(.*)"$/, '$1');
  return key ? key : undefined;
}

export async function startWebhookReceiver(opts: { file: string; token: string; port?: number; idempotency?: boolean }): Promise<WebhookReceiver> {
  const hookPath = `/hooks/${opts.token}`;
  const duplicatesFile = duplicatesFileOf(opts.file);
  const honour = opts.idempotency ?? true;
  const keys = new Set(readWebhookFile(opts.file).map((r) => r.idempotencyKey).filter((k): k is string => k !== undefined));
  const behaviours: WebhookBehaviour[] = [];
  const timers = new Set<NodeJS.Timeout>();

  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/_count') {
      res.writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ count: readWebhookFile(opts.file).length, duplicates: readWebhookFile(duplicatesFile).length }));
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url !== hookPath) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('no_service');
        return;
      }
      const behaviour = behaviours.shift();
      if (behaviour && 'refuse' in behaviour) {
        res.writeHead(behaviour.refuse, { 'content-type': 'text/plain' }).end(behaviour.refuse >= 500 ? 'service_unavailable' : 'invalid_payload');
        return;
      }
      const text = Buffer.concat(chunks).toString('utf8');
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        // not JSON: keep the text
      }
      const key = keyOf(req.headers['idempotency-key']);
      const entry: WebhookRequest = {
        time: new Date().toISOString(),
        method: req.method ?? 'GET',
        path: '/hooks/***',
        contentType: req.headers['content-type'] ?? null,
        ...(key ? { idempotencyKey: key } : {}),
        body,
      };
      if (honour && key && keys.has(key)) {
        // Already accepted: the sender retried a delivery whose answer it did not get. One message, not two.
        appendFileSync(duplicatesFile, `${JSON.stringify(entry)}\n`);
      } else {
        appendFileSync(opts.file, `${JSON.stringify(entry)}\n`);
        if (key) keys.add(key);
      }
      const answer = () => { res.writeHead(200, { 'content-type': 'text/plain' }).end('ok'); };
      if (behaviour) {
        const timer = setTimeout(() => { timers.delete(timer); answer(); }, behaviour.answerAfterMs);
        timers.add(timer);
      } else {
        answer();
      }
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
    duplicatesFile,
    count: () => readWebhookFile(opts.file).length,
    requests: () => readWebhookFile(opts.file),
    duplicates: () => readWebhookFile(duplicatesFile).length,
    duplicateRequests: () => readWebhookFile(duplicatesFile),
    script: (...next) => { behaviours.push(...next); },
    close: () => new Promise<void>((resolve) => {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
