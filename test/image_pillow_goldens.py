"""Makes test/image_pillow_goldens.json and the input files in test/fixtures/image_formats/: Pillow 9.4.0
outputs the image tests compare against, beyond the shared fixtures (which only use bicubic and a few
formats).

Run with Debian bookworm's python3-pil 9.4.0 (+ python3-numpy):  /usr/bin/python3 test/image_pillow_goldens.py
The output is deterministic (every input is built from integer formulas; zlib and Pillow's encoders are
deterministic for a given version), so re-running it reproduces the committed files.

- "resize": a synthetic image (the same integer formula is in test/image-pillow.test.ts) resized
  with every filter to several sizes; sha256 of the uint8 HWC result.
- "decode": small files in formats/modes the shared fixtures lack, written to
  test/fixtures/image_formats/: every PNG colour type x bit depth, each without and with a tRNS chunk
  (also interlaced), every BMP bit depth / compression / header Pillow reads (1/4/8/16/24/32-bit,
  BI_RGB, BI_BITFIELDS with every mask layout Pillow accepts, BI_RLE8, BI_RLE4, top-down, OS/2 and
  V4/V5 headers, palette edge cases), JPEG, WebP, GIF. For each: Pillow's mode, raw mode and size, whether
  it is gray (modes 1, L, I, LA, and 16-bit gray + alpha PNG, which Pillow 9.4 opens as RGBA), the sha256 of
  np.array(Image.open(file).convert("RGB")), and the sha256 of the uint8 center crop and of the float32
  pixel_values that CLIPImageProcessor (transformers 4.40.2) with BAAI/AltCLIP's settings makes of it.
  transformers is not installed here: clip_process() below is its arithmetic as described in
  test/fixtures/README.md, and this script first checks that it reproduces every pixel_values golden
  of test/fixtures/image_processor/pixel_values.safetensors bit for bit.
- "rle_fuzz": random byte edits / truncations of the RLE data of a few BMPs, each with Pillow's RGB sha256
  or its error; the decoder must give the same pixels or refuse.
- "refused": files Pillow 9.4 refuses to decode (truncated or malformed RLE streams, layouts it does
  not support), with Pillow's error; the decoder must refuse them too, with an error matching
  "error_pattern" (a regex over our message, which also names the file).
"""
import hashlib
import json
import os
import struct
import zlib
from io import BytesIO

import numpy as np
import PIL
from PIL import Image

assert PIL.__version__ == "9.4.0", PIL.__version__

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")
OUT_DIR = os.path.join(FIXTURES, "image_formats")


def synth(w, h, c):
    y, x, ch = np.meshgrid(np.arange(h), np.arange(w), np.arange(c), indexing="ij")
    v = (x * 37 + y * 91 + ch * 53 + ((x * x * 7 + y * 3 + ch) * (y + 5)) % 97) & 255
    return v.astype(np.uint8)


def sha(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


# ---------------------------------------------------------------- CLIPImageProcessor arithmetic
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


def clip_process(im):
    """transformers 4.40.2 CLIPImageProcessor(BAAI/AltCLIP preprocessor_config.json)(images=im):
    convert_to_rgb, resize shortest edge 224 (PIL bicubic, reducing_gap=None), center crop 224,
    rescale (float64 multiply, cast to float32), normalize (float32), CHW. Returns (crop, pixel_values)."""
    rgb = np.array(im.convert("RGB") if im.mode != "RGB" else im)
    h, w = rgb.shape[:2]
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(224 * long / short)
    nw, nh = (224, new_long) if w <= h else (new_long, 224)
    resized = np.array(Image.fromarray(rgb).resize((nw, nh), resample=3, reducing_gap=None))
    top, left = (nh - 224) // 2, (nw - 224) // 2
    crop = resized[top:top + 224, left:left + 224]
    x = (crop * (1 / 255)).astype(np.float32)
    x = (x - MEAN) / STD
    return crop, np.ascontiguousarray(x.transpose(2, 0, 1)).astype("<f4")


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        dt = {"F32": "<f4", "U8": "u1"}[t["dtype"]]
        out[name] = np.frombuffer(data[a:b], dtype=dt).reshape(t["shape"])
    return out


def check_clip_process():
    goldens = read_safetensors(os.path.join(FIXTURES, "image_processor", "pixel_values.safetensors"))
    index = json.load(open(os.path.join(FIXTURES, "image_processor", "pixel_values.json")))
    for spec in index["images"]:
        crop, pv = clip_process(Image.open(os.path.join(FIXTURES, spec["file"])))
        assert np.array_equal(crop, goldens[spec["center_cropped_uint8_hwc"]]), spec["file"]
        assert pv.tobytes() == goldens[spec["pixel_values"]].tobytes(), spec["file"]
    return len(index["images"])


# ---------------------------------------------------------------- resize goldens
resize_cases = []
FILTERS = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
for (w, h, c) in [(37, 23, 3), (37, 23, 1)]:
    arr = synth(w, h, c)
    im = Image.fromarray(arr if c == 3 else arr[:, :, 0], "RGB" if c == 3 else "L")
    for size in [(13, 9), (100, 61), (37, 50), (20, 23), (224, 5), (3, 2), (36, 22)]:
        for f, name in FILTERS.items():
            out = np.array(im.resize(size, resample=f, reducing_gap=None))
            resize_cases.append({"width": w, "height": h, "channels": c, "to": list(size), "filter": name, "sha256": sha(out)})


# ---------------------------------------------------------------- PNG files
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def png(w, h, bit_depth, color_type, samples, plte=None, trns=None, interlace=False, extra_chunks=()):
    """A PNG written by hand (filter 0 on every row), so every colour type / depth / chunk can be made."""
    ch = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]

    def pack(row):
        if bit_depth == 16:
            return b"".join(struct.pack(">H", v) for v in row)
        if bit_depth == 8:
            return bytes(row)
        bits = "".join(format(v, "0%db" % bit_depth) for v in row)  # sub-byte samples, MSB first
        bits += "0" * (-len(bits) % 8)
        return bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8))

    def pixel(x, y):
        return samples[(y * w + x) * ch:(y * w + x + 1) * ch]

    raw = b""
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    for (x0, y0, dx, dy) in passes:
        xs, ys = range(x0, w, dx), range(y0, h, dy)
        if not xs or not ys:
            continue  # an empty pass has no rows at all
        for y in ys:
            raw += b"\0" + pack([v for x in xs for v in pixel(x, y)])

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, int(interlace)))
    for t, d in extra_chunks:
        out += chunk(t, d)
    if plte is not None:
        out += chunk(b"PLTE", bytes(plte))
    if trns is not None:
        out += chunk(b"tRNS", bytes(trns))
    return out + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def seq(n, mod, mul=2654435761, add=12345):
    return [((i * mul + add) >> 7) % mod for i in range(n)]


W, H = 11, 7
files = {}  # name -> (bytes, extension)
PNG_TYPES = {0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16]}
TYPE_NAME = {0: "gray", 2: "rgb", 3: "palette", 4: "gray_alpha", 6: "rgba"}
for ct, depths in PNG_TYPES.items():
    ch = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[ct]
    for depth in depths:
        top = 1 << depth
        if ct == 0 and depth == 16:
            # mode "I": values above 255 clip to 255 in convert("RGB"); keep many of them low
            samples = [v if i % 3 else v % 300 for i, v in enumerate(seq(W * H, 65536, add=depth))]
        else:
            samples = seq(W * H * ch, top, add=ct * 31 + depth)
        plte = seq(3 * top, 256, add=5 + depth) if ct == 3 else None
        variants = [("", None)]
        if ct == 0:
            v = samples[3]  # a value present in the image, so the codec's added alpha has both values
            variants.append(("_trns", list(struct.pack(">H", v))))
        elif ct == 2:
            variants.append(("_trns", [b for s in samples[6:9] for b in struct.pack(">H", s)]))
        elif ct == 3:
            idx = samples[2]
            simple = [255] * top
            simple[idx] = 0  # one fully transparent entry: Pillow's info["transparency"] = index
            variants.append(("_trns", simple[:max(idx + 1, 1)]))
            variants.append(("_trns_alpha", seq(max(1, top // 2 + 1), 256, add=77)[:top]))  # per-entry alpha, shorter than PLTE
        else:
            # tRNS is not allowed with an alpha channel; Pillow ignores it
            variants.append(("_trns_ignored", [0, 1] * (3 if ct == 6 else 1)))
        for suffix, trns in variants:
            name = "png_%s%d%s" % (TYPE_NAME[ct], depth, suffix)
            files[name] = (png(W, H, depth, ct, samples, plte=plte, trns=trns), "png")
            files[name + "_interlaced"] = (png(W, H, depth, ct, samples, plte=plte, trns=trns, interlace=True), "png")
# a PLTE with fewer entries than 2^depth (all indices inside it)
files["png_palette8_short_plte"] = (png(W, H, 8, 3, seq(W * H, 40), plte=seq(3 * 40, 256, add=9)), "png")
# colour chunks Pillow does not apply: gAMA, cHRM, sRGB, sBIT (stored values are used as they are)
# indices past the PLTE entries (and no PLTE at all): Pillow's palette is a gray ramp there
files["png_palette4_index_past_plte"] = (png(W, H, 4, 3, seq(W * H, 16, add=4), plte=seq(3 * 5, 256, add=2)), "png")
files["png_palette8_index_past_plte_trns"] = (png(W, H, 8, 3, seq(W * H, 256, add=8), plte=seq(3 * 100, 256, add=3), trns=seq(60, 256)), "png")
files["png_palette2_no_plte"] = (png(W, H, 2, 3, seq(W * H, 4, add=2)), "png")
files["png_rgb8_gama_chrm_sbit"] = (png(W, H, 8, 2, seq(W * H * 3, 256, add=3), extra_chunks=[
    (b"gAMA", struct.pack(">I", 100000)),
    (b"cHRM", struct.pack(">8I", 31270, 32900, 64000, 33000, 30000, 60000, 15000, 6000)),
    (b"sBIT", bytes([5, 6, 5]))]), "png")
files["png_gray16_trns_1x1"] = (png(1, 1, 16, 0, [700], trns=[0x02, 0xbc]), "png")
files["png_gray16_trns_low"] = (png(W, H, 16, 0, seq(W * H, 256, add=1), trns=[0, 7]), "png")  # every value <= 255


# ---------------------------------------------------------------- BMP files
def bmp(w, h, bpp, data, compression=0, palette=None, header=40, colors_used=0, offset=None, masks=None,
        topdown=False, masks_in_header=None):
    """A BMP written by hand. palette: [(r, g, b)]; masks: (r, g, b[, a]) written after a 40-byte header
    (3 masks) or inside a V4/V5 header (4 masks)."""
    ent = 3 if header == 12 else 4
    pal = b"" if palette is None else b"".join(bytes([b, g, r] + [0] * (ent - 3)) for (r, g, b) in palette)
    if header == 12:
        hd = struct.pack("<IHHHH", 12, w, h, 1, bpp)
    else:
        hd = struct.pack("<IiiHHIIiiII", header, w, -h if topdown else h, 1, bpp, compression, len(data), 2835, 2835, colors_used, 0)
        if masks is not None and header >= 56:
            hd += struct.pack("<4I", *(list(masks) + [0])[:4])
        hd += b"\0" * (header - len(hd))
    mk = struct.pack("<3I", *masks[:3]) if masks is not None and header == 40 else b""
    body = hd + mk + pal
    off = 14 + len(body) if offset is None else offset
    return b"BM" + struct.pack("<IHHI", 14 + len(body) + len(data), 0, 0, off) + body + data


def rows_bottom_up(pix, w, h, topdown=False):
    return [pix[y * w:(y + 1) * w] for y in (range(h) if topdown else reversed(range(h)))]


def pack_rows(pix, w, h, bpp, topdown=False):
    stride = ((w * bpp + 31) >> 3) & ~3
    out = b""
    for row in rows_bottom_up(pix, w, h, topdown):
        if bpp >= 8:
            b = b"".join(v.to_bytes(bpp // 8, "little") for v in row)
        else:
            bits = "".join(format(v, "0%db" % bpp) for v in row)
            bits += "0" * (-len(bits) % 8)
            b = bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8))
        out += b + b"\0" * (stride - len(b))
    return out


def rle8(pix, w, h, topdown=False):
    """A standard BI_RLE8 stream: runs, absolute runs (>= 3, padded to a word), EOL per row, EOB."""
    out = b""
    for row in rows_bottom_up(pix, w, h, topdown):
        i = 0
        while i < w:
            j = i
            while j < w and j - i < 255 and row[j] == row[i]:
                j += 1
            if j - i >= 2:
                out += bytes([j - i, row[i]])
                i = j
                continue
            j = i  # literal up to the next pair of equal pixels
            while j < w and j - i < 255 and not (j + 1 < w and row[j] == row[j + 1]):
                j += 1
            lit = row[i:j]
            if len(lit) >= 3:
                out += bytes([0, len(lit)] + lit) + (b"\0" if len(lit) % 2 else b"")
            else:
                out += b"".join(bytes([1, v]) for v in lit)
            i = j
        out += b"\0\0"
    return out + b"\0\1"


def rle4(pix, w, h, topdown=False, odd_literals=False):
    """A standard BI_RLE4 stream: runs of two alternating indices, absolute runs, EOL per row, EOB.
    Absolute runs have an even number of pixels unless odd_literals (Pillow 9.4 reads n // 2 bytes
    of an absolute run of n pixels, so odd runs decode differently from the BMP spec there)."""
    out = b""
    for row in rows_bottom_up(pix, w, h, topdown):
        i = 0
        while i < w:
            j = i + 2  # run of alternating pair row[i], row[i+1]
            while j < w and j - i < 255 and row[j] == row[i + (j - i) % 2]:
                j += 1
            if i + 1 < w and j - i >= 4:
                out += bytes([j - i, (row[i] << 4) | row[i + 1]])
                i = j
                continue
            n = min(w - i, 5 if odd_literals else 6)
            if not odd_literals:
                n -= n % 2
            if n >= (3 if odd_literals else 4):
                lit = row[i:i + n] + [0] * (n % 2)
                data = bytes((lit[k] << 4) | lit[k + 1] for k in range(0, len(lit), 2))
                out += bytes([0, n]) + data + (b"\0" if len(data) % 2 else b"")
            else:
                n = 1
                out += bytes([1, row[i] << 4])
            i += n
        out += b"\0\0"
    return out + b"\0\1"


BW, BH = 13, 6
pal256 = [tuple(seq(3, 256, add=7 * i + 1)) for i in range(256)]
pal16 = pal256[:16]
pal2 = [(200, 30, 60), (10, 220, 120)]
gray_pal = [(i, i, i) for i in range(256)]
pix8 = seq(BW * BH, 256, add=11)
pix4 = seq(BW * BH, 16, add=12)
pix1 = seq(BW * BH, 2, add=13)
blocky8 = [((x // 3) * 37 + (y // 2) * 11) % 256 for y in range(BH) for x in range(BW)]  # runs for RLE
blocky4 = [((x // 3) * 5 + (y // 2) * 3) % 16 for y in range(BH) for x in range(BW)]
pix16 = seq(BW * BH, 65536, add=14)
pix24 = seq(BW * BH, 1 << 24, add=15)
pix32 = seq(BW * BH, 1 << 32, add=16)

files["bmp_1bit_palette"] = (bmp(BW, BH, 1, pack_rows(pix1, BW, BH, 1), palette=pal2), "bmp")
files["bmp_1bit_bw"] = (bmp(BW, BH, 1, pack_rows(pix1, BW, BH, 1), palette=[(0, 0, 0), (255, 255, 255)]), "bmp")  # mode "1"
files["bmp_1bit_topdown"] = (bmp(BW, BH, 1, pack_rows(pix1, BW, BH, 1, True), palette=pal2, topdown=True), "bmp")
files["bmp_1bit_os2"] = (bmp(BW, BH, 1, pack_rows(pix1, BW, BH, 1), palette=pal2, header=12), "bmp")
files["bmp_4bit"] = (bmp(BW, BH, 4, pack_rows(pix4, BW, BH, 4), palette=pal16), "bmp")
files["bmp_4bit_topdown"] = (bmp(BW, BH, 4, pack_rows(pix4, BW, BH, 4, True), palette=pal16, topdown=True), "bmp")
files["bmp_4bit_os2"] = (bmp(BW, BH, 4, pack_rows(pix4, BW, BH, 4), palette=pal16, header=12), "bmp")
# 5 palette entries, indices up to 15: Pillow's palette starts as a gray ramp, so index i > 4 shows (i, i, i)
files["bmp_4bit_short_palette"] = (bmp(BW, BH, 4, pack_rows(pix4, BW, BH, 4), palette=pal16[:5], colors_used=5), "bmp")
files["bmp_8bit"] = (bmp(BW, BH, 8, pack_rows(pix8, BW, BH, 8), palette=pal256), "bmp")
files["bmp_8bit_topdown"] = (bmp(BW, BH, 8, pack_rows(pix8, BW, BH, 8, True), palette=pal256, topdown=True), "bmp")
files["bmp_8bit_os2"] = (bmp(BW, BH, 8, pack_rows(pix8, BW, BH, 8), palette=pal256, header=12), "bmp")
files["bmp_8bit_short_palette"] = (bmp(BW, BH, 8, pack_rows(pix8, BW, BH, 8), palette=pal256[:20], colors_used=20), "bmp")
files["bmp_8bit_gray"] = (bmp(BW, BH, 8, pack_rows(pix8, BW, BH, 8), palette=gray_pal), "bmp")  # mode "L"
files["bmp_8bit_gray_short"] = (bmp(BW, BH, 8, pack_rows(pix8, BW, BH, 8), palette=gray_pal[:100], colors_used=100), "bmp")
# a 2-entry black/white palette makes Pillow 9.4 open the file as mode "1" and read 1 bit per pixel
# from the 8-bit rows (BmpImagePlugin: rawmode "1" whatever the bit depth)
files["bmp_8bit_bw_palette"] = (bmp(BW, BH, 8, pack_rows(pix8, BW, BH, 8), palette=[(0, 0, 0), (255, 255, 255)], colors_used=2), "bmp")
files["bmp_4bit_bw_palette"] = (bmp(BW, BH, 4, pack_rows(pix4, BW, BH, 4), palette=[(0, 0, 0), (255, 255, 255)], colors_used=2), "bmp")
# pixel offset pointing right after the header: Pillow skips 4 bytes per palette entry anyway
files["bmp_8bit_offset_quirk"] = (bmp(BW, BH, 8, pack_rows(pix8, BW, BH, 8), palette=pal256[:16], colors_used=16, offset=54), "bmp")
files["bmp_16bit_555"] = (bmp(BW, BH, 16, pack_rows(pix16, BW, BH, 16)), "bmp")
files["bmp_16bit_555_topdown"] = (bmp(BW, BH, 16, pack_rows(pix16, BW, BH, 16, True), topdown=True), "bmp")
files["bmp_16bit_bitfields_565"] = (bmp(BW, BH, 16, pack_rows(pix16, BW, BH, 16), 3, masks=(0xF800, 0x7E0, 0x1F)), "bmp")
files["bmp_16bit_bitfields_555"] = (bmp(BW, BH, 16, pack_rows(pix16, BW, BH, 16), 3, masks=(0x7C00, 0x3E0, 0x1F)), "bmp")
files["bmp_16bit_bitfields_565_v5"] = (bmp(BW, BH, 16, pack_rows(pix16, BW, BH, 16), 3, header=124, masks=(0xF800, 0x7E0, 0x1F, 0)), "bmp")
files["bmp_24bit"] = (bmp(BW, BH, 24, pack_rows(pix24, BW, BH, 24)), "bmp")
files["bmp_24bit_topdown"] = (bmp(BW, BH, 24, pack_rows(pix24, BW, BH, 24, True), topdown=True), "bmp")
files["bmp_24bit_os2"] = (bmp(BW, BH, 24, pack_rows(pix24, BW, BH, 24), header=12), "bmp")
files["bmp_24bit_bitfields"] = (bmp(BW, BH, 24, pack_rows(pix24, BW, BH, 24), 3, masks=(0xFF0000, 0xFF00, 0xFF)), "bmp")
for hs in (64, 108, 124):
    files["bmp_24bit_header%d" % hs] = (bmp(BW, BH, 24, pack_rows(pix24, BW, BH, 24), header=hs), "bmp")
files["bmp_32bit"] = (bmp(BW, BH, 32, pack_rows(pix32, BW, BH, 32)), "bmp")  # BI_RGB: BGRX, the 4th byte ignored
files["bmp_32bit_topdown"] = (bmp(BW, BH, 32, pack_rows(pix32, BW, BH, 32, True), topdown=True), "bmp")
for label, m in [("bgrx", (0xFF0000, 0xFF00, 0xFF, 0)), ("xbgr", (0xFF000000, 0xFF0000, 0xFF00, 0)),
                 ("abgr", (0xFF000000, 0xFF0000, 0xFF00, 0xFF)), ("rgba", (0xFF, 0xFF00, 0xFF0000, 0xFF000000)),
                 ("bgra", (0xFF0000, 0xFF00, 0xFF, 0xFF000000)), ("zero_masks", (0, 0, 0, 0))]:
    files["bmp_32bit_bitfields_%s_v5" % label] = (bmp(BW, BH, 32, pack_rows(pix32, BW, BH, 32), 3, header=124, masks=m), "bmp")
files["bmp_32bit_bitfields_bgrx_v4_topdown"] = (bmp(BW, BH, 32, pack_rows(pix32, BW, BH, 32, True), 3, header=108, masks=(0xFF0000, 0xFF00, 0xFF, 0), topdown=True), "bmp")
files["bmp_32bit_bitfields_xbgr_40"] = (bmp(BW, BH, 32, pack_rows(pix32, BW, BH, 32), 3, masks=(0xFF000000, 0xFF0000, 0xFF00)), "bmp")
# RLE8 / RLE4: standard streams from an encoder, and the corner cases of Pillow 9.4's BmpRleDecoder
files["bmp_rle8"] = (bmp(BW, BH, 8, rle8(blocky8, BW, BH), 1, palette=pal256), "bmp")
files["bmp_rle8_noisy"] = (bmp(BW, BH, 8, rle8(pix8, BW, BH), 1, palette=pal256), "bmp")  # mostly absolute runs
files["bmp_rle8_topdown"] = (bmp(BW, BH, 8, rle8(blocky8, BW, BH, True), 1, palette=pal256, topdown=True), "bmp")
files["bmp_rle8_gray"] = (bmp(BW, BH, 8, rle8(blocky8, BW, BH), 1, palette=gray_pal), "bmp")  # mode "L"
files["bmp_rle8_short_palette"] = (bmp(BW, BH, 8, rle8(blocky8, BW, BH), 1, palette=pal256[:30], colors_used=30), "bmp")
files["bmp_rle4"] = (bmp(BW, BH, 4, rle4(blocky4, BW, BH), 2, palette=pal16), "bmp")
files["bmp_rle4_noisy"] = (bmp(BW, BH, 4, rle4(pix4, BW, BH), 2, palette=pal16), "bmp")
files["bmp_rle4_topdown"] = (bmp(BW, BH, 4, rle4(blocky4, BW, BH, True), 2, palette=pal16, topdown=True), "bmp")
files["bmp_rle4_odd_literals"] = (bmp(BW, BH, 4, rle4(pix4, BW, BH, odd_literals=True), 2, palette=pal16), "bmp")
# end of line early: the rest of the row is index 0
files["bmp_rle8_eol"] = (bmp(4, 3, 8, bytes([2, 7, 0, 0, 1, 9, 0, 0, 4, 5, 0, 1]), 1, palette=pal16, colors_used=16), "bmp")
files["bmp_rle4_eol"] = (bmp(4, 3, 4, bytes([3, 0x7a, 0, 0, 2, 0x11, 0, 0, 4, 0x5b, 0, 1]), 2, palette=pal16, colors_used=16), "bmp")
# delta: Pillow 9.4 reads the two delta bytes and then reads two more bytes as (right, up); the skipped
# pixels are index 0
files["bmp_rle8_delta"] = (bmp(5, 4, 8, bytes([2, 3, 0, 2, 9, 9, 1, 1, 3, 6, 0, 0, 5, 8, 0, 0, 5, 2, 0, 1]), 1, palette=pal16, colors_used=16), "bmp")
files["bmp_rle4_delta"] = (bmp(5, 4, 4, bytes([2, 0x31, 0, 2, 9, 9, 2, 0, 3, 0x66, 0, 0, 5, 0x8f, 0, 0, 5, 0x21, 0, 0, 5, 0x43, 0, 1]), 2, palette=pal16, colors_used=16), "bmp")
files["bmp_rle8_delta_past_end"] = (bmp(4, 2, 8, bytes([4, 3, 0, 2, 0, 0, 0, 9]), 1, palette=pal16, colors_used=16), "bmp")
# a run longer than the rest of the row is cut at the row end; the next run in the same row is empty
files["bmp_rle8_run_overflow"] = (bmp(4, 2, 8, bytes([6, 3, 2, 9, 0, 0, 4, 5, 0, 1]), 1, palette=pal16, colors_used=16), "bmp")
# an absolute run longer than the row continues on the next row
files["bmp_rle8_absolute_overflow"] = (bmp(4, 2, 8, bytes([0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0, 1]), 1, palette=pal16, colors_used=16), "bmp")
# an end of line at the start of a row does nothing in Pillow 9.4 (it pads to the next row boundary)
files["bmp_rle8_double_eol"] = (bmp(4, 3, 8, bytes([4, 1, 0, 0, 0, 0, 4, 2, 0, 0, 4, 3, 0, 0, 0, 1]), 1, palette=pal16, colors_used=16), "bmp")
# pixel data at an odd file offset: Pillow aligns after an absolute run by the file position, not by
# the position in the RLE data (so this stream has no pad byte after its 3-pixel absolute run)
files["bmp_rle8_odd_offset"] = (bmp(4, 2, 8, bytes([0, 0, 3, 5, 6, 7, 1, 8, 0, 0, 4, 9, 0, 1]), 1, palette=pal16, colors_used=16, offset=14 + 40 + 64 + 1), "bmp")
# more data than pixels: the rest is ignored
files["bmp_rle8_extra_data"] = (bmp(4, 1, 8, bytes([4, 3, 0, 0, 4, 9, 0, 0, 0, 1]), 1, palette=pal16, colors_used=16), "bmp")
# RLE8 with a 4-bit header (index bytes used as they are), RLE4 with an 8-bit header
files["bmp_rle8_4bit_header"] = (bmp(4, 2, 4, bytes([4, 9, 0, 0, 4, 14, 0, 1]), 1, palette=pal16), "bmp")
files["bmp_rle4_8bit_header"] = (bmp(4, 2, 8, bytes([4, 0x9a, 0, 0, 4, 0x21, 0, 1]), 2, palette=pal256), "bmp")

refused = {}  # name -> (bytes, extension, error_pattern)
refused["bmp_rle8_early_eob"] = (bmp(4, 2, 8, bytes([4, 1, 0, 0, 1, 3, 0, 1]), 1, palette=pal16, colors_used=16), "bmp", "RLE data ends before the last pixel")
refused["bmp_rle8_truncated"] = (bmp(BW, BH, 8, rle8(blocky8, BW, BH)[:-9], 1, palette=pal256), "bmp", "RLE data ends before the last pixel")
refused["bmp_rle4_truncated"] = (bmp(BW, BH, 4, rle4(blocky4, BW, BH)[:-7], 2, palette=pal16), "bmp", "RLE data ends before the last pixel")
refused["bmp_rle8_truncated_absolute"] = (bmp(4, 2, 8, bytes([4, 1, 0, 0, 0, 4, 1, 2]), 1, palette=pal16, colors_used=16), "bmp", "RLE data ends before the last pixel")
refused["bmp_rle8_truncated_delta"] = (bmp(4, 2, 8, bytes([4, 1, 0, 0, 0, 2, 1, 0, 1]), 1, palette=pal16, colors_used=16), "bmp", "RLE data ends inside a delta")
refused["bmp_rle8_row_overrun"] = (bmp(4, 2, 8, bytes([4, 1, 4, 2, 0, 1]), 1, palette=pal16, colors_used=16), "bmp", "RLE data ends before the last pixel")
refused["bmp_rle4_odd_literal_desync"] = (bmp(4, 2, 4, bytes([0, 5, 0x12, 0x34, 0x50, 0, 0, 0, 0, 1]), 2, palette=pal16, colors_used=16), "bmp", "RLE data ends before the last pixel")
refused["bmp_rle8_24bit"] = (bmp(4, 1, 24, bytes([4, 1, 0, 1]), 1), "bmp", "RLE compression with 24 bits per pixel")
refused["bmp_rle8_1bit_bw"] = (bmp(4, 1, 1, bytes([4, 1, 0, 1]), 1, palette=[(0, 0, 0), (255, 255, 255)]), "bmp", "RLE compression of a black-and-white")
refused["bmp_4bit_gray_palette"] = (bmp(8, 1, 4, bytes([0x01, 0x23, 0x45, 0x67]), palette=gray_pal[:16]), "bmp", "gray palette")
refused["bmp_8bit_300_colors"] = (bmp(4, 1, 8, bytes([1, 2, 3, 4]), palette=[(i % 256, 0, 0) for i in range(300)], colors_used=300), "bmp", "300 palette entries")
refused["bmp_16bit_bitfields_444"] = (bmp(4, 1, 16, bytes(8), 3, masks=(0xF00, 0xF0, 0xF)), "bmp", "bitfields layout")
refused["bmp_32bit_bitfields_10bit"] = (bmp(4, 1, 32, bytes(16), 3, header=124, masks=(0x3FF00000, 0xFFC00, 0x3FF, 0)), "bmp", "bitfields layout")
refused["bmp_8bit_bitfields"] = (bmp(4, 1, 8, bytes(4), 3, palette=pal16, masks=(0xE0, 0x1C, 0x3)), "bmp", "bitfields layout")
refused["bmp_2bit"] = (bmp(4, 1, 2, bytes(4), palette=pal16[:4]), "bmp", "2 bits per pixel")
refused["bmp_jpeg_compression"] = (bmp(4, 1, 24, bytes(12), 4), "bmp", "compression 4")
refused["bmp_header56"] = (bmp(4, 1, 24, bytes(12), header=56), "bmp", "header size 56")
refused["bmp_24bit_truncated"] = (bmp(BW, BH, 24, pack_rows(pix24, BW, BH, 24)[:-30]), "bmp", "truncated pixel data")

# ---------------------------------------------------------------- other formats (Pillow's encoders)
photo = Image.fromarray(synth(48, 32, 3), "RGB")


def save(im, fmt, **kw):
    b = BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


for sub in (0, 1, 2):
    files["jpeg_subsampling%d" % sub] = (save(photo, "JPEG", quality=85, subsampling=sub), "jpg")
files["jpeg_progressive"] = (save(photo, "JPEG", quality=80, progressive=True), "jpg")
files["jpeg_gray"] = (save(photo.convert("L"), "JPEG", quality=90), "jpg")
files["jpeg_cmyk"] = (save(photo.convert("CMYK"), "JPEG", quality=90), "jpg")
files["webp_lossy"] = (save(photo, "WEBP", quality=80), "webp")
files["webp_lossless"] = (save(photo, "WEBP", lossless=True), "webp")
rgba = photo.copy()
rgba.putalpha(Image.fromarray(synth(48, 32, 1)[:, :, 0], "L"))
files["webp_lossless_rgba"] = (save(rgba, "WEBP", lossless=True, exact=True), "webp")
files["webp_lossy_rgba"] = (save(rgba, "WEBP", quality=80), "webp")
pal = photo.quantize(16)
pal.info["transparency"] = 3
files["gif_transparency"] = (save(pal, "GIF", transparency=3), "gif")
files["gif_anim"] = (save(pal, "GIF", save_all=True, append_images=[photo.rotate(90).quantize(16)], duration=100), "gif")
files["bmp_pillow_rgb24"] = (save(photo, "BMP"), "bmp")
files["bmp_pillow_rgba32"] = (save(rgba, "BMP"), "bmp")  # Pillow writes BI_RGB 32-bit and reads it back as RGB (BGRX)
files["bmp_pillow_gray8"] = (save(photo.convert("L"), "BMP"), "bmp")
files["bmp_pillow_palette8"] = (save(pal, "BMP"), "bmp")
files["bmp_pillow_1bit"] = (save(photo.convert("1"), "BMP"), "bmp")


# ---------------------------------------------------------------- RLE streams with random damage
def rle_fuzz_cases(n_per_file=60, seed=20240):
    """Random edits of the RLE data of a few files (bytes biased towards the escape codes 0, 1, 2, and
    truncations), each with Pillow's answer: the RGB sha256, or its error. The decoder must agree on
    every one: the same pixels, or a refusal."""
    import random
    rng = random.Random(seed)
    cases = []
    for base in ["bmp_rle8", "bmp_rle8_noisy", "bmp_rle4", "bmp_rle4_odd_literals", "bmp_rle8_delta", "bmp_rle4_delta",
                 "bmp_rle8_odd_offset"]:
        data = files[base][0]
        start = struct.unpack("<I", data[10:14])[0]
        for _ in range(n_per_file):
            edits = []
            for _ in range(rng.randint(1, 4)):
                pos = rng.randrange(start, len(data))
                val = rng.choice([0, 0, 1, 2, rng.randrange(256), rng.randrange(16), 255])
                edits.append([pos, val])
            truncate = rng.randrange(start, len(data)) if rng.random() < 0.25 else None
            b = bytearray(data)
            for pos, val in edits:
                b[pos] = val
            if truncate is not None:
                b = b[:truncate]
            case = {"base": base, "edits": edits, "truncate": truncate}
            try:
                case["rgb_sha256"] = sha(np.array(Image.open(BytesIO(bytes(b))).convert("RGB")))
            except Exception as e:  # noqa: BLE001 - recorded as Pillow's answer
                case["pillow_error"] = "%s: %s" % (type(e).__name__, e)
            cases.append(case)
    return cases


# ---------------------------------------------------------------- write files and goldens
def main():
    n_checked = check_clip_process()
    os.makedirs(OUT_DIR, exist_ok=True)
    for f in os.listdir(OUT_DIR):
        os.remove(os.path.join(OUT_DIR, f))
    decode_cases = []
    for name, (data, ext) in files.items():
        path = os.path.join(OUT_DIR, "%s.%s" % (name, ext))
        open(path, "wb").write(data)
        im = Image.open(path)  # opened from the path, as the fixtures' goldens are
        mode, fmt, size = im.mode, im.format, im.size
        args = im.tile[0][3] if im.tile else None  # (WebP has no tile: it decodes in open)
        rawmode = args if isinstance(args, str) or args is None else args[0]
        rgb = np.array(im.convert("RGB"))
        # from bytes (no memory mapping of raw BMP rows) Pillow gives the same pixels
        assert np.array_equal(rgb, np.array(Image.open(BytesIO(data)).convert("RGB"))), name
        crop, pv = clip_process(Image.open(path))
        decode_cases.append({
            "name": name, "file": "fixtures/image_formats/%s.%s" % (name, ext), "format": fmt, "mode": mode,
            "rawmode": rawmode, "gray": mode in ("1", "L", "I", "LA") or rawmode == "LA;16B",
            "width": size[0], "height": size[1], "rgb_sha256": sha(rgb),
            "center_cropped_sha256": sha(crop), "pixel_values_sha256": sha(pv),
        })
    refused_cases = []
    for name, (data, ext, pattern) in refused.items():
        path = os.path.join(OUT_DIR, "%s.%s" % (name, ext))
        open(path, "wb").write(data)
        case = {"name": name, "file": "fixtures/image_formats/%s.%s" % (name, ext), "error_pattern": pattern}
        for how, src in [("pillow_error", BytesIO(data)), ("pillow_error_from_path", path)]:
            try:
                Image.open(src).convert("RGB")
                case[how] = None
            except Exception as e:  # noqa: BLE001 - recorded as Pillow's answer
                case[how] = "%s: %s" % (type(e).__name__, e)
        # Pillow refuses the bytes. From a path, an 8-bit raw BMP is memory-mapped instead, and a
        # row layout the raw decoder refuses is then read as overlapping rows (bmp_4bit_gray_palette).
        assert case["pillow_error"] is not None, "Pillow decodes %s" % name
        refused_cases.append(case)
    fuzz = rle_fuzz_cases()
    json.dump({"pillow": PIL.__version__, "numpy": np.__version__,
               "clip_process_checked_on_fixture_images": n_checked,
               "resize": resize_cases, "decode": decode_cases, "refused": refused_cases,
               "rle_fuzz": fuzz},
              open(os.path.join(HERE, "image_pillow_goldens.json"), "w"), indent=1)
    print(len(resize_cases), "resize cases,", len(decode_cases), "decode cases,", len(refused_cases), "refused cases,",
          len(fuzz), "RLE fuzz cases (%d decoded by Pillow)" % sum("rgb_sha256" in c for c in fuzz))


main()
