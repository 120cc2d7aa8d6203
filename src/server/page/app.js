// The page's script: plain ES module, no build step. Talks to the same server's /v1 API.
const $ = (id) => document.getElementById(id);
let apiKey = sessionStorage.getItem('altclip-key') || '';

/** fetch with the API key (when one was given); non-2xx answers throw the server's error message. */
async function api(path, init = {}) {
  const headers = { ...(init.headers || {}) };
  if (apiKey) headers.authorization = `Bearer ${apiKey}`;
  const res = await fetch(path, { ...init, headers });
  if (res.ok) return res;
  let message = `HTTP ${res.status}`;
  try {
    const body = await res.json();
    if (body && body.error && body.error.message) message = body.error.message;
  } catch { /* not JSON */ }
  if (res.status === 401) $('key-form').hidden = false;
  if (res.status === 429) message = `Server busy, try again in a moment (${message})`;
  const err = new Error(message);
  err.status = res.status;
  throw err;
}

function showError(err) {
  $('error').textContent = err ? String(err.message || err) : '';
  $('error').hidden = !err;
}

async function busy(button, work) {
  button.disabled = true;
  showError(null);
  try {
    await work();
  } catch (err) {
    showError(err);
  } finally {
    button.disabled = false;
  }
}

// --- model info / API key -------------------------------------------------------------------------
async function loadInfo() {
  try {
    const models = await (await api('/v1/models')).json();
    const model = models.data[0];
    $('model').textContent = model.id;
    if (!model.search) {
      $('search-status').textContent = 'Search is off: start the server with --db <index folder>.';
      for (const el of $('search-form').elements) el.disabled = true;
    }
  } catch (err) {
    showError(err);
  }
}

$('key-form').addEventListener('submit', (e) => {
  e.preventDefault();
  apiKey = $('key').value.trim();
  sessionStorage.setItem('altclip-key', apiKey);
  $('key-form').hidden = true;
  showError(null);
  loadInfo();
});

// --- search ------------------------------------------------------------------------------------------
const thumbnails = [];

$('search-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const button = e.submitter || $('search-form').querySelector('button');
  busy(button, async () => {
    const q = $('query').value.trim();
    const k = $('k').value || '12';
    $('search-status').textContent = 'Searching…';
    const t0 = performance.now();
    const { results } = await (await api(`/v1/search?q=${encodeURIComponent(q)}&k=${encodeURIComponent(k)}`)).json();
    $('search-status').textContent = `${results.length} results in ${Math.round(performance.now() - t0)} ms`;
    for (const url of thumbnails.splice(0)) URL.revokeObjectURL(url);
    const grid = $('grid');
    grid.replaceChildren(...results.map(resultItem));
    await Promise.all(results.map((r, i) => loadThumbnail(r.id, grid.children[i].querySelector('img'))));
  }).finally(() => {
    if (!$('error').hidden) $('search-status').textContent = '';
  });
});

function resultItem(r) {
  const li = document.createElement('li');
  li.dataset.path = r.path;
  li.dataset.score = String(r.score);
  const img = document.createElement('img');
  img.alt = r.path;
  const caption = document.createElement('div');
  caption.className = 'caption';
  const name = document.createElement('span');
  name.className = 'name';
  name.title = r.path;
  name.textContent = r.path.split(/[\\/]/).pop();
  const score = document.createElement('span');
  score.className = 'score';
  score.textContent = r.score.toFixed(3);
  caption.append(name, score);
  li.append(img, caption);
  return li;
}

async function loadThumbnail(id, img) {
  // Through fetch, not <img src>: the API key (if any) goes in a header. A file that is gone (or changed)
  // since it was indexed is one broken tile; the other results stay.
  try {
    const blob = await (await api(`/v1/images/${encodeURIComponent(id)}`)).blob();
    const url = URL.createObjectURL(blob);
    thumbnails.push(url);
    img.src = url;
    await img.decode().catch(() => {});
  } catch (err) {
    if (err.status === 401) throw err;
    const li = img.closest('li');
    li.classList.add('missing');
    li.title = `${li.dataset.path}: ${err.message}`;
    img.alt = 'file missing';
  }
}

// --- classify ----------------------------------------------------------------------------------------
let imageDataUri = null;

/**
 * The image type from the file's first bytes, as the server decides it (src/image/decode.ts): a JPEG
 * saved without an extension has no MIME type in the browser, and a misnamed file has the wrong one.
 */
function sniffImageType(b) {
  const ascii = (at, s) => [...s].every((c, i) => b[at + i] === c.charCodeAt(0));
  if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'image/jpeg';
  if (ascii(0, '\x89PNG\r\n\x1a\n')) return 'image/png';
  if (ascii(0, 'GIF87a') || ascii(0, 'GIF89a')) return 'image/gif';
  if (ascii(0, 'RIFF') && ascii(8, 'WEBP')) return 'image/webp';
  if (ascii(0, 'BM')) return 'image/bmp';
  return null;
}

function pick(file) {
  if (!file) return;
  const reader = new FileReader();
  reader.onload = () => {
    const payload = String(reader.result).replace(/^data:[^,]*,/, '');
    if (payload === '') {
      showError(new Error(`${file.name} is empty`));
      return;
    }
    const head = Uint8Array.from(atob(payload.slice(0, 24)), (c) => c.charCodeAt(0));
    // Bytes the page does not know are still sent: the server names what it found (or did not).
    imageDataUri = `data:${sniffImageType(head) || 'image/x-unknown'};base64,${payload}`;
    $('preview').src = imageDataUri;
    $('preview').hidden = false;
    $('drop-text').textContent = file.name;
    $('bars').replaceChildren();
    showError(null);
  };
  reader.onerror = () => showError(new Error(`cannot read ${file.name}`));
  reader.readAsDataURL(file);
}

$('file').addEventListener('change', () => pick($('file').files[0]));
const drop = $('drop');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  pick(e.dataTransfer.files[0]);
});

$('classify').addEventListener('click', () => busy($('classify'), async () => {
  if (!imageDataUri) throw new Error('Pick or drop an image first.');
  const labels = $('labels').value.split('\n').map((l) => l.trim()).filter(Boolean);
  if (labels.length === 0) throw new Error('Type at least one label.');
  $('bars').replaceChildren();
  const res = await api('/v1/classify', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ image: imageDataUri, labels }),
  });
  const { labels: scores } = await res.json();
  $('bars').replaceChildren(...scores.map(bar));
}));

function bar({ label, score }) {
  const li = document.createElement('li');
  li.dataset.label = label;
  li.dataset.score = String(score);
  const name = document.createElement('span');
  name.className = 'label';
  name.title = label;
  name.textContent = label;
  const track = document.createElement('span');
  track.className = 'track';
  const fill = document.createElement('span');
  fill.className = 'fill';
  fill.style.width = `${(score * 100).toFixed(1)}%`;
  fill.style.display = 'block';
  track.append(fill);
  const value = document.createElement('span');
  value.className = 'value';
  value.textContent = `${(score * 100).toFixed(1)}%`;
  li.append(name, track, value);
  return li;
}

loadInfo();
