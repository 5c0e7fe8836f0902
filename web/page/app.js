// The page: pick or open a model, generate a grid of samples by Langevin sampling in a pool of
// workers, watch them and the energy chart live, blend two samples, vary or complete one (redraw
// a region, keep the rest), save PNGs. When the host
// also offers a classifier for the same images, finished samples are labelled with their family
// mix and new-type candidates are marked, and the sampler can be guided toward a family mix or a
// subtype by a classifier's gradient.
import { EnergyChart } from './chart.js';
import { GridView, formatEnergy } from './grid_view.js';
import { downloadCanvas, drawImage, fileToInput, gridCanvas } from './images.js';
import { fetchModel, fetchModelList, formatBytes, ListError } from './models.js';
import { WorkerPool, defaultWorkerCount } from './pool.js';
import { hasWasmSimd, hasWebAssembly } from './simd.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

const state = {
  model: null,        // {name, card, width, height, size}
  running: false,
  lastRun: null,      // {seed, n, params, kind}
  agg: null,          // per-step energy sums over the grid
  blend: { a: null, b: null },
  // The drawing to vary or complete; the painted region (1 = redraw); the strokes drawn on it to
  // keep (1 = kept, region "strokes"); the pointer's last position while it draws.
  vary: { image: null, paint: null, strokes: null, last: null },
  msPerImageStep: 0,
  classifiers: [],    // classifier entries of the model list
  classifier: null,   // {name, input, reference} once loaded into the pool
  guide: null,        // {name, file, input, labels, families, noiseAware} once in every worker
  guideNote: 'Load an energy model first.',  // why the guide is off, while it is
  guideLinkApplied: false,
};

const pool = new WorkerPool(defaultWorkerCount());
const chart = new EnergyChart($('chart'));
const grid = new GridView($('grid'), {
  onPick: (i, which) => (which === 'v' ? pickVarySource(i) : pickBlendEnd(i, which)),
  onZoom: zoom,
  onSave: saveSample,
});

function setState(s) { document.body.dataset.state = s; }
function status(text) { $('status').textContent = text; }

function notice(text) {
  const n = $('notice');
  n.textContent = text;
  n.hidden = !text;
}

// --- models ---------------------------------------------------------------------------------

function describeInput(input) {
  return input ? `${input.channels}×${input.height}×${input.width}` : '?';
}

function renderModelList(models, source) {
  const list = $('model-list');
  list.replaceChildren();
  if (models.length === 0) {
    const li = document.createElement('li');
    li.className = 'empty';
    li.textContent = 'No models on this host yet: open a model file below.';
    list.append(li);
  }
  for (const m of models) {
    const li = document.createElement('li');
    li.dataset.name = m.name;
    const title = document.createElement('div');
    title.className = 'name';
    title.textContent = m.card?.name || m.name;
    const desc = document.createElement('div');
    desc.className = 'desc';
    const meta = document.createElement('div');
    meta.className = 'meta';
    if (m.valid) {
      desc.textContent = m.card?.description || '';
      meta.textContent = `${m.file} · ${formatBytes(m.size)} · input ${describeInput(m.input)}` +
                         (m.parameters ? ` · ${m.parameters.toLocaleString('en')} parameters` : '') +
                         (m.autoguide ? ` + ${m.autoguide.parameters.toLocaleString('en')} in its weaker network` : '');
      const load = document.createElement('button');
      load.type = 'button';
      load.className = 'secondary load';
      load.textContent = 'Load';
      load.addEventListener('click', () => loadListed(m));
      li.append(title, desc, meta, load);
    } else {
      li.classList.add('invalid');
      desc.textContent = `Not a valid model: ${m.error}`;
      meta.textContent = `${m.file} · ${formatBytes(m.size)}`;
      li.append(title, desc, meta);
    }
    list.append(li);
  }
  list.dataset.source = source;
}

function showProgress(label, loaded, total) {
  $('download').hidden = false;
  $('download-bar').style.width = total ? `${(100 * loaded) / total}%` : '100%';
  $('download-text').textContent = `${label}: ${formatBytes(loaded)}${total ? ` of ${formatBytes(total)}` : ''}`;
}

async function loadListed(entry) {
  for (const li of $('model-list').children) li.classList.toggle('selected', li.dataset.name === entry.name);
  await loadFrom(entry.url, entry.sha256, entry.file);
}

async function loadFrom(url, etag, label) {
  if (state.running) stop();
  setState('loading');
  notice('');
  status(`Loading ${label}…`);
  try {
    const { bytes, fromCache } = await fetchModel(url, {
      etag, progress: (loaded, total) => showProgress(`Downloading ${label}`, loaded, total),
    });
    showProgress(fromCache ? `${label} from the browser cache` : `Downloaded ${label}`,
                 bytes.byteLength, bytes.byteLength);
    await loadBytes(bytes, label);
  } catch (e) {
    failLoad(e.message);
  }
}

function failLoad(message) {
  state.model = null;
  state.guideNote = 'Load an energy model first.';
  setState('no-model');
  notice(message);
  status('No model loaded');
  $('card').hidden = true;
  enableControls();
}

async function loadBytes(bytes, label) {
  status(`Checking ${label}…`);
  let card;
  try {
    card = await pool.load(bytes);
  } catch (e) {
    failLoad(`${label} is not a valid model file: ${e.message}`);
    return;
  }
  const input = card.input;
  state.model = { name: card.card?.name || label, file: label, card, width: input.width,
                  height: input.height, size: bytes.byteLength };
  // Picked drawings belong to the previous model's image size.
  state.blend = { a: null, b: null };
  state.vary = { image: null, paint: null, strokes: null, last: null };
  for (const id of ['blend-a', 'blend-b', 'vary-src']) $(id).getContext('2d').clearRect(0, 0, $(id).width, $(id).height);
  renderCard();
  applyDefaults();
  setState('ready');
  if (card.kind !== 'energy') {
    notice(`${label} is a ${card.kind}, not an energy model: it cannot be sampled.`);
  } else if (input.channels !== 1) {
    notice(`${label} takes ${input.channels} channels; this page draws grayscale models only.`);
  }
  status(`Ready: ${state.model.name} on ${pool.size} worker${pool.size > 1 ? 's' : ''}`);
  enableControls();
  if (card.kind === 'energy') {
    loadClassifierFor(input);
    loadGuideFor(input);
  } else {
    state.guideNote = 'Guidance needs an energy model to sample.';
    showGuide();
  }
}

// --- labels ---------------------------------------------------------------------------------

const sameInput = (a, b) => a && b && a.channels === b.channels && a.height === b.height && a.width === b.width;

// Loads the first listed classifier that takes the energy model's images into the pool, one
// trained on clean drawings (as ebm-eval's judge) before a noise-aware guide.
async function loadClassifierFor(input) {
  if (sameInput(state.classifier?.input, input)) return;
  state.classifier = null;
  $('labels-bar').hidden = true;
  // A noise-aware classifier needs a noise level: it guides, and never labels.
  const entry = state.classifiers.find((m) => sameInput(m.input, input) && !isNoiseAware(m));
  if (!entry) return;
  try {
    const bytes = await classifierBytes(entry);
    const card = await pool.loadClassifier(bytes);
    state.classifier = { name: card.card?.name || entry.name, input: card.input,
                         reference: card.card?.reference?.sharpness };
    $('labeller').textContent = `Labels: ${state.classifier.name} (${card.labels.length} subtypes)`;
    $('labels-bar').hidden = false;
    if (!state.running && grid.images.some(Boolean)) labelGrid();
  } catch (e) {
    notice(`The classifier ${entry.file} could not be loaded, so samples are not labelled: ${e.message}`);
  }
}

// A listed classifier's file, fetched once per page even when it both labels and guides.
const classifierDownloads = new Map();
function classifierBytes(entry) {
  if (!classifierDownloads.has(entry.url)) {
    const p = fetchModel(entry.url, { etag: entry.sha256 }).then((r) => r.bytes);
    p.catch(() => classifierDownloads.delete(entry.url));
    classifierDownloads.set(entry.url, p);
  }
  return classifierDownloads.get(entry.url);
}

// --- guided sampling --------------------------------------------------------------------------

// The strength slider's guidance scales L, and each mode's defaults: what models/README.md
// ("Guided sampling") measured on bridges.safetensors with the clean classifier as the guide. One
// subtype: the exact gradient at L = 3000 (90% or more of that subtype for six of eight). Two
// families: L = 300 with the classifier reading the denoised estimate (the exact gradient lets one
// family win); a noise-aware guide (bridge-guide) reads the noisy state itself, as it was trained
// to, at full strength on every level: L = 30 for one subtype (99.6-100% for all eight), 10 for
// two families.
const GUIDE_SCALES = [1, 3, 10, 30, 100, 300, 1000, 3000, 10000, 30000];
const GUIDE_DEFAULT_SCALE = { subtype: 3000, pair: 300 };
const NOISE_AWARE_GUIDE_DEFAULT_SCALE = { subtype: 30, pair: 10 };
const familyOf = (label) => label.split('_')[0];  // as the runtime's family_of (metrics.h)
const isNoiseAware = (m) => m.noise_conditional === true || m.card?.noise_conditional === true;
const guideMode = () => document.querySelector('input[name="guide-mode"]:checked').value;
const walksNoiseLevels = (form) => form === 'annealed' || form === 'ddim';

function scaleIndex(scale) {
  let best = 0;
  GUIDE_SCALES.forEach((v, i) => {
    if (Math.abs(Math.log(v / scale)) < Math.abs(Math.log(GUIDE_SCALES[best] / scale))) best = i;
  });
  return best;
}

// The guide: a listed classifier that takes the model's images, a noise-aware one (trained on the
// states the sampler passes through) before one trained on clean drawings; loaded into every
// worker. The clean one keeps labelling (loadClassifierFor).
async function loadGuideFor(input) {
  if (sameInput(state.guide?.input, input)) { showGuide(); return; }
  state.guide = null;
  const fits = state.classifiers.filter((m) => sameInput(m.input, input));
  const entry = fits.find(isNoiseAware) || fits[0];
  if (!entry) {
    state.guideNote = `No classifier on this host takes this model's ${describeInput(input)} images, ` +
      'so there is nothing to guide the sampler with. Put one that does (such as ' +
      'bridge-classifier.safetensors for the bridge models) in the models folder beside the model.';
    showGuide();
    return;
  }
  state.guideNote = `Loading the guide classifier ${entry.file}…`;
  showGuide();
  try {
    const card = await pool.loadGuide(await classifierBytes(entry));
    if (!sameInput(state.model?.card.input, input)) return;  // another model came meanwhile
    const families = [];
    for (const l of card.labels) if (!families.includes(familyOf(l))) families.push(familyOf(l));
    state.guide = { name: card.card?.name || entry.name, file: entry.file, input: card.input,
                    labels: card.labels, families, noiseAware: isNoiseAware(entry) };
    fillGuideChoices();
    applyGuideLink();
  } catch (e) {
    state.guideNote = `The guide classifier ${entry.file} could not be loaded, so guidance is off: ${e.message}`;
  }
  showGuide();
}

function fillGuideChoices() {
  const g = state.guide;
  const fill = (select, values, pick) => {
    select.replaceChildren(...values.map((v) => new Option(v, v)));
    select.value = values.includes(pick) ? pick : values[0];
  };
  fill($('guide-a'), g.families, g.families.includes('arch') ? 'arch' : g.families[0]);
  fill($('guide-b'), g.families, g.families.includes('suspension') ? 'suspension' : g.families[1]);
  fill($('guide-subtype'), g.labels, g.labels[0]);
  const pairs = g.families.length >= 2;
  document.querySelector('input[name="guide-mode"][value="pair"]').disabled = !pairs;
  setGuideMode(pairs ? guideMode() : 'subtype');
}

// A mode's defaults: its strength and, for two families and a clean guide, the denoised estimate.
function setGuideMode(mode) {
  document.querySelector(`input[name="guide-mode"][value="${mode}"]`).checked = true;
  const defaults = state.guide?.noiseAware ? NOISE_AWARE_GUIDE_DEFAULT_SCALE : GUIDE_DEFAULT_SCALE;
  $('guide-scale').value = scaleIndex(defaults[mode]);
  $('guide-denoised').checked = mode === 'pair' && !state.guide?.noiseAware;
  showGuideFields();
}

function showGuideFields() {
  const mode = guideMode();
  for (const el of document.querySelectorAll('[data-guide]')) el.hidden = el.dataset.guide !== mode;
  const pct = Math.round(100 * Number($('guide-share').value));
  $('guide-share-out').value = `${$('guide-a').value} ${pct}% / ${$('guide-b').value} ${100 - pct}%`;
  $('guide-scale-out').value = `L ${GUIDE_SCALES[Number($('guide-scale').value)]}`;
  showAutoguideHint();
}

// Guiding toward two families with an autoguided model: autoguidance pushes away from the weaker
// network's guess, toward whole bridges of one family, so the shipped bridge model alone mixes
// two families 1.5-6x as often (models/README.md, "Guided sampling"). Say so, with a button that
// sets w 1.
function showAutoguideHint() {
  const w = Number($('autoguide').value);
  $('guide-autoguide').hidden = !(state.guide && $('guide-on').checked && guideMode() === 'pair' &&
                                  hasAutoguide() && walksNoiseLevels($('form').value) && w !== 1);
  $('guide-autoguide-w').value = String(w);
}

// The guide settings of a shared link (guide=MIX&guide_scale=L&guide_sigma=S&guide_denoised=1),
// once the guide's labels are known: one subtype, or two families with their shares.
function applyGuideLink() {
  if (state.guideLinkApplied || !params.has('guide')) return;
  state.guideLinkApplied = true;
  const spec = params.get('guide'), g = state.guide;
  const parts = spec.split(',').map((p) => p.split(':'));
  const share = (p) => (p.length > 1 ? Number(p[1]) : 1);
  if (parts.length === 1 && g.labels.includes(parts[0][0])) {
    setGuideMode('subtype');
    $('guide-subtype').value = parts[0][0];
  } else if (parts.length === 2 && parts.every((p) => g.families.includes(p[0]) && share(p) > 0) &&
             parts[0][0] !== parts[1][0]) {
    setGuideMode('pair');
    $('guide-a').value = parts[0][0];
    $('guide-b').value = parts[1][0];
    $('guide-share').value = share(parts[0]) / (share(parts[0]) + share(parts[1]));
  } else {
    notice(`The link's guide '${spec}' is neither one subtype nor two families of ${g.name} ` +
           `(${g.families.join(', ')}; ${g.labels.join(', ')}), so the samples are not guided.`);
    return;
  }
  $('guide-on').checked = true;
  if (params.has('guide_scale')) $('guide-scale').value = scaleIndex(Number(params.get('guide_scale')) || 1);
  if (params.has('guide_sigma')) $('guide-sigma').value = params.get('guide_sigma');
  if (params.has('guide_denoised')) $('guide-denoised').checked = params.get('guide_denoised') === '1';
  showGuideFields();
}

function showGuide() {
  const ready = !!state.guide && canSample();
  if (state.model && !canSample()) state.guideNote = 'This model cannot be sampled here, so there is nothing to guide.';
  $('guide-set').disabled = !ready;
  const why = $('guide-why');
  why.className = `hint ${ready ? 'ready' : 'off'}`;
  why.textContent = ready
    ? `Guide: ${state.guide.name}, a classifier ${state.guide.noiseAware ? 'trained on noisy states (noise-aware)' : 'trained on clean drawings'}. ` +
      'Every step is also pulled toward the chosen type: for Generate, blends, Variations and Complete.'
    : state.guideNote;
  if (ready) showGuideFields();
}

// The guide of the next run, or null: {target, scale, sigma, onDenoised, text}. Throws for a bad
// setting, with what to change.
function readGuide(form) {
  if (!state.guide || !canSample() || !$('guide-on').checked) return null;
  const scale = GUIDE_SCALES[Number($('guide-scale').value)];
  const noiseLevels = walksNoiseLevels(form);
  const sigma = noiseLevels ? Number($('guide-sigma').value) : 1;
  const onDenoised = noiseLevels && $('guide-denoised').checked;
  if (!(sigma > 0)) throw new Error('The guide\'s "full strength below σ" must be a number > 0.');
  let target, what;
  if (guideMode() === 'subtype') {
    target = what = $('guide-subtype').value;
  } else {
    const a = $('guide-a').value, b = $('guide-b').value;
    if (a === b) throw new Error(`Pick two different families to mix (both are ${a}), or guide toward one subtype.`);
    const pct = Math.round(100 * Number($('guide-share').value));
    target = `${a}:${pct / 100},${b}:${(100 - pct) / 100}`;
    what = `${a} ${pct}% / ${b} ${100 - pct}%`;
  }
  const text = `guided toward ${what} (strength ${scale}${onDenoised ? ', on the denoised estimate' : ''}` +
    `${noiseLevels && sigma !== 1 ? `, full below σ ${sigma}` : ''}, by ${state.guide.name})`;
  return { target, scale, sigma, onDenoised, text };
}

// A new-type candidate mixes two families (each >= 25%) and is drawn at least 0.9 times as
// sharply as the real drawings (the classifier card's reference.sharpness). Novelty needs the
// training set, so ebm-eval checks it.
async function labelGrid() {
  if (!state.classifier || !state.model) return;
  const d = state.model.width * state.model.height;
  const chains = grid.images.map((x, i) => (x ? i : -1)).filter((i) => i >= 0);
  if (chains.length === 0) return;
  const images = new Float32Array(chains.length * d);
  chains.forEach((c, k) => images.set(grid.images[c], k * d));
  let results;
  try {
    results = await pool.classify(images, chains.length);
  } catch (e) {
    notice(`Labelling failed: ${e.message}`);
    return;
  }
  const ref = state.classifier.reference;
  let hybrids = 0, candidates = 0;
  results.forEach((r, k) => {
    const candidate = r.hybrid && (ref === undefined || r.sharpness >= 0.9 * ref);
    hybrids += r.hybrid;
    candidates += candidate;
    grid.label(chains[k], r, candidate);
  });
  $('labels-summary').textContent = `${hybrids} of ${results.length} mix two families · ` +
    `${candidates} new-type candidate${candidates === 1 ? '' : 's'}`;
}

function renderCard() {
  const m = state.model, c = m.card, card = c.card || {};
  const box = $('card');
  box.replaceChildren();
  const h = document.createElement('h3');
  h.textContent = m.name;
  const p = document.createElement('p');
  p.textContent = card.description || '';
  const dl = document.createElement('dl');
  const row = (k, v) => {
    if (v === undefined || v === null || v === '') return;
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = typeof v === 'object' ? JSON.stringify(v).replace(/[{}"]/g, '').replace(/,/g, ', ') : String(v);
    dl.append(dt, dd);
  };
  row('file', `${m.file} (${formatBytes(m.size)})`);
  row('input', describeInput(c.input));
  row('parameters', c.parameters === undefined ? undefined : c.parameters.toLocaleString('en') +
      (c.autoguide ? ` (and ${c.autoguide.parameters.toLocaleString('en')} in the weaker network it carries for autoguidance)` : ''));
  for (const [k, v] of cardSummary(card, c)) row(k, v);
  box.append(h, p, dl);
  box.hidden = false;
}

// The noise levels a walk takes: annealed, its levels; ddim, one per step (as the runtime counts).
const levelCount = (s) => (s.form === 'ddim' ? Math.max(s.steps, 1) : s.levels);

// The card as a person reads it: method, training, data and evaluation in a line each; any other
// fields as short text.
function cardSummary(card, c) {
  const out = [];
  const t = card.training || {};
  const num = (v, d = 3) => (typeof v === 'number' ? Number(v.toPrecision(d)).toLocaleString('en') : v);
  const sampler = c.sampler || {};
  const levels = levelCount(sampler);
  const range = sampler.split_sigma
    ? `σ ${num(sampler.sigma_max)} → ${num(sampler.split_sigma)} in ${sampler.split_levels}, → ${num(sampler.sigma_min)} in ${levels - sampler.split_levels}`
    : `σ ${num(sampler.sigma_max)} → ${num(sampler.sigma_min)}`;
  const spacing = `${range}${sampler.rho ? `, spaced evenly in σ^(1/${num(sampler.rho)})` : ''}`;
  const samplerText = sampler.form === 'annealed'
    ? `annealed Langevin, ${sampler.steps} steps over ${sampler.levels} noise levels (${spacing})`
    : sampler.form === 'ddim'
      ? `DDIM, one step per noise level, ${sampler.steps} levels (${spacing}, η ${sampler.eta})${sampler.resample > 1 ? `, ${sampler.resample} rounds at ${sampler.resample_sigma_max ? `the levels up to σ ${num(sampler.resample_sigma_max)}` : 'every level'}` : ''}`
      : sampler.form ? `${sampler.form} Langevin, ${sampler.steps} steps` : undefined;
  const autoguideText = c.autoguide && sampler.autoguide !== undefined && sampler.autoguide !== 1
    ? `autoguided by a weaker network of ${num(c.autoguide.parameters, 6)} parameters${c.autoguide.card?.name ? ` (${c.autoguide.card.name})` : ''}, w ${num(sampler.autoguide)}${sampler.autoguide_sigma_max ? ` at σ ≤ ${num(sampler.autoguide_sigma_max)}` : ''}`
    : undefined;
  if (t.objective || samplerText) out.push(['method', [t.objective, samplerText].filter(Boolean).join('; sampled by ') + (autoguideText ? `, ${autoguideText}` : '')]);
  if (t.epochs !== undefined) {
    const parts = [`${t.epochs} epochs`, t.steps !== undefined && `${num(t.steps, 6)} steps`,
                   t.batch && `batch ${t.batch}`, t.wall_time && `${t.wall_time} of training`,
                   // A run that continued another model (ebm-train --init-from, --freeze-layers).
                   typeof t.started_from === 'string' && `continuing ${t.started_from.split('/').pop()}` +
                     (t.frozen_layers ? ` with its first ${t.frozen_layers} layers kept as they were` : '')];
    out.push(['training', parts.filter(Boolean).join(', ')]);
  }
  const d = card.dataset;
  if (d) out.push(['data', d.images ? `${num(d.images, 6)} images (${num(d.train, 6)} to train, ${num(d.held_out, 6)} held out)${d.path ? ` from ${d.path}` : ''}` : JSON.stringify(d)]);
  const e = card.evaluation;
  if (e && typeof e === 'object') {
    const parts = [e.frechet_ratio !== undefined && `Fréchet distance ${num(e.frechet_ratio)}× the real-vs-real floor`,
                   e.rarest_subtype !== undefined && `rarest subtype ${num(100 * e.rarest_subtype)}%`,
                   e.subtypes_present !== undefined && `${e.subtypes_present} subtypes present`,
                   e.speckle_ratio !== undefined && `isolated dark pixels ${num(e.speckle_ratio)}× real`,
                   e.sharpness_ratio !== undefined && `sharpness ${num(e.sharpness_ratio)} of real`,
                   e.samples && `${e.samples} samples, seed ${e.seed}`];
    out.push(['evaluation', parts.filter(Boolean).join(' · ') || JSON.stringify(e)]);
  }
  const skip = new Set(['name', 'description', 'training', 'dataset', 'evaluation', 'architecture', 'exported_by']);
  for (const [k, v] of Object.entries(card)) if (!skip.has(k)) out.push([k.replace(/_/g, ' '), v]);
  if (card.architecture?.preset) out.push(['architecture', `${card.architecture.preset} preset`]);
  return out;
}

// --- controls -------------------------------------------------------------------------------

const FIELDS = ['steps', 'step_size', 'noise', 'grad_clip', 'eps', 'start_cell', 'levels', 'sigma_max', 'sigma_min', 'eta', 'resample', 'resample_sigma_max', 'rho', 'split_sigma', 'split_levels', 'autoguide', 'autoguide_sigma_max'];
// Whether the loaded model carries a weaker network for autoguidance (a format-3 file).
const hasAutoguide = () => !!state.model?.card.autoguide;

function applyDefaults() {
  const s = state.model?.card.sampler;
  if (!s) return;
  for (const f of FIELDS) if (s[f] !== undefined) $(f).value = s[f];
  if (s.start_cell === undefined) $('start_cell').value = 1;  // files written before the setting
  if (s.resample === undefined) $('resample').value = 1;
  if (s.resample_sigma_max === undefined) $('resample_sigma_max').value = 0;  // every level
  if (s.rho === undefined) $('rho').value = 0;  // geometric levels
  if (s.split_sigma === undefined) { $('split_sigma').value = 0; $('split_levels').value = 0; }  // one piece
  if (s.autoguide === undefined) $('autoguide').value = 1;  // the model alone
  if (s.autoguide_sigma_max === undefined) $('autoguide_sigma_max').value = 0;
  $('form').value = s.form || 'paper';
  // Settings in the address (a shared link) win over the model's defaults.
  for (const f of [...FIELDS, 'form', 'seed', 'count']) if (params.has(f)) $(f).value = params.get(f);
  showFormFields();
  showAutoguideHint();
}

function showFormFields() {
  const form = $('form').value;
  for (const el of document.querySelectorAll('[data-form]'))
    el.hidden = !el.dataset.form.split(' ').includes(form) || (el.dataset.autoguide !== undefined && !hasAutoguide());
}

function readSettings() {
  const num = (id) => Number($(id).value);
  const p = { form: $('form').value, steps: Math.round(num('steps')) };
  if (p.form === 'annealed' || p.form === 'ddim') {
    Object.assign(p, { sigma_max: num('sigma_max'), sigma_min: num('sigma_min'), rho: num('rho') });
    if (p.form === 'ddim') Object.assign(p, { eta: num('eta'), resample: num('resample'), resample_sigma_max: num('resample_sigma_max') });
    else Object.assign(p, { eps: num('eps'), levels: Math.round(num('levels')) });
    if (p.form === 'annealed' && !(p.levels >= 1)) throw new Error('Noise levels must be at least 1.');
    if (p.form === 'ddim' && !(p.eta >= 0 && p.eta <= 1)) throw new Error('η must be between 0 and 1.');
    if (p.form === 'ddim' && !(Number.isInteger(p.resample) && p.resample >= 1 && p.resample <= 100)) throw new Error('Rounds per level must be a whole number from 1 to 100.');
    if (p.form === 'ddim' && !(p.resample_sigma_max >= 0 && p.resample_sigma_max <= 1e4)) throw new Error('The rounds\' σ limit must be from 0 (every level) to 10000.');
    if (!(p.rho === 0 || (p.rho >= 1 && p.rho <= 100))) throw new Error('The spacing ρ must be 0 (even in log σ) or from 1 to 100.');
    if (!(p.sigma_min > 0 && p.sigma_min <= p.sigma_max)) throw new Error('The noise levels need 0 < smallest σ ≤ largest σ.');
    Object.assign(p, { split_sigma: num('split_sigma'), split_levels: Math.round(num('split_levels')) });
    if (p.split_sigma !== 0) {
      const levels = levelCount(p);
      if (!(p.split_sigma > p.sigma_min && p.split_sigma < p.sigma_max)) throw new Error('The split σ must lie between the smallest and the largest σ (0: no split).');
      if (!(p.split_levels >= 1 && levels - p.split_levels >= 2)) throw new Error(`With a split, the levels above it must be from 1 to ${Math.max(levels - 2, 1)} of the ${levels}.`);
    }
    if (hasAutoguide()) {
      Object.assign(p, { autoguide: num('autoguide'), autoguide_sigma_max: num('autoguide_sigma_max') });
      if (!(p.autoguide >= 0 && p.autoguide <= 20)) throw new Error('The autoguidance w must be from 0 to 20 (1: the model alone).');
      if (!(p.autoguide_sigma_max >= 0 && p.autoguide_sigma_max <= 1e4)) throw new Error('The autoguidance σ limit must be from 0 (every level) to 10000.');
    }
  } else {
    p.start_cell = num('start_cell');
    if (p.form === 'paper') Object.assign(p, { step_size: num('step_size'), noise: num('noise'), grad_clip: num('grad_clip') });
    else p.eps = num('eps');
    if (!(Number.isInteger(p.start_cell) && p.start_cell >= 1 && p.start_cell <= 4096)) throw new Error('The noise cell must be a whole number of pixels from 1 to 4096.');
  }
  const seed = num('seed');
  const n = Math.round(num('count'));
  if (!Number.isInteger(seed) || seed < 0 || seed > Number.MAX_SAFE_INTEGER) throw new Error('The seed must be a whole number ≥ 0.');
  if (!(n >= 1 && n <= 64)) throw new Error('Samples must be between 1 and 64.');
  if (!(p.steps >= 1)) throw new Error('Steps must be at least 1.');
  return { params: p, seed, n };
}

const canSample = () => !!state.model && state.model.card.kind === 'energy' && state.model.card.input.channels === 1;

function enableControls() {
  const sampleable = canSample();
  $('generate').disabled = !sampleable || state.running;
  $('stop').disabled = !state.running;
  $('blend').disabled = !sampleable || state.running || !state.blend.a || !state.blend.b;
  $('vary').disabled = !sampleable || state.running || !state.vary.image;
  $('complete').disabled = $('vary').disabled || !redrawMask().some((v) => v > 0);
  $('save-grid').disabled = !grid.images.some(Boolean);
  showGuide();
}

// --- sampling -------------------------------------------------------------------------------

function start(kind) {
  let settings;
  try {
    settings = readSettings();
  } catch (e) {
    notice(e.message);
    return;
  }
  let guide;
  try {
    guide = readGuide(settings.params.form);
  } catch (e) {
    notice(e.message);
    return;
  }
  notice('');
  const { params: p, seed, n } = settings;
  const m = state.model;
  let startSpec = { kind: 'uniform' };
  if (kind === 'blend') {
    const from = Number($('mix-from').value), to = Number($('mix-to').value);
    const t = new Float32Array(n);
    for (let i = 0; i < n; ++i) t[i] = n === 1 ? (from + to) / 2 : from + ((to - from) * i) / (n - 1);
    startSpec = { kind: 'blend', a: state.blend.a, b: state.blend.b, t, strength: Number($('blend-strength').value) };
  } else if (kind === 'variation') {
    startSpec = { kind: 'variation', image: state.vary.image, strength: Number($('strength').value) };
  } else if (kind === 'inpaint') {
    startSpec = { kind: 'inpaint', image: state.vary.image, mask: redrawMask().map((v) => 1 - v) };
  }
  state.running = true;
  const noiseLevels = walksNoiseLevels(p.form);
  state.lastRun = { seed, n, params: p, kind, strength: startSpec.strength, region: $('region').value, guide,
                    noiseLevels };
  // previewSigma: per chain, the noise level of the denoised estimate it shows (Infinity: none
  // yet); firstGridMs: when every tile first showed a whole drawing (below); finishedAt: the
  // performance.now() of the finished grid, labelled where a classifier is loaded.
  state.agg = { sum: [], min: [], max: [], count: [], chainStep: new Array(n).fill(0),
                previewSigma: new Array(n).fill(Infinity), t0: performance.now(), firstGridMs: null,
                finishedAt: null, total: p.steps, where: '', reports: 0,
                // the news not drawn yet (chain -> picture, energy, step) and the live frame's state
                tiles: new Map(), timer: 0, frame: 0, firstPending: null, lastFrame: -Infinity };
  grid.reset(n, m.width, m.height);
  $('labels-summary').textContent = '';
  chart.reset(p.steps);
  // Under the noise-level forms each step's energy is taken at that step's own noise level, where
  // E = |x - D|^2 / (2 sigma^2) stays near one half per pixel while the walk denoises and rises at
  // the smallest sigma; the chart shows instead how far the drawings still move.
  $('chart-title').textContent = noiseLevels ? 'Change per step' : 'Energy per step';
  $('chart-hint').textContent = noiseLevels
    ? '(how much each step still redraws: RMS change of each drawing, as the model sees it, since the step before; mean over the grid; band: min to max)'
    : '(mean over the grid; band: min to max; low = bridge-like)';
  $('progress-bar').style.width = '0%';
  $('caption').textContent = '';
  setState('running');
  showGrid();
  status(`Sampling ${n} chain${n > 1 ? 's' : ''} on ${Math.min(pool.size, n)} worker${pool.size > 1 && n > 1 ? 's' : ''}…`);
  enableControls();
  const url = new URL(location.href);
  for (const [k, v] of Object.entries({ seed, count: n, ...p })) url.searchParams.set(k, v);
  for (const k of ['guide', 'guide_scale', 'guide_sigma', 'guide_denoised']) url.searchParams.delete(k);
  if (guide) {
    url.searchParams.set('guide', guide.target);
    url.searchParams.set('guide_scale', guide.scale);
    if (walksNoiseLevels(p.form)) {
      url.searchParams.set('guide_sigma', guide.sigma);
      url.searchParams.set('guide_denoised', guide.onDenoised ? 1 : 0);
    }
  }
  history.replaceState(null, '', url);
  const g = guide && { target: guide.target, scale: guide.scale, sigma: guide.sigma, onDenoised: guide.onDenoised };
  pool.run({ n, params: p, seed, start: startSpec, guide: g }, {
    onProgress,
    onDone: ({ stopped, msPerImageStep }) => finishRun(stopped, msPerImageStep),
    onError: (message) => {
      state.running = false;
      cancelFrame(state.agg);  // the failure's status stays on screen
      setState('error');
      notice(`Sampling failed: ${message}`);
      status('Sampling failed');
      enableControls();
    },
  });
}

// The samples are what a run is for: when the grid's first tile is not wholly on screen (a phone
// scrolled down to the settings or the blend panel below the grid, a short window scrolled down
// the side panel), scroll the samples panel to the top. The bar that holds Generate on narrow
// screens is fixed to the bottom and covers what is under it. A jump, not a smooth scroll: that is
// half a second of frames drawn while the workers start (bench/README.md).
function showGrid() {
  const first = $('grid').firstElementChild;
  if (!first) return;
  const bar = document.querySelector('.controls .actions');
  const bottom = getComputedStyle(bar).position === 'fixed' ? bar.getBoundingClientRect().top : innerHeight;
  const r = first.getBoundingClientRect();
  if (r.top >= 0 && r.bottom <= bottom) return;
  $('results').scrollIntoView({ block: 'start' });
}

const smoothScroll = () => (matchMedia('(prefers-reduced-motion: reduce)').matches ? 'auto' : 'smooth');

// At sigma 5 (level 14 of the shipped model's 40) every tile already has the layout it ends with.
const kLayoutSigma = 5;

// A worker's progress is noted when it arrives and drawn at the next live frame (below), so that
// the workers' reports of one step make one frame, not one each.
function onProgress({ chain0, count, step, total, energies, images, denoised, moves, sigma, level, levels }) {
  const a = state.agg, d = state.model.width * state.model.height;
  ++a.reports;
  // The chart: energies, or under the noise-level forms how far each drawing still moves (each
  // step's energy is at its own noise level there, and says little from step to step).
  const charted = state.lastRun.noiseLevels ? moves : energies;
  let sum = 0, lo = Infinity, hi = -Infinity;
  for (let i = 0; i < count; ++i) {
    const c = chain0 + i, e = energies[i], v = charted ? charted[i] : NaN;
    sum += v; lo = Math.min(lo, v); hi = Math.max(hi, v);
    const tile = a.tiles.get(c) || {};
    if (images) {
      tile.image = images.subarray(i * d, (i + 1) * d);
      tile.imageStep = step;
    }
    tile.energy = e;
    tile.step = step;
    a.tiles.set(c, tile);
    a.chainStep[c] = step;
    if (images && (denoised || step === total)) a.previewSigma[c] = step === total ? 0 : sigma;
  }
  a.sum[step] = (a.sum[step] || 0) + sum;
  a.count[step] = (a.count[step] || 0) + count;
  a.min[step] = Math.min(a.min[step] ?? Infinity, lo);
  a.max[step] = Math.max(a.max[step] ?? -Infinity, hi);
  const n = state.lastRun.n;
  if (a.count[step] === n) chart.push(step, a.sum[step] / n, a.min[step], a.max[step]);
  a.total = total;
  // The annealed form refines coarse to fine: say which noise level the grid is at.
  a.where = levels ? ` · noise level ${level + 1} of ${levels} (σ ${sigma.toPrecision(2)})` +
    (denoised && step < total ? ' · showing each drawing as the model sees it so far' : '') : '';
  // Drawn once every chain has news (the workers' reports of one step make one frame), at most
  // every kFrameMs; a worker that lags is not waited for beyond kLagMs.
  if (a.frame) return;
  const now = performance.now();
  a.firstPending ??= now;
  const due = Math.max(a.lastFrame + kFrameMs, a.tiles.size === state.lastRun.n ? now : a.firstPending + kLagMs);
  clearTimeout(a.timer);
  a.timer = setTimeout(() => { a.timer = 0; a.frame = requestAnimationFrame(() => drawProgress(a)); },
                       Math.max(0, due - now));
}

// Live frames at most every kFrameMs: each frame costs Chromium's main thread and compositor time
// the workers then lack (on 2 cores, a frame for each worker's message cost about a tenth of the
// time to a finished grid of the shipped model, whose steps take a worker about 200 ms:
// bench/README.md).
const kFrameMs = 100, kLagMs = 250;

function cancelFrame(a) {
  clearTimeout(a.timer);
  cancelAnimationFrame(a.frame);
  a.timer = 0;
  a.frame = 0;
}

function drawProgress(a) {
  a.frame = 0;
  a.firstPending = null;
  a.lastFrame = performance.now();
  if (a !== state.agg) return;  // a frame of a run that has been replaced
  for (const [c, t] of a.tiles) grid.update(c, t.image || null, t.energy, t.step, t.imageStep);
  a.tiles.clear();
  // The first full grid: every tile shows a finished sample or a denoised estimate from a level
  // at or below kLayoutSigma, where the drawing's layout is decided and only strokes sharpen.
  if (a.firstGridMs === null && a.previewSigma.every((v) => v <= kLayoutSigma)) {
    a.firstGridMs = a.lastFrame - a.t0;
  }
  const n = state.lastRun.n;
  let done = 0;
  for (const s of a.chainStep) done += s;
  $('progress-bar').style.width = `${(100 * done) / (n * a.total)}%`;
  status(`Step ${Math.min(...a.chainStep)} of ${a.total}${a.where}`);
  chart.draw();
}

function finishRun(stopped, msPerImageStep) {
  state.running = false;
  state.msPerImageStep = msPerImageStep;
  const a = state.agg;
  cancelFrame(a);
  drawProgress(a);
  const r = state.lastRun;
  const steps = Math.min(...a.chainStep);
  setState(stopped ? 'stopped' : 'done');
  const what = r.kind === 'blend' ? `from blends of A and B${r.noiseLevels ? ` (restarted, strength ${r.strength})` : ''}`
    : r.kind === 'variation' ? `variations of the picked drawing (strength ${r.strength})`
      : r.kind === 'inpaint' ? (r.region === 'strokes' ? 'your strokes kept, the rest drawn by the model'
        : `the picked drawing with its ${r.region === 'paint' ? 'painted region' : `${r.region} half`} redrawn`)
        : 'from noise';
  $('caption').textContent = `seed ${r.seed} · ${steps} of ${r.params.steps} steps · ${r.params.form} form · ${what}` +
    (r.guide ? ` · ${r.guide.text}` : '');
  status(`${stopped ? 'Stopped' : 'Done'}: ${r.n} sample${r.n > 1 ? 's' : ''}, ` +
         `${msPerImageStep.toFixed(1)} ms per image-step`);
  enableControls();
  labelGrid().finally(() => { a.finishedAt = performance.now(); });
}

function stop() {
  if (!state.running) return;
  pool.requestStop();
  $('stop').disabled = true;
  status('Stopping…');
}

// --- blends, zoom and downloads --------------------------------------------------------------

function setBlendEnd(which, floats) {
  state.blend[which] = floats;
  const c = $(`blend-${which}`);
  drawImage(c, floats, state.model.width, state.model.height);
  enableControls();
}

function pickBlendEnd(chain, which) {
  const img = grid.images[chain];
  if (!img) return;
  setBlendEnd(which, img.slice());
  grid.mark(chain, which);
}

// --- variations and completion: one drawing, a region to redraw ------------------------------

// The region to redraw, 1 per pixel: a named half, or what was painted on the drawing.
function redrawMask() {
  const m = state.model;
  if (!m || !state.vary.image) return new Float32Array(0);
  const region = $('region').value;
  if (region === 'paint') return state.vary.paint || new Float32Array(m.width * m.height);
  if (region === 'strokes') return (state.vary.strokes || new Float32Array(m.width * m.height)).map((v) => 1 - v);
  const mask = new Float32Array(m.width * m.height);
  for (let y = 0; y < m.height; ++y)
    for (let x = 0; x < m.width; ++x) {
      const redraw = region === 'left' ? x < m.width / 2 : region === 'right' ? x >= Math.floor(m.width / 2)
        : region === 'top' ? y < m.height / 2 : y >= Math.floor(m.height / 2);
      mask[y * m.width + x] = redraw ? 1 : 0;
    }
  return mask;
}

// The drawing with the region to redraw tinted red.
function drawVarySource() {
  const m = state.model, c = $('vary-src');
  if (!m || !state.vary.image) return;
  drawImage(c, state.vary.image, m.width, m.height);
  const ctx = c.getContext('2d');
  const img = ctx.getImageData(0, 0, m.width, m.height);
  const mask = redrawMask();
  for (let k = 0; k < mask.length; ++k) {
    if (!mask[k]) continue;
    img.data[4 * k] = Math.min(255, img.data[4 * k] * 0.5 + 128);
    img.data[4 * k + 1] *= 0.55;
    img.data[4 * k + 2] *= 0.55;
  }
  ctx.putImageData(img, 0, 0);
  enableControls();
}

function setVarySource(floats) {
  state.vary.image = floats;
  state.vary.paint = null;
  state.vary.strokes = null;
  if ($('region').value === 'paint' || $('region').value === 'strokes') $('region').value = 'right';
  drawVarySource();
}

// A blank sheet to draw on: Complete keeps the strokes drawn and lets the model draw the rest.
function newSketch() {
  const m = state.model;
  if (!m) return;
  setVarySource(new Float32Array(m.width * m.height).fill(1));
  state.vary.strokes = new Float32Array(m.width * m.height);
  $('region').value = 'strokes';
  drawVarySource();
}

function pickVarySource(chain) {
  const img = grid.images[chain];
  if (!img) return;
  setVarySource(img.slice());
  grid.mark(chain, 'v');
}

// Painting on the drawing marks pixels to redraw (a round brush of 3 pixels' radius); the first
// stroke starts from the half chosen before. Under "your strokes" the pointer draws instead: dark
// pixels (a brush of 1.2 pixels' radius) that Complete keeps while it redraws everything else.
// The brush follows the pointer from its last position, so a quick stroke leaves no gaps.
function paintAt(e, first) {
  const m = state.model, c = $('vary-src');
  if (!m || !state.vary.image) return;
  const drawing = $('region').value === 'strokes';
  if (drawing && !state.vary.strokes) state.vary.strokes = new Float32Array(m.width * m.height);
  if (!drawing && $('region').value !== 'paint') {
    state.vary.paint = redrawMask().slice();
    $('region').value = 'paint';
  }
  const r = c.getBoundingClientRect();
  const px = ((e.clientX - r.left) / r.width) * m.width, py = ((e.clientY - r.top) / r.height) * m.height;
  const from = first || !state.vary.last ? { x: px, y: py } : state.vary.last;
  state.vary.last = { x: px, y: py };
  const radius = drawing ? 1.2 : 3;
  const hops = Math.max(1, Math.ceil(2 * Math.hypot(px - from.x, py - from.y)));
  for (let h = 1; h <= hops; ++h) {
    const cx = from.x + ((px - from.x) * h) / hops, cy = from.y + ((py - from.y) * h) / hops;
    for (let y = Math.max(0, Math.floor(cy - radius)); y <= Math.min(m.height - 1, Math.ceil(cy + radius)); ++y)
      for (let x = Math.max(0, Math.floor(cx - radius)); x <= Math.min(m.width - 1, Math.ceil(cx + radius)); ++x) {
        if ((x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2 > radius * radius) continue;
        const k = y * m.width + x;
        if (drawing) {
          state.vary.image[k] = -1;
          state.vary.strokes[k] = 1;
        } else {
          state.vary.paint[k] = 1;
        }
      }
  }
  drawVarySource();
}

async function uploadVarySource(file) {
  if (!file || !state.model) return;
  try {
    setVarySource(await fileToInput(file, state.model.width, state.model.height));
  } catch (e) {
    notice(`Cannot read ${file.name} as an image: ${e.message}`);
  }
}

async function uploadBlendEnd(which, file) {
  if (!file || !state.model) return;
  try {
    setBlendEnd(which, await fileToInput(file, state.model.width, state.model.height));
  } catch (e) {
    notice(`Cannot read ${file.name} as an image: ${e.message}`);
  }
}

function fileStem(i) {
  const name = (state.model?.name || 'bridge').replace(/[^A-Za-z0-9._-]+/g, '-');
  return `${name}-seed${state.lastRun?.seed ?? 0}${i === undefined ? '' : `-${i}`}`;
}

function sampleCanvas(i) {
  const c = document.createElement('canvas');
  drawImage(c, grid.images[i], state.model.width, state.model.height);
  return c;
}

function saveSample(i) {
  if (grid.images[i]) downloadCanvas(sampleCanvas(i), `${fileStem(i)}.png`);
}

function zoom(i) {
  if (!grid.images[i]) return;
  drawImage($('zoom-canvas'), grid.images[i], state.model.width, state.model.height);
  const label = grid.labels[i];
  $('zoom-caption').textContent = `Sample #${i} · energy ${formatEnergy(grid.energies[i])} · seed ${state.lastRun.seed}` +
    (label ? ` · ${label.mix}${label.candidate ? ' · new-type candidate' : ''}` : '');
  $('zoom-save').onclick = () => saveSample(i);
  $('zoom').showModal();
}

function saveGrid() {
  const imgs = grid.images;
  if (!imgs.some(Boolean)) return;
  const { width, height } = state.model;
  const cols = Math.max(1, Math.round(Math.sqrt((imgs.length * height) / width)));
  downloadCanvas(gridCanvas(imgs, width, height, cols), `${fileStem()}-grid.png`);
}

// --- start-up -------------------------------------------------------------------------------

function wire() {
  $('controls').addEventListener('submit', (e) => { e.preventDefault(); start('uniform'); });
  $('stop').addEventListener('click', stop);
  $('to-settings').addEventListener('click', () => document.querySelector('.sampler').scrollIntoView({ behavior: smoothScroll() }));
  $('blend').addEventListener('click', () => start('blend'));
  $('vary').addEventListener('click', () => start('variation'));
  $('complete').addEventListener('click', () => start('inpaint'));
  $('region').addEventListener('change', () => {
    if ($('region').value === 'paint' && !state.vary.paint && state.model)
      state.vary.paint = new Float32Array(state.model.width * state.model.height);
    drawVarySource();
  });
  $('strength').addEventListener('input', () => { $('strength-out').value = $('strength').value; });
  $('blend-strength').addEventListener('input', () => { $('blend-strength-out').value = $('blend-strength').value; });
  $('upload-v').addEventListener('change', (e) => uploadVarySource(e.target.files[0]));
  $('sketch-new').addEventListener('click', newSketch);
  const src = $('vary-src');
  src.addEventListener('pointerdown', (e) => { src.setPointerCapture(e.pointerId); paintAt(e, true); });
  src.addEventListener('pointermove', (e) => { if (src.hasPointerCapture(e.pointerId)) paintAt(e); });
  $('form').addEventListener('change', showFormFields);
  for (const r of document.querySelectorAll('input[name="guide-mode"]')) r.addEventListener('change', () => setGuideMode(r.value));
  for (const id of ['guide-a', 'guide-b', 'guide-share', 'guide-scale']) $(id).addEventListener('input', showGuideFields);
  for (const id of ['guide-on', 'autoguide', 'form']) $(id).addEventListener('input', showAutoguideHint);
  $('guide-model-alone').addEventListener('click', () => { $('autoguide').value = 1; showAutoguideHint(); });
  $('reseed').addEventListener('click', () => { $('seed').value = Math.floor(Math.random() * 1e9); });
  $('reset-defaults').addEventListener('click', () => { params.delete('seed'); applyDefaults(); });
  $('save-grid').addEventListener('click', saveGrid);
  $('only-candidates').addEventListener('change', (e) => $('grid').classList.toggle('only-candidates', e.target.checked));
  $('file-input').addEventListener('change', async (e) => {
    const f = e.target.files[0];
    if (f) await loadBytes(await f.arrayBuffer(), f.name);
    e.target.value = '';
  });
  $('upload-a').addEventListener('change', (e) => uploadBlendEnd('a', e.target.files[0]));
  $('upload-b').addEventListener('change', (e) => uploadBlendEnd('b', e.target.files[0]));
  const drop = $('drop');
  for (const ev of ['dragenter', 'dragover']) {
    document.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add('over'); });
  }
  document.addEventListener('dragleave', (e) => { if (!e.relatedTarget) drop.classList.remove('over'); });
  document.addEventListener('drop', async (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    const f = e.dataTransfer?.files?.[0];
    if (f) await loadBytes(await f.arrayBuffer(), f.name);
  });
}

// The model a visitor sees first: the energy model whose card reports the best evaluation (the
// lowest Fréchet distance over its real-vs-real floor, from ebm-eval), else the first listed
// (files are listed by name, which would put bridges-cd, the paper's method, before bridges).
function defaultModel(models) {
  const energy = models.filter((m) => m.valid && m.kind === 'energy');
  const score = (m) => {
    const r = m.card?.evaluation?.frechet_ratio;
    return typeof r === 'number' && Number.isFinite(r) ? r : Infinity;
  };
  let best = energy[0];
  for (const m of energy) if (score(m) < score(best)) best = m;
  return best;
}

async function main() {
  if (!hasWebAssembly()) {
    setState('unsupported');
    notice('This browser does not run WebAssembly, which the sampler needs.');
    status('Unsupported browser');
    return;
  }
  if (!hasWasmSimd()) {
    setState('unsupported');
    notice('This browser does not support WebAssembly SIMD, which the sampler needs. ' +
           'Use a current Chrome, Edge or Firefox, or Safari 16.4 or later.');
    status('Unsupported browser');
    return;
  }
  wire();
  setState('no-model');
  status('Looking for models…');
  const fromParam = params.get('model');
  let models = [];
  try {
    const list = await fetchModelList();
    models = list.models;
    state.classifiers = models.filter((m) => m.valid && m.kind === 'classifier');
    renderModelList(models, list.source);
  } catch (e) {
    renderModelList([], '');
    if (!fromParam) {
      notice(e instanceof ListError ? e.message : `Cannot list models: ${e.message}`);
      status('No model list');
    }
  }
  if (fromParam) {
    const label = decodeURIComponent(fromParam.split('/').pop().split('?')[0]) || 'model';
    await loadFrom(fromParam, '', label);
    return;
  }
  const first = defaultModel(models);
  if (first) await loadListed(first);
  else if (models.length) status('Pick a model, or open one from disk');
}

// Read-only view for tests and the curious: window.ebmPage.energyMeans(), .state, ...
window.ebmPage = {
  get state() { return document.body.dataset.state; },
  get model() { return state.model && { name: state.model.name, card: state.model.card }; },
  get workers() { return pool.size; },
  get msPerImageStep() { return state.msPerImageStep; },
  // Generate to the first full grid of drawings on screen (see drawProgress), in ms; null until then.
  get firstGridMs() { return state.agg ? state.agg.firstGridMs : null; },
  // The steps the workers reported in the last run, one per worker and step (drawn together: see onProgress).
  get progressReports() { return state.agg ? state.agg.reports : 0; },
  // When the last run's grid was finished and labelled (performance.now()); null until then.
  get finishedAt() { return state.agg ? state.agg.finishedAt : null; },
  // Each worker's warm-up walk after the last model load (worker.js): [{ms, error}], as they end.
  warmUps: () => pool.warmUps.slice(),
  energyMeans: () => chart.mean.slice(),
  get classifier() { return state.classifier && state.classifier.name; },
  get guide() { return state.guide && state.guide.name; },
  labels: () => grid.labels.slice(),
  images: () => grid.images.map((x) => (x ? Array.from(x) : null)),
};

main().catch((e) => {
  setState('error');
  notice(`Unexpected error: ${e.message}`);
});
