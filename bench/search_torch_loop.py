"""The Python loop `altclip index` is compared with: PIL open + CLIPImageProcessor's steps + torch
get_image_features, batch 8, fp32 (bench/torch_baseline.py's model), over a folder of images.

  OPENBLAS_NUM_THREADS=N python3 bench/search_torch_loop.py --model DIR --threads N IMAGES...

transformers is not installed here, so the processor is CLIPImageProcessor's pipeline for BAAI/AltCLIP
(preprocessor_config.json) written out: convert("RGB"); resize the shortest edge to 224 with PIL's
BICUBIC (get_resize_output_image_size: the long edge = int(224 * long / short)); center crop 224
(transformers' center_crop offsets: (h - 224) // 2); rescale 1/255; normalize with CLIP's mean/std.
Prints one JSON object: images, seconds (first open to last feature; model load excluded), peak RSS.
"""
import os

# as bench/torch_baseline.py's `bench`: OpenBLAS picks its own kernel (issue 19's fair baseline)
for _k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(_k, None)

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from torch_baseline import AltCLIP  # noqa: E402

MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


def preprocess(path, size=224):
    im = Image.open(path)
    im = im.convert("RGB")
    w, h = im.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    im = im.resize((new_short, new_long) if w <= h else (new_long, new_short), Image.BICUBIC)
    a = np.asarray(im, dtype=np.float32)
    top, left = (a.shape[0] - size) // 2, (a.shape[1] - size) // 2
    a = a[top:top + size, left:left + size] * np.float32(1 / 255)
    a = (a - MEAN) / STD
    return a.transpose(2, 0, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("images", nargs="+")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = AltCLIP.from_pretrained(args.model)
    t0 = time.perf_counter()
    n = 0
    with torch.inference_mode():
        for start in range(0, len(args.images), args.batch_size):
            batch = [preprocess(p) for p in args.images[start:start + args.batch_size]]
            feats = model.get_image_features(torch.from_numpy(np.stack(batch)))
            feats = feats / feats.norm(p=2, dim=-1, keepdim=True)
            n += feats.shape[0]
    seconds = time.perf_counter() - t0
    print(json.dumps({"images": n, "seconds": seconds, "images_per_s": n / seconds, "threads": args.threads,
                      "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


if __name__ == "__main__":
    main()
