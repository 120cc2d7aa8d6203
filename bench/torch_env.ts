// The environment every PyTorch baseline process gets on top of its thread settings (issue 19: the
// baseline must be the fair one).
//
// glibc malloc serves blocks above its mmap threshold (128 KiB, raised dynamically to at most 32 MiB)
// with a fresh mmap and gives them back with munmap when freed. Eager PyTorch allocates every
// activation anew, so each op's output pages are faulted in again; on this workplace's VMs a page fault
// is expensive, and the full-size vision tower ran 3-5x slower than its GEMMs alone would take (torch
// 1.13, 1 thread, image batch 1: 4.48 s, with aten::mul / sigmoid / softmax / copy_ at ~13 ns per
// element; with the settings below 1.51 s, those ops 10x faster). Measured 2026-12-02 on the Zen 5 VM
// (2 torch threads x 1 OpenBLAS thread, image batch 1 / batch 8 / text batch 32):
//   glibc defaults                          2.74 s / 24.58 s / 2.17 s
//   MALLOC_MMAP_THRESHOLD_=32 MiB (+trim)   1.12 s / 11.13 s / 2.01 s (batch 8's 34 MB blocks still mmapped)
//   LD_PRELOAD=libjemalloc.so.2             2.67 s / 33.00 s / 3.03 s
//   MALLOC_MMAP_MAX_=0 (+trim, top pad)     1.15 s /  7.57 s / 1.83 s   <- used
// (and 1 torch thread x 2 OpenBLAS threads with it: 0.73 s / 5.00 s / 1.35 s, as issue 19's independent
// run measured). PyTorch's CPU tuning guide recommends a caching allocator for the same reason; these
// three glibc settings do it without installing one: no mmap for big blocks, nothing trimmed back to
// the OS, and 512 MiB of heap grown at a time. Our side (onnxruntime) allocates from its own arena, so
// it does not depend on this; our processes run without these settings.
export const TORCH_MALLOC_ENV: Record<string, string> = {
  MALLOC_MMAP_MAX_: '0',
  MALLOC_TRIM_THRESHOLD_: '100000000000',
  MALLOC_TOP_PAD_: '536870912',
};
