// The restricted unpickler: values decoded as CPython's pickle writes them (protocols 0-5), and a
// suite of hostile checkpoints, each refused with an error naming the file and the problem, with no
// side effect (the file each payload would create must not exist afterwards).
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { openTorchBin } from '../src/weights/index.js';
import { stateDictGlobals } from '../src/weights/torch.js';
import { unpickle } from '../src/weights/unpickler.js';
import { legacyTorchBytes, Pickle, stateDictPickle, torchBinBytes, writeFile, zipBytes } from './weights_fixtures.js';

const FIXTURE_BIN = 'test/fixtures/models/tiny-altclip-bin/pytorch_model.bin';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-pickle-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

// pickle.dumps(v, protocol=p) from CPython 3.11 for
// v = {'a': [1, -2, 255, 65535, -70000, 2.5, -0.1, 'héllo ☃ \U0001F600\n\\', b'\x00\xff', None, True, False,
//            (1, 2), (), (7,), (1, 2, 3, 4), 2**70, -2**63, 2**53+1], 'n': {'x': 1, 5: 'five'}, 's1': s, 's2': s}
// with s = [1, 2] the same list twice.
const PY_PICKLES: Record<number, string> = {
  0: '286470300a56610a70310a286c70320a49310a61492d320a61493235350a614936353533350a61492d37303030300a6146322e350a61462d302e310a615668e96c6c6f205c7532363033205c5530303031663630305c75303030615c75303035630a70330a61635f636f646563730a656e636f64650a70340a28565c7530303030ff0a70350a566c6174696e310a70360a7470370a5270380a614e614930310a614930300a612849310a49320a7470390a612874612849370a747031300a612849310a49320a49330a49340a747031310a614c313138303539313632303731373431313330333432344c0a614c2d393232333337323033363835343737353830384c0a614c393030373139393235343734303939334c0a6173566e0a7031320a28647031330a56780a7031340a49310a7349350a56666976650a7031350a73735673310a7031360a286c7031370a49310a6149320a61735673320a7031380a6731370a732e',
  1: '7d71002858010000006171015d7102284b014afeffffff4bff4dffff4a90eefeff47400400000000000047bfb999999999999a581100000068c3a96c6c6f20e2988320f09f98800a5c7103635f636f646563730a656e636f64650a710428580300000000c3bf710558060000006c6174696e3171067471075271084e4930310a4930300a284b014b0274710929284b0774710a284b014b024b034b0474710b4c313138303539313632303731373431313330333432344c0a4c2d393232333337323033363835343737353830384c0a4c393030373139393235343734303939334c0a6558010000006e710c7d710d28580100000078710e4b014b05580400000066697665710f755802000000733171105d7111284b014b02655802000000733271126811752e',
  2: '80027d71002858010000006171015d7102284b014afeffffff4bff4dffff4a90eefeff47400400000000000047bfb999999999999a581100000068c3a96c6c6f20e2988320f09f98800a5c7103635f636f646563730a656e636f64650a7104580300000000c3bf710558060000006c6174696e3171068671075271084e88894b014b02867109294b0785710a284b014b024b034b0474710b8a090000000000000000408a0800000000000000808a07010000000000206558010000006e710c7d710d28580100000078710e4b014b05580400000066697665710f755802000000733171105d7111284b014b02655802000000733271126811752e',
  3: '80037d71002858010000006171015d7102284b014afeffffff4bff4dffff4a90eefeff47400400000000000047bfb999999999999a581100000068c3a96c6c6f20e2988320f09f98800a5c7103430200ff71044e88894b014b02867105294b07857106284b014b024b034b047471078a090000000000000000408a0800000000000000808a07010000000000206558010000006e71087d710928580100000078710a4b014b05580400000066697665710b7558020000007331710c5d710d284b014b026558020000007332710e680d752e',
  4: '800495ab000000000000007d94288c0161945d94284b014afeffffff4bff4dffff4a90eefeff47400400000000000047bfb999999999999a8c1168c3a96c6c6f20e2988320f09f98800a5c94430200ff944e88894b014b028694294b078594284b014b024b034b0474948a090000000000000000408a0800000000000000808a0701000000000020658c016e947d94288c0178944b014b058c046669766594758c027331945d94284b014b02658c02733294680d752e',
  5: '800595ab000000000000007d94288c0161945d94284b014afeffffff4bff4dffff4a90eefeff47400400000000000047bfb999999999999a8c1168c3a96c6c6f20e2988320f09f98800a5c94430200ff944e88894b014b028694294b078594284b014b024b034b0474948a090000000000000000408a0800000000000000808a0701000000000020658c016e947d94288c0178944b014b058c046669766594758c027331945d94284b014b02658c02733294680d752e',
};
// pickle.dumps({'set': {1, 'a'}, 'fs': frozenset({3}), 'ba': bytearray(b'xy')}, protocol=5)
const PY_SETS_P5 = '80059530000000000000007d94288c03736574948f94284b018c016194908c02667394284b0391948c02626194960200000000000000787994752e';

const globals = stateDictGlobals('test');
const load = (hex: string) => unpickle(Buffer.from(hex, 'hex'), { source: 'test', globals });

describe('unpickler decodes what CPython writes', () => {
  for (const [proto, hex] of Object.entries(PY_PICKLES)) {
    test(`protocol ${proto}`, () => {
      const v = load(hex) as Map<string, unknown>;
      assert.deepEqual(v.get('a'), [
        1, -2, 255, 65535, -70000, 2.5, -0.1, 'héllo ☃ \u{1F600}\n\\', new Uint8Array([0, 255]), null, true, false,
        [1, 2], [], [7], [1, 2, 3, 4], 2n ** 70n, -(2n ** 63n), 2n ** 53n + 1n,
      ]);
      assert.deepEqual(v.get('n'), new Map<unknown, unknown>([['x', 1], [5, 'five']]));
      assert.deepEqual([...v.keys()], ['a', 'n', 's1', 's2']);
      assert.deepEqual(v.get('s1'), [1, 2]);
      assert.equal(v.get('s1'), v.get('s2'), 'memo keeps shared references shared');
      assert.ok(Object.isFrozen((v.get('a') as unknown[])[12]), 'tuples are frozen');
    });
  }
  test('sets, frozensets and bytearrays (protocol 5)', () => {
    const v = load(PY_SETS_P5) as Map<string, unknown>;
    assert.deepEqual(v.get('set'), new Set([1, 'a']));
    assert.deepEqual(v.get('fs'), new Set([3]));
    assert.deepEqual(v.get('ba'), new Uint8Array([0x78, 0x79]));
  });
});

describe('hostile checkpoints are refused without side effects', () => {
  let n = 0;
  /** A fresh marker path that a payload would create, and a .bin holding the given data.pkl. */
  const evil = (pkl: (marker: string) => Uint8Array, extra: { name: string; data: Uint8Array }[] = []) => {
    const marker = path.join(tmp, `pwned-${++n}`);
    const file = writeFile(path.join(tmp, `evil-${n}.bin`), zipBytes([{ name: 'archive/data.pkl', data: pkl(marker) }, ...extra]));
    return { marker, file };
  };
  const refused = ({ file, marker }: { file: string; marker: string }, pattern: RegExp) => {
    assert.throws(() => openTorchBin(file), (e: Error) => {
      assert.match(e.message, pattern);
      assert.ok(e.message.includes(file), `error names the file: ${e.message}`);
      return true;
    });
    assert.equal(fs.existsSync(marker), false, 'the payload ran');
  };

  test('posix.system via GLOBAL + REDUCE', () => {
    refused(evil((m) => new Pickle().proto(2).call('posix', 'system', (p) => p.str(`touch ${m}`)).stop().build_()),
      /global posix\.system is not allowed/);
  });
  test('builtins.eval via STACK_GLOBAL (protocol 4)', () => {
    refused(evil((m) => new Pickle().proto(4).stackGlobal('builtins', 'eval')
      .shortStr(`__import__('os').system('touch ${m}')`).tuple1().reduce().stop().build_()), /global builtins\.eval is not allowed/);
  });
  test('subprocess.Popen', () => {
    refused(evil((m) => new Pickle().proto(2).global('subprocess', 'Popen')
      .mark().str('touch').str(m).op(0x6c).tuple1().reduce().stop().build_()), /global subprocess\.Popen is not allowed/);
  });
  test('os.system via the protocol-0 INST opcode', () => {
    refused(evil((m) => new Pickle().mark().bytes(Buffer.from(`Vtouch ${m}\nios\nsystem\n.`)).build_()), /global os\.system is not allowed/);
  });
  test('a global smuggled through copyreg._reconstructor', () => {
    refused(evil((m) => new Pickle().proto(2).call('copyreg', '_reconstructor', (p) => {
      p.global('subprocess', 'Popen').global('builtins', 'object').mark().str('touch').str(m).op(0x6c);
    }).stop().build_()), /global copyreg\._reconstructor is not allowed/);
  });
  test('os.system nested inside an otherwise valid state dict', () => {
    refused(evil((m) => new Pickle().proto(2).emptyDict().str('w').call('torch._utils', '_rebuild_tensor_v2', (p) => {
      p.call('os', 'system', (q) => q.str(`touch ${m}`)).int(0).dims([1]).dims([1]).bool(false).emptyDict();
    }).setitem().stop().build_()), /global os\.system is not allowed/);
  });
  test('torch.storage._load_from_bytes (a second, unrestricted unpickle) is not allowed', () => {
    refused(evil(() => new Pickle().proto(2).call('torch.storage', '_load_from_bytes', (p) => p.op(0x43, 1, 0x2e)).stop().build_()),
      /global torch\.storage\._load_from_bytes is not allowed/);
  });
  test('an allowed global used as the function of _rebuild_from_type_v2', () => {
    refused(evil(() => new Pickle().proto(2).emptyDict().str('w').call('torch._tensor', '_rebuild_from_type_v2', (p) => {
      p.global('collections', 'OrderedDict').global('torch', 'Tensor').emptyTuple().emptyDict();
    }).setitem().stop().build_()), /_rebuild_from_type_v2 with function global collections\.OrderedDict is not allowed/);
  });
  test('calling a storage class', () => {
    refused(evil(() => new Pickle().proto(2).call('torch', 'FloatStorage', (p) => p.int(10)).stop().build_()), /torch\.FloatStorage cannot be called/);
  });
  test('BUILD on a global (would set attributes on a class)', () => {
    refused(evil(() => new Pickle().proto(2).global('torch', 'FloatStorage').emptyDict().build().stop().build_()), /BUILD on a global/);
  });
  test('copyreg extension codes (EXT1)', () => {
    refused(evil(() => new Pickle().proto(2).op(0x82, 1).emptyTuple().reduce().stop().build_()), /extension registry/);
  });
  test('huge BINBYTES / BINBYTES8 / BINUNICODE8 / LONG4 lengths', () => {
    refused(evil(() => new Pickle().proto(3).op(0x42, 0xff, 0xff, 0xff, 0xff).stop().build_()), /4294967295 bytes runs past the end of the pickle/);
    refused(evil(() => new Pickle().proto(4).op(0x8e, 0, 0, 0, 0, 0, 0, 0, 0x40).stop().build_()), /runs past the end of the pickle/);
    refused(evil(() => new Pickle().proto(4).op(0x8d, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff).stop().build_()), /runs past the end of the pickle/);
    refused(evil(() => new Pickle().proto(2).op(0x8b, 0xff, 0xff, 0xff, 0x7f).stop().build_()), /runs past the end of the pickle/);
  });
  test('a storage key that is a path, and a persistent id that is not a storage', () => {
    refused(evil(() => new Pickle().proto(2).emptyDict().str('w').call('torch._utils', '_rebuild_tensor_v2', (p) => {
      p.mark().str('storage').global('torch', 'FloatStorage').str('../../etc/passwd').str('cpu').int(1).tuple().binpersid();
      p.int(0).dims([1]).dims([1]).bool(false).emptyDict();
    }).setitem().stop().build_()), /storage key "\.\.\/\.\.\/etc\/passwd" is not a plain name/);
    refused(evil(() => new Pickle().proto(2).str('x').binpersid().stop().build_()), /unsupported persistent id \(a str/);
  });
  test('a deflated data.pkl that inflates past its declared size (zip bomb)', () => {
    const bomb = new Pickle().proto(2).emptyList();
    for (let i = 0; i < 100_000; i++) bomb.none().append();
    const zip = zipBytes([{ name: 'archive/data.pkl', data: bomb.stop().build_(), deflate: true }]);
    const cd = zip.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
    zip.writeUInt32LE(1000, cd + 24); // declared size: 1000 bytes
    const marker = path.join(tmp, `pwned-${++n}`);
    refused({ file: writeFile(path.join(tmp, 'bomb.bin'), zip), marker }, /does not inflate to its declared 1000 bytes/);
  });
  test('a pickle without STOP (truncated)', () => {
    const pkl = stateDictPickle([{ name: 'w', dtype: 'F32', key: '0', numel: 1, offset: 0, size: [1], stride: [1] }]);
    refused(evil(() => pkl.subarray(0, pkl.length - 5)), /(ends without a STOP|runs past the end|no terminating newline)/);
  });
  test('not a state dict', () => {
    refused(evil(() => new Pickle().proto(2).emptyList().stop().build_()), /holds a list, not a state dict/);
  });
  test('stack and memo caps', () => {
    const many = (op: number, count: number) => {
      const p = new Pickle().proto(2);
      for (let i = 0; i < count; i++) p.op(op);
      return p.stop().build_();
    };
    assert.throws(() => unpickle(many(0x5d, 2000), { source: 'bomb.pkl', globals, maxStack: 1000 }), /bomb\.pkl: refused pickle: stack grows past 1000/);
    const memo = new Pickle().proto(4).emptyList();
    for (let i = 0; i < 2000; i++) memo.op(0x72, i & 0xff, i >> 8, 0, 0);
    assert.throws(() => unpickle(memo.stop().build_(), { source: 'bomb.pkl', globals, maxMemo: 1000 }), /memo grows past 1000/);
  });

  const zipRefused = (file: string, pattern: RegExp) => {
    assert.throws(() => openTorchBin(file), (e: Error) => {
      assert.match(e.message, pattern);
      assert.ok(e.message.includes(file), `error names the file: ${e.message}`);
      return true;
    });
  };
  test('zip-slip entry names', () => {
    const good = torchBinBytes([{ name: 'w', dtype: 'F32', shape: [1], bytes: new Uint8Array(4) }]);
    assert.ok(good.length > 0);
    const escape = `../${path.basename(tmp)}-evil`;
    for (const [name, re] of [[escape, /escapes the archive folder/], ['/tmp/evil', /absolute path/], ['archive\\..\\evil', /backslash/], ['archive/data/../../evil', /escapes/]] as const) {
      const file = writeFile(path.join(tmp, `slip-${++n}.bin`), zipBytes([
        { name: 'archive/data.pkl', data: stateDictPickle([]) }, { name, data: Buffer.from('boom') },
      ]));
      zipRefused(file, re);
    }
    assert.equal(fs.existsSync(path.join(tmp, escape)), false);
  });
  test('truncated zips', () => {
    const bytes = fs.readFileSync(FIXTURE_BIN);
    zipRefused(writeFile(path.join(tmp, 'half.bin'), bytes.subarray(0, bytes.length >> 1)), /no end-of-central-directory record \(truncated/);
    zipRefused(writeFile(path.join(tmp, 'tail.bin'), bytes.subarray(0, bytes.length - 10)), /no end-of-central-directory record/);
    // the directory survives but the data before it is cut: offsets no longer fit
    const eocdAt = bytes.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
    const cdOffset = bytes.readUInt32LE(eocdAt + 16);
    const cut = Buffer.concat([bytes.subarray(0, 100_000), bytes.subarray(cdOffset)]);
    cut.writeUInt32LE(100_000, cut.length - 22 + 16);
    zipRefused(writeFile(path.join(tmp, 'cut.bin'), cut), /(runs into the central directory|no local header|overlaps)/);
  });
  test('inconsistent sizes', () => {
    // the directory claims more bytes than the entry holds
    const bytes = torchBinBytes([{ name: 'w', dtype: 'F32', shape: [4], bytes: new Uint8Array(16) }]);
    const cd = bytes.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
    bytes.writeUInt32LE(1 << 20, cd + 20);
    bytes.writeUInt32LE(1 << 20, cd + 24);
    zipRefused(writeFile(path.join(tmp, 'sizes.bin'), bytes), /runs into the central directory|overlaps/);
    // a storage whose entry is shorter than its declared element count
    const pkl = stateDictPickle([{ name: 'w', dtype: 'F32', key: '0', numel: 8, offset: 0, size: [8], stride: [1] }]);
    zipRefused(writeFile(path.join(tmp, 'numel.bin'), zipBytes([{ name: 'a/data.pkl', data: pkl }, { name: 'a/data/0', data: new Uint8Array(16) }])),
      /holds 16 bytes, but its storage has 8 F32 elements \(32 bytes\)/);
    // a view reaching past its storage
    const pkl2 = stateDictPickle([{ name: 'w', dtype: 'F32', key: '0', numel: 4, offset: 2, size: [4], stride: [1] }]);
    zipRefused(writeFile(path.join(tmp, 'view.bin'), zipBytes([{ name: 'a/data.pkl', data: pkl2 }, { name: 'a/data/0', data: new Uint8Array(16) }])),
      /tensor "w" .* reaches past its storage of 4 elements/);
    // a storage entry that is missing
    zipRefused(writeFile(path.join(tmp, 'missing.bin'), zipBytes([{ name: 'a/data.pkl', data: pkl2 }])), /no entry a\/data\/0/);
  });
  test('a corrupt deflated entry', () => {
    const bytes = torchBinBytes([{ name: 'w', dtype: 'F32', shape: [256], bytes: new Uint8Array(1024).fill(7) }], { deflate: true });
    const at = bytes.indexOf(Buffer.from('archive/data/0')) + 'archive/data/0'.length;
    const extraLen = bytes.readUInt16LE(at - 'archive/data/0'.length - 2);
    bytes[at + extraLen + 1] ^= 0xff;
    // deflated entries are inflated (and checked) when their data is first used, not at open
    const file = writeFile(path.join(tmp, 'crc.bin'), bytes);
    const ref = openTorchBin(file).get('w')!;
    assert.throws(() => ref.data, (e: Error) => /(does not inflate|CRC-32|holds \d+ bytes)/.test(e.message) && e.message.includes(file));
  });
  test('legacy (torch < 1.6) files: a payload in the state dict pickle, a wrong magic number', () => {
    const marker = path.join(tmp, `pwned-${++n}`);
    const payload = new Pickle().proto(2).call('posix', 'system', (p) => p.str(`touch ${marker}`)).stop().build_();
    refused({ file: writeFile(path.join(tmp, 'legacy-evil.bin'), legacyTorchBytes([], payload)), marker }, /\(state dict, the pickle at byte \d+\): refused pickle: global posix\.system is not allowed/);
    zipRefused(writeFile(path.join(tmp, 'legacy-magic.bin'), new Pickle().proto(2).int(0x1950a86a).stop().build_()), /not a torch\.save file \(wrong magic number\)/);
  });
});
