/**
 * The CHANGELOG section of one version, as release notes. Pure (no I/O), so preflight, announce and the GitHub
 * release all agree on what "the section" is.
 */

/** Escape a string for use inside a RegExp. */
function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * The body of the Markdown section whose heading names `version` (`## [1.2.3] - 2024-05-01`, `## v1.2.3`,
 * `# 1.2.3 (2024-05-01)`), up to the next heading of the same or a higher level; trimmed, without the heading.
 * Undefined when no heading names that exact version (1.2.3 does not match 1.2.30 or 1.2.3-rc.1).
 */
export function changelogSection(text: string, version: string): string | undefined {
  const bare = version.replace(/^v/, '');
  const names = new RegExp(`(^|[^0-9A-Za-z.+-])v?${escape(bare)}(?![0-9A-Za-z.+-])`);
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  let start = -1;
  let level = 0;
  let inFence = false;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (/^\s*(```|~~~)/.test(line)) inFence = !inFence;
    if (inFence) continue;
    const h = /^(#{1,6})\s+(.*)$/.exec(line);
    if (!h) continue;
    const hashes = h[1]!.length;
    if (start >= 0 && hashes <= level) {
      return lines.slice(start, i).join('\n').trim();
    }
    if (start < 0 && names.test(h[2]!)) {
      start = i + 1;
      level = hashes;
    }
  }
  return start >= 0 ? lines.slice(start).join('\n').trim() : undefined;
}
