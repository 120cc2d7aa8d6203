// Small row-wise math on [rows, cols] float32 matrices (row-major), done outside the graphs: the one
// normalize / matmul-transposed of the package, used by the model head (AltCLIPModel.forward) and the tasks.

/** A float32 [rows, cols] matrix. */
export interface Matrix {
  data: Float32Array;
  rows: number;
  cols: number;
}

export function row(m: Matrix, i: number): Float32Array {
  return m.data.subarray(i * m.cols, (i + 1) * m.cols);
}

/** The rows of a matrix as views. */
export function splitRows(m: Matrix): Float32Array[] {
  return Array.from({ length: m.rows }, (_, i) => row(m, i));
}

/** Rows of equal length stacked into a matrix. */
export function stackRows(rows: Float32Array[], cols = rows[0]?.length ?? 0): Matrix {
  const data = new Float32Array(rows.length * cols);
  rows.forEach((r, i) => data.set(r, i * cols));
  return { data, rows: rows.length, cols };
}

/** x / ||x||_2 per row, as torch's `x / x.norm(p=2, dim=-1, keepdim=True)` (no epsilon). */
export function normalizeRows(m: Matrix): Matrix {
  const out = new Float32Array(m.data.length);
  for (let i = 0; i < m.rows; i++) {
    const r = row(m, i);
    let sum = 0;
    for (let j = 0; j < m.cols; j++) sum += r[j] * r[j];
    const norm = Math.sqrt(sum);
    for (let j = 0; j < m.cols; j++) out[i * m.cols + j] = r[j] / norm;
  }
  return { data: out, rows: m.rows, cols: m.cols };
}

/** a @ b^T: [a.rows, b.rows], accumulated in float64. */
export function matmulTransposed(a: Matrix, b: Matrix): number[][] {
  if (a.cols !== b.cols) throw new Error(`embedding sizes differ: ${a.cols} vs ${b.cols}`);
  const out: number[][] = [];
  for (let i = 0; i < a.rows; i++) {
    const ra = row(a, i);
    const line: number[] = [];
    for (let j = 0; j < b.rows; j++) {
      const rb = row(b, j);
      let s = 0;
      for (let k = 0; k < a.cols; k++) s += ra[k] * rb[k];
      line.push(s);
    }
    out.push(line);
  }
  return out;
}

/** Mean of each consecutive group of `groupSize` rows: [rows / groupSize, cols]. */
export function meanOfRowGroups(m: Matrix, groupSize: number): Matrix {
  const groups = m.rows / groupSize;
  const out = new Float32Array(groups * m.cols);
  for (let g = 0; g < groups; g++) {
    for (let j = 0; j < m.cols; j++) {
      let s = 0;
      for (let k = 0; k < groupSize; k++) s += m.data[(g * groupSize + k) * m.cols + j];
      out[g * m.cols + j] = s / groupSize;
    }
  }
  return { data: out, rows: groups, cols: m.cols };
}

/** [rows, cols] -> [cols, rows]. */
export function transpose(m: Matrix): Matrix {
  const out = new Float32Array(m.data.length);
  for (let i = 0; i < m.rows; i++) for (let j = 0; j < m.cols; j++) out[j * m.rows + i] = m.data[i * m.cols + j]!;
  return { data: out, rows: m.cols, cols: m.rows };
}

/** log(sum(exp(xs))), computed stably (torch.logsumexp). */
export function logSumExp(xs: ArrayLike<number>): number {
  let max = -Infinity;
  for (let i = 0; i < xs.length; i++) max = Math.max(max, xs[i]!);
  let sum = 0;
  for (let i = 0; i < xs.length; i++) sum += Math.exp(xs[i]! - max);
  return max + Math.log(sum);
}

/** Numerically stable softmax of one vector. */
export function softmax(xs: number[]): number[] {
  const max = Math.max(...xs);
  const exps = xs.map((x) => Math.exp(x - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / sum);
}

export function sigmoid(x: number): number {
  return x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x));
}
