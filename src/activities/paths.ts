/**
 * Paths in the release config that name a place per release (`announce.artifactsDir:
 * /var/lib/gantry/artifacts/{service}/{version}`). The values come from the release request, so they are checked
 * before anything is written there: a value that climbs out of the configured directory is refused.
 */
import path from 'node:path';
import { GantryErrorType, nonRetryable } from '../shared/errors';

const PLACEHOLDER = /\{(service|version)\}/;

/**
 * `template` with `{service}` and `{version}` replaced. The result must stay inside the template's base
 * directory (the directory part before the first placeholder), and each value must be a plain name (no `/`,
 * `\`, NUL, no `.` or `..`); anything else is a non-retryable ConfigInvalid saying how to fix it. `setting` names
 * the config key in that message.
 */
export function expandReleasePath(template: string, release: { service: string; version: string }, setting = 'announce.artifactsDir'): string {
  const first = template.search(PLACEHOLDER);
  if (first < 0) return template;
  const expanded = template.split('{service}').join(release.service).split('{version}').join(release.version);
  const refuse = (why: string): never => {
    throw nonRetryable(
      GantryErrorType.ConfigInvalid,
      `${setting} "${template}" expands to "${expanded}" for ${release.service} ${release.version}, ${why}. ` +
        `Nothing was written there. Fix: keep {service} and {version} as whole path segments below a fixed directory ` +
        `(e.g. /var/lib/gantry/artifacts/{service}/{version}), and release a plain semantic version (1.2.3) of a service whose name has no "/".`,
      { setting, template, service: release.service, version: release.version },
    );
  };
  for (const [name, value] of [['service', release.service], ['version', release.version]] as const) {
    if (!template.includes(`{${name}}`)) continue;
    if (value === '' || value === '.' || value === '..' || /[/\\\0]/.test(value)) {
      refuse(`and the ${name} ${JSON.stringify(value)} is not a plain name (empty, ".", "..", or containing "/", "\\" or NUL)`);
    }
  }
  // The base: the directory part of what comes before the first placeholder ("/srv/a/rel-{version}" → /srv/a).
  const prefix = template.slice(0, first);
  const baseDir = path.resolve(prefix.endsWith('/') || prefix === '' ? prefix || '.' : path.dirname(prefix));
  const resolved = path.resolve(expanded);
  if (resolved === baseDir || !resolved.startsWith(baseDir.endsWith(path.sep) ? baseDir : baseDir + path.sep)) {
    refuse(`which is not inside its base directory ${baseDir}`);
  }
  return expanded;
}
