// Reader for HF fast-tokenizer files (`tokenizer.json`) of sentencepiece unigram tokenizers, as
// transformers' XLMRobertaConverter / SpmConverter write them. The file is mapped onto the same
// normalizer + unigram model as the .model loader, so both follow sentencepiece (the slow tokenizer).
import { PieceKind, type UnigramVocab } from './unigram.js';
import type { NormalizerOptions } from './normalizer.js';
import { describe, parseJsonBounded } from '../untrusted.js';

export interface AddedTokenSpec {
  id: number;
  content: string;
  lstrip: boolean;
  rstrip: boolean;
  singleWord: boolean;
  special: boolean;
}

export interface TokenizerJson {
  /** Vocabulary in the file's (= HF) numbering. */
  vocab: UnigramVocab;
  pieces: string[];
  normalizer: NormalizerOptions;
  addedTokens: AddedTokenSpec[];
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);

/** Real tokenizer.json files nest 6 levels at most (normalizer Sequence -> Replace -> pattern). */
const MAX_DEPTH = 32;

export function parseTokenizerJson(text: string, file: string): TokenizerJson {
  const fail = (why: string): never => {
    throw new Error(`${file}: unsupported or invalid tokenizer.json (${why})`);
  };
  let root: unknown;
  try {
    root = parseJsonBounded(text, MAX_DEPTH);
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (!isObject(root)) return fail('top level is not an object');
  const model = root.model;
  if (!isObject(model)) return fail('no "model"');
  if (model.type !== 'Unigram') return fail(`model type ${describe(model.type)}, expected "Unigram"`);
  if (model.byte_fallback === true) return fail('byte_fallback is not supported');
  const rawVocab = model.vocab;
  if (!Array.isArray(rawVocab) || rawVocab.length === 0) return fail('model.vocab is not a non-empty list');
  const unkId = model.unk_id;
  if (!isInt(unkId) || unkId < 0 || unkId >= rawVocab.length) {
    return fail('model.unk_id is missing or out of range');
  }

  // Added tokens either name a vocabulary id (<s>, <pad>, </s>, <unk>) or extend the vocabulary
  // (<mask>): ids are integers in [0, vocab + number of added tokens), each used once.
  const addedTokens: AddedTokenSpec[] = [];
  const rawAdded = root.added_tokens ?? [];
  if (!Array.isArray(rawAdded)) return fail('added_tokens is not a list');
  const idLimit = rawVocab.length + rawAdded.length;
  const seenIds = new Set<number>();
  for (const [i, t] of rawAdded.entries()) {
    if (!isObject(t) || typeof t.content !== 'string' || t.content === '') return fail(`added_tokens[${i}] is not a token with a non-empty "content"`);
    if (!isInt(t.id) || t.id < 0 || t.id >= idLimit) {
      return fail(`added_tokens[${i}] (${describe(t.content)}) has id ${describe(t.id)}, not an integer in [0, ${idLimit})`);
    }
    if (seenIds.has(t.id)) return fail(`added_tokens[${i}] (${describe(t.content)}) reuses id ${t.id}`);
    seenIds.add(t.id);
    addedTokens.push({
      id: t.id,
      content: t.content,
      lstrip: t.lstrip === true,
      rstrip: t.rstrip === true,
      singleWord: t.single_word === true,
      special: t.special === true,
    });
  }
  const addedIds = new Set(addedTokens.map((t) => t.id));

  const n = rawVocab.length;
  const pieces: string[] = new Array(n);
  const scores = new Float32Array(n);
  const kinds = new Uint8Array(n);
  const start = new Int32Array(n);
  const length = new Int32Array(n);
  let total = 0;
  for (let i = 0; i < n; i++) {
    const entry = rawVocab[i];
    if (!Array.isArray(entry) || typeof entry[0] !== 'string' || typeof entry[1] !== 'number' || !Number.isFinite(entry[1]) || entry[0] === '') {
      return fail(`model.vocab[${i}] is not a [piece, score] pair`);
    }
    pieces[i] = entry[0];
    scores[i] = entry[1];
    // Added tokens (<s>, </s>, <unk>, <pad>, <mask>) are control / unknown symbols for
    // sentencepiece: they never come out of the segmentation.
    kinds[i] = addedIds.has(i) || i === unkId ? PieceKind.NONE : PieceKind.NORMAL;
    start[i] = total;
    length[i] = Buffer.byteLength(entry[0], 'utf8');
    total += length[i];
  }
  // All pieces UTF-8 encoded at once; per piece only when lone surrogates make the joined
  // encoding differ from the pieces' own.
  let bytes: Uint8Array = Buffer.from(pieces.join(''), 'utf8');
  if (bytes.length !== total) {
    bytes = new Uint8Array(total);
    for (let i = 0; i < n; i++) bytes.set(Buffer.from(pieces[i], 'utf8'), start[i]);
  }

  return {
    vocab: { bytes, start, length, scores, kinds, unkId, file },
    pieces,
    normalizer: parseNormalization(root, fail),
    addedTokens,
  };
}

/**
 * Maps the normalizer / pre-tokenizer pipeline SpmConverter writes back onto sentencepiece's
 * NormalizerSpec: Precompiled(charsmap), Strip(right) + Replace(" {2,}" -> "▁") =
 * remove_extra_whitespaces, Metaspace(prepend_scheme "always"/"first", or add_prefix_space) =
 * add_dummy_prefix.
 */
function parseNormalization(root: Json, fail: (why: string) => never): NormalizerOptions {
  const spec: NormalizerOptions = {
    name: '',
    precompiledCharsmap: new Uint8Array(0),
    addDummyPrefix: false,
    removeExtraWhitespaces: false,
    escapeWhitespaces: true,
  };
  const normalizers: unknown[] = [];
  const norm = root.normalizer;
  if (isObject(norm)) {
    if (norm.type === 'Sequence') normalizers.push(...(Array.isArray(norm.normalizers) ? norm.normalizers : []));
    else normalizers.push(norm);
  } else if (norm !== null && norm !== undefined) fail('bad normalizer');
  for (const n of normalizers) {
    if (!isObject(n)) return fail('bad normalizer');
    if (n.type === 'Precompiled') {
      if (typeof n.precompiled_charsmap !== 'string') return fail('Precompiled without precompiled_charsmap');
      spec.precompiledCharsmap = new Uint8Array(Buffer.from(n.precompiled_charsmap, 'base64'));
    } else if (n.type === 'Strip' && n.strip_left !== true) {
      spec.removeExtraWhitespaces = true;
    } else if (n.type === 'Replace' && isObject(n.pattern) && n.pattern.Regex === ' {2,}' && (n.content === '▁' || n.content === ' ')) {
      // (Converters before transformers 4.3x replaced with " ", later ones with "▁".)
      spec.removeExtraWhitespaces = true;
    } else {
      return fail(`normalizer ${describe(n.type)} is not one a sentencepiece model produces`);
    }
  }
  const pre = root.pre_tokenizer;
  const pres: unknown[] = [];
  if (isObject(pre)) {
    if (pre.type === 'Sequence') pres.push(...(Array.isArray(pre.pretokenizers) ? pre.pretokenizers : []));
    else pres.push(pre);
  }
  let sawMetaspace = false;
  for (const p of pres) {
    if (!isObject(p)) return fail('bad pre_tokenizer');
    if (p.type === 'WhitespaceSplit') continue;
    if (p.type !== 'Metaspace') return fail(`pre_tokenizer ${describe(p.type)} is not supported`);
    if (p.replacement !== undefined && p.replacement !== '▁') return fail('Metaspace replacement other than "▁"');
    sawMetaspace = true;
    const scheme = p.prepend_scheme;
    spec.addDummyPrefix = scheme === undefined ? p.add_prefix_space !== false : scheme === 'always' || scheme === 'first';
  }
  if (!sawMetaspace) return fail('no Metaspace pre_tokenizer');
  return spec;
}
