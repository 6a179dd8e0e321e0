import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ApplicationFailure } from '@temporalio/common';
import { describeSecretRef, redact, resolveSecret } from '../../src/activities/secrets';
import { GantryErrorType } from '../../src/shared/errors';

const dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-secrets-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function failure(fn: () => unknown): ApplicationFailure {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ApplicationFailure);
    return err as ApplicationFailure;
  }
  throw new Error('expected resolveSecret to throw');
}

describe('resolveSecret', () => {
  it('reads an environment variable by name', () => {
    expect(resolveSecret({ env: 'HOOK' }, { HOOK: 'https://chat.example/hook/abc' })).toBe('https://chat.example/hook/abc');
  });

  it('refuses a missing variable with a non-retryable SecretMissing naming the variable and how to set it', () => {
    const f = failure(() => resolveSecret({ env: 'GANTRY_WEBHOOK_URL' }, {}));
    expect(f.type).toBe(GantryErrorType.SecretMissing);
    expect(f.nonRetryable).toBe(true);
    expect(f.message).toContain('{env: GANTRY_WEBHOOK_URL}');
    expect(f.message).toContain('not set');
    expect(f.message).toMatch(/Set the environment variable GANTRY_WEBHOOK_URL/);
  });

  it('treats an empty variable as missing and never echoes its value', () => {
    const f = failure(() => resolveSecret({ env: 'TOKEN' }, { TOKEN: '   ' }));
    expect(f.message).toContain('empty');
    expect(f.type).toBe(GantryErrorType.SecretMissing);
  });

  it('reads a file and drops the trailing line break editors add', () => {
    const file = path.join(dir, 'token');
    writeFileSync(file, 's3cr3t-token\n');
    expect(resolveSecret({ file }, {})).toBe('s3cr3t-token');
  });

  it('keeps a multi-line key intact apart from the final newline', () => {
    const file = path.join(dir, 'key');
    const key = '-----BEGIN OPENSSH PRIVATE KEY-----\nabc\ndef\n-----END OPENSSH PRIVATE KEY-----';
    writeFileSync(file, `${key}\n`);
    expect(resolveSecret({ file }, {})).toBe(key);
  });

  it('names a missing file and how to provide it', () => {
    const file = path.join(dir, 'nope');
    const f = failure(() => resolveSecret({ file }, {}));
    expect(f.type).toBe(GantryErrorType.SecretMissing);
    expect(f.nonRetryable).toBe(true);
    expect(f.message).toContain(`{file: ${file}} does not exist`);
    expect(f.message).toMatch(/Write the secret into that file/);
  });

  it('refuses an empty file and a directory without reading anything into the message', () => {
    const empty = path.join(dir, 'empty');
    writeFileSync(empty, '\n');
    expect(failure(() => resolveSecret({ file: empty }, {})).message).toContain('is empty');
    expect(failure(() => resolveSecret({ file: dir }, {})).message).toContain('is a directory');
  });

  it('says when the worker user cannot read the file', () => {
    if (process.getuid?.() === 0) {
      // root reads any file; prove the branch with a path whose parent is a file instead (ENOTDIR).
      const parent = path.join(dir, 'plain');
      writeFileSync(parent, 'x');
      expect(failure(() => resolveSecret({ file: path.join(parent, 'child') }, {})).message).toContain('cannot be read (ENOTDIR)');
      return;
    }
    const file = path.join(dir, 'locked');
    writeFileSync(file, 'value');
    chmodSync(file, 0o000);
    expect(failure(() => resolveSecret({ file }, {})).message).toContain('not readable by the worker user');
  });

  it('describes references without values and redacts values from tool output', () => {
    expect(describeSecretRef({ env: 'A' })).toBe('env A');
    expect(describeSecretRef({ file: '/x/y' })).toBe('file /x/y');
    expect(redact('fatal: https://tok-12345@host/repo failed tok-12345', ['tok-12345'])).toBe('fatal: https://***@host/repo failed ***');
  });
});
