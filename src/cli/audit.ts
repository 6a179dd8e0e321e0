/**
 * `gantry audit verify <file>`: check the hash chain of an audit log (src/record/audit-chain.ts) offline, and
 * name the first line that was edited, removed, reordered, copied or cut off. Exit 0 when the chain is intact,
 * 15 (AuditChainBroken) when it is not, 2 when the file cannot be read.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Command } from 'commander';
import { UsageError } from '../client/errors';
import { verifyChain, type ChainReport } from '../record/audit-chain';
import { err, out, setExitCode } from './common';
import { ExitCode } from './exit-codes';

interface VerifyOptions {
  json?: boolean;
}

export async function readInput(file: string, what: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'does not exist' : code === 'EISDIR' ? 'is a directory' : code === 'EACCES' ? 'is not readable by you' : `cannot be read (${code ?? String(e)})`;
    throw new UsageError(`The ${what} ${file} ${why}: pass the path of the file to check.`);
  }
}

export function formatChainReport(file: string, r: ChainReport): string {
  const lines: string[] = [];
  if (r.ok) {
    if (r.lines === 0) return `Audit log ${file} is empty: nothing to verify, nothing wrong.`;
    lines.push(`Audit log ${file} is intact: ${r.lines} line(s), each chained to the one before it.`);
    if (r.unchained > 0) {
      lines.push(`Lines 1–${r.unchained} were written before gantry chained its log: only line ${r.unchained} is covered (by line ${r.unchained + 1}); the lines before it are not protected.`);
    }
    lines.push(`Head: line ${r.head!.line}, ${r.head!.sha256}. Keep it somewhere else to notice lines cut off the end later.`);
    return lines.join('\n');
  }
  const p = r.problem!;
  lines.push(`Audit log ${file} is BROKEN at line ${p.line} (${p.kind}): ${p.message}`);
  if (p.line > 1) lines.push(`Lines 1–${p.line - 1} are intact.`);
  return lines.join('\n');
}

export function auditCommand(): Command {
  const cmd = new Command('audit')
    .summary('check the audit log')
    .description('The audit log (announce.auditLog) is append-only JSON lines, each carrying the hash of the line before it.');
  cmd
    .command('verify')
    .summary('check an audit log\'s hash chain; name the first edited, removed or reordered line')
    .description(
      'Reads the file (no server needed) and checks every line: its own hash, its number, and that it names the ' +
        'hash of the line before it. Exit 0 when the chain is intact, 15 when a line was edited, removed, ' +
        'reordered, copied or cut off (the report names the line), 2 when the file cannot be read.',
    )
    .argument('<file>', 'the audit log, e.g. /var/lib/gantry/audit/releases.jsonl')
    .option('--json', 'print the report as JSON: {file, ok, lines, unchained, head?, problem?}')
    .exitOverride()
    .showHelpAfterError('(run `gantry audit verify --help` for its options)')
    .configureOutput({ outputError: (str, write) => write(err.style.bad(str)) })
    .action(async (file: string, opts: VerifyOptions) => {
      const buf = await readInput(file, 'audit log');
      const report = verifyChain(buf);
      const shown = path.resolve(file);
      if (opts.json) out.json({ file: shown, ...report });
      else out.print(report.ok ? formatChainReport(shown, report) : out.style.bad(formatChainReport(shown, report)));
      if (!report.ok) setExitCode(ExitCode.AuditChainBroken);
    });
  return cmd;
}
