// The server's budget of decoded pixels in flight: every request with images borrows the pixels its
// images' headers declare (width x height, what decoding them takes) before they are queued for the
// model, and gives them back when its images are done. A request that does not fit now waits its
// turn, first come first served (a large request is not passed by smaller ones forever); one that
// alone needs more than the whole budget can never run and is refused with 413 at once.
import { declaredSize } from '../image/index.js';
import { ApiError } from './errors.js';

/**
 * Default --max-pixels-in-flight: 3 x Pillow's MAX_IMAGE_PIXELS (268 M pixels). Preparing an image
 * takes at most ~4 bytes per declared pixel (an RLE BMP: its index plane and the RGB image; a PNG is
 * decoded straight to RGB: 3), measured ~4.1 B per budget pixel of peak RSS (test/server-bombs,
 * BENCHMARKS.md "Server"), so the budget's pixels take ~1.1 GB at worst: with the ~2.5 GB that the
 * full-size fp32 model takes in a running server, ~3.6 GB, under 2x its working memory. Three times
 * the per-image limit leaves room for the largest image with others beside it.
 */
export const DEFAULT_MAX_PIXELS_IN_FLIGHT = 3 * 89_478_485;

export class PixelBudget {
  private used = 0;
  private readonly waiting: { pixels: number; grant(): void }[] = [];
  /** Requests between arriving here and being granted (reading headers, or waiting). */
  private pending = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(
    readonly capacity: number,
    /** Called for each request refused because it alone exceeds the budget. */
    private readonly onReject: () => void = () => {},
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`the pixel budget must be a positive integer, got ${capacity}`);
  }

  /** Pixels borrowed now. */
  get inFlight(): number {
    return this.used;
  }

  /** Requests waiting for pixels. */
  get queued(): number {
    return this.waiting.length;
  }

  /**
   * Borrows `pixels` (waiting until they are free) and returns the function that gives them back
   * (idempotent). More than the whole budget: ApiError 413, thrown at once.
   */
  async acquire(pixels: number): Promise<() => void> {
    if (pixels > this.capacity) {
      this.onReject();
      throw new ApiError(
        413,
        `the request's images declare ${pixels} pixels in all, more than this server decodes at once (--max-pixels-in-flight ${this.capacity}); send fewer or smaller images per request`,
      );
    }
    if (this.waiting.length > 0 || this.used + pixels > this.capacity) {
      await new Promise<void>((grant) => this.waiting.push({ pixels, grant }));
    } else {
      this.used += pixels;
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.used -= pixels;
      this.wake();
    };
  }

  /**
   * Borrows the pixels of encoded images, as their headers declare them. An image the decoder will
   * refuse from its header alone (no size, or more than `maxPixels`: a 400 naming it) counts 0.
   */
  async acquireImages(images: Uint8Array[], maxPixels: number): Promise<() => void> {
    this.pending++;
    try {
      const sizes = await Promise.all(images.map((b) => declaredSize(b)));
      const pixels = sizes.map((s) => (s && s.width * s.height <= maxPixels ? s.width * s.height : 0));
      return await this.acquire(pixels.reduce((a, b) => a + b, 0));
    } finally {
      this.pending--;
      // after the granted request's own continuation (it queues its images) has run
      if (this.pending === 0) setImmediate(() => this.pending === 0 && this.idleWaiters.splice(0).forEach((wake) => wake()));
    }
  }

  /**
   * Resolves once no request is waiting for pixels (each has been granted and has queued its images):
   * a server that stops closes its batchers after this, so a request received before the stop is
   * answered, not refused.
   */
  idle(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private wake(): void {
    while (this.waiting.length > 0 && this.used + this.waiting[0]!.pixels <= this.capacity) {
      const next = this.waiting.shift()!;
      this.used += next.pixels;
      next.grant();
    }
  }
}
