// sentencepiece's unigram model (unigram_model.cc, 0.1.97): Model::EncodeOptimized, the Viterbi
// search sentencepiece runs by default, plus the merging of consecutive unknown pieces done in
// SentencePieceProcessor::PopulateSentencePieceText. Works on normalized UTF-8 bytes.
import { ONE_CHAR_LEN } from './normalizer.js';
import { PieceTrie } from './piece_trie.js';

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

  /** The piece trie (its root level is built on first use, deeper levels as searches reach them). */
  private getTrie(): PieceTrie {
    if (this.trie === null) {
      const { kinds } = this.vocab;
      let n = 0;
      for (let i = 0; i < kinds.length; i++) if (kinds[i] !== PieceKind.NONE) n++;
      const ids = new Int32Array(n);
      n = 0;
      for (let i = 0; i < kinds.length; i++) if (kinds[i] !== PieceKind.NONE) ids[n++] = i;
      this.trie = new PieceTrie(this.vocab, ids);
    }
    return this.trie;
  }

  /** Builds the root level of the piece trie now rather than on the first encode. */
  prepare(): void {
    this.getTrie();
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
    const trie = this.getTrie();
    let node = 0;
    for (let p = 0; p < piece.length && node >= 0; p++) node = trie.child(node, piece[p]);
    return node > 0 ? trie.value(node) : -1;
  }

  /** Segments `text` (normalized UTF-8) into the highest-scoring sequence of pieces. */
  encode(text: Uint8Array): UnigramResult {
    const trie = this.getTrie();
    const size = text.length;
    if (size === 0) return { ids: new Int32Array(0), ends: new Int32Array(0), count: 0 };
    this.grow(size + 1);
    const { bestScore, startsAt, bestId } = this;
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
      let node = 0;
      for (let keyPos = pos; keyPos < size; ) {
        node = trie.child(node, text[keyPos++]);
        if (node < 0) break;
        const id = trie.value(node);
        if (id < 0) continue;
        const kind = kinds[id];
        if (kind === PieceKind.UNUSED) continue;
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
