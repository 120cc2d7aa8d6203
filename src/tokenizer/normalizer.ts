// sentencepiece's Normalizer (normalizer.cc, 0.1.97) over UTF-8 bytes: the precompiled charsmap
// (a darts-clone double-array trie whose values point into a table of NUL-terminated replacement
// strings), dummy prefix, removal of heading / repeated / trailing spaces, and ' ' -> '▁'.
import type { NormalizerSpec } from './sentencepiece_model.js';

/** UTF-8 length of a character from its lead byte, as string_util::OneCharLen. */
export const ONE_CHAR_LEN = new Uint8Array(256).map((_, b) => [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4][b >> 4]);

const SPACE = 0x20;
// U+2581 LOWER ONE EIGHTH BLOCK, sentencepiece's kSpaceSymbol.
const WS0 = 0xe2;
const WS1 = 0x96;
const WS2 = 0x81;
const REPLACEMENT_CHAR = new Uint8Array([0xef, 0xbf, 0xbd]);

/**
 * Length of the valid UTF-8 character at `pos` (as string_util::IsValidDecodeUTF8 accepts it), or 0
 * when the bytes there are malformed.
 */
function validCharLength(s: Uint8Array, pos: number, end: number): number {
  const b0 = s[pos];
  if (b0 < 0x80) return 1;
  const n = ONE_CHAR_LEN[b0];
  if (n === 1 || pos + n > end) return 0;
  let cp = b0 & (0xff >> (n + 1));
  for (let k = 1; k < n; k++) {
    const b = s[pos + k];
    if ((b & 0xc0) !== 0x80) return 0;
    cp = (cp << 6) | (b & 0x3f);
  }
  // Overlong forms, surrogates and values past U+10FFFF are malformed.
  if ((n === 2 && cp < 0x80) || (n === 3 && cp < 0x800) || (n === 4 && (cp < 0x10000 || cp > 0x10ffff))) return 0;
  if (cp >= 0xd800 && cp <= 0xdfff) return 0;
  return n;
}

/** The charsmap blob: <uint32 LE trie byte size><darts-clone units><NUL-terminated strings>. */
class CharsMap {
  readonly units: Uint32Array;
  readonly strings: Uint8Array;
  /** rootChild[b]: whether any rule starts with byte b (else the character is copied as is). */
  readonly rootChild: Uint8Array;

  constructor(blob: Uint8Array, file: string) {
    const bad = (why: string) => new Error(`${file}: broken precompiled_charsmap (${why})`);
    if (blob.length <= 4) throw bad('blob too short');
    const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
    const trieSize = view.getUint32(0, true);
    if (trieSize >= blob.length || trieSize % 4 !== 0 || trieSize === 0) throw bad('trie size exceeds the blob');
    this.units = new Uint32Array(trieSize / 4);
    for (let i = 0; i < this.units.length; i++) this.units[i] = view.getUint32(4 + 4 * i, true);
    this.strings = blob.subarray(4 + trieSize);
    this.rootChild = new Uint8Array(256);
    const rootPos = offset(this.units[0]);
    for (let b = 0; b < 256; b++) {
      const p = rootPos ^ b;
      if (p < this.units.length && label(this.units[p]) === b) this.rootChild[b] = 1;
    }
  }

  /**
   * Darts::DoubleArray::commonPrefixSearch keeping the longest hit: returns (length << 0) and sets
   * `this.value`, or 0 when no rule matches at `pos`.
   */
  value = 0;
  longestMatch(key: Uint8Array, pos: number, end: number): number {
    const units = this.units;
    const n = units.length;
    let nodePos = offset(units[0]);
    let longest = 0;
    for (let i = pos; i < end; i++) {
      const c = key[i];
      nodePos ^= c;
      if (nodePos >= n) return longest;
      const unit = units[nodePos];
      if (label(unit) !== c) return longest;
      nodePos ^= offset(unit);
      if (hasLeaf(unit)) {
        if (nodePos >= n) return longest;
        longest = i + 1 - pos;
        this.value = units[nodePos] & 0x7fffffff;
      }
    }
    return longest;
  }
}

// darts-clone DoubleArrayUnit accessors.
const hasLeaf = (unit: number) => ((unit >>> 8) & 1) === 1;
const label = (unit: number) => unit & 0x800000ff;
const offset = (unit: number) => (unit >>> 10) << ((unit & (1 << 9)) >>> 6);

export interface NormalizerOptions extends NormalizerSpec {
  /** TrainerSpec.treat_whitespace_as_suffix: the dummy space goes at the end instead. */
  treatWhitespaceAsSuffix?: boolean;
  /** USER_DEFINED pieces: matched before the charsmap and copied unnormalized. */
  userDefinedSymbols?: Uint8Array[];
}

export class Normalizer {
  private readonly charsMap: CharsMap | null;
  private readonly spec: NormalizerOptions;
  /** user-defined symbols by first byte, longest first */
  private readonly userDefined: Map<number, Uint8Array[]> | null = null;
  private out = new Uint8Array(256);
  private outLen = 0;
  // Result of prefix(): the replacement is src[srcStart, srcEnd); `consumed` input bytes.
  private src: Uint8Array = REPLACEMENT_CHAR;
  private srcStart = 0;
  private srcEnd = 0;

  constructor(spec: NormalizerOptions, file: string) {
    this.spec = spec;
    this.charsMap = spec.precompiledCharsmap.length > 0 ? new CharsMap(spec.precompiledCharsmap, file) : null;
    if (spec.userDefinedSymbols && spec.userDefinedSymbols.length > 0) {
      this.userDefined = new Map();
      for (const s of spec.userDefinedSymbols) {
        const list = this.userDefined.get(s[0]) ?? [];
        list.push(s);
        this.userDefined.set(s[0], list);
      }
      for (const list of this.userDefined.values()) list.sort((a, b) => b.length - a.length);
    }
  }

  /**
   * Normalizer::NormalizePrefix: normalizes the longest rule (or one character) at input[pos];
   * sets src/srcStart/srcEnd to the replacement and returns the number of input bytes consumed.
   */
  private prefix(input: Uint8Array, pos: number, end: number): number {
    const b0 = input[pos];
    if (this.userDefined !== null) {
      const candidates = this.userDefined.get(b0);
      if (candidates) {
        for (const s of candidates) {
          if (s.length > end - pos) continue;
          let k = 1;
          while (k < s.length && input[pos + k] === s[k]) k++;
          if (k === s.length) return this.copy(input, pos, s.length);
        }
      }
    }
    const cm = this.charsMap;
    if (cm !== null && cm.rootChild[b0] === 1) {
      const len = cm.longestMatch(input, pos, end);
      if (len > 0) {
        const strings = cm.strings;
        const start = cm.value;
        let stop = start;
        while (stop < strings.length && strings[stop] !== 0) stop++;
        this.src = strings;
        this.srcStart = Math.min(start, strings.length);
        this.srcEnd = stop;
        return len;
      }
    }
    if (b0 < 0x80) return this.copy(input, pos, 1);
    const n = validCharLength(input, pos, end);
    if (n === 0) {
      // Malformed UTF-8: U+FFFD, consuming one byte.
      this.src = REPLACEMENT_CHAR;
      this.srcStart = 0;
      this.srcEnd = 3;
      return 1;
    }
    return this.copy(input, pos, n);
  }

  private copy(input: Uint8Array, pos: number, n: number): number {
    this.src = input;
    this.srcStart = pos;
    this.srcEnd = pos + n;
    return n;
  }

  private reserve(extra: number): void {
    if (this.outLen + extra <= this.out.length) return;
    const next = new Uint8Array(Math.max(this.out.length * 2, this.outLen + extra));
    next.set(this.out.subarray(0, this.outLen));
    this.out = next;
  }

  private addSpace(): void {
    this.reserve(3);
    if (this.spec.escapeWhitespaces) {
      this.out[this.outLen++] = WS0;
      this.out[this.outLen++] = WS1;
      this.out[this.outLen++] = WS2;
    } else {
      this.out[this.outLen++] = SPACE;
    }
  }

  /**
   * Normalizer::Normalize. Returns a view of an internal buffer that the next call overwrites.
   */
  normalize(input: Uint8Array): Uint8Array {
    const spec = this.spec;
    const removeExtra = spec.removeExtraWhitespaces;
    const escape = spec.escapeWhitespaces;
    const end = input.length;
    this.outLen = 0;
    let pos = 0;
    // Ignores heading space.
    if (removeExtra) {
      while (pos < end) {
        const consumed = this.prefix(input, pos, end);
        if (this.srcEnd - this.srcStart !== 1 || this.src[this.srcStart] !== SPACE) break;
        pos += consumed;
      }
    }
    // All characters are whitespace.
    if (pos >= end) return this.out.subarray(0, 0);

    if (!spec.treatWhitespaceAsSuffix && spec.addDummyPrefix) this.addSpace();
    let isPrevSpace = removeExtra;
    while (pos < end) {
      const consumed = this.prefix(input, pos, end);
      const src = this.src;
      let s = this.srcStart;
      const e = this.srcEnd;
      // Removes heading spaces of this piece if the previous one ended with a space.
      if (isPrevSpace) while (s < e && src[s] === SPACE) s++;
      if (s < e) {
        this.reserve(3 * (e - s));
        const out = this.out;
        let o = this.outLen;
        for (let k = s; k < e; k++) {
          const b = src[k];
          if (escape && b === SPACE) {
            out[o++] = WS0;
            out[o++] = WS1;
            out[o++] = WS2;
          } else {
            out[o++] = b;
          }
        }
        this.outLen = o;
        isPrevSpace = src[e - 1] === SPACE;
      }
      pos += consumed;
      if (!removeExtra) isPrevSpace = false;
    }
    // Ignores trailing space.
    if (removeExtra) {
      const out = this.out;
      if (escape) {
        while (this.outLen >= 3 && out[this.outLen - 3] === WS0 && out[this.outLen - 2] === WS1 && out[this.outLen - 1] === WS2) {
          this.outLen -= 3;
        }
      } else {
        while (this.outLen >= 1 && out[this.outLen - 1] === SPACE) this.outLen--;
      }
    }
    if (spec.treatWhitespaceAsSuffix && spec.addDummyPrefix) this.addSpace();
    return this.out.subarray(0, this.outLen);
  }
}
