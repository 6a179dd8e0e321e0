import { describe, expect, it } from 'vitest';
import { redactOutput } from '../../src/activities/secrets';

const PEM = ['-----BEGIN RSA PRIVATE KEY-----', 'MIIEpAIBAAKCAQEA1c2+exampleexampleexample', 'bW9yZWtleW1hdGVyaWFsbW9yZWtleW1hdGVyaWFs', '-----END RSA PRIVATE KEY-----'].join('\n');
const OPENSSH = ['-----BEGIN OPENSSH PRIVATE KEY-----', 'b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ', 'AAAAMwAAAAtzc2gtZWQyNTUxOQAAACBexample', '-----END OPENSSH PRIVATE KEY-----'].join('\n');

describe('redactOutput', () => {
  it('masks every known secret value, longest first, and multi-line values line by line', () => {
    const key = 'line-one-of-a-key-AAAA\nline-two-of-a-key-BBBB\n';
    const out = redactOutput('token=s3cr3t-token-value and s3cr3t-token-value-longer\nline-two-of-a-key-BBBB printed alone', ['s3cr3t-token-value', 's3cr3t-token-value-longer', key, undefined, '']);
    expect(out).toBe('token=*** and ***\n*** printed alone');
  });

  it('masks private key blocks (PEM, OpenSSH), also one cut off at either end', () => {
    expect(redactOutput(`before\n${PEM}\nafter`, [])).toBe('before\n-----BEGIN RSA PRIVATE KEY----- *** -----END RSA PRIVATE KEY-----\nafter');
    const ssh = redactOutput(`x ${OPENSSH} y`, []);
    expect(ssh).toBe('x -----BEGIN OPENSSH PRIVATE KEY----- *** -----END OPENSSH PRIVATE KEY----- y');
    // The output's end cut the block: masked to the end.
    expect(redactOutput(`log\n${OPENSSH.split('\n').slice(0, 2).join('\n')}`, [])).toBe('log\n-----BEGIN OPENSSH PRIVATE KEY----- *** -----END OPENSSH PRIVATE KEY-----');
    // Only the end of the output was kept: masked from the start.
    expect(redactOutput(`${PEM.split('\n').slice(2).join('\n')}\nnext line`, [])).toBe('*** -----END RSA PRIVATE KEY-----\nnext line');
  });

  it.each([
    ['a GitHub classic token', 'using ghp_abcdefghijklmnopqrstuvwxyz0123456789 now', 'using ghp_*** now'],
    ['a GitHub OAuth token', 'GH=gho_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345', 'GH=gho_***'],
    ['a GitHub fine-grained token', 'github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz', 'github_pat_***'],
    ['a Slack bot token', 'slack xoxb-1234567890-abcdefghij', 'slack xoxb-***'],
    ['a Slack user token', 'xoxp-1234-5678-abcdef', 'xoxp-***'],
    ['an Authorization header', 'curl -H "Authorization: Basic dXNlcjpwYXNz" http://x', 'curl -H "Authorization: ***" http://x'],
    ['an Authorization header line', '> authorization: token abc123def456', '> authorization: ***'],
    ['a bearer token', 'sent Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig', 'sent Bearer ***'],
    ['an AWS access key id', 'key AKIAIOSFODNN7EXAMPLE used', 'key AKIA*** used'],
    ['an AWS secret key assignment', 'aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', 'aws_secret_access_key = ***'],
    ['a URL with user:password', 'cloning https://deploy:hunter2@git.example.com/app.git', 'cloning https://***@git.example.com/app.git'],
    ['a database URL', 'DATABASE_URL=postgres://app:pa55w0rd@db:5432/app', 'DATABASE_URL=postgres://***@db:5432/app'],
  ])('masks %s', (_what, input, expected) => {
    expect(redactOutput(input, [])).toBe(expected);
  });

  it('leaves ordinary output alone', () => {
    const text = 'PASS src/app.test.ts (12 tests)\nssh://git@github.com/acme/app.git\nhttp://localhost:8080/health ok\nauthorization failed for user\n';
    expect(redactOutput(text, ['unrelated-secret'])).toBe(text);
  });
});
