// altclip classify <image...> --labels <label...>
import { Command } from 'commander';
import { DEFAULT_HYPOTHESIS_TEMPLATE, zeroShotImageClassification } from '../tasks/zero-shot.js';
import { CliError, EXIT_OK, EXIT_SKIPPED } from './errors.js';
import { expandImages } from './inputs.js';
import { type ModelFlags, SkippedImages, addModelOptions, loadModel, num, positiveInt, progressBar } from './shared.js';

interface ClassifyFlags extends ModelFlags {
  labels: string[];
  template?: string[];
  topK?: number;
  multiLabel?: boolean;
}

export function classifyCommand(): Command {
  const cmd = new Command('classify')
    .description('zero-shot classification: score each image against candidate labels (any language)')
    .argument('<image...>', 'image files, folders of images, or http(s) URLs')
    .requiredOption('-l, --labels <label...>', 'candidate labels (put them after the images, or end the list with --)')
    .option(
      '-t, --template <template...>',
      `hypothesis template, {} stands for the label; several are averaged (prompt ensembling) (default: "${DEFAULT_HYPOTHESIS_TEMPLATE}")`,
    )
    .option('-k, --top-k <n>', 'show only the best n labels', positiveInt)
    .option('--multi-label', 'score labels independently (sigmoid of the logit) instead of a softmax over them');
  addModelOptions(cmd);
  cmd.addHelpText(
    'after',
    `
Examples:
  $ altclip classify cat.jpg --labels "a cat" "a dog" 一只猫 一只狗
  $ altclip classify photos/ --labels cat dog bird --top-k 1 --json`,
  );
  return cmd.action(async (imageArgs: string[], flags: ClassifyFlags) => {
    process.exitCode = await classify(imageArgs, flags);
  });
}

async function classify(imageArgs: string[], flags: ClassifyFlags): Promise<number> {
  const labels = flags.labels;
  if (labels.length === 0 || labels.some((l) => l.trim() === '')) throw new CliError('--labels: give at least one non-empty label');
  const templates = flags.template ?? [DEFAULT_HYPOTHESIS_TEMPLATE];
  for (const t of templates) if (!t.includes('{}')) throw new CliError(`--template ${JSON.stringify(t)} has no {} where the label goes`);
  const images = expandImages(imageArgs);
  const clip = await loadModel(flags);
  const progress = progressBar(images.length, 'classifying');
  try {
    const skips = new SkippedImages(progress);
    const scores = await zeroShotImageClassification(clip, images, labels, {
      hypothesisTemplate: templates,
      topK: flags.topK,
      multiLabel: flags.multiLabel,
      batchSize: flags.batchSize,
      onError: skips.onError,
      onProgress: skips.onProgress,
    });
    skips.finish();
    const skipped = skips.skipped;
    const results = skips.kept(images).map((image, i) => ({ image, labels: scores[i]! }));
    progress.stop();
    if (flags.json) {
      const out = { model: flags.model, templates, multiLabel: Boolean(flags.multiLabel), results, skipped };
      process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    } else {
      const blocks = results.map((r) => [r.image, ...r.labels.map((l) => `${num(l.score)}  ${l.label}`)].join('\n'));
      process.stdout.write(`${blocks.join('\n\n')}\n`);
    }
    if (skipped.length > 0) process.stderr.write(`altclip: ${skipped.length} of ${images.length} images skipped\n`);
    return skipped.length > 0 ? EXIT_SKIPPED : EXIT_OK;
  } finally {
    progress.stop();
    await clip.model.dispose();
  }
}
