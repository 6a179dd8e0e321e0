/** Scraping the worker's Prometheus endpoint and reading samples out of the text format, for assertions. */
import { setTimeout as pause } from 'node:timers/promises';

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parse the Prometheus text exposition format (the sample lines; comments and blank lines skipped). */
export function parsePrometheus(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]!] = l[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
    }
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return samples;
}

export async function scrape(url: string): Promise<Sample[]> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url}: ${res.status} ${res.statusText}`);
  expectContentType(res.headers.get('content-type'));
  return parsePrometheus(await res.text());
}

function expectContentType(type: string | null): void {
  if (!type?.startsWith('text/plain')) throw new Error(`the metrics endpoint answered with content type ${type ?? '(none)'}, not text/plain`);
}

/** The samples named `name` whose labels include `labels`. */
export function matching(samples: Sample[], name: string, labels: Record<string, string> = {}): Sample[] {
  return samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

/** The value of exactly one sample; throws, listing what there is, when none or several match. */
export function valueOf(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const found = matching(samples, name, labels);
  if (found.length !== 1) {
    const named = samples.filter((s) => s.name === name).map((s) => JSON.stringify(s.labels));
    throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}; ${name} has: ${named.join(' ') || 'no samples'}`);
  }
  return found[0]!.value;
}

/** Scrape until `check` passes (values reach the endpoint as tasks complete), then return its samples. */
export async function scrapeUntil(url: string, check: (samples: Sample[]) => void, timeoutMs = 15_000): Promise<Sample[]> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const samples = await scrape(url);
    try {
      check(samples);
      return samples;
    } catch (err) {
      if (Date.now() > until) throw err;
    }
    await pause(200);
  }
}
