// AltCLIP-m18's shapes that BAAI/AltCLIP never exercises — vision attention heads of 80 (ViT-H/14: 16 x 80),
// exact-GELU vision MLP, a text `transformation` as wide as the text tower (m18: project_dim = hidden =
// 1024) — on a tiny checkpoint, against every output the goldens hold, with model.test.ts's tolerances.
//
// How the fixture and its goldens were made (test/fixtures/README.md, "tiny-altclip-m18"):
//   weights: node --import tsx bench/generate_checkpoint.ts --config <its config.json> --seed 18 --text-model
//            --out test/fixtures/models/tiny-altclip-m18   (seeded random weights, transformers' tensor names;
//            tokenizer/preprocessor files copied from tiny-altclip; text_model/ = the text tower on its own)
//   goldens: OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/torch_baseline.py make-goldens
//            --model test/fixtures/models/tiny-altclip-m18 --out test/fixtures/goldens/tiny-altclip-m18
//            (torch 1.13, float32, 1 thread; fp64/* from the same weights cast to float64). The inputs (token
//            ids, masks) are tiny-altclip's goldens', which transformers' tokenizer made; pixel values are
//            image_processor/pixel_values.safetensors. transformers itself is not installed here, so the
//            outputs come from this project's eager PyTorch reimplementation, which first reproduced every
//            tensor of the transformers-made goldens (`torch_baseline.py check-goldens`: all 151 tensors of
//            tiny-altclip and 147 of tiny-altclip-b, max abs diff 2.5e-6 and 6.0e-6).
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';

import { AltCLIPModel, AltCLIPTextModel, AltCLIPVisionModel, type TowerOutput } from '../src/models/altclip.js';
import { Tensor } from '../src/tensor.js';
import { assertClose, FIXTURES, Goldens, printDiffTable } from './helpers/goldens.js';

const TOL = 1e-4; // model.test.ts's bar (attention probabilities: 1e-5)
const ATTN_TOL = 1e-5;
const NAME = 'tiny-altclip-m18';
const ckpt = path.join(FIXTURES, 'models', NAME);
const graphCacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-m18-graphs-'));
const pixels = new Goldens(path.join(FIXTURES, 'image_processor', 'pixel_values.safetensors'));
const g = new Goldens(path.join(FIXTURES, 'goldens', `${NAME}.safetensors`));
const index = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'goldens', `${NAME}.json`), 'utf8')) as {
  combos: { name: string; model_call: { pixel_values: { concatenate_along_dim0: string[] }; return_loss?: boolean;
    output_hidden_states?: boolean; output_attentions?: boolean } }[];
  text_edge_cases: { name: string }[];
  tensors: Record<string, unknown>;
};

after(() => {
  printDiffTable(`${NAME}: max abs difference vs the reference, per tensor family:`);
  fs.rmSync(graphCacheDir, { recursive: true, force: true });
});

/** The golden tensor names under `prefix/` that are model outputs (not inputs or derived position ids). */
function goldenOutputs(prefix: string): string[] {
  return Object.keys(index.tensors).filter((n) => n.startsWith(`${prefix}/`) && !/\/(inputs|derived)\//.test(n)).sort();
}

/** Compares every produced tensor with its golden; the produced and golden name sets must be equal. */
function compareAll(prefix: string, produced: Map<string, Tensor>): void {
  assert.deepEqual([...produced.keys()].sort(), goldenOutputs(prefix), `${prefix}: outputs vs golden tensors`);
  for (const [name, t] of produced) assertClose(t, g.get(name), /\/attentions\/\d+$/.test(name) ? ATTN_TOL : TOL, name);
}

function towerTensors(out: Map<string, Tensor>, prefix: string, o: TowerOutput): void {
  out.set(`${prefix}/last_hidden_state`, o.lastHiddenState);
  out.set(`${prefix}/pooler_output`, o.poolerOutput);
  o.hiddenStates?.forEach((h, i) => out.set(`${prefix}/hidden_states/${i}`, h));
  o.attentions?.forEach((a, i) => out.set(`${prefix}/attentions/${i}`, a));
}

describe(`AltCLIPModel ${NAME} (head size 80, gelu vision tower)`, async () => {
  const model = await AltCLIPModel.fromPretrained(ckpt, { graphCacheDir, threads: 1 });
  const textFromFolder = await AltCLIPTextModel.fromPretrained(path.join(ckpt, 'text_model'), { graphCacheDir });
  const textFromFull = await AltCLIPTextModel.fromPretrained(ckpt, { graphCacheDir });
  const vision = await AltCLIPVisionModel.fromPretrained(ckpt, { graphCacheDir });
  after(() => Promise.all([model.dispose(), textFromFolder.dispose(), textFromFull.dispose(), vision.dispose()]));

  it('the fixture has m18’s distinguishing shapes', () => {
    const v = model.config.visionConfig, t = model.config.textConfig;
    assert.equal(v.hiddenSize / v.numAttentionHeads, 80);
    assert.ok(v.numAttentionHeads > 1);
    assert.equal(v.hiddenAct, 'gelu');
    assert.equal(t.projectDim, t.hiddenSize);
  });

  for (const combo of index.combos) {
    it(`forward, features and standalone towers: ${combo.name}`, async () => {
      const c = combo.name, call = combo.model_call;
      const [inputIds, attentionMask] = [g.get(`${c}/inputs/input_ids`), g.get(`${c}/inputs/attention_mask`)];
      const pixelValues = pixels.concat(call.pixel_values.concatenate_along_dim0);
      const flags = { returnLoss: call.return_loss, outputHiddenStates: call.output_hidden_states, outputAttentions: call.output_attentions };
      const out = await model.forward({ inputIds, attentionMask, pixelValues, ...flags });
      const produced = new Map<string, Tensor>([
        [`${c}/outputs/logits_per_image`, out.logitsPerImage], [`${c}/outputs/logits_per_text`, out.logitsPerText],
        [`${c}/outputs/text_embeds`, out.textEmbeds], [`${c}/outputs/image_embeds`, out.imageEmbeds],
      ]);
      if (call.return_loss) produced.set(`${c}/outputs/loss`, out.loss!);
      else assert.equal(out.loss, undefined);
      towerTensors(produced, `${c}/outputs/text_model_output`, out.textModelOutput);
      towerTensors(produced, `${c}/outputs/vision_model_output`, out.visionModelOutput);
      for (const o of [out.textModelOutput, out.visionModelOutput]) {
        assert.equal(o.hiddenStates === undefined, !call.output_hidden_states);
        assert.equal(o.attentions === undefined, !call.output_attentions);
      }
      // the float64 reference: where the exact values lie (same tolerance, compared with the float32 outputs)
      produced.set(`${c}/fp64/text_embeds`, out.textEmbeds);
      produced.set(`${c}/fp64/image_embeds`, out.imageEmbeds);
      produced.set(`${c}/fp64/logits_per_image`, out.logitsPerImage);
      if (call.return_loss) produced.set(`${c}/fp64/loss`, out.loss!);
      produced.set(`${c}/fp64/text_model_output/pooler_output`, out.textModelOutput.poolerOutput);
      produced.set(`${c}/fp64/vision_model_output/pooler_output`, out.visionModelOutput.poolerOutput);

      produced.set(`${c}/get_text_features`, await model.getTextFeatures({ inputIds, attentionMask }));
      produced.set(`${c}/get_image_features`, await model.getImageFeatures({ pixelValues }));

      const v = await vision.forward({ pixelValues });
      produced.set(`${c}/standalone_vision_model/last_hidden_state`, v.lastHiddenState);
      produced.set(`${c}/standalone_vision_model/pooler_output`, v.poolerOutput);
      const t = await textFromFolder.forward({ inputIds, attentionMask });
      produced.set(`${c}/standalone_text_model/last_hidden_state`, t.lastHiddenState);
      produced.set(`${c}/standalone_text_model/pooler_output`, t.poolerOutput);
      // the text tower loaded from the full checkpoint gives the same as the one saved on its own
      const full = await textFromFull.forward({ inputIds, attentionMask, outputHiddenStates: true });
      assertClose(full.lastHiddenState, g.get(`${c}/standalone_text_model/last_hidden_state`), TOL, `${c}/standalone_text_model/last_hidden_state`);
      if (call.output_hidden_states) {
        full.hiddenStates!.forEach((h, i) => assertClose(h, g.get(`${c}/outputs/text_model_output/hidden_states/${i}`), TOL,
          `${c}/outputs/text_model_output/hidden_states/${i}`));
      }
      compareAll(c, produced);
    });
  }

  for (const edge of index.text_edge_cases) {
    it(`text edge case: ${edge.name}`, async () => {
      const e = edge.name;
      const inputIds = g.get(`${e}/inputs/input_ids`);
      const attentionMask = g.has(`${e}/inputs/attention_mask`) ? g.get(`${e}/inputs/attention_mask`) : undefined;
      const t = await textFromFull.forward({ inputIds, attentionMask });
      compareAll(e, new Map([
        [`${e}/text_model_output/last_hidden_state`, t.lastHiddenState],
        [`${e}/text_model_output/pooler_output`, t.poolerOutput],
        [`${e}/get_text_features`, await model.getTextFeatures({ inputIds, attentionMask })],
      ]));
    });
  }

  it('every golden tensor was compared', () => {
    const prefixes = [...index.combos.map((c) => c.name), ...index.text_edge_cases.map((e) => e.name)];
    const covered = prefixes.flatMap(goldenOutputs).length;
    const outputs = Object.keys(index.tensors).filter((n) => !/\/(inputs|derived)\//.test(n)).length;
    assert.equal(covered, outputs);
    assert.ok(outputs >= 100, `${outputs} output tensors`);
  });
});
