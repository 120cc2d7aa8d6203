// The browser build's sessions (replaces models/graph_cache.ts and models/session.ts where
// models/towers.ts imports them; the same createSession / checkSessionOptions): onnxruntime-web
// sessions on the graph's bytes, with every weight handed over as external data. Each tensor is a
// file of its own (range_fs), so no ArrayBuffer holds more than one tensor (the page's limit is
// ~2 GiB per buffer; the full-size checkpoint is 3.5 GB).
import * as ort from 'onnxruntime-web';

import type { GraphBuilder } from '../onnx/graph.js';
import type { Session, SessionOptions } from '../models/session.js';
import { fileBytes } from './range_fs.js';

export type { Session, SessionOptions };

/** The opsets the graphs are built for (as models/graph_cache.ts). */
const OPSETS = { '': 17, 'com.microsoft': 1 };

/** No graph cache folder in the page (built graphs live in memory; weights are cached by cache.ts). */
export function defaultGraphCacheDir(): string {
  return '';
}

/** Called with each session's name once it is created (the build progress). */
let onSessionCreated: ((name: string) => void) | null = null;
export function setSessionListener(listener: ((name: string) => void) | null): void {
  onSessionCreated = listener;
}

/**
 * models/session.ts' check, less its cores bound: the page's threads are onnxruntime-web's
 * `env.wasm.numThreads` (model.ts), not a session option.
 */
export function checkSessionOptions(options: SessionOptions): void {
  const { threads } = options;
  if (threads !== undefined && (!Number.isSafeInteger(threads) || threads < 1)) {
    throw new Error(`threads must be a positive integer, got ${JSON.stringify(threads)}`);
  }
}

export async function createSession(g: GraphBuilder, options: SessionOptions): Promise<Session> {
  const files = g.referencedFiles();
  const model = g.encode((file) => file, OPSETS);
  const session = await ort.InferenceSession.create(model, {
    executionProviders: options.executionProviders ?? ['wasm'],
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    externalData: files.map((file) => ({ path: file, data: fileBytes(file) })),
  });
  onSessionCreated?.(g.name);
  return {
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    async run(feeds, fetch) {
      return (await session.run(feeds, [...fetch])) as Record<string, ort.Tensor>;
    },
    release: () => session.release(),
  };
}
