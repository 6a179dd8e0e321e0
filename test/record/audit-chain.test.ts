/**
 * The hash-chained audit log: lines appended with appendToChain to a real file, then edited, removed,
 * reordered, copied or cut off the way someone with the file would; `verifyChain` and the BUILT
 * `gantry audit verify` (node bin/gantry.js, after `npm run build`) name the first wrong line and exit 15,
 * an intact log exits 0.
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AUDIT_GENESIS, appendToChain, sealLine, verifyChain } from '../../src/record/audit-chain';
import { gantry, removeTempDirs, requireBuild, show, tempDir } from '../cli/harness';

const sha = (b: string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

function record(i: number) {
  return {
    id: `release-hello-1.0.${i}/run-${i}/released`,
    time: `2026-02-0${i}T10:00:00.000Z`,
    actor: i % 2 ? 'alice' : 'bob',
    action: 'released',
    release: { service: 'hello', version: `1.0.${i}`, tag: `v1.0.${i}`, commit: 'c'.repeat(40), workflowId: `release-hello-1.0.${i}`, runId: `run-${i}` },
    digest: `sha256:${String(i).repeat(64)}`,
    imageRef: `registry/hello@sha256:${String(i).repeat(64)}`,
    hosts: ['deploy@10.0.0.5'],
    approvers: ['alice'],
  };
}

let dir: string;
let file: string;
let lines: string[];
const write = (ls: string[], tail = '\n') => writeFileSync(file, ls.join('\n') + tail);

beforeAll(() => requireBuild());
afterAll(() => removeTempDirs());
beforeEach(async () => {
  dir = tempDir('gantry-audit-');
  file = path.join(dir, 'releases.jsonl');
  await appendToChain(file, [record(1), record(2)]);
  await appendToChain(file, [record(3), record(4), record(5)]);
  lines = readFileSync(file, 'utf8').split('\n').slice(0, -1);
});

describe('the audit chain', () => {
  it('chains every line to the exact bytes of the one before it, the first to sha256 of ""', () => {
    const parsed = lines.map((l) => JSON.parse(l) as { seq: number; prev: string; hash: string });
    expect(parsed.map((p) => p.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(parsed[0]!.prev).toBe(AUDIT_GENESIS);
    expect(AUDIT_GENESIS).toBe('sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    for (let i = 1; i < 5; i++) expect(parsed[i]!.prev).toBe(sha(lines[i - 1]!));
    expect(verifyChain(readFileSync(file))).toEqual({ ok: true, lines: 5, unchained: 0, head: { line: 5, sha256: sha(lines[4]!) } });
  });

  it('appends a line once per id, whoever asks again', async () => {
    const again = await appendToChain(file, [record(4), record(6)]);
    expect(again.map((l) => [l.seq, l.appended])).toEqual([[4, false], [6, true]]);
    expect(again[0]!.sha256).toBe(sha(lines[3]!));
    expect(readFileSync(file, 'utf8').split('\n').slice(0, -1)).toHaveLength(6);
  });

  it('finds an edited line, a re-hashed edited line, removed lines, reordered, copied and cut-off lines', () => {
    const check = (ls: string[], tail = '\n') => {
      write(ls, tail);
      return verifyChain(readFileSync(file)).problem;
    };
    const edited = lines.map((l, i) => (i === 2 ? l.replace('"actor":"alice"', '"actor":"mallory"') : l));
    expect(check(edited)).toEqual({ line: 3, kind: 'edited', message: 'line 3 was edited: its content no longer matches its hash.' });

    // An editor who knows the scheme recomputes the line's own hash: the next line's prev still gives it away.
    const p3 = JSON.parse(lines[2]!) as Record<string, unknown>;
    const { seq, prev, hash: _hash, ...content } = p3;
    const resealed = sealLine({ ...content, actor: 'mallory' }, seq as number, prev as string);
    expect(check(lines.map((l, i) => (i === 2 ? resealed : l)))).toMatchObject({ line: 3, kind: 'edited', message: "line 3 was changed after line 4 was written: line 4's prev does not match it." });

    expect(check(lines.map((l, i) => (i === 1 ? l.replace('{', '{ ') : l)))).toMatchObject({ line: 2, kind: 'edited', message: expect.stringContaining('not in the form gantry writes') });
    expect(check(lines.filter((_, i) => i !== 2))).toEqual({ line: 3, kind: 'removed', message: 'record #3 is missing before line 3: a line was removed.' });
    expect(check(lines.slice(2))).toMatchObject({ line: 1, kind: 'removed', message: 'records #1–#2 are missing before line 1: lines were removed.' });
    expect(check([lines[0]!, lines[2]!, lines[1]!, lines[3]!, lines[4]!])).toEqual({ line: 2, kind: 'reordered', message: 'line 2 holds record #3, and record #2 is at line 3: lines were reordered.' });
    expect(check([...lines.slice(0, 3), lines[1]!, ...lines.slice(3)])).toMatchObject({ line: 4, kind: 'copied' });
    expect(check(lines, '')).toEqual({ line: 5, kind: 'cut-off', message: 'line 5 has no line break at its end: a write was cut short, or the file was edited.' });
    expect(check([...lines, lines[4]!.slice(0, 40)], '')).toMatchObject({ line: 6, kind: 'edited' });
    writeFileSync(file, `${lines.join('\n')}\n${lines[4]!.slice(0, 40)}`);
    expect(verifyChain(readFileSync(file)).problem).toMatchObject({ line: 6 });
  });

  it('accepts lines written before the chain at the start only, and refuses a log with no chained line', () => {
    const old = ['{"id":"a","action":"released"}', '{"id":"b","action":"released"}'];
    write(old);
    expect(verifyChain(readFileSync(file))).toMatchObject({ ok: false, problem: { line: 1, kind: 'unchained' } });
    const first = sealLine(record(3), 3, sha(old[1]!));
    write([...old, first]);
    expect(verifyChain(readFileSync(file))).toMatchObject({ ok: true, lines: 3, unchained: 2 });
    write([old[0]!, '{"id":"b","action":"rolled_back"}', first]);
    expect(verifyChain(readFileSync(file)).problem).toMatchObject({ line: 2, kind: 'edited' });
    write([...lines.slice(0, 2), old[0]!, ...lines.slice(2)]);
    expect(verifyChain(readFileSync(file)).problem).toMatchObject({ line: 3, kind: 'edited', message: 'line 3 is not a chained audit record: it was edited, or written by something other than gantry.' });
  });
});

describe('gantry audit verify (the built CLI)', () => {
  it('exits 0 on an intact log and prints its head', async () => {
    const r = await gantry(['audit', 'verify', file]);
    expect(r.code, show(r)).toBe(0);
    expect(r.stdout).toContain(`Audit log ${file} is intact: 5 line(s), each chained to the one before it.`);
    expect(r.stdout).toContain(`Head: line 5, ${sha(lines[4]!)}`);
    const j = await gantry(['audit', 'verify', file, '--json']);
    expect(j.code, show(j)).toBe(0);
    expect(JSON.parse(j.stdout)).toEqual({ file, ok: true, lines: 5, unchained: 0, head: { line: 5, sha256: sha(lines[4]!) } });
  });

  it('names the edited, removed or reordered line and exits 15', async () => {
    const cases: [string, string[], string][] = [
      ['edited', lines.map((l, i) => (i === 3 ? l.replace('"approvers":["alice"]', '"approvers":["bob"]') : l)), `is BROKEN at line 4 (edited): line 4 was edited`],
      ['removed', lines.filter((_, i) => i !== 1), 'is BROKEN at line 2 (removed): record #2 is missing before line 2'],
      ['reordered', [lines[0]!, lines[1]!, lines[3]!, lines[2]!, lines[4]!], 'is BROKEN at line 3 (reordered): line 3 holds record #4, and record #3 is at line 4'],
    ];
    for (const [what, ls, says] of cases) {
      write(ls);
      const r = await gantry(['audit', 'verify', file]);
      expect(r.code, `${what}: ${show(r)}`).toBe(15);
      expect(r.stdout, what).toContain(says);
      const j = await gantry(['audit', 'verify', file, '--json']);
      expect(j.code, show(j)).toBe(15);
      expect((JSON.parse(j.stdout) as { problem: { kind: string } }).problem.kind).toBe(what);
    }
  });

  it('exits 2 when the file is not there', async () => {
    const r = await gantry(['audit', 'verify', path.join(dir, 'nope.jsonl')]);
    expect(r.code, show(r)).toBe(2);
    expect(r.stderr).toContain('does not exist');
  });
});
