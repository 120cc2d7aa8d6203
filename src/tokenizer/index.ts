// XLMRobertaTokenizer as transformers 4.40.2's slow tokenizer (tokenization_xlm_roberta.py on top of
// tokenization_utils.py / tokenization_utils_base.py): sentencepiece unigram segmentation with the
// fairseq id layout (<s>=0 <pad>=1 </s>=2 <unk>=3, sentencepiece id + 1, <mask> last), special-token
// splitting, pairs, truncation, padding and decoding.
import * as fs from 'node:fs';
import { resolveFile, type PretrainedOptions } from '../hub/index.js';
import { Normalizer } from './normalizer.js';
import { parseSentencePieceModel, PieceType } from './sentencepiece_model.js';
import { parseTokenizerJson, type AddedTokenSpec } from './tokenizer_json.js';
import { PieceKind, Unigram, type UnigramVocab } from './unigram.js';

export { Normalizer } from './normalizer.js';
export { Unigram } from './unigram.js';
export type { AddedTokenSpec } from './tokenizer_json.js';

export interface TokenizerOptions extends PretrainedOptions {
  /**
   * Which file to build the tokenizer from: 'model' = sentencepiece.bpe.model, 'json' =
   * tokenizer.json. Default: the .model when the model has one, else tokenizer.json.
   */
  from?: 'model' | 'json';
}

export interface EncodeOptions {
  addSpecialTokens?: boolean;
  textPair?: string;
}

export interface DecodeOptions {
  skipSpecialTokens?: boolean;
  /** Default: tokenizer_config.json's clean_up_tokenization_spaces (true when absent). */
  cleanUpTokenizationSpaces?: boolean;
  spacesBetweenSpecialTokens?: boolean;
}

export type TruncationStrategy = 'longest_first' | 'only_first' | 'only_second' | 'do_not_truncate';
export type PaddingStrategy = 'longest' | 'max_length' | 'do_not_pad';

export interface BatchEncodeOptions {
  textPair?: string | string[];
  /** true / 'longest': pad to the longest sequence; 'max_length': to maxLength (or model_max_length). */
  padding?: boolean | PaddingStrategy;
  /** true = 'longest_first'. */
  truncation?: boolean | TruncationStrategy;
  maxLength?: number;
  padToMultipleOf?: number;
  addSpecialTokens?: boolean;
  paddingSide?: 'left' | 'right';
  truncationSide?: 'left' | 'right';
}

export interface BatchEncoding {
  inputIds: number[][];
  attentionMask: number[][];
}

/** Everything the tokenizer needs from a .model or a tokenizer.json. */
interface Backend {
  file: string;
  normalizer: Normalizer;
  unigram: Unigram;
  /** HF id of each unigram id. */
  toHfId: Int32Array;
  /** The vocabulary string of an HF id that is not an added token (undefined when out of range). */
  piece: (hfId: number) => string | undefined;
  vocabSize: number;
  /** Added tokens the file itself defines (the fairseq ones for a .model). */
  addedTokens: AddedTokenSpec[];
}

const SPIECE_UNDERLINE = '\u2581';
// transformers' VERY_LARGE_INTEGER / LARGE_INTEGER (tokenization_utils_base.py).
const VERY_LARGE_INTEGER = 1e30;
const LARGE_INTEGER = 1e20;
// Characters Python's str.isspace() accepts (str.strip / rstrip without arguments).
const PY_SPACE = '\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PY_RSTRIP = new RegExp(`[${PY_SPACE}]+$`);
const PY_LSTRIP = new RegExp(`^[${PY_SPACE}]+`);
const pyStrip = (s: string) => s.replace(PY_LSTRIP, '').replace(PY_RSTRIP, '');

// PreTrainedTokenizerBase.clean_up_tokenization, in this order.
const CLEAN_UP: [string, string][] = [
  [' .', '.'],
  [' ?', '?'],
  [' !', '!'],
  [' ,', ','],
  [" ' ", "'"],
  [" n't", "n't"],
  [" 'm", "'m"],
  [" 's", "'s"],
  [" 've", "'ve"],
  [" 're", "'re"],
];

// ignoreBOM: a piece may start with U+FEFF, which a default TextDecoder would drop.
const utf8 = new TextDecoder('utf-8', { ignoreBOM: true });

function readFile(file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    throw new Error(`${file}: cannot read (${(e as Error).message})`);
  }
}

function readJson(file: string): Record<string, unknown> {
  return parseJsonObject(readFile(file), file);
}

/** A JSON object from a file's bytes; errors name the file. */
function parseJsonObject(bytes: Uint8Array, file: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(bytes));
  } catch (e) {
    if ((e as Error).message.startsWith(file)) throw e;
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${file}: expected a JSON object`);
  return value as Record<string, unknown>;
}

/** sentencepiece.bpe.model -> backend with XLMRobertaTokenizer's fairseq id mapping. */
function backendFromModel(bytes: Uint8Array, file: string): Backend {
  const m = parseSentencePieceModel(bytes, file);
  if (m.modelType !== 1) throw new Error(`${file}: sentencepiece model type ${m.modelType} is not supported (only unigram, type 1)`);
  if (m.byteFallback) throw new Error(`${file}: byte_fallback models are not supported`);
  const n = m.types.length;
  const kinds = new Uint8Array(n);
  let unkId = -1;
  const userDefined: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const t = m.types[i];
    if (t === PieceType.NORMAL) kinds[i] = PieceKind.NORMAL;
    else if (t === PieceType.USER_DEFINED) {
      kinds[i] = PieceKind.USER_DEFINED;
      userDefined.push(m.bytes.subarray(m.pieceStart[i], m.pieceStart[i] + m.pieceLength[i]));
    } else if (t === PieceType.UNUSED) kinds[i] = PieceKind.UNUSED;
    else if (t === PieceType.UNKNOWN) {
      if (unkId >= 0) throw new Error(`${file}: the unknown piece is defined twice`);
      unkId = i;
    } else if (t !== PieceType.CONTROL && t !== PieceType.BYTE) throw new Error(`${file}: piece ${i} has unknown type ${t}`);
  }
  if (unkId < 0) throw new Error(`${file}: the model has no unknown piece`);
  const vocab: UnigramVocab = {
    bytes: m.bytes,
    start: m.pieceStart,
    length: m.pieceLength,
    scores: m.scores,
    kinds,
    unkId,
    file,
  };
  // XLMRobertaTokenizer._convert_token_to_id: spm id + 1 (fairseq_offset), and spm id 0 -> <unk> (3).
  const toHfId = new Int32Array(n);
  for (let i = 0; i < n; i++) toHfId[i] = i === 0 ? 3 : i + 1;
  const cache: (string | undefined)[] = new Array(n);
  const piece = (hfId: number) => {
    const i = hfId - 1;
    if (!(i >= 0 && i < n)) return undefined;
    return (cache[i] ??= utf8.decode(m.bytes.subarray(m.pieceStart[i], m.pieceStart[i] + m.pieceLength[i])));
  };
  const fairseq = ['<s>', '<pad>', '</s>', '<unk>'];
  const addedTokens: AddedTokenSpec[] = fairseq.map((content, id) => ({ id, content, lstrip: false, rstrip: false, singleWord: false, special: true }));
  // <mask> = len(sp_model) + fairseq_offset, AddedToken(lstrip=True).
  addedTokens.push({ id: n + 1, content: '<mask>', lstrip: true, rstrip: false, singleWord: false, special: true });
  return {
    file,
    normalizer: new Normalizer({ ...m.normalizer, treatWhitespaceAsSuffix: m.treatWhitespaceAsSuffix, userDefinedSymbols: userDefined }, file),
    unigram: new Unigram(vocab),
    toHfId,
    piece,
    vocabSize: n + 2,
    addedTokens,
  };
}

/** tokenizer.json -> backend; its ids are already HF ids. */
function backendFromJson(text: string, file: string): Backend {
  const t = parseTokenizerJson(text, file);
  const n = t.pieces.length;
  const toHfId = new Int32Array(n);
  for (let i = 0; i < n; i++) toHfId[i] = i;
  let vocabSize = n;
  for (const a of t.addedTokens) vocabSize = Math.max(vocabSize, a.id + 1);
  return {
    file,
    normalizer: new Normalizer(t.normalizer, file),
    unigram: new Unigram(t.vocab),
    toHfId,
    piece: (hfId) => (hfId >= 0 && hfId < n ? t.pieces[hfId] : undefined),
    vocabSize,
    addedTokens: t.addedTokens,
  };
}

/** A special-token entry of tokenizer_config.json / special_tokens_map.json: string or AddedToken dict. */
function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return undefined;
}

function tokenFlags(v: unknown, base: AddedTokenSpec): AddedTokenSpec {
  if (typeof v !== 'object' || v === null) return base;
  const o = v as Record<string, unknown>;
  return {
    ...base,
    lstrip: typeof o.lstrip === 'boolean' ? o.lstrip : base.lstrip,
    rstrip: typeof o.rstrip === 'boolean' ? o.rstrip : base.rstrip,
    singleWord: typeof o.single_word === 'boolean' ? o.single_word : base.singleWord,
    special: typeof o.special === 'boolean' ? o.special : base.special,
  };
}

const SPECIAL_NAMES = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'] as const;
const SPECIAL_DEFAULTS: Record<(typeof SPECIAL_NAMES)[number], string> = {
  bos_token: '<s>',
  eos_token: '</s>',
  unk_token: '<unk>',
  sep_token: '</s>',
  pad_token: '<pad>',
  cls_token: '<s>',
  mask_token: '<mask>',
};

/**
 * transformers' XLMRobertaTokenizer (the slow, sentencepiece-backed one), id for id.
 *
 * Loaded from tokenizer.json it still behaves like sentencepiece, not like the Rust fast tokenizer:
 * where the two disagree (equal-score ties such as "…‥", and base letters followed by several
 * combining marks; fixture cases s078, s083, s084, s086) the output is sentencepiece's.
 * Differences from Python, all on input Python rejects or only logs about: lone UTF-16 surrogates
 * are encoded as U+FFFD (Python's sentencepiece raises); a piece listed twice in a model keeps its
 * lower id (sentencepiece refuses the model); transformers' warnings (sequence longer than
 * model_max_length, truncation impossible) are not printed.
 */
export class XLMRobertaTokenizer {
  readonly vocabSize: number;
  readonly modelMaxLength: number;
  readonly cleanUpTokenizationSpaces: boolean;
  readonly paddingSide: 'left' | 'right';
  readonly truncationSide: 'left' | 'right';
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  readonly unkTokenId: number;
  readonly sepTokenId: number;
  readonly padTokenId: number;
  readonly clsTokenId: number;
  readonly maskTokenId: number;
  /** Ids of the special tokens (skipped by decode with skipSpecialTokens). */
  readonly allSpecialIds: ReadonlySet<number>;
  /** The file the vocabulary was read from. */
  readonly file: string;

  private readonly backend: Backend;
  private readonly added: Map<string, AddedTokenSpec>;
  private readonly addedById: Map<number, AddedTokenSpec>;
  private readonly splitPattern: RegExp | null;

  private constructor(backend: Backend, config: Record<string, unknown>, specialMap: Record<string, unknown>) {
    this.backend = backend;
    this.file = backend.file;
    this.vocabSize = backend.vocabSize;
    const mml = config.model_max_length;
    this.modelMaxLength = typeof mml === 'number' ? mml : VERY_LARGE_INTEGER;
    this.cleanUpTokenizationSpaces = config.clean_up_tokenization_spaces !== false;
    this.paddingSide = config.padding_side === 'left' ? 'left' : 'right';
    this.truncationSide = config.truncation_side === 'left' ? 'left' : 'right';

    // Added tokens: the file's own, then flags / extra tokens from tokenizer_config.json's
    // added_tokens_decoder, then the AddedToken dicts of special_tokens_map.json.
    const byId = new Map<number, AddedTokenSpec>();
    for (const a of backend.addedTokens) byId.set(a.id, a);
    const decoder = config.added_tokens_decoder;
    if (typeof decoder === 'object' && decoder !== null) {
      for (const [k, v] of Object.entries(decoder)) {
        const id = Number(k);
        const content = tokenContent(v);
        if (!Number.isInteger(id) || content === undefined) continue;
        const base = byId.get(id) ?? { id, content, lstrip: false, rstrip: false, singleWord: false, special: false };
        byId.set(id, tokenFlags(v, { ...base, content }));
      }
    }
    for (const a of byId.values()) {
      for (const name of SPECIAL_NAMES) {
        const v = specialMap[name];
        if (tokenContent(v) === a.content) byId.set(a.id, tokenFlags(v, byId.get(a.id)!));
      }
    }
    this.addedById = byId;
    this.added = new Map([...byId.values()].map((a) => [a.content, a]));

    const idOf = (name: (typeof SPECIAL_NAMES)[number]) => {
      const content = tokenContent(config[name]) ?? tokenContent(specialMap[name]) ?? SPECIAL_DEFAULTS[name];
      const a = this.added.get(content);
      if (a === undefined) throw new Error(`${backend.file}: special token ${name} = ${JSON.stringify(content)} is not in the vocabulary`);
      return a.id;
    };
    this.bosTokenId = idOf('bos_token');
    this.eosTokenId = idOf('eos_token');
    this.unkTokenId = idOf('unk_token');
    this.sepTokenId = idOf('sep_token');
    this.padTokenId = idOf('pad_token');
    this.clsTokenId = idOf('cls_token');
    this.maskTokenId = idOf('mask_token');
    const special = new Set([this.bosTokenId, this.eosTokenId, this.unkTokenId, this.sepTokenId, this.padTokenId, this.clsTokenId, this.maskTokenId]);
    for (const a of byId.values()) if (a.special) special.add(a.id);
    this.allSpecialIds = special;

    // tokens_trie.split: leftmost match, longest first.
    const literals = [...this.added.keys()].filter((s) => s !== '').sort((a, b) => b.length - a.length);
    this.splitPattern = literals.length
      ? new RegExp(literals.map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'g')
      : null;
  }

  /**
   * Loads the tokenizer of a model folder or hub repo: sentencepiece.bpe.model (or tokenizer.json),
   * tokenizer_config.json and special_tokens_map.json.
   */
  static async fromPretrained(pathOrRepoId: string, options: TokenizerOptions = {}): Promise<XLMRobertaTokenizer> {
    const { from, ...hub } = options;
    let backend: Backend;
    if (from === 'json') {
      const json = (await resolveFile(pathOrRepoId, 'tokenizer.json', hub))!;
      backend = backendFromJson(readFile(json).toString('utf8'), json);
    } else {
      const model = await resolveFile(pathOrRepoId, 'sentencepiece.bpe.model', { ...hub, optional: from !== 'model' });
      if (model !== null) backend = backendFromModel(readFile(model), model);
      else {
        const json = await resolveFile(pathOrRepoId, 'tokenizer.json', { ...hub, optional: true });
        if (json === null) throw new Error(`${pathOrRepoId}: no sentencepiece.bpe.model and no tokenizer.json`);
        backend = backendFromJson(readFile(json).toString('utf8'), json);
      }
    }
    const configFile = await resolveFile(pathOrRepoId, 'tokenizer_config.json', { ...hub, optional: true });
    const mapFile = await resolveFile(pathOrRepoId, 'special_tokens_map.json', { ...hub, optional: true });
    return new XLMRobertaTokenizer(backend, configFile ? readJson(configFile) : {}, mapFile ? readJson(mapFile) : {});
  }

  /**
   * The same tokenizer from file contents already in memory (the browser build fetches them):
   * `model` is sentencepiece.bpe.model's bytes or tokenizer.json's text; `source` names the model in
   * errors. tokenizer_config.json / special_tokens_map.json as their bytes, when the model has them.
   */
  static fromFileContents(source: string, files: {
    model: { sentencepiece: Uint8Array } | { tokenizerJson: string };
    tokenizerConfig?: Uint8Array | null;
    specialTokensMap?: Uint8Array | null;
  }): XLMRobertaTokenizer {
    const backend = 'sentencepiece' in files.model
      ? backendFromModel(files.model.sentencepiece, `${source}/sentencepiece.bpe.model`)
      : backendFromJson(files.model.tokenizerJson, `${source}/tokenizer.json`);
    const json = (bytes: Uint8Array | null | undefined, name: string) => (bytes ? parseJsonObject(bytes, `${source}/${name}`) : {});
    return new XLMRobertaTokenizer(backend, json(files.tokenizerConfig, 'tokenizer_config.json'),
      json(files.specialTokensMap, 'special_tokens_map.json'));
  }

  /** Builds the piece trie now instead of on the first call. */
  prepare(): this {
    this.backend.unigram.prepare();
    return this;
  }

  /**
   * PreTrainedTokenizer.tokenize: split on added-token literals (applying their lstrip / rstrip /
   * single_word), then sentencepiece on every other chunk. Returns [isAddedToken, text] chunks.
   */
  private splitOnAddedTokens(text: string): [boolean, string][] {
    if (typeof text !== 'string') throw new TypeError(`expected a string to tokenize, got ${text === null ? 'null' : typeof text}`);
    if (this.splitPattern === null) return [[false, text]];
    const parts: [boolean, string][] = [];
    let last = 0;
    for (const m of text.matchAll(this.splitPattern)) {
      if (m.index > last) parts.push([false, text.slice(last, m.index)]);
      parts.push([true, m[0]]);
      last = m.index + m[0].length;
    }
    if (last < text.length || parts.length === 0) parts.push([false, text.slice(last)]);
    for (let i = 0; i < parts.length; i++) {
      if (!parts[i][0]) continue;
      const tok = this.added.get(parts[i][1])!;
      const left = i > 0 ? parts[i - 1] : null;
      const right = i < parts.length - 1 ? parts[i + 1] : null;
      if (tok.rstrip && right && right[1]) right[1] = right[1].replace(PY_LSTRIP, '');
      if (tok.lstrip && left && left[1]) left[1] = left[1].replace(PY_RSTRIP, '');
      if (tok.singleWord && left && left[1] && !left[1].endsWith(' ')) {
        left[1] += parts[i][1];
        parts[i][1] = '';
      } else if (tok.singleWord && right && right[1] && !right[1].startsWith(' ')) {
        parts[i][1] += right[1];
        right[1] = '';
      }
    }
    return parts.filter((p) => p[1] !== '');
  }

  /** sentencepiece on one chunk: normalized -> segmented; calls emit(hfId, start, end, normalized). */
  private segment(chunk: string, emit: (hfId: number, unk: boolean, start: number, end: number, normalized: Uint8Array) => void): void {
    const { normalizer, unigram, toHfId } = this.backend;
    // Lone surrogates cannot be UTF-8 encoded: they become U+FFFD here (Python's sentencepiece
    // raises on them instead).
    const normalized = normalizer.normalize(Buffer.from(chunk, 'utf8'));
    const r = unigram.encode(normalized);
    const unk = unigram.vocab.unkId;
    let start = 0;
    for (let k = 0; k < r.count; k++) {
      const id = r.ids[k];
      // A piece sentencepiece reports as unknown maps to <unk>.
      emit(id === unk ? this.unkTokenId : toHfId[id], id === unk, start, r.ends[k], normalized);
      start = r.ends[k];
    }
  }

  /** Ids of `text` without special tokens around it. */
  private encodeText(text: string): number[] {
    const ids: number[] = [];
    for (const [isAdded, chunk] of this.splitOnAddedTokens(text)) {
      if (isAdded) ids.push(this.added.get(chunk)!.id);
      else this.segment(chunk, (id) => ids.push(id));
    }
    return ids;
  }

  /** tokenizer.tokenize(text): pieces, with unknown runs shown as their (normalized) text. */
  tokenize(text: string): string[] {
    const out: string[] = [];
    for (const [isAdded, chunk] of this.splitOnAddedTokens(text)) {
      if (isAdded) out.push(chunk);
      else
        this.segment(chunk, (id, unk, s, e, normalized) =>
          out.push(unk ? utf8.decode(normalized.subarray(s, e)) : this.convertIdToToken(id)),
        );
    }
    return out;
  }

  /** build_inputs_with_special_tokens: <s> A </s>, or <s> A </s></s> B </s>. */
  private withSpecialTokens(a: number[], b: number[] | null): number[] {
    if (b === null) return [this.clsTokenId, ...a, this.sepTokenId];
    return [this.clsTokenId, ...a, this.sepTokenId, this.sepTokenId, ...b, this.sepTokenId];
  }

  /** tokenizer.encode(text[, text_pair], add_special_tokens=...). */
  encode(text: string, options: EncodeOptions = {}): number[] {
    const a = this.encodeText(text);
    const b = options.textPair === undefined ? null : this.encodeText(options.textPair);
    if (options.addSpecialTokens === false) return b === null ? a : [...a, ...b];
    return this.withSpecialTokens(a, b);
  }

  convertIdToToken(id: number): string {
    const added = this.addedById.get(id);
    if (added) return added.content;
    const piece = this.backend.piece(id);
    if (piece === undefined) throw new RangeError(`token id ${id} is out of range (vocabulary size ${this.vocabSize})`);
    return piece;
  }

  convertIdsToTokens(ids: number[], skipSpecialTokens = false): string[] {
    const out: string[] = [];
    for (const id of ids) {
      if (skipSpecialTokens && this.allSpecialIds.has(id)) continue;
      out.push(this.convertIdToToken(id));
    }
    return out;
  }

  /** Id of a token string (an added token or a vocabulary piece); <unk> when absent. */
  convertTokensToIds(tokens: string[]): number[] {
    return tokens.map((t) => {
      const a = this.added.get(t);
      if (a) return a.id;
      // XLMRobertaTokenizer._convert_token_to_id: sp_model.PieceToId, and not found -> <unk>.
      const id = this.backend.unigram.pieceToId(Buffer.from(t, 'utf8'));
      return id < 0 ? this.unkTokenId : this.backend.toHfId[id];
    });
  }

  /** PreTrainedTokenizer._decode with XLMRobertaTokenizer.convert_tokens_to_string. */
  decode(ids: number[], options: DecodeOptions = {}): string {
    const skip = options.skipSpecialTokens ?? false;
    const tokens = this.convertIdsToTokens(ids, skip);
    const piecesToString = (ts: string[]) => pyStrip(ts.join('').replaceAll(SPIECE_UNDERLINE, ' '));
    // Added tokens that are not special are decoded on their own and joined with spaces.
    const subTexts: string[] = [];
    let current: string[] = [];
    for (const t of tokens) {
      const a = this.added.get(t);
      if (a && !a.special && !this.allSpecialIds.has(a.id)) {
        if (current.length) {
          const s = piecesToString(current);
          if (s.length > 0) subTexts.push(s);
          current = [];
        }
        subTexts.push(t);
      } else current.push(t);
    }
    if (current.length) subTexts.push(piecesToString(current));
    let text = subTexts.join(options.spacesBetweenSpecialTokens === false ? '' : ' ');
    if (options.cleanUpTokenizationSpaces ?? this.cleanUpTokenizationSpaces) {
      for (const [from, to] of CLEAN_UP) text = text.replaceAll(from, to);
    }
    return text;
  }

  batchDecode(sequences: number[][], options: DecodeOptions = {}): string[] {
    return sequences.map((ids) => this.decode(ids, options));
  }

  /** tokenizer(texts, text_pair=..., padding=..., truncation=..., max_length=..., ...). */
  batchEncode(texts: string | string[], options: BatchEncodeOptions = {}): BatchEncoding {
    const list = typeof texts === 'string' ? [texts] : texts;
    const pairs = options.textPair === undefined ? null : typeof options.textPair === 'string' ? [options.textPair] : options.textPair;
    if (pairs !== null && pairs.length !== list.length) {
      throw new Error(`batchEncode: ${list.length} texts but ${pairs.length} textPair entries`);
    }
    const addSpecial = options.addSpecialTokens ?? true;
    const paddingSide = options.paddingSide ?? this.paddingSide;
    const truncationSide = options.truncationSide ?? this.truncationSide;

    // _get_padding_truncation_strategies
    let padding: PaddingStrategy =
      options.padding === true ? 'longest' : options.padding === false || options.padding === undefined ? 'do_not_pad' : options.padding;
    let truncation: TruncationStrategy =
      options.truncation === true ? 'longest_first' : options.truncation === false || options.truncation === undefined ? 'do_not_truncate' : options.truncation;
    let maxLength = options.maxLength;
    // "If you only set max_length, it activates truncation for max_length" (backward compatibility).
    if (maxLength !== undefined && padding === 'do_not_pad' && options.truncation === undefined) truncation = 'longest_first';
    if (maxLength === undefined) {
      if (padding === 'max_length') {
        if (this.modelMaxLength > LARGE_INTEGER) padding = 'do_not_pad';
        else maxLength = this.modelMaxLength;
      }
      if (truncation !== 'do_not_truncate') {
        if (this.modelMaxLength > LARGE_INTEGER) truncation = 'do_not_truncate';
        else maxLength = this.modelMaxLength;
      }
    }
    const multiple = options.padToMultipleOf;
    if (truncation !== 'do_not_truncate' && padding !== 'do_not_pad' && multiple !== undefined && maxLength !== undefined && maxLength % multiple !== 0) {
      throw new Error(`Truncation and padding are both activated but truncation length (${maxLength}) is not a multiple of padToMultipleOf (${multiple}).`);
    }

    // prepare_for_model, per sequence.
    const inputIds = list.map((text, i) => {
      let a = this.encodeText(text);
      let b = pairs === null ? null : this.encodeText(pairs[i]);
      const specials = addSpecial ? (b === null ? 2 : 4) : 0;
      const total = a.length + (b?.length ?? 0) + specials;
      if (truncation !== 'do_not_truncate' && maxLength !== undefined && total > maxLength) {
        [a, b] = truncateSequences(a, b, total - maxLength, truncation, truncationSide);
      }
      if (!addSpecial) return b === null ? a : [...a, ...b];
      return this.withSpecialTokens(a, b);
    });
    const attentionMask = inputIds.map((ids) => ids.map(() => 1));

    // pad
    if (padding !== 'do_not_pad') {
      let target = padding === 'longest' ? Math.max(0, ...inputIds.map((ids) => ids.length)) : maxLength!;
      if (multiple !== undefined && multiple > 0 && target % multiple !== 0) target = (Math.floor(target / multiple) + 1) * multiple;
      for (let i = 0; i < inputIds.length; i++) {
        const diff = target - inputIds[i].length;
        if (diff <= 0) continue;
        const pads = new Array<number>(diff).fill(this.padTokenId);
        const zeros = new Array<number>(diff).fill(0);
        if (paddingSide === 'right') {
          inputIds[i].push(...pads);
          attentionMask[i].push(...zeros);
        } else {
          inputIds[i] = [...pads, ...inputIds[i]];
          attentionMask[i] = [...zeros, ...attentionMask[i]];
        }
      }
    }
    return { inputIds, attentionMask };
  }
}

/**
 * PreTrainedTokenizerBase.truncate_sequences. When the sequence to cut is not longer than the number
 * of tokens to remove (e.g. max_length smaller than the special tokens), transformers logs an error
 * and returns the sequences untruncated; so does this.
 */
function truncateSequences(
  a: number[],
  b: number[] | null,
  remove: number,
  strategy: TruncationStrategy,
  side: 'left' | 'right',
): [number[], number[] | null] {
  const cut = (ids: number[], n: number) => (side === 'right' ? ids.slice(0, ids.length - n) : ids.slice(n));
  if (strategy === 'only_first' || (strategy === 'longest_first' && b === null)) {
    if (a.length > remove) a = cut(a, remove);
  } else if (strategy === 'longest_first' && b !== null) {
    for (let k = 0; k < remove; k++) {
      if (a.length > b.length) a = cut(a, 1);
      else b = cut(b, 1);
    }
  } else if (strategy === 'only_second' && b !== null) {
    if (b.length > remove) b = cut(b, remove);
  }
  return [a, b];
}
