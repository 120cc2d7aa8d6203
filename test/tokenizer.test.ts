// XLMRobertaTokenizer vs the goldens of transformers 4.40.2's slow tokenizer (sentencepiece 0.1.97),
// from both loaders (.model and tokenizer.json); plus robustness: fuzzing, huge and odd input,
// corrupt files, hub ids.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { XLMRobertaTokenizer } from '../src/tokenizer/index.js';
import {
  encodeSentencePieceModel,
  parseSentencePieceModel,
  PieceType,
  type SentencePieceModelSpec,
} from '../src/tokenizer/sentencepiece_model.js';
import { FIXTURES } from './helpers/goldens.js';
import { startHubServer, type HubServer } from './helpers/hub_server.js';

const TOKENIZER_DIR = path.join(FIXTURES, 'tokenizer');
const cases = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'tokenizer_cases.json'), 'utf8'));

const loaders = {
  model: await XLMRobertaTokenizer.fromPretrained(TOKENIZER_DIR, { from: 'model' }),
  json: await XLMRobertaTokenizer.fromPretrained(TOKENIZER_DIR, { from: 'json' }),
};

/** Seeded PRNG (mulberry32) so every fuzz run checks the same strings. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

for (const [name, tok] of Object.entries(loaders)) {
  describe(`goldens (${name} loader)`, () => {
    it('has the fairseq layout', () => {
      assert.equal(tok.vocabSize, cases.vocab_size);
      assert.equal(tok.modelMaxLength, cases.model_max_length);
      for (const [key, spec] of Object.entries(cases.special_tokens) as [string, { token: string; id: number }][]) {
        const id = (tok as unknown as Record<string, number>)[key.replace(/_token$/, 'TokenId').replace(/_(\w)/g, (_, c) => c.toUpperCase())];
        assert.equal(id, spec.id, key);
        assert.equal(tok.convertIdsToTokens([spec.id])[0], spec.token);
      }
    });

    it('single texts: ids, mask, tokenize, convertIdsToTokens, encode without specials, decode', () => {
      let n = 0;
      for (const c of cases.cases.filter((c: { kind: string }) => c.kind === 'single')) {
        const msg = `${c.id} ${JSON.stringify(c.text).slice(0, 60)}`;
        const enc = tok.batchEncode(c.text);
        assert.deepEqual(enc.inputIds, [c.input_ids], msg);
        assert.deepEqual(enc.attentionMask, [c.attention_mask], msg);
        assert.deepEqual(tok.encode(c.text), c.input_ids, msg);
        assert.deepEqual(tok.tokenize(c.text), c.tokenize, msg);
        assert.deepEqual(tok.convertIdsToTokens(c.input_ids), c.convert_ids_to_tokens, msg);
        assert.deepEqual(tok.encode(c.text, { addSpecialTokens: false }), c.encode_no_special, msg);
        assert.equal(tok.decode(c.input_ids, { skipSpecialTokens: true }), c.decode_skip_special_tokens, msg);
        assert.equal(tok.decode(c.input_ids), c.decode, msg);
        assert.equal(c.input_ids.length, c.num_tokens, msg);
        n++;
      }
      assert.equal(n, 117);
    });

    it('pairs', () => {
      for (const c of cases.cases.filter((c: { kind: string }) => c.kind === 'pair')) {
        const enc = tok.batchEncode([c.text], { textPair: [c.text_pair] });
        assert.deepEqual(enc.inputIds, [c.input_ids], c.id);
        assert.deepEqual(enc.attentionMask, [c.attention_mask], c.id);
        assert.deepEqual(tok.encode(c.text, { textPair: c.text_pair }), c.input_ids, c.id);
        assert.deepEqual(tok.convertIdsToTokens(c.input_ids), c.convert_ids_to_tokens, c.id);
      }
    });

    it('batch calls: padding, truncation, pad_to_multiple_of, add_special_tokens', () => {
      let n = 0;
      for (const c of cases.cases.filter((c: { kind: string }) => c.kind === 'batch')) {
        const k = c.call.kwargs;
        const enc = tok.batchEncode(c.texts, {
          padding: k.padding,
          truncation: k.truncation,
          maxLength: k.max_length,
          padToMultipleOf: k.pad_to_multiple_of,
          addSpecialTokens: k.add_special_tokens,
        });
        assert.deepEqual(enc.inputIds, c.input_ids, c.id);
        assert.deepEqual(enc.attentionMask, c.attention_mask, c.id);
        assert.deepEqual(tok.batchDecode(c.input_ids, { skipSpecialTokens: true }), c.batch_decode_skip_special_tokens, c.id);
        n++;
      }
      assert.equal(n, 12);
    });
  });
}

describe('options that follow transformers (no goldens, derived from tokenization_utils_base.py)', () => {
  const tok = loaders.model;
  it('padding "max_length" without maxLength pads to model_max_length', () => {
    const enc = tok.batchEncode(['a photo of a cat'], { padding: 'max_length' });
    assert.equal(enc.inputIds[0].length, 512);
    assert.equal(enc.attentionMask[0].reduce((a, b) => a + b, 0), 7);
  });
  it('maxLength alone turns truncation on; truncation: false keeps everything', () => {
    assert.equal(tok.batchEncode(['a photo of a cat'], { maxLength: 4 }).inputIds[0].length, 4);
    assert.equal(tok.batchEncode(['a photo of a cat'], { maxLength: 4, truncation: false }).inputIds[0].length, 7);
  });
  it('truncation without maxLength cuts at model_max_length', () => {
    const long = 'a photo of a cat '.repeat(200);
    assert.equal(tok.batchEncode([long], { truncation: true }).inputIds[0].length, 512);
    assert.equal(tok.batchEncode([long]).inputIds[0].length, 1002);
  });
  it('pairs: longest_first removes from the longer sequence, only_second from the pair', () => {
    const a = tok.encode('a photo of a cat', { addSpecialTokens: false });
    const b = tok.encode('dog', { addSpecialTokens: false });
    const enc = tok.batchEncode(['a photo of a cat'], { textPair: ['dog'], truncation: true, maxLength: 7 });
    assert.deepEqual(enc.inputIds[0], [0, ...a.slice(0, 2), 2, 2, ...b, 2]);
    const only = tok.batchEncode(['dog'], { textPair: ['a photo of a cat'], truncation: 'only_second', maxLength: 8 });
    assert.deepEqual(only.inputIds[0], [0, ...b, 2, 2, ...a.slice(0, 3), 2]);
  });
  it('left padding and left truncation', () => {
    const enc = tok.batchEncode(['a photo of a cat', 'dog'], { padding: true, paddingSide: 'left' });
    assert.deepEqual(enc.inputIds[1], [1, 1, 1, 1, 0, 1588, 2]);
    assert.deepEqual(enc.attentionMask[1], [0, 0, 0, 0, 1, 1, 1]);
    const cut = tok.batchEncode(['a photo of a cat'], { truncation: true, maxLength: 4, truncationSide: 'left' });
    assert.deepEqual(cut.inputIds[0], [0, 35, 1535, 2]);
  });
  it('truncation length that is not a multiple of padToMultipleOf is an error', () => {
    assert.throws(() => tok.batchEncode(['x'], { padding: true, truncation: true, maxLength: 10, padToMultipleOf: 8 }), /multiple/);
  });
  it('<mask> swallows the whitespace on its left only', () => {
    assert.deepEqual(tok.tokenize('a \u3000\t<mask>  b'), ['▁a', '<mask>', '▁b']);
  });
  it('decode keeps clean-up optional', () => {
    const ids = tok.encode('Hello , world !', { addSpecialTokens: false });
    assert.equal(tok.decode(ids), 'Hello, world!');
    assert.equal(tok.decode(ids, { cleanUpTokenizationSpaces: false }), 'Hello , world !');
  });
  it('out-of-range ids are a RangeError', () => {
    assert.throws(() => tok.decode([5000]), RangeError);
    assert.throws(() => tok.convertIdsToTokens([-1]), RangeError);
  });
  it('convertTokensToIds inverts convertIdsToTokens', () => {
    const ids = tok.encode('Привет, мир! 我爱北京天安门 <mask>');
    const tokens = tok.convertIdsToTokens(ids);
    assert.deepEqual(tok.convertTokensToIds(tokens), ids);
  });
});

describe('robustness', () => {
  const { model, json } = loaders;

  it('fuzz: random strings from every plane never throw, and both loaders agree (1500 strings)', () => {
    const rand = rng(42);
    const pieces = ['a', ' ', '  ', '\t', '\n', '\r\n', '\u00a0', '\u200b', '\u3000', '\ufeff', '\0', '\x07', '<mask>', '<s>', '</s', '<pad>', '\u0301', '\u0308', 'e', '…', '..', '🐱', '\u200d', '\ufe0f', 'ﬁ', '①', '我爱北京'];
    const randomChar = () => {
      const r = rand();
      if (r < 0.03) return String.fromCharCode(0xd800 + Math.floor(rand() * 0x800)); // lone surrogate
      const plane = r < 0.5 ? 0 : Math.floor(rand() * 17);
      const cp = plane * 0x10000 + Math.floor(rand() * 0x10000);
      return cp >= 0xd800 && cp <= 0xdfff ? 'x' : String.fromCodePoint(cp);
    };
    for (let i = 0; i < 1500; i++) {
      let s = '';
      const parts = Math.floor(rand() * 16);
      for (let k = 0; k < parts; k++) s += rand() < 0.5 ? pieces[Math.floor(rand() * pieces.length)] : randomChar();
      const ids = model.encode(s);
      assert.deepEqual(json.encode(s), ids, JSON.stringify(s));
      assert.ok(ids.every((id) => Number.isInteger(id) && id >= 0 && id < model.vocabSize), JSON.stringify(s));
      assert.equal(model.tokenize(s).length, ids.length - 2, JSON.stringify(s));
      assert.equal(typeof model.decode(ids, { skipSpecialTokens: true }), 'string');
      // A decoded text re-encodes to the same ids except where <unk> was dropped.
      if (!ids.includes(3)) {
        const again = model.encode(model.decode(ids, { skipSpecialTokens: true, cleanUpTokenizationSpaces: false }));
        assert.ok(again.length > 0);
      }
    }
  });

  it('non-string input is a TypeError', () => {
    assert.throws(() => model.encode(undefined as unknown as string), TypeError);
    assert.throws(() => model.batchEncode([42 as unknown as string]), TypeError);
  });

  it('lone surrogates are encoded as U+FFFD', () => {
    assert.deepEqual(model.encode('a\ud800b\udfff'), model.encode('a\ufffdb\ufffd'));
  });

  it('runs of characters outside the vocabulary become one <unk>', () => {
    const rare = String.fromCodePoint(0x20000, 0x20001, 0x13000, 0xe000, 0x10fffd);
    assert.deepEqual(model.encode(rare), [0, 4, 3, 2]);
    assert.deepEqual(model.tokenize(rare), ['▁', rare]);
  });

  it('1 MB of text: segmentation repeats word by word', () => {
    const word = 'Tokyo東京Токио';
    const one = model.encode(word, { addSpecialTokens: false });
    const count = Math.ceil(1_000_000 / (word.length + 1));
    const ids = model.encode(`${word} `.repeat(count), { addSpecialTokens: false });
    assert.equal(ids.length, one.length * count);
    for (let i = 0; i < ids.length; i++) if (ids[i] !== one[i % one.length]) assert.fail(`differs at ${i}`);
    // A single 1 MB "word" of one character and of unknown characters.
    assert.ok(model.encode('a'.repeat(1_000_000)).length > 2);
    assert.deepEqual(model.encode('\u{20000}'.repeat(500_000)), [0, 4, 3, 2]);
  });
});

// Small models exercising the NormalizerSpec / TrainerSpec switches and piece types XLM-R's model
// does not use. Expected output: python sentencepiece 0.1.97 (Debian's python3-sentencepiece) run on
// exactly these model files, `sp.encode(text)` and `sp.encode(text, out_type=str)`.
const VARIANT_PIECES = [
  { piece: '<unk>', score: 0, type: PieceType.UNKNOWN },
  { piece: '<s>', score: 0, type: PieceType.CONTROL },
  { piece: '</s>', score: 0, type: PieceType.CONTROL },
  ...Object.entries({ '▁': -2, a: -3, b: -3, c: -3, ab: -4, bc: -4, abc: -7.5, '▁a': -3.5, '▁ab': -5, h: -4, e: -4, l: -4, o: -4, x: -5, y: -5, z: -5, ' ': -6, 'l▁': -4.5 })
    .map(([piece, score]) => ({ piece, score })),
  { piece: 'hello', score: 0, type: PieceType.USER_DEFINED },
  { piece: 'xyz', score: -1, type: PieceType.UNUSED },
];
const VARIANT_SPECS = (charsmap: Uint8Array): Record<string, SentencePieceModelSpec> => ({
  // nmt_nfkc defaults; user-defined "hello" always wins, unused "xyz" never comes out.
  v1: { pieces: VARIANT_PIECES, normalizer: { name: 'nmt_nfkc', precompiledCharsmap: charsmap } },
  v2: { pieces: VARIANT_PIECES, normalizer: { name: 'nmt_nfkc', precompiledCharsmap: charsmap, addDummyPrefix: false, removeExtraWhitespaces: false } },
  v3: { pieces: VARIANT_PIECES, normalizer: { name: 'identity', escapeWhitespaces: false }, treatWhitespaceAsSuffix: true },
});
const VARIANT_GOLDENS: Record<string, [string, number[], string[]][]> = {
  v1: [
    ["abc", [10, 8], ["\u2581a", "bc"]],
    [" abc  ab ", [10, 8, 11], ["\u2581a", "bc", "\u2581ab"]],
    ["hello abc", [3, 21, 10, 8], ["\u2581", "hello", "\u2581a", "bc"]],
    ["xyz", [3, 16, 17, 18], ["\u2581", "x", "y", "z"]],
    ["ahellob", [10, 21, 5], ["\u2581a", "hello", "b"]],
    ["a\u3000b", [10, 3, 5], ["\u2581a", "\u2581", "b"]],
    ["\uff48\uff45\uff4c\uff4c\uff4f", [3, 21], ["\u2581", "hello"]],
    ["zzz?? q", [3, 18, 18, 18, 0, 3, 0], ["\u2581", "z", "z", "z", "??", "\u2581", "q"]],
    ["", [], []],
    ["  ", [], []],
    ["abcabc abc", [10, 8, 4, 8, 10, 8], ["\u2581a", "bc", "a", "bc", "\u2581a", "bc"]],
    ["l l\tl", [3, 20, 20, 14], ["\u2581", "l\u2581", "l\u2581", "l"]],
    ["a \u200b b", [10, 3, 5], ["\u2581a", "\u2581", "b"]],
    ["e\u0301", [3, 0], ["\u2581", "\u00e9"]],
  ],
  v2: [
    ["abc", [4, 8], ["a", "bc"]],
    [" abc  ab ", [10, 8, 3, 11, 3], ["\u2581a", "bc", "\u2581", "\u2581ab", "\u2581"]],
    ["hello abc", [21, 10, 8], ["hello", "\u2581a", "bc"]],
    ["xyz", [16, 17, 18], ["x", "y", "z"]],
    ["ahellob", [4, 21, 5], ["a", "hello", "b"]],
    ["a\u3000b", [4, 3, 5], ["a", "\u2581", "b"]],
    ["\uff48\uff45\uff4c\uff4c\uff4f", [21], ["hello"]],
    ["zzz?? q", [18, 18, 18, 0, 3, 0], ["z", "z", "z", "??", "\u2581", "q"]],
    ["", [], []],
    ["  ", [3, 3], ["\u2581", "\u2581"]],
    ["abcabc abc", [4, 8, 4, 8, 10, 8], ["a", "bc", "a", "bc", "\u2581a", "bc"]],
    ["l l\tl", [20, 20, 14], ["l\u2581", "l\u2581", "l"]],
    ["a \u200b b", [4, 3, 3, 3, 5], ["a", "\u2581", "\u2581", "\u2581", "b"]],
    ["e\u0301", [0], ["\u00e9"]],
  ],
  v3: [
    ["abc", [4, 8, 19], ["a", "bc", " "]],
    [" abc  ab ", [4, 8, 19, 7, 19], ["a", "bc", " ", "ab", " "]],
    ["hello abc", [21, 19, 4, 8, 19], ["hello", " ", "a", "bc", " "]],
    ["xyz", [16, 17, 18, 19], ["x", "y", "z", " "]],
    ["ahellob", [4, 21, 5, 19], ["a", "hello", "b", " "]],
    ["a\u3000b", [4, 0, 5, 19], ["a", "\u3000", "b", " "]],
    ["\uff48\uff45\uff4c\uff4c\uff4f", [0, 19], ["\uff48\uff45\uff4c\uff4c\uff4f", " "]],
    ["zzz?? q", [18, 18, 18, 0, 19, 0, 19], ["z", "z", "z", "??", " ", "q", " "]],
    ["", [], []],
    ["  ", [], []],
    ["abcabc abc", [4, 8, 4, 8, 19, 4, 8, 19], ["a", "bc", "a", "bc", " ", "a", "bc", " "]],
    ["l l\tl", [14, 19, 14, 0, 14, 19], ["l", " ", "l", "\t", "l", " "]],
    ["a \u200b b", [4, 19, 0, 19, 5, 19], ["a", " ", "\u200b", " ", "b", " "]],
    ["e\u0301", [13, 0, 19], ["e", "\u0301", " "]],
  ],
};

describe('sentencepiece model variants', () => {
  let tmp: string;
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenizer-variants-'));
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const charsmap = parseSentencePieceModel(fs.readFileSync(path.join(TOKENIZER_DIR, 'sentencepiece.bpe.model')), 'fixture').normalizer.precompiledCharsmap;
  const write = (name: string, spec: SentencePieceModelSpec) => {
    const dir = path.join(tmp, name);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'sentencepiece.bpe.model'), encodeSentencePieceModel(spec));
    return dir;
  };

  for (const [name, spec] of Object.entries(VARIANT_SPECS(charsmap))) {
    it(`${name}: user-defined / unused pieces, dummy prefix, whitespace options as sentencepiece`, async () => {
      const tok = await XLMRobertaTokenizer.fromPretrained(write(name, spec));
      for (const [text, spmIds, pieces] of VARIANT_GOLDENS[name]) {
        // XLMRobertaTokenizer: spm id + 1, spm id 0 (unknown) -> 3.
        const ids = spmIds.map((i) => (i === 0 ? 3 : i + 1));
        assert.deepEqual(tok.encode(text, { addSpecialTokens: false }), ids, `${name} ${JSON.stringify(text)}`);
        assert.deepEqual(tok.tokenize(text), pieces, `${name} ${JSON.stringify(text)}`);
      }
    });
  }

  it('a piece defined twice: the lower id wins (sentencepiece refuses such a model)', async () => {
    const pieces = [...VARIANT_PIECES, { piece: 'bc', score: 5 }];
    const tok = await XLMRobertaTokenizer.fromPretrained(write('dup', { pieces }));
    assert.deepEqual(tok.tokenize('abc'), ['▁a', 'bc']);
    assert.deepEqual(tok.encode('abc', { addSpecialTokens: false }), [11, 9]);
  });

  it('non-unigram models and models without an unknown piece are refused', async () => {
    const bpe = write('bpe', { pieces: VARIANT_PIECES, modelType: 2 });
    await assert.rejects(XLMRobertaTokenizer.fromPretrained(bpe), /model type 2 is not supported/);
    const noUnk = write('nounk', { pieces: VARIANT_PIECES.slice(1) });
    await assert.rejects(XLMRobertaTokenizer.fromPretrained(noUnk), /no unknown piece/);
  });
});

describe('files', () => {
  let tmp: string;
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenizer-test-'));
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  const folderWith = (name: string, files: Record<string, Buffer | string>) => {
    const dir = path.join(tmp, name);
    fs.mkdirSync(dir, { recursive: true });
    for (const [f, content] of Object.entries(files)) fs.writeFileSync(path.join(dir, f), content);
    return dir;
  };
  const modelBytes = fs.readFileSync(path.join(TOKENIZER_DIR, 'sentencepiece.bpe.model'));
  const jsonText = fs.readFileSync(path.join(TOKENIZER_DIR, 'tokenizer.json'), 'utf8');

  it('a checkpoint folder (tiny-altclip: .model + configs) gives the same tokenizer', async () => {
    const tok = await XLMRobertaTokenizer.fromPretrained(path.join(FIXTURES, 'models', 'tiny-altclip'));
    const c = cases.cases.find((c: { id: string }) => c.id === 's116');
    assert.deepEqual(tok.encode(c.text), c.input_ids);
    assert.equal(tok.modelMaxLength, 512);
  });

  it('tokenizer.json is used when there is no .model; defaults without configs', async () => {
    const dir = folderWith('json-only', { 'tokenizer.json': jsonText });
    const tok = await XLMRobertaTokenizer.fromPretrained(dir);
    assert.match(tok.file, /tokenizer\.json$/);
    const c = cases.cases.find((c: { id: string }) => c.id === 's101');
    assert.deepEqual(tok.encode(c.text), c.input_ids);
    assert.equal(tok.modelMaxLength, 1e30);
  });

  it('tokenizer.json in the older converter layout (WhitespaceSplit + Metaspace add_prefix_space) gives the same ids', async () => {
    const t = JSON.parse(jsonText);
    t.normalizer.normalizers = [t.normalizer.normalizers[0], { type: 'Replace', pattern: { Regex: ' {2,}' }, content: ' ' }];
    t.pre_tokenizer = { type: 'Sequence', pretokenizers: [{ type: 'WhitespaceSplit' }, { type: 'Metaspace', replacement: '▁', add_prefix_space: true }] };
    const tok = await XLMRobertaTokenizer.fromPretrained(folderWith('old-json', { 'tokenizer.json': JSON.stringify(t) }));
    for (const c of cases.cases.filter((c: { kind: string }) => c.kind === 'single')) assert.deepEqual(tok.encode(c.text), c.input_ids, c.id);
  });

  it('truncated or garbage .model files give an error naming the file', async () => {
    for (const [name, bytes] of [
      ['truncated', modelBytes.subarray(0, 1001)],
      ['half', modelBytes.subarray(0, Math.floor(modelBytes.length / 2) + 3)],
      ['empty', Buffer.alloc(0)],
      ['text', Buffer.from('this is not a protobuf')],
      ['json', Buffer.from(jsonText.slice(0, 500))],
    ] as const) {
      const dir = folderWith(`bad-model-${name}`, { 'sentencepiece.bpe.model': bytes });
      const file = path.join(dir, 'sentencepiece.bpe.model');
      await assert.rejects(XLMRobertaTokenizer.fromPretrained(dir), (e: Error) => e.message.includes(file), name);
    }
  });

  it('a .model with random bytes changed loads with a clear error or works (40 mutants, no hang)', async () => {
    const rand = rng(7);
    let failed = 0;
    for (let i = 0; i < 40; i++) {
      const bytes = Buffer.from(modelBytes);
      for (let k = 0; k < 20; k++) bytes[Math.floor(rand() * bytes.length)] = Math.floor(rand() * 256);
      const dir = folderWith(`mutant-${i}`, { 'sentencepiece.bpe.model': bytes });
      try {
        const tok = await XLMRobertaTokenizer.fromPretrained(dir);
        const ids = tok.encode('Hello wörld …‥ 我爱北京天安门 ①ﬁ e\u0308\u0301');
        assert.ok(ids.every((id) => id >= 0 && id < tok.vocabSize));
      } catch (e) {
        failed++;
        assert.ok((e as Error).message.includes(path.join(dir, 'sentencepiece.bpe.model')), (e as Error).message);
      }
    }
    assert.ok(failed < 40);
  });

  it('a broken precompiled charsmap is reported', async () => {
    const t = JSON.parse(jsonText);
    t.normalizer.normalizers[0].precompiled_charsmap = Buffer.from([255, 255, 0, 0, 1, 2, 3]).toString('base64');
    const dir = folderWith('bad-charsmap', { 'tokenizer.json': JSON.stringify(t) });
    await assert.rejects(XLMRobertaTokenizer.fromPretrained(dir), /tokenizer\.json: broken precompiled_charsmap/);
  });

  it('truncated or unsupported tokenizer.json files give an error naming the file', async () => {
    const bpe = JSON.parse(jsonText);
    bpe.model.type = 'BPE';
    const nfd = JSON.parse(jsonText);
    nfd.normalizer.normalizers.push({ type: 'NFD' });
    for (const [name, content] of [
      ['truncated', jsonText.slice(0, 10000)],
      ['bpe', JSON.stringify(bpe)],
      ['nfd', JSON.stringify(nfd)],
      ['array', '[]'],
    ] as const) {
      const dir = folderWith(`bad-json-${name}`, { 'tokenizer.json': content });
      const file = path.join(dir, 'tokenizer.json');
      await assert.rejects(XLMRobertaTokenizer.fromPretrained(dir, { from: 'json' }), (e: Error) => e.message.includes(file), name);
    }
  });

  it('a broken tokenizer_config.json is reported; a missing folder is reported', async () => {
    const dir = folderWith('bad-config', { 'sentencepiece.bpe.model': modelBytes, 'tokenizer_config.json': '{"model_max_length": 5' });
    await assert.rejects(XLMRobertaTokenizer.fromPretrained(dir), /tokenizer_config\.json: not valid JSON/);
    await assert.rejects(XLMRobertaTokenizer.fromPretrained(path.join(tmp, 'nope', 'nothing')), /nothing/);
  });

  describe('hub repo ids (loopback hub)', () => {
    let server: HubServer;
    const saved = process.env.HF_ENDPOINT;
    before(async () => {
      const files = Object.fromEntries(
        ['sentencepiece.bpe.model', 'tokenizer_config.json', 'special_tokens_map.json'].map((f) => [f, fs.readFileSync(path.join(TOKENIZER_DIR, f))]),
      );
      const commit = 'a'.repeat(40);
      const jsonCommit = 'b'.repeat(40);
      server = await startHubServer({
        'org/tok': { commits: { [commit]: files }, refs: { main: commit } },
        'org/tok-json': { commits: { [jsonCommit]: { 'tokenizer.json': jsonText } }, refs: { main: jsonCommit } },
      });
      process.env.HF_ENDPOINT = server.endpoint;
    });
    after(async () => {
      if (saved === undefined) delete process.env.HF_ENDPOINT;
      else process.env.HF_ENDPOINT = saved;
      await server.close();
    });

    it('loads from a repo id through the cache', async () => {
      const cacheDir = path.join(tmp, 'hub-cache');
      const c = cases.cases.find((c: { id: string }) => c.id === 's019');
      const tok = await XLMRobertaTokenizer.fromPretrained('org/tok', { cacheDir, token: false });
      assert.deepEqual(tok.encode(c.text), c.input_ids);
      assert.ok(tok.file.startsWith(cacheDir));
      const fromJson = await XLMRobertaTokenizer.fromPretrained('org/tok-json', { cacheDir, token: false });
      assert.deepEqual(fromJson.encode(c.text), c.input_ids);
    });
  });
});
