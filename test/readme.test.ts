// Every command block of README.md, run as written, so the README and the program cannot drift apart.
// Each ```sh block is preceded by a `<!-- readme-test: ... -->` line saying how it is run:
//   ci                the set-up block: .ci/run runs these commands (checked here; CI runs them)
//   clone             in a copy of this checkout (the files git has, node_modules linked: what `git clone`
//                     and `npm ci` give), one shell for all the clone blocks in README order
//   project           in the folder beside that copy, one shell for all the project blocks, so a `cd` or
//                     a file of one block is there for the next
//   project, background  each command started in the background and waited for until it prints
//                     "listening on"; stopped when the project shell ends
//   output            (a plain ``` block) must appear in what the sh block before it printed
//   not run: <why>    a block that cannot run here, with the reason (another machine, a GPU download)
// The stand-ins, and only these: HOME is a temp folder whose ~/Pictures holds fixture images
// (some-photo.jpg is test/fixtures/images/cat.jpg); a local hub (test/helpers/hub_server.ts, through
// HF_ENDPOINT) serves the tiny fixture checkpoint under the name BAAI/AltCLIP; npm uses the user's npm
// cache and the npm registry (preferring the cache).
import * as assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { ROOT } from './helpers/cli.js';
import { FIXTURES } from './helpers/goldens.js';
import { type HubServer, startHubServer } from './helpers/hub_server.js';

interface Block { line: number; how: string; lang: string; text: string }

/** The fenced blocks of a Markdown file with the `readme-test` line before each (how = '' when none). */
export function readmeBlocks(markdown: string): Block[] {
  const lines = markdown.split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(\w*)\s*$/.exec(lines[i]!);
    if (!open) continue;
    const [, indent, lang] = open;
    let end = i + 1;
    while (end < lines.length && lines[end]!.trim() !== '```') end++;
    let prev = i - 1;
    while (prev >= 0 && lines[prev]!.trim() === '') prev--;
    const how = /^\s*<!-- readme-test: (.*?) -->\s*$/.exec(lines[prev] ?? '')?.[1] ?? '';
    const text = lines.slice(i + 1, end).map((l) => (l.startsWith(indent!) ? l.slice(indent!.length) : l)).join('\n');
    blocks.push({ line: i + 1, how, lang: lang!, text });
    i = end;
  }
  return blocks;
}

const README = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
const blocks = readmeBlocks(README);
const shell = blocks.filter((b) => b.lang === 'sh');
const COMMIT = '0123456789abcdef0123456789abcdef01234567';

const tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-readme-')));
const home = path.join(tmp, 'home');
const clone = path.join(tmp, 'altclip');
const SERVERS = path.join(tmp, 'servers.pids'); // process groups of background commands, whatever happens to the shell
let hub: HubServer;
after(async () => {
  for (const pid of fs.existsSync(SERVERS) ? fs.readFileSync(SERVERS, 'utf8').split('\n').filter(Boolean) : []) {
    try { process.kill(-Number(pid), 'SIGKILL'); } catch { /* already stopped */ }
  }
  await hub?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** The commands of a block, one per logical line (continuations joined), comments and blanks dropped. */
const commands = (text: string) => text.replace(/\\\n\s*/g, ' ').split('\n').map((l) => l.replace(/\s+#.*$/, '').trim())
  .filter((l) => l && !l.startsWith('#'));

const MARK = '@@readme-block';
/** One bash script for the blocks of a scenario; each block's output starts after a marker line. */
function script(scenario: Block[]): string {
  // set -m: each background command is its own process group, so stopping it stops what it started
  // (npx does not pass SIGTERM on to the program); the groups are also listed in SERVERS for after().
  const out = ['set -euo pipefail -m', 'servers=()',
    'trap \'status=$?; for p in "${servers[@]}"; do kill -- "-$p" 2>/dev/null || true; done; wait; exit $status\' EXIT'];
  for (const b of scenario) {
    out.push(`echo "${MARK} ${b.line}@@"; echo "${MARK} ${b.line}@@" >&2`);
    if (!b.how.endsWith('background')) {
      out.push(b.text);
      continue;
    }
    commands(b.text).forEach((command, k) => {
      const log = path.join(tmp, `server-${b.line}-${k}.log`);
      out.push(`${command} > ${log} 2>&1 & servers+=($!); echo $! >> ${SERVERS}`,
        `for _ in $(seq 1200); do grep -q 'listening on' ${log} && break; kill -0 $! || { cat ${log} >&2; exit 1; }; sleep 0.25; done`,
        `grep -q 'listening on' ${log} || { echo "README line ${b.line}: '${command}' did not start listening within 300 s" >&2; cat ${log} >&2; exit 1; }`);
    });
  }
  return `${out.join('\n')}\n`;
}

/** Runs a scenario's script in `cwd`; the output of each block by its line number. */
async function runScenario(name: string, cwd: string) {
  const scenario = shell.filter((b) => b.how === name || b.how === `${name}, background`);
  const { NODE_TEST_CONTEXT: _, ALTCLIP_CACHE: _c, HF_HUB_OFFLINE: _o, HF_HOME: _h, HF_HUB_CACHE: _hc, XDG_CACHE_HOME: _x, ...env } = process.env;
  const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn('bash', ['-c', script(scenario)], {
      cwd, env: { ...env, HOME: home, HF_ENDPOINT: hub.endpoint, npm_config_cache: path.join(os.homedir(), '.npm'),
        npm_config_prefer_offline: 'true', npm_config_update_notifier: 'false' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 15 * 60_000);
    child.on('error', reject);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
  const split = (text: string) => new Map(text.split(`${MARK} `).slice(1).map((part) => {
    const [line, ...rest] = part.split('@@\n');
    return [Number(line), rest.join('@@\n')] as const;
  }));
  return { ...r, stdouts: split(r.stdout), stderrs: split(r.stderr) };
}

function filesOf(dir: string, prefix = ''): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) Object.assign(out, filesOf(path.join(dir, entry.name), `${prefix}${entry.name}/`));
    else out[prefix + entry.name] = fs.readFileSync(path.join(dir, entry.name));
  }
  return out;
}

/** Every `output` block appears (line by line, trailing spaces ignored) in what the sh block before it printed. */
function assertOutputs(stdouts: Map<number, string>): void {
  blocks.forEach((b, i) => {
    if (b.how !== 'output') return;
    const source = blocks.slice(0, i).reverse().find((s) => s.lang === 'sh')!;
    const printed = stdouts.get(source.line);
    if (printed === undefined) return; // another scenario's block: checked by its own test
    const norm = (t: string) => t.split('\n').map((l) => l.trimEnd()).join('\n').trim();
    assert.ok(norm(printed).includes(norm(b.text)), `README line ${b.line}: the output shown is not what line ${source.line}'s commands print:\n${printed}`);
  });
}

/** A block whose comments show a JSON answer (`# {"object": ...`): the first key of each is in what it printed. */
function assertJsonComments(stdouts: Map<number, string>): void {
  for (const b of shell) {
    const printed = stdouts.get(b.line);
    if (printed === undefined) continue;
    for (const m of b.text.matchAll(/^# \{"(\w+)":/gm)) assert.match(printed, new RegExp(`"${m[1]}":`), `README line ${b.line}: no "${m[1]}" in\n${printed}`);
  }
}

before(async () => {
  hub = await startHubServer({ 'BAAI/AltCLIP': { commits: { [COMMIT]: filesOf(path.join(FIXTURES, 'models', 'tiny-altclip')) }, refs: { main: COMMIT } } });
  const pictures = path.join(home, 'Pictures');
  fs.mkdirSync(pictures, { recursive: true });
  fs.copyFileSync(path.join(FIXTURES, 'images', 'cat.jpg'), path.join(pictures, 'some-photo.jpg'));
  for (const name of ['coffee.png', 'tall.jpg', 'wide.png']) fs.copyFileSync(path.join(FIXTURES, 'images', name), path.join(pictures, name));
  // The clone: what git has (committed or not yet ignored), node_modules as `npm ci` made it.
  const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8' }).split('\0').filter(Boolean);
  for (const file of files) {
    if (!fs.existsSync(path.join(ROOT, file))) continue; // deleted in the working tree
    fs.mkdirSync(path.dirname(path.join(clone, file)), { recursive: true });
    fs.copyFileSync(path.join(ROOT, file), path.join(clone, file));
  }
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(clone, 'node_modules'));
});

describe('README.md command blocks', { timeout: 30 * 60_000 }, () => {
  it('every sh block says how it is tested', () => {
    const known = /^(ci|clone|project|project, background|not run: .+)$/;
    const bad = shell.filter((b) => !known.test(b.how)).map((b) => `line ${b.line}: "${b.how}"`);
    assert.deepEqual(bad, [], 'sh blocks without a valid <!-- readme-test: ... --> line');
    assert.ok(shell.some((b) => b.how === 'clone') && shell.some((b) => b.how === 'project'));
  });

  it('the first block is the set-up, and .ci/run runs exactly its commands, in order', () => {
    assert.equal(shell[0]!.how, 'ci');
    assert.ok(README.indexOf('```sh') < README.indexOf('\n## '), 'the set-up block comes before the first section');
    const ci = fs.readFileSync(path.join(ROOT, '.ci', 'run'), 'utf8').split('\n').map((l) => l.trim());
    let at = 0;
    for (const command of commands(shell[0]!.text)) {
      const found = ci.findIndex((l, k) => k >= at && (l === command || l.startsWith(`${command} `)));
      assert.ok(found >= 0, `.ci/run does not run "${command}" (after line ${at + 1})`);
      at = found + 1;
    }
  });

  it('the clone blocks (main job, npm pack) run in a copy of this checkout', async () => {
    const r = await runScenario('clone', clone);
    assert.equal(r.code, 0, `clone blocks failed:\n${r.stdout}\n${r.stderr}`);
    const main = shell.find((b) => b.how === 'clone')!;
    assert.match(r.stdouts.get(main.line)!, /Pictures\/some-photo\.jpg/, 'the main job\'s search lists the indexed photos');
    assertOutputs(r.stdouts);
  });

  it('the project blocks (quick start, search, server) run in a new project beside it, with no npm warning', async () => {
    const r = await runScenario('project', tmp);
    assert.equal(r.code, 0, `project blocks failed:\n${r.stdout}\n${r.stderr}`);
    assert.doesNotMatch(r.stderr, /npm warn/i, 'installing printed warnings (engines, install scripts)');
    assertOutputs(r.stdouts);
    assertJsonComments(r.stdouts);
  });
});
