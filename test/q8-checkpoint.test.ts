// q8 as a stored format (issue 25): `altclip convert --dtype q8` writes a hub-layout folder whose
// model.safetensors holds int8 Linear weights + scales (and the scheme in its metadata) in place of
// the float ones; loading it quantizes nothing and gives the numbers of quantizing at load (each
// scheme). What is refused: loading it as fp32, asking for another scheme, converting twice, writing
// into a non-empty folder, and `embed --resume` across schemes.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';

import { AltCLIPModel } from '../src/models/altclip.js';
import { convertToQ8, DEFAULT_Q8_SCHEME, Q8_SCHEME_METADATA, Q8_SCHEMES, q8LinearNames } from '../src/models/quantize.js';
import { AltCLIPConfig } from '../src/config.js';
import { AltCLIPProcessor } from '../src/processor.js';
import { openSafetensors } from '../src/weights/index.js';
import { altclip, assertOneLineError } from './helpers/cli.js';
import { FIXTURES } from './helpers/goldens.js';
import { withEnv } from './helpers/env.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-q8-ckpt-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const IMAGES = fs.readdirSync(path.join(FIXTURES, 'images')).sort().slice(0, 5).map((f) => path.join(FIXTURES, 'images', f));
const TEXTS = ['a photo of a cat', '一只猫的照片', 'x', 'une tasse de café sur une table'];

function header(file: string): Record<string, unknown> {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  return JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
}

const withScheme = <T>(scheme: string | undefined, fn: () => Promise<T>): Promise<T> => withEnv({ ALTCLIP_Q8_SCHEME: scheme }, fn);

async function features(dir: string, cache: string) {
  const processor = await AltCLIPProcessor.fromPretrained(dir);
  const model = await AltCLIPModel.fromPretrained(dir, { dtype: 'q8', graphCacheDir: cache, threads: 1 });
  try {
    const px = (await processor.process({ images: IMAGES })).pixelValues!;
    const t = await processor.process({ text: TEXTS, padding: true });
    return {
      image: (await model.getImageFeatures({ pixelValues: px })).data as Float32Array,
      text: (await model.getTextFeatures({ inputIds: t.inputIds!, attentionMask: t.attentionMask! })).data as Float32Array,
    };
  } finally {
    await model.dispose();
  }
}

const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

describe('q8 checkpoints (altclip convert)', () => {
  for (const name of ['tiny-altclip', 'tiny-altclip-b']) for (const scheme of [DEFAULT_Q8_SCHEME, 'ort-dynamic-w7']) {
    it(`${name}, ${scheme}: the converted folder loads without float Linear weights and equals quantize-at-load`, async () => {
      const src = path.join(FIXTURES, 'models', name);
      const out = path.join(tmp, `${name}-${scheme}`);
      const r = await convertToQ8(src, out, { scheme: Q8_SCHEMES[scheme] });
      assert.equal(r.scheme, scheme);
      for (const f of ['config.json', 'preprocessor_config.json', 'tokenizer_config.json', 'special_tokens_map.json', 'sentencepiece.bpe.model', 'model.safetensors', 'README.md']) {
        assert.ok(fs.existsSync(path.join(out, f)), f);
      }
      // the file: int8 + scale for exactly the Linear weights the scheme's graphs take in int8, no float copy of them
      const meta = header(path.join(out, 'model.safetensors')).__metadata__ as Record<string, string>;
      assert.equal(meta[Q8_SCHEME_METADATA], scheme);
      const stored = openSafetensors(path.join(out, 'model.safetensors'));
      const original = openSafetensors(path.join(src, 'model.safetensors'));
      const linears = q8LinearNames(await AltCLIPConfig.fromPretrained(src), original, Q8_SCHEMES[scheme]!);
      assert.equal(r.quantized, linears.length);
      for (const n of linears) {
        assert.ok(!stored.has(n), `${n} kept in float`);
        const [o, i] = original.get(n)!.shape;
        assert.deepEqual(stored.get(`${n}.q8`)?.shape, [i, o]);
        assert.equal(stored.get(`${n}.q8`)?.dtype, 'I8');
        assert.deepEqual(stored.get(`${n}.q8_scale`)?.shape, [o]);
      }
      for (const ref of original.values()) if (!linears.includes(ref.name)) assert.deepEqual(stored.get(ref.name)?.shape, ref.shape, ref.name);

      const cacheLoad = path.join(tmp, `cache-${name}-${scheme}-load`);
      const cacheCkpt = path.join(tmp, `cache-${name}-${scheme}-ckpt`);
      const atLoad = await withScheme(scheme, () => features(src, cacheLoad));
      const fromCkpt = await withScheme(undefined, () => features(out, cacheCkpt)); // the scheme comes from the file
      const d = Math.max(maxDiff(fromCkpt.image, atLoad.image), maxDiff(fromCkpt.text, atLoad.text));
      console.log(`${name} ${scheme}: converted vs quantize-at-load max diff ${d === 0 ? 'identical' : d.toExponential(2)}; model.safetensors ${r.bytes} bytes (float ${fs.statSync(path.join(src, 'model.safetensors')).size})`);
      assert.ok(d <= 1e-6, `max diff ${d}`);
      // loading it quantized nothing: no q8 folder in its cache
      assert.ok(fs.existsSync(path.join(cacheLoad, 'q8')));
      assert.ok(!fs.existsSync(path.join(cacheCkpt, 'q8')), 'a q8 checkpoint was quantized again');
    });
  }

  it('refused: loading it as fp32, another ALTCLIP_Q8_SCHEME, converting it again, a float checkpoint whose scheme is unknown', async () => {
    const out = path.join(tmp, 'refusals');
    await convertToQ8(path.join(FIXTURES, 'models', 'tiny-altclip'), out);
    const cache = path.join(tmp, 'cache-refusals');
    await assert.rejects(AltCLIPModel.fromPretrained(out, { graphCacheDir: cache }), /a q8 checkpoint \(int8 weights, scheme altclip-q8-w8a7-row-v1\): load it with dtype "q8"/);
    await assert.rejects(withScheme('ort-dynamic-w7', () => AltCLIPModel.fromPretrained(out, { graphCacheDir: cache, dtype: 'q8' })),
      /a q8 checkpoint of scheme altclip-q8-w8a7-row-v1, but ALTCLIP_Q8_SCHEME asks for ort-dynamic-w7/);
    await assert.rejects(convertToQ8(out, path.join(tmp, 'twice')), /is already a q8 checkpoint \(scheme altclip-q8-w8a7-row-v1\)/);
    // the scheme's name is what makes the file readable: an unknown one is refused, naming it
    const buf = fs.readFileSync(path.join(out, 'model.safetensors'));
    const edited = Buffer.from(buf.toString('latin1').replace('"altclip-q8-w8a7-row-v1"', '"altclip-q8-w8a7-row-v9"'), 'latin1');
    const other = path.join(tmp, 'unknown-scheme');
    fs.cpSync(out, other, { recursive: true });
    fs.writeFileSync(path.join(other, 'model.safetensors'), edited);
    await assert.rejects(AltCLIPModel.fromPretrained(other, { graphCacheDir: cache, dtype: 'q8' }), /the unknown q8 scheme "altclip-q8-w8a7-row-v9"/);
  });

  it('altclip convert: the CLI writes the folder; an existing non-empty --out is refused and left alone', async () => {
    const cache = path.join(tmp, 'cache-cli');
    const out = path.join(tmp, 'cli-out');
    const r = await altclip(['convert', path.join(FIXTURES, 'models', 'tiny-altclip'), '--dtype', 'q8', '--out', out, '--json'], cache);
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout);
    assert.equal(summary.scheme, DEFAULT_Q8_SCHEME);
    assert.ok(summary.quantized >= 20);
    const before = fs.readFileSync(path.join(out, 'model.safetensors'));
    const again = await altclip(['convert', path.join(FIXTURES, 'models', 'tiny-altclip'), '--dtype', 'q8', '--out', out], cache);
    assertOneLineError(again, /cli-out exists and is not an empty folder: choose another --out/);
    assert.deepEqual(fs.readFileSync(path.join(out, 'model.safetensors')), before);
    const noDtype = await altclip(['convert', path.join(FIXTURES, 'models', 'tiny-altclip'), '--out', path.join(tmp, 'x')], cache);
    assert.equal(noDtype.code, 1);
    assert.match(noDtype.stderr, /--dtype <dtype>' not specified/);
  });

  it('altclip embed --resume refuses rows of another q8 scheme, and q8 rows whose scheme was never recorded', async () => {
    const cache = path.join(tmp, 'cache-resume');
    const out = path.join(tmp, 'resume.npy');
    const model = path.join(FIXTURES, 'models', 'tiny-altclip');
    const first = await altclip(['embed', IMAGES[0]!, '--out', out, '-m', model, '--dtype', 'q8'], cache);
    assert.equal(first.code, 0, first.stderr);
    const meta = JSON.parse(fs.readFileSync(`${out}.meta.json`, 'utf8'));
    assert.equal(meta.q8Scheme, DEFAULT_Q8_SCHEME);
    const other = await altclip(['embed', IMAGES[1]!, '--out', out, '-m', model, '--dtype', 'q8', '--resume'], cache, { env: { ALTCLIP_Q8_SCHEME: 'ort-dynamic-w7' } });
    assertOneLineError(other, /cannot resume .*resume\.npy: its rows come from .*q8 \(scheme altclip-q8-w8a7-row-v1\).* but this run uses .*q8 \(scheme ort-dynamic-w7\)/);
    const same = await altclip(['embed', IMAGES[1]!, '--out', out, '-m', model, '--dtype', 'q8', '--resume'], cache);
    assert.equal(same.code, 0, same.stderr);
    // a record from before schemes were named: its q8 rows depended on the CPU, so they are not continued
    delete meta.q8Scheme;
    fs.writeFileSync(`${out}.meta.json`, JSON.stringify(meta));
    const old = await altclip(['embed', IMAGES[2]!, '--out', out, '-m', model, '--dtype', 'q8', '--resume'], cache);
    assertOneLineError(old, /its rows come from .*q8 \(scheme unrecorded: made before q8 schemes were named\)/);
    // a q8 checkpoint's rows are recorded with its own scheme (not the default the environment names)
    const converted = path.join(tmp, 'resume-ckpt-w7');
    await convertToQ8(model, converted, { scheme: Q8_SCHEMES['ort-dynamic-w7'] });
    const ck = path.join(tmp, 'resume-ckpt.npy');
    const ckRun = await altclip(['embed', IMAGES[0]!, '--out', ck, '-m', converted, '--dtype', 'q8'], cache);
    assert.equal(ckRun.code, 0, ckRun.stderr);
    assert.equal(JSON.parse(fs.readFileSync(`${ck}.meta.json`, 'utf8')).q8Scheme, 'ort-dynamic-w7');
    // fp32 records have no scheme (absent, or null alike)
    const fp = path.join(tmp, 'resume-fp32.npy');
    assert.equal((await altclip(['embed', IMAGES[0]!, '--out', fp, '-m', model], cache)).code, 0);
    const fpMeta = JSON.parse(fs.readFileSync(`${fp}.meta.json`, 'utf8'));
    assert.equal('q8Scheme' in fpMeta, false);
    fpMeta.q8Scheme = null;
    fs.writeFileSync(`${fp}.meta.json`, JSON.stringify(fpMeta));
    assert.equal((await altclip(['embed', IMAGES[1]!, '--out', fp, '-m', model, '--resume'], cache)).code, 0);
  });
});
