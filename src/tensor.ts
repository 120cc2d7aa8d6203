// The package's Tensor is onnxruntime's: `new Tensor(type, data, dims)`, `.type`, `.data`, `.dims`.
// Every model output is one, and tensors built by the processors go into sessions without a copy.
import './models/ort_env.mjs'; // before onnxruntime-node: see there
import * as ort from 'onnxruntime-node';

export const Tensor = ort.Tensor;
export type Tensor = ort.Tensor;
export type TensorType = ort.Tensor.Type;
