// altclip classify <image...> --labels <label...>
import { Command } from 'commander';
import { embedImageMatrix } from '../tasks/embeddings.js';
import { splitRows, stackRows } from '../math.js';
import { logitScale } from '../tasks/similarity.js';
import { DEFAULT_HYPOTHESIS_TEMPLATE, type LabelScore, labelEmbeddings, scoreLabels } from '../tasks/zero-shot.js';
import { CliError, EXIT_OK, EXIT_SKIPPED } from './errors.js';
import { expandImages } from './inputs.js';
import { type ModelFlags, addModelOptions, imageBatches, loadModel, num, positiveInt, progressBar } from './shared.js';

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
  const results: { image: string; labels: LabelScore[] }[] = [];
  const progress = progressBar(images.length, 'classifying');
  try {
    // The labels' text embeddings once; then the images batch by batch (a bad image only loses itself).
    const labelEmbeds = await labelEmbeddings(clip, labels, templates, { batchSize: flags.batchSize });
    const scale = await logitScale(clip);
    const skipped = await imageBatches(
      images,
      flags.batchSize,
      async (batch) => splitRows(await embedImageMatrix(clip, batch, { batchSize: flags.batchSize })),
      (batch, rows) => {
        const scores = scoreLabels(stackRows(rows), labelEmbeds, labels, scale, { topK: flags.topK, multiLabel: flags.multiLabel });
        batch.forEach((image, i) => results.push({ image, labels: scores[i]! }));
      },
      progress,
    );
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
