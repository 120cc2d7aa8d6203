/** Decoded pixels, interleaved (HWC), 8 bits per sample: 1 = L, 2 = LA, 3 = RGB, 4 = RGBA. */
export interface RawImage {
  data: Uint8Array | Uint8ClampedArray;
  width: number;
  height: number;
  channels: 1 | 2 | 3 | 4;
}

/** A path or URL (http:, https:, file:), encoded image bytes, or raw pixels. */
export type ImageInput = string | URL | Uint8Array | RawImage;
