// AltCLIP block by block in the order of transformers' models/altclip/modeling_altclip.py (4.40.2;
// interpolate_pos_encoding from 4.46): the towers as ONNX graphs, and what AltCLIPModel.forward and
// AltCLIPVisionEmbeddings compute outside them (the head: normalise, logits, clip_loss; the bicubic
// position grid) in float32 like torch. Each graph function takes the checkpoint prefix of its module,
// so the tensor names below are exactly the checkpoint's
// (`text_model.roberta.encoder.layer.0.attention.self.query.weight`, ...).
//
// dtype "q8" (quantize.ts): the Linear layers given `ctx.lin` run on int8 weights, and those are the
// weights quantized (the graph's requests decide), as the model's named q8 scheme says (never the CPU):
// every Linear of the vision encoder layers and the MLP of the text encoder layers; the text encoder
// layers' attention projections only in a scheme with `textAttention` (the VNNI-only opt-in): in the
// default scheme they stay fp32, since int8 there costs text accuracy (lowest cosine vs fp32 0.9944
// against 0.998 with fp32 attention on the full-size benchmark model; BENCHMARKS.md).
//
// Layout: between blocks the hidden states are 2-D [batch * seq, hidden] (Linear = one Gemm on the
// [out, in] weight); attention reshapes to [batch, heads, seq, head_dim] and back.
import type { AltCLIPTextConfig, AltCLIPVisionConfig } from '../config.js';
import { logSumExp, type Matrix, matmulTransposed, normalizeRows, row, transpose } from '../math.js';
import { DataType, GraphBuilder } from '../onnx/graph.js';
import { activation, layerNorm, linear, type LinearOptions } from '../onnx/nn.js';
import { Tensor } from '../tensor.js';

const FLOAT32_MIN = -3.4028234663852886e38; // torch.finfo(torch.float32).min

/** Which optional outputs a graph exposes (each variant is its own graph and session). */
export interface GraphVariant {
  /** hidden_states.<i> and attentions.<i> outputs (output_hidden_states / output_attentions). */
  full: boolean;
  /** Vision only: position embeddings come as an input (interpolate_pos_encoding). */
  interpolate?: boolean;
  /** dtype "q8": the Linear layers given `ctx.lin` on int8 weights (see the top of this file). */
  quantized?: boolean;
  /** dtype "q8": the int8 weights' range (the model's q8 scheme, quantize.ts Q8Scheme.weightBits). */
  weightBits?: 7 | 8;
  /** dtype "q8": the text tower's attention projections in int8 too (Q8Scheme.textAttention; see the top
   * of this file). */
  int8TextAttention?: boolean;
}

/** Shape tensors shared by every layer of one tower. */
interface Dims {
  /** [batch, seq, heads, head_dim] for splitting heads. */
  heads: string;
  /** [batch, seq, hidden] for 3-D outputs. */
  seqHidden: string;
  /** [-1, hidden] for flattening back to 2-D. */
  flat: string;
}

function makeDims(g: GraphBuilder, batchSeq: string, heads: number, hidden: number): Dims {
  return {
    heads: g.node('Concat', [batchSeq, g.constInt64([heads, hidden / heads])], { axis: 0 }),
    seqHidden: g.node('Concat', [batchSeq, g.constInt64([hidden])], { axis: 0 }),
    flat: g.constInt64([-1, hidden]),
  };
}

/** [N, hidden] -> [batch, heads, seq, head_dim] (transpose_for_scores); `keyT` gives [.., head_dim, seq]. */
function splitHeads(g: GraphBuilder, x: string, dims: Dims, keyT = false): string {
  const perm = keyT ? [0, 2, 3, 1] : [0, 2, 1, 3];
  return g.node('Transpose', [g.node('Reshape', [x, dims.heads])], { perm });
}

/** [batch, heads, seq, head_dim] -> [N, hidden]. */
function mergeHeads(g: GraphBuilder, x: string, dims: Dims): string {
  return g.node('Reshape', [g.node('Transpose', [x], { perm: [0, 2, 1, 3] }), dims.flat]);
}

function to3d(g: GraphBuilder, x: string, dims: Dims): string {
  return g.node('Reshape', [x, dims.seqHidden]);
}

/** output_hidden_states / output_attentions: graph outputs hidden_states.<i> and attentions.<i>. */
function exposeLayers(g: GraphBuilder, hiddenStates: string[], attentions: string[], dims: Dims, seq: string,
  hidden: number, heads: number): void {
  hiddenStates.forEach((h, i) => g.output(to3d(g, h, dims), `hidden_states.${i}`, DataType.FLOAT, ['batch', seq, hidden]));
  attentions.forEach((a, i) => g.output(a, `attentions.${i}`, DataType.FLOAT, ['batch', heads, seq, seq]));
}

/** Where a tower's weights are, and whether AltCLIPModel's projection is part of its graph. */
export interface TowerGraphOptions {
  /** Checkpoint prefix: "text_model" / "vision_model" in AltCLIPModel; "" for a standalone text model. */
  prefix: string;
  /** projection_dim when `text_projection` / `visual_projection` (AltCLIPModel) is part of the graph. */
  projectionDim?: number;
}

// =============================================================================================
// Text tower: XLM-RoBERTa (AltRoberta*) + pre_LN + transformation (AltCLIPTextModel)

interface TextContext {
  g: GraphBuilder;
  config: AltCLIPTextConfig;
  dims: Dims;
  /** Options of the encoder layers' MLP Linear layers (q8). */
  lin: LinearOptions;
  /** Options of the attention's Linear layers (q, k, v and the attention output's dense). */
  attentionLin: LinearOptions;
  /** [batch, 1, 1, seq]: 0 where attended, finfo.min where masked. */
  extendedAttentionMask: string;
  attentions: string[];
}

/** create_position_ids_from_input_ids: cumsum(ids != pad) * (ids != pad) + padding_idx. */
function createPositionIdsFromInputIds(g: GraphBuilder, inputIds: string, paddingIdx: number): string {
  const mask = g.node('Cast', [g.node('Not', [g.node('Equal', [inputIds, g.constInt64([paddingIdx], [])])])],
    { to: DataType.INT64 });
  const incremental = g.node('Mul', [g.node('CumSum', [mask, g.constInt64([1], [])]), mask]);
  return g.node('Add', [incremental, g.constInt64([paddingIdx], [])]);
}

/** AltRobertaEmbeddings (4.40.2): LayerNorm(word + token_type + position); token_type_ids are all zeros. */
function altRobertaEmbeddings(ctx: TextContext, p: string, inputIds: string): string {
  const { g, config: c } = ctx;
  const H = c.hiddenSize;
  const positionIds = createPositionIdsFromInputIds(g, inputIds, c.padTokenId);
  const inputsEmbeds = g.node('Gather', [g.weight(`${p}.word_embeddings.weight`, [c.vocabSize, H]), inputIds]);
  const tokenType = g.node('Gather', [g.weight(`${p}.token_type_embeddings.weight`, [c.typeVocabSize, H]),
    g.constInt64([0], [])]);
  let embeddings = g.node('Add', [inputsEmbeds, tokenType]);
  const positions = g.node('Gather', [g.weight(`${p}.position_embeddings.weight`, [c.maxPositionEmbeddings, H]), positionIds]);
  embeddings = g.node('Add', [embeddings, positions]);
  embeddings = g.node('Reshape', [embeddings, ctx.dims.flat]);
  return layerNorm(g, embeddings, `${p}.LayerNorm`, H, c.layerNormEps);
}

/** AltRobertaSelfAttention (4.40.2, absolute positions): softmax(q k^T / sqrt(d) + mask) v. */
function altRobertaSelfAttention(ctx: TextContext, p: string, x: string): string {
  const { g, config: c, dims } = ctx;
  const H = c.hiddenSize;
  // in q8: int8 only with 8-bit weights (see the top of this file)
  const lin = ctx.attentionLin;
  const query = splitHeads(g, linear(g, x, `${p}.query`, H, H, true, lin), dims);
  const keyT = splitHeads(g, linear(g, x, `${p}.key`, H, H, true, lin), dims, true);
  const value = splitHeads(g, linear(g, x, `${p}.value`, H, H, true, lin), dims);
  let scores = g.node('MatMul', [query, keyT]);
  scores = g.node('Div', [scores, g.constFloat([Math.sqrt(H / c.numAttentionHeads)], [])]);
  scores = g.node('Add', [scores, ctx.extendedAttentionMask]);
  const probs = g.node('Softmax', [scores], { axis: -1 });
  ctx.attentions.push(probs);
  return mergeHeads(g, g.node('MatMul', [probs, value]), dims);
}

/** AltRobertaSelfOutput / AltRobertaOutput (4.40.2): LayerNorm(dense(h) + input). */
function altRobertaOutput(ctx: TextContext, p: string, h: string, input: string, inFeatures: number,
  lin: LinearOptions = {}): string {
  const { g, config: c } = ctx;
  const dense = linear(g, h, `${p}.dense`, inFeatures, c.hiddenSize, true, lin);
  return layerNorm(g, g.node('Add', [dense, input]), `${p}.LayerNorm`, c.hiddenSize, c.layerNormEps);
}

/** AltRobertaLayer (4.40.2): attention (self + output), intermediate (dense + act), output. */
function altRobertaLayer(ctx: TextContext, p: string, x: string): string {
  const { g, config: c } = ctx;
  const selfOutput = altRobertaSelfAttention(ctx, `${p}.attention.self`, x);
  const attentionOutput = altRobertaOutput(ctx, `${p}.attention.output`, selfOutput, x, c.hiddenSize, ctx.attentionLin);
  const intermediate = activation(c.hiddenAct, 'text_config.hidden_act')(g,
    linear(g, attentionOutput, `${p}.intermediate.dense`, c.hiddenSize, c.intermediateSize, true, ctx.lin));
  return altRobertaOutput(ctx, `${p}.output`, intermediate, attentionOutput, c.intermediateSize, ctx.lin);
}

/**
 * AltCLIPTextModel (+ AltCLIPModel.text_projection): inputs input_ids, attention_mask [batch, seq]
 * int64; outputs last_hidden_state [batch, seq, project_dim], pooler_output [batch, project_dim],
 * text_features [batch, projection_dim], hidden_states.<i>, attentions.<i>.
 */
export function buildTextGraph(g: GraphBuilder, config: AltCLIPTextConfig, variant: GraphVariant,
  options: TowerGraphOptions): void {
  const p = options.prefix ? `${options.prefix}.` : '';
  const H = config.hiddenSize;
  const inputIds = g.input('input_ids', DataType.INT64, ['batch', 'sequence']);
  const attentionMask = g.input('attention_mask', DataType.INT64, ['batch', 'sequence']);
  const batchSeq = g.node('Shape', [inputIds]);

  // get_extended_attention_mask: (1 - mask[:, None, None, :]) * finfo(float32).min
  const maskF = g.node('Cast', [attentionMask], { to: DataType.FLOAT });
  const inverted = g.node('Sub', [g.constFloat([1], []), g.node('Unsqueeze', [maskF, g.constInt64([1, 2])])]);
  const ctx: TextContext = {
    g, config,
    dims: makeDims(g, batchSeq, config.numAttentionHeads, H),
    lin: { quantized: variant.quantized },
    attentionLin: { quantized: variant.quantized && variant.int8TextAttention },
    extendedAttentionMask: g.node('Mul', [inverted, g.constFloat([FLOAT32_MIN], [])]),
    attentions: [],
  };

  // AltRobertaModel: embeddings, then the encoder (no pooler: add_pooling_layer=False)
  let hidden = altRobertaEmbeddings(ctx, `${p}roberta.embeddings`, inputIds);
  const hiddenStates = [hidden];
  for (let i = 0; i < config.numHiddenLayers; i++) {
    hidden = altRobertaLayer(ctx, `${p}roberta.encoder.layer.${i}`, hidden);
    hiddenStates.push(hidden);
  }

  // AltCLIPTextModel: pre_LN over the whole sequence, transformation to project_dim, pooler = row 0
  const projectionState = linear(g, layerNorm(g, hidden, `${p}pre_LN`, H, config.layerNormEps),
    `${p}transformation`, H, config.projectDim);
  const lastHiddenState = g.node('Reshape', [projectionState,
    g.node('Concat', [batchSeq, g.constInt64([config.projectDim])], { axis: 0 })]);
  const poolerOutput = g.node('Gather', [lastHiddenState, g.constInt64([0], [])], { axis: 1 });
  g.output(lastHiddenState, 'last_hidden_state', DataType.FLOAT, ['batch', 'sequence', config.projectDim]);
  g.output(poolerOutput, 'pooler_output', DataType.FLOAT, ['batch', config.projectDim]);

  if (options.projectionDim !== undefined) {
    // AltCLIPModel.get_text_features: text_projection(pooler_output), no bias
    const features = linear(g, poolerOutput, 'text_projection', config.projectDim, options.projectionDim, false);
    g.output(features, 'text_features', DataType.FLOAT, ['batch', options.projectionDim]);
  }
  if (variant.full) exposeLayers(g, hiddenStates, ctx.attentions, ctx.dims, 'sequence', H, config.numAttentionHeads);
}

// =============================================================================================
// Vision tower: CLIP ViT (AltCLIPVisionEmbeddings, AltCLIPEncoder, AltCLIPVisionTransformer)

interface VisionContext {
  g: GraphBuilder;
  config: AltCLIPVisionConfig;
  dims: Dims;
  /** Options of the encoder layers' Linear layers (q8). */
  lin: LinearOptions;
  /** One fused attention node (no attention maps to expose). */
  fusedAttention: boolean;
  attentions: string[];
}

/**
 * AltCLIPVisionEmbeddings: patch conv (no bias), class token prepended, position embeddings added
 * (the interpolated ones, fed as an input, with interpolate_pos_encoding).
 */
function altCLIPVisionEmbeddings(g: GraphBuilder, c: AltCLIPVisionConfig, p: string, pixelValues: string,
  batch: string, interpolate: boolean): { embeddings: string; tokens: string } {
  const H = c.hiddenSize;
  const P = c.patchSize;
  const patchEmbeds = g.node('Conv', [pixelValues, g.weight(`${p}.patch_embedding.weight`, [H, c.numChannels, P, P])],
    { kernel_shape: [P, P], strides: [P, P] });
  // [batch, hidden, gh, gw] -> flatten(2) -> transpose(1, 2) -> [batch, gh*gw, hidden]
  const flat = g.node('Transpose', [g.node('Reshape', [patchEmbeds, g.constInt64([0, H, -1])])], { perm: [0, 2, 1] });
  const classEmbeds = g.node('Expand', [
    g.node('Reshape', [g.weight(`${p}.class_embedding`, [H]), g.constInt64([1, 1, H])]),
    g.node('Concat', [batch, g.constInt64([1, H])], { axis: 0 }),
  ]);
  const embeddings = g.node('Concat', [classEmbeds, flat], { axis: 1 });
  const positions = interpolate
    ? g.input('position_embeddings', DataType.FLOAT, [1, 'tokens', H])
    : g.weight(`${p}.position_embedding.weight`, [c.gridSize * c.gridSize + 1, H]);
  const withPositions = g.node('Add', [embeddings, positions]);
  return { embeddings: withPositions, tokens: g.node('Slice', [g.node('Shape', [withPositions]), g.constInt64([1]), g.constInt64([2])]) };
}

/**
 * AltCLIPVisionEmbeddings.interpolate_pos_encoding (transformers >= 4.46), outside the graph: the
 * patch position grid resized bicubically to the image's grid, fed to the graph as an input.
 */
/** torch's cubic convolution weights (A = -0.75) for the fractional offset t. */
function cubicWeights(t: number): [number, number, number, number] {
  const A = -0.75;
  const near = (x: number) => ((A + 2) * x - (A + 3)) * x * x + 1;
  const far = (x: number) => ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
  return [far(t + 1), near(t), near(1 - t), far(2 - t)];
}

/**
 * nn.functional.interpolate(mode="bicubic", align_corners=False) of a [inH, inW, dim] grid to
 * [outH, outW, dim]: source = (dst + 0.5) * in / out - 0.5, indices clamped at the border.
 */
function bicubicResize(src: Float32Array, inH: number, inW: number, dim: number, outH: number, outW: number): Float32Array {
  const out = new Float32Array(outH * outW * dim);
  const taps = (outSize: number, inSize: number) => Array.from({ length: outSize }, (_, o) => {
    const real = (inSize / outSize) * (o + 0.5) - 0.5;
    const i0 = Math.floor(real);
    const idx = [-1, 0, 1, 2].map((k) => Math.min(Math.max(i0 + k, 0), inSize - 1));
    return { idx, w: cubicWeights(real - i0) };
  });
  const rows = taps(outH, inH);
  const cols = taps(outW, inW);
  for (let y = 0; y < outH; y++) {
    for (let x = 0; x < outW; x++) {
      const o = (y * outW + x) * dim;
      for (let c = 0; c < dim; c++) {
        let acc = 0;
        for (let r = 0; r < 4; r++) {
          let row = 0;
          for (let k = 0; k < 4; k++) row += src[(rows[y]!.idx[r]! * inW + cols[x]!.idx[k]!) * dim + c]! * cols[x]!.w[k];
          acc += row * rows[y]!.w[r];
        }
        out[o + c] = acc;
      }
    }
  }
  return out;
}

/** AltCLIPVisionEmbeddings.interpolate_pos_encoding for an image of height x width. */
export function interpolatePositionEmbeddings(positionEmbedding: Float32Array, config: AltCLIPVisionConfig,
  height: number, width: number): Tensor {
  const dim = config.hiddenSize;
  const numPositions = positionEmbedding.length / dim - 1;
  const newH = Math.floor(height / config.patchSize);
  const newW = Math.floor(width / config.patchSize);
  if (newH * newW === numPositions && height === width) {
    return new Tensor('float32', positionEmbedding, [1, numPositions + 1, dim]);
  }
  const side = Math.floor(Math.sqrt(numPositions));
  const patches = bicubicResize(positionEmbedding.subarray(dim), side, side, dim, newH, newW);
  const out = new Float32Array((newH * newW + 1) * dim);
  out.set(positionEmbedding.subarray(0, dim));
  out.set(patches, dim);
  return new Tensor('float32', out, [1, newH * newW + 1, dim]);
}

/** AltCLIPAttention (4.40.2): softmax((q * scale) k^T) v, out_proj. */
function altCLIPAttention(ctx: VisionContext, p: string, x: string): string {
  const { g, config: c, dims } = ctx;
  const H = c.hiddenSize;
  const scale = (H / c.numAttentionHeads) ** -0.5;
  const query = g.node('Mul', [linear(g, x, `${p}.q_proj`, H, H, true, ctx.lin), g.constFloat([scale], [])]);
  const key = linear(g, x, `${p}.k_proj`, H, H, true, ctx.lin);
  const value = linear(g, x, `${p}.v_proj`, H, H, true, ctx.lin);
  let context: string;
  if (ctx.fusedAttention) {
    // Why: ORT's fused kernel is faster than the MatMul/Softmax/MatMul chain (~5% on image rows of the
    // full-size model, commit 9cdcc67). Same function: com.microsoft.MultiHeadAttention computes
    // softmax(q k^T * scale) v per head; q is already scaled above, so scale is 1. It cannot expose the
    // attention maps, so graphs with output_attentions take the unfused branch (same goldens, 1e-4).
    const [q, k, v] = [query, key, value].map((t) => to3d(g, t, dims));
    context = g.node('Reshape', [g.node('MultiHeadAttention', [q!, k!, v!],
      { num_heads: c.numAttentionHeads, scale: { float: 1 } }, { domain: 'com.microsoft' }), dims.flat]);
  } else {
    const probs = g.node('Softmax', [g.node('MatMul', [splitHeads(g, query, dims), splitHeads(g, key, dims, true)])], { axis: -1 });
    ctx.attentions.push(probs);
    context = mergeHeads(g, g.node('MatMul', [probs, splitHeads(g, value, dims)]), dims);
  }
  return linear(g, context, `${p}.out_proj`, H, H, true, ctx.lin);
}

/** AltCLIPMLP (4.40.2): fc2(act(fc1(x))). */
function altCLIPMLP(ctx: VisionContext, p: string, x: string): string {
  const { g, config: c } = ctx;
  const h = activation(c.hiddenAct, 'vision_config.hidden_act')(g,
    linear(g, x, `${p}.fc1`, c.hiddenSize, c.intermediateSize, true, ctx.lin));
  return linear(g, h, `${p}.fc2`, c.intermediateSize, c.hiddenSize, true, ctx.lin);
}

/** AltCLIPEncoderLayer (4.40.2): pre-LN residual blocks. */
function altCLIPEncoderLayer(ctx: VisionContext, p: string, x: string): string {
  const { g, config: c } = ctx;
  let residual = x;
  let h = altCLIPAttention(ctx, `${p}.self_attn`, layerNorm(g, x, `${p}.layer_norm1`, c.hiddenSize, c.layerNormEps));
  h = g.node('Add', [residual, h]);
  residual = h;
  h = altCLIPMLP(ctx, `${p}.mlp`, layerNorm(g, h, `${p}.layer_norm2`, c.hiddenSize, c.layerNormEps));
  return g.node('Add', [residual, h]);
}

/**
 * AltCLIPVisionTransformer (+ AltCLIPModel.visual_projection): input pixel_values [batch, C, H, W]
 * (and position_embeddings [1, tokens, hidden] when interpolating); outputs last_hidden_state,
 * pooler_output, image_features, hidden_states.<i>, attentions.<i>.
 */
export function buildVisionGraph(g: GraphBuilder, config: AltCLIPVisionConfig, variant: GraphVariant,
  options: TowerGraphOptions): void {
  const p = options.prefix ? `${options.prefix}.` : '';
  const H = config.hiddenSize;
  const size: (number | string)[] = variant.interpolate ? ['height', 'width'] : [config.imageSize, config.imageSize];
  const pixelValues = g.input('pixel_values', DataType.FLOAT, ['batch', config.numChannels, ...size]);
  const batch = g.node('Slice', [g.node('Shape', [pixelValues]), g.constInt64([0]), g.constInt64([1])]);

  const { embeddings, tokens } = altCLIPVisionEmbeddings(g, config, `${p}embeddings`, pixelValues, batch,
    variant.interpolate ?? false);
  const ctx: VisionContext = {
    g, config,
    dims: makeDims(g, g.node('Concat', [batch, tokens], { axis: 0 }), config.numAttentionHeads, H),
    lin: { quantized: variant.quantized },
    fusedAttention: !variant.full,
    attentions: [],
  };

  let hidden = layerNorm(g, g.node('Reshape', [embeddings, ctx.dims.flat]), `${p}pre_layrnorm`, H, config.layerNormEps);
  const hiddenStates = [hidden];
  for (let i = 0; i < config.numHiddenLayers; i++) {
    hidden = altCLIPEncoderLayer(ctx, `${p}encoder.layers.${i}`, hidden);
    hiddenStates.push(hidden);
  }
  const lastHiddenState = to3d(g, hidden, ctx.dims);
  const pooledOutput = layerNorm(g, g.node('Gather', [lastHiddenState, g.constInt64([0], [])], { axis: 1 }),
    `${p}post_layernorm`, H, config.layerNormEps);
  g.output(lastHiddenState, 'last_hidden_state', DataType.FLOAT, ['batch', 'tokens', H]);
  g.output(pooledOutput, 'pooler_output', DataType.FLOAT, ['batch', H]);

  if (options.projectionDim !== undefined) {
    // AltCLIPModel.get_image_features: visual_projection(pooler_output), no bias
    const features = linear(g, pooledOutput, 'visual_projection', H, options.projectionDim, false);
    g.output(features, 'image_features', DataType.FLOAT, ['batch', options.projectionDim]);
  }
  if (variant.full) exposeLayers(g, hiddenStates, ctx.attentions, ctx.dims, 'tokens', H, config.numAttentionHeads);
}

// =============================================================================================
// AltCLIPModel.forward after the towers (4.40.2), in float32 like torch

export interface ClipHeadOutput {
  textEmbeds: Tensor;
  imageEmbeds: Tensor;
  logitsPerText: Tensor;
  logitsPerImage: Tensor;
  loss?: Tensor;
}

const asMatrix = (t: Tensor): Matrix => ({ data: t.data as Float32Array, rows: t.dims[0]!, cols: t.dims[1]! });
const asTensor = (m: Matrix): Tensor => new Tensor('float32', m.data, [m.rows, m.cols]);

/** contrastive_loss: nn.functional.cross_entropy(logits, arange(len(logits))), mean reduction. */
function contrastiveLoss(logits: Matrix): number {
  let total = 0;
  for (let i = 0; i < logits.rows; i++) total += logSumExp(row(logits, i)) - logits.data[i * logits.cols + i]!;
  return total / logits.rows;
}

/**
 * AltCLIPModel.forward's head: image_embeds / text_embeds = x / x.norm(p=2, dim=-1, keepdim=True);
 * logits_per_text = text_embeds @ image_embeds.t() * logit_scale.exp() (float32 products);
 * logits_per_image = logits_per_text.t(); loss = clip_loss(logits_per_text) =
 * (contrastive_loss(logits_per_text) + contrastive_loss(logits_per_image)) / 2.
 */
export function altCLIPModelHead(textFeatures: Tensor, imageFeatures: Tensor, logitScale: number, returnLoss: boolean): ClipHeadOutput {
  const imageEmbeds = normalizeRows(asMatrix(imageFeatures));
  const textEmbeds = normalizeRows(asMatrix(textFeatures));
  const scale = Math.fround(Math.exp(logitScale));
  const dots = matmulTransposed(textEmbeds, imageEmbeds);
  const logitsPerText: Matrix = { data: Float32Array.from(dots.flat(), (s) => Math.fround(s) * scale), rows: textEmbeds.rows, cols: imageEmbeds.rows };
  const logitsPerImage = transpose(logitsPerText);
  const output: ClipHeadOutput = {
    textEmbeds: asTensor(textEmbeds), imageEmbeds: asTensor(imageEmbeds),
    logitsPerText: asTensor(logitsPerText), logitsPerImage: asTensor(logitsPerImage),
  };
  if (returnLoss) {
    const loss = (contrastiveLoss(logitsPerText) + contrastiveLoss(logitsPerImage)) / 2;
    output.loss = new Tensor('float32', Float32Array.of(loss), []);
  }
  return output;
}
