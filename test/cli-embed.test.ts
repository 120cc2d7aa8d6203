// `altclip embed` keeps its output consistent against real processes: two writers at once (the
// second is refused), a writer killed with SIGKILL (its lock is taken over once stale), --resume
// with other settings or another model (refused), the same image under two names (one row), and
// Ctrl-C in a terminal (cursor shown again, rows kept, --resume continues; classify: cursor shown).
// A loopback server holds an image URL's response until the test releases it: that is how a run is
// kept in the middle of its work while the test acts, without depending on the machine's speed.
import * as assert from 'node:assert/strict';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';

import { readNpyHeader } from '../src/cli/npy.js';
import { Tensor } from '../src/tensor.js';
import { MAIN, ROOT, type Run, altclip as runAltclip, assertOneLineError, run, waitFor } from './helpers/cli.js';
import { FIXTURES, Goldens } from './helpers/goldens.js';

const MODEL = path.join(FIXTURES, 'models', 'tiny-altclip');
const IMAGES = path.join(FIXTURES, 'images');
const CAT = path.join(IMAGES, 'cat.jpg');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-cli-embed-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const cache = path.join(tmp, 'cache');
const altclip = (args: string[], options?: Parameters<typeof runAltclip>[2]) => runAltclip(args, cache, options);

const index = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'goldens', 'tiny-altclip.json'), 'utf8'));
const g = new Goldens(path.join(FIXTURES, 'goldens', 'tiny-altclip.safetensors'));
const batch3 = index.combos.find((c: { name: string }) => c.name === 'batch3') as { texts: string[]; images: string[] };
const batch3Images = batch3.images.map((p) => path.join(FIXTURES, p));

function rowsOf(t: Tensor): number[][] {
  const [r, c] = t.dims as [number, number];
  return Array.from({ length: r }, (_, i) => [...(t.data as Float32Array).subarray(i * c, (i + 1) * c)]);
}

function npyRows(file: string): number[][] {
  const h = readNpyHeader(file);
  assert.equal(fs.statSync(file).size, h.dataOffset + h.rows * h.cols * 4, 'file size = header + rows');
  const bytes = fs.readFileSync(file).subarray(h.dataOffset);
  const data = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
  return Array.from({ length: h.rows }, (_, i) => [...data.subarray(i * h.cols, (i + 1) * h.cols)]);
}

function assertRowsClose(actual: number[][], expected: number[][], tol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: rows`);
  actual.forEach((row, i) => row.forEach((x, j) => assert.ok(Math.abs(x - expected[i]![j]!) <= tol, `${what}[${i}][${j}]: ${x} vs ${expected[i]![j]}`)));
}

const lines = (file: string) => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter((l) => l !== '') : []);

/** A loopback server whose /held/<name>.jpg answers (with cat.jpg) only after release(). */
async function heldImageServer() {
  const held: http.ServerResponse[] = [];
  let released = false;
  const requested = new Set<string>();
  const server = http.createServer((req, res) => {
    requested.add(req.url ?? '');
    if (released) res.writeHead(200, { 'content-type': 'image/jpeg' }).end(fs.readFileSync(CAT));
    else held.push(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: (name: string) => `${base}/held/${name}.jpg`,
    requested: (name: string) => requested.has(`/held/${name}.jpg`),
    release() {
      released = true;
      for (const res of held.splice(0)) res.writeHead(200, { 'content-type': 'image/jpeg' }).end(fs.readFileSync(CAT));
    },
    async close() {
      this.release();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe('altclip embed: one writer per output', { concurrency: true }, () => {
  it('a second writer of the same file (named differently) is refused while the first runs; the first finishes intact', async () => {
    const server = await heldImageServer();
    try {
      const out = path.join(tmp, 'shared.npy');
      let first!: ChildProcessWithoutNullStreams;
      const firstRun = altclip(['embed', CAT, server.url('a'), '--out', out, '-m', MODEL, '--batch-size', '1', '--json'], { started: (c) => (first = c) });
      // The first run holds the lock and waits for the held image.
      await waitFor(() => server.requested('a'), 'the first run to ask for the held image');
      const relative = path.relative(ROOT, out);
      const [overwrite, resume] = await Promise.all([
        altclip(['embed', batch3Images[1]!, '--out', relative, '-m', MODEL, '--overwrite']),
        altclip(['embed', batch3Images[1]!, '--out', out, '-m', MODEL, '--resume']),
      ]);
      for (const r of [overwrite, resume]) assertOneLineError(r, /shared\.npy is being written by another altclip process \(lock: .*shared\.npy\.lock\)/);
      assert.equal(first.exitCode, null, 'the first run is still running');
      server.release();
      const done = await firstRun;
      assert.equal(done.code, 0, done.stderr);
      assert.deepEqual(lines(path.join(tmp, 'shared.rows.jsonl')).map((l) => JSON.parse(l).input), [CAT, server.url('a')]);
      const cat = rowsOf(g.get('batch3/outputs/image_embeds'))[0]!; // batch3's first image is cat.jpg
      assertRowsClose(npyRows(out), [cat, cat], 1e-5, 'rows');
      assert.ok(!fs.existsSync(`${out}.lock`), 'the lock is released');
    } finally {
      await server.close();
    }
  });

  it('the lock of a writer killed with SIGKILL is refused while fresh and taken over once stale', async () => {
    const server = await heldImageServer();
    try {
      const out = path.join(tmp, 'killed.npy');
      let first!: ChildProcessWithoutNullStreams;
      const firstRun = altclip(['embed', CAT, server.url('k'), '--out', out, '-m', MODEL, '--batch-size', '1'], { started: (c) => (first = c) });
      await waitFor(() => server.requested('k') && lines(path.join(tmp, 'killed.rows.jsonl')).length === 1, 'the first row and the held image');
      first.kill('SIGKILL');
      const killed = await firstRun;
      assert.equal(killed.signal, 'SIGKILL');
      assert.ok(fs.existsSync(`${out}.lock`), 'a killed process leaves its lock');
      const args = ['embed', ...batch3Images, '--out', out, '-m', MODEL, '--resume', '--json'];
      // A lock is fresh for LOCK_STALE_MS after its owner's last update. However long the next process
      // takes to start on a busy machine, the lock stays as fresh as right after the kill: the test
      // keeps its mtime at "now" while that process runs.
      const lock = `${out}.lock`;
      const fresh = setInterval(() => fs.utimesSync(lock, new Date(), new Date()), 500);
      fs.utimesSync(lock, new Date(), new Date());
      try {
        assertOneLineError(await altclip(args), /killed\.npy is being written by another altclip process/);
      } finally {
        clearInterval(fresh);
      }
      // proper-lockfile calls a lock stale when its mtime is older than LOCK_STALE_MS (30 s): age it
      // as the passing of time would.
      const old = new Date(Date.now() - 60_000);
      fs.utimesSync(`${out}.lock`, old, old);
      const resumed = await altclip(args);
      assert.equal(resumed.code, 0, resumed.stderr);
      const summary = JSON.parse(resumed.stdout);
      assert.deepEqual([summary.alreadyThere, summary.written, summary.rows], [1, 2, 3]);
      assertRowsClose(npyRows(out), rowsOf(g.get('batch3/outputs/image_embeds')), 1e-5, 'rows');
    } finally {
      await server.close();
    }
  });
});

describe('altclip embed --resume: only rows of the same model and settings', { concurrency: true }, () => {
  it('refuses other normalisation, dtype or model (same dimension), and an output without its record', async () => {
    const out = path.join(tmp, 'settings.npy');
    const first = await altclip(['embed', CAT, '--out', out, '-m', MODEL, '--no-normalize']);
    assert.equal(first.code, 0, first.stderr);
    const meta = JSON.parse(fs.readFileSync(`${out}.meta.json`, 'utf8'));
    assert.deepEqual(meta, { altclip: 'embed', model: fs.realpathSync(MODEL), revision: null, dtype: 'fp32', normalize: false, dim: 24 });
    const more = ['embed', CAT, batch3Images[1]!, '--out', out, '--resume'];
    // one after the other: at the same time, all but one would be refused by the lock
    const normalised = await altclip([...more, '-m', MODEL]);
    const q8 = await altclip([...more, '-m', MODEL, '--no-normalize', '--dtype', 'q8']);
    const otherModel = await altclip([...more, '-m', path.join(FIXTURES, 'models', 'tiny-altclip-bin'), '--no-normalize']);
    assertOneLineError(normalised, /cannot resume .*settings\.npy: its rows come from .*tiny-altclip, fp32, not normalised .* but this run uses .*tiny-altclip, fp32, normalised/);
    assertOneLineError(q8, /its rows come from .*, fp32, .* but this run uses .*, q8 \(scheme altclip-q8-w8a7-row-v1\), /);
    assertOneLineError(otherModel, /its rows come from .*tiny-altclip, .* but this run uses .*tiny-altclip-bin, /);
    assert.equal(readNpyHeader(out).rows, 1, 'nothing was added');
    const same = await altclip([...more, '-m', path.relative(ROOT, MODEL), '--no-normalize', '--json']);
    assert.equal(same.code, 0, same.stderr);
    assert.deepEqual([JSON.parse(same.stdout).alreadyThere, JSON.parse(same.stdout).written], [1, 1]);

    fs.rmSync(`${out}.meta.json`);
    assertOneLineError(await altclip([...more, '-m', MODEL, '--no-normalize']), /settings\.npy\.meta\.json, which records the model .* is missing/);
  });

  it('the same image under a relative and an absolute path is one row, in a run and on --resume (JSON lines)', async () => {
    const out = path.join(tmp, 'paths.jsonl');
    const relative = path.relative(ROOT, CAT);
    const first = await altclip(['embed', relative, CAT, `./${relative}`, '--out', out, '-m', MODEL, '--json']);
    assert.equal(first.code, 0, first.stderr);
    assert.deepEqual([JSON.parse(first.stdout).written, JSON.parse(first.stdout).rows], [1, 1], 'one image named three ways is one row');
    const again = await altclip(['embed', CAT, batch3Images[1]!, '--out', out, '-m', MODEL, '--resume', '--json']);
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual([JSON.parse(again.stdout).alreadyThere, JSON.parse(again.stdout).written], [1, 1]);
    const rows = lines(out).map((l) => JSON.parse(l));
    assert.deepEqual(rows.map((r) => [r.input, r.path]), [[relative, fs.realpathSync(CAT)], [batch3Images[1], fs.realpathSync(batch3Images[1]!)]]);
  });
});

/** `altclip <args>` in a terminal (util-linux script(1)); `ctrlC()` types ^C into it. */
function inTerminal(args: string[]): { done: Promise<Run>; ctrlC(): void } {
  // A ^C written to the terminal is the terminal's Ctrl-C (SIGINT to the foreground process group),
  // exactly as a user's.
  const command = [process.execPath, '--import', 'tsx', MAIN, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  let term!: ChildProcessWithoutNullStreams;
  const done = run('script', ['-qefc', command, '/dev/null'], cache, { started: (c) => (term = c), env: { TERM: 'xterm' } });
  return { done, ctrlC: () => term.stdin.write('\x03') };
}

function assertCursorRestored(screen: string): void {
  assert.ok(screen.includes('\x1b[?25l'), 'the progress bar hid the cursor');
  assert.ok(screen.lastIndexOf('\x1b[?25h') > screen.lastIndexOf('\x1b[?25l'), 'the cursor is shown again');
}

describe('Ctrl-C in a terminal', { concurrency: true }, () => {
  it('classify: the cursor is shown again, exit code 130', async () => {
    const server = await heldImageServer();
    try {
      const term = inTerminal(['classify', CAT, server.url('cls'), '--labels', 'a', 'b', '-m', MODEL, '--batch-size', '1']);
      await waitFor(() => server.requested('cls'), 'the held image');
      term.ctrlC();
      const r = await term.done;
      assert.equal(r.code, 130, r.stdout);
      assertCursorRestored(r.stdout);
    } finally {
      await server.close();
    }
  });

  it('embed: shows the cursor again, says how many rows were kept, and --resume continues', async () => {
    const server = await heldImageServer();
    try {
      const out = path.join(tmp, 'interrupted.npy');
      const args = ['embed', CAT, batch3Images[1]!, server.url('c'), batch3Images[2]!, '--out', out, '-m', MODEL, '--batch-size', '1'];
      const term = inTerminal(args);
      await waitFor(() => server.requested('c') && lines(path.join(tmp, 'interrupted.rows.jsonl')).length === 2, 'two rows and the held image');
      term.ctrlC();
      const r: Run = await term.done;
      assert.equal(r.code, 130, r.stdout);
      const screen = r.stdout; // the terminal's output (stdout and stderr)
      assertCursorRestored(screen);
      assert.match(screen, /altclip: interrupted: 2 rows kept in .*interrupted\.npy \(2 from this run\); run the same command with --resume to continue/);
      assert.equal(readNpyHeader(out).rows, 2);
      assert.ok(!fs.existsSync(`${out}.lock`), 'the lock is released');

      server.release();
      const resumed = await altclip([...args.slice(0, -2), '--resume', '--json']);
      assert.equal(resumed.code, 0, resumed.stderr);
      assert.deepEqual([JSON.parse(resumed.stdout).alreadyThere, JSON.parse(resumed.stdout).written], [2, 2]);
      const expected = rowsOf(g.get('batch3/outputs/image_embeds'));
      assertRowsClose(npyRows(out), [expected[0]!, expected[1]!, expected[0]!, expected[2]!], 1e-5, 'rows');
    } finally {
      await server.close();
    }
  });
});
