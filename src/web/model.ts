// AltCLIPModel / AltCLIPProcessor in the page: the same classes' names and calls as the Node
// package, loaded from a base URL (or a hub repo id) instead of a folder. The model itself is the
// shared models/altclip.ts AltCLIPModel (built from the same graphs), with sessions on
// onnxruntime-web (session.ts) and weights read by Range (loader.ts).
import * as ort from 'onnxruntime-web';

import { AltCLIPConfig } from '../config.js';
import { AltCLIPModel as SharedModel, type AltCLIPOutput, type OutputFlags, type TextInputs, type VisionInputs } from '../models/altclip.js';
import { AltCLIPProcessor as SharedProcessor } from '../processor.js';
import { XLMRobertaTokenizer } from '../tokenizer/index.js';
import type { Tensor } from '../tensor.js';
import { Fetcher, type FetcherOptions } from './fetcher.js';
import { WebImageProcessor } from './images.js';
import { loadWebWeights, type LoadProgress } from './loader.js';
import { linearsToQuantize } from './quantize.js';
import { setSessionListener } from './session.js';

export interface WebPretrainedOptions extends FetcherOptions {
  /** Hub revision when a repo id is given (default "main"). */
  revision?: string;
  /** Hub address for repo ids (default https://huggingface.co). */
  hubEndpoint?: string;
}

export interface WebModelOptions extends WebPretrainedOptions {
  /** "fp32" (default) or "q8": int8 encoder Linear weights, quantized in the page as they arrive. */
  dtype?: 'fp32' | 'q8';
  /**
   * WASM threads (default: 2 or more when the page is cross-origin isolated, else 1). onnxruntime-web
   * takes this once, for the page's first session.
   */
  threads?: number;
  /** onnxruntime-web execution providers in order (default ["wasm"]; "webgpu" where the browser has an adapter: untested). */
  executionProviders?: string[];
  /** Download (bytes of the weights) and build (sessions) progress. */
  onProgress?: (p: LoadProgress) => void;
}

/** A base URL for `repoOrUrl`: URLs and paths as they are (relative to the page), anything else a hub repo id. */
export function modelBaseUrl(repoOrUrl: string, options: WebPretrainedOptions = {}): string {
  const isUrl = /^[a-z][a-z0-9+.-]*:/i.test(repoOrUrl) || /^\.{0,2}\//.test(repoOrUrl);
  if (!isUrl) {
    if (!/^[\w.-]+(\/[\w.-]+)?$/.test(repoOrUrl)) throw new Error(`${repoOrUrl} is neither a URL nor a hub repo id`);
    const hub = (options.hubEndpoint ?? 'https://huggingface.co').replace(/\/+$/, '');
    return `${hub}/${repoOrUrl}/resolve/${encodeURIComponent(options.revision ?? 'main')}/`;
  }
  const url = new URL(repoOrUrl, globalThis.location?.href);
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return url.href;
}

function parseJson(bytes: Uint8Array, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new Error(`${what}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${what}: expected a JSON object`);
  return v as Record<string, unknown>;
}

let threadsSet = false;
/** onnxruntime-web's WASM settings: files beside this module, threads once per page. */
function configureOrt(options: WebModelOptions): void {
  ort.env.wasm.wasmPaths ??= new URL('./', import.meta.url).href;
  if (!threadsSet) {
    const isolated = Boolean(globalThis.crossOriginIsolated);
    const cores = globalThis.navigator?.hardwareConcurrency ?? 1;
    ort.env.wasm.numThreads = options.threads ?? (isolated ? Math.max(2, Math.min(4, cores)) : 1);
    threadsSet = true;
  } else if (options.threads !== undefined && options.threads !== ort.env.wasm.numThreads) {
    console.warn(`altclip: onnxruntime-web already runs with ${ort.env.wasm.numThreads} thread(s) in this page; threads: ${options.threads} is ignored`);
  }
}

export class AltCLIPProcessor extends SharedProcessor {
  declare readonly imageProcessor: WebImageProcessor;

  static override async fromPretrained(repoOrUrl: string, options: WebPretrainedOptions = {}): Promise<AltCLIPProcessor> {
    const fetcher = new Fetcher(modelBaseUrl(repoOrUrl, options), options);
    const [pre, spm, tokConfig, specialMap] = await Promise.all([
      fetcher.file('preprocessor_config.json'),
      fetcher.file('sentencepiece.bpe.model', true),
      fetcher.file('tokenizer_config.json', true),
      fetcher.file('special_tokens_map.json', true),
    ]);
    // as XLMRobertaTokenizer.fromPretrained: sentencepiece.bpe.model, else tokenizer.json
    const tokJson = spm ? null : await fetcher.file('tokenizer.json', true);
    const imageProcessor = new WebImageProcessor(parseJson(pre!, fetcher.url('preprocessor_config.json')));
    let model: { sentencepiece: Uint8Array } | { tokenizerJson: string };
    if (spm) model = { sentencepiece: spm };
    else if (tokJson) model = { tokenizerJson: new TextDecoder().decode(tokJson) };
    else throw new Error(`${fetcher.base}: no sentencepiece.bpe.model and no tokenizer.json`);
    const tokenizer = XLMRobertaTokenizer.fromFileContents(fetcher.base.replace(/\/$/, ''), { model, tokenizerConfig: tokConfig, specialTokensMap: specialMap });
    return new AltCLIPProcessor(imageProcessor, tokenizer);
  }
}

export class AltCLIPModel {
  private constructor(private readonly model: SharedModel, readonly source: string) {}

  get config(): AltCLIPConfig {
    return this.model.config;
  }

  static async fromPretrained(repoOrUrl: string, options: WebModelOptions = {}): Promise<AltCLIPModel> {
    configureOrt(options);
    const base = modelBaseUrl(repoOrUrl, options);
    const fetcher = new Fetcher(base, options);
    const configBytes = (await fetcher.file('config.json'))!;
    let config: AltCLIPConfig;
    try {
      config = new AltCLIPConfig(parseJson(configBytes, fetcher.url('config.json')) as never);
    } catch (e) {
      throw new Error(`${fetcher.url('config.json')}: ${(e as Error).message}`);
    }
    const weights = await loadWebWeights(fetcher, {
      quantize: options.dtype === 'q8' ? (refs) => linearsToQuantize(config, refs) : undefined,
      onProgress: options.onProgress,
    });
    let built = 0;
    setSessionListener((name) => options.onProgress?.({ stage: 'build', loaded: ++built, total: 2, file: name }));
    options.onProgress?.({ stage: 'build', loaded: 0, total: 2 });
    try {
      const model = await SharedModel.fromWeights(config, weights, {
        dtype: options.dtype, executionProviders: options.executionProviders,
      }, base);
      return new AltCLIPModel(model, base);
    } finally {
      setSessionListener(null);
    }
  }

  /** exp(logit_scale). */
  get logitScaleExp(): number {
    return this.model.logitScaleExp;
  }

  getTextFeatures(inputs: TextInputs): Promise<Tensor> {
    return this.model.getTextFeatures(inputs);
  }

  getImageFeatures(inputs: VisionInputs): Promise<Tensor> {
    return this.model.getImageFeatures(inputs);
  }

  forward(inputs: Partial<TextInputs> & Partial<VisionInputs> & OutputFlags & { returnLoss?: boolean }): Promise<AltCLIPOutput> {
    return this.model.forward(inputs);
  }

  dispose(): Promise<void> {
    return this.model.dispose();
  }
}
