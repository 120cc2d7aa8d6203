// Byte trie over the vocabulary pieces, built lazily: a node's children are created the first time
// a search passes through it, by bucketing the node's pieces on their next byte (an MSD radix sort
// done on demand). Loading a 250k-piece vocabulary only buckets the pieces by first byte; each
// later expansion costs the number of pieces below that node. Children of a node are contiguous
// with sorted labels, so lookups touch little memory.

export interface TriePieces {
  /** piece i = bytes[start[i], start[i] + length[i]) */
  bytes: Uint8Array;
  start: Int32Array;
  length: Int32Array;
}

export class PieceTrie {
  /** First child of an expanded node; 0 = not expanded yet (node 0, the root, is nobody's child). */
  private readonly kids: Int32Array;
  private readonly nkids: Uint16Array;
  private readonly label: Uint8Array;
  /** Piece id + 1 of the piece ending at each node; 0 = none. */
  private readonly val: Int32Array;
  /** Unexpanded node: its pieces (longer than its depth) are perm[lo, hi). */
  private readonly lo: Int32Array;
  private readonly hi: Int32Array;
  private readonly depth: Int32Array;
  private readonly perm: Int32Array;
  private readonly rootChild = new Int32Array(256).fill(-1);
  private nodes = 1;
  private readonly keys: Uint32Array;
  private readonly counts = new Int32Array(513);
  private readonly tmp: Int32Array;

  /** `ids`: the piece ids to put in the trie. Two pieces with equal bytes: the lower id wins. */
  constructor(
    private readonly pieces: TriePieces,
    ids: Int32Array,
  ) {
    let total = 1;
    for (const id of ids) total += pieces.length[id];
    // Every byte of every piece creates at most one node: allocate once (zero-filled pages are
    // only touched as nodes appear), so the arrays never move during a search.
    this.kids = new Int32Array(total);
    this.nkids = new Uint16Array(total);
    this.label = new Uint8Array(total);
    this.val = new Int32Array(total);
    this.lo = new Int32Array(total);
    this.hi = new Int32Array(total);
    this.depth = new Int32Array(total);
    this.perm = ids.slice();
    if (ids.length >= 1 << 22) throw new Error('too many pieces for the trie (at most 4,194,303)');
    this.keys = new Uint32Array(ids.length);
    this.tmp = new Int32Array(ids.length);
    this.hi[0] = ids.length;
    this.expand(0);
    for (let c = this.kids[0]; c < this.kids[0] + this.nkids[0]; c++) this.rootChild[this.label[c]] = c;
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

  /** Creates the children of `node` from its pieces perm[lo, hi), bucketed by byte depth[node]. */
  private expand(node: number): void {
    const { bytes, start, length } = this.pieces;
    const perm = this.perm;
    const s = this.lo[node];
    const e = this.hi[node];
    const d = this.depth[node];
    const first = this.nodes;
    this.kids[node] = first;
    if (s === e) return;
    if (e - s === 1) {
      // A single piece below: one child (the common case deep in the trie).
      const id = perm[s];
      const c = first;
      this.label[c] = bytes[start[id] + d];
      this.depth[c] = d + 1;
      if (length[id] === d + 1) this.val[c] = id + 1;
      else {
        this.lo[c] = s;
        this.hi[c] = e;
      }
      this.nkids[node] = 1;
      this.nodes = c + 1;
      return;
    }
    // Sort perm[s, e) by (byte at depth d, piece ends there first, position): each entry packed
    // as key * 2^22 + offset into one uint32 and sorted natively.
    const n = e - s;
    const keys = this.keys;
    for (let i = 0; i < n; i++) {
      const id = perm[s + i];
      const key = bytes[start[id] + d] * 2 + (length[id] === d + 1 ? 0 : 1);
      keys[i] = key * 4194304 + i;
    }
    const tmp = this.tmp;
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
      // Counting sort on the key (stable, so positions stay in order); tmp holds the keys meanwhile.
      const counts = this.counts.fill(0);
      for (let i = 0; i < n; i++) counts[(keys[i] >>> 22) + 1]++;
      for (let k = 1; k < counts.length; k++) counts[k] += counts[k - 1];
      for (let i = 0; i < n; i++) tmp[counts[keys[i] >>> 22]++] = keys[i];
      for (let i = 0; i < n; i++) keys[i] = tmp[i];
    }
    for (let i = 0; i < n; i++) tmp[i] = perm[s + (keys[i] & 4194303)];
    // One child per distinct byte; the piece that ends there (the lowest id on duplicates) becomes
    // its value, the others its range.
    let c = first;
    for (let i = 0; i < n; ) {
      const b = keys[i] >>> 23;
      let j = i;
      if ((keys[j] >>> 22) % 2 === 0) {
        this.val[c] = tmp[j] + 1;
        j++;
        while (j < n && keys[j] >>> 22 === b * 2) j++;
      }
      const lo = j;
      while (j < n && keys[j] >>> 23 === b) j++;
      for (let k = lo; k < j; k++) perm[s + k] = tmp[k];
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
