/**
 * Notices to the approvers' channel: what a release waits for, in words, as a Slack-compatible message and as the
 * markdown of the Web UI's current details. The same facts either way, so the channel and the workflow page agree.
 *
 * Pure and deterministic (the workflow imports it). Every value is cleaned of control characters and cut to a
 * known length before it is shown, and escaped for where it goes (Slack mrkdwn, markdown), because names and
 * reasons come from people and can contain anything, including `<!channel>`.
 */
import { displayText, MAX_NAME, MAX_REASON } from './text';

export type NoticeKind = 'gate-opened' | 'gate-reminder' | 'gate-timed-out' | 'lane-wait' | 'break-glass' | 'hotfix';

export const NOTICE_KINDS: readonly NoticeKind[] = ['gate-opened', 'gate-reminder', 'gate-timed-out', 'lane-wait', 'break-glass', 'hotfix'];

export interface GateSummary {
  service: string;
  version: string;
  environment: string;
  tag?: string;
  commit?: string;
  digest?: string;
  imageRef?: string;
  /** The smoke result in words, e.g. "version: 200 with version = 1.4.0; health: 200". */
  smoke?: string;
  buildRunUrl?: string;
  requester: string;
  /** What the gate still needs, in words ("needs 1 more from sre (carol or dave)"). */
  needs: string;
  rule?: string;
  approveCommand: string;
  /** The Temporal Web UI link to this release (when notices.webUi is configured). */
  webUiUrl?: string;
  deadline?: string;
  hotfix?: { reason: string; skipped: string[] };
  /** Freezes holding the gate, in words. */
  freeze?: string;
  lane?: { holder: string; heldSince: string; waitingSince: string };
  breakGlass?: { by: string; reason: string };
}

export interface NoticeRequest {
  kind: NoticeKind;
  workflowId: string;
  runId: string;
  summary: GateSummary;
}

/** Longest `text` of a message; Slack truncates past 40,000 but notifications show far less. */
export const MAX_NOTICE_TEXT = 3000;
/** Longest markdown for the Web UI's current details. */
export const MAX_NOTICE_MARKDOWN = 8000;

// Slack's own limits on block text.
const HEADER_MAX = 150;
const SECTION_MAX = 3000;
const FIELD_MAX = 2000;
const FIELDS_PER_SECTION = 10;
const BUTTON_URL_MAX = 3000;

/** The summary with every value fit to show: no control characters, each cut to its bound. */
type Clean = Omit<GateSummary, 'hotfix' | 'lane' | 'breakGlass'> & {
  hotfix?: { reason: string; skipped: string };
  lane?: { holder: string; heldSince: string; waitingSince: string };
  breakGlass?: { by: string; reason: string };
};

const MAX_URL = 2000;

function clean(s: GateSummary): Clean {
  const t = (v: unknown, n: number) => displayText(v, n);
  const opt = (v: unknown, n: number) => (v === undefined || v === null || v === '' ? undefined : t(v, n));
  const c: Clean = {
    service: t(s.service, MAX_NAME),
    version: t(s.version, 128),
    environment: t(s.environment, MAX_NAME),
    requester: t(s.requester, MAX_NAME),
    needs: t(s.needs, 300),
    approveCommand: t(s.approveCommand, 300),
  };
  const set = <K extends keyof Clean>(k: K, v: Clean[K] | undefined) => {
    if (v !== undefined) c[k] = v;
  };
  set('tag', opt(s.tag, 128));
  set('commit', opt(s.commit, 64));
  set('digest', opt(s.digest, 80));
  set('imageRef', opt(s.imageRef, 300));
  set('smoke', opt(s.smoke, 600));
  set('buildRunUrl', opt(s.buildRunUrl, MAX_URL));
  set('rule', opt(s.rule, 300));
  set('webUiUrl', opt(s.webUiUrl, MAX_URL));
  set('deadline', opt(s.deadline, 64));
  set('freeze', opt(s.freeze, 500));
  if (s.hotfix) {
    const skipped = Array.isArray(s.hotfix.skipped) ? s.hotfix.skipped.slice(0, 20).map((e) => t(e, MAX_NAME)).filter(Boolean) : [];
    c.hotfix = { reason: t(s.hotfix.reason, MAX_REASON), skipped: t(skipped.join(', '), 300) || 'no environment' };
  }
  if (s.lane) c.lane = { holder: t(s.lane.holder, 200), heldSince: t(s.lane.heldSince, 64), waitingSince: t(s.lane.waitingSince, 64) };
  if (s.breakGlass) c.breakGlass = { by: t(s.breakGlass.by, MAX_NAME), reason: t(s.breakGlass.reason, MAX_REASON) };
  return c;
}

/** A reason inside a one-line sentence: shorter than in the facts below it. */
const brief = (reason: string) => displayText(reason, 300);

interface Parts {
  emoji: string;
  /** The header, plain text. */
  title: string;
  /** What happened, one sentence without its full stop. */
  what: string;
  /** What to do next, ending where the command goes. */
  lead: string;
  command: string;
}

function parts(kind: NoticeKind, c: Clean): Parts {
  const sv = `${c.service} ${c.version}`;
  const env = c.environment;
  const status = `gantry status ${sv}`;
  const held = c.freeze ? `; frozen: ${c.freeze}` : '';
  switch (kind) {
    case 'gate-opened':
      return {
        emoji: '⏳',
        title: `${sv} waits for approval to ${env}`,
        what: `${sv} waits for approval to ${env}: ${c.needs}${held}${c.hotfix ? ` (hotfix, skipped ${c.hotfix.skipped})` : ''}`,
        lead: 'Approve:',
        command: c.approveCommand,
      };
    case 'gate-reminder': {
      const at = c.deadline ? `at ${c.deadline}` : 'soon';
      return {
        emoji: '⏰',
        title: `Reminder: ${sv} times out ${at}`,
        what: `Reminder: ${sv} still waits for approval to ${env} and times out ${at}: ${c.needs}${held}`,
        lead: 'Without a decision by then nothing is deployed and the release ends aborted. Approve:',
        command: c.approveCommand,
      };
    }
    case 'gate-timed-out':
      return {
        emoji: '⌛',
        title: `${sv} timed out at the ${env} gate`,
        what: `${sv} was not approved within the approval timeout${c.deadline ? ` (it ran out at ${c.deadline})` : ''}; ` +
          `nothing was deployed to ${env} and the release ended aborted`,
        lead: 'To release it, start it again:',
        command: `gantry start ${sv}${c.hotfix ? ' --hotfix --reason "…"' : ''}`,
      };
    case 'lane-wait': {
      const lane = c.lane;
      return {
        emoji: '🚦',
        title: `${sv} waits for the ${env} lane`,
        what: lane
          ? `${sv} has waited for the ${env} lane since ${lane.waitingSince}: ${lane.holder} holds it (since ${lane.heldSince})`
          : `${sv} has waited for the ${env} lane longer than configured`,
        lead: 'It goes on by itself when the lane is free; if the release holding it is stuck, finish or cancel that one. The queue:',
        command: status,
      };
    }
    case 'break-glass': {
      const bg = c.breakGlass;
      return {
        emoji: '🔓',
        title: `${sv} passed a freeze to ${env} by break-glass`,
        what: `${sv} passed a freeze${c.freeze ? ` (${c.freeze})` : ''} to ${env} by break-glass` +
          (bg ? `: ${bg.by}, "${brief(bg.reason)}"` : ''),
        lead: 'Watch the deployment while the freeze holds:',
        command: status,
      };
    }
    case 'hotfix': {
      const hf = c.hotfix;
      return {
        emoji: '🚑',
        title: `Hotfix ${sv} to ${env} started`,
        what: `Hotfix ${sv} to ${env} started by ${c.requester}` +
          (hf ? `, skipping ${hf.skipped}: "${brief(hf.reason)}"` : '') + `; at its gate it ${c.needs.startsWith('needs') ? c.needs : `needs: ${c.needs}`}`,
        lead: 'Check it, then approve when the gate opens:',
        command: c.approveCommand,
      };
    }
    default: {
      const never: never = kind;
      return { emoji: '', title: `${sv}: ${String(never)}`, what: `${sv}: ${String(never)}`, lead: 'See:', command: status };
    }
  }
}

/** The facts shown under the sentence, in order, each label with its (clean) value. */
function facts(c: Clean): Array<{ label: string; value: string; url?: string }> {
  const out: Array<{ label: string; value: string; url?: string }> = [
    { label: 'Service', value: c.service },
    { label: 'Version', value: c.tag ? `${c.version} (${c.tag})` : c.version },
    { label: 'Environment', value: c.environment },
    { label: 'Requested by', value: c.requester },
    { label: 'Needs', value: c.needs },
  ];
  const add = (label: string, value: string | undefined, url?: string) => {
    if (value) out.push({ label, value, ...(url ? { url } : {}) });
  };
  add('Rule', c.rule);
  add('Times out', c.deadline);
  add('Commit', c.commit?.slice(0, 12));
  add('Digest', c.digest);
  add('Image', c.imageRef);
  add('Smoke', c.smoke);
  if (c.buildRunUrl) add('Build run', c.buildRunUrl, isWebUrl(c.buildRunUrl) ? c.buildRunUrl : undefined);
  add('Freeze', c.freeze);
  if (c.lane) add('Lane', `held by ${c.lane.holder} since ${c.lane.heldSince}; waiting since ${c.lane.waitingSince}`);
  if (c.breakGlass) add('Break-glass', `${c.breakGlass.by}: "${c.breakGlass.reason}"`);
  if (c.hotfix) add('Hotfix', `skips ${c.hotfix.skipped}: "${c.hotfix.reason}"`);
  return out;
}

const isWebUrl = (u: string) => /^https?:\/\/[^\s<>|]+$/i.test(u);

/** Slack mrkdwn: &, < and > are control characters (`<!channel>`, `<url|label>`) and must be entities. */
export function escapeMrkdwn(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Cut escaped mrkdwn to `max` characters without leaving half an entity behind. */
function clipMrkdwn(s: string, max: number): string {
  if (s.length <= max) return s;
  return `${s.slice(0, max - 1).replace(/&[a-z]*$/, '')}…`;
}

const clip = (s: string, max: number) => (s.length > max ? `${s.slice(0, max - 1)}…` : s);

/** A code span in Slack: a backtick would end it early. */
const slackCode = (s: string) => `\`${escapeMrkdwn(s.replace(/`/g, "'"))}\``;

/** A link in mrkdwn; a URL with characters Slack's link syntax cannot carry is shown as text. */
const slackLink = (url: string, label: string) => (isWebUrl(url) ? `<${url.replace(/&/g, '&amp;')}|${escapeMrkdwn(label)}>` : escapeMrkdwn(url));

const line = (p: Parts) => clipMrkdwn(escapeMrkdwn(`${p.emoji} ${p.what}. ${p.lead} ${p.command}`), MAX_NOTICE_TEXT);

/** One line: what happened and what to do next (Slack's `text`, used in notifications). */
export function noticeText(kind: NoticeKind, s: GateSummary): string {
  return line(parts(kind, clean(s)));
}

/** The Slack-compatible message: { text, blocks } with a header/section per fact, the approve command in a code span, the Web UI link as a button or link. */
export function noticeMessage(kind: NoticeKind, s: GateSummary): { text: string; blocks: unknown[] } {
  const c = clean(s);
  const p = parts(kind, c);
  const text = line(p);
  const field = (f: { label: string; value: string; url?: string }) => ({
    type: 'mrkdwn',
    text: clipMrkdwn(`*${escapeMrkdwn(f.label)}*\n${f.url ? slackLink(f.url, f.value) : escapeMrkdwn(f.value)}`, FIELD_MAX),
  });
  const all = facts(c);
  const blocks: unknown[] = [
    { type: 'header', text: { type: 'plain_text', text: clip(`${p.emoji} ${p.title}`, HEADER_MAX), emoji: true } },
    { type: 'section', text: { type: 'mrkdwn', text: clipMrkdwn(escapeMrkdwn(`${p.what}.`), SECTION_MAX) } },
  ];
  for (let i = 0; i < all.length; i += FIELDS_PER_SECTION) {
    blocks.push({ type: 'section', fields: all.slice(i, i + FIELDS_PER_SECTION).map(field) });
  }
  blocks.push({ type: 'section', text: { type: 'mrkdwn', text: clipMrkdwn(`${escapeMrkdwn(p.lead)}\n${slackCode(p.command)}`, SECTION_MAX) } });
  if (c.webUiUrl && isWebUrl(c.webUiUrl) && c.webUiUrl.length <= BUTTON_URL_MAX) {
    blocks.push({
      type: 'actions',
      elements: [{ type: 'button', text: { type: 'plain_text', text: 'Open in Temporal Web UI', emoji: true }, url: c.webUiUrl, action_id: 'gantry-open-web-ui' }],
    });
  }
  blocks.push({
    type: 'context',
    elements: [{
      type: 'mrkdwn',
      text: clipMrkdwn(escapeMrkdwn(`gantry · ${kind} · ${c.service} ${c.version} · ${c.environment}`) +
        (c.webUiUrl ? ` · ${slackLink(c.webUiUrl, 'Web UI')}` : ''), SECTION_MAX),
    }],
  });
  return { text, blocks };
}

/** Markdown: backslash before every character that could start markup (links, emphasis, HTML, tables). */
function mdEscape(s: string): string {
  return s.replace(/[\\`*_{}[\]()<>#|~&!]/g, '\\$&');
}

/** An inline code span whose fence is longer than any run of backticks inside. */
function mdCode(s: string): string {
  const longest = Math.max(0, ...(s.match(/`+/g) ?? []).map((r) => r.length));
  const fence = '`'.repeat(longest + 1);
  const pad = s.startsWith('`') || s.endsWith('`') ? ' ' : '';
  return `${fence}${pad}${s}${pad}${fence}`;
}

/** A URL inside markdown's `(…)`: characters that end it or break it, percent-encoded. */
const mdUrl = (u: string) => u.replace(/[()<>\s\\]/g, (ch) => `%${ch.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);

/** Markdown for the Web UI's current details (setCurrentDetails) — the same summary as the notice. */
export function gateSummaryMarkdown(kind: NoticeKind, s: GateSummary): string {
  const c = clean(s);
  const p = parts(kind, c);
  const lines = [`### ${p.emoji} ${mdEscape(p.title)}`, '', `${mdEscape(p.what)}.`, '', `${mdEscape(p.lead)} ${mdCode(p.command)}`, ''];
  for (const f of facts(c)) {
    const value = f.url ? `[${mdEscape(f.value)}](${mdUrl(f.url)})` : mdEscape(f.value);
    lines.push(`- **${mdEscape(f.label)}:** ${value}`);
  }
  if (c.webUiUrl && isWebUrl(c.webUiUrl)) lines.push('', `[Open this release in the Temporal Web UI](${mdUrl(c.webUiUrl)})`);
  const md = lines.join('\n');
  return md.length > MAX_NOTICE_MARKDOWN ? `${md.slice(0, MAX_NOTICE_MARKDOWN - 1).replace(/\\$/, '')}…` : md;
}

/** encodeURIComponent that never throws: a lone surrogate half becomes U+FFFD. */
function encode(s: string): string {
  return encodeURIComponent(s.replace(/\p{Cs}/gu, '\uFFFD'));
}

/** The Web UI URL of a workflow: `${base}/namespaces/${ns}/workflows/${encodeURIComponent(id)}/${runId}/history`. */
export function webUiLink(base: string, namespace: string, workflowId: string, runId: string): string {
  const root = base.replace(/\/+$/, '');
  return `${root}/namespaces/${encode(namespace)}/workflows/${encode(workflowId)}/${encode(runId)}/history`;
}

/** The receiver's idempotency key of a notice: one per release run, kind and environment. */
export function noticeIdempotencyKey(req: Pick<NoticeRequest, 'kind' | 'workflowId' | 'runId'> & { environment: string }): string {
  // Header values are bytes: anything outside printable ASCII is percent-encoded so the key stays one header line.
  const part = (v: string) => v.replace(/[^\x21-\x7e]/gu, encode);
  return `${part(req.workflowId)}/${part(req.runId)}/${part(req.kind)}/${part(req.environment)}`;
}
