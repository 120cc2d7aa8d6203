// A small ONNX graph builder: values are names, ops are method calls, weights are checkpoint
// tensors referenced as external data (never copied into the graph).
import { DataType, encodeModel, type AttributeValue, type Dim, type NodeData, type TensorData, type ValueInfo } from './proto.js';
import type { TensorRef } from '../weights/index.js';

const ONNX_DTYPE: Record<string, DataType> = {
  F32: DataType.FLOAT, F16: DataType.FLOAT16, BF16: DataType.BFLOAT16, F64: DataType.DOUBLE,
  I64: DataType.INT64, I32: DataType.INT32, I16: DataType.INT16, I8: DataType.INT8,
  U8: DataType.UINT8, U16: DataType.UINT16, U32: DataType.UINT32, U64: DataType.UINT64, BOOL: DataType.BOOL,
};

/** Extra tensors a graph may reference that are not in the checkpoint (e.g. quantized weights). */
export interface WeightSource {
  get(name: string): TensorRef | undefined;
}

/** The int8 tensors standing for Linear weight `name` in a q8 graph: B, its scale, its zero point. */
export function quantizedNames(name: string): [string, string, string] {
  return [`${name}.q8`, `${name}.q8_scale`, `${name}.q8_zero_point`];
}

/** Problems shown on the error's first line (which is all the CLI prints); the full list follows. */
const PROBLEMS_IN_FIRST_LINE = 5;

/**
 * Throws one error for every weight problem of a model: the count and the first few on the first
 * line (name, expected and actual shape), then one line each.
 */
export function assertNoProblems(source: string, problems: string[]): void {
  if (!problems.length) return;
  const first = problems.slice(0, PROBLEMS_IN_FIRST_LINE).join('; ');
  const more = problems.length > PROBLEMS_IN_FIRST_LINE ? `; ... and ${problems.length - PROBLEMS_IN_FIRST_LINE} more` : '';
  throw new Error(`${source}: the weights do not match the config (${problems.length} problem${problems.length > 1 ? 's' : ''}): `
    + `${first}${more}\n  ${problems.slice(0, 100).join('\n  ')}${problems.length > 100 ? `\n  ... (${problems.length} in all)` : ''}`);
}

export class GraphBuilder {
  readonly nodes: NodeData[] = [];
  readonly initializers = new Map<string, { ref: TensorRef; dataType: DataType }>();
  readonly constants: TensorData[] = [];
  readonly inputs: ValueInfo[] = [];
  readonly outputs: ValueInfo[] = [];
  /** Missing or mis-shaped weights, reported together once the graph is built. */
  readonly problems: string[] = [];
  /** Every checkpoint tensor the graph asked for, found or not (what is left of a checkpoint is unused). */
  readonly requested = new Set<string>();
  /** Checkpoint weights the graph uses in int8 (quantizedWeight): their int8 tensors come from addQuantized. */
  readonly quantized = new Set<string>();
  /**
   * How int8 Linear layers quantize their input (the model's q8 scheme, models/quantize.ts): "row" =
   * each row on its own, symmetric, `bits` wide (batch-invariant); "tensor" = DynamicQuantizeMatMul's
   * per-tensor uint8. Set before the graph is built.
   */
  q8Activations: { granularity: 'row' | 'tensor'; bits: 7 | 8 } = { granularity: 'row', bits: 7 };
  /** Values already computed from another value (nn.ts: one row quantization shared by q, k and v). */
  readonly derived = new Map<string, string[]>();
  private counter = 0;
  private readonly cache = new Map<string, string>();

  constructor(readonly name: string, private readonly weights: WeightSource) {}

  private fresh(hint: string): string {
    return `${hint}_${this.counter++}`;
  }

  input(name: string, elemType: DataType, dims: Dim[]): string {
    this.inputs.push({ name, elemType, dims });
    return name;
  }

  /** Exposes `value` as graph output `name`. */
  output(value: string, name: string, elemType: DataType = DataType.FLOAT, dims: Dim[] = []): void {
    this.node('Identity', [value], {}, { outputName: name });
    this.outputs.push({ name, elemType, dims });
  }

  /** Adds one node; returns its (first) output's name. */
  node(
    opType: string,
    inputs: string[],
    attributes: Record<string, AttributeValue> = {},
    options: { domain?: string; outputName?: string; outputs?: number } = {},
  ): string {
    return this.nodeMulti(opType, inputs, attributes, options)[0]!;
  }

  nodeMulti(
    opType: string,
    inputs: string[],
    attributes: Record<string, AttributeValue> = {},
    options: { domain?: string; outputName?: string; outputs?: number } = {},
  ): string[] {
    const name = this.fresh(opType);
    const outputs = Array.from({ length: options.outputs ?? 1 }, (_, i) =>
      i === 0 && options.outputName ? options.outputName : `${name}_out${i}`);
    this.nodes.push({ opType, inputs, outputs, name, domain: options.domain, attributes });
    return outputs;
  }

  /** `name` checked against `shape` (a problem is recorded when it is missing, mis-shaped or of an unusable dtype). */
  private checked(name: string, shape: number[]): TensorRef | undefined {
    this.requested.add(name);
    const ref = this.weights.get(name);
    if (!ref) {
      this.problems.push(`missing weight ${name} (expected shape [${shape}])`);
    } else if (ref.shape.length !== shape.length || ref.shape.some((d, i) => d !== shape[i])) {
      this.problems.push(`weight ${name} has shape [${ref.shape}], the config implies [${shape}]`);
    } else if (!(ref.dtype in ONNX_DTYPE)) {
      this.problems.push(`weight ${name} has dtype ${ref.dtype}, which cannot be used`);
    } else {
      return ref;
    }
    return undefined;
  }

  /**
   * The checkpoint tensor `name` as a float32 value, checked against `shape`. F16/BF16 weights
   * are cast to float32 in the graph; the bytes stay in the checkpoint file.
   */
  weight(name: string, shape: number[]): string {
    const cached = this.cache.get(name);
    if (cached) return cached;
    const ref = this.checked(name, shape);
    if (ref) {
      const dataType = ONNX_DTYPE[ref.dtype]!;
      this.initializers.set(name, { ref, dataType });
      const value = dataType === DataType.FLOAT ? name : this.node('Cast', [name], { to: DataType.FLOAT });
      this.cache.set(name, value);
      return value;
    }
    // Keep building so that every problem is reported at once; the graph is never run.
    const placeholder = this.constFloat([0], [1]);
    this.cache.set(name, placeholder);
    return placeholder;
  }

  /**
   * The [out, in] Linear weight `name` in int8, as DynamicQuantizeMatMul's B, scale and zero point
   * (`<name>.q8`, `.q8_scale`, `.q8_zero_point`). The float weight is checked like weight()'s; the
   * int8 tensors are made from it once the graph is built (see `quantized` and addQuantized): what
   * the graph asks for is what gets quantized.
   */
  quantizedWeight(name: string, shape: [number, number]): [string, string, string] {
    const names = quantizedNames(name);
    // a q8 checkpoint (`altclip convert`): the int8 tensors are in it, the float weight is not
    if (!this.weights.get(name) && this.weights.get(names[0])) {
      const [out, inFeatures] = shape;
      if (this.checked(names[0], [inFeatures, out]) && this.checked(names[1], [out])) this.quantized.add(name);
      return names;
    }
    if (this.checked(name, shape)) this.quantized.add(name);
    return names;
  }

  /** Supplies the int8 tensors of every weight in `quantized` (a missing one is a problem like any other). */
  addQuantized(refs: Map<string, TensorRef>): void {
    const used = new Set(this.nodes.flatMap((n) => n.inputs));
    for (const name of this.quantized) {
      // the zero point only where the scheme's nodes take it (DynamicQuantizeMatMul; not the row scheme)
      for (const q of quantizedNames(name).filter((q) => used.has(q))) {
        const ref = refs.get(q);
        if (ref) this.initializers.set(q, { ref, dataType: ONNX_DTYPE[ref.dtype]! });
        else this.problems.push(`missing quantized weight ${q}`);
      }
    }
  }

  constFloat(values: number[], dims: number[]): string {
    const raw = new Uint8Array(new Float32Array(values).buffer);
    return this.constant(DataType.FLOAT, raw, dims);
  }

  /** A uint8 scalar. */
  constUint8(value: number): string {
    return this.constant(DataType.UINT8, Uint8Array.of(value), []);
  }

  constInt64(values: number[], dims: number[] = [values.length]): string {
    const raw = new Uint8Array(new BigInt64Array(values.map(BigInt)).buffer);
    return this.constant(DataType.INT64, raw, dims);
  }

  private constant(dataType: DataType, raw: Uint8Array, dims: number[]): string {
    const key = `${dataType}:${dims}:${Buffer.from(raw).toString('base64')}`;
    const cached = this.cache.get(key);
    if (cached) return cached;
    const name = this.fresh('const');
    this.constants.push({ name, dataType, dims, raw });
    this.cache.set(key, name);
    return name;
  }

  /** Throws one error listing every missing / mis-shaped weight. */
  assertComplete(source: string): void {
    assertNoProblems(source, this.problems);
  }

  /** Files whose bytes the graph references. */
  referencedFiles(): string[] {
    return [...new Set([...this.initializers.values()].filter((i) => !i.ref.data).map((i) => i.ref.file))];
  }

  /** Serialises the graph; `locationOf(file)` gives each weight file's path relative to the .onnx. */
  encode(locationOf: (file: string) => string, opsets: Record<string, number>): Uint8Array {
    const unresolved = [...this.quantized].filter((n) => !this.initializers.has(quantizedNames(n)[0]));
    if (unresolved.length) throw new Error(`graph ${this.name}: int8 weights not supplied (addQuantized): ${unresolved.slice(0, 3).join(', ')}`);
    const initializers: TensorData[] = [...this.initializers.entries()].map(([name, { ref, dataType }]) => ({
      name,
      dataType,
      dims: ref.shape,
      ...(ref.data
        ? { raw: ref.data }
        : { external: { location: locationOf(ref.file), offset: ref.offset, length: ref.byteLength } }),
    }));
    return encodeModel({
      graph: {
        name: this.name,
        nodes: this.nodes,
        initializers: [...this.constants, ...initializers],
        inputs: this.inputs,
        outputs: this.outputs,
      },
      opsets: Object.entries(opsets).map(([domain, version]) => ({ domain, version })),
      producerName: 'altclip',
      producerVersion: '0.1.0',
    });
  }
}

export { DataType };
