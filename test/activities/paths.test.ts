import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ApplicationFailure } from '@temporalio/common';
import { expandReleasePath } from '../../src/activities/paths';
import { GantryErrorType } from '../../src/shared/errors';

function refusal(template: string, service: string, version: string): ApplicationFailure {
  try {
    expandReleasePath(template, { service, version });
  } catch (err) {
    expect(err).toBeInstanceOf(ApplicationFailure);
    return err as ApplicationFailure;
  }
  throw new Error(`expected ${template} with ${service} ${version} to be refused`);
}

describe('expandReleasePath', () => {
  it('expands {service} and {version}, every occurrence', () => {
    expect(expandReleasePath('/var/lib/gantry/{service}/{version}', { service: 'hello', version: '1.2.3' })).toBe('/var/lib/gantry/hello/1.2.3');
    expect(expandReleasePath('/srv/rel-{service}-{version}/{service}', { service: 'api', version: '2.0.0-rc.1' })).toBe('/srv/rel-api-2.0.0-rc.1/api');
    expect(expandReleasePath('artifacts/{version}', { service: 'hello', version: '1.0.0' })).toBe('artifacts/1.0.0');
    expect(expandReleasePath('/var/lib/gantry/artifacts', { service: '../x', version: '../y' })).toBe('/var/lib/gantry/artifacts');
  });

  it.each([
    ['/var/lib/gantry/{service}/{version}', 'hello', '../../../etc', 'version'],
    ['/var/lib/gantry/{service}/{version}', 'hello', '1.2.3/../../x', 'version'],
    ['/var/lib/gantry/{service}/{version}', '..', '1.2.3', 'service'],
    ['/var/lib/gantry/{service}/{version}', 'a/b', '1.2.3', 'service'],
    ['/var/lib/gantry/{version}', 'hello', '.', 'version'],
    ['/var/lib/gantry/{version}', 'hello', '..\\..\\x', 'version'],
    ['/var/lib/gantry/{version}', 'hello', '', 'version'],
  ])('refuses %s with service %j and version %j (a value that is not a plain name)', (template, service, version, which) => {
    const f = refusal(template, service, version);
    expect(f.type).toBe(GantryErrorType.ConfigInvalid);
    expect(f.nonRetryable).toBe(true);
    expect(f.message).toContain(`announce.artifactsDir "${template}" expands to`);
    expect(f.message).toContain(`the ${which} ${JSON.stringify(which === 'service' ? service : version)} is not a plain name`);
    expect(f.message).toMatch(/Fix: keep \{service\} and \{version\} as whole path segments below a fixed directory/);
  });

  it('refuses a template whose expansion climbs out of its base directory', () => {
    const f = refusal('/var/lib/gantry/{service}/../../etc', 'hello', '1.2.3');
    expect(f.type).toBe(GantryErrorType.ConfigInvalid);
    expect(f.message).toContain(`which is not inside its base directory ${path.resolve('/var/lib/gantry')}`);
    expect(refusal('/var/lib/gantry/{service}/..', 'hello', '1.2.3').message).toContain('not inside its base directory');
  });

  it('takes the base directory from the part before the first placeholder', () => {
    // "/srv/a/rel-" → base /srv/a; a plain value stays inside it.
    expect(expandReleasePath('/srv/a/rel-{version}', { service: 'x', version: '1.0.0' })).toBe('/srv/a/rel-1.0.0');
    expect(refusal('/srv/a/rel-{version}/../../../b', 'x', '1.0.0').message).toContain('not inside its base directory /srv/a');
    expect(refusal('{service}/../..', 'x', '1.0.0').message).toContain(`not inside its base directory ${process.cwd()}`);
  });

  it('names the setting it was given', () => {
    expect(refusal('/x/{version}', 's', '..').message).toMatch(/^announce\.artifactsDir/);
    expect(() => expandReleasePath('/x/{version}', { service: 's', version: '..' }, 'audit.dir')).toThrow(/^audit\.dir "\/x\/\{version\}"/);
  });
});
