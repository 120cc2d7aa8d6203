"""Eager PyTorch AltCLIP: the benchmark's baseline.

The same architecture as transformers 4.40.2's modeling_altclip.py, written with standard
nn.Linear / nn.LayerNorm / matmul-softmax attention, with module attribute names equal to the
checkpoint's tensor names (test/fixtures/README.md, "AltCLIP behaviour the goldens pin down").
Loads a safetensors checkpoint (the header is parsed here; tensors are read with numpy).

  OPENBLAS_NUM_THREADS=1 python3 bench/torch_baseline.py bench --model DIR --inputs IN.safetensors \
      --out FEATURES.safetensors --threads 2 [--rows image1,image8,text1,text32] [--reps N]
  python3 bench/torch_baseline.py verify --fixtures test/fixtures
  python3 bench/torch_baseline.py check-goldens     # every tensor of the transformers-made tiny goldens
  python3 bench/torch_baseline.py make-goldens --model test/fixtures/models/tiny-altclip-m18 \
      --out test/fixtures/goldens/tiny-altclip-m18

`bench` prints one JSON object (times in seconds, medians after warm-up, peak RSS in bytes).
`verify` checks get_text_features / get_image_features against the tiny fixtures' goldens (1e-4).
Thread settings must be in the environment before torch is imported: the parent process sets
OPENBLAS_NUM_THREADS (and OMP_NUM_THREADS) for each run.

A fair baseline (issue 19): `bench` needs OpenBLAS (Debian: libopenblas0-pthread, which libblas.so.3
then points to; the reference BLAS is ~50x slower) and lets it choose its own kernels: before torch
(and OpenBLAS with it) is loaded, OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed from this
process's environment (this workplace sets them to Haswell / 512, which slowed torch's GEMMs ~1.3x on
an AVX-512 CPU), OPENBLAS_VERBOSE=2 makes OpenBLAS print the kernel it picked ("Core: ..." on stderr),
and the JSON reports it (`openblas`). Weights are read into memory owned by each tensor, as
transformers' from_pretrained leaves them (load_state_dict copies into the parameters): no views
of a copy-on-write mmap of the file, which made forward passes 2.5-4x slower (the JSON's
`weights_file_mapped` says so).
"""
import os
import sys

if len(sys.argv) > 1 and sys.argv[1] == "bench":
    REMOVED_OPENBLAS_ENV = {k: os.environ.pop(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}
    os.environ["OPENBLAS_VERBOSE"] = "2"
else:
    REMOVED_OPENBLAS_ENV = {}

import argparse  # noqa: E402 (after the environment is set for OpenBLAS)
import ctypes  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

META = dict(device="meta")

# ---- safetensors (format: u64 header length, JSON header, raw little-endian data) ----

_DTYPES = {"F32": "<f4", "F64": "<f8", "I64": "<i8", "U8": "u1"}


def read_safetensors(path, names=None):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    out = {}
    for name, e in header.items():
        if name == "__metadata__" or (names is not None and name not in names):
            continue
        if e["dtype"] not in _DTYPES:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {e['dtype']}")
        b, end = e["data_offsets"]
        dt = np.dtype(_DTYPES[e["dtype"]])
        a = np.fromfile(path, dtype=dt, count=(end - b) // dt.itemsize, offset=8 + n + b)
        out[name] = torch.from_numpy(a.reshape(e["shape"]))
    return out


_WRITE = {torch.float32: ("F32", "<f4"), torch.float64: ("F64", "<f8"), torch.int64: ("I64", "<i8")}


def write_safetensors(path, tensors, metadata=None):
    """float32 unless the tensor is float64 or int64 (kept as they are)."""
    header, offset, blobs = ({"__metadata__": metadata} if metadata else {}), 0, []
    for name in sorted(tensors):
        t = tensors[name].detach()
        code, np_dtype = _WRITE.get(t.dtype, _WRITE[torch.float32])
        a = np.array(t.numpy(), dtype=np_dtype, order="C")  # (ascontiguousarray would make a 0-d loss 1-d)
        header[name] = {"dtype": code, "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        blobs.append(a.tobytes())
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)


# ---- config: sparse config.json filled with the class defaults (test/fixtures/README.md) ----

TEXT_DEFAULTS = dict(vocab_size=250002, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                     intermediate_size=4096, hidden_act="gelu", max_position_embeddings=514, type_vocab_size=1,
                     layer_norm_eps=1e-5, pad_token_id=1, project_dim=768)
VISION_DEFAULTS = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                       num_channels=3, image_size=224, patch_size=32, hidden_act="quick_gelu", layer_norm_eps=1e-5)


def load_config(folder):
    with open(os.path.join(folder, "config.json")) as f:
        c = json.load(f)
    text = {**TEXT_DEFAULTS, **c.get("text_config", {})}
    vision = {**VISION_DEFAULTS, **c.get("vision_config", {})}
    return text, vision, c.get("projection_dim", 768)


def activation(name):
    if name == "gelu":
        return nn.GELU()  # exact erf GELU
    if name == "quick_gelu":
        return lambda x: x * torch.sigmoid(1.702 * x)
    raise ValueError(f"unsupported hidden_act {name}")


def split_heads(x, heads):
    b, l, d = x.shape
    return x.view(b, l, heads, d // heads).transpose(1, 2)


def merge_heads(x):
    b, h, l, d = x.shape
    return x.transpose(1, 2).reshape(b, l, h * d)


# ---- text tower: XLM-R (post-LN BERT blocks), then pre_LN and transformation ----

class RobertaEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.word_embeddings = nn.Embedding(c["vocab_size"], c["hidden_size"], **META)
        self.position_embeddings = nn.Embedding(c["max_position_embeddings"], c["hidden_size"], **META)
        self.token_type_embeddings = nn.Embedding(c["type_vocab_size"], c["hidden_size"], **META)
        self.LayerNorm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"], **META)
        self.pad = c["pad_token_id"]

    def forward(self, input_ids):
        # create_position_ids_from_input_ids: positions count real tokens, pads get padding_idx.
        m = (input_ids != self.pad).long()
        pos = torch.cumsum(m, dim=1) * m + self.pad
        x = self.word_embeddings(input_ids) + self.token_type_embeddings.weight[0] + self.position_embeddings(pos)
        return self.LayerNorm(x)


class RobertaSelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        h = c["hidden_size"]
        self.heads = c["num_attention_heads"]
        self.query = nn.Linear(h, h, **META)
        self.key = nn.Linear(h, h, **META)
        self.value = nn.Linear(h, h, **META)

    def forward(self, x, mask_add):
        q, k, v = (split_heads(p(x), self.heads) for p in (self.query, self.key, self.value))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1]) + mask_add
        return merge_heads(torch.matmul(scores.softmax(-1), v))


class DenseLN(nn.Module):  # RobertaSelfOutput / RobertaOutput: LN(dense(x) + residual)
    def __init__(self, n_in, c):
        super().__init__()
        self.dense = nn.Linear(n_in, c["hidden_size"], **META)
        self.LayerNorm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"], **META)

    def forward(self, x, residual):
        return self.LayerNorm(self.dense(x) + residual)


class RobertaAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self = RobertaSelfAttention(c)
        self.output = DenseLN(c["hidden_size"], c)


class RobertaIntermediate(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["intermediate_size"], **META)
        self.act = activation(c["hidden_act"])

    def forward(self, x):
        return self.act(self.dense(x))


class RobertaLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.attention = RobertaAttention(c)
        self.intermediate = RobertaIntermediate(c)
        self.output = DenseLN(c["intermediate_size"], c)

    def forward(self, x, mask_add):
        h = self.attention.output(self.attention.self(x, mask_add), x)
        return self.output(self.intermediate(h), h)


class RobertaEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layer = nn.ModuleList(RobertaLayer(c) for _ in range(c["num_hidden_layers"]))


class Roberta(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = RobertaEmbeddings(c)
        self.encoder = RobertaEncoder(c)


class AltRobertaModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.roberta = Roberta(c)
        self.pre_LN = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"], **META)
        self.transformation = nn.Linear(c["hidden_size"], c["project_dim"], **META)

    def forward(self, input_ids, attention_mask):
        x = self.roberta.embeddings(input_ids)
        mask_add = (1.0 - attention_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        for layer in self.roberta.encoder.layer:
            x = layer(x, mask_add)
        seq = self.transformation(self.pre_LN(x))
        return seq[:, 0]  # pooler_output: row 0 (the <s> position), no tanh pooler


# ---- vision tower: CLIP ViT (pre-LN blocks), post_layernorm of the class token ----

class VisionEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, p = c["hidden_size"], c["patch_size"]
        self.class_embedding = nn.Parameter(torch.empty(d, **META))
        self.patch_embedding = nn.Conv2d(c["num_channels"], d, p, stride=p, bias=False, **META)
        self.position_embedding = nn.Embedding((c["image_size"] // p) ** 2 + 1, d, **META)

    def forward(self, pixel_values):
        x = self.patch_embedding(pixel_values).flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        return torch.cat([cls, x], dim=1) + self.position_embedding.weight


class CLIPAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["hidden_size"]
        self.heads = c["num_attention_heads"]
        self.scale = (d // self.heads) ** -0.5
        self.q_proj = nn.Linear(d, d, **META)
        self.k_proj = nn.Linear(d, d, **META)
        self.v_proj = nn.Linear(d, d, **META)
        self.out_proj = nn.Linear(d, d, **META)

    def forward(self, x):
        q = split_heads(self.q_proj(x) * self.scale, self.heads)
        k = split_heads(self.k_proj(x), self.heads)
        v = split_heads(self.v_proj(x), self.heads)
        return self.out_proj(merge_heads(torch.matmul(torch.matmul(q, k.transpose(-1, -2)).softmax(-1), v)))


class CLIPMLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.fc1 = nn.Linear(c["hidden_size"], c["intermediate_size"], **META)
        self.fc2 = nn.Linear(c["intermediate_size"], c["hidden_size"], **META)
        self.act = activation(c["hidden_act"])

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class CLIPEncoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, eps = c["hidden_size"], c["layer_norm_eps"]
        self.layer_norm1 = nn.LayerNorm(d, eps=eps, **META)
        self.self_attn = CLIPAttention(c)
        self.layer_norm2 = nn.LayerNorm(d, eps=eps, **META)
        self.mlp = CLIPMLP(c)

    def forward(self, x):
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class CLIPEncoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layers = nn.ModuleList(CLIPEncoderLayer(c) for _ in range(c["num_hidden_layers"]))


class VisionTransformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, eps = c["hidden_size"], c["layer_norm_eps"]
        self.embeddings = VisionEmbeddings(c)
        self.pre_layrnorm = nn.LayerNorm(d, eps=eps, **META)  # (sic) as in the checkpoint
        self.encoder = CLIPEncoder(c)
        self.post_layernorm = nn.LayerNorm(d, eps=eps, **META)

    def forward(self, pixel_values):
        x = self.pre_layrnorm(self.embeddings(pixel_values))
        for layer in self.encoder.layers:
            x = layer(x)
        return self.post_layernorm(x[:, 0])


class AltCLIP(nn.Module):
    def __init__(self, text, vision, projection_dim):
        super().__init__()
        self.text_model = AltRobertaModel(text)
        self.vision_model = VisionTransformer(vision)
        self.text_projection = nn.Linear(text["project_dim"], projection_dim, bias=False, **META)
        self.visual_projection = nn.Linear(vision["hidden_size"], projection_dim, bias=False, **META)
        self.logit_scale = nn.Parameter(torch.empty((), **META))

    def get_text_features(self, input_ids, attention_mask):
        return self.text_projection(self.text_model(input_ids, attention_mask))

    def get_image_features(self, pixel_values):
        return self.visual_projection(self.vision_model(pixel_values))

    @classmethod
    def from_pretrained(cls, folder):
        model = cls(*load_config(folder))
        weights = read_safetensors(os.path.join(folder, "model.safetensors"))
        expected = dict(model.named_parameters())
        missing, unexpected = set(expected) - set(weights), set(weights) - set(expected)
        if missing or unexpected:
            raise ValueError(f"{folder}: weights do not match the config: missing {sorted(missing)[:5]}, "
                             f"unexpected {sorted(unexpected)[:5]}")
        for name, t in weights.items():
            if tuple(t.shape) != tuple(expected[name].shape):
                raise ValueError(f"{folder}: {name} has shape {tuple(t.shape)}, config wants {tuple(expected[name].shape)}")
            owner, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(owner) if owner else model, leaf, nn.Parameter(t, requires_grad=False))
        return model.eval()


# ---- commands ----

def cmd_verify(args):
    fx = args.fixtures
    pixels = read_safetensors(os.path.join(fx, "image_processor", "pixel_values.safetensors"))
    worst, report = 0.0, {}
    for ckpt in ("tiny-altclip", "tiny-altclip-b"):
        model = AltCLIP.from_pretrained(os.path.join(fx, "models", ckpt))
        meta = json.load(open(os.path.join(fx, "goldens", ckpt + ".json")))
        gold = read_safetensors(os.path.join(fx, "goldens", ckpt + ".safetensors"))
        for combo in meta["combos"]:
            p = combo["name"]
            pv = torch.cat([pixels[n] for n in combo["model_call"]["pixel_values"]["concatenate_along_dim0"]])
            with torch.inference_mode():
                t = model.get_text_features(gold[f"{p}/inputs/input_ids"], gold[f"{p}/inputs/attention_mask"])
                i = model.get_image_features(pv)
            dt = (t - gold[f"{p}/get_text_features"]).abs().max().item()
            di = (i - gold[f"{p}/get_image_features"]).abs().max().item()
            report[f"{ckpt}/{p}"] = {"text_max_abs_diff": dt, "image_max_abs_diff": di}
            worst = max(worst, dt, di)
    print(json.dumps({"ok": worst <= 1e-4, "worst_max_abs_diff": worst, "combos": report}))
    return 0 if worst <= 1e-4 else 1


# ---- every output of AltCLIPModel.forward (test goldens): the same modules, walked step by step so the
# hidden states and attention maps of transformers' output_hidden_states / output_attentions come out ----

def text_tower_outputs(tm, input_ids, attention_mask):
    """AltCLIPTextModel(...) with output_hidden_states and output_attentions (transformers 4.40.2): hidden
    states are the roberta encoder's (embedding output + every layer, before pre_LN); last_hidden_state is
    transformation(pre_LN(sequence)); pooler_output its row 0. attention_mask None = all ones."""
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    dtype = tm.pre_LN.weight.dtype
    x = tm.roberta.embeddings(input_ids)
    mask_add = (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min
    hidden, attentions = [x], []
    for layer in tm.roberta.encoder.layer:
        sa = layer.attention.self
        q, k, v = (split_heads(p(x), sa.heads) for p in (sa.query, sa.key, sa.value))
        probs = (torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1]) + mask_add).softmax(-1)
        h = layer.attention.output(merge_heads(torch.matmul(probs, v)), x)
        x = layer.output(layer.intermediate(h), h)
        hidden.append(x)
        attentions.append(probs)
    seq = tm.transformation(tm.pre_LN(x))
    return {"last_hidden_state": seq, "pooler_output": seq[:, 0], "hidden_states": hidden, "attentions": attentions}


def vision_tower_outputs(vm, pixel_values):
    """AltCLIPVisionModel(...) with output_hidden_states and output_attentions: hidden_states[0] is
    pre_layrnorm's output; pooler_output = post_layernorm(last_hidden_state[:, 0])."""
    x = vm.pre_layrnorm(vm.embeddings(pixel_values))
    hidden, attentions = [x], []
    for layer in vm.encoder.layers:
        at = layer.self_attn
        h = layer.layer_norm1(x)
        q = split_heads(at.q_proj(h) * at.scale, at.heads)
        k, v = split_heads(at.k_proj(h), at.heads), split_heads(at.v_proj(h), at.heads)
        probs = torch.matmul(q, k.transpose(-1, -2)).softmax(-1)
        x = x + at.out_proj(merge_heads(torch.matmul(probs, v)))
        x = x + layer.mlp(layer.layer_norm2(x))
        hidden.append(x)
        attentions.append(probs)
    return {"last_hidden_state": x, "pooler_output": vm.post_layernorm(x[:, 0]), "hidden_states": hidden, "attentions": attentions}


def model_outputs(model, input_ids, attention_mask, pixel_values, return_loss):
    """AltCLIPModel.forward: L2-normalised projections, logits scaled by exp(logit_scale), clip_loss."""
    text = text_tower_outputs(model.text_model, input_ids, attention_mask)
    vision = vision_tower_outputs(model.vision_model, pixel_values)
    image_embeds = model.visual_projection(vision["pooler_output"])
    text_embeds = model.text_projection(text["pooler_output"])
    image_embeds = image_embeds / image_embeds.norm(p=2, dim=-1, keepdim=True)
    text_embeds = text_embeds / text_embeds.norm(p=2, dim=-1, keepdim=True)
    logits_per_text = torch.matmul(text_embeds, image_embeds.t()) * model.logit_scale.exp()
    out = {"logits_per_image": logits_per_text.t(), "logits_per_text": logits_per_text, "text_embeds": text_embeds,
           "image_embeds": image_embeds, "text_model_output": text, "vision_model_output": vision}
    if return_loss:
        ce = lambda logits: nn.functional.cross_entropy(logits, torch.arange(len(logits)))
        out["loss"] = (ce(logits_per_text) + ce(logits_per_text.t())) / 2.0
    return out


def position_ids(input_ids, pad=1):
    m = (input_ids != pad).long()
    return torch.cumsum(m, dim=1) * m + pad


def flatten_outputs(prefix, out):
    flat = {}
    for key, value in out.items():
        if isinstance(value, dict):
            flat.update(flatten_outputs(f"{prefix}/{key}", value))
        elif isinstance(value, list):
            flat.update({f"{prefix}/{key}/{i}": t for i, t in enumerate(value)})
        else:
            flat[f"{prefix}/{key}"] = value
    return flat


def reference_goldens(model, model64, inputs_of, pixels, index):
    """Every tensor name the goldens of test/fixtures/README.md ("Model goldens") define, for the combos
    and text edge cases of `index` (a goldens JSON), computed by this reference. Inputs (token ids, masks)
    come from `inputs_of(name)`; pixel values from image_processor/pixel_values.safetensors."""
    gold = {}
    with torch.inference_mode():
        for combo in index["combos"]:
            p, call = combo["name"], combo["model_call"]
            ids, mask = inputs_of(f"{p}/inputs/input_ids"), inputs_of(f"{p}/inputs/attention_mask")
            pv = torch.cat([pixels[n] for n in call["pixel_values"]["concatenate_along_dim0"]])
            gold[f"{p}/inputs/input_ids"], gold[f"{p}/inputs/attention_mask"] = ids, mask
            gold[f"{p}/derived/position_ids"] = position_ids(ids)
            out = model_outputs(model, ids, mask, pv, call.get("return_loss", False))
            if not call.get("output_hidden_states"):
                for tower in ("text_model_output", "vision_model_output"):
                    del out[tower]["hidden_states"]
            if not call.get("output_attentions"):
                for tower in ("text_model_output", "vision_model_output"):
                    del out[tower]["attentions"]
            gold.update(flatten_outputs(f"{p}/outputs", out))
            gold[f"{p}/get_text_features"] = model.get_text_features(ids, mask)
            gold[f"{p}/get_image_features"] = model.get_image_features(pv)
            for tower, key in (("text_model_output", "standalone_text_model"), ("vision_model_output", "standalone_vision_model")):
                for t in ("last_hidden_state", "pooler_output"):
                    gold[f"{p}/{key}/{t}"] = out[tower][t]
            o64 = model_outputs(model64, ids, mask, pv.double(), call.get("return_loss", False))
            for key in ("text_embeds", "image_embeds", "logits_per_image", "loss"):
                if key in o64:
                    gold[f"{p}/fp64/{key}"] = o64[key]
            for tower in ("text_model_output", "vision_model_output"):
                gold[f"{p}/fp64/{tower}/pooler_output"] = o64[tower]["pooler_output"]
        for edge in index["text_edge_cases"]:
            e = edge["name"]
            ids = inputs_of(f"{e}/inputs/input_ids")
            mask = inputs_of(f"{e}/inputs/attention_mask", optional=True)
            gold[f"{e}/inputs/input_ids"] = ids
            if mask is not None:
                gold[f"{e}/inputs/attention_mask"] = mask
            gold[f"{e}/derived/position_ids"] = position_ids(ids)
            t = text_tower_outputs(model.text_model, ids, mask)
            gold[f"{e}/text_model_output/last_hidden_state"] = t["last_hidden_state"]
            gold[f"{e}/text_model_output/pooler_output"] = t["pooler_output"]
            gold[f"{e}/get_text_features"] = model.text_projection(t["pooler_output"])
    return gold


def load_pair(folder):
    """The float32 model and a float64 copy of the same weights (model.double())."""
    model = AltCLIP.from_pretrained(folder)
    model64 = AltCLIP.from_pretrained(folder)
    for name, prm in list(model64.named_parameters()):
        owner, _, leaf = name.rpartition(".")
        setattr(model64.get_submodule(owner) if owner else model64, leaf, nn.Parameter(prm.detach().double(), requires_grad=False))
    return model, model64


def cmd_check_goldens(args):
    """Reproduces the transformers-made goldens of the tiny fixtures: every tensor they hold, max abs diff."""
    fx = args.fixtures
    pixels = read_safetensors(os.path.join(fx, "image_processor", "pixel_values.safetensors"))
    worst, report, missing = {}, {}, []
    for ckpt in args.checkpoints.split(","):
        model, model64 = load_pair(os.path.join(fx, "models", ckpt))
        index = json.load(open(os.path.join(fx, "goldens", ckpt + ".json")))
        gold = read_safetensors(os.path.join(fx, "goldens", ckpt + ".safetensors"))
        inputs_of = lambda name, optional=False: gold.get(name) if optional else gold[name]
        ours = reference_goldens(model, model64, inputs_of, pixels, index)
        diffs = {}
        for name, g in gold.items():
            if name not in ours:
                missing.append(f"{ckpt}:{name}")
                continue
            o = ours[name]
            if tuple(o.shape) != tuple(g.shape):
                raise SystemExit(f"{ckpt}:{name}: shape {tuple(o.shape)} vs golden {tuple(g.shape)}")
            diffs[name] = (o.double() - g.double()).abs().max().item() if o.numel() else 0.0
        fam = {}
        for name, d in diffs.items():
            f = "/".join(x for x in name.split("/")[1:] if not x.isdigit())
            fam[f] = max(fam.get(f, 0.0), d)
        report[ckpt] = {"tensors_in_golden": len(gold), "compared": len(diffs), "max_abs_diff_per_family": fam}
        worst[ckpt] = max(diffs.values())
    print(json.dumps({"worst_max_abs_diff": worst, "missing": missing, "report": report}, indent=1))
    return 0 if not missing and max(worst.values()) <= 1e-5 else 1


def cmd_make_goldens(args):
    """Goldens for a checkpoint no transformers run made: inputs (token ids and masks) taken from another
    golden file made by transformers with the same tokenizer, every output from this reference."""
    fx = args.fixtures
    pixels = read_safetensors(os.path.join(fx, "image_processor", "pixel_values.safetensors"))
    src_index = json.load(open(os.path.join(fx, "goldens", args.inputs_from + ".json")))
    src = read_safetensors(os.path.join(fx, "goldens", args.inputs_from + ".safetensors"))
    inputs_of = lambda name, optional=False: src.get(name) if optional else src[name]
    torch.manual_seed(0)
    model, model64 = load_pair(args.model)
    gold = reference_goldens(model, model64, inputs_of, pixels, src_index)
    # repeatable: a second run in the same process gives the same bits
    again = reference_goldens(model, model64, inputs_of, pixels, src_index)
    rerun = max((gold[k].double() - again[k].double()).abs().max().item() for k in gold if gold[k].numel())
    write_safetensors(args.out + ".safetensors", gold)
    index = {
        "checkpoint": os.path.relpath(args.model, fx),
        "made_by": "python3 bench/torch_baseline.py make-goldens (this project's eager PyTorch reference of "
                   "transformers 4.40.2's modeling_altclip.py; it reproduces the tiny-altclip and tiny-altclip-b "
                   "goldens that transformers made: see check-goldens)",
        "inputs_from": f"goldens/{args.inputs_from}.safetensors (tokenized by transformers' XLMRobertaTokenizer, same vocabulary)",
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__, "numpy": np.__version__,
                     "torch_num_threads": torch.get_num_threads()},
        "dtype": "float32 (fp64/* tensors: same weights cast to float64)",
        "rerun_same_process_max_abs_diff": rerun,
        "combos": [{k: c[k] for k in ("name", "texts", "images", "model_call") if k in c} for c in src_index["combos"]],
        "text_edge_cases": src_index["text_edge_cases"],
        "tensors": {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)} for k, v in sorted(gold.items())},
    }
    with open(args.out + ".json", "w") as f:
        json.dump(index, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(json.dumps({"tensors": len(gold), "rerun_same_process_max_abs_diff": rerun, "out": args.out}))
    return 0


def blas_library():
    """The BLAS torch calls (BLAS_INFO=generic in Debian's build: whatever libblas.so.3 points to).
    Debian's reference BLAS (libblas3) is ~50x slower than OpenBLAS (libopenblas0-pthread)."""
    with open("/proc/self/maps") as f:
        libs = {line.split()[-1] for line in f if "blas" in line.split()[-1]}
    return sorted(os.path.realpath(p) for p in libs)


def openblas_info():
    """The kernel OpenBLAS picked (openblas_get_corename) and its build config, or None without OpenBLAS."""
    for path in blas_library():
        try:
            lib = ctypes.CDLL(path)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            lib.openblas_get_config.restype = ctypes.c_char_p
            return {"core": lib.openblas_get_corename().decode(), "config": lib.openblas_get_config().decode(),
                    "library": path, "removed_env": REMOVED_OPENBLAS_ENV}
        except (OSError, AttributeError):
            continue
    return None


def file_mapped(path):
    """Whether `path` is mapped into this process (tensors viewing an mmap of the checkpoint)."""
    real = os.path.realpath(path)
    with open("/proc/self/maps") as f:
        return any(line.split()[-1] == real for line in f if len(line.split()) >= 6)


def cmd_bench(args):
    torch.set_num_threads(args.threads)
    rows = args.rows.split(",")
    t0 = time.perf_counter()
    model = AltCLIP.from_pretrained(args.model)
    load_s = time.perf_counter() - t0
    mapped = file_mapped(os.path.join(args.model, "model.safetensors"))
    rss_after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    x = read_safetensors(args.inputs)
    ids, mask = x["input_ids"], x["attention_mask"]
    n1 = int(mask[0].sum())  # batch 1: the first prompt, unpadded
    calls = {
        "image1": lambda: model.get_image_features(x["pixel_values"][:1]),
        "image8": lambda: model.get_image_features(x["pixel_values"][:8]),
        "text1": lambda: model.get_text_features(ids[:1, :n1], mask[:1, :n1]),
        "text32": lambda: model.get_text_features(ids[:32], mask[:32]),
    }
    reps = {"image1": 5, "image8": 3, "text1": 10, "text32": 5}
    result, features = {}, {}
    with torch.inference_mode():
        for r in rows:
            n = args.reps if args.reps else reps[r]
            for _ in range(args.warmup):
                calls[r]()
            times = []
            for _ in range(n):
                t = time.perf_counter()
                features[r] = calls[r]()
                times.append(time.perf_counter() - t)
            result[r] = {"median_s": statistics.median(times), "times_s": times}
    if args.out:
        write_safetensors(args.out, features)
    print(json.dumps({
        "torch": torch.__version__, "blas": blas_library(), "openblas": openblas_info(),
        "weights_file_mapped": mapped, "threads": torch.get_num_threads(),
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"), "load_s": load_s,
        "rss_after_load_bytes": rss_after_load,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "rows": result,
    }))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("verify")
    v.add_argument("--fixtures", default=os.path.join(os.path.dirname(__file__), "..", "test", "fixtures"))
    b = sub.add_parser("bench")
    b.add_argument("--model", required=True)
    b.add_argument("--inputs", required=True)
    b.add_argument("--out")
    b.add_argument("--threads", type=int, default=1)
    b.add_argument("--rows", default="image1,image8,text1,text32")
    b.add_argument("--warmup", type=int, default=1)
    b.add_argument("--reps", type=int, default=0, help="runs per row (0: per-row defaults)")
    c = sub.add_parser("check-goldens")
    c.add_argument("--fixtures", default=os.path.join(os.path.dirname(__file__), "..", "test", "fixtures"))
    c.add_argument("--checkpoints", default="tiny-altclip,tiny-altclip-b")
    m = sub.add_parser("make-goldens")
    m.add_argument("--fixtures", default=os.path.join(os.path.dirname(__file__), "..", "test", "fixtures"))
    m.add_argument("--model", required=True)
    m.add_argument("--inputs-from", default="tiny-altclip")
    m.add_argument("--out", required=True, help="path without extension: writes OUT.safetensors and OUT.json")
    args = ap.parse_args()
    torch.set_num_threads(1)  # goldens are made with 1 thread (bench sets its own)
    cmds = {"verify": cmd_verify, "bench": cmd_bench, "check-goldens": cmd_check_goldens, "make-goldens": cmd_make_goldens}
    sys.exit(cmds[args.cmd](args))


if __name__ == "__main__":
    main()
