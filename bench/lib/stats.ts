/** Summaries of timing samples (simple-statistics), printed the same way by every bench. */
import { max, median, min, quantile } from 'simple-statistics';

export interface Summary {
  n: number;
  median: number;
  p90: number;
  min: number;
  max: number;
}

export function summarize(xs: number[]): Summary {
  if (xs.length === 0) throw new Error('no samples');
  return { n: xs.length, median: median(xs), p90: quantile(xs, 0.9), min: min(xs), max: max(xs) };
}

export function ms(x: number, digits = 1): string {
  return `${x.toFixed(digits)} ms`;
}

/** One aligned line: `label  median … p90 … min … (n)`. */
export function row(label: string, xs: number[], width = 44): string {
  const s = summarize(xs);
  return `  ${label.padEnd(width)} median ${s.median.toFixed(1).padStart(8)} ms   p90 ${s.p90.toFixed(1).padStart(8)} ms   ` +
    `min ${s.min.toFixed(1).padStart(8)} ms   (n=${s.n})`;
}

/** `ratio 1.23   target ≤ 1.25   PASS`. */
export function verdict(ratio: number, target: number): string {
  return `ratio ${ratio.toFixed(2)}   target ≤ ${target}   ${ratio <= target ? 'PASS' : 'MISS'}`;
}

export { median };
