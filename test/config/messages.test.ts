import { describe, expect, it } from 'vitest';
import { parseDecision, parseVote } from '../../src/shared/release';

describe('approval payloads as they arrive from the Web UI or the CLI', () => {
  it('accepts an approver with an optional reason and trims the name', () => {
    expect(parseVote({ approver: ' alice ', reason: 'looks good' })).toEqual({ ok: true, value: { approver: 'alice', reason: 'looks good' } });
    expect(parseVote({ approver: 'bob' })).toEqual({ ok: true, value: { approver: 'bob' } });
  });

  it.each([
    [undefined, 'payload is nothing'],
    [null, 'payload is null'],
    [['alice'], 'payload is a list'],
    ['alice', 'payload is a string'],
    [{}, '"approver" is missing or not text (got nothing)'],
    [{ approver: 42 }, '"approver" is missing or not text (got a number)'],
    [{ approver: '  ' }, '"approver" is missing or not text (got blank text)'],
    [{ approver: 'a', reason: 7 }, '"reason" must be text, got a number'],
    [{ approver: 'a', aprover: 'b' }, 'unknown field(s) aprover'],
  ])('refuses %j and says what to send', (payload, problem) => {
    const r = parseVote(payload);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.problem).toContain(problem);
      expect(r.problem).toContain('send {"approver": "<name>"');
    }
  });

  it('checks decisions the same way', () => {
    expect(parseDecision({ decision: 'retry', operator: 'carol' })).toEqual({ ok: true, value: { decision: 'retry', operator: 'carol' } });
    const r = parseDecision({ decision: 'again', operator: 'carol' });
    expect(r.ok ? '' : r.problem).toContain('"decision" must be "retry", "abort" or "skip" (got "again")');
    const r2 = parseDecision({ decision: 'abort' });
    expect(r2.ok ? '' : r2.problem).toContain('"operator" is missing');
  });
});
