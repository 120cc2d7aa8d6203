// Hostile checkpoints and tokenizer files (issue 18), one test per class of problem, each with a
// small file made here. Each open runs in a child process with a time and memory cap (the problems
// were hangs, exhausted memory and stack overflows), and must end in an error naming the file.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { AltCLIPModel } from '../src/models/altclip.js';
import { XLMRobertaTokenizer } from '../src/tokenizer/index.js';
import { findNonFinite, openSafetensors, openTorchBin, readTensorBytes } from '../src/weights/index.js';
import { FIXTURES } from './helpers/goldens.js';
import { runUntrusted, type Case } from './helpers/untrusted_runner.js';
import { Pickle, rawSafetensors, STORAGE_OF, torchBinBytes, writeFile, zipBytes, type RawTensor } from './weights_fixtures.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-hostile-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let n = 0;
const file = (name: string, data: Uint8Array) => writeFile(path.join(tmp, `${n++}-${name}`), data);

/** Opens each case in a capped child process; every one must end in a clean error naming its file. */
async function refusedInChild(cases: Case[], patterns: RegExp[]): Promise<void> {
  const results = await runUntrusted(cases, { timeoutMs: 30_000, maxOldSpaceMb: 1024 });
  results.forEach((r, i) => {
    assert.equal(r.status, 'error', `${cases[i].file}: expected a clean error, got ${JSON.stringify(r)}`);
    assert.ok(r.message!.includes(cases[i].file), `error names the file: ${r.message}`);
    assert.match(r.message!, patterns[i]);
    assert.ok(r.message!.length < 2000, 'the message is short');
  });
}

/**
 * A torch.save state dict {name: _rebuild_tensor_v2(storage(dtype, numel), offset, size, stride, ...)}
 * where `size` / `stride` are written by the given functions (to plant hostile values).
 */
function stateDict(numel: number, size: (p: Pickle) => void, stride: (p: Pickle) => void, dtype = 'F32'): Uint8Array {
  const p = new Pickle().proto(2).global('collections', 'OrderedDict').emptyTuple().reduce().mark();
  p.str('w').call('torch._utils', '_rebuild_tensor_v2', (q) => {
    q.mark().str('storage').global('torch', STORAGE_OF[dtype]).str('0').str('cpu').int(numel).tuple().binpersid();
    q.int(0);
    size(q);
    stride(q);
    q.bool(false).call('collections', 'OrderedDict', () => {});
  });
  return p.setitems().stop().build_();
}
const binWith = (pkl: Uint8Array, storage: Uint8Array) => zipBytes([{ name: 'archive/data.pkl', data: pkl }, { name: 'archive/data/0', data: storage }]);

describe('work is bounded by actual, not declared, sizes', () => {
  test('a one-element storage viewed as [16384, 16384] with stride [0, 0] (broadcast) is refused at open', async () => {
    const pkl = stateDict(1, (p) => p.dims([16384, 16384]), (p) => p.dims([0, 0]));
    const bin = file('broadcast.bin', binWith(pkl, new Uint8Array(4)));
    assert.ok(fs.statSync(bin).size < 1024, 'a small file');
    await refusedInChild([{ kind: 'bin', file: bin }], [/tensor "w" .*size \[16384,16384\], stride \[0,0\]\) has overlapping or broadcast strides/]);
  });

  test('overlapping strides are refused; a permuted (transposed) view still loads', () => {
    const overlap = file('overlap.bin', binWith(stateDict(16, (p) => p.dims([4, 4]), (p) => p.dims([1, 1])), new Uint8Array(64)));
    assert.throws(() => openTorchBin(overlap), (e: Error) => e.message.includes(overlap) && /overlapping or broadcast strides/.test(e.message));
    const values = Float32Array.from({ length: 6 }, (_, i) => i);
    const transposed = file('t.bin', binWith(stateDict(6, (p) => p.dims([3, 2]), (p) => p.dims([1, 3])), new Uint8Array(values.buffer)));
    assert.deepEqual([...new Float32Array(readTensorBytes(openTorchBin(transposed).get('w')!).buffer)], [0, 3, 1, 4, 2, 5]);
  });

  test('a deflated entry declaring more than deflate can expand to (1032:1) is refused before inflating', () => {
    const bytes = torchBinBytes([{ name: 'w', dtype: 'F32', shape: [256], bytes: new Uint8Array(1024) }], { deflate: true });
    // declare 1 GiB for the 1 KB storage: entry size in the central directory and the pickle's numel
    const cdAt = bytes.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]), bytes.indexOf(Buffer.from('archive/data/0')) - 200);
    const dataCd = bytes.indexOf(Buffer.from('archive/data/0'), cdAt) - 46;
    bytes.writeUInt32LE(1 << 30, dataCd + 24);
    const bin = file('bomb.bin', bytes);
    assert.throws(() => openTorchBin(bin), (e: Error) => e.message.includes(bin) && /declares 1073741824 bytes, more than its \d+ deflated bytes can hold/.test(e.message));
  });

  test('deflated storages are inflated only when used, after the shapes matched the config', async () => {
    // tiny-altclip as a .bin with deflated storages, one of them corrupt (CRC): opening does not
    // inflate it; a model whose config does not match that tensor's shape is refused for the shape,
    // without inflating anything
    const tensors: RawTensor[] = [...openSafetensors(path.join(FIXTURES, 'models/tiny-altclip/model.safetensors')).values()]
      .map((r) => ({ name: r.name, dtype: r.dtype, shape: r.shape, bytes: readTensorBytes(r) }));
    const big = tensors.findIndex((t) => t.name.endsWith('word_embeddings.weight'));
    tensors[big] = { ...tensors[big], shape: [4096, 4096], bytes: new Uint8Array(4096 * 4096 * 4) };
    const bytes = torchBinBytes(tensors, { deflate: true });
    const at = bytes.indexOf(Buffer.from(`archive/data/${big}`)) + `archive/data/${big}`.length;
    bytes[at + bytes.readUInt16LE(at - `archive/data/${big}`.length - 2) + 100] ^= 0xff; // inside the deflated data
    const dir = path.join(tmp, 'lazy-model');
    fs.mkdirSync(dir);
    for (const f of ['config.json', 'preprocessor_config.json']) fs.copyFileSync(path.join(FIXTURES, 'models/tiny-altclip', f), path.join(dir, f));
    const bin = writeFile(path.join(dir, 'pytorch_model.bin'), bytes);
    const refs = openTorchBin(bin);
    assert.throws(() => refs.get(tensors[big].name)!.data, /does not inflate|CRC-32/, 'the corrupt entry fails when used');
    await assert.rejects(AltCLIPModel.fromPretrained(dir, { graphCacheDir: path.join(tmp, 'graphs') }), (e: Error) => {
      assert.match(e.message, /word_embeddings\.weight/);
      assert.doesNotMatch(e.message, /CRC|inflate/);
      return true;
    });
  });
});

describe('error paths are bounded (exponential sharing, deep nesting)', () => {
  test('a `size` list reusing itself 40 levels deep through the memo', async () => {
    // l0 = [1]; l(i+1) = [l(i), l(i)] via BINGET: 2^40 paths, a few hundred bytes
    const pkl = stateDict(1, (p) => {
      p.emptyList().int(1).append().binput(0).op(0x30); // POP: keep it in the memo only
      for (let i = 1; i <= 40; i++) {
        p.mark().binget(i - 1).binget(i - 1).op(0x6c).binput(i); // LIST
        if (i < 40) p.op(0x30);
      }
    }, (p) => p.dims([1]));
    const bin = file('memo.bin', binWith(pkl, new Uint8Array(4)));
    assert.ok(fs.statSync(bin).size < 1024);
    await refusedInChild([{ kind: 'bin', file: bin }], [/tensor size \[\[\[\[.*\.\.\. is not a tuple of non-negative ints/]);
  });

  test('100k nested lists as a size, and as a state dict value', async () => {
    const deep = (p: Pickle) => {
      p.emptyList();
      for (let i = 0; i < 100_000; i++) p.tuple1();
    };
    const asSize = file('deep-size.bin', binWith(stateDict(1, deep, (p) => p.dims([1])), new Uint8Array(4)));
    const asValue = new Pickle().proto(2).emptyDict().str('w');
    deep(asValue);
    const asValueBin = file('deep-value.bin', zipBytes([{ name: 'archive/data.pkl', data: asValue.setitem().stop().build_() }]));
    await refusedInChild([{ kind: 'bin', file: asSize }, { kind: 'bin', file: asValueBin }],
      [/is not a tuple of non-negative ints/, /state dict entry "w" is a tuple, not a tensor/]);
  });

  test('a safetensors shape of a million nested "["', async () => {
    const header = `{"w":{"dtype":"F32","shape":${'['.repeat(1_000_000)}${']'.repeat(1_000_000)},"data_offsets":[0,4]}}`;
    const st = file('deep.safetensors', rawSafetensors(header, new Uint8Array(4)));
    await refusedInChild([{ kind: 'safetensors', file: st }], [/header nests deeper than/]);
  });

  test('a shape whose element count overflows is reported as such', () => {
    const header = JSON.stringify({ w: { dtype: 'F32', shape: [2 ** 31, 2 ** 31, 2 ** 31], data_offsets: [0, 4] } });
    const st = file('overflow.safetensors', rawSafetensors(header, new Uint8Array(4)));
    assert.throws(() => openSafetensors(st), (e: Error) => e.message.includes(st) && /more elements than can be counted/.test(e.message));
  });
});

describe('integrity', () => {
  test('a stored zip entry with a flipped byte is refused by its CRC-32 at open', () => {
    const values = new Float32Array(64).fill(0.5);
    const bytes = torchBinBytes([{ name: 'w', dtype: 'F32', shape: [64], bytes: new Uint8Array(values.buffer) }]);
    const good = file('good.bin', bytes);
    assert.equal(openTorchBin(good).get('w')!.byteLength, 256);
    const at = bytes.indexOf(Buffer.from(new Uint8Array(values.buffer).subarray(0, 16)));
    bytes[at + 3] = 0x7f; // 0.5 -> NaN bits in the first element
    bytes[at + 2] = 0xc0;
    const bad = file('flipped.bin', bytes);
    assert.throws(() => openTorchBin(bad), (e: Error) => e.message.includes(bad) && /entry archive\/data\/0 fails its CRC-32 check/.test(e.message));
  });
});

describe('non-finite weights (formats without a checksum)', () => {
  test('a NaN logit_scale is refused at load naming the tensor; findNonFinite names a NaN in a big tensor', async () => {
    const src = path.join(FIXTURES, 'models/tiny-altclip');
    const dir = path.join(tmp, 'nan-model');
    fs.mkdirSync(dir);
    for (const f of ['config.json', 'preprocessor_config.json']) fs.copyFileSync(path.join(src, f), path.join(dir, f));
    const bytes = fs.readFileSync(path.join(src, 'model.safetensors'));
    const refs = openSafetensors(path.join(src, 'model.safetensors'));
    const scale = refs.get('logit_scale')!;
    bytes.writeFloatLE(NaN, scale.offset);
    const word = refs.get('text_model.roberta.embeddings.word_embeddings.weight')!;
    bytes.writeFloatLE(Infinity, word.offset + 4 * 1000);
    const st = writeFile(path.join(dir, 'model.safetensors'), bytes);
    await assert.rejects(AltCLIPModel.fromPretrained(dir, { graphCacheDir: path.join(tmp, 'graphs') }), (e: Error) => {
      assert.ok(e.message.includes(st), e.message);
      assert.match(e.message, /tensor logit_scale holds a non-finite value \(NaN\) at element 0/);
      return true;
    });
    assert.deepEqual(findNonFinite({ tensors: openSafetensors(st) }).map((f) => [f.name, f.index]),
      [['logit_scale', 0], ['text_model.roberta.embeddings.word_embeddings.weight', 1000]]);
  });
});

describe('tokenizer.json added_tokens', () => {
  const base = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'tokenizer/tokenizer.json'), 'utf8'));
  const folder = (added: unknown) => {
    const dir = path.join(tmp, `tok-${n++}`);
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify({ ...base, added_tokens: added }));
    return dir;
  };
  const token = (id: unknown, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  for (const [label, added, pattern] of [
    ['a fractional id', [token(1.5, '<x>')], /added_tokens\[0\] \("<x>"\) has id 1\.5, not an integer in \[0, /],
    ['a negative id', [token(-1, '<x>')], /has id -1, not an integer/],
    ['an id far past the vocabulary', [token(1e9, '<x>')], /has id 1000000000, not an integer/],
    ['a string id', [token('3', '<x>')], /has id "3", not an integer/],
    ['two tokens with one id', [token(0, '<s>'), token(0, '<t>')], /added_tokens\[1\] \("<t>"\) reuses id 0/],
  ] as const) {
    test(label, async () => {
      const dir = folder(added);
      await assert.rejects(XLMRobertaTokenizer.fromPretrained(dir, { from: 'json' }), (e: Error) => {
        assert.match(e.message, pattern);
        assert.ok(e.message.includes(path.join(dir, 'tokenizer.json')), e.message);
        return true;
      });
    });
  }
  test('the real added tokens still load', async () => {
    const tok = await XLMRobertaTokenizer.fromPretrained(folder(base.added_tokens), { from: 'json' });
    assert.deepEqual(tok.encode('hi'), (await XLMRobertaTokenizer.fromPretrained(path.join(FIXTURES, 'tokenizer'), { from: 'json' })).encode('hi'));
  });
});
