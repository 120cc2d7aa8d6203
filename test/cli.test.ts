// The `altclip` command run as a subprocess on the fixture checkpoint: outputs parsed and compared with
// the goldens, exit codes, and bad use (one-line error on stderr, non-zero exit, no stack trace).
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';

import { readNpyHeader } from '../src/cli/npy.js';
import { Tensor } from '../src/tensor.js';
import { FIXTURES, Goldens } from './helpers/goldens.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const MAIN = path.join(ROOT, 'src', 'cli', 'main.ts');
const MODEL = path.join(FIXTURES, 'models', 'tiny-altclip');
const IMAGES = path.join(FIXTURES, 'images');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-cli-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const index = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'goldens', 'tiny-altclip.json'), 'utf8'));
const g = new Goldens(path.join(FIXTURES, 'goldens', 'tiny-altclip.safetensors'));
const batch3 = index.combos.find((c: { name: string }) => c.name === 'batch3') as { texts: string[]; images: string[] };
const batch3Images = batch3.images.map((p) => path.join(FIXTURES, p));

interface Run { code: number | null; stdout: string; stderr: string }

// At most as many commands at once as there are cores: the cases run side by side, and on a busy
// machine a crowd of model-loading processes would only wait on each other.
const slots = { free: Math.max(2, os.availableParallelism()), waiting: [] as (() => void)[] };
async function limited<T>(run: () => Promise<T>): Promise<T> {
  if (slots.free === 0) await new Promise<void>((resolve) => slots.waiting.push(resolve));
  else slots.free--;
  try {
    return await run();
  } finally {
    const next = slots.waiting.shift();
    if (next) next();
    else slots.free++;
  }
}

function altclip(args: string[], options: { env?: Record<string, string> } = {}): Promise<Run> {
  return limited(() => spawnAltclip(args, options));
}

function spawnAltclip(args: string[], options: { env?: Record<string, string> }): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], {
      cwd: ROOT,
      env: { ...process.env, ALTCLIP_CACHE: path.join(tmp, 'cache'), HF_HUB_OFFLINE: '1', ALTCLIP_DEBUG: '', ...options.env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Exit code 1 and exactly one line on stderr, `altclip: error: ...`, matching `pattern`. */
function assertOneLineError(r: Run, pattern: RegExp): void {
  assert.equal(r.code, 1, `exit code (stderr: ${r.stderr})`);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^altclip: error: /);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
}

function rowsOf(t: Tensor): number[][] {
  const [r, c] = t.dims as [number, number];
  return Array.from({ length: r }, (_, i) => [...(t.data as Float32Array).subarray(i * c, (i + 1) * c)]);
}

function assertRowsClose(actual: number[][], expected: number[][], tol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: rows`);
  actual.forEach((row, i) => {
    assert.equal(row.length, expected[i]!.length, `${what}: columns`);
    row.forEach((x, j) => assert.ok(Math.abs(x - expected[i]![j]!) <= tol, `${what}[${i}][${j}]: ${x} vs ${expected[i]![j]}`));
  });
}

const softmax = (row: number[]) => {
  const e = row.map((x) => Math.exp(x - Math.max(...row)));
  return e.map((x) => x / e.reduce((a, b) => a + b, 0));
};

/** A folder with two good images and one that is not an image at all. */
function folderWithCorruptImage(): string {
  const dir = fs.mkdtempSync(path.join(tmp, 'photos-'));
  fs.copyFileSync(path.join(IMAGES, 'cat.jpg'), path.join(dir, 'a_cat.jpg'));
  fs.writeFileSync(path.join(dir, 'b_broken.jpg'), 'this is not a JPEG\n');
  fs.copyFileSync(path.join(IMAGES, 'gray_portrait.png'), path.join(dir, 'c_gray.png'));
  fs.writeFileSync(path.join(dir, 'notes.txt'), 'ignored: not an image extension\n');
  return dir;
}

// Each case is a separate process: they run side by side.
describe('altclip CLI', { concurrency: true }, () => {
  describe('altclip classify', { concurrency: true }, () => {
    it('--json: scores = softmax of the golden logits_per_image', async () => {
      const r = await altclip(['classify', ...batch3Images, '--labels', ...batch3.texts, '--template', '{}', '--model', MODEL, '--json']);
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout);
      assert.deepEqual(out.templates, ['{}']);
      assert.deepEqual(out.results.map((x: { image: string }) => x.image), batch3Images);
      assert.deepEqual(out.skipped, []);
      const got = out.results.map((x: { labels: { label: string; score: number }[] }) =>
        batch3.texts.map((t) => x.labels.find((l) => l.label === t)!.score));
      assertRowsClose(got, rowsOf(g.get('batch3/outputs/logits_per_image')).map(softmax), 1e-5, 'scores');
    });

    it('human output: one block per image, score then label, best first; --top-k', async () => {
      const r = await altclip(['classify', batch3Images[0]!, '--labels', ...batch3.texts, '--template', '{}', '-k', '2', '-m', MODEL]);
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.trimEnd().split('\n');
      assert.equal(lines[0], batch3Images[0]);
      assert.equal(lines.length, 3);
      const expected = softmax(rowsOf(g.get('batch3/outputs/logits_per_image'))[0]!)
        .map((score, j) => ({ score, label: batch3.texts[j]! }))
        .sort((a, b) => b.score - a.score);
      lines.slice(1).forEach((line, i) => assert.equal(line, `  ${expected[i]!.score.toFixed(4).padStart(6)}  ${expected[i]!.label}`));
    });

    it('--dtype q8 --threads 1: int8 weights give scores near the float ones', async () => {
      const r = await altclip(['classify', ...batch3Images, '--labels', ...batch3.texts, '--template', '{}', '-m', MODEL, '--dtype', 'q8', '--threads', '1', '--json']);
      assert.equal(r.code, 0, r.stderr);
      const got = JSON.parse(r.stdout).results.map((x: { labels: { label: string; score: number }[] }) =>
        batch3.texts.map((t) => x.labels.find((l) => l.label === t)!.score));
      assertRowsClose(got, rowsOf(g.get('batch3/outputs/logits_per_image')).map(softmax), 0.05, 'q8 scores');
    });

    it('an image URL (loopback server); an unreachable URL is a one-line error', async () => {
      const server = http.createServer((req, res) => {
        if (req.url === '/cat.jpg') res.writeHead(200, { 'content-type': 'image/jpeg' }).end(fs.readFileSync(path.join(IMAGES, 'cat.jpg')));
        else res.writeHead(404).end();
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      try {
        const [ok, missing] = await Promise.all([
          altclip(['classify', `${base}/cat.jpg`, '--labels', ...batch3.texts, '--template', '{}', '-m', MODEL, '--json']),
          altclip(['classify', `${base}/nope.jpg`, '--labels', 'a', '-m', MODEL]),
        ]);
        assert.equal(ok.code, 0, ok.stderr);
        const got = JSON.parse(ok.stdout).results.map((x: { labels: { label: string; score: number }[] }) =>
          batch3.texts.map((t) => x.labels.find((l) => l.label === t)!.score));
        assertRowsClose(got, [softmax(rowsOf(g.get('batch3/outputs/logits_per_image'))[0]!)], 1e-5, 'scores');
        assertOneLineError(missing, /nope\.jpg/);
      } finally {
        server.close();
      }
    });

    it('a folder with a corrupt image: the others are classified, a warning names it, exit code 2', async () => {
      const dir = folderWithCorruptImage();
      const r = await altclip(['classify', dir, '--labels', 'cat', 'dog', '-m', MODEL, '--batch-size', '3', '--json']);
      assert.equal(r.code, 2, r.stderr);
      const out = JSON.parse(r.stdout);
      assert.deepEqual(out.results.map((x: { image: string }) => path.basename(x.image)), ['a_cat.jpg', 'c_gray.png']);
      assert.equal(out.skipped.length, 1);
      assert.match(out.skipped[0].input, /b_broken\.jpg$/);
      assert.match(r.stderr, /^altclip: warning: skipped .*b_broken\.jpg/m);
      assert.match(r.stderr, /^altclip: 1 of 3 images skipped$/m);
      assert.doesNotMatch(r.stderr, /\n\s+at /);
    });
  });

  describe('altclip similarity', { concurrency: true }, () => {
    it('--json: logits = golden logits_per_image, cosine = logits / exp(logit_scale)', async () => {
      const r = await altclip(['similarity', '--images', ...batch3Images, '--texts', ...batch3.texts, '--model', MODEL, '--json']);
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout);
      assert.deepEqual(out.texts, batch3.texts);
      const logits = rowsOf(g.get('batch3/outputs/logits_per_image'));
      assertRowsClose(out.logitsPerImage, logits, 1e-4, 'logits');
      assertRowsClose(out.cosine, logits.map((row) => row.map((x) => x / index.logit_scale_exp)), 1e-5, 'cosine');
    });

    it('human output: a legend of the texts and an image x text table', async () => {
      const textsFile = path.join(tmp, 'texts.txt');
      fs.writeFileSync(textsFile, `${batch3.texts[1]}\r\n\n${batch3.texts[2]}\n`);
      const r = await altclip(['similarity', '-i', batch3Images[0]!, '-t', batch3.texts[0]!, '--texts-file', textsFile, '-m', MODEL]);
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.trimEnd().split('\n');
      assert.deepEqual(lines.slice(0, 3), batch3.texts.map((t, j) => `[${j + 1}] ${t}`));
      const row = lines.at(-1)!.trim().split(/\s+/);
      assert.equal(row.at(-1), batch3Images[0]);
      const cos = rowsOf(g.get('batch3/outputs/logits_per_image'))[0]!.map((x) => (x / index.logit_scale_exp).toFixed(4));
      assert.deepEqual(row.slice(0, 3), cos);
    });
  });

  describe('altclip embed', { concurrency: true }, () => {
    it('.npy: images then texts, rows = golden image_embeds / text_embeds, rows file names them', async () => {
      const textsFile = path.join(tmp, 'captions.txt');
      fs.writeFileSync(textsFile, batch3.texts.join('\n') + '\n');
      const out = path.join(tmp, 'emb.npy');
      const r = await altclip(['embed', ...batch3Images, '--texts-file', textsFile, '--out', out, '-m', MODEL, '--batch-size', '2', '--json']);
      assert.equal(r.code, 0, r.stderr);
      const summary = JSON.parse(r.stdout);
      assert.equal(summary.rows, 6);
      assert.equal(summary.written, 6);
      assert.equal(summary.rowsFile, path.join(tmp, 'emb.rows.jsonl'));
      const h = readNpyHeader(out);
      assert.deepEqual([h.rows, h.cols], [6, 24]);
      const bytes = fs.readFileSync(out).subarray(h.dataOffset);
      const data = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
      const rows = Array.from({ length: 6 }, (_, i) => [...data.subarray(i * 24, (i + 1) * 24)]);
      assertRowsClose(rows.slice(0, 3), rowsOf(g.get('batch3/outputs/image_embeds')), 1e-5, 'image rows');
      assertRowsClose(rows.slice(3), rowsOf(g.get('batch3/outputs/text_embeds')), 1e-5, 'text rows');
      const listed = fs.readFileSync(summary.rowsFile, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l));
      assert.deepEqual(listed, [
        ...batch3Images.map((input) => ({ type: 'image', input })),
        ...batch3.texts.map((input) => ({ type: 'text', input })),
      ]);
    });

    it('JSON lines, resumed: only the missing inputs are computed', async () => {
      const out = path.join(tmp, 'emb.jsonl');
      const first = await altclip(['embed', ...batch3Images.slice(0, 2), '--out', out, '-m', MODEL, '--json']);
      assert.equal(first.code, 0, first.stderr);
      fs.appendFileSync(out, '{"type":"image","input":"half a li'); // as if killed mid-write
      const again = await altclip(['embed', ...batch3Images, '--out', out, '-m', MODEL]);
      assertOneLineError(again, /emb\.jsonl exists: use --resume .* or --overwrite/);
      const resumed = await altclip(['embed', ...batch3Images, '--out', out, '-m', MODEL, '--resume', '--json']);
      assert.equal(resumed.code, 0, resumed.stderr);
      const summary = JSON.parse(resumed.stdout);
      assert.deepEqual([summary.written, summary.alreadyThere, summary.rows], [1, 2, 3]);
      const lines = fs.readFileSync(out, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l));
      assert.deepEqual(lines.map((l) => l.input), batch3Images);
      assertRowsClose(lines.map((l) => l.embedding), rowsOf(g.get('batch3/outputs/image_embeds')), 1e-5, 'embeddings');
    });

    it('.npy, resumed after a run cut mid-row: whole rows kept, the rest appended', async () => {
      const out = path.join(tmp, 'resume.npy');
      const first = await altclip(['embed', batch3Images[0]!, '--out', out, '-m', MODEL]);
      assert.equal(first.code, 0, first.stderr);
      fs.appendFileSync(out, Buffer.alloc(30)); // part of a row whose header update never came
      const resumed = await altclip(['embed', ...batch3Images, '--out', out, '-m', MODEL, '--resume', '--json']);
      assert.equal(resumed.code, 0, resumed.stderr);
      assert.deepEqual([JSON.parse(resumed.stdout).written, JSON.parse(resumed.stdout).alreadyThere], [2, 1]);
      const h = readNpyHeader(out);
      assert.equal(fs.statSync(out).size, h.dataOffset + 3 * 24 * 4);
      const bytes = fs.readFileSync(out).subarray(h.dataOffset);
      const data = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
      const rows = Array.from({ length: 3 }, (_, i) => [...data.subarray(i * 24, (i + 1) * 24)]);
      assertRowsClose(rows, rowsOf(g.get('batch3/outputs/image_embeds')), 1e-5, 'rows');
    });

    it('a folder with a corrupt image: the good ones are written, one warning, a summary count, exit code 2', async () => {
      const dir = folderWithCorruptImage();
      const out = path.join(tmp, 'folder.npy');
      const r = await altclip(['embed', dir, '--out', out, '-m', MODEL]);
      assert.equal(r.code, 2, r.stderr);
      const warnings = r.stderr.split('\n').filter((l) => l.includes('warning'));
      assert.equal(warnings.length, 1);
      assert.match(warnings[0]!, /^altclip: warning: skipped .*b_broken\.jpg: /);
      assert.match(r.stderr, /^altclip: wrote 2 embeddings to .*folder\.npy \(2 rows, dim 24\); 1 image skipped$/m);
      assert.equal(readNpyHeader(out).rows, 2);
      const listed = fs.readFileSync(path.join(tmp, 'folder.rows.jsonl'), 'utf8').trimEnd().split('\n').map((l) => path.basename(JSON.parse(l).input));
      assert.deepEqual(listed, ['a_cat.jpg', 'c_gray.png']);
    });
  });

  describe('bad use: one-line error, non-zero exit, no stack trace', { concurrency: true }, () => {
    const cat = path.join(IMAGES, 'cat.jpg');
    it('unknown flag', async () => {
      assertOneLineError(await altclip(['classify', cat, '--labels', 'a', '--colour']), /unknown option '--colour'/);
    });
    it('missing image', async () => {
      assertOneLineError(await altclip(['classify', path.join(tmp, 'nope.jpg'), '--labels', 'a', '-m', MODEL]), /nope\.jpg: no such file/);
    });
    it('unreadable image', async () => {
      const bad = path.join(tmp, 'truncated.png');
      fs.writeFileSync(bad, fs.readFileSync(path.join(IMAGES, 'coffee.png')).subarray(0, 100));
      assertOneLineError(await altclip(['classify', bad, '--labels', 'a', '-m', MODEL]), /truncated\.png/);
    });
    it('empty label list', async () => {
      assertOneLineError(await altclip(['classify', cat, '--labels']), /--labels/);
      assertOneLineError(await altclip(['classify', cat, '--labels', ' ', '-m', MODEL]), /at least one non-empty label/);
    });
    it('template without {}', async () => {
      assertOneLineError(await altclip(['classify', cat, '--labels', 'a', '--template', 'a photo', '-m', MODEL]), /has no \{\}/);
    });
    it('model folder that does not exist', async () => {
      assertOneLineError(await altclip(['classify', cat, '--labels', 'a', '-m', path.join(tmp, 'no-model')]), /no-model/);
    });
    it('bad numbers and choices', async () => {
      assertOneLineError(await altclip(['embed', cat, '--out', 'x.npy', '--batch-size', '0']), /--batch-size/);
      assertOneLineError(await altclip(['embed', cat, '--out', 'x.npy', '--dtype', 'fp8']), /--dtype/);
      assertOneLineError(await altclip(['embed', '--out', path.join(tmp, 'x.npy')]), /nothing to embed/);
    });
  });

  describe('--help on every command', { concurrency: true }, () => {
    for (const cmd of [[], ['classify'], ['similarity'], ['embed']]) {
      it(`altclip ${cmd.join(' ')} --help`, async () => {
        const r = await altclip([...cmd, '--help']);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, new RegExp(`^Usage: altclip ${cmd.join(' ')}`));
        if (cmd.length) assert.match(r.stdout, /--model <id\|dir>/);
      });
    }
  });
});
