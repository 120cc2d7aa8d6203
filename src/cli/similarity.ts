// altclip similarity --images <...> --texts <...>
import { Command } from 'commander';
import { embedImageMatrix, embedTextMatrix } from '../tasks/embeddings.js';
import { matmulTransposed, splitRows, stackRows } from '../math.js';
import { logitScale } from '../tasks/similarity.js';
import { CliError, EXIT_OK, EXIT_SKIPPED } from './errors.js';
import { expandImages, readTextsFile } from './inputs.js';
import { type ModelFlags, addModelOptions, imageBatches, loadModel, num, progressBar } from './shared.js';

interface SimilarityFlags extends ModelFlags {
  images: string[];
  texts?: string[];
  textsFile?: string;
  logits?: boolean;
}

export function similarityCommand(): Command {
  const cmd = new Command('similarity')
    .description('image x text matrix of cosine similarities (and the model\'s logits)')
    .requiredOption('-i, --images <image...>', 'image files, folders of images, or http(s) URLs')
    .option('-t, --texts <text...>', 'texts to compare with')
    .option('--texts-file <file>', 'more texts, one per line')
    .option('--logits', 'show logits (exp(logit_scale) * cosine) instead of cosines in the table');
  addModelOptions(cmd);
  cmd.addHelpText(
    'after',
    `
Example:
  $ altclip similarity --images cat.jpg dog.jpg --texts "a sleeping cat" 一只狗`,
  );
  return cmd.action(async (flags: SimilarityFlags) => {
    process.exitCode = await similarity(flags);
  });
}

async function similarity(flags: SimilarityFlags): Promise<number> {
  const texts = [...(flags.texts ?? []), ...(flags.textsFile ? readTextsFile(flags.textsFile) : [])];
  if (texts.length === 0) throw new CliError('no texts given: use --texts and/or --texts-file');
  const images = expandImages(flags.images);
  const clip = await loadModel(flags);
  const rows: { image: string; cosine: number[]; logits: number[] }[] = [];
  const progress = progressBar(images.length, 'comparing');
  try {
    // The texts once; then the images batch by batch (a bad image only loses itself).
    const textEmbeds = await embedTextMatrix(clip, texts, { batchSize: flags.batchSize });
    const scale = await logitScale(clip);
    const skipped = await imageBatches(
      images,
      flags.batchSize,
      async (batch) => splitRows(await embedImageMatrix(clip, batch, { batchSize: flags.batchSize })),
      (batch, embeds) => {
        const cosines = matmulTransposed(stackRows(embeds), textEmbeds);
        batch.forEach((image, i) => rows.push({ image, cosine: cosines[i]!, logits: cosines[i]!.map((c) => c * scale) }));
      },
      progress,
    );
    progress.stop();
    if (flags.json) {
      const out = {
        model: flags.model,
        images: rows.map((r) => r.image),
        texts,
        cosine: rows.map((r) => r.cosine),
        logitsPerImage: rows.map((r) => r.logits),
        skipped,
      };
      process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    } else {
      // Numbers first and names last, so wide (CJK) characters cannot break the alignment.
      const legend = texts.map((t, j) => `[${j + 1}] ${t}`);
      const header = texts.map((_, j) => `[${j + 1}]`.padStart(9)).join('') + '  image';
      const lines = rows.map((r) => (flags.logits ? r.logits : r.cosine).map((x) => num(x, 9)).join('') + `  ${r.image}`);
      const title = flags.logits ? 'logits (image x text)' : 'cosine similarity (image x text)';
      process.stdout.write([...legend, '', title, header, ...lines].join('\n') + '\n');
    }
    if (skipped.length > 0) process.stderr.write(`altclip: ${skipped.length} of ${images.length} images skipped\n`);
    return skipped.length > 0 ? EXIT_SKIPPED : EXIT_OK;
  } finally {
    progress.stop();
    await clip.model.dispose();
  }
}
