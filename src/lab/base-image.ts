/**
 * The lab's base image, made without any registry on the internet: a root filesystem holding Debian's static
 * busybox (one binary that is sh, httpd, wget, …), imported into the engine as `localhost/gantry-lab/busybox:1`.
 * The sample service's Dockerfile builds FROM it.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import type Docker from 'dockerode';
import * as tar from 'tar-stream';

export const BASE_IMAGE = 'localhost/gantry-lab/busybox:1';
const BUSYBOX_PATHS = ['/bin/busybox', '/usr/bin/busybox'];

function findStaticBusybox(): string {
  const file = BUSYBOX_PATHS.find((p) => existsSync(p));
  if (!file) throw new Error('busybox not found; install Debian\'s busybox-static with `bash scripts/lab/provision.sh`');
  // A dynamically linked busybox (Debian's `busybox` package) names its loader; it would not run in an empty image.
  if (readFileSync(file).includes('/lib64/ld-linux')) {
    throw new Error(`${file} is dynamically linked; install busybox-static (\`bash scripts/lab/provision.sh\`), which replaces it`);
  }
  return file;
}

/** The root filesystem as a tar stream: /bin/busybox plus a symlink per applet, /www, /tmp, /etc/passwd. */
export function busyboxRootfs(): tar.Pack {
  const busybox = findStaticBusybox();
  const applets = execFileSync(busybox, ['--list'], { encoding: 'utf8' }).split('\n').map((a) => a.trim()).filter((a) => a && a !== 'busybox');
  const pack = tar.pack();
  const mtime = new Date(0);
  for (const dir of ['bin', 'etc', 'root', 'tmp', 'www']) {
    pack.entry({ name: dir, type: 'directory', mode: dir === 'tmp' ? 0o1777 : 0o755, mtime });
  }
  pack.entry({ name: 'bin/busybox', mode: 0o755, mtime }, readFileSync(busybox));
  for (const a of applets) pack.entry({ name: `bin/${a}`, type: 'symlink', linkname: 'busybox', mtime });
  pack.entry({ name: 'etc/passwd', mode: 0o644, mtime }, 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
  pack.entry({ name: 'etc/group', mode: 0o644, mtime }, 'root:x:0:\nnogroup:x:65534:\n');
  pack.finalize();
  return pack;
}

/** Import the base image unless the engine already has it. Returns true when it was imported now. */
export async function ensureBaseImage(docker: Docker, name = BASE_IMAGE): Promise<boolean> {
  try {
    await docker.getImage(name).inspect();
    return false;
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode !== 404) throw err;
  }
  // `repo` with the tag in it: Docker accepts it so, and Podman ignores a separate `tag`.
  const stream = await docker.importImage(busyboxRootfs() as unknown as NodeJS.ReadableStream, { repo: name, changes: ['CMD ["/bin/sh"]'] });
  await new Promise<void>((resolve, reject) => {
    docker.modem.followProgress(stream, (err: Error | null, out: { error?: string }[]) => {
      const failed = out?.find((o) => o.error);
      if (err || failed) reject(err ?? new Error(failed?.error));
      else resolve();
    });
  });
  await docker.getImage(name).inspect();
  return true;
}
