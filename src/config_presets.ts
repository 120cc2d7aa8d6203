// The published AltCLIP checkpoints' configurations, as config.json dicts (transformers' snake_case,
// read by `new AltCLIPConfig(json)` exactly like a downloaded config.json). Every architectural value
// is written out (not left to the AltCLIPTextConfig / AltCLIPVisionConfig defaults) and cited below.
//
// Sources (public copies of the hub files and of the code that made them):
//   [A]   https://huggingface.co/BAAI/AltCLIP/blob/main/config.json — projection_dim 768,
//         logit_scale_init_value 2.6592; text_config: hidden_act "gelu", hidden_size 1024,
//         intermediate_size 4096, layer_norm_eps 1e-05, max_position_embeddings 514, bos 0, eos 2,
//         initializer_factor 0.02. Its vision tower is OpenAI's CLIP ViT-L/14 at 224 (hidden 1024,
//         24 layers, 16 heads, 4096, quick_gelu), the values bench/generate_checkpoint.ts has always
//         used and that test/fixtures/README.md ("Activations") records.
//   [M18] https://huggingface.co/BAAI/AltCLIP-m18/blame/main/config.json (4,993 bytes, commit c80fa1b)
//         — projection_dim 1024, logit_scale_init_value 2.6592, "_name_or_path": "BAAI/AltCLIP",
//         text_config bos 0 / eos 2 / attention_probs_dropout_prob 0.1; the model card
//         (huggingface.co/BAAI/AltCLIP-m18) and FlagAI's examples/AltCLIP-m18 (model name
//         "AltCLIP-XLMR-L-m18": XLM-R large text tower). The weights are 4.78 GB of float32
//         (pytorch_model.bin / model.safetensors in the repo tree), i.e. ~1.19e9 parameters — what
//         XLM-R large (560M) + ViT-H/14 (632M) + the projections add up to with the values below.
//   [H14] The vision tower is OpenCLIP ViT-H/14 (LAION-2B), whose transformers config is
//         https://huggingface.co/laion/CLIP-ViT-H-14-laion2B-s32B-b79K config.json (vision_config:
//         hidden_size 1280, intermediate_size 5120, num_attention_heads 16, num_hidden_layers 32,
//         patch_size 14, image_size 224, projection_dim 1024; hidden_act "gelu" as in every public
//         copy of that vision config, e.g. ComfyUI's clip_vision_config_h.json).
//   [XLMR] XLM-R large as AltCLIP's text tower: https://huggingface.co/BAAI/AltDiffusion-m9 text_encoder
//         config.json (RobertaSeriesModelWithTransformation: vocab_size 250002, hidden 1024, 24 layers,
//         16 heads, 4096, gelu, max_position_embeddings 514, type_vocab_size 1, layer_norm_eps 1e-05,
//         project_dim 768). AltCLIP-m18's tokenizer is the same sentencepiece.bpe.model (5.07 MB) with
//         model_max_length 512 (huggingface.co/BAAI/AltCLIP-m18 tokenizer_config.json), and
//         AltDiffusion-m18's text_encoder weights are 2.24 GB (= XLM-R large's 560M parameters, so its
//         vocabulary is XLM-R's 250002 rows).
//   [M9]  https://huggingface.co/BAAI/AltCLIP-m9 (mirror ai.gitee.com/hf-models/BAAI/AltCLIP-m9):
//         pytorch_model.bin 3.22 GB — exactly BAAI/AltCLIP's 864M float32 parameters (3.22 GiB), i.e.
//         the same ViT-L/14 + XLM-R large shapes; its text tower is the one AltDiffusion-m9 ships
//         ([XLMR], project_dim 768).
//
// NOT FOUND in a public source we could read (stated here and in the report): the full text of
// AltCLIP-m18's and AltCLIP-m9's config.json beyond the lines quoted above. In particular
// AltCLIP-m18's text_config.project_dim is inferred, not read: the text tower is distilled onto the
// ViT-H teacher's 1024-wide text features (the AltCLIP paper's teacher learning: `transformation`
// maps the [CLS] state to the teacher's width, 768 for ViT-L, 1024 for ViT-H), so project_dim = 1024.
// AltCLIP-m9's vision hidden_act is taken to be BAAI/AltCLIP's quick_gelu (same OpenAI ViT-L/14).
import { AltCLIPConfig } from './config.js';

type Json = Record<string, unknown>;

// Keys in the order transformers writes config.json (sorted).

/** XLM-R large, AltCLIP's text tower ([A], [XLMR]). */
const XLMR_LARGE = {
  bos_token_id: 0,
  eos_token_id: 2,
  hidden_act: 'gelu',
  hidden_size: 1024,
  intermediate_size: 4096,
  layer_norm_eps: 1e-5,
  max_position_embeddings: 514,
  model_type: 'altclip_text_model',
  num_attention_heads: 16,
  num_hidden_layers: 24,
  pad_token_id: 1,
  type_vocab_size: 1,
  vocab_size: 250002,
};

/** OpenAI CLIP ViT-L/14 at 224 ([A]). */
const VIT_L_14 = {
  hidden_act: 'quick_gelu',
  hidden_size: 1024,
  image_size: 224,
  intermediate_size: 4096,
  layer_norm_eps: 1e-5,
  model_type: 'altclip_vision_model',
  num_attention_heads: 16,
  num_channels: 3,
  num_hidden_layers: 24,
  patch_size: 14,
};

/** OpenCLIP ViT-H/14 at 224 ([H14]): 16 heads of 80. */
const VIT_H_14 = {
  hidden_act: 'gelu',
  hidden_size: 1280,
  image_size: 224,
  intermediate_size: 5120,
  layer_norm_eps: 1e-5,
  model_type: 'altclip_vision_model',
  num_attention_heads: 16,
  num_channels: 3,
  num_hidden_layers: 32,
  patch_size: 14,
};

const common = { architectures: ['AltCLIPModel'], model_type: 'altclip', initializer_factor: 1.0, logit_scale_init_value: 2.6592 };

export const CONFIG_PRESETS = {
  /** [A]: XLM-R large + ViT-L/14, 768-d embeddings (864M parameters). */
  'BAAI/AltCLIP': {
    ...common,
    projection_dim: 768,
    text_config: { ...XLMR_LARGE, project_dim: 768 },
    vision_config: { ...VIT_L_14, projection_dim: 768 },
  },
  /** [M9]: nine languages, BAAI/AltCLIP's shapes. */
  'BAAI/AltCLIP-m9': {
    ...common,
    projection_dim: 768,
    text_config: { ...XLMR_LARGE, project_dim: 768 },
    vision_config: { ...VIT_L_14, projection_dim: 768 },
  },
  /** [M18]: eighteen languages, XLM-R large + ViT-H/14, 1024-d embeddings (~1.19B parameters). */
  'BAAI/AltCLIP-m18': {
    ...common,
    projection_dim: 1024,
    text_config: { ...XLMR_LARGE, project_dim: 1024 },
    vision_config: { ...VIT_H_14, projection_dim: 1024 },
  },
} as const satisfies Record<string, Json>;

export type ConfigPresetName = keyof typeof CONFIG_PRESETS;

/** A fresh copy of a preset's config.json dict (safe to modify). */
export function configPresetJson(name: ConfigPresetName): Json {
  return JSON.parse(JSON.stringify(presetOrThrow(name))) as Json;
}

/** The AltCLIPConfig of a published checkpoint, without downloading it. */
export function configPreset(name: ConfigPresetName): AltCLIPConfig {
  return new AltCLIPConfig(configPresetJson(name), `config preset ${name}`);
}

function presetOrThrow(name: string): Json {
  if (!Object.prototype.hasOwnProperty.call(CONFIG_PRESETS, name)) {
    throw new Error(`unknown config preset ${JSON.stringify(name)} (known: ${Object.keys(CONFIG_PRESETS).join(', ')})`);
  }
  return CONFIG_PRESETS[name as ConfigPresetName];
}
