/**
 * Notices to approvers, as words: each kind's one-line text says what happened and what to do next, the Slack
 * blocks carry the facts, the approve command and the Web UI link, values from people are escaped, every part is
 * bounded, and the Web UI's markdown tells the same story.
 */
import { describe, expect, it } from 'vitest';
import {
  gateSummaryMarkdown,
  MAX_NOTICE_MARKDOWN,
  MAX_NOTICE_TEXT,
  NOTICE_KINDS,
  noticeIdempotencyKey,
  noticeMessage,
  webUiLink,
  type GateSummary,
  type NoticeKind,
} from '../../src/shared/notices';

const WEB_UI = 'http://127.0.0.1:8233/namespaces/default/workflows/release-hello-1.4.0/0195c2c4-7cb7-7deb-9e74-4dfd914f7bff/history';

function summary(overrides: Partial<GateSummary> = {}): GateSummary {
  return {
    service: 'hello',
    version: '1.4.0',
    environment: 'production',
    tag: 'v1.4.0',
    commit: '4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c',
    digest: 'sha256:4f5e6d7c8b9a00112233445566778899aabbccddeeff00112233445566778899',
    imageRef: '127.0.0.1:5000/hello@sha256:4f5e6d7c8b9a00112233445566778899aabbccddeeff00112233445566778899',
    smoke: 'version: 200 with version = 1.4.0; health: 200',
    buildRunUrl: 'https://github.example/acme/hello/actions/runs/42',
    requester: 'operator',
    needs: 'needs 1 more from sre (carol or dave)',
    rule: '1 of sre',
    approveCommand: 'gantry approve hello 1.4.0 --as <name>',
    webUiUrl: WEB_UI,
    deadline: '2026-02-04T10:00:00.000Z',
    ...overrides,
  };
}

/** Slack's text with its three entities turned back into characters: what a person reads. */
const shown = (s: string) => s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');

type Block = { type: string; text?: { type: string; text: string }; fields?: { text: string }[]; elements?: { type: string; url?: string; text?: unknown }[] };
const blocksOf = (kind: NoticeKind, s: GateSummary) => noticeMessage(kind, s).blocks as Block[];

describe('notice text', () => {
  it('says a gate opened, what it needs and how to approve, in one line', () => {
    const { text } = noticeMessage('gate-opened', summary());
    expect(shown(text)).toBe('⏳ hello 1.4.0 waits for approval to production: needs 1 more from sre (carol or dave). Approve: gantry approve hello 1.4.0 --as <name>');
    expect(text).not.toMatch(/\n/);
  });

  it('reminds with the deadline and what happens without a decision', () => {
    const text = shown(noticeMessage('gate-reminder', summary()).text);
    expect(text).toContain('hello 1.4.0 still waits for approval to production and times out at 2026-02-04T10:00:00.000Z: needs 1 more from sre (carol or dave)');
    expect(text).toContain('Without a decision by then nothing is deployed');
    expect(text).toContain('Approve: gantry approve hello 1.4.0 --as <name>');
  });

  it('says a timed-out release deployed nothing and how to start it again', () => {
    const text = shown(noticeMessage('gate-timed-out', summary()).text);
    expect(text).toContain('hello 1.4.0 was not approved within the approval timeout (it ran out at 2026-02-04T10:00:00.000Z); nothing was deployed to production');
    expect(text).toContain('To release it, start it again: gantry start hello 1.4.0');
    expect(text).not.toContain('gantry approve');
  });

  it('names the lane holder and since when the release waits', () => {
    const text = shown(noticeMessage('lane-wait', summary({
      lane: { holder: 'hello 1.3.9', heldSince: '2026-02-01T09:00:00.000Z', waitingSince: '2026-02-01T09:05:00.000Z' },
    })).text);
    expect(text).toContain('hello 1.4.0 has waited for the production lane since 2026-02-01T09:05:00.000Z: hello 1.3.9 holds it (since 2026-02-01T09:00:00.000Z)');
    expect(text).toContain('gantry status hello 1.4.0');
  });

  it('says who broke the glass through which freeze, and why', () => {
    const text = shown(noticeMessage('break-glass', summary({ freeze: 'weekend (until Monday 08:00 UTC)', breakGlass: { by: 'erin', reason: 'payments are down' } })).text);
    expect(text).toContain('hello 1.4.0 passed a freeze (weekend (until Monday 08:00 UTC)) to production by break-glass: erin, "payments are down"');
    expect(text).toContain('gantry status hello 1.4.0');
  });

  it('says a hotfix started, who started it, what it skips and why', () => {
    const text = shown(noticeMessage('hotfix', summary({ version: '1.4.1', approveCommand: 'gantry approve hello 1.4.1 --as <name>', hotfix: { reason: 'CVE-2026-1234 in the login', skipped: ['staging', 'qa'] } })).text);
    expect(text).toContain('Hotfix hello 1.4.1 to production started by operator, skipping staging, qa: "CVE-2026-1234 in the login"; at its gate it needs 1 more from sre (carol or dave)');
    expect(text).toContain('gantry approve hello 1.4.1 --as <name>');
  });

  it('escapes Slack control characters in names and reasons, so nobody can ping the channel or fake a link', () => {
    const msg = noticeMessage('break-glass', summary({ requester: '<!channel>', breakGlass: { by: 'mallory <@U123>', reason: 'see <https://evil.example|the runbook> & hurry' } }));
    const all = JSON.stringify(msg);
    expect(all).not.toMatch(/<!channel>|<@U123>|<https:\/\/evil/);
    expect(msg.text).toContain('mallory &lt;@U123&gt;, "see &lt;https://evil.example|the runbook&gt; &amp; hurry"');
    expect(all).toContain('&lt;!channel&gt;');
  });

  it('strips newlines and control characters, so the text stays one line', () => {
    const { text } = noticeMessage('break-glass', summary({ breakGlass: { by: 'erin', reason: 'line one\nline two\u001b[31m\u202e' } }));
    expect(text).not.toMatch(/[\n\r\u001b\u202e]/);
    expect(text).toContain('line oneline two[31m');
  });
});

describe('notice blocks', () => {
  it('has a header, the sentence, a field per fact, the approve command in a code span and the Web UI button', () => {
    const blocks = blocksOf('gate-opened', summary());
    expect(blocks[0]).toMatchObject({ type: 'header', text: { type: 'plain_text', text: '⏳ hello 1.4.0 waits for approval to production' } });
    expect(blocks[1]!.text!.text).toBe('hello 1.4.0 waits for approval to production: needs 1 more from sre (carol or dave).');
    const fields = blocks.flatMap((b) => b.fields ?? []).map((f) => f.text);
    expect(fields).toEqual(expect.arrayContaining([
      '*Service*\nhello', '*Version*\n1.4.0 (v1.4.0)', '*Environment*\nproduction', '*Requested by*\noperator',
      '*Needs*\nneeds 1 more from sre (carol or dave)', '*Rule*\n1 of sre', '*Times out*\n2026-02-04T10:00:00.000Z', '*Commit*\n4f1c2d3e4f5a',
      `*Digest*\n${summary().digest}`, '*Smoke*\nversion: 200 with version = 1.4.0; health: 200',
      '*Build run*\n<https://github.example/acme/hello/actions/runs/42|https://github.example/acme/hello/actions/runs/42>',
    ]));
    for (const b of blocks) if (b.fields) expect(b.fields.length).toBeLessThanOrEqual(10);
    expect(blocks.some((b) => b.text?.text === 'Approve:\n`gantry approve hello 1.4.0 --as &lt;name&gt;`')).toBe(true);
    const button = blocks.find((b) => b.type === 'actions')!.elements![0]!;
    expect(button).toMatchObject({ type: 'button', url: WEB_UI });
    expect(JSON.stringify(blocks.at(-1))).toContain(`<${WEB_UI}|Web UI>`);
  });

  it('shows the freeze, the lane, the break-glass and the hotfix as facts when they are there', () => {
    const fields = blocksOf('gate-opened', summary({
      freeze: 'weekend', lane: { holder: 'hello 1.3.9', heldSince: 'a', waitingSince: 'b' },
      breakGlass: { by: 'erin', reason: 'payments down' }, hotfix: { reason: 'CVE', skipped: ['staging'] },
    })).flatMap((b) => b.fields ?? []).map((f) => f.text);
    expect(fields).toEqual(expect.arrayContaining([
      '*Freeze*\nweekend', '*Lane*\nheld by hello 1.3.9 since a; waiting since b', '*Break-glass*\nerin: "payments down"', '*Hotfix*\nskips staging: "CVE"',
    ]));
  });

  it('has no button without a Web UI link, and never links a URL that could break Slack\'s link syntax', () => {
    const blocks = blocksOf('gate-opened', summary({ webUiUrl: undefined, buildRunUrl: 'https://x.example/a|<!here>' }));
    expect(blocks.some((b) => b.type === 'actions')).toBe(false);
    expect(JSON.stringify(blocks)).not.toContain('<!here>');
  });

  it('keeps every part within Slack\'s limits however long the input', () => {
    const long = 'x'.repeat(20_000);
    for (const kind of NOTICE_KINDS) {
      const msg = noticeMessage(kind, summary({
        service: long, version: long, environment: long, requester: long, needs: long, rule: long, approveCommand: long, smoke: long,
        freeze: '&'.repeat(20_000), imageRef: long, buildRunUrl: `https://x.example/${long}`, webUiUrl: `https://x.example/${long}`,
        hotfix: { reason: long, skipped: Array.from({ length: 500 }, () => long) }, breakGlass: { by: long, reason: '<'.repeat(20_000) },
        lane: { holder: long, heldSince: long, waitingSince: long },
      }));
      expect(msg.text.length).toBeLessThanOrEqual(MAX_NOTICE_TEXT);
      expect(msg.text).not.toMatch(/&[a-z]*…$/);
      const blocks = msg.blocks as Block[];
      expect(blocks.length).toBeLessThanOrEqual(50);
      expect(blocks[0]!.text!.text.length).toBeLessThanOrEqual(150);
      for (const b of blocks) {
        if (b.text && b.type !== 'header') expect(b.text.text.length).toBeLessThanOrEqual(3000);
        for (const f of b.fields ?? []) expect(f.text.length).toBeLessThanOrEqual(2000);
        for (const e of b.elements ?? []) if (e.url) expect(e.url.length).toBeLessThanOrEqual(3000);
      }
      expect(JSON.stringify(msg).length).toBeLessThan(40_000);
      expect(gateSummaryMarkdown(kind, summary({ needs: long, smoke: long, breakGlass: { by: long, reason: long } })).length).toBeLessThanOrEqual(MAX_NOTICE_MARKDOWN);
    }
  });
});

describe('gate summary markdown', () => {
  it('tells the same story with the approve command as code and the Web UI link', () => {
    const md = gateSummaryMarkdown('gate-opened', summary());
    expect(md).toContain('### ⏳ hello 1.4.0 waits for approval to production');
    expect(md).toContain('hello 1.4.0 waits for approval to production: needs 1 more from sre \\(carol or dave\\).');
    expect(md).toContain('Approve: `gantry approve hello 1.4.0 --as <name>`');
    expect(md).toContain(`[Open this release in the Temporal Web UI](${WEB_UI})`);
    expect(md).toContain('- **Commit:** 4f1c2d3e4f5a');
    expect(md).toContain('- **Build run:** [https://github.example/acme/hello/actions/runs/42](https://github.example/acme/hello/actions/runs/42)');
  });

  it('has a sentence for every kind and no link when there is no Web UI', () => {
    for (const kind of NOTICE_KINDS) {
      const md = gateSummaryMarkdown(kind, summary({ webUiUrl: undefined }));
      expect(md.split('\n')[0]).toMatch(/^### \S+ /);
      expect(md).not.toContain('Temporal Web UI');
      expect(md).toMatch(/`gantry (approve|start|status) hello 1\.4\.0/);
    }
  });

  it('escapes markup in values from people and keeps a command with backticks whole', () => {
    const md = gateSummaryMarkdown('break-glass', summary({
      approveCommand: 'gantry approve `x` --as <name>', breakGlass: { by: '[erin](https://evil.example)', reason: '<img src=x onerror=alert(1)> **now**' },
    }));
    expect(md).not.toContain('[erin](https://evil.example)');
    expect(md).not.toMatch(/(^|[^\\])<img/);
    expect(md).toContain('\\<img src=x onerror=alert\\(1\\)\\>');
    expect(md).toContain('\\[erin\\]\\(https://evil.example\\)');
    expect(md).toContain('\\*\\*now\\*\\*');
    const cmd = gateSummaryMarkdown('gate-opened', summary({ approveCommand: 'gantry approve `x` --as <name>' }));
    expect(cmd).toContain('Approve: ``gantry approve `x` --as <name>``');
  });
});

describe('links and keys', () => {
  it('builds the Web UI link of a workflow run, encoding the workflow id', () => {
    expect(webUiLink('http://127.0.0.1:8233/', 'default', 'release-hello-1.4.0', 'run-1')).toBe('http://127.0.0.1:8233/namespaces/default/workflows/release-hello-1.4.0/run-1/history');
    expect(webUiLink('https://ui.example/temporal', 'prod', 'a b/c?d', 'r')).toBe('https://ui.example/temporal/namespaces/prod/workflows/a%20b%2Fc%3Fd/r/history');
  });

  it('keys a notice by workflow, run, kind and environment, in printable ASCII', () => {
    expect(noticeIdempotencyKey({ workflowId: 'release-hello-1.4.0', runId: 'run-1', kind: 'gate-opened', environment: 'production' }))
      .toBe('release-hello-1.4.0/run-1/gate-opened/production');
    expect(noticeIdempotencyKey({ workflowId: 'w', runId: 'r', kind: 'hotfix', environment: 'prod ü\n\ud800' })).toMatch(/^[\x21-\x7e]+$/);
  });
});
