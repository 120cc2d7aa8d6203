// altclip similarity --images <...> --texts <...>
import { Command } from 'commander';
import { imageTextSimilarity } from '../tasks/similarity.js';
import { CliError, EXIT_OK, EXIT_SKIPPED } from './errors.js';
import { expandImages, readTextsFile } from './inputs.js';
import { type ModelFlags, SkippedImages, addModelOptions, loadModel, num, progressBar } from './shared.js';

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
  const progress = progressBar(images.length, 'comparing');
  try {
    const skips = new SkippedImages(progress);
    const sim = await imageTextSimilarity(clip, images, texts, {
      batchSize: flags.batchSize,
      onError: skips.onError,
      onProgress: skips.onProgress,
    });
    skips.finish();
    const skipped = skips.skipped;
    const rows = skips.kept(images).map((image, i) => ({ image, cosine: sim.cosine[i]!, logits: sim.logitsPerImage[i]! }));
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
