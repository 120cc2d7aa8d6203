// The system programs some tests drive (Debian's chromium and redis-server, installed by
// scripts/system-deps.sh, which `npm test` runs first). A missing one is reported as missing, at once,
// by the tests that need it; the others in the same file run as usual.
import * as fs from 'node:fs';
import * as path from 'node:path';

export class MissingProgram extends Error {}

const PROGRAMS = {
  chromium: { env: ['CHROMIUM_PATH', 'CHROMIUM'], package: 'chromium' },
  'redis-server': { env: ['REDIS_SERVER_PATH'], package: 'redis-server' },
} as const;

/** Where `name` is: its environment variable if set, else the first match on PATH; absent: undefined. */
export function findProgram(name: keyof typeof PROGRAMS, env: NodeJS.ProcessEnv = process.env): string | undefined {
  for (const key of PROGRAMS[name].env) if (env[key]) return fs.existsSync(env[key]!) ? env[key] : undefined;
  for (const dir of (env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
    const candidate = path.join(dir, name);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      if (fs.statSync(candidate).isFile()) return candidate;
    } catch { /* not in this folder */ }
  }
  return undefined;
}

/** The path of `name`, or a MissingProgram error that says how to install it. */
export function requireProgram(name: keyof typeof PROGRAMS, env: NodeJS.ProcessEnv = process.env): string {
  const found = findProgram(name, env);
  if (found) return found;
  const { env: vars, package: pkg } = PROGRAMS[name];
  const where = vars.find((v) => env[v]);
  throw new MissingProgram(`${name} is not installed${where ? ` (${where}=${env[where]} does not exist)` : ' (not on PATH)'}: ` +
    `run \`npm test\` as root (it installs it), or \`apt-get install -y ${pkg}\``);
}
