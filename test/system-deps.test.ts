// The system programs the suite drives (chromium, redis-server): `npm test` installs what is missing
// (scripts/system-deps.sh, its pretest step, as root), a user who cannot gets the exact command at once,
// and a test file run without one reports it as not installed — at once, in the tests that need it only.
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, it } from 'node:test';

import { ROOT, run } from './helpers/cli.js';
import { findProgram } from './helpers/system.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-system-deps-'));
fs.chmodSync(tmp, 0o755);
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const SCRIPT = path.join(ROOT, 'scripts', 'system-deps.sh');
const emptyPath = fs.mkdtempSync(path.join(tmp, 'bin-')); // a PATH with neither program (nor apt-get)
fs.chmodSync(emptyPath, 0o755);

it('npm test runs the system check first (its pretest step)', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  assert.equal(pkg.scripts.pretest, 'bash scripts/system-deps.sh');
});

it('a user who is not root gets the exact apt-get command for what is missing, and exit 1', async () => {
  const r = await run('runuser', ['-u', 'nobody', '--', '/usr/bin/env', `PATH=${emptyPath}`, '/bin/bash', SCRIPT], tmp, { limitMs: 60_000 });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /chromium redis-server not installed .*As root, run: apt-get update && apt-get install -y --no-install-recommends chromium redis-server/);
});

it('with both programs present it does nothing', async () => {
  const bin = fs.mkdtempSync(path.join(tmp, 'bin-'));
  fs.chmodSync(bin, 0o755);
  for (const name of ['chromium', 'redis-server'] as const) fs.symlinkSync(findProgram(name)!, path.join(bin, name));
  const r = await run('runuser', ['-u', 'nobody', '--', '/usr/bin/env', `PATH=${bin}`, '/bin/bash', SCRIPT], tmp, { limitMs: 60_000 });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
});

/** One test file run as `npm test` runs it, with `env` added; its TAP summary counts. */
async function testFile(file: string, env: Record<string, string>) {
  // Not as a subtest of this file: node's runner tells its children so through NODE_TEST_CONTEXT.
  const { NODE_TEST_CONTEXT: _, ...outer } = process.env;
  const r = await new Promise<{ code: number | null; stdout: string }>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=tap', path.join('test', file)],
      { cwd: ROOT, env: { ...outer, ALTCLIP_CACHE: path.join(tmp, 'cache'), HF_HUB_OFFLINE: '1', ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.on('data', (d) => (stdout += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 10 * 60_000);
    child.on('error', reject);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout }); });
  });
  const count = (name: string) => Number(new RegExp(`^# ${name} (\\d+)$`, 'm').exec(r.stdout)?.[1]);
  return { ...r, pass: count('pass'), fail: count('fail'), cancelled: count('cancelled') };
}

it('without redis-server: the Redis tests say "not installed"; the tar reader and coordinator errors still pass', async () => {
  const r = await testFile('queue.test.ts', { REDIS_SERVER_PATH: path.join(emptyPath, 'redis-server') });
  assert.notEqual(r.code, 0);
  assert.match(r.stdout, /redis-server is not installed \(REDIS_SERVER_PATH=.* does not exist\): run `npm test` as root \(it installs it\), or `apt-get install -y redis-server`/);
  assert.doesNotMatch(r.stdout, /timed out|ENOENT/);
  assert.match(r.stdout, /^ok \d+ - WebDataset tar reader$/m);
  assert.match(r.stdout, /^ok \d+ - coordinator errors$/m);
  assert.equal(r.pass, 2);
});

it('without chromium: the browser tests say "not installed" before any setup', async () => {
  const r = await testFile('browser.test.ts', { CHROMIUM_PATH: path.join(emptyPath, 'chromium') });
  assert.notEqual(r.code, 0);
  assert.match(r.stdout, /chromium is not installed \(CHROMIUM_PATH=.* does not exist\): run `npm test` as root \(it installs it\), or `apt-get install -y chromium`/);
  assert.equal(r.pass, 0);
});
