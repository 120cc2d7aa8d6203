// The demo: load a model from a base URL (or a hub repo id), pick or drop an image, type labels in
// any language, see the zero-shot probabilities. Uses only the public API of altclip/web.
import { AltCLIPModel, AltCLIPProcessor, zeroShotImageClassification } from '../../dist/web/altclip.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
$('model').value = params.get('model') ?? 'BAAI/AltCLIP';
if (params.get('dtype')) $('dtype').value = params.get('dtype');

let clip = null; // { model, processor }
let image = null; // a Blob

function status(text, error = false) {
  $('status').textContent = text;
  $('status').classList.toggle('error', error);
}

const mb = (n) => `${(n / 1e6).toFixed(1)} MB`;

async function load() {
  const source = $('model').value.trim();
  $('load').disabled = true;
  $('classify').disabled = true;
  $('progress').hidden = false;
  try {
    await clip?.model.dispose();
    clip = null;
    const started = performance.now();
    const [model, processor] = await Promise.all([
      AltCLIPModel.fromPretrained(source, {
        dtype: $('dtype').value,
        onProgress: (p) => {
          $('progress').max = p.total;
          $('progress').value = p.loaded;
          status(p.stage === 'download' ? `Downloading weights: ${mb(p.loaded)} of ${mb(p.total)}` : `Building the model (${p.loaded}/${p.total})`);
        },
      }),
      AltCLIPProcessor.fromPretrained(source),
    ]);
    clip = { model, processor };
    status(`Loaded ${source} (${$('dtype').value}) in ${((performance.now() - started) / 1000).toFixed(1)} s.`);
    $('classify').disabled = image === null;
    if (image) await classify();
  } catch (e) {
    status(`Could not load ${source}: ${e.message}`, true);
  } finally {
    $('load').disabled = false;
    $('progress').hidden = true;
  }
}

function setImage(blob) {
  image = blob;
  $('preview').src = URL.createObjectURL(blob);
  $('preview').hidden = false;
  $('drop-hint').hidden = true;
  $('classify').disabled = clip === null;
  if (clip) classify();
}

async function classify() {
  const labels = $('labels').value.split('\n').map((s) => s.trim()).filter(Boolean);
  if (!clip || !image || labels.length === 0) return;
  $('classify').disabled = true;
  try {
    const started = performance.now();
    const scores = await zeroShotImageClassification(clip, image, labels, { hypothesisTemplate: $('template').value || '{}' });
    const body = $('results').querySelector('tbody');
    body.replaceChildren(...scores.map(({ label, score }) => {
      const tr = document.createElement('tr');
      tr.innerHTML = '<td class="label"></td><td class="p"></td><td class="bar"><div></div></td>';
      tr.querySelector('.label').textContent = label;
      tr.querySelector('.p').textContent = `${(score * 100).toFixed(1)}%`;
      tr.querySelector('.bar div').style.width = `${(score * 100).toFixed(1)}%`;
      tr.dataset.score = String(score);
      return tr;
    }));
    $('results').hidden = false;
    status(`Classified in ${((performance.now() - started) / 1000).toFixed(2)} s.`);
    document.body.dataset.classified = String(Number(document.body.dataset.classified ?? 0) + 1);
  } catch (e) {
    status(`Could not classify: ${e.message}`, true);
  } finally {
    $('classify').disabled = false;
  }
}

$('load').addEventListener('click', load);
$('classify').addEventListener('click', classify);
$('file').addEventListener('change', () => $('file').files[0] && setImage($('file').files[0]));
const drop = $('drop');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  const file = [...e.dataTransfer.files].find((f) => f.type.startsWith('image/'));
  if (file) setImage(file);
});
if (params.has('autoload')) load();
