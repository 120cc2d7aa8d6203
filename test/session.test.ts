// Graph files and sessions: written once and reused, nothing written into the checkpoint folder,
// weights linked (not copied), fallbacks when linking is impossible, every weight problem reported,
// and fp16 / bf16 checkpoints computed in fp32.
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { after, describe, it } from 'node:test';

import { ensureCheckpoint } from '../bench/generate_checkpoint.js';
import { AltCLIPModel, AltCLIPTextModel, AltCLIPVisionModel } from '../src/models/altclip.js';
import { type CacheEntry, freedBytes, listCache } from '../src/models/graph_cache.js';
import { sessionThreadCount } from '../src/models/session.js';
import { Tensor } from '../src/tensor.js';
import { readTensorBytes, openSafetensors, type TensorRef } from '../src/weights/index.js';
import { writeSafetensors } from '../src/weights/safetensors_writer.js';
import { assertClose, FIXTURES, Goldens } from './helpers/goldens.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-session-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const CKPT = path.join(FIXTURES, 'models', 'tiny-altclip');
const goldens = new Goldens(path.join(FIXTURES, 'goldens', 'tiny-altclip.safetensors'));
const inputs = { inputIds: goldens.get('single/inputs/input_ids'), attentionMask: goldens.get('single/inputs/attention_mask') };

type Entry = { ref: TensorRef; bytes: Uint8Array };

/** A copy of the tiny checkpoint with each tensor rewritten by `edit` (null drops it, a list adds more). */
function checkpointWith(name: string, edit: (ref: TensorRef, bytes: Uint8Array) => Entry | Entry[] | null): string {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.copyFileSync(path.join(CKPT, 'config.json'), path.join(dir, 'config.json'));
  const out: Entry[] = [];
  for (const ref of openSafetensors(path.join(CKPT, 'model.safetensors')).values()) {
    const e = edit(ref, readTensorBytes(ref));
    if (e) out.push(...(Array.isArray(e) ? e : [e]));
  }
  writeSafetensors(path.join(dir, 'model.safetensors'), out.map((e) => e.ref), (i) => out[i]!.bytes);
  return dir;
}

function listTree(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true, withFileTypes: false }).map(String).sort();
}

const f32 = (b: Uint8Array) => new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));

/** float32 -> IEEE half (round to nearest even), and back. */
function toHalf(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer)[0]!;
  const sign = (u >>> 16) & 0x8000;
  const exp = ((u >>> 23) & 0xff) - 127 + 15;
  let mant = u & 0x7fffff;
  if (exp <= 0) { // subnormal
    if (exp < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - exp;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = sign | (exp << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  return h;
}

describe('sessions and graph files', () => {
  it('a graph is written once, beside hard links to the weights, and reused', async () => {
    const cache = path.join(tmp, 'cache1');
    const before = listTree(CKPT);
    const m1 = await AltCLIPModel.fromPretrained(CKPT, { graphCacheDir: cache });
    await m1.dispose();
    assert.deepEqual(listTree(CKPT), before, 'nothing is written into the checkpoint folder');
    const graphs = fs.readdirSync(path.join(cache, 'graphs'));
    assert.deepEqual(graphs.map((g) => g.replace(/-[0-9a-f]{24}$/, '')).sort(), ['text', 'vision']);
    const textDir = path.join(cache, 'graphs', graphs.find((g) => g.startsWith('text'))!);
    const weightsLink = path.join(textDir, 'weights-0.safetensors');
    assert.equal(fs.statSync(weightsLink).ino, fs.statSync(path.join(CKPT, 'model.safetensors')).ino, 'hard link, not a copy');
    const model = path.join(textDir, 'model.onnx');
    const mtime = fs.statSync(model).mtimeMs;
    assert.ok(fs.readdirSync(textDir).every((f) => !f.endsWith('.tmp')), 'no temporary files left');
    const m2 = await AltCLIPModel.fromPretrained(CKPT, { graphCacheDir: cache });
    assertClose(await m2.getTextFeatures(inputs), goldens.get('single/get_text_features'), 1e-4, 'reused/get_text_features');
    await m2.dispose();
    assert.equal(fs.statSync(model).mtimeMs, mtime, 'the cached graph is reused, not rewritten');
  });

  /** Runs `body` with os.tmpdir() at `dir` (the graph cache's fallback folder lives there), collecting warnings. */
  async function withTmpdirAndWarnings(dir: string, body: () => Promise<void>): Promise<string[]> {
    const saved = process.env.TMPDIR;
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.message);
    process.env.TMPDIR = dir;
    process.on('warning', onWarning);
    try {
      await body();
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off('warning', onWarning);
      if (saved === undefined) delete process.env.TMPDIR; else process.env.TMPDIR = saved;
    }
    return warnings;
  }

  it('an unusable cache folder falls back to a private temp folder, with one warning, never the model folder', async () => {
    // two ways a cache folder fails: a path under a file (mkdir fails, ENOTDIR; root ignores
    // permissions, so no chmod here), and another file system (/dev/shm: linking fails with EXDEV)
    const dir = checkpointWith('fallback', (ref, bytes) => ({ ref, bytes }));
    const before = listTree(dir);
    const blocker = path.join(tmp, 'blocker');
    fs.writeFileSync(blocker, '');
    const shm = fs.existsSync('/dev/shm') ? fs.mkdtempSync('/dev/shm/altclip-') : null;
    try {
      const caches = [path.join(blocker, 'cache')];
      if (shm && fs.statSync(shm).dev !== fs.statSync(dir).dev) caches.push(shm);
      for (const [i, cache] of caches.entries()) {
        const tmpdir = path.join(tmp, `tmpdir-${i}`);
        fs.mkdirSync(tmpdir);
        const warnings = await withTmpdirAndWarnings(tmpdir, async () => {
          const m = await AltCLIPModel.fromPretrained(dir, { graphCacheDir: cache });
          assertClose(await m.getTextFeatures(inputs), goldens.get('single/get_text_features'), 1e-4, `fallback ${cache}/get_text_features`);
          await m.dispose();
        });
        assert.deepEqual(listTree(dir), before, 'nothing is written into the model folder');
        const fallback = fs.readdirSync(tmpdir);
        assert.equal(fallback.length, 1);
        assert.match(fallback[0]!, /^altclip-cache-/);
        assert.equal(fs.statSync(path.join(tmpdir, fallback[0]!)).mode & 0o777, 0o700, 'a private folder');
        assert.deepEqual(fs.readdirSync(path.join(tmpdir, fallback[0]!, 'graphs')).map((g) => g.replace(/-[0-9a-f]{24}$/, '')).sort(), ['text', 'vision']);
        const said = warnings.filter((w) => w.includes('cannot use the cache folder'));
        assert.equal(said.length, 1, `one warning for both towers: ${warnings.join('\n')}`);
        assert.ok(said[0]!.includes(cache) && said[0]!.includes(path.join(tmpdir, fallback[0]!)), said[0]);
      }
    } finally {
      if (shm) fs.rmSync(shm, { recursive: true, force: true });
    }
  });

  it('with no writable folder at all, the weights go to onnxruntime in memory (one warning), same numbers', async () => {
    const blocker = path.join(tmp, 'blocker2');
    fs.writeFileSync(blocker, '');
    const warnings = await withTmpdirAndWarnings(path.join(blocker, 'tmp'), async () => {
      const m = await AltCLIPModel.fromPretrained(CKPT, { graphCacheDir: path.join(blocker, 'cache') });
      assertClose(await m.getTextFeatures(inputs), goldens.get('single/get_text_features'), 1e-4, 'in memory/get_text_features');
      await m.dispose();
    });
    assert.equal(warnings.filter((w) => /no writable cache folder for graphs .*into memory/.test(w)).length, 1, warnings.join('\n'));
  });

  it('cachePrepacked: onnxruntime\'s optimized graph with packed weights is cached once and loaded after', async () => {
    const cache = path.join(tmp, 'cache-prepacked');
    const pixelValues = new Goldens(path.join(FIXTURES, 'image_processor', 'pixel_values.safetensors')).concat(['pixel_values/cat']);
    for (let round = 0; round < 2; round++) {
      const m = await AltCLIPModel.fromPretrained(CKPT, { graphCacheDir: cache, cachePrepacked: true });
      assertClose(await m.getTextFeatures(inputs), goldens.get('single/get_text_features'), 1e-4, 'prepacked/get_text_features');
      assertClose(await m.getImageFeatures({ pixelValues }), goldens.get('single/get_image_features'), 1e-4, 'prepacked/get_image_features');
      await m.dispose();
      for (const graph of fs.readdirSync(path.join(cache, 'graphs'))) {
        const entries = fs.readdirSync(path.join(cache, 'graphs', graph));
        const packed = entries.filter((e) => e.startsWith('prepacked-'));
        assert.equal(packed.length, 1, `${graph}: ${entries}`);
        assert.ok(!packed[0]!.endsWith('.tmp'));
        assert.deepEqual(fs.readdirSync(path.join(cache, 'graphs', graph, packed[0]!)).sort(), ['model.data', 'model.onnx']);
      }
    }
  });

  it('sessions run in worker threads by default, on the calling thread with workerThreads: false: same numbers', async () => {
    const pixelValues = new Goldens(path.join(FIXTURES, 'image_processor', 'pixel_values.safetensors')).concat(['pixel_values/cat']);
    const cache = path.join(tmp, 'cache-threads');
    for (const workerThreads of [true, false]) {
      const m = await AltCLIPModel.fromPretrained(CKPT, { graphCacheDir: cache, workerThreads });
      // both towers at once, and a call with hidden states and attentions (a second session per tower)
      const [text, image, full] = await Promise.all([m.getTextFeatures(inputs), m.getImageFeatures({ pixelValues }),
        m.forward({ ...inputs, pixelValues, outputHiddenStates: true, outputAttentions: true })]);
      assertClose(text, goldens.get('single/get_text_features'), 1e-4, `threads=${workerThreads}/get_text_features`);
      assertClose(image, goldens.get('single/get_image_features'), 1e-4, `threads=${workerThreads}/get_image_features`);
      assertClose(full.logitsPerImage, goldens.get('single/outputs/logits_per_image'), 1e-4, `threads=${workerThreads}/logits_per_image`);
      assert.equal(full.textModelOutput.hiddenStates!.length, 3);
      await m.dispose();
    }
  });

  it('an idle session thread does not keep the process alive (no dispose needed to exit)', () => {
    const script = `import { AltCLIPModel, Tensor } from ${JSON.stringify(path.resolve('src/index.ts'))};
      const m = await AltCLIPModel.fromPretrained(${JSON.stringify(CKPT)}, { graphCacheDir: ${JSON.stringify(path.join(tmp, 'cache-exit'))} });
      const ids = new Tensor('int64', new BigInt64Array([0n, 5n, 2n]), [1, 3]);
      console.log((await m.getTextFeatures({ inputIds: ids })).dims.join('x'));`;
    const file = path.join(tmp, 'exit.mts');
    fs.writeFileSync(file, script);
    const r = spawnSync(process.execPath, ['--import', 'tsx', file], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.signal, null, 'exited by itself');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^1x\d+$/m);
  });

  it('a model dropped without dispose() ends its session threads once it is garbage-collected', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const cache = path.join(tmp, 'cache-gc');
    const before = sessionThreadCount();
    let model: AltCLIPModel | undefined = await AltCLIPModel.fromPretrained(CKPT, { graphCacheDir: cache });
    await model.getTextFeatures(inputs);
    assert.equal(sessionThreadCount(), before + 2, 'one thread per tower session');
    model = undefined;
    // collections, each followed by a turn of the event loop (finalizers and thread exits run there);
    // bounded by count, not time
    for (let i = 0; i < 200 && sessionThreadCount() > before; i++) {
      gc();
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(sessionThreadCount(), before, 'the threads ended');
  });

  it('a damaged cached graph (or prepacked copy) is made again, not fatal', async () => {
    const cache = path.join(tmp, 'cache-damaged');
    const pixelValues = new Goldens(path.join(FIXTURES, 'image_processor', 'pixel_values.safetensors')).concat(['pixel_values/cat']);
    await (await AltCLIPModel.fromPretrained(CKPT, { graphCacheDir: cache, cachePrepacked: true })).dispose();
    for (const graph of fs.readdirSync(path.join(cache, 'graphs'))) {
      const dir = path.join(cache, 'graphs', graph);
      fs.writeFileSync(path.join(dir, 'model.onnx'), 'not a graph');
      const packed = fs.readdirSync(dir).find((e) => e.startsWith('prepacked-'))!;
      fs.truncateSync(path.join(dir, packed, 'model.onnx'), 10);
    }
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.message);
    process.on('warning', onWarning);
    try {
      for (const cachePrepacked of [false, true]) {
        const m = await AltCLIPModel.fromPretrained(CKPT, { graphCacheDir: cache, cachePrepacked });
        assertClose(await m.getTextFeatures(inputs), goldens.get('single/get_text_features'), 1e-4, `damaged/${cachePrepacked}/text`);
        assertClose(await m.getImageFeatures({ pixelValues }), goldens.get('single/get_image_features'), 1e-4, `damaged/${cachePrepacked}/image`);
        await m.dispose();
      }
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off('warning', onWarning);
    }
    assert.equal(warnings.filter((w) => /rebuilding .*prepacked-/.test(w)).length, 2, warnings.join('\n'));
  });

  it('the event loop stays free while a session thread runs (and is blocked with workerThreads: false)', async () => {
    // a random model big enough for a run to take a while (ViT with 197 tokens, 16 layers of 256), and
    // 3 images: one run (the vision tower runs bigger batches a few images at a time)
    const config = { text: { vocab: 1000, hidden: 64, layers: 1, heads: 4, ffn: 128, maxPos: 514, typeVocab: 1, projectDim: 64 },
      vision: { hidden: 256, layers: 16, heads: 8, ffn: 1024, patch: 16, image: 224, channels: 3 }, projectionDim: 64, logitScale: 2.6592 };
    const dir = ensureCheckpoint(path.join(tmp, 'vit-small'), 1, () => {}, config);
    const pixelValues = new Tensor('float32', new Float32Array(3 * 3 * 224 * 224).fill(0.25), [3, 3, 224, 224]);
    // event-loop turns (a chain of setImmediate) while one run is pending: no clock involved
    const turnsDuringRun = async (workerThreads: boolean) => {
      const m = await AltCLIPModel.fromPretrained(dir, { graphCacheDir: path.join(tmp, 'cache-loop'), workerThreads });
      try {
        await m.getImageFeatures({ pixelValues }); // warm-up
        let turns = 0;
        let pending = true;
        const turn = () => { if (pending) { turns++; setImmediate(turn); } };
        const run = m.getImageFeatures({ pixelValues });
        setImmediate(turn);
        const out = await run;
        pending = false;
        assert.deepEqual(out.dims, [3, 64]);
        return turns;
      } finally {
        await m.dispose();
      }
    };
    const threaded = await turnsDuringRun(true);
    const local = await turnsDuringRun(false);
    // on the calling thread the run holds the thread: at most the turn before it starts and the one
    // it ends in; in a session thread the loop keeps turning (a run of 3 images through 16 layers
    // lasts thousands of turns on any machine)
    assert.ok(local <= 2, `calling thread: ${local} event-loop turns during the run`);
    assert.ok(threaded >= 10, `session thread: ${threaded} event-loop turns during the run`);
  });

  it('missing and mis-shaped weights are all listed in one error', async () => {
    const dir = checkpointWith('broken', (ref, bytes) => {
      if (ref.name === 'text_model.pre_LN.bias' || ref.name === 'vision_model.post_layernorm.weight') return null;
      if (ref.name === 'text_projection.weight') return { ref: { ...ref, shape: [ref.shape[1]!, ref.shape[0]!] }, bytes };
      return { ref, bytes };
    });
    await assert.rejects(AltCLIPModel.fromPretrained(dir, { graphCacheDir: path.join(tmp, 'cache2') }), (e: Error) => {
      assert.match(e.message, /the weights do not match the config/);
      // the first line (all the CLI prints) has the count and the mismatches, with shapes
      const first = e.message.split('\n')[0]!;
      assert.match(first, /\(3 problems\): /);
      assert.match(first, /missing weight text_model\.pre_LN\.bias \(expected shape \[32\]\)/);
      assert.match(first, /weight text_projection\.weight has shape \[40,24\], the config implies \[24,40\]/);
      assert.match(e.message, /missing weight text_model\.pre_LN\.bias \(expected shape \[32\]\)/);
      assert.match(e.message, /missing weight vision_model\.post_layernorm\.weight/);
      assert.match(e.message, /weight text_projection\.weight has shape \[40,24\], the config implies \[24,40\]/);
      return true;
    });
  });

  it('unexpected extra keys give a warning, as transformers does', async () => {
    const extra = checkpointWith('extra', (ref, bytes) => (ref.name === 'logit_scale'
      ? [{ ref, bytes }, { ref: { ...ref, name: 'text_model.roberta.pooler.dense.bias' }, bytes }] : { ref, bytes }));
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.message);
    process.on('warning', onWarning);
    try {
      const m = await AltCLIPModel.fromPretrained(extra, { graphCacheDir: path.join(tmp, 'cache3') });
      await m.dispose();
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off('warning', onWarning);
    }
    assert.ok(warnings.some((w) => /were not used when initializing AltCLIPModel: text_model\.roberta\.pooler\.dense\.bias/.test(w)), warnings.join('\n'));
  });

  it('a config with fewer layers than the weights is refused, naming the unused tensors', async () => {
    const dir = checkpointWith('fewer-layers', (ref, bytes) => ({ ref, bytes }));
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    const layers = config.vision_config.num_hidden_layers as number;
    assert.ok(layers >= 2);
    config.vision_config.num_hidden_layers = layers - 1;
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
    const unused = [...openSafetensors(path.join(dir, 'model.safetensors')).keys()]
      .filter((k) => k.startsWith(`vision_model.encoder.layers.${layers - 1}.`));
    for (const load of [() => AltCLIPModel.fromPretrained(dir, { graphCacheDir: path.join(tmp, 'cache-layers') }),
      () => AltCLIPVisionModel.fromPretrained(dir, { graphCacheDir: path.join(tmp, 'cache-layers') })]) {
      await assert.rejects(load(), (e: Error) => {
        const first = e.message.split('\n')[0]!;
        assert.ok(first.startsWith(dir), first);
        assert.match(first, new RegExp(`${unused.length} checkpoint tensors are not used by the config`));
        assert.match(first, new RegExp(`vision_model\\.encoder\\.layers\\.${layers - 1}\\.\\S+ \\[\\d`));
        return true;
      });
    }
    // the text tower alone, from the same full checkpoint, does not use the vision weights: fine, as in transformers
    const text = await AltCLIPTextModel.fromPretrained(dir, { graphCacheDir: path.join(tmp, 'cache-layers') });
    await text.dispose();
  });

  it('parts: "text" checks and starts the text tower only (the vision weights are left alone)', async () => {
    const dir = checkpointWith('text-part', (ref, bytes) => (ref.name === 'vision_model.post_layernorm.weight' ? null : { ref, bytes }));
    const cache = path.join(tmp, 'cache-parts');
    await assert.rejects(AltCLIPModel.fromPretrained(dir, { graphCacheDir: cache }), /missing weight vision_model\.post_layernorm\.weight/);
    const before = sessionThreadCount();
    const m = await AltCLIPModel.fromPretrained(dir, { graphCacheDir: cache, parts: 'text' });
    assert.equal(sessionThreadCount(), before + 1, 'one session: the text tower');
    assertClose(await m.getTextFeatures(inputs), goldens.get('single/get_text_features'), 1e-4, 'parts text/get_text_features');
    await m.dispose();
    await assert.rejects(AltCLIPModel.fromPretrained(dir, { graphCacheDir: cache, parts: 'texts' as 'text' }), /parts must be "text", "vision" or "both"/);
  });

  it('threads far above the core count are refused with a clear message', async () => {
    const cores = os.availableParallelism();
    for (const threads of [1000, 4 * cores + 1]) {
      await assert.rejects(AltCLIPModel.fromPretrained(CKPT, { graphCacheDir: path.join(tmp, 'cache-threads-cap'), threads }),
        new RegExp(`threads: ${threads} is far above this machine's ${cores} cores \\(at most ${4 * cores}`));
    }
    await assert.rejects(AltCLIPModel.fromPretrained(CKPT, { graphCacheDir: path.join(tmp, 'cache-threads-cap'), threads: 0 }),
      /threads must be a positive integer, got 0/);
    const m = await AltCLIPModel.fromPretrained(CKPT, { graphCacheDir: path.join(tmp, 'cache-threads-cap'), threads: 4 * cores });
    await m.dispose();
  });

  for (const workerThreads of [true, false]) {
    it(`a process with a 100 KB command line loads a model and classifies (workerThreads: ${workerThreads})`, () => {
      // onnxruntime's telemetry ran a regex over /proc/self/cmdline that overflowed the stack: exit 139
      // (SIGSEGV) before the library turned it off (ort_env.mjs)
      const script = `import { loadAltCLIP, zeroShotImageClassification } from ${JSON.stringify(path.resolve('src/index.ts'))};
        const clip = await loadAltCLIP(${JSON.stringify(CKPT)}, { workerThreads: ${workerThreads}, graphCacheDir: ${JSON.stringify(path.join(tmp, 'cache-argv'))} });
        const [scores] = await zeroShotImageClassification(clip, [${JSON.stringify(path.join(FIXTURES, 'images', 'cat.jpg'))}], ['a cat', 'a dog']);
        console.log(JSON.stringify(scores.map((s) => s.label)));
        await clip.model.dispose();`;
      const file = path.join(tmp, `argv-${workerThreads}.mts`);
      fs.writeFileSync(file, script);
      const env = { ...process.env };
      delete env.ORT_DISABLE_TELEMETRY;
      const r = spawnSync(process.execPath, ['--import', 'tsx', file, 'x'.repeat(100_000)], { encoding: 'utf8', timeout: 120_000, env });
      assert.equal(r.signal, null, r.stderr);
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout.trim()).sort(), ['a cat', 'a dog']);
    });
  }

  it('cache list / prune: entries of a deleted or replaced model are stale and pruned; current ones stay (library and CLI)', async () => {
    const cache = path.join(tmp, 'cache-prune');
    const a = checkpointWith('prune-a', (ref, bytes) => ({ ref, bytes }));
    const b = checkpointWith('prune-b', (ref, bytes) => ({ ref, bytes }));
    for (const dir of [a, b]) {
      for (const dtype of ['fp32', 'q8'] as const) await (await AltCLIPModel.fromPretrained(dir, { graphCacheDir: cache, dtype })).dispose();
    }
    const kinds = (entries: CacheEntry[]) => entries.map((e) => e.kind).sort().join(',');
    const all = listCache(cache);
    // per checkpoint: text, vision, text-q8, vision-q8 graphs and one q8 file per tower
    assert.equal(kinds(all), `${'graph,'.repeat(8)}q8,q8,q8,q8`);
    assert.ok(all.every((e) => e.stale === null), JSON.stringify(all.filter((e) => e.stale)));
    const weightsA = path.join(a, 'model.safetensors');
    assert.ok(all.filter((e) => e.kind === 'graph').every((e) => e.sources.includes(weightsA) || e.sources.includes(path.join(b, 'model.safetensors'))
      || e.sources.some((f) => f.includes(`${path.sep}q8${path.sep}`))));
    // a killed writer's temporary, an hour old
    const leftover = path.join(cache, 'graphs', `text-x.${'0'.repeat(8)}-0000-0000-0000-${'0'.repeat(12)}.tmp`);
    fs.mkdirSync(leftover);
    fs.utimesSync(leftover, new Date(Date.now() - 7_200_000), new Date(Date.now() - 7_200_000));

    // model A replaced by a new download (a new file at the same path), its old bytes only in the cache
    const bytes = fs.readFileSync(weightsA);
    fs.rmSync(weightsA);
    fs.writeFileSync(weightsA, bytes);
    const listed = listCache(cache);
    const stale = listed.filter((e) => e.stale);
    // A's 4 graphs and 2 q8 files (q8 graphs also name the q8 file they link), and the temporary
    assert.equal(kinds(stale), 'graph,graph,graph,graph,q8,q8,temporary', JSON.stringify(stale.map((e) => [e.path, e.stale])));
    assert.ok(stale.filter((e) => e.kind !== 'temporary').every((e) => /source .* has changed/.test(e.stale!)));
    // the old weights are held by the cache's hard links only now: pruning frees them (counted once)
    const graphBytes = stale.filter((e) => e.kind === 'graph').map((e) => e.bytes);
    assert.ok(graphBytes.every((n) => n >= bytes.length), `${graphBytes}`);
    const freed = freedBytes(stale);
    assert.ok(freed >= bytes.length && freed < 2 * bytes.length + stale.reduce((n, e) => n + (e.kind === 'graph' ? 0 : e.bytes), 0) + 1_000_000, `${freed}`);
    assert.ok(listed.filter((e) => !e.stale && e.kind === 'graph').every((e) => e.bytes < bytes.length), 'current entries share the weights with the checkpoint');

    // the CLI: list as JSON, prune --dry-run deletes nothing, prune deletes exactly the stale entries
    const cli = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', path.resolve('src/cli/main.ts'), 'cache', ...args, '--cache-dir', cache],
      { encoding: 'utf8', timeout: 60_000 });
    const list = cli('list', '--json');
    assert.equal(list.status, 0, list.stderr);
    assert.deepEqual(JSON.parse(list.stdout).entries.map((e: CacheEntry) => [e.path, e.stale !== null]), listed.map((e) => [e.path, e.stale !== null]));
    const dry = cli('prune', '--dry-run');
    assert.equal(dry.status, 0, dry.stderr);
    assert.match(dry.stdout, /would remove 7 stale entries/);
    assert.equal(listCache(cache).length, listed.length);
    const prune = cli('prune');
    assert.equal(prune.status, 0, prune.stderr);
    assert.match(prune.stdout, /removed 7 stale entries/);
    const left = listCache(cache);
    assert.deepEqual(left.map((e) => e.path), listed.filter((e) => !e.stale).map((e) => e.path));
    assert.ok(left.every((e) => e.stale === null));
    assert.ok(fs.readdirSync(path.join(cache, 'q8')).every((f) => left.some((e) => e.path === path.join(cache, 'q8', f.replace(/\.json$/, '.safetensors')))),
      'q8 manifests go with their files');
    // B still loads from its entries (nothing rebuilt: the graph files keep their mtime)
    const mtimes = left.filter((e) => e.kind === 'graph').map((e) => fs.statSync(path.join(e.path, 'model.onnx')).mtimeMs);
    await (await AltCLIPModel.fromPretrained(b, { graphCacheDir: cache })).dispose();
    assert.deepEqual(left.filter((e) => e.kind === 'graph').map((e) => fs.statSync(path.join(e.path, 'model.onnx')).mtimeMs), mtimes);
  });

  for (const dtype of ['F16', 'BF16'] as const) {
    it(`${dtype} checkpoints are computed in fp32 (same result as fp32 weights of the same values)`, async () => {
      const round = (x: number) => {
        if (dtype === 'BF16') {
          const u = new Uint32Array(new Float32Array([x]).buffer)[0]!;
          return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
        }
        return toHalf(x);
      };
      const fromHalf = (h: number): number => {
        if (dtype === 'BF16') return new Float32Array(new Uint32Array([h << 16]).buffer)[0]!;
        const s = h & 0x8000 ? -1 : 1;
        const e = (h >>> 10) & 0x1f;
        const m = h & 0x3ff;
        return e === 0 ? s * m * 2 ** -24 : s * (1 + m / 1024) * 2 ** (e - 15);
      };
      const half = checkpointWith(`half-${dtype}`, (ref, bytes) => {
        if (ref.dtype !== 'F32') return { ref, bytes };
        const h = Uint16Array.from(f32(bytes), round);
        return { ref: { ...ref, dtype, byteLength: h.byteLength }, bytes: new Uint8Array(h.buffer) };
      });
      const rounded = checkpointWith(`rounded-${dtype}`, (ref, bytes) => {
        if (ref.dtype !== 'F32') return { ref, bytes };
        const v = Float32Array.from(f32(bytes), (x) => fromHalf(round(x)));
        return { ref, bytes: new Uint8Array(v.buffer) };
      });
      const cache = path.join(tmp, `cache-${dtype}`);
      const a = await AltCLIPModel.fromPretrained(half, { graphCacheDir: cache });
      const b = await AltCLIPModel.fromPretrained(rounded, { graphCacheDir: cache });
      try {
        const pixelValues = new Goldens(path.join(FIXTURES, 'image_processor', 'pixel_values.safetensors')).concat(['pixel_values/cat']);
        const x = await a.forward({ ...inputs, pixelValues });
        const y = await b.forward({ ...inputs, pixelValues });
        assertClose(x.textEmbeds, y.textEmbeds, 1e-6, `${dtype}/text_embeds`);
        assertClose(x.imageEmbeds, y.imageEmbeds, 1e-6, `${dtype}/image_embeds`);
        // and still near the fp32 reference
        assertClose(x.logitsPerImage, goldens.get('single/outputs/logits_per_image'), dtype === 'F16' ? 0.05 : 0.5, `${dtype}/logits_per_image`);
      } finally {
        await Promise.all([a.dispose(), b.dispose()]);
      }
    });
  }
});
