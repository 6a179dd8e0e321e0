/**
 * `gantry verify <manifest>`: check a signed release manifest offline (src/record/manifest.ts) and say in words
 * what was signed. Exit 0 when it verifies, 16 (ManifestInvalid) on any mismatch, 2 when a file cannot be read.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { formatDuration, formatTime } from '../client/format';
import type { Style } from '../client/style';
import { checkManifest, RELEASE_SIG_NAMESPACE, type ManifestCheck } from '../record/manifest';
import { readInput } from './audit';
import { out, setExitCode } from './common';
import { ExitCode } from './exit-codes';

interface VerifyOptions {
  sig?: string;
  allowedSigners?: string;
  principal?: string;
  auditLog?: string;
  json?: boolean;
}

export function formatManifestCheck(file: string, c: ManifestCheck, st: Style, keysChecked: boolean): string {
  const lines: string[] = [];
  lines.push(`Release manifest ${file} (${c.sha256})`);
  const m = c.manifest;
  if (m) {
    if (!c.ok) lines.push(st.bad('  It does NOT verify: do not trust what it says (below, as written in the file).'));
    const outcome = m.outcome === 'released' ? 'released to production' : `rolled back${m.reason ? ` (${m.reason})` : ''}`;
    lines.push(`  ${m.service} ${m.version} (tag ${m.tag}, commit ${m.commit.slice(0, 12)}): ${outcome}`);
    lines.push(`  digest     ${m.digest}`);
    lines.push(`  image      ${m.imageRef}`);
    lines.push(`  hosts      ${m.hosts.length ? m.hosts.join(', ') : '(none)'}`);
    if (c.approvals.length) {
      lines.push('  approvals');
      for (const a of c.approvals) {
        const mark = a.signature === 'valid' ? `${st.ok('signature valid')}: ` : a.signature === 'invalid' ? `${st.bad('signature INVALID')}: ` : '';
        const when = [a.via ? `via ${a.via}` : '', a.at ? `at ${formatTime(a.at)}` : ''].filter(Boolean).join(' ');
        lines.push(`    ${a.approver}: ${mark}${a.detail}${when ? ` (${when})` : ''}`);
      }
    } else {
      lines.push(`  approvers  ${m.approvers.length ? `${m.approvers.join(', ')} (no approval details recorded)` : '(none)'}`);
    }
    const total = m.steps.reduce((sum, s) => sum + s.durationMs, 0);
    if (m.steps.length) lines.push(`  steps      ${m.steps.map((s) => `${s.step} ${formatDuration(s.durationMs)}`).join(' · ')} · total ${formatDuration(total)}`);
    lines.push(`  workflow   ${m.workflowId}, run ${m.runId}; repository ${m.repo}`);
    if (m.ciRunUrl) lines.push(`  build      ${m.ciRunUrl}`);
    if (m.configSha256) lines.push(`  config     ${m.configSha256}`);
    if (m.auditLine) lines.push(`  audit log  line ${m.auditLine.line}, ${m.auditLine.sha256}${c.audit ? `: ${c.audit.detail}` : ''}`);
    lines.push(`  written    ${formatTime(m.createdAt)}${m.signer ? ` by the worker key ${m.signer.fingerprint}` : ', unsigned'}`);
  }
  lines.push(`Signature: ${c.signature.ok ? st.ok(c.signature.detail) : st.bad(c.signature.detail || 'not valid')}`);
  if (c.signature.ok && !keysChecked) {
    lines.push(`  The key was not checked against an allowed signers file (--allowed-signers): this shows the manifest is unchanged since ` +
      `key ${c.signature.fingerprint} signed it, not whose key that is.`);
  }
  if (c.ok) {
    lines.push(st.ok('VALID: the manifest is exactly what the worker signed.'));
  } else {
    lines.push(st.bad(`NOT VALID (${c.problems.length} problem(s)):`));
    for (const p of c.problems) lines.push(st.bad(`  - ${p}`));
  }
  return lines.join('\n');
}

export function verifyCommand(): Command {
  return new Command('verify')
    .summary('check a signed release manifest offline and print what was signed')
    .description(
      'Checks release-manifest.json against its SSH signature (namespace gantry-release; default file: the ' +
        'manifest path + ".sig"), the signing key against an allowed signers file when given, every approval\'s own ' +
        'signature against its embedded statement, and (with --audit-log) the manifest\'s audit line. No server ' +
        'needed. Exit 0 when it all verifies, 16 on any mismatch (one changed byte in either file is found), 2 ' +
        'when a file cannot be read.',
    )
    .argument('<manifest>', 'the release-manifest.json to check')
    .option('--sig <file>', 'the signature file (default: <manifest>.sig)')
    .option('--allowed-signers <file>', `ALLOWED SIGNERS file (ssh-keygen format) that must list the signing key for namespace ${RELEASE_SIG_NAMESPACE}`)
    .option('--principal <name>', 'with --allowed-signers: the key must be listed for this principal (e.g. the worker\'s name)')
    .option('--audit-log <file>', 'the audit log: the manifest\'s line must be in it, with an intact chain up to it')
    .option('--json', 'print the check as JSON')
    .action(async (file: string, opts: VerifyOptions) => {
      const manifest = await readInput(file, 'manifest');
      const sigFile = opts.sig ?? `${file}.sig`;
      const signature = opts.sig !== undefined || existsSync(sigFile) ? (await readInput(sigFile, 'signature file')).toString('utf8') : undefined;
      const allowedSigners = opts.allowedSigners ? (await readInput(opts.allowedSigners, 'allowed signers file')).toString('utf8') : undefined;
      const auditLog = opts.auditLog ? await readInput(opts.auditLog, 'audit log') : undefined;
      const check = checkManifest({
        manifest,
        ...(signature !== undefined ? { signature } : {}),
        ...(allowedSigners !== undefined ? { allowedSigners } : {}),
        ...(opts.principal !== undefined ? { principal: opts.principal } : {}),
        ...(auditLog ? { auditLog } : {}),
      });
      if (opts.json) out.json({ file: path.resolve(file), signatureFile: signature !== undefined ? path.resolve(sigFile) : null, ...check });
      else out.print(formatManifestCheck(path.resolve(file), check, out.style, allowedSigners !== undefined));
      if (!check.ok) setExitCode(ExitCode.ManifestInvalid);
    });
}
