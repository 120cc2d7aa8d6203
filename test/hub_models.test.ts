// A model repo served by a local hub loads exactly like the same files in a local folder: config,
// tokenizer and weights all go through resolveFile, with the endpoint taken from HF_ENDPOINT.
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AltCLIPConfig } from '../src/config.js';
import { XLMRobertaTokenizer } from '../src/tokenizer/index.js';
import { loadWeights } from '../src/weights/index.js';
import { startHubServer, type HubServer } from './helpers/hub_server.js';

const FOLDER = 'test/fixtures/models/tiny-altclip';
const COMMIT = 'a1b2c3d4e5f60718293a4b5c6d7e8f9012345678';

function filesOf(dir: string, prefix = ''): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const rel = prefix + entry.name;
    if (entry.isDirectory()) Object.assign(out, filesOf(path.join(dir, entry.name), `${rel}/`));
    else out[rel] = fs.readFileSync(path.join(dir, entry.name));
  }
  return out;
}

let server: HubServer;
let cacheDir: string;
const saved = process.env.HF_ENDPOINT;

before(async () => {
  server = await startHubServer({ 'BAAI/tiny-altclip': { commits: { [COMMIT]: filesOf(FOLDER) }, refs: { main: COMMIT } } });
  cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'altclip-hub-models-'));
  process.env.HF_ENDPOINT = server.endpoint;
});

after(async () => {
  if (saved === undefined) delete process.env.HF_ENDPOINT;
  else process.env.HF_ENDPOINT = saved;
  await server.close();
  fs.rmSync(cacheDir, { recursive: true, force: true });
});

it('config, tokenizer and weights from the hub equal those from the folder, then load offline', async () => {
  const hub = { cacheDir, token: false as const };
  const [config, local] = [await AltCLIPConfig.fromPretrained('BAAI/tiny-altclip', hub), await AltCLIPConfig.fromPretrained(FOLDER)];
  assert.deepEqual(JSON.parse(JSON.stringify(config)), JSON.parse(JSON.stringify(local)));

  const text = 'Un gato durmiendo sobre el sofá 🐈';
  const tokenizer = await XLMRobertaTokenizer.fromPretrained('BAAI/tiny-altclip', hub);
  assert.deepEqual(tokenizer.encode(text), (await XLMRobertaTokenizer.fromPretrained(FOLDER)).encode(text));

  const weights = await loadWeights('BAAI/tiny-altclip', hub);
  const localWeights = await loadWeights(FOLDER);
  assert.deepEqual([...weights.tensors.keys()].sort(), [...localWeights.tensors.keys()].sort());
  const name = [...weights.tensors.keys()][0];
  assert.deepEqual(weights.readFloat32(name), localWeights.readFloat32(name));
  const snapshot = path.join(cacheDir, 'models--BAAI--tiny-altclip', 'snapshots', COMMIT);
  assert.equal(weights.files.length, 1);
  assert.equal(fs.realpathSync(weights.files[0]), fs.realpathSync(path.join(snapshot, 'model.safetensors')));

  // Everything needed is cached now: offline, the same model loads without a single request.
  const before = server.requests.length;
  const offline = { ...hub, localFilesOnly: true };
  await AltCLIPConfig.fromPretrained('BAAI/tiny-altclip', offline);
  await XLMRobertaTokenizer.fromPretrained('BAAI/tiny-altclip', offline);
  assert.deepEqual([...(await loadWeights('BAAI/tiny-altclip', offline)).tensors.keys()].sort(), [...localWeights.tensors.keys()].sort());
  assert.equal(server.requests.length, before);
});
