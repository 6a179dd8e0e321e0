/**
 * The live view of a release followed on a terminal (`gantry status --follow`, `gantry start --wait`): one block
 * with every step (its mark, a spinner on the running one, how long it ran or has been running, its attempts and
 * progress) and the gate (what it still needs), redrawn in place. `liveLines` is the pure part (status → lines);
 * `LiveBlock` draws those lines with ANSI cursor movement and leaves the last block behind as plain text.
 * Not a terminal (pipes, files, CI logs, NO_COLOR, TERM=dumb, `--plain`): none of this, the plain lines of follow.ts.
 */
import type { ReleaseStatus, StepStatus } from '../shared/release';
import { formatDuration, formatOutputs, formatTime, plural } from './format';
import { PLAIN, type Style } from './style';

/** The frames of the running step's spinner. */
export const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'] as const;

/** What the running step's activity reports beyond the status: its attempt, last failure and heartbeat. */
export interface StepProgress {
  attempt: number;
  failure?: string;
  heartbeat?: string;
}

export interface LiveView {
  /** The time the durations of running steps (and the open gate) are measured to, in ms since the epoch. */
  now: number;
  /** Which spinner frame the running step shows. */
  frame?: number;
  /** Retries and heartbeat of the running step. */
  progress?: StepProgress | undefined;
  style?: Style;
}

const MARK: Record<StepStatus['state'], string> = { succeeded: '✓', failed: '✗', running: '▶', pending: '·', skipped: '-' };
const TITLE_WIDTH = 31;

function elapsed(from: string | undefined, to: string | number | undefined): number | undefined {
  if (!from || to === undefined) return undefined;
  const end = typeof to === 'number' ? to : Date.parse(to);
  const ms = end - Date.parse(from);
  return Number.isFinite(ms) ? Math.max(0, ms) : undefined;
}

function shortDigest(digest: string): string {
  const m = /^(sha256:)?([0-9a-f]{12})[0-9a-f]{4,}$/.exec(digest);
  return m ? `${m[1] ?? ''}${m[2]}…` : digest;
}

function stepLine(step: StepStatus, view: LiveView, st: Style): string {
  const frame = SPINNER[(view.frame ?? 0) % SPINNER.length]!;
  const mark =
    step.state === 'running' ? st.info(frame)
      : step.state === 'succeeded' ? st.ok(MARK.succeeded)
        : step.state === 'failed' ? st.bad(MARK.failed)
          : st.dim(MARK[step.state]);
  const took = step.state === 'running' ? elapsed(step.startedAt, view.now) : elapsed(step.startedAt, step.endedAt);
  const pad = ' '.repeat(Math.max(0, TITLE_WIDTH - step.title.length));
  const title = `${step.state === 'pending' || step.state === 'skipped' ? st.dim(step.title) : step.title}${pad}`;
  const time = (took === undefined ? '' : formatDuration(took)).padStart(6);
  const extra: string[] = [];
  const runs = step.runs > 1 ? ` in ${step.runs} runs` : '';
  if (step.state === 'running') {
    const p = view.progress;
    if (step.runs > 1) extra.push(`run ${step.runs}`);
    if (p && p.attempt > 1) extra.push(st.warn(`attempt ${p.attempt}${p.failure ? `, after: ${oneLine(p.failure)}` : ''}`));
    if (p?.heartbeat) extra.push(st.dim(oneLine(p.heartbeat)));
  } else if (step.state === 'succeeded') {
    if (step.attempts > 1 || step.runs > 1) extra.push(`${plural(step.attempts, 'attempt')}${runs}`);
    const out = oneLine(formatOutputs(step.outputs));
    if (out) extra.push(st.dim(out));
  } else if (step.state === 'failed') {
    extra.push(st.bad(`failed after ${plural(step.attempts, 'attempt')}${runs}: ${oneLine(step.error ?? 'no message')}`));
  } else if (step.state === 'skipped') {
    extra.push(st.dim(`skipped${step.error ? `: ${oneLine(step.error)}` : ''}`));
  }
  return `  ${mark} ${title} ${time}${extra.length > 0 ? `  ${extra.join(' · ')}` : ''}`.trimEnd();
}

function gateLine(s: ReleaseStatus, view: LiveView, st: Style): string {
  const g = s.gate;
  const label = st.bold('gate');
  const needs = g.needs ?? `needs ${plural(g.required, 'approval')} from ${g.approvers.join(', ')}`;
  const who = (votes: { approver: string }[]) => votes.map((v) => v.approver).join(', ');
  switch (g.state) {
    case 'not_open':
      return `  ${label}  ${st.dim(`not open yet; it opens after staging and ${needs}`)}`;
    case 'open': {
      const open = elapsed(g.openedAt, view.now);
      const parts = [
        st.warn(`open${open === undefined ? '' : ` for ${formatDuration(open)}`}: it ${needs}`),
        ...(g.approvals.length > 0 ? [`approved by ${who(g.approvals)} (${g.approvals.length} of ${g.required})`] : []),
        ...(g.digest ? [`image ${shortDigest(g.digest)}`] : []),
        ...(g.deadline ? [`times out ${formatTime(g.deadline)}`] : []),
      ];
      return `  ${label}  ${parts.join(' · ')}`;
    }
    case 'approved':
      return `  ${label}  ${st.ok(`approved${g.approvals.length > 0 ? ` by ${who(g.approvals)}` : ''}`)}${g.digest ? ` · image ${shortDigest(g.digest)}` : ''}`;
    case 'rejected':
      return `  ${label}  ${st.bad(`rejected${g.rejection ? ` by ${g.rejection.approver}${g.rejection.reason ? `: ${oneLine(g.rejection.reason)}` : ''}` : ''}`)}`;
    case 'timed_out':
      return `  ${label}  ${st.bad(`timed out${g.deadline ? ` at ${formatTime(g.deadline)}` : ''} without the approvals it needed`)}`;
    case 'closed':
      return `  ${label}  ${st.dim('closed: the release ended before production')}`;
  }
}

/**
 * The live block for a release: a header (service, version, stage or outcome, time so far), one line per step,
 * the gate, and a pending decision or cancellation when there is one. Pure: the same status and view give the
 * same lines.
 */
export function liveLines(s: ReleaseStatus, view: LiveView): string[] {
  const st = view.style ?? PLAIN;
  const took = s.outcome ? elapsed(s.startedAt, s.endedAt) : elapsed(s.startedAt, view.now);
  const where = s.outcome
    ? (s.outcome === 'succeeded' || s.outcome === 'planned' ? st.ok : st.bad)(s.outcome)
    : st.info(s.stage);
  const lines = [`${st.bold(`Release ${s.request.service} ${s.request.version}`)} · ${where}${took === undefined ? '' : ` · ${formatDuration(took)}`}`];
  for (const step of s.steps) lines.push(stepLine(step, view, st));
  lines.push(gateLine(s, view, st));
  if (s.pendingDecision) {
    const p = s.pendingDecision;
    const title = s.steps.find((x) => x.name === p.step)?.title ?? p.step;
    lines.push(`  ${st.warn(st.bold('decision'))}  ${st.warn(`${title} failed after its retries: retry or abort before ${formatTime(p.deadline)}`)}`);
  }
  if (s.cancellation.requested && !s.outcome) {
    const c = s.cancellation;
    lines.push(`  ${st.warn(`cancellation requested${c.by ? ` by ${c.by}` : ''}: production work already begun finishes first`)}`);
  }
  return lines.map(oneLine);
}

/** One terminal line: errors and heartbeats can span lines (git's, an engine's), which would break the redraw. */
function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, ' ').replace(/\t/g, ' ');
}

const ANSI = /\x1b\[[0-9;?]*[A-Za-z]/y;

/** The text as the terminal shows it: without ANSI sequences. */
export function visible(text: string): string {
  return text.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '');
}

/**
 * Cut a line to `width` columns as shown (ANSI sequences take none), ending a cut line with `…` and a style
 * reset. A line that wraps would throw off the cursor movement that redraws the block.
 */
export function fitWidth(line: string, width: number): string {
  if (width <= 1 || visible(line).length <= width) return line;
  let out = '';
  let shown = 0;
  let styled = false;
  for (let i = 0; i < line.length;) {
    ANSI.lastIndex = i;
    const m = ANSI.exec(line);
    if (m) {
      out += m[0];
      styled = true;
      i += m[0].length;
      continue;
    }
    const ch = String.fromCodePoint(line.codePointAt(i)!);
    if (shown === width - 1) break;
    out += ch;
    shown += 1;
    i += ch.length;
  }
  return `${out}…${styled ? '\x1b[0m' : ''}`;
}

/** Where the live block is drawn: a terminal's output stream. */
export interface LiveTerminal {
  write(text: string): void;
  /** Its width and height now (undefined when unknown). */
  columns(): number | undefined;
  rows(): number | undefined;
}

/**
 * The terminal to draw a live block on: the stream when it is a TTY and neither NO_COLOR (https://no-color.org),
 * TERM=dumb nor `plain` (`--plain`) asks for plain lines; otherwise undefined.
 */
export function liveTerminal(stream: NodeJS.WriteStream, env: NodeJS.ProcessEnv = process.env, plain = false): LiveTerminal | undefined {
  if (plain || !stream.isTTY || (env.NO_COLOR !== undefined && env.NO_COLOR !== '') || env.TERM === 'dumb') return undefined;
  return {
    write: (text) => void stream.write(text),
    columns: () => stream.columns || undefined,
    rows: () => stream.rows || undefined,
  };
}

const HIDE_CURSOR = '\x1b[?25l';
const SHOW_CURSOR = '\x1b[?25h';
/** Move the cursor up `n` lines to their first column and erase from there to the end of the screen. */
const eraseUp = (n: number): string => (n > 0 ? `\x1b[${n}A\r\x1b[0J` : '\r\x1b[0J');

/**
 * A block of lines redrawn in place. `render(frame)` gives the lines; a timer redraws them at most ten times a
 * second (for the spinner and the running clocks). `log` prints a line above the block, where it stays. `stop`
 * draws the block a last time, in full, and leaves it as it is: what follows prints below it.
 */
export class LiveBlock {
  private height = 0;
  private last = '';
  private frame = 0;
  private timer: NodeJS.Timeout | undefined;
  private redraw: NodeJS.Immediate | undefined;
  private started = false;
  private stopped = false;
  private readonly restoreCursor = (): void => this.term.write(SHOW_CURSOR);

  constructor(
    private readonly term: LiveTerminal,
    private readonly render: (frame: number) => string[],
    private readonly intervalMs = 100,
  ) {}

  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    this.term.write(HIDE_CURSOR);
    process.once('exit', this.restoreCursor);
    this.timer = setInterval(() => {
      this.frame += 1;
      this.draw();
    }, this.intervalMs);
    this.timer.unref();
    this.draw();
  }

  /** Draw the block now (when it changed). */
  draw(): void {
    if (!this.started || this.stopped) return;
    this.paint(this.fitted(true));
  }

  /**
   * Print a line above the block; it stays in the terminal's scrollback. The block is drawn again below it once
   * the lines printed together are out (on the next turn of the event loop, or the next draw). After `stop`, or
   * before anything was drawn, just print it.
   */
  log(line: string): void {
    if (!this.started || this.stopped) {
      this.term.write(`${line}\n`);
      return;
    }
    this.term.write(`${this.height > 0 ? eraseUp(this.height) : ''}${line}\n`);
    this.height = 0;
    this.last = '';
    if (!this.redraw) {
      this.redraw = setImmediate(() => {
        this.redraw = undefined;
        this.draw();
      });
    }
  }

  /** The last draw, in full, then the block is left behind as plain text. Idempotent. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (!this.started) return;
    if (this.timer) clearInterval(this.timer);
    if (this.redraw) clearImmediate(this.redraw);
    this.timer = undefined;
    this.redraw = undefined;
    this.paint(this.fitted(false));
    this.term.write(SHOW_CURSOR);
    process.removeListener('exit', this.restoreCursor);
  }

  private fitted(trimToScreen: boolean): string[] {
    let lines = this.render(this.frame).flatMap((l) => l.split('\n'));
    const cols = this.term.columns();
    if (cols) lines = lines.map((l) => fitWidth(l, cols - 1));
    const rows = this.term.rows();
    // Cursor movement cannot reach above the screen: a block taller than it is cut while it is redrawn.
    if (trimToScreen && rows && lines.length > rows - 1) lines = [...lines.slice(0, Math.max(1, rows - 2)), '  …'];
    return lines;
  }

  private paint(lines: string[]): void {
    const text = lines.map((l) => `${l}\n`).join('');
    if (text === this.last) return;
    this.term.write(`${this.height > 0 ? eraseUp(this.height) : ''}${text}`);
    this.height = lines.length;
    this.last = text;
  }
}
