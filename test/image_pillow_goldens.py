"""Makes test/image_pillow_goldens.json: Pillow 9.4.0 outputs the image tests compare against,
beyond the shared fixtures (which only use bicubic and a few formats).

Run with Debian bookworm's python3-pil 9.4.0 (+ python3-numpy):  /usr/bin/python3 test/image_pillow_goldens.py

- "resize": a synthetic image (the same integer formula is in test/image-pillow.test.ts) resized
  with every filter to several sizes; sha256 of the uint8 HWC result.
- "decode": small encoded files (base64) in formats/modes the fixtures lack, with the sha256 of
  np.array(Image.open(f).convert("RGB")) and Pillow's mode and size.
"""
import base64
import hashlib
import io
import json
import struct
import zlib

import numpy as np
import PIL
from PIL import Image

assert PIL.__version__ == "9.4.0", PIL.__version__


def synth(w, h, c):
    y, x, ch = np.meshgrid(np.arange(h), np.arange(w), np.arange(c), indexing="ij")
    v = (x * 37 + y * 91 + ch * 53 + ((x * x * 7 + y * 3 + ch) * (y + 5)) % 97) & 255
    return v.astype(np.uint8)


def sha(a):
    return hashlib.sha256(np.ascontiguousarray(a, dtype=np.uint8).tobytes()).hexdigest()


resize_cases = []
FILTERS = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
for (w, h, c) in [(37, 23, 3), (37, 23, 1)]:
    arr = synth(w, h, c)
    im = Image.fromarray(arr if c == 3 else arr[:, :, 0], "RGB" if c == 3 else "L")
    for size in [(13, 9), (100, 61), (37, 50), (20, 23), (224, 5), (3, 2), (36, 22)]:
        for f, name in FILTERS.items():
            out = np.array(im.resize(size, resample=f, reducing_gap=None))
            resize_cases.append({"width": w, "height": h, "channels": c, "to": list(size), "filter": name, "sha256": sha(out)})


def png(w, h, bit_depth, color_type, samples, plte=None, trns=None):
    ch = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    rows = []
    for y in range(h):
        row = samples[y * w * ch:(y + 1) * w * ch]
        if bit_depth == 16:
            data = b"".join(struct.pack(">H", v) for v in row)
        elif bit_depth == 8:
            data = bytes(row)
        else:  # pack sub-byte samples, MSB first
            bits = "".join(format(v, "0%db" % bit_depth) for v in row)
            bits += "0" * (-len(bits) % 8)
            data = bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8))
        rows.append(b"\0" + data)

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0))
    if plte is not None:
        out += chunk(b"PLTE", bytes(plte))
    if trns is not None:
        out += chunk(b"tRNS", bytes(trns))
    return out + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b"")


def seq(n, mod, mul=2654435761, add=12345):
    return [((i * mul + add) >> 7) % mod for i in range(n)]


W, H = 11, 7
files = {}
files["png_rgb16"] = png(W, H, 16, 2, seq(W * H * 3, 65536))
files["png_rgba16"] = png(W, H, 16, 6, seq(W * H * 4, 65536, add=99))
files["png_gray16"] = png(W, H, 16, 0, seq(W * H, 600))  # mode I: convert("RGB") clips at 255
files["png_gray16_alpha"] = png(W, H, 16, 4, seq(W * H * 2, 65536, add=7))
files["png_gray1"] = png(W, H, 1, 0, seq(W * H, 2))
files["png_gray2"] = png(W, H, 2, 0, seq(W * H, 4))
files["png_gray4"] = png(W, H, 4, 0, seq(W * H, 16))
files["png_gray_alpha8"] = png(W, H, 8, 4, seq(W * H * 2, 256))
files["png_gray8_trns"] = png(W, H, 8, 0, seq(W * H, 256), trns=[0, 17])
files["png_rgb8_trns"] = png(W, H, 8, 2, seq(W * H * 3, 256), trns=[0, 1, 0, 2, 0, 3])
files["png_palette4_trns"] = png(W, H, 4, 3, seq(W * H, 12), plte=seq(36, 256, add=5), trns=[0, 128, 255])
files["png_palette1"] = png(W, H, 1, 3, seq(W * H, 2), plte=[200, 10, 30, 5, 250, 90])

photo = Image.fromarray(synth(48, 32, 3), "RGB")


def save(im, fmt, **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


for sub in (0, 1, 2):
    files["jpeg_subsampling%d" % sub] = save(photo, "JPEG", quality=85, subsampling=sub)
files["jpeg_progressive"] = save(photo, "JPEG", quality=80, progressive=True)
files["jpeg_gray"] = save(photo.convert("L"), "JPEG", quality=90)
files["jpeg_cmyk"] = save(photo.convert("CMYK"), "JPEG", quality=90)
files["webp_lossy"] = save(photo, "WEBP", quality=80)
files["webp_lossless"] = save(photo, "WEBP", lossless=True)
rgba = photo.copy()
rgba.putalpha(Image.fromarray(synth(48, 32, 1)[:, :, 0], "L"))
files["webp_lossless_rgba"] = save(rgba, "WEBP", lossless=True, exact=True)
files["webp_lossy_rgba"] = save(rgba, "WEBP", quality=80)
pal = photo.quantize(16)
pal.info["transparency"] = 3
files["gif_transparency"] = save(pal, "GIF", transparency=3)
files["gif_anim"] = save(pal, "GIF", save_all=True, append_images=[photo.rotate(90).quantize(16)], duration=100)
files["bmp_rgb24"] = save(photo, "BMP")
files["bmp_rgba32"] = save(rgba, "BMP")  # Pillow writes BI_RGB 32-bit and reads it back as RGB (BGRX)
files["bmp_gray8"] = save(photo.convert("L"), "BMP")
files["bmp_palette8"] = save(pal, "BMP")
files["bmp_1bit"] = save(photo.convert("1"), "BMP")

decode_cases = []
for name, data in files.items():
    im = Image.open(io.BytesIO(data))
    rgb = np.array(im.convert("RGB"))
    decode_cases.append({
        "name": name, "format": im.format, "mode": im.mode, "width": im.width, "height": im.height,
        "base64": base64.b64encode(data).decode(), "rgb_sha256": sha(rgb),
    })

json.dump({"pillow": PIL.__version__, "numpy": np.__version__, "resize": resize_cases, "decode": decode_cases},
          open(__file__.replace(".py", ".json"), "w"), indent=1)
print(len(resize_cases), "resize cases,", len(decode_cases), "decode cases")
