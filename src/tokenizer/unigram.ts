// sentencepiece's unigram model (unigram_model.cc, 0.1.97): Model::EncodeOptimized, the Viterbi
// search sentencepiece runs by default, plus the merging of consecutive unknown pieces done in
// SentencePieceProcessor::PopulateSentencePieceText. Works on normalized UTF-8 bytes.
import { ONE_CHAR_LEN } from './normalizer.js';

/** How a vocabulary entry takes part in the search. */
export const PieceKind = {
  /** Not matchable (control, unknown, byte, added tokens). */
  NONE: 0,
  NORMAL: 1,
  USER_DEFINED: 2,
  /** In the trie but never emitted (sentencepiece's UNUSED). */
  UNUSED: 3,
} as const;

export interface UnigramVocab {
  /** piece i = bytes[start[i], start[i] + length[i]) (UTF-8) */
  bytes: Uint8Array;
  start: Int32Array;
  length: Int32Array;
  scores: Float32Array;
  kinds: Uint8Array;
  /** Id given to unknown characters (sentencepiece's unk_id). */
  unkId: number;
  /** File the vocabulary came from, for error messages. */
  file: string;
}

export interface UnigramResult {
  /** Ids in the vocabulary's own numbering; a run of unknown characters is one unkId. */
  ids: Int32Array;
  /** ends[k]: byte offset (in the normalized input) where piece k ends; piece k starts at ends[k-1] or 0. */
  ends: Int32Array;
  count: number;
}

// kUnkPenalty in unigram_model.cc.
const UNK_PENALTY = 10.0;
const HASH_MUL = 0x9e3779b1 | 0;

/**
 * Byte trie over the pieces: node 0 is the root, edges in an open-addressing hash table keyed by
 * (node << 8 | byte). Built once, on the first encode.
 */
class PieceTrie {
  readonly keys: Int32Array;
  readonly children: Int32Array;
  readonly shift: number;
  readonly mask: number;
  /** Vocabulary id ending at each node, or -1. */
  nodeValue: Int32Array;
  /** Direct edges from the root, by byte. */
  readonly root = new Int32Array(256).fill(-1);

  constructor(vocab: UnigramVocab) {
    const { bytes, start, length, kinds } = vocab;
    let total = 0;
    for (let i = 0; i < kinds.length; i++) if (kinds[i] !== PieceKind.NONE) total += length[i];
    let bits = 10;
    while (1 << bits < total * 2) bits++;
    this.keys = new Int32Array(1 << bits).fill(-1);
    this.children = new Int32Array(1 << bits);
    this.shift = 32 - bits;
    this.mask = (1 << bits) - 1;
    this.nodeValue = new Int32Array(Math.max(16, total + 1)).fill(-1);
    if (total + 1 >= 1 << 23) throw new Error(`${vocab.file}: vocabulary too large (${total} bytes of pieces)`);
    let nodes = 1;
    const { keys, children, shift, mask, root } = this;
    for (let id = 0; id < kinds.length; id++) {
      if (kinds[id] === PieceKind.NONE) continue;
      let node = 0;
      const s = start[id];
      const e = s + length[id];
      for (let p = s; p < e; p++) {
        const b = bytes[p];
        if (node === 0) {
          let child = root[b];
          if (child < 0) child = root[b] = nodes++;
          node = child;
          continue;
        }
        const key = (node << 8) | b;
        let h = Math.imul(key, HASH_MUL) >>> shift;
        for (;;) {
          const k = keys[h];
          if (k === key) {
            node = children[h];
            break;
          }
          if (k === -1) {
            keys[h] = key;
            node = children[h] = nodes++;
            break;
          }
          h = (h + 1) & mask;
        }
      }
      if (this.nodeValue[node] !== -1) {
        const piece = new TextDecoder('utf-8', { ignoreBOM: true }).decode(bytes.subarray(s, e));
        throw new Error(`${vocab.file}: piece ${JSON.stringify(piece)} is defined twice (ids ${this.nodeValue[node]} and ${id})`);
      }
      this.nodeValue[node] = id;
    }
  }
}

export class Unigram {
  private trie: PieceTrie | null = null;
  private readonly minScore: number;
  private readonly maxScore: number;
  // Reused work buffers (grown on demand).
  private bestScore = new Float32Array(0);
  private startsAt = new Int32Array(0);
  private bestId = new Int32Array(0);

  constructor(readonly vocab: UnigramVocab) {
    // Model::Model: min/max over NORMAL pieces; max starts at FLT_MIN (the smallest positive float).
    let min = 3.4028234663852886e38;
    let max = 1.1754943508222875e-38;
    for (let i = 0; i < vocab.kinds.length; i++) {
      if (vocab.kinds[i] !== PieceKind.NORMAL) continue;
      const s = vocab.scores[i];
      if (s < min) min = s;
      if (s > max) max = s;
    }
    this.minScore = min;
    this.maxScore = max;
    if (vocab.unkId < 0 || vocab.unkId >= vocab.kinds.length) throw new Error(`${vocab.file}: the vocabulary has no unknown piece`);
  }

  /** Builds the piece trie now (it is otherwise built on the first encode). */
  prepare(): void {
    this.trie ??= new PieceTrie(this.vocab);
  }

  private grow(n: number): void {
    if (this.startsAt.length >= n) return;
    const size = Math.max(n, this.startsAt.length * 2, 64);
    this.bestScore = new Float32Array(size);
    this.startsAt = new Int32Array(size);
    this.bestId = new Int32Array(size);
  }

  /** Id of the piece whose UTF-8 bytes are exactly `piece` (Darts exactMatchSearch), or -1. */
  pieceToId(piece: Uint8Array): number {
    this.prepare();
    const { keys, children, shift, mask, root, nodeValue } = this.trie!;
    if (piece.length === 0) return -1;
    let node = root[piece[0]];
    for (let p = 1; p < piece.length && node >= 0; p++) {
      const key = (node << 8) | piece[p];
      let h = Math.imul(key, HASH_MUL) >>> shift;
      node = -1;
      for (;;) {
        const k = keys[h];
        if (k === key) {
          node = children[h];
          break;
        }
        if (k === -1) break;
        h = (h + 1) & mask;
      }
    }
    return node >= 0 ? nodeValue[node] : -1;
  }

  /** Segments `text` (normalized UTF-8) into the highest-scoring sequence of pieces. */
  encode(text: Uint8Array): UnigramResult {
    this.prepare();
    const trie = this.trie!;
    const size = text.length;
    if (size === 0) return { ids: new Int32Array(0), ends: new Int32Array(0), count: 0 };
    this.grow(size + 1);
    const { bestScore, startsAt, bestId } = this;
    const { keys, children, shift, mask, root, nodeValue } = trie;
    const { scores, kinds } = this.vocab;
    const unkId = this.vocab.unkId;
    // unk_score and its sums are float in C++; best scores are stored as float.
    const unkScore = Math.fround(this.minScore - UNK_PENALTY);
    const maxScore = this.maxScore;
    startsAt.fill(-1, 0, size + 1);
    bestScore[0] = 0;

    let pos = 0;
    while (pos < size) {
      const tillHere = bestScore[pos];
      const mblen = Math.min(ONE_CHAR_LEN[text[pos]], size - pos);
      let hasSingleNode = false;
      // Walk the trie along text[pos..]: every piece that is a prefix, shortest first.
      let node = root[text[pos]];
      let keyPos = pos + 1;
      while (node >= 0) {
        const id = nodeValue[node];
        if (id >= 0) {
          const kind = kinds[id];
          if (kind !== PieceKind.UNUSED) {
            const length = keyPos - pos;
            // In C++ `score` is a double (the ternary with `length * max_score_ - 0.1` makes it
            // one), so the candidate is compared in double precision and only the stored best is
            // a float. This decides ties between equal-scoring segmentations (fixture case s078).
            // User defined symbol receives extra bonus to always be selected.
            const candidate = (kind === PieceKind.USER_DEFINED ? length * maxScore - 0.1 : scores[id]) + tillHere;
            if (startsAt[keyPos] === -1 || candidate > bestScore[keyPos]) {
              bestScore[keyPos] = candidate;
              startsAt[keyPos] = pos;
              bestId[keyPos] = id;
            }
            if (length === mblen) hasSingleNode = true;
          }
        }
        if (keyPos >= size) break;
        const key = (node << 8) | text[keyPos];
        let h = Math.imul(key, HASH_MUL) >>> shift;
        node = -1;
        for (;;) {
          const k = keys[h];
          if (k === key) {
            node = children[h];
            break;
          }
          if (k === -1) break;
          h = (h + 1) & mask;
        }
        keyPos++;
      }
      if (!hasSingleNode) {
        const target = pos + mblen;
        const candidate = Math.fround(unkScore + tillHere);
        if (startsAt[target] === -1 || candidate > bestScore[target]) {
          bestScore[target] = candidate;
          startsAt[target] = pos;
          bestId[target] = unkId;
        }
      }
      pos += mblen;
    }

    // Backtrack, then reverse while merging runs of unknown pieces.
    let n = 0;
    for (let e = size; e > 0; e = startsAt[e]) n++;
    const rev = new Int32Array(n);
    let k = 0;
    for (let e = size; e > 0; e = startsAt[e]) rev[k++] = e;
    const ids = new Int32Array(n);
    const ends = new Int32Array(n);
    let count = 0;
    for (let j = n - 1; j >= 0; j--) {
      const e = rev[j];
      const id = bestId[e];
      if (id === unkId && count > 0 && ids[count - 1] === unkId) {
        ends[count - 1] = e;
      } else {
        ids[count] = id;
        ends[count] = e;
        count++;
      }
    }
    return { ids, ends, count };
  }
}
