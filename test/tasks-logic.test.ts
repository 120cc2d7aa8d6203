// Task logic against a small stand-in model whose embeddings are known exactly: softmax/sigmoid,
// sorting, topK, templates and prompt ensembling, batching and streaming, per-input failures,
// progress, cancellation, empty inputs.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Tensor } from '../src/tensor.js';
import {
  embedImageBatches, embedImages, embedTextBatches, embedTexts, imageTextSimilarity, logitScale, pipeline, zeroShotImageClassification,
} from '../src/tasks/index.js';
import type { AltCLIPParts, InputFailure, TaskModel, TaskProcessor } from '../src/tasks/index.js';

const DIM = 4;
const SCALE = 14.284855842590332;

/** A fixed pseudo-random vector per string (not normalised). */
function vectorOf(s: string): number[] {
  let h = 2166136261;
  for (const ch of s) h = Math.imul(h ^ ch.codePointAt(0)!, 16777619) >>> 0;
  return Array.from({ length: DIM }, (_, k) => (((h >>> (k * 7)) % 97) - 40) / 10 + (k === 0 ? 3 : 0));
}
const unit = (v: number[]) => {
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
};
const dot = (a: number[], b: number[]) => a.reduce((s, x, i) => s + x * b[i], 0);

/** Stand-in: "input ids" are indices into a registry of strings, "pixels" encode the image's name. */
function fake(): AltCLIPParts & { calls: { text: string[][]; images: number[]; imageRuns: number[] } } {
  const registry: string[] = [];
  const calls = { text: [] as string[][], images: [] as number[], imageRuns: [] as number[] };
  const idOf = (s: string) => (registry.includes(s) ? registry.indexOf(s) : registry.push(s) - 1);
  const features = (ids: Tensor) =>
    new Tensor('float32', Float32Array.from([...(ids.data as BigInt64Array)].flatMap((id) => vectorOf(registry[Number(id)]))), [ids.dims[0], DIM]);
  const processor: TaskProcessor = {
    async process({ text, images }) {
      const out: Awaited<ReturnType<TaskProcessor['process']>> = {};
      if (text !== undefined) {
        const list = typeof text === 'string' ? [text] : text;
        calls.text.push(list);
        out.inputIds = new Tensor('int64', BigInt64Array.from(list.map((t) => BigInt(idOf(`text:${t}`)))), [list.length, 1]);
        out.attentionMask = new Tensor('int64', new BigInt64Array(list.length).fill(1n), [list.length, 1]);
      }
      if (images !== undefined) {
        const list = Array.isArray(images) ? images : [images];
        calls.images.push(list.length);
        const names = list.map((im) => {
          if (typeof im !== 'string') return 'image:<raw>';
          if (im.includes('corrupt')) throw new Error(`${im}: unsupported image format`);
          return `image:${im}`;
        });
        out.pixelValues = new Tensor('int64', BigInt64Array.from(names.map((n) => BigInt(idOf(n)))), [list.length, 1]);
      }
      return out;
    },
  };
  const model: TaskModel = {
    config: { projectionDim: DIM },
    logitScaleExp: SCALE,
    getTextFeatures: async ({ inputIds }) => features(inputIds),
    getImageFeatures: async ({ pixelValues }) => {
      calls.imageRuns.push(pixelValues.dims[0]!);
      return features(pixelValues);
    },
    dispose: async () => {},
  };
  return { model, processor, calls };
}

function expectedScores(image: string, texts: string[], multiLabel = false): number[] {
  const iv = unit(vectorOf(`image:${image}`));
  const logits = texts.map((t) => SCALE * dot(iv, unit(vectorOf(`text:${t}`))));
  if (multiLabel) return logits.map((l) => 1 / (1 + Math.exp(-l)));
  const m = Math.max(...logits);
  const e = logits.map((l) => Math.exp(l - m));
  return e.map((x) => x / e.reduce((a, b) => a + b));
}

function assertClose(actual: number, expected: number, tol: number, what: string) {
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: ${actual} vs ${expected} (diff ${Math.abs(actual - expected)})`);
}

describe('logitScale', () => {
  test('is exp(logit_scale) in float32', () => {
    assert.equal(logitScale(fake()), Math.fround(SCALE));
  });
});

describe('zeroShotImageClassification', () => {
  const labels = ['a cat', '一只狗', 'a bird'];

  test('softmax over the labels with the default template, sorted best first', async () => {
    const clip = fake();
    const result = await zeroShotImageClassification(clip, 'cat.jpg', labels);
    assert.ok(clip.calls.text.some((b) => b.includes('This is a photo of 一只狗.')));
    const expected = expectedScores('cat.jpg', labels.map((l) => `This is a photo of ${l}.`));
    assert.equal(result.length, 3);
    for (const { label, score } of result) assertClose(score, expected[labels.indexOf(label)], 1e-6, label);
    assertClose(result.reduce((s, r) => s + r.score, 0), 1, 1e-9, 'sum');
    for (let i = 1; i < result.length; i++) assert.ok(result[i - 1].score >= result[i].score);
  });

  test('one list per image for an array of images; topK keeps the best', async () => {
    const clip = fake();
    const all = await zeroShotImageClassification(clip, ['a.jpg', 'b.png', 'c.jpg'], labels, { batchSize: 2 });
    const top = await zeroShotImageClassification(clip, ['a.jpg', 'b.png', 'c.jpg'], labels, { topK: 1 });
    assert.equal(all.length, 3);
    assert.deepEqual(top.map((r) => r.length), [1, 1, 1]);
    assert.deepEqual(top.map((r) => r[0].label), all.map((r) => r[0].label));
    assert.deepEqual(clip.calls.imageRuns.slice(0, 2), [2, 1]); // model runs of 2, then 1
  });

  test('multiLabel: sigmoid of each logit', async () => {
    const clip = fake();
    const result = await zeroShotImageClassification(clip, 'a.jpg', labels, { multiLabel: true, hypothesisTemplate: '{}' });
    const expected = expectedScores('a.jpg', labels, true);
    for (const { label, score } of result) assertClose(score, expected[labels.indexOf(label)], 1e-6, label);
  });

  test('several templates: mean of the normalised text embeddings, renormalised', async () => {
    const clip = fake();
    const templates = ['a photo of {}', 'a drawing of {}', '{}!'];
    const result = await zeroShotImageClassification(clip, 'a.jpg', labels, { hypothesisTemplate: templates });
    const iv = unit(vectorOf('image:a.jpg'));
    const logits = labels.map((l) => {
      const mean = templates.map((t) => unit(vectorOf(`text:${t.replace('{}', l)}`))).reduce((a, v) => a.map((x, k) => x + v[k] / templates.length), [0, 0, 0, 0]);
      return SCALE * dot(iv, unit(mean));
    });
    const e = logits.map((x) => Math.exp(x));
    for (const { label, score } of result) assertClose(score, e[labels.indexOf(label)] / e.reduce((a, b) => a + b), 1e-6, label);
  });

  test('labels go into the template literally', async () => {
    const clip = fake();
    await zeroShotImageClassification(clip, 'a.jpg', ["$& $1 $' {}"], { hypothesisTemplate: '<{}|{}>' });
    assert.ok(clip.calls.text.some((b) => b.includes("<$& $1 $' {}|$& $1 $' {}>")), JSON.stringify(clip.calls.text));
  });

  test('bad arguments are clear errors', async () => {
    const clip = fake();
    await assert.rejects(zeroShotImageClassification(clip, 'a.jpg', []), /no candidate labels/);
    await assert.rejects(zeroShotImageClassification(clip, 'a.jpg', ['']), /empty/);
    await assert.rejects(zeroShotImageClassification(clip, 'a.jpg', ['x'], { hypothesisTemplate: 'no slot' }), /has no \{\}/);
    await assert.rejects(zeroShotImageClassification(clip, 'a.jpg', ['x'], { topK: 0 }), /topK/);
    await assert.rejects(zeroShotImageClassification(clip, 'corrupt.jpg', ['x']), /corrupt\.jpg/);
  });
});

describe('imageTextSimilarity', () => {
  test('cosine of the embeddings and exp(logit_scale) * cosine', async () => {
    const clip = fake();
    const texts = ['a', 'b c', 'ü'];
    const r = await imageTextSimilarity(clip, ['x.jpg', 'y.jpg'], texts);
    ['x.jpg', 'y.jpg'].forEach((im, i) =>
      texts.forEach((t, j) => {
        const c = dot(unit(vectorOf(`image:${im}`)), unit(vectorOf(`text:${t}`)));
        assertClose(r.cosine[i][j], c, 1e-6, `cos ${im} ${t}`);
        assertClose(r.logitsPerImage[i][j], SCALE * c, 1e-5, `logit ${im} ${t}`);
      }),
    );
  });
});

describe('embedImages / embedTexts', () => {
  test('normalised by default, raw on request, in batches, with progress', async () => {
    const clip = fake();
    const texts = ['one', 'two', 'three', 'four', 'five'];
    const progress: number[] = [];
    const e = await embedTexts(clip, texts, { batchSize: 2, onProgress: (done) => progress.push(done) });
    assert.deepEqual(e.dims, [5, DIM]);
    assert.deepEqual(clip.calls.text.map((b) => b.length), [2, 2, 1]);
    assert.deepEqual(progress, [2, 4, 5]);
    texts.forEach((t, i) => unit(vectorOf(`text:${t}`)).forEach((x, k) => assertClose((e.data as Float32Array)[i * DIM + k], x, 1e-6, t)));
    const raw = await embedImages(clip, ['p.png'], { normalize: false });
    assert.deepEqual([...(raw.data as Float32Array)], vectorOf('image:p.png').map(Math.fround));
    await assert.rejects(embedTexts(clip, texts, { batchSize: 0 }), /batchSize/);
  });
});

describe('pipeline', () => {
  test('binds a task to a loaded model', async () => {
    const clip = fake();
    const classify = await pipeline('zero-shot-image-classification', clip);
    assert.equal(classify.task, 'zero-shot-image-classification');
    assert.deepEqual(await classify('a.jpg', ['x', 'y']), await zeroShotImageClassification(clip, 'a.jpg', ['x', 'y']));
    const embed = await pipeline('feature-extraction', clip);
    assert.deepEqual((await embed(['x'])).dims, [1, DIM]);
    await assert.rejects(pipeline('nope' as 'feature-extraction', clip), /unknown task/);
  });
});

describe('per-input failures (onError), progress, cancellation', () => {
  const images = ['a.jpg', 'corrupt1.jpg', 'b.jpg', 'c.jpg', 'corrupt2.png'];

  test('with onError: unreadable images are reported (index, input, error naming it) and get no row', async () => {
    const clip = fake();
    const failures: InputFailure[] = [];
    const progress: [number, number][] = [];
    const e = await embedImages(clip, images, { batchSize: 2, onError: (f) => failures.push(f), onProgress: (d, t) => progress.push([d, t]) });
    assert.deepEqual(e.dims, [3, DIM]);
    ['a.jpg', 'b.jpg', 'c.jpg'].forEach((im, i) =>
      unit(vectorOf(`image:${im}`)).forEach((x, k) => assertClose((e.data as Float32Array)[i * DIM + k], x, 1e-6, im)));
    assert.deepEqual(failures.map((f) => [f.index, f.input]), [[1, 'corrupt1.jpg'], [4, 'corrupt2.png']]);
    for (const f of failures) assert.match(f.error.message, new RegExp(`^${f.input.replace('.', '\\.')}: unsupported image format`));
    assert.deepEqual(progress, [[2, 5], [4, 5], [5, 5]]); // failed inputs count as finished
    assert.deepEqual(clip.calls.imageRuns, [1, 2]); // the batch of one bad image never reaches the model
  });

  test('without onError: the first unreadable image throws, naming it', async () => {
    await assert.rejects(embedImages(fake(), images), /corrupt1\.jpg: unsupported image format/);
  });

  test('bytes and raw pixels are named by their position', async () => {
    const clip = fake();
    const bad = fake();
    bad.processor = { process: async () => { throw new Error('image 0 (encoded bytes): not an image'); } };
    const failures: InputFailure[] = [];
    await embedImages(bad, [new Uint8Array(3), new Uint8Array(4)], { onError: (f) => failures.push(f) });
    assert.deepEqual(failures.map((f) => [f.input, f.error.message]), [['<input #0>', '<input #0>: not an image'], ['<input #1>', '<input #1>: not an image']]);
    assert.equal((await embedImages(clip, [])).dims[0], 0);
  });

  test('zeroShotImageClassification and imageTextSimilarity skip and report failed images too', async () => {
    const clip = fake();
    const failures: number[] = [];
    const onError = (f: InputFailure) => failures.push(f.index);
    const scores = await zeroShotImageClassification(clip, images, ['x', 'y'], { onError, batchSize: 2 });
    assert.equal(scores.length, 3);
    assert.deepEqual(scores[1], await zeroShotImageClassification(clip, 'b.jpg', ['x', 'y']));
    const sim = await imageTextSimilarity(clip, images, ['x', 'y'], { onError });
    assert.equal(sim.cosine.length, 3);
    assert.deepEqual(failures, [1, 4, 1, 4]);
  });

  test('embedImageBatches: indices say which input each row is; rows equal embedImages', async () => {
    const clip = fake();
    const got: number[][] = [];
    const rows: Float32Array[] = [];
    for await (const b of embedImageBatches(clip, images, { batchSize: 2, onError: () => {} })) {
      assert.equal(b.embeddings.length, b.indices.length);
      got.push(b.indices);
      rows.push(...b.embeddings);
    }
    assert.deepEqual(got, [[0], [2, 3]]);
    const all = await embedImages(clip, ['a.jpg', 'b.jpg', 'c.jpg']);
    assert.deepEqual(rows.flatMap((r) => [...r]), [...(all.data as Float32Array)]);
  });

  test('the next batch is preprocessed while the model runs the current one', async () => {
    // A model run of batch 0 that finishes only once the processor has been asked for batch 1's
    // first image (or after 5 s, and then the order below is wrong): without the overlap the events
    // would read run0-start, run0-end, prep2.
    const clip = fake();
    const events: string[] = [];
    let release: () => void = () => {};
    const process = clip.processor.process.bind(clip.processor);
    clip.processor = {
      async process(inputs) {
        const name = String((inputs.images as string[])[0]);
        events.push(`prep ${name}`);
        if (name === 'c.jpg') release();
        return process(inputs);
      },
    };
    const getImageFeatures = clip.model.getImageFeatures.bind(clip.model);
    let run = 0;
    clip.model = {
      ...clip.model,
      async getImageFeatures(inputs) {
        const k = run++;
        events.push(`run${k} start`);
        if (k === 0) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, 5000);
            release = () => {
              clearTimeout(timer);
              resolve();
            };
          });
        }
        events.push(`run${k} end`);
        return getImageFeatures(inputs);
      },
    };
    for await (const _ of embedImageBatches(clip, ['a.jpg', 'b.jpg', 'c.jpg', 'd.jpg'], { batchSize: 2 })) {
      // consume
    }
    assert.ok(events.indexOf('prep c.jpg') < events.indexOf('run0 end'), events.join(', '));
    assert.ok(events.indexOf('run0 start') < events.indexOf('prep c.jpg'), events.join(', '));
  });

  test('texts stream in batches too, in order', async () => {
    const clip = fake();
    const got: number[][] = [];
    for await (const b of embedTextBatches(clip, ['a', 'b', 'c'], { batchSize: 2 })) got.push(b.indices);
    assert.deepEqual(got, [[0, 1], [2]]);
  });

  test('signal: an abort stops between batches with an AbortError; no further model run', async () => {
    const clip = fake();
    const controller = new AbortController();
    const seen: number[][] = [];
    await assert.rejects(
      (async () => {
        for await (const b of embedImageBatches(clip, ['a.jpg', 'b.jpg', 'c.jpg', 'd.jpg'], { batchSize: 1, signal: controller.signal })) {
          seen.push(b.indices);
          if (b.indices[0] === 1) controller.abort();
        }
      })(),
      { name: 'AbortError' },
    );
    assert.deepEqual(seen, [[0], [1]]);
    assert.deepEqual(clip.calls.imageRuns, [1, 1]);
    await assert.rejects(embedTexts(clip, ['a'], { signal: AbortSignal.abort() }), { name: 'AbortError' });
  });
});

describe('empty inputs', () => {
  test('embedTexts([]) and embedImages([]) are [0, projection_dim]', async () => {
    const clip = fake();
    assert.deepEqual((await embedTexts(clip, [])).dims, [0, DIM]);
    assert.deepEqual((await embedImages(clip, [])).dims, [0, DIM]);
    assert.deepEqual(clip.calls.text, []);
  });

  test('no images: zeroShotImageClassification gives [], imageTextSimilarity an empty matrix', async () => {
    const clip = fake();
    assert.deepEqual(await zeroShotImageClassification(clip, [], ['a cat', 'a dog']), []);
    assert.deepEqual(await imageTextSimilarity(clip, [], ['a']), { cosine: [], logitsPerImage: [] });
  });
});
