// altclip convert <model> --dtype q8 --out <dir>: a q8 checkpoint (hub layout) that loads without the
// float weights. The conversion itself is the library's (models/quantize.ts' convertToQ8).
import * as fs from 'node:fs';
import { Command, Option } from 'commander';
import { convertToQ8, q8Scheme, Q8_SCHEMES } from '../models/quantize.js';
import { CliError, EXIT_OK } from './errors.js';

interface ConvertFlags {
  dtype: 'q8';
  out: string;
  scheme?: string;
  json?: boolean;
}

export function convertCommand(): Command {
  return new Command('convert')
    .description('write a q8 checkpoint: int8 Linear weights + scales in safetensors, with config, tokenizer and preprocessor (hub layout)')
    .argument('<model>', 'hub repo id or local folder of a float AltCLIP checkpoint')
    .addOption(new Option('--dtype <dtype>', 'the stored precision').choices(['q8']).makeOptionMandatory())
    .requiredOption('-o, --out <dir>', 'output folder (created; must be empty or absent)')
    .addOption(new Option('--scheme <name>', 'q8 scheme (default: $ALTCLIP_Q8_SCHEME, else the default scheme)').choices(Object.keys(Q8_SCHEMES)))
    .option('--json', 'print the result as JSON')
    .addHelpText('after', `
Example:
  $ altclip convert BAAI/AltCLIP --dtype q8 --out AltCLIP-q8
  then: AltCLIPModel.fromPretrained("AltCLIP-q8", { dtype: "q8" }), or upload the folder as a hub repo`)
    .action(async (model: string, flags: ConvertFlags) => {
      process.exitCode = await convert(model, flags);
    });
}

async function convert(model: string, flags: ConvertFlags): Promise<number> {
  if (fs.existsSync(flags.out) && (!fs.statSync(flags.out).isDirectory() || fs.readdirSync(flags.out).length > 0)) {
    throw new CliError(`${flags.out} exists and is not an empty folder: choose another --out`);
  }
  const scheme = flags.scheme ? Q8_SCHEMES[flags.scheme]! : q8Scheme();
  const r = await convertToQ8(model, flags.out, { scheme });
  if (flags.json) process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
  else {
    process.stderr.write(`altclip: wrote ${r.out} (q8 scheme ${r.scheme}: ${r.quantized} Linear weights in int8; `
      + `model.safetensors ${(r.bytes / 2 ** 20).toFixed(1)} MiB; ${r.files.join(', ')})\n`);
  }
  return EXIT_OK;
}
