// Reader for sentencepiece's model file (`sentencepiece.bpe.model`): the ModelProto message of
// sentencepiece_model.proto (0.1.97), decoded by hand. Only the fields encoding needs are kept; piece
// strings stay as byte ranges of the file so a 250k-piece model loads without 250k string decodes.

/** ModelProto.SentencePiece.Type */
export const PieceType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

export interface NormalizerSpec {
  name: string;
  /** Double-array trie + replacement strings (see normalizer.ts); empty = identity. */
  precompiledCharsmap: Uint8Array;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
}

export interface SentencePieceModel {
  /** Backing bytes of the piece strings: piece i is bytes[pieceStart[i], pieceStart[i] + pieceLength[i]). */
  bytes: Uint8Array;
  pieceStart: Int32Array;
  pieceLength: Int32Array;
  scores: Float32Array;
  types: Uint8Array;
  normalizer: NormalizerSpec;
  /** TrainerSpec.ModelType: 1 UNIGRAM, 2 BPE, 3 WORD, 4 CHAR. */
  modelType: number;
  treatWhitespaceAsSuffix: boolean;
  byteFallback: boolean;
}

const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;
const WIRE_I32 = 5;

/** Minimal protobuf wire-format cursor; every read is bounds-checked. */
class Reader {
  pos: number;
  constructor(
    readonly buf: Uint8Array,
    readonly file: string,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  fail(what: string): never {
    throw new Error(`${this.file}: not a valid sentencepiece model (${what} at byte ${this.pos})`);
  }

  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) this.fail('truncated varint');
      const b = this.buf[this.pos++];
      result += (b & 0x7f) * scale;
      if (b < 0x80) return result;
      scale *= 128;
    }
    this.fail('overlong varint');
  }

  /** Returns [fieldNumber, wireType]. */
  tag(): [number, number] {
    const t = this.varint();
    return [Math.floor(t / 8), t & 7];
  }

  /** Start offset of a length-delimited field's payload; advances past it. */
  lengthDelimited(): number {
    const len = this.varint();
    const start = this.pos;
    if (len > this.end - start) this.fail('truncated field');
    this.pos = start + len;
    return start;
  }

  float32(): number {
    if (this.end - this.pos < 4) this.fail('truncated float');
    const view = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 4);
    this.pos += 4;
    return view.getFloat32(0, true);
  }

  skip(wire: number): void {
    if (wire === WIRE_VARINT) this.varint();
    else if (wire === WIRE_LEN) this.lengthDelimited();
    else if (wire === WIRE_I32 || wire === WIRE_I64) {
      const n = wire === WIRE_I32 ? 4 : 8;
      if (this.end - this.pos < n) this.fail('truncated field');
      this.pos += n;
    } else this.fail(`unsupported wire type ${wire}`);
  }
}

const PIECE_TAG: [number, number] = [1, WIRE_LEN];
const utf8 = new TextDecoder('utf-8', { ignoreBOM: true });

/** NormalizerSpec defaults from sentencepiece_model.proto. */
const defaultNormalizerSpec = (): NormalizerSpec => ({
  name: '',
  precompiledCharsmap: new Uint8Array(0),
  addDummyPrefix: true,
  removeExtraWhitespaces: true,
  escapeWhitespaces: true,
});

function parseNormalizerSpec(r: Reader, end: number): NormalizerSpec {
  const spec = defaultNormalizerSpec();
  const sub = new Reader(r.buf, r.file, r.pos, end);
  while (sub.pos < end) {
    const [field, wire] = sub.tag();
    if (field === 1 && wire === WIRE_LEN) {
      const s = sub.lengthDelimited();
      spec.name = utf8.decode(sub.buf.subarray(s, sub.pos));
    } else if (field === 2 && wire === WIRE_LEN) {
      const s = sub.lengthDelimited();
      spec.precompiledCharsmap = sub.buf.subarray(s, sub.pos);
    } else if (field === 3 && wire === WIRE_VARINT) spec.addDummyPrefix = sub.varint() !== 0;
    else if (field === 4 && wire === WIRE_VARINT) spec.removeExtraWhitespaces = sub.varint() !== 0;
    else if (field === 5 && wire === WIRE_VARINT) spec.escapeWhitespaces = sub.varint() !== 0;
    else sub.skip(wire);
  }
  return spec;
}

/** Decodes a ModelProto. Throws an error naming `file` when the bytes are not a model. */
export function parseSentencePieceModel(buf: Uint8Array, file: string): SentencePieceModel {
  const r = new Reader(buf, file, 0, buf.length);
  // First pass over the top level: count pieces so the arrays are allocated once.
  let count = 0;
  while (r.pos < r.end) {
    if (buf[r.pos] === 0x0a) {
      // pieces = 1 (fast path: tag byte 0x0a)
      r.pos++;
      r.lengthDelimited();
      count++;
    } else {
      r.skip(r.tag()[1]);
    }
  }
  const pieceStart = new Int32Array(count);
  const pieceLength = new Int32Array(count);
  const scores = new Float32Array(count);
  const types = new Uint8Array(count).fill(PieceType.NORMAL);
  let normalizer: NormalizerSpec | null = null;
  let modelType = 1;
  let treatWhitespaceAsSuffix = false;
  let byteFallback = false;

  r.pos = 0;
  let i = 0;
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  while (r.pos < r.end) {
    const [field, wire] = buf[r.pos] === 0x0a ? (r.pos++, PIECE_TAG) : r.tag();
    if (field === 1 && wire === WIRE_LEN) {
      const start = r.lengthDelimited();
      const end = r.pos;
      let p = start;
      let hasPiece = false;
      // Inlined SentencePiece message loop (hot: runs once per piece).
      while (p < end) {
        const tag = buf[p++];
        if (tag === 0x0a) {
          // piece = 1 (string); lengths of real pieces fit one or two varint bytes.
          let len = buf[p++];
          if (len >= 0x80) {
            if (p >= end || buf[p] >= 0x80) r.fail('bad piece length');
            len = (len & 0x7f) | (buf[p++] << 7);
          }
          if (p + len > end) r.fail('truncated piece');
          pieceStart[i] = p;
          pieceLength[i] = len;
          hasPiece = true;
          p += len;
        } else if (tag === 0x15) {
          // score = 2 (float)
          if (p + 4 > end) r.fail('truncated score');
          scores[i] = view.getFloat32(p, true);
          p += 4;
        } else if (tag === 0x18) {
          // type = 3 (enum)
          if (p >= end) r.fail('truncated type');
          const t = buf[p++];
          if (t >= 0x80) r.fail('bad piece type');
          types[i] = t;
        } else {
          const sub = new Reader(buf, file, p - 1, end);
          sub.skip(sub.tag()[1]);
          p = sub.pos;
        }
      }
      if (p !== end) r.fail('malformed piece');
      if (!hasPiece || pieceLength[i] === 0) r.fail(`piece ${i} is empty`);
      i++;
    } else if (field === 2 && wire === WIRE_LEN) {
      const start = r.lengthDelimited();
      const sub = new Reader(buf, file, start, r.pos);
      while (sub.pos < sub.end) {
        const [f, w] = sub.tag();
        if (f === 3 && w === WIRE_VARINT) modelType = sub.varint();
        else if (f === 24 && w === WIRE_VARINT) treatWhitespaceAsSuffix = sub.varint() !== 0;
        else if (f === 35 && w === WIRE_VARINT) byteFallback = sub.varint() !== 0;
        else sub.skip(w);
      }
    } else if (field === 3 && wire === WIRE_LEN) {
      const start = r.lengthDelimited();
      const end = r.pos;
      r.pos = start;
      normalizer = parseNormalizerSpec(r, end);
      r.pos = end;
    } else {
      r.skip(wire);
    }
  }
  if (count === 0) throw new Error(`${file}: not a valid sentencepiece model (no pieces)`);
  return {
    bytes: buf,
    pieceStart,
    pieceLength,
    scores,
    types,
    normalizer: normalizer ?? defaultNormalizerSpec(),
    modelType,
    treatWhitespaceAsSuffix,
    byteFallback,
  };
}

export interface SentencePieceModelSpec {
  pieces: { piece: string; score: number; type?: number }[];
  normalizer?: Partial<NormalizerSpec>;
  modelType?: number;
  treatWhitespaceAsSuffix?: boolean;
}

/** Serializes a ModelProto (the inverse of parseSentencePieceModel); for tests and benchmarks. */
export function encodeSentencePieceModel(spec: SentencePieceModelSpec): Uint8Array {
  const out: number[] = [];
  const varint = (n: number, o: number[]) => {
    while (n >= 0x80) {
      o.push((n % 128) | 0x80);
      n = Math.floor(n / 128);
    }
    o.push(n);
  };
  const bytesField = (field: number, payload: ArrayLike<number>, o: number[]) => {
    varint(field * 8 + WIRE_LEN, o);
    varint(payload.length, o);
    for (let i = 0; i < payload.length; i++) o.push(payload[i]);
  };
  const f32 = new DataView(new ArrayBuffer(4));
  for (const p of spec.pieces) {
    const m: number[] = [];
    bytesField(1, new TextEncoder().encode(p.piece), m);
    f32.setFloat32(0, p.score, true);
    m.push(0x15, ...new Uint8Array(f32.buffer));
    m.push(0x18, p.type ?? PieceType.NORMAL);
    bytesField(1, m, out);
  }
  const trainer: number[] = [0x18, spec.modelType ?? 1];
  if (spec.treatWhitespaceAsSuffix) trainer.push(0xc0, 0x01, 1); // field 24, varint
  bytesField(2, trainer, out);
  const n = { ...defaultNormalizerSpec(), ...spec.normalizer };
  const norm: number[] = [];
  bytesField(1, new TextEncoder().encode(n.name), norm);
  if (n.precompiledCharsmap.length) bytesField(2, n.precompiledCharsmap, norm);
  norm.push(0x18, n.addDummyPrefix ? 1 : 0, 0x20, n.removeExtraWhitespaces ? 1 : 0, 0x28, n.escapeWhitespaces ? 1 : 0);
  bytesField(3, norm, out);
  return Uint8Array.from(out);
}
