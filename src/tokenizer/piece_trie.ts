// Byte trie over the vocabulary pieces, built lazily: a node's children are created the first time
// a search passes through it, by bucketing the node's pieces on their next byte (an MSD radix sort
// done on demand). Loading a 250k-piece vocabulary only buckets the pieces by first byte (and
// copies them into that order, so later expansions read neighbouring memory); each later expansion
// costs the number of pieces below that node. Children of a node are contiguous with sorted
// labels, so lookups touch little memory.

export interface TriePieces {
  /** piece i = bytes[start[i], start[i] + length[i]) */
  bytes: Uint8Array;
  start: Int32Array;
  length: Int32Array;
}

/** Offsets are packed with a 9-bit sort key into one uint32 (see expand). */
const MAX_PIECES = 1 << 22;
const OFFSET_MASK = MAX_PIECES - 1;

export class PieceTrie {
  /** First child of an expanded node; 0 = not expanded yet (node 0, the root, is nobody's child). */
  private readonly kids: Int32Array;
  private readonly nkids: Uint16Array;
  private readonly label: Uint8Array;
  /** Piece id + 1 of the piece ending at each node; 0 = none. */
  private readonly val: Int32Array;
  /** Unexpanded node: its pieces (all longer than its depth) are at positions [lo, hi). */
  private readonly lo: Int32Array;
  private readonly hi: Int32Array;
  private readonly depth: Int32Array;
  private readonly rootChild = new Int32Array(256).fill(-1);
  private nodes = 1;
  // The pieces by position: id, and bytes pbytes[pstart, pstart + plen).
  private pbytes: Uint8Array;
  private readonly pid: Int32Array;
  private readonly pstart: Int32Array;
  private readonly plen: Int32Array;
  // Scratch for expand().
  private readonly keys: Uint32Array;
  private readonly counts = new Int32Array(513);
  private readonly tmpId: Int32Array;
  private readonly tmpStart: Int32Array;
  private readonly tmpLen: Int32Array;

  /** `ids`: the piece ids to put in the trie. Two pieces with equal bytes: the lower id wins. */
  constructor(pieces: TriePieces, ids: Int32Array) {
    const n = ids.length;
    if (n >= MAX_PIECES) throw new Error(`too many pieces for the trie (${n}, at most ${MAX_PIECES - 1})`);
    this.pid = ids.slice();
    this.pstart = new Int32Array(n);
    this.plen = new Int32Array(n);
    let total = 1;
    for (let i = 0; i < n; i++) {
      this.pstart[i] = pieces.start[ids[i]];
      total += this.plen[i] = pieces.length[ids[i]];
    }
    this.pbytes = pieces.bytes;
    // Every byte of every piece creates at most one node: allocate once (zero-filled pages are
    // only touched as nodes appear), so the arrays never move during a search.
    this.kids = new Int32Array(total);
    this.nkids = new Uint16Array(total);
    this.label = new Uint8Array(total);
    this.val = new Int32Array(total);
    this.lo = new Int32Array(total);
    this.hi = new Int32Array(total);
    this.depth = new Int32Array(total);
    this.keys = new Uint32Array(n);
    this.tmpId = new Int32Array(n);
    this.tmpStart = new Int32Array(n);
    this.tmpLen = new Int32Array(n);
    this.hi[0] = n;
    this.expand(0);
    for (let c = this.kids[0]; c < this.kids[0] + this.nkids[0]; c++) this.rootChild[this.label[c]] = c;
    // Copy the piece bytes into position order: the pieces below any node are now neighbours.
    const packed = new Uint8Array(total);
    const { pbytes, pstart, plen } = this;
    let o = 0;
    for (let i = 0; i < n; i++) {
      const s = pstart[i];
      const e = s + plen[i];
      pstart[i] = o;
      for (let k = s; k < e; k++) packed[o++] = pbytes[k];
    }
    this.pbytes = packed;
  }

  /** Piece id ending at `node`, or -1. */
  value(node: number): number {
    return this.val[node] - 1;
  }

  /** The child of `node` along byte `b`, or -1. */
  child(node: number, b: number): number {
    if (node === 0) return this.rootChild[b];
    if (this.kids[node] === 0) this.expand(node);
    const label = this.label;
    let l = this.kids[node];
    let h = l + this.nkids[node] - 1;
    // Binary search down to a short run, then scan.
    while (h - l > 6) {
      const m = (l + h) >> 1;
      if (label[m] < b) l = m + 1;
      else h = m;
    }
    for (; l <= h; l++) {
      const c = label[l];
      if (c === b) return l;
      if (c > b) return -1;
    }
    return -1;
  }

  /** Creates the children of `node` from its pieces at positions [lo, hi), bucketed by byte depth[node]. */
  private expand(node: number): void {
    const { pbytes, pid, pstart, plen } = this;
    const s = this.lo[node];
    const e = this.hi[node];
    const d = this.depth[node];
    const first = this.nodes;
    this.kids[node] = first;
    if (s === e) return;
    if (e - s === 1) {
      // A single piece below: one child (the common case deep in the trie).
      this.label[first] = pbytes[pstart[s] + d];
      this.depth[first] = d + 1;
      if (plen[s] === d + 1) this.val[first] = pid[s] + 1;
      else {
        this.lo[first] = s;
        this.hi[first] = e;
      }
      this.nkids[node] = 1;
      this.nodes = first + 1;
      return;
    }
    // Stable sort of the positions by (byte at depth d, piece ends there first): each entry packed
    // as key * 2^22 + offset into one uint32.
    const n = e - s;
    const keys = this.keys;
    for (let i = 0; i < n; i++) {
      const p = s + i;
      const key = pbytes[pstart[p] + d] * 2 + (plen[p] === d + 1 ? 0 : 1);
      keys[i] = key * MAX_PIECES + i;
    }
    if (n <= 32) {
      for (let i = 1; i < n; i++) {
        const k = keys[i];
        let j = i - 1;
        while (j >= 0 && keys[j] > k) {
          keys[j + 1] = keys[j];
          j--;
        }
        keys[j + 1] = k;
      }
    } else if (n <= 512) {
      keys.subarray(0, n).sort();
    } else {
      // Counting sort on the key (stable); tmpId holds the sorted keys meanwhile.
      const counts = this.counts.fill(0);
      const sorted = this.tmpId;
      for (let i = 0; i < n; i++) counts[(keys[i] >>> 22) + 1]++;
      for (let k = 1; k < counts.length; k++) counts[k] += counts[k - 1];
      for (let i = 0; i < n; i++) sorted[counts[keys[i] >>> 22]++] = keys[i];
      for (let i = 0; i < n; i++) keys[i] = sorted[i];
    }
    const { tmpId, tmpStart, tmpLen } = this;
    for (let i = 0; i < n; i++) {
      const p = s + (keys[i] & OFFSET_MASK);
      tmpId[i] = pid[p];
      tmpStart[i] = pstart[p];
      tmpLen[i] = plen[p];
    }
    // One child per distinct byte; the piece that ends there (the lowest id on duplicates) becomes
    // its value, the others its range.
    let c = first;
    for (let i = 0; i < n; ) {
      const b = keys[i] >>> 23;
      let j = i;
      if (((keys[j] >>> 22) & 1) === 0) {
        this.val[c] = tmpId[j] + 1;
        j++;
        while (j < n && keys[j] >>> 22 === b * 2) j++;
      }
      const lo = j;
      while (j < n && keys[j] >>> 23 === b) j++;
      // (The terminal pieces are copied too, so every position keeps one distinct piece.)
      for (let k = i; k < j; k++) {
        pid[s + k] = tmpId[k];
        pstart[s + k] = tmpStart[k];
        plen[s + k] = tmpLen[k];
      }
      this.label[c] = b;
      this.depth[c] = d + 1;
      this.lo[c] = s + lo;
      this.hi[c] = s + j;
      c++;
      i = j;
    }
    this.nkids[node] = c - first;
    this.nodes = c;
  }
}
