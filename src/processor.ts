// AltCLIPProcessor of transformers 4.40.2 (models/altclip/processing_altclip.py): the tokenizer for
// `text`, CLIPImageProcessor for `images`, either one optional; returns model-ready Tensors.
import type { PretrainedOptions } from './hub/index.js';
import { CLIPImageProcessor, type ImageDecodeOptions, type ImageInput, type PreprocessOverrides } from './image/index.js';
import { Tensor } from './tensor.js';
import { XLMRobertaTokenizer, type BatchEncodeOptions, type TokenizerOptions } from './tokenizer/index.js';

export interface ProcessInputs extends BatchEncodeOptions, PreprocessOverrides {
  text?: string | string[];
  images?: ImageInput | ImageInput[];
}

export interface ProcessorOutput {
  inputIds?: Tensor; // int64 [B, L]
  attentionMask?: Tensor; // int64 [B, L]
  pixelValues?: Tensor; // float32 [N, 3, H, W]
}

/** number[][] (rectangular) -> int64 Tensor [B, L]. */
function int64Matrix(rows: number[][]): Tensor {
  const len = rows[0]?.length ?? 0;
  const ragged = rows.findIndex((r) => r.length !== len);
  if (ragged >= 0) {
    // transformers: "Unable to create tensor, you should probably activate truncation and/or padding"
    throw new Error(
      `AltCLIPProcessor: text ${ragged} has ${rows[ragged].length} tokens but text 0 has ${len}; ` +
        `pass padding: true (or 'max_length') to batch texts of different lengths`,
    );
  }
  const data = new BigInt64Array(rows.length * len);
  rows.forEach((r, i) => r.forEach((v, j) => (data[i * len + j] = BigInt(v))));
  return new Tensor('int64', data, [rows.length, len]);
}

export class AltCLIPProcessor {
  constructor(
    readonly imageProcessor: CLIPImageProcessor,
    readonly tokenizer: XLMRobertaTokenizer,
  ) {}

  /** Loads preprocessor_config.json and the tokenizer files of a model folder or hub repo. */
  static async fromPretrained(pathOrRepoId: string, options: PretrainedOptions & ImageDecodeOptions & Pick<TokenizerOptions, 'from'> = {}): Promise<AltCLIPProcessor> {
    const [imageProcessor, tokenizer] = await Promise.all([
      CLIPImageProcessor.fromPretrained(pathOrRepoId, options),
      XLMRobertaTokenizer.fromPretrained(pathOrRepoId, options),
    ]);
    return new AltCLIPProcessor(imageProcessor, tokenizer);
  }

  /**
   * `processor(text=..., images=..., return_tensors="pt", **kwargs)`: tokenizer options (padding,
   * truncation, maxLength, ...) go to the tokenizer, image options (size, cropSize, ...) to the
   * image processor.
   */
  async process(inputs: ProcessInputs): Promise<ProcessorOutput> {
    const { text, images, ...options } = inputs;
    if (text === undefined && images === undefined) {
      throw new Error('AltCLIPProcessor: you have to specify either text or images (both are missing)');
    }
    const out: ProcessorOutput = {};
    // Start decoding the images (sharp threads) while the text is tokenized.
    const pixels = images === undefined ? null : this.imageProcessor.preprocess(images, options);
    pixels?.catch(() => {}); // surfaced below
    if (text !== undefined) {
      const { textPair, padding, truncation, maxLength, padToMultipleOf, addSpecialTokens, paddingSide, truncationSide } = options;
      const enc = this.tokenizer.batchEncode(text, { textPair, padding, truncation, maxLength, padToMultipleOf, addSpecialTokens, paddingSide, truncationSide });
      out.inputIds = int64Matrix(enc.inputIds);
      out.attentionMask = int64Matrix(enc.attentionMask);
    }
    if (pixels) out.pixelValues = (await pixels).pixelValues;
    return out;
  }
}
