// Checkpoint readers: the tiny fixture as safetensors and as torch .bin (same names, shapes and bytes
// as the Python reference wrote them), every safetensors dtype, corrupt headers, sharded checkpoints
// built from the fixture, compressed and strided torch storages, and loadWeights' file search.
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { DTYPE_BITS, loadWeights, makeWeights, openSafetensors, openTorchBin, readTensorBytes, toFloat32, type TensorRef } from '../src/weights/index.js';
import {
  Pickle, contiguousStride, legacyTorchBytes, rawSafetensors, safetensorsBytes, stateDictPickle, torchBinBytes, writeFile, zipBytes, type RawTensor,
} from './weights_fixtures.js';

const MODELS = path.resolve('test/fixtures/models');
const ST = path.join(MODELS, 'tiny-altclip/model.safetensors');
const BIN = path.join(MODELS, 'tiny-altclip-bin/pytorch_model.bin');
const golden = JSON.parse(fs.readFileSync('test/fixtures/goldens/tiny-altclip.json', 'utf8')) as {
  weights: Record<string, { dtype: string; shape: number[] }>; logit_scale_param: number;
};
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-weights-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const dir = (name: string) => {
  fs.mkdirSync(path.join(tmp, name), { recursive: true });
  return path.join(tmp, name);
};

/** The fixture's tensors with their bytes, in file order. */
const fixtureTensors = (): RawTensor[] =>
  [...openSafetensors(ST).values()].sort((a, b) => a.offset - b.offset).map((r) => ({ name: r.name, dtype: r.dtype, shape: r.shape, bytes: readTensorBytes(r) }));

function assertSameTensors(actual: Map<string, TensorRef>, expected: Map<string, TensorRef>) {
  assert.deepEqual([...actual.keys()].sort(), [...expected.keys()].sort());
  for (const [name, e] of expected) {
    const a = actual.get(name)!;
    assert.equal(a.dtype, e.dtype, name);
    assert.deepEqual(a.shape, e.shape, name);
    assert.equal(a.byteLength, e.byteLength, name);
    assert.ok(Buffer.from(readTensorBytes(a)).equals(readTensorBytes(e)), `bytes of ${name}`);
  }
}

describe('tiny-altclip checkpoint', () => {
  test('safetensors: names, dtypes and shapes as the reference wrote them', () => {
    const t = openSafetensors(ST);
    assert.deepEqual(
      Object.fromEntries([...t].map(([n, r]) => [n, { dtype: r.dtype, shape: r.shape }])),
      golden.weights,
    );
    for (const r of t.values()) {
      assert.equal(r.file, fs.realpathSync(ST));
      assert.equal(r.byteLength, r.shape.reduce((a, b) => a * b, 1) * 4);
    }
  });

  test('pytorch_model.bin: same names, shapes and bytes as model.safetensors, pointed at in place', () => {
    const bin = openTorchBin(BIN);
    assertSameTensors(bin, openSafetensors(ST));
    const size = fs.statSync(BIN).size;
    for (const r of bin.values()) {
      assert.equal(r.data, undefined, 'stored entries are addressed in the file, not copied');
      assert.equal(r.file, fs.realpathSync(BIN));
      assert.ok(r.offset > 0 && r.offset + r.byteLength <= size);
      assert.equal(r.offset % 64, 0, "torch aligns storages to 64 bytes");
    }
  });

  test('loadWeights on each folder; readFloat32', async () => {
    const st = await loadWeights(path.join(MODELS, 'tiny-altclip'));
    const bin = await loadWeights(path.join(MODELS, 'tiny-altclip-bin'));
    assert.deepEqual(st.files, [fs.realpathSync(ST)]);
    assert.deepEqual(bin.files, [fs.realpathSync(BIN)]);
    assert.equal(st.readFloat32('logit_scale')[0], Math.fround(golden.logit_scale_param));
    for (const name of st.tensors.keys()) assert.deepEqual(bin.readFloat32(name), st.readFloat32(name), name);
    const w = st.readFloat32('text_model.roberta.embeddings.word_embeddings.weight');
    assert.equal(w.length, 4002 * 32);
    assert.throws(() => st.readFloat32('nope'), /no tensor named nope/);
  });

  test('subfolder, symlinks resolved, and a folder without weights', async () => {
    const text = await loadWeights(path.join(MODELS, 'tiny-altclip'), { subfolder: 'text_model' });
    assert.ok(text.tensors.has('roberta.embeddings.word_embeddings.weight'));
    const linked = dir('linked');
    fs.symlinkSync(ST, path.join(linked, 'model.safetensors'));
    const w = await loadWeights(linked);
    assert.deepEqual(w.files, [fs.realpathSync(ST)]);
    await assert.rejects(loadWeights(dir('empty')), /empty: no model weights found \(looked for model\.safetensors, model\.safetensors\.index\.json, pytorch_model\.bin/);
  });

  test('the zip64 end records torch writes are read', () => {
    const bytes = fs.readFileSync(BIN);
    const eocd = bytes.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
    bytes.writeUInt16LE(0xffff, eocd + 8);
    bytes.writeUInt16LE(0xffff, eocd + 10);
    bytes.writeUInt32LE(0xffffffff, eocd + 12);
    bytes.writeUInt32LE(0xffffffff, eocd + 16);
    assertSameTensors(openTorchBin(writeFile(path.join(tmp, 'zip64.bin'), bytes)), openSafetensors(ST));
  });
});

describe('safetensors dtypes', () => {
  test('every dtype the format defines is accepted, with its size', () => {
    const tensors: RawTensor[] = Object.entries(DTYPE_BITS).map(([dtype, bits]) => ({
      name: `t_${dtype}`, dtype, shape: [2, 4], bytes: new Uint8Array((8 * bits) / 8),
    }));
    const t = openSafetensors(writeFile(path.join(tmp, 'dtypes.safetensors'), safetensorsBytes(tensors, { format: 'pt' })));
    for (const [dtype, bits] of Object.entries(DTYPE_BITS)) assert.equal(t.get(`t_${dtype}`)!.byteLength, bits, dtype);
    assert.throws(() => makeWeights(t).readFloat32('t_F4'), /dtypes\.safetensors: tensor t_F4: F4 values have no float32 conversion/);
    // 3 F4 values are a byte and a half: refused as safetensors does (MisalignedSlice)
    const odd = writeFile(path.join(tmp, 'f4.safetensors'), rawSafetensors('{"x":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}', new Uint8Array(2)));
    assert.throws(() => openSafetensors(odd), /tensor "x": shape \[3\] of F4 is not a whole number of bytes/);
  });

  test('readFloat32 converts F16, BF16, F64, F8 and integer tensors', async () => {
    const f16 = Buffer.alloc(12);
    [0x3c00, 0xc000, 0x3555, 0x0001, 0x7c00, 0x7bff].forEach((h, i) => f16.writeUInt16LE(h, i * 2));
    const bf16 = Buffer.alloc(8);
    [0x3f80, 0xc0a0, 0x4049, 0x0000].forEach((h, i) => bf16.writeUInt16LE(h, i * 2));
    const f64 = Buffer.from(new Float64Array([Math.PI, -1e-3]).buffer);
    const i64 = Buffer.alloc(16);
    i64.writeBigInt64LE(-5n, 0);
    i64.writeBigInt64LE(1n << 40n, 8);
    const d = dir('dtypes-model');
    writeFile(path.join(d, 'model.safetensors'), safetensorsBytes([
      { name: 'h', dtype: 'F16', shape: [6], bytes: f16 },
      { name: 'b', dtype: 'BF16', shape: [2, 2], bytes: bf16 },
      { name: 'd', dtype: 'F64', shape: [2], bytes: f64 },
      { name: 'e4', dtype: 'F8_E4M3', shape: [4], bytes: Buffer.from([0x38, 0xc0, 0x7e, 0x01]) },
      { name: 'e5', dtype: 'F8_E5M2', shape: [3], bytes: Buffer.from([0x3c, 0x7c, 0x80]) },
      { name: 'l', dtype: 'I64', shape: [2], bytes: i64 },
      { name: 'i8', dtype: 'I8', shape: [2], bytes: Buffer.from([0xff, 0x7f]) },
    ]));
    const w = await loadWeights(d);
    // (readFloat32 refuses non-finite values, naming the tensor; the conversion itself keeps them)
    assert.throws(() => w.readFloat32('h'), (e: Error) => e.message.includes(path.join(d, 'model.safetensors')) && /tensor h holds a non-finite value \(Infinity\) at element 4/.test(e.message));
    assert.deepEqual([...toFloat32('F16', readTensorBytes(w.tensors.get('h')!))], [1, -2, Math.fround(0.333251953125), 2 ** -24, Infinity, 65504]);
    assert.deepEqual([...w.readFloat32('b')], [1, -5, 3.140625, 0]);
    assert.deepEqual([...w.readFloat32('d')], [Math.fround(Math.PI), Math.fround(-1e-3)]);
    assert.deepEqual([...w.readFloat32('e4')], [1, -2, 448, 2 ** -9]);
    assert.throws(() => w.readFloat32('e5'), /tensor e5 holds a non-finite value \(Infinity\) at element 1/);
    assert.deepEqual([...toFloat32('F8_E5M2', readTensorBytes(w.tensors.get('e5')!))], [1, Infinity, -0]);
    assert.deepEqual([...w.readFloat32('l')], [-5, 2 ** 40]);
    assert.deepEqual([...w.readFloat32('i8')], [-1, 127]);
    assert.equal(w.tensors.get('b')!.dtype, 'BF16');
  });
});

describe('corrupt safetensors files are refused with the file and the problem', () => {
  const data = new Uint8Array(32);
  const entry = (name: string, offs: [number, number], shape = [(offs[1] - offs[0]) / 4], dtype = 'F32') =>
    `"${name}":{"dtype":"${dtype}","shape":${JSON.stringify(shape)},"data_offsets":${JSON.stringify(offs)}}`;
  const cases: [string, Buffer, RegExp][] = [
    ['overlap', rawSafetensors(`{${entry('a', [0, 16])},${entry('b', [8, 32])}}`, data), /tensor "b" \(bytes 8\.\.32\) overlaps tensor "a"/],
    ['gap', rawSafetensors(`{${entry('a', [0, 8])},${entry('b', [16, 32])}}`, data), /gap in the data before tensor "b"/],
    ['out of range', rawSafetensors(`{${entry('a', [0, 16])},${entry('b', [16, 64])}}`, data), /tensor "b": data_offsets \[16, 64\] run past the end of the data \(32 bytes/],
    ['trailing bytes', rawSafetensors(`{${entry('a', [0, 16])}}`, data), /the tensors cover 16 bytes of data but the file has 32/],
    ['bad JSON', rawSafetensors(`{${entry('a', [0, 32])}`, data), /header is not valid JSON/],
    ['not an object', rawSafetensors('[1,2]', data), /header does not start with "\{"/],
    ['not UTF-8', rawSafetensors(Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]), data), /not valid JSON/],
    ['shape vs bytes', rawSafetensors(`{${entry('a', [0, 32], [3, 3])}}`, data), /shape \[3,3\] of F32 needs 36 bytes but data_offsets \[0, 32\] hold 32/],
    ['unknown dtype', rawSafetensors(`{${entry('a', [0, 32], [8], 'F128')}}`, data), /unknown dtype "F128"/],
    ['negative dim', rawSafetensors(`{${entry('a', [0, 32], [-8])}}`, data), /is not a list of non-negative integers/],
    ['bad metadata', rawSafetensors(`{"__metadata__":{"a":1},${entry('a', [0, 32])}}`, data), /"__metadata__" must map strings to strings/],
    ['huge header length', Buffer.concat([Buffer.from([0, 0, 0, 0, 0, 0, 0, 0x10]), Buffer.from('{}')]), /header length \d+ is over the 100 MB limit/],
    ['header past the end', Buffer.concat([Buffer.from([100, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{}')]), /header length 100 runs past the end of the file/],
    ['tiny file', Buffer.from([1, 2, 3]), /only 3 bytes/],
  ];
  for (const [label, bytes, pattern] of cases) {
    test(label, () => {
      const file = writeFile(path.join(tmp, `corrupt-${label.replace(/ /g, '_')}.safetensors`), bytes);
      assert.throws(() => openSafetensors(file), (e: Error) => {
        assert.match(e.message, pattern);
        assert.ok(e.message.startsWith(`${file}: `), e.message);
        return true;
      });
    });
  }
  test('a truncated fixture', () => {
    const bytes = fs.readFileSync(ST);
    const file = writeFile(path.join(tmp, 'truncated.safetensors'), bytes.subarray(0, bytes.length - 1000));
    assert.throws(() => openSafetensors(file), /run past the end of the data .*truncated/);
  });
});

describe('sharded checkpoints built from the fixture', () => {
  const tensors = fixtureTensors();
  const half = tensors.length >> 1;
  const shards = [tensors.slice(0, half), tensors.slice(half)];
  const index = (names: (s: number) => string) => JSON.stringify({
    metadata: { total_size: tensors.reduce((a, t) => a + t.bytes.length, 0) },
    weight_map: Object.fromEntries(shards.flatMap((s, i) => s.map((t) => [t.name, names(i)]))),
  });

  test('model.safetensors.index.json', async () => {
    const d = dir('sharded-st');
    const name = (i: number) => `model-0000${i + 1}-of-00002.safetensors`;
    shards.forEach((s, i) => writeFile(path.join(d, name(i)), safetensorsBytes(s)));
    fs.writeFileSync(path.join(d, 'model.safetensors.index.json'), index(name));
    const w = await loadWeights(d);
    assertSameTensors(w.tensors, openSafetensors(ST));
    assert.deepEqual(w.files, [0, 1].map((i) => fs.realpathSync(path.join(d, name(i)))));
  });

  test('pytorch_model.bin.index.json, one shard deflated', async () => {
    const d = dir('sharded-bin');
    const name = (i: number) => `pytorch_model-0000${i + 1}-of-00002.bin`;
    shards.forEach((s, i) => writeFile(path.join(d, name(i)), torchBinBytes(s, { deflate: i === 1 })));
    fs.writeFileSync(path.join(d, 'pytorch_model.bin.index.json'), index(name));
    const w = await loadWeights(d);
    assertSameTensors(w.tensors, openSafetensors(ST));
    for (const t of shards[1]) assert.ok(w.tensors.get(t.name)!.data, 'deflated storages are inflated into data');
    assert.deepEqual(w.files, [fs.realpathSync(path.join(d, name(0)))], 'in-memory tensors reference no file');
  });

  test('inside a subfolder, and bad indexes', async () => {
    const d = dir('sharded-sub/weights');
    writeFile(path.join(d, 'a.safetensors'), safetensorsBytes(shards[0]));
    writeFile(path.join(d, 'b.safetensors'), safetensorsBytes(shards[1]));
    const write = (map: Record<string, string>) => fs.writeFileSync(path.join(d, 'model.safetensors.index.json'), JSON.stringify({ weight_map: map }));
    const root = path.join(tmp, 'sharded-sub');
    const map = Object.fromEntries(shards.flatMap((s, i) => s.map((t) => [t.name, i ? 'b.safetensors' : 'a.safetensors'])));
    write(map);
    assert.equal((await loadWeights(root, { subfolder: 'weights' })).tensors.size, tensors.length);
    write({ ...map, extra: 'a.safetensors' });
    await assert.rejects(loadWeights(root, { subfolder: 'weights' }), /invalid weights index: shard a\.safetensors lacks 1 tensor\(s\) the index puts there: extra/);
    write({ ...map, extra: '../a.safetensors' });
    await assert.rejects(loadWeights(root, { subfolder: 'weights' }), /shard name "\.\.\/a\.safetensors" is not a plain relative file name/);
    write({ ...map, extra: 'c.safetensors' });
    await assert.rejects(loadWeights(root, { subfolder: 'weights' }), /no file named (weights\/)?c\.safetensors/);
    writeFile(path.join(d, 'c.safetensors'), safetensorsBytes([{ ...shards[0][0], name: 'extra' }, shards[0][0]]));
    await assert.rejects(loadWeights(root, { subfolder: 'weights' }), new RegExp(`tensor ${shards[0][0].name} is in both`));
    fs.writeFileSync(path.join(d, 'model.safetensors.index.json'), '{"weight_map": 3}');
    await assert.rejects(loadWeights(root, { subfolder: 'weights' }), /index\.json: invalid weights index: no "weight_map" object/);
  });
});

describe('torch .bin variants', () => {
  const f32 = (values: number[]) => new Uint8Array(new Float32Array(values).buffer);

  test('fp16 / bf16 / int storages, "archive/" prefix', async () => {
    const h = Buffer.alloc(4);
    h.writeUInt16LE(0x3c00, 0);
    h.writeUInt16LE(0xc200, 2);
    const d = dir('half-bin');
    writeFile(path.join(d, 'pytorch_model.bin'), torchBinBytes([
      { name: 'h', dtype: 'F16', shape: [2], bytes: h },
      { name: 'b', dtype: 'BF16', shape: [1, 2], bytes: Buffer.from([0x80, 0x3f, 0x49, 0x40]) },
      { name: 'i', dtype: 'I64', shape: [1], bytes: Buffer.from([7, 0, 0, 0, 0, 0, 0, 0]) },
    ]));
    const w = await loadWeights(d);
    assert.deepEqual([...w.tensors.values()].map((t) => [t.dtype, t.shape]), [['F16', [2]], ['BF16', [1, 2]], ['I64', [1]]]);
    assert.deepEqual([...w.readFloat32('h')], [1, -3]);
    assert.deepEqual([...w.readFloat32('b')], [1, 3.140625]);
    assert.deepEqual([...w.readFloat32('i')], [7]);
  });

  test('views: shared storage with an offset, a transposed (strided) tensor, an empty tensor', () => {
    // storage "0" = [0..11]; 'tail' = storage[4:12] as [2, 4]; 'T' = storage[0:6].view(2, 3).t(); 'e' = [0, 3]
    const storage = f32([...Array(12).keys()]);
    const pkl = stateDictPickle([
      { name: 'tail', dtype: 'F32', key: '0', numel: 12, offset: 4, size: [2, 4], stride: contiguousStride([2, 4]) },
      { name: 'T', dtype: 'F32', key: '0', numel: 12, offset: 0, size: [3, 2], stride: [1, 3] },
      { name: 'e', dtype: 'F32', key: '1', numel: 0, offset: 0, size: [0, 3], stride: [3, 1] },
    ]);
    const file = writeFile(path.join(tmp, 'views.bin'), zipBytes([
      { name: 'm/data.pkl', data: pkl }, { name: 'm/data/0', data: storage }, { name: 'm/data/1', data: new Uint8Array(0) },
    ]));
    const t = openTorchBin(file);
    const tail = t.get('tail')!;
    assert.equal(tail.data, undefined);
    assert.deepEqual([...new Float32Array(readTensorBytes(tail).slice().buffer)], [4, 5, 6, 7, 8, 9, 10, 11]);
    assert.deepEqual([...new Float32Array(readTensorBytes(t.get('T')!).slice().buffer)], [0, 3, 1, 4, 2, 5]);
    assert.deepEqual(t.get('e')!.shape, [0, 3]);
    assert.equal(t.get('e')!.byteLength, 0);
  });

  test('nn.Parameter wrappers and OrderedDict _metadata (BUILD) are accepted', () => {
    // torch.save(model.state_dict()) of a module whose state dict keeps `_metadata`, with a Parameter
    // pickled through _rebuild_from_type_v2 as torch 2.x does for tensor subclasses
    const p = new Pickle().proto(2).global('collections', 'OrderedDict').emptyTuple().reduce().mark();
    p.str('w').call('torch._tensor', '_rebuild_from_type_v2', (q) => {
      q.global('torch._utils', '_rebuild_parameter').global('torch.nn.parameter', 'Parameter').mark();
      q.call('torch._utils', '_rebuild_tensor_v2', (r) => {
        r.mark().str('storage').global('torch', 'FloatStorage').str('0').str('cpu').int(2).tuple().binpersid();
        r.int(0).dims([2]).dims([1]).bool(false).call('collections', 'OrderedDict', () => {});
      });
      q.bool(true).call('collections', 'OrderedDict', () => {}).tuple().emptyDict();
    });
    p.setitems();
    p.emptyDict().str('_metadata').call('collections', 'OrderedDict', () => {}).setitem().build();
    const file = writeFile(path.join(tmp, 'param.bin'), zipBytes([
      { name: 'archive/data.pkl', data: p.stop().build_() }, { name: 'archive/data/0', data: f32([1.5, -2]) },
    ]));
    const t = openTorchBin(file);
    assert.deepEqual([...t.keys()], ['w']);
    assert.deepEqual([...new Float32Array(readTensorBytes(t.get('w')!).slice().buffer)], [1.5, -2]);
  });

  test('the legacy (torch < 1.6) format: the fixture, pointed at in place', async () => {
    const d = dir('legacy-bin');
    const file = writeFile(path.join(d, 'pytorch_model.bin'), legacyTorchBytes(fixtureTensors()));
    const w = await loadWeights(d);
    assertSameTensors(w.tensors, openSafetensors(ST));
    assert.ok([...w.tensors.values()].every((t) => !t.data && t.file === fs.realpathSync(file)));
    const bytes = fs.readFileSync(file);
    assert.throws(() => openTorchBin(writeFile(path.join(tmp, 'legacy-cut.bin'), bytes.subarray(0, bytes.length - 100))),
      /legacy-cut\.bin: not a loadable torch checkpoint: storage \d+ runs past the end of the file \(truncated\?\)/);
  });

  test('big-endian archives and several data.pkl are refused', () => {
    const be = writeFile(path.join(tmp, 'be.bin'), zipBytes([
      { name: 'a/data.pkl', data: stateDictPickle([]) }, { name: 'a/byteorder', data: Buffer.from('big') },
    ]));
    assert.throws(() => openTorchBin(be), /be\.bin: not a loadable torch checkpoint: tensors are stored big-endian/);
    const two = writeFile(path.join(tmp, 'two.bin'), zipBytes([
      { name: 'a/data.pkl', data: stateDictPickle([]) }, { name: 'b/data.pkl', data: stateDictPickle([]) },
    ]));
    assert.throws(() => openTorchBin(two), /several data\.pkl entries \(a\/data\.pkl, b\/data\.pkl\)/);
  });
});
