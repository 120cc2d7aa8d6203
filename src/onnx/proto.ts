// ONNX ModelProto serialisation (onnx/onnx.proto, IR version 8), on protobufjs' wire-format Writer.
// Only the messages and fields the graph builder emits are covered; field numbers are onnx.proto's.
import protobuf from 'protobufjs/minimal.js';

const { Writer } = protobuf;
type Writer = protobuf.Writer;

/** onnx.TensorProto.DataType */
export const DataType = {
  FLOAT: 1, UINT8: 2, INT8: 3, UINT16: 4, INT16: 5, INT32: 6, INT64: 7, STRING: 8, BOOL: 9,
  FLOAT16: 10, DOUBLE: 11, UINT32: 12, UINT64: 13, BFLOAT16: 16,
} as const;
export type DataType = (typeof DataType)[keyof typeof DataType];

export type Dim = number | string;

export interface ValueInfo { name: string; elemType: DataType; dims: Dim[] }

export type AttributeValue = number | string | number[] | { float: number } | { floats: number[] } | TensorData;

export interface TensorData {
  name: string;
  dataType: DataType;
  dims: number[];
  /** Inline bytes (small constants). */
  raw?: Uint8Array;
  /** External data: a location relative to the model file, with the byte range inside it. */
  external?: { location: string; offset: number; length: number };
}

export interface NodeData {
  opType: string;
  inputs: string[];
  outputs: string[];
  name: string;
  domain?: string;
  attributes?: Record<string, AttributeValue>;
}

export interface GraphData {
  name: string;
  nodes: NodeData[];
  initializers: TensorData[];
  inputs: ValueInfo[];
  outputs: ValueInfo[];
}

export interface ModelData {
  graph: GraphData;
  opsets: { domain: string; version: number }[];
  producerName: string;
  producerVersion: string;
}

// wire types
const VARINT = 0;
const FIXED32 = 5;
const LEN = 2;

function tag(w: Writer, field: number, wireType: number): Writer {
  return w.uint32((field << 3) | wireType);
}

function str(w: Writer, field: number, value: string): void {
  tag(w, field, LEN).string(value);
}

function msg(w: Writer, field: number, write: (w: Writer) => void): void {
  tag(w, field, LEN).fork();
  write(w);
  w.ldelim();
}

function int64(w: Writer, field: number, value: number): void {
  tag(w, field, VARINT).int64(value);
}

function writeTensor(w: Writer, t: TensorData): void {
  for (const d of t.dims) int64(w, 1, d);
  tag(w, 2, VARINT).int32(t.dataType);
  str(w, 8, t.name);
  if (t.raw) tag(w, 9, LEN).bytes(t.raw);
  if (t.external) {
    const entries: [string, string][] = [
      ['location', t.external.location],
      ['offset', String(t.external.offset)],
      ['length', String(t.external.length)],
    ];
    for (const [key, value] of entries) msg(w, 13, (m) => { str(m, 1, key); str(m, 2, value); });
    tag(w, 14, VARINT).int32(1); // data_location = EXTERNAL
  }
}

// onnx.AttributeProto.AttributeType
const ATTR = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, FLOATS: 6, INTS: 7 } as const;

function writeAttribute(w: Writer, name: string, value: AttributeValue): void {
  str(w, 1, name);
  if (typeof value === 'number') {
    int64(w, 3, value);
    tag(w, 20, VARINT).int32(ATTR.INT);
  } else if (typeof value === 'string') {
    tag(w, 4, LEN).bytes(new TextEncoder().encode(value));
    tag(w, 20, VARINT).int32(ATTR.STRING);
  } else if (Array.isArray(value)) {
    for (const v of value) int64(w, 8, v);
    tag(w, 20, VARINT).int32(ATTR.INTS);
  } else if ('float' in value) {
    tag(w, 2, FIXED32).float(value.float);
    tag(w, 20, VARINT).int32(ATTR.FLOAT);
  } else if ('floats' in value) {
    for (const v of value.floats) tag(w, 7, FIXED32).float(v);
    tag(w, 20, VARINT).int32(ATTR.FLOATS);
  } else {
    msg(w, 5, (m) => writeTensor(m, value));
    tag(w, 20, VARINT).int32(ATTR.TENSOR);
  }
}

function writeNode(w: Writer, n: NodeData): void {
  for (const i of n.inputs) str(w, 1, i);
  for (const o of n.outputs) str(w, 2, o);
  str(w, 3, n.name);
  str(w, 4, n.opType);
  for (const [name, value] of Object.entries(n.attributes ?? {})) msg(w, 5, (m) => writeAttribute(m, name, value));
  if (n.domain) str(w, 7, n.domain);
}

function writeValueInfo(w: Writer, v: ValueInfo): void {
  str(w, 1, v.name);
  msg(w, 2, (type) =>
    msg(type, 1, (tensorType) => {
      tag(tensorType, 1, VARINT).int32(v.elemType);
      msg(tensorType, 2, (shape) => {
        for (const d of v.dims) {
          msg(shape, 1, (dim) => (typeof d === 'number' ? int64(dim, 1, d) : str(dim, 2, d)));
        }
      });
    }),
  );
}

function writeGraph(w: Writer, g: GraphData): void {
  for (const n of g.nodes) msg(w, 1, (m) => writeNode(m, n));
  str(w, 2, g.name);
  for (const t of g.initializers) msg(w, 5, (m) => writeTensor(m, t));
  for (const v of g.inputs) msg(w, 11, (m) => writeValueInfo(m, v));
  for (const v of g.outputs) msg(w, 12, (m) => writeValueInfo(m, v));
}

/** Serialises a model to ONNX protobuf bytes. */
export function encodeModel(model: ModelData): Uint8Array {
  const w = Writer.create();
  int64(w, 1, 8); // ir_version
  str(w, 2, model.producerName);
  str(w, 3, model.producerVersion);
  msg(w, 7, (m) => writeGraph(m, model.graph));
  for (const o of model.opsets) msg(w, 8, (m) => { if (o.domain) str(m, 1, o.domain); int64(m, 2, o.version); });
  return w.finish();
}
