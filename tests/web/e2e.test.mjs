// The page end to end in Debian's headless Chromium (driven by playwright-core): ebm-serve with a
// random-weights paper-architecture model, the page loads it, samples, stops, blends, caches; on a
// phone-sized touch screen the samples stay in view; the error messages; and the same site on a
// plain static host. Saves screenshots in EBM_WORK.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const { SERVE, SITE, WORK, MODEL } = {
  SERVE: process.env.EBM_SERVE, SITE: process.env.EBM_SITE, WORK: process.env.EBM_WORK,
  MODEL: process.env.EBM_MODEL,
};
assert.ok(SERVE && SITE && WORK && MODEL, 'EBM_SERVE, EBM_SITE, EBM_WORK and EBM_MODEL must be set');
if (!existsSync(path.join(here, 'node_modules', 'playwright-core')))
  throw new Error('playwright-core is not installed: run "npm ci" in tests/web');
const { chromium } = await import('playwright-core');

const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
  '--no-first-run', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-proxy-server'];

// Starts a process and resolves with {proc, url} once `pattern` matches its output.
function startServer(cmd, args, pattern) {
  return new Promise((resolve, reject) => {
    const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${cmd} did not start:\n${out}`)), 15000);
    const onData = (d) => {
      out += d;
      const m = out.match(pattern);
      if (m) { clearTimeout(timer); resolve({ proc, url: `http://127.0.0.1:${m[1]}/`, log: () => out }); }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`${cmd} exited ${code}:\n${out}`)); });
  });
}

let browser, server, staticHost;
const models = path.join(WORK, 'models');

before(async () => {
  rmSync(WORK, { recursive: true, force: true });
  mkdirSync(models, { recursive: true });
  cpSync(MODEL, path.join(models, 'bridges.safetensors'));
  cpSync(process.env.EBM_CLASSIFIER, path.join(models, 'subtypes.safetensors'));
  writeFileSync(path.join(models, 'broken.safetensors'), 'this is not a model file');
  server = await startServer(SERVE, ['--web', SITE, '--models', models, '--host', '127.0.0.1',
                                     '--port', '0'], /http:\/\/127\.0\.0\.1:(\d+)\//);
  // The same site and models on a static host that knows nothing of /api.
  const root = path.join(WORK, 'static');
  cpSync(SITE, root, { recursive: true });
  cpSync(models, path.join(root, 'models'), { recursive: true });
  staticHost = await startServer('python3', ['-u', '-m', 'http.server', '--bind', '127.0.0.1',
                                             '--directory', root, '0'], /port (\d+)/);
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
});

after(async () => {
  await browser?.close();
  server?.proc.kill('SIGTERM');
  staticHost?.proc.kill('SIGTERM');
});

// A page that records console errors, uncaught exceptions and model downloads.
async function openPage(context, url) {
  const page = await context.newPage();
  page.errors = [];
  page.modelRequests = [];
  page.on('console', (m) => { if (m.type() === 'error') page.errors.push(m.text()); });
  page.on('pageerror', (e) => page.errors.push(String(e)));
  page.on('request', (r) => { if (r.url().includes('.safetensors')) page.modelRequests.push(r.url()); });
  await page.goto(url);
  return page;
}

const waitState = (page, states, timeout = 60000) =>
  page.waitForFunction((s) => s.includes(document.body.dataset.state), states, { timeout });

async function generate(page, { count, steps, seed }) {
  await page.fill('#count', String(count));
  await page.fill('#steps', String(steps));
  await page.fill('#seed', String(seed));
  await page.click('#generate');
  await waitState(page, ['running', 'done']);
}

// Every worker's warm-up walk after the last model load (worker.js) ran without an error.
async function warmedUp(page) {
  await page.waitForFunction(() => window.ebmPage.warmUps().length === window.ebmPage.workers, null,
                             { timeout: 60000 });
  const warmUps = await page.evaluate(() => window.ebmPage.warmUps());
  for (const w of warmUps) assert.equal(w.error, '', `the warm-up walk failed: ${w.error}`);
}

// Per tile: [min, max, mean] of its pixels (what is on screen, not the page's numbers).
function tileStats(page) {
  return page.$$eval('#grid canvas', (canvases) => canvases.map((c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let lo = 255, hi = 0, sum = 0;
    for (let i = 0; i < d.length; i += 4) { lo = Math.min(lo, d[i]); hi = Math.max(hi, d[i]); sum += d[i]; }
    return [lo, hi, sum / (d.length / 4)];
  }));
}

// Where the grid's tiles are on screen: the part of the viewport not under the bar that holds
// Generate on narrow screens (fixed to the bottom there), and each canvas's rectangle.
function gridOnScreen(page) {
  return page.evaluate(() => {
    const bar = document.querySelector('.controls .actions');
    const fixed = getComputedStyle(bar).position === 'fixed';
    const rect = (el) => { const r = el.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
    return {
      state: document.body.dataset.state, width: innerWidth, height: innerHeight,
      bottom: fixed ? bar.getBoundingClientRect().top : innerHeight,
      generate: rect(document.getElementById('generate')),
      grid: rect(document.getElementById('grid')),
      tiles: [...document.querySelectorAll('#grid canvas')].map(rect),
      scrollY, scrollWidth: document.documentElement.scrollWidth,
    };
  });
}

// Every tile's canvas wholly on screen (what a waitForFunction can poll for too).
const tilesInView = (g) => g.tiles.length > 0 &&
  g.tiles.every(([l, t, r, b]) => l >= 0 && r <= g.width && t >= 0 && b <= g.bottom);

// Polls until the page is in one of `states` with every tile on screen (a run that starts with
// the grid out of sight scrolls it in).
async function waitInView(page, states, what) {
  let g;
  for (const t0 = Date.now(); Date.now() - t0 < 10000; await page.waitForTimeout(50)) {
    g = await gridOnScreen(page);
    if (states.includes(g.state) && tilesInView(g)) return g;
  }
  assert.fail(`${what}: the samples are not on screen: ${JSON.stringify(g)}`);
}

test('the page loads a model, samples a live grid whose energy goes down, and caches the model', async () => {
  const context = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
  const page = await openPage(context, server.url);
  await waitState(page, ['ready']);

  // The list shows every file: the model with its card, the broken one with the reason, the
  // classifier (loaded next to the model, to label samples).
  const items = await page.$$eval('#model-list li', (lis) => lis.map((li) => li.textContent));
  assert.equal(items.length, 3, items.join('\n'));
  assert.match(items[0], /random paper/);
  assert.match(items[0], /1×48×192/);
  assert.match(items[0], /832,257 parameters/);
  assert.match(items[1], /Not a valid model/);
  assert.match(items[2], /random classifier paper/);
  await page.waitForFunction(() => window.ebmPage.classifier !== null, null, { timeout: 30000 });
  assert.equal(await page.evaluate(() => window.ebmPage.classifier), 'random classifier paper');
  await warmedUp(page);
  assert.match(await page.textContent('#labeller'), /Labels: random classifier paper \(8 subtypes\)/);
  assert.deepEqual(page.modelRequests.filter((u) => u.includes('bridges')).length, 1);

  // Loading it again (the Load button) comes from the browser's cache.
  await page.click('#model-list li[data-name="bridges"] button.load');
  await waitState(page, ['ready']);
  assert.match(await page.textContent('#download-text'), /from the browser cache/);
  assert.equal(page.modelRequests.filter((u) => u.includes('bridges')).length, 1, page.modelRequests.join('\n'));
  assert.equal(await page.inputValue('#steps'), '1000', 'steps default comes from the model card');

  await generate(page, { count: 4, steps: 40, seed: 7 });
  await waitState(page, ['done']);
  const stats = await tileStats(page);
  assert.equal(stats.length, 4);
  for (const [lo, hi] of stats) assert.ok(hi - lo > 30, `a blank sample: ${JSON.stringify(stats)}`);
  const means = await page.evaluate(() => window.ebmPage.energyMeans());
  assert.equal(means.length, 41);
  assert.ok(means.every(Number.isFinite));
  assert.ok(means[40] < means[0], `energy did not go down: ${means[0]} -> ${means[40]}`);
  assert.match(await page.textContent('#caption'), /seed 7 · 40 of 40 steps/);
  assert.match(await page.getAttribute('#progress-bar', 'style'), /100%/);
  const onScreen = await gridOnScreen(page);
  assert.ok(tilesInView(onScreen), `the samples are not all on screen: ${JSON.stringify(onScreen)}`);

  // Finished samples are labelled with their family mix; the filter shows only candidates.
  await page.waitForFunction(() => window.ebmPage.labels().every((l) => l !== null), null, { timeout: 30000 });
  const mixes = await page.$$eval('#grid .tile .mix', (els) => els.map((e) => e.textContent));
  assert.equal(mixes.length, 4);
  for (const m of mixes) assert.match(m, /^(arch|beam|cable|suspension) \d+%( \/ (arch|beam|cable|suspension) \d+%)?( · new type\?)?$/);
  // Each tile's energy in five significant digits (powers of ten from 1e5 on), never a long raw float.
  const energyLabels = await page.$$eval('#grid .tile .energy', (els) => els.map((e) => e.textContent));
  assert.equal(energyLabels.length, 4);
  for (const t of energyLabels) assert.match(t, /^#\d+ · E -?(\d\.\d{4}e[+-]\d+|\d{1,5}(\.\d{1,8})?)$/);
  const labels = await page.evaluate(() => window.ebmPage.labels());
  for (const l of labels) {
    assert.ok(l.families.length === 4 && Math.abs(l.family_probs.reduce((a, b) => a + b, 0) - 1) < 1e-6);
    assert.equal(l.hybrid, l.family_probs.filter((p) => p >= 0.25).length >= 2);
  }
  assert.match(await page.textContent('#labels-summary'), /\d+ of 4 mix two families · \d+ new-type candidates?/);
  const candidates = labels.filter((l) => l.candidate).length;
  await page.check('#only-candidates');
  const visible = await page.$$eval('#grid .tile', (ts) => ts.filter((t) => t.offsetParent !== null).length);
  assert.equal(visible, candidates);
  await page.uncheck('#only-candidates');
  await page.screenshot({ path: path.join(WORK, 'page.png'), fullPage: true });
  console.log(`# ${await page.evaluate(() => window.ebmPage.msPerImageStep.toFixed(2))} ms per ` +
              `image-step in Chromium on ${await page.evaluate(() => window.ebmPage.workers)} workers`);

  // The enlarged view and the downloads.
  await page.click('#grid figure:nth-child(2) canvas');
  assert.ok(await page.isVisible('#zoom'));
  const [one] = await Promise.all([page.waitForEvent('download'), page.click('#zoom-save')]);
  assert.match(one.suggestedFilename(), /seed7-1\.png$/);
  await page.click('#zoom button[value=close]');
  const [all] = await Promise.all([page.waitForEvent('download'), page.click('#save-grid')]);
  assert.match(all.suggestedFilename(), /seed7-grid\.png$/);
  await all.saveAs(path.join(WORK, 'grid.png'));

  // A reload does not download the model again.
  const before = page.modelRequests.length;
  await page.reload();
  await waitState(page, ['ready']);
  assert.equal(page.modelRequests.length, before, 'the model was downloaded again after a reload');

  assert.deepEqual(page.errors, [], 'console errors');
  await context.close();
});

test('on a phone the samples are in view while they refine and when done, whatever was scrolled', async () => {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2,
                                             isMobile: true, hasTouch: true });
  const page = await openPage(context, server.url);
  await waitState(page, ['ready']);
  await page.waitForFunction(() => window.ebmPage.classifier !== null, null, { timeout: 30000 });

  // Before any run: the samples panel right under the header, Generate on screen in its bar,
  // nothing wider than the screen.
  let g = await gridOnScreen(page);
  assert.ok(g.grid[1] < g.height / 3, `the grid starts at ${g.grid[1]} px of ${g.height}`);
  assert.ok(g.generate[1] >= g.bottom && g.generate[3] <= g.height, `Generate is off screen: ${JSON.stringify(g)}`);
  assert.ok(g.scrollWidth <= g.width, `the page is ${g.scrollWidth} px wide on a ${g.width} px screen`);

  // Generate from the top: the layout alone keeps every sample in view, running and done.
  await page.fill('#count', '4');
  await page.fill('#steps', '150');
  await page.fill('#seed', '11');
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.tap('#generate');
  g = await waitInView(page, ['running'], 'running, started at the top');
  assert.equal(g.scrollY, 0, 'the page scrolled although the grid was in view');
  await waitState(page, ['done']);
  await waitInView(page, ['done'], 'done, started at the top');

  // The bar's Settings button goes to the settings, below the grid.
  await page.tap('#to-settings');
  await page.waitForFunction(() => {
    const r = document.getElementById('steps').getBoundingClientRect();
    return r.top >= 0 && r.bottom <= document.querySelector('.controls .actions').getBoundingClientRect().top;
  }, null, { timeout: 5000 });

  // Scrolled down to the bottom of the page: Generate (in the bar) brings the grid back (runs
  // long enough to see that while it samples).
  await page.fill('#steps', '300');
  await page.evaluate(() => window.scrollTo(0, document.documentElement.scrollHeight));
  g = await gridOnScreen(page);
  assert.ok(g.tiles.every(([, , , b]) => b < 0), `the grid did not scroll away: ${JSON.stringify(g)}`);
  await page.tap('#generate');
  await waitInView(page, ['running'], 'running, started scrolled down');
  await waitState(page, ['done']);
  await waitInView(page, ['done'], 'done, started scrolled down');
  await page.waitForFunction(() => window.ebmPage.labels().every((l) => l !== null), null, { timeout: 30000 });
  await page.screenshot({ path: path.join(WORK, 'phone.png') });

  // The blend panel is below the grid too: its button brings the grid back the same way.
  await page.tap('#grid figure:nth-child(1) button[title="Use as blend end A"]');
  await page.tap('#grid figure:nth-child(2) button[title="Use as blend end B"]');
  await page.tap('#blend');
  await waitInView(page, ['running'], 'blend, running');
  await waitState(page, ['done']);
  await waitInView(page, ['done'], 'blend, done');
  assert.match(await page.textContent('#caption'), /from blends of A and B/);
  g = await gridOnScreen(page);
  assert.ok(g.scrollWidth <= g.width, `the page is ${g.scrollWidth} px wide on a ${g.width} px screen`);
  assert.deepEqual(page.errors, []);
  await context.close();
});

test('on a phone held sideways the samples, two to a row, come into view on Generate', async () => {
  const context = await browser.newContext({ viewport: { width: 844, height: 390 }, deviceScaleFactor: 2,
                                             isMobile: true, hasTouch: true });
  const page = await openPage(context, server.url);
  await waitState(page, ['ready']);
  await page.fill('#count', '2');
  await page.fill('#steps', '300');
  await page.evaluate(() => window.scrollTo(0, document.documentElement.scrollHeight));
  await page.tap('#generate');
  const g = await waitInView(page, ['running'], 'sideways, running');
  assert.equal(g.tiles[0][1], g.tiles[1][1], `not side by side: ${JSON.stringify(g.tiles)}`);
  await waitState(page, ['done']);
  await waitInView(page, ['done'], 'sideways, done');
  assert.ok(g.scrollWidth <= g.width, `the page is ${g.scrollWidth} px wide on a ${g.width} px screen`);
  assert.deepEqual(page.errors, []);
  await context.close();
});

test('the grid is the same for the same seed whatever the number of workers', async () => {
  const context = await browser.newContext();
  const grids = [];
  for (const workers of [1, 3]) {
    const page = await openPage(context, `${server.url}?workers=${workers}`);
    await waitState(page, ['ready']);
    assert.equal(await page.evaluate(() => window.ebmPage.workers), workers);
    await generate(page, { count: 4, steps: 12, seed: 99 });
    await waitState(page, ['done']);
    grids.push(await page.evaluate(() => window.ebmPage.images()));
    assert.deepEqual(page.errors, []);
  }
  assert.equal(grids[0].length, 4);
  assert.deepEqual(grids[0], grids[1], 'one worker and three workers gave different grids');
  await context.close();
});

// Each frame the page draws costs Chromium's main thread and compositor time the workers then lack
// (two cores: bench/README.md), so the workers' messages are drawn together, at most one frame
// every 100 ms, and the last step is on screen when the run is done; the tiles' pixels are the
// gray levels the native runtime writes.
test('the live grid is drawn at most every 100 ms, not once per step of each worker, pixel for pixel', async () => {
  const context = await browser.newContext();
  const page = await openPage(context, `${server.url}?workers=2`);
  await waitState(page, ['ready']);
  // Every task that changes the grid while the run is on is one MutationObserver callback (the
  // labels come after it).
  await page.evaluate(() => {
    window.gridWrites = [];
    new MutationObserver(() => document.body.dataset.state === 'running' && window.gridWrites.push(performance.now()))
      .observe(document.getElementById('grid'), { subtree: true, attributes: true, childList: true });
  });
  const t0 = await page.evaluate(() => performance.now());
  await generate(page, { count: 8, steps: 150, seed: 4 });
  await waitState(page, ['done']);
  const writes = await page.evaluate(() => window.gridWrites);
  const reports = await page.evaluate(() => window.ebmPage.progressReports);
  const ms = writes.at(-1) - t0;
  // The live frames, after the grid was built; the last one may be the finished run's, drawn at once.
  const live = writes.filter((t) => t > writes[0]);
  assert.ok(live.length >= 3, `the grid was not live: ${live.length} frames in ${ms.toFixed(0)} ms`);
  // Frames 100 ms apart or more, each noticed once the frame's drawing is done (a few ms later
  // for some than for others).
  const gaps = live.slice(1, -1).map((t, i) => t - live[i]).sort((x, y) => x - y);
  assert.ok(gaps[0] >= 50, `two frames ${gaps[0].toFixed(1)} ms apart`);
  assert.ok(gaps[gaps.length >> 1] >= 95, `frames a median ${gaps[gaps.length >> 1].toFixed(1)} ms apart`);
  assert.ok(reports > 2 * live.length, `${reports} steps reported by the workers, ${live.length} frames`);
  const steps = await page.$$eval('#grid figure', (fs) => fs.map((f) => Number(f.dataset.imageStep)));
  assert.deepEqual(steps, new Array(8).fill(150));
  console.log(`# ${live.length} frames for ${reports} steps reported by the workers in ${ms.toFixed(0)} ms`);

  // The tiles' pixels (drawn a word at a time, the rounding as a floor) are the gray levels
  // Math.round(v * 127.5 + 127.5) clamped to [0, 255], NaN 0: at every half-way point between
  // two levels, just below and above it, and out of range.
  const drawn = await page.evaluate(async () => {
    const { drawImage } = await import('./images.js');
    const v = [NaN, -Infinity, Infinity, -3, 3, -1, 1, 0, -0, 1e30, -1e30];
    for (let k = 0; k <= 255; ++k) {
      const half = new Float32Array([(k + 0.5 - 127.5) / 127.5])[0];  // float32 near the half-way point
      v.push(half, Math.fround(half * (1 - 2 ** -23)), Math.fround(half * (1 + 2 ** -23)), (k - 127.5) / 127.5);
    }
    const floats = new Float32Array(v);
    const canvas = document.createElement('canvas');
    drawImage(canvas, floats, floats.length, 1);
    drawImage(canvas, floats, floats.length, 1);  // again, into the ImageData kept with the canvas
    const px = canvas.getContext('2d').getImageData(0, 0, floats.length, 1).data;
    return { floats: Array.from(floats, (x) => (Number.isNaN(x) ? 'NaN' : x)), px: Array.from(px) };
  });
  drawn.floats.forEach((x, i) => {
    const r = x === 'NaN' ? 0 : Math.round(x * 127.5 + 127.5);
    const want = Number.isNaN(r) ? 0 : Math.min(255, Math.max(0, r));
    assert.deepEqual(drawn.px.slice(4 * i, 4 * i + 4), [want, want, want, 255], `pixel ${i} of value ${x}`);
  });
  assert.deepEqual(page.errors, []);
  await context.close();
});

// A worker that fails mid-run (a fault injected into worker.js as it is served): the page says so,
// and no live frame that was still to come writes its step over the failure.
test('a worker failing mid-run leaves the failure on screen', async () => {
  const context = await browser.newContext();
  const finished = 'if (j.sampler.finished()) { finish(j, false); return; }';
  let injected = false;
  await context.route('**/worker.js', async (route) => {
    const response = await route.fetch();
    const text = await response.text();
    injected = text.includes(finished);
    const body = text.replace(finished, `if (j.stepsRun >= 40) { fail(j.id, 'injected failure'); endJob(j); return; }\n  ${finished}`);
    await route.fulfill({ response, body });
  });
  const page = await openPage(context, `${server.url}?workers=2`);
  await waitState(page, ['ready']);
  assert.ok(injected, 'worker.js no longer has the line the fault goes before');
  await generate(page, { count: 8, steps: 100000, seed: 2 });
  await waitState(page, ['error']);
  await page.waitForTimeout(600);  // longer than a live frame's wait (kLagMs)
  assert.equal(await page.textContent('#status'), 'Sampling failed');
  assert.match(await page.textContent('#notice'), /Sampling failed: injected failure/);
  assert.ok(await page.isEnabled('#generate'));
  await context.close();
});

test('Stop stops the sampling at once', async () => {
  const context = await browser.newContext();
  const page = await openPage(context, server.url);
  await waitState(page, ['ready']);
  await generate(page, { count: 4, steps: 100000, seed: 3 });
  await page.waitForFunction(() => window.ebmPage.energyMeans().length > 3);
  const t0 = Date.now();
  await page.click('#stop');
  await waitState(page, ['stopped'], 5000);
  const latency = Date.now() - t0;
  const steps = (await page.evaluate(() => window.ebmPage.energyMeans())).length;
  await page.waitForTimeout(500);
  assert.equal((await page.evaluate(() => window.ebmPage.energyMeans())).length, steps,
               'steps went on after Stop');
  assert.ok(steps < 1000);
  assert.ok(latency < 2000, `Stop took ${latency} ms`);
  assert.match(await page.textContent('#caption'), /of 100000 steps/);
  assert.ok(await page.isEnabled('#generate'));
  console.log(`# Stop took effect in ${latency} ms`);
  assert.deepEqual(page.errors, []);
  await context.close();
});

// Files are listed by name; the page opens the energy model whose card reports the best
// evaluation (the shipped folder lists bridges-cd, the paper's method, before bridges).
test('the page opens the best-evaluated energy model first, not the first listed', async () => {
  const context = await browser.newContext();
  await context.route('**/api/models', async (route) => {
    const response = await route.fetch();
    const list = await response.json();
    const energy = list.models.find((m) => m.valid && m.kind === 'energy');
    energy.card = { ...energy.card, evaluation: { frechet_ratio: 50 } };
    const unevaluated = { ...energy, name: 'aaa', file: 'aaa.safetensors', url: 'models/aaa.safetensors', card: { name: 'aaa' } };
    const worse = { ...energy, name: 'aab', file: 'aab.safetensors', url: 'models/aab.safetensors', card: { name: 'aab', evaluation: { frechet_ratio: 190 } } };
    list.models.unshift(unevaluated, worse);
    await route.fulfill({ response, json: list });
  });
  const page = await openPage(context, server.url);
  await waitState(page, ['ready']);
  // The classifier (subtypes.safetensors) may load too, for labels; neither listed rival does.
  const paths = page.modelRequests.map((u) => new URL(u).pathname);
  assert.ok(paths.includes('/models/bridges.safetensors'), paths.join(', '));
  assert.ok(!paths.some((p) => p.startsWith('/models/aa')), paths.join(', '));
  assert.deepEqual(page.errors, []);
  await context.close();
});

test('two samples picked as A and B start chains from their blends', async () => {
  const context = await browser.newContext();
  const page = await openPage(context, server.url);
  await waitState(page, ['ready']);
  await generate(page, { count: 2, steps: 10, seed: 5 });
  await waitState(page, ['done']);
  assert.ok(await page.isDisabled('#blend'));
  await page.click('#grid figure:nth-child(1) button[title="Use as blend end A"]');
  await page.click('#grid figure:nth-child(2) button[title="Use as blend end B"]');
  await page.fill('#count', '3');
  // The paper form walks from the blends themselves: no restart, no strength to set.
  assert.ok(!(await page.isVisible('#blend-strength')));
  await page.click('#blend');
  await waitState(page, ['done']);
  assert.match(await page.textContent('#caption'), /10 of 10 steps · paper form · from blends of A and B$/);
  assert.match(await page.textContent('#chart-hint'), /low = bridge-like/);
  assert.equal(await page.textContent('#chart-title'), 'Energy per step');
  assert.equal((await tileStats(page)).length, 3);
  assert.deepEqual(page.errors, []);
  await context.close();
});

test('a sample picked with V: variations restart from it, Complete keeps all but the redrawn region', async () => {
  const context = await browser.newContext();
  const page = await openPage(context, server.url);
  await waitState(page, ['ready']);
  await generate(page, { count: 2, steps: 10, seed: 5 });
  await waitState(page, ['done']);
  assert.ok(await page.isDisabled('#vary'));
  assert.ok(await page.isDisabled('#complete'));
  await page.click('#grid figure:nth-child(2) button[title="Use for variations and completion"]');
  const source = (await page.evaluate(() => window.ebmPage.images()))[1];
  // Variations: strength 0.5 of 10 paper steps leaves 5.
  await page.fill('#count', '3');
  await page.fill('#strength', '0.5');
  await page.click('#vary');
  await waitState(page, ['done']);
  assert.match(await page.textContent('#caption'), /variations of the picked drawing \(strength 0.5\)/);
  assert.equal((await tileStats(page)).length, 3);
  // Complete the right half: every chain keeps the left half bit for bit (the page shows the
  // worker's floats), whichever worker ran it, and redraws the right one.
  await page.selectOption('#region', 'right');
  await page.fill('#count', '4');
  await page.click('#complete');
  await waitState(page, ['done']);
  assert.match(await page.textContent('#caption'), /right half redrawn/);
  const done = await page.evaluate(() => window.ebmPage.images());
  const { width, height } = (await page.evaluate(() => window.ebmPage.model)).card.input;
  for (const img of done) {
    let changed = 0;
    for (let y = 0; y < height; ++y)
      for (let x = 0; x < width; ++x) {
        const k = y * width + x;
        if (x < width / 2) assert.equal(img[k], source[k], `kept pixel ${x},${y}`);
        else changed += img[k] !== source[k];
      }
    assert.ok(changed > 0, 'the right half was not redrawn');
  }
  // Painting switches the region to the painted one (starting from the half chosen before).
  await page.locator('#vary-src').scrollIntoViewIfNeeded();
  const box = await page.locator('#vary-src').boundingBox();
  await page.mouse.move(box.x + box.width * 0.1, box.y + box.height / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.2, box.y + box.height / 2);
  await page.mouse.up();
  assert.equal(await page.inputValue('#region'), 'paint');
  assert.ok(await page.isEnabled('#complete'));
  // Draw your own: a blank sheet and one quick diagonal stroke (three pointer moves for 77
  // columns: the brush follows the pointer, so no column is skipped); Complete keeps every pixel
  // of the stroke dark bit for bit in every tile and draws the rest.
  await page.click('#sketch-new');
  assert.equal(await page.inputValue('#region'), 'strokes');
  await page.mouse.move(box.x + box.width * 0.3, box.y + box.height * 0.8);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.7, box.y + box.height * 0.2, { steps: 3 });
  await page.mouse.up();
  // The sheet as shown: the strokes black, everything to redraw tinted red.
  const stroke = await page.$eval('#vary-src', (c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    return Array.from({ length: c.width * c.height }, (_, k) => (d[4 * k] === 0 && d[4 * k + 1] === 0 ? 1 : 0));
  });
  const columns = new Set(stroke.flatMap((v, k) => (v ? [k % width] : [])));
  const x0 = Math.ceil(width * 0.3) + 1, x1 = Math.floor(width * 0.7) - 1;
  for (let x = x0; x <= x1; ++x) assert.ok(columns.has(x), `the stroke skips column ${x}`);
  await page.fill('#count', '2');
  await page.click('#complete');
  await waitState(page, ['done']);
  assert.match(await page.textContent('#caption'), /your strokes kept, the rest drawn by the model/);
  for (const img of await page.evaluate(() => window.ebmPage.images())) {
    let redrawn = 0;
    for (let k = 0; k < stroke.length; ++k) {
      if (stroke[k]) assert.equal(img[k], -1, `stroke pixel ${k % width},${Math.floor(k / width)}`);
      else redrawn += img[k] !== 1;
    }
    assert.ok(redrawn > 0, 'nothing was drawn around the strokes');
  }
  // Picking a sample again leaves the sketch: back to a half.
  await page.click('#grid figure:nth-child(1) button[title="Use for variations and completion"]');
  assert.equal(await page.inputValue('#region'), 'right');
  assert.deepEqual(page.errors, []);
  await context.close();
});

test('the noise cell setting: smoothed starting noise, and a bad value refused', async () => {
  const context = await browser.newContext();
  const page = await openPage(context, server.url);
  await waitState(page, ['ready']);
  assert.equal(await page.inputValue('#start_cell'), '1');  // the test model's default
  // One tiny step, so the tiles show the starting noise: mean |difference| of neighbouring pixels.
  const roughness = () => page.$$eval('#grid canvas', (canvases) => canvases.map((c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let sum = 0, n = 0;
    for (let y = 0; y < c.height; ++y)
      for (let x = 0; x + 1 < c.width; ++x, ++n) sum += Math.abs(d[4 * (y * c.width + x)] - d[4 * (y * c.width + x + 1)]);
    return sum / n;
  }));
  await page.fill('#step_size', '1e-6');
  const rough = {};
  for (const cell of [1, 8]) {
    await page.fill('#start_cell', String(cell));
    await generate(page, { count: 2, steps: 1, seed: 3 });
    await waitState(page, ['done']);
    rough[cell] = Math.max(...await roughness());
  }
  assert.ok(rough[8] * 3 < rough[1], `cell 8 is not smoother than cell 1: ${JSON.stringify(rough)}`);
  // The browser's own form check stops a bad value before any sampling (and says why there).
  await page.fill('#start_cell', '0');
  await page.click('#generate');
  assert.ok(await page.$eval('#start_cell', (el) => el.validity.rangeUnderflow));
  assert.equal(await page.evaluate(() => document.body.dataset.state), 'done');
  assert.deepEqual(page.errors, []);
  await context.close();
});

test('a noise-conditional model opened from disk samples with its noise-level form and shows the levels', async () => {
  const context = await browser.newContext();
  const page = await openPage(context, server.url);
  await waitState(page, ['ready']);
  await page.setInputFiles('#file-input', process.env.EBM_DENOISER);
  await page.waitForFunction(() => document.getElementById('status').textContent.includes('random unet'),
                             null, { timeout: 30000 });
  await waitState(page, ['ready']);
  // The model's own sampler (the unet preset's: ddim, 40 levels); the other forms' fields hidden.
  assert.equal(await page.inputValue('#form'), 'ddim');
  assert.equal(await page.inputValue('#steps'), '40');
  assert.ok(await page.isVisible('#sigma_max'));
  assert.ok(await page.isVisible('#eta'));
  assert.ok(await page.isVisible('#rho'));
  assert.equal(await page.inputValue('#rho'), '0');  // no spacing in the file: geometric levels
  assert.ok(await page.isVisible('#split_sigma'));
  assert.equal(await page.inputValue('#split_sigma'), '0');  // no split in the file: one piece
  assert.ok(await page.isVisible('#resample_sigma_max'));
  assert.equal(await page.inputValue('#resample_sigma_max'), '0');  // rounds at every level
  // Autoguidance only for a model that carries a weaker network, which this one does not.
  for (const hidden of ['#step_size', '#start_cell', '#levels', '#eps', '#autoguide', '#autoguide_sigma_max']) assert.ok(!(await page.isVisible(hidden)), hidden);
  // The card reads as text: the method line names the sampler, no raw JSON.
  const card = await page.textContent('#card');
  assert.match(card, /DDIM, one step per noise level, 40 levels/);
  assert.doesNotMatch(card, /[{}]/);
  // While the ddim walk refines, every tile shows its chain's denoised estimate (clipped to
  // [-1, 1], a drawing), not the noisy state (whose pixels reach the hundreds at sigma 80 and
  // stay beyond 1 down to sigma ~1); the time to the first full grid is recorded.
  const probe = page.evaluate(() => new Promise((resolve) => {
    const during = [];
    const tick = () => {
      const st = document.body.dataset.state;
      const steps = [...document.querySelectorAll('#grid figure')].map((f) => Number(f.dataset.imageStep));
      const imgs = window.ebmPage.images();
      if (imgs.length && imgs.every((x) => x)) {
        const top = Math.max(...imgs.map((x) => x.reduce((m, v) => Math.max(m, Math.abs(v)), 0)));
        if (st === 'running' && steps.every((k) => k >= 1 && k < 40)) during.push(top);
      }
      if (st === 'done') resolve(during); else setTimeout(tick, 2);
    };
    tick();
  }));
  await generate(page, { count: 2, steps: 40, seed: 5 });
  const during = await probe;
  await waitState(page, ['done']);
  assert.ok(during.length > 0, 'no frame caught while the walk refined');
  for (const top of during) assert.ok(top <= 1, `a frame while refining is not a denoised estimate: max |x| ${top}`);
  const firstGrid = await page.evaluate(() => window.ebmPage.firstGridMs);
  assert.ok(typeof firstGrid === 'number' && firstGrid > 0, `first full grid at ${firstGrid} ms`);
  // The chart shows how far the drawings still move (each step's energy is at its own noise
  // level): a point from the second step on, every one a positive RMS change on the [-1, 1]
  // scale, and the last steps move the drawings less than the largest move.
  assert.equal(await page.textContent('#chart-title'), 'Change per step');
  assert.match(await page.textContent('#chart-hint'), /how much each step still redraws/);
  const moves = await page.evaluate(() => window.ebmPage.energyMeans());
  assert.equal(moves[0], undefined);
  assert.equal(moves[1], undefined);  // the first step's estimate has none before it
  const points = moves.slice(2);
  assert.equal(points.length, 39, `points ${JSON.stringify(moves)}`);
  for (const v of points) assert.ok(v > 0 && v <= 2, `a move of ${v}`);
  assert.ok(points[points.length - 1] < Math.max(...points), JSON.stringify(points));
  // Blends restart part way under a noise-level form (a blend is no state of the walk's noisy
  // start): the strength shows, and at 0.6 of 40 levels every tile's picture comes from level
  // round(0.4 * 39) = 16 or later.
  assert.ok(await page.isVisible('#blend-strength'));
  await page.click('#grid figure:nth-child(1) button[title="Use as blend end A"]');
  await page.click('#grid figure:nth-child(2) button[title="Use as blend end B"]');
  await page.fill('#blend-strength', '0.6');
  const blendSteps = page.evaluate(() => new Promise((resolve) => {
    const seen = new Set();
    const tick = () => {
      for (const f of document.querySelectorAll('#grid figure'))
        if (f.dataset.imageStep !== undefined) seen.add(Number(f.dataset.imageStep));
      if (document.body.dataset.state === 'done') resolve([...seen]); else setTimeout(tick, 2);
    };
    setTimeout(tick, 0);
  }));
  await page.click('#blend');
  const stepsSeen = await blendSteps;
  await waitState(page, ['done']);
  assert.match(await page.textContent('#caption'),
               /seed 5 · 40 of 40 steps · ddim form · from blends of A and B \(restarted, strength 0.6\)/);
  assert.ok(stepsSeen.length > 0 && Math.min(...stepsSeen) >= 16, `tiles showed steps ${stepsSeen}`);
  // The annealed form on the same model: its fields appear; while it runs, the status names the
  // noise level.
  await page.selectOption('#form', 'annealed');
  assert.ok(await page.isVisible('#levels'));
  assert.ok(!(await page.isVisible('#eta')));
  await page.fill('#levels', '4');
  await page.fill('#eps', '0.0002');
  const seen = [];
  await generate(page, { count: 2, steps: 30, seed: 4 });
  while (await page.evaluate(() => document.body.dataset.state) === 'running') {
    seen.push(await page.textContent('#status'));
    await page.waitForTimeout(20);
  }
  await waitState(page, ['done']);
  assert.ok(seen.some((t) => /noise level \d of 4 \(σ/.test(t)), seen.join('\n'));
  assert.match(await page.textContent('#caption'), /seed 4 · 30 of 30 steps · annealed form/);
  const stats = await tileStats(page);
  for (const [lo, hi] of stats) assert.ok(lo >= 0 && hi <= 255 && hi - lo > 0, JSON.stringify(stats));
  // A bad level range is refused with a message before any sampling.
  await page.fill('#sigma_min', '100');  // above the model's largest level, 80
  await page.click('#generate');
  assert.match(await page.textContent('#notice'), /0 < smallest σ ≤ largest σ/);
  await page.fill('#sigma_min', '0.02');
  await page.fill('#rho', '0.5');  // between geometric (0) and the smallest power spacing (1)
  await page.click('#generate');
  assert.match(await page.textContent('#notice'), /spacing ρ must be 0 \(even in log σ\) or from 1 to 100/);
  await page.fill('#rho', '3');
  // Rounds up to a noise level: a limit out of range is refused by name before any sampling (a
  // negative one the browser's own form check holds back).
  await page.selectOption('#form', 'ddim');
  await page.fill('#resample_sigma_max', '20000');
  await page.click('#generate');
  assert.match(await page.textContent('#notice'), /rounds' σ limit must be from 0 \(every level\) to 10000/);
  await page.fill('#resample_sigma_max', '0');
  // A split schedule (ddim, 6 levels: 2 above sigma 5, 4 from 5 down; the levels themselves are
  // checked natively, test_denoiser): a split outside the range, or too many levels above it, is
  // refused before any sampling, and a good one reaches the sampler.
  await page.selectOption('#form', 'ddim');
  await page.fill('#split_sigma', '500');
  await page.fill('#split_levels', '2');
  await page.click('#generate');
  assert.match(await page.textContent('#notice'), /split σ must lie between the smallest and the largest σ/);
  await page.fill('#split_sigma', '5');
  await page.fill('#split_levels', '5');
  await page.fill('#steps', '6');
  await page.click('#generate');
  assert.match(await page.textContent('#notice'), /levels above it must be from 1 to 4 of the 6/);
  await page.fill('#split_levels', '2');
  await generate(page, { count: 1, steps: 6, seed: 4 });
  await waitState(page, ['done']);
  assert.match(await page.textContent('#caption'), /seed 4 · 6 of 6 steps · ddim form/);
  assert.equal(new URL(page.url()).searchParams.get('split_sigma'), '5');
  const split = await page.evaluate(() => Array.from(window.ebmPage.images()[0]));
  // The same walk in one piece draws another sample: the page hands the split to the sampler.
  await page.fill('#split_sigma', '0');
  await generate(page, { count: 1, steps: 6, seed: 4 });
  await waitState(page, ['done']);
  const even = await page.evaluate(() => Array.from(window.ebmPage.images()[0]));
  assert.equal(split.length, even.length);
  assert.ok(split.some((v, k) => v !== even[k]), 'the split schedule drew the same sample as the even one');
  assert.deepEqual(page.errors, []);
  await context.close();
});

// Autoguidance: a format-3 file carries a weaker network; the page shows its strength with the
// file's own value, says so in the card, and the strength changes the walk.
test('a model that carries a weaker network shows the autoguidance control, and w changes the walk', async () => {
  const context = await browser.newContext();
  const page = await openPage(context, server.url);
  await waitState(page, ['ready']);
  await page.setInputFiles('#file-input', process.env.EBM_AUTOGUIDED);
  await page.waitForFunction(() => document.getElementById('status').textContent.includes('random unet'),
                             null, { timeout: 30000 });
  await waitState(page, ['ready']);
  await warmedUp(page);  // its split schedule (3 levels above sigma 20) walked in the warm-up
  assert.ok(await page.isVisible('#autoguide'));
  assert.equal(await page.inputValue('#autoguide'), '2');
  assert.equal(await page.inputValue('#autoguide_sigma_max'), '5');
  assert.match(await page.textContent('#card'),
               /autoguided by a weaker network of [\d,]+ parameters \(random weaker unet\), w 2 at σ ≤ 5/);
  assert.match(await page.textContent('#card'), /\(and [\d,]+ in the weaker network it carries for autoguidance\)/);
  assert.match(await page.textContent('#card'),
               /3 epochs, 30 steps, batch 8, continuing model\.safetensors with its first 4 layers kept as they were/);
  const images = () => page.evaluate(() => window.ebmPage.images().map((x) => Array.from(x)));
  await generate(page, { count: 2, steps: 6, seed: 5 });
  await waitState(page, ['done']);
  const guided = await images();
  await page.fill('#autoguide', '1');
  await generate(page, { count: 2, steps: 6, seed: 5 });
  await waitState(page, ['done']);
  const alone = await images();
  assert.notDeepEqual(guided, alone);
  await page.fill('#autoguide', '2');
  await generate(page, { count: 2, steps: 6, seed: 5 });
  await waitState(page, ['done']);
  assert.deepEqual(await images(), guided);  // same seed, same samples
  // Guiding toward two families: the page says autoguidance works against mixes and offers the
  // model alone; not for one subtype, nor once w is 1.
  await page.waitForFunction(() => window.ebmPage.guide !== null, null, { timeout: 30000 });
  assert.ok(!(await page.isVisible('#guide-autoguide')), 'the hint shows before the guide is on');
  await page.check('#guide-on');
  await page.check('input[name="guide-mode"][value="pair"]');
  assert.ok(await page.isVisible('#guide-autoguide'));
  assert.match(await page.textContent('#guide-autoguide'), /autoguided \(w 2\).*model alone draws more hybrids/s);
  await page.check('input[name="guide-mode"][value="subtype"]');
  assert.ok(!(await page.isVisible('#guide-autoguide')), 'the hint shows for one subtype');
  await page.check('input[name="guide-mode"][value="pair"]');
  await page.click('#guide-model-alone');
  assert.equal(await page.inputValue('#autoguide'), '1');
  assert.ok(!(await page.isVisible('#guide-autoguide')), 'the hint stays at w 1');
  await page.fill('#autoguide', '2');
  assert.ok(await page.isVisible('#guide-autoguide'));
  await page.uncheck('#guide-on');
  assert.ok(!(await page.isVisible('#guide-autoguide')), 'the hint stays with the guide off');
  // The browser's own form check stops a strength out of range before any sampling.
  await page.fill('#autoguide', '25');
  await page.click('#generate');
  assert.ok(await page.$eval('#autoguide', (el) => el.validity.rangeOverflow));
  assert.equal(await page.evaluate(() => document.body.dataset.state), 'done');
  assert.deepEqual(page.errors, []);
  await context.close();
});

// Guided sampling (issue 15): the listed classifier, loaded into every worker, pulls the chains
// toward a subtype. The labels (the same random classifier here) shift toward it against the
// unguided grid of the same seed; the settings travel in the link and reproduce the grid on
// another number of workers; the controls explain themselves and refuse a bad mix.
test('the guide pulls the samples toward one subtype, travels in the link, and is off without a classifier', async () => {
  const context = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
  const page = await openPage(context, `${server.url}?workers=2`);
  await waitState(page, ['ready']);
  await page.waitForFunction(() => window.ebmPage.guide !== null, null, { timeout: 30000 });
  assert.equal(await page.evaluate(() => window.ebmPage.guide), 'random classifier paper');
  assert.ok(await page.isEnabled('#guide-on'));
  assert.ok(!(await page.isChecked('#guide-on')), 'the guide is on before anyone asked');
  assert.match(await page.textContent('#guide-why'), /Guide: random classifier paper, a classifier trained on clean drawings/);
  const subtypes = await page.$$eval('#guide-subtype option', (os) => os.map((o) => o.value));
  assert.equal(subtypes.length, 8);
  assert.deepEqual(await page.$$eval('#guide-a option', (os) => os.map((o) => o.value)), ['arch', 'beam', 'cable', 'suspension']);
  // The paper form has no noise levels: the settings for those are hidden.
  assert.ok(!(await page.isVisible('#guide-denoised')));
  assert.ok(!(await page.isVisible('#guide-sigma')));
  const labelled = async () => {
    await waitState(page, ['done']);
    await page.waitForFunction(() => window.ebmPage.labels().every((l) => l !== null), null, { timeout: 30000 });
    return page.evaluate(() => window.ebmPage.labels());
  };
  const tops = (labels, t) => labels.filter((l) => l.top === t).length;

  await generate(page, { count: 8, steps: 30, seed: 21 });
  const plain = await labelled();
  const plainImages = await page.evaluate(() => window.ebmPage.images());
  // The subtype the unguided grid has fewest of (the same every run: the same seed).
  const target = subtypes.reduce((best, t) => (tops(plain, t) < tops(plain, best) ? t : best));

  await page.check('#guide-on');
  await page.check('input[name="guide-mode"][value="subtype"]');
  assert.equal(await page.textContent('#guide-scale-out'), 'L 3000', 'the one-subtype default strength');
  assert.ok(await page.isVisible('#guide-subtype'));
  assert.ok(!(await page.isVisible('#guide-a')));
  await page.selectOption('#guide-subtype', target);
  await generate(page, { count: 8, steps: 30, seed: 21 });
  const guided = await labelled();
  const guidedImages = await page.evaluate(() => window.ebmPage.images());
  console.log(`# guide toward ${target}: ${tops(plain, target)} of 8 unguided, ${tops(guided, target)} of 8 guided`);
  assert.ok(tops(guided, target) >= 6 && tops(guided, target) >= tops(plain, target) + 4,
            `the guide did not pull toward ${target}: ${plain.map((l) => l.top)} -> ${guided.map((l) => l.top)}`);
  assert.match(await page.textContent('#caption'),
               new RegExp(`seed 21 · 30 of 30 steps · paper form · from noise · guided toward ${target} \\(strength 3000, by random classifier paper\\)`));
  const link = new URL(page.url());
  assert.equal(link.searchParams.get('guide'), target);
  assert.equal(link.searchParams.get('guide_scale'), '3000');

  // Same settings, same samples: the link on one worker gives the guided grid bit for bit.
  link.searchParams.set('workers', '1');
  const again = await openPage(context, link.href);
  await waitState(again, ['ready']);
  await again.waitForFunction(() => window.ebmPage.guide !== null, null, { timeout: 30000 });
  assert.ok(await again.isChecked('#guide-on'));
  assert.equal(await again.inputValue('#guide-subtype'), target);
  assert.equal(await again.textContent('#guide-scale-out'), 'L 3000');
  await again.click('#generate');
  await waitState(again, ['done']);
  assert.deepEqual(await again.evaluate(() => window.ebmPage.images()), guidedImages,
                   'the link on one worker gave another grid than two workers');
  assert.notDeepEqual(guidedImages, plainImages);
  assert.deepEqual(again.errors, []);

  // Variations of a sample follow the guide too (and say so).
  await page.click('#grid figure:nth-child(1) button[title="Use for variations and completion"]');
  await page.fill('#count', '2');
  await page.click('#vary');
  await waitState(page, ['done']);
  assert.match(await page.textContent('#caption'), new RegExp(`variations of the picked drawing \\(strength 0.4\\) · guided toward ${target}`));

  // Two families: the strength moves to that mode's default, the share reads as both shares, the
  // same family twice is refused before any sampling.
  await page.check('input[name="guide-mode"][value="pair"]');
  assert.equal(await page.textContent('#guide-scale-out'), 'L 300');
  await page.selectOption('#guide-a', 'beam');
  await page.selectOption('#guide-b', 'cable');
  await page.fill('#guide-share', '0.7');
  assert.equal(await page.textContent('#guide-share-out'), 'beam 70% / cable 30%');
  await page.selectOption('#guide-b', 'beam');
  await page.click('#generate');
  assert.match(await page.textContent('#notice'), /Pick two different families to mix \(both are beam\)/);
  assert.equal(await page.evaluate(() => document.body.dataset.state), 'done');
  // Off: no guide in the caption or the link.
  await page.selectOption('#guide-b', 'cable');
  await page.uncheck('#guide-on');
  await generate(page, { count: 2, steps: 3, seed: 21 });
  await waitState(page, ['done']);
  assert.doesNotMatch(await page.textContent('#caption'), /guided/);
  assert.equal(new URL(page.url()).searchParams.get('guide'), null);
  assert.deepEqual(page.errors, []);

  // No classifier that takes the model's images: the controls are off and say why.
  const bare = await browser.newContext();
  await bare.route('**/api/models', async (route) => {
    const response = await route.fetch();
    const list = await response.json();
    list.models = list.models.filter((m) => m.kind !== 'classifier');
    await route.fulfill({ response, json: list });
  });
  const none = await openPage(bare, server.url);
  await waitState(none, ['ready']);
  await none.waitForFunction(() => /No classifier/.test(document.getElementById('guide-why').textContent));
  assert.match(await none.textContent('#guide-why'),
               /No classifier on this host takes this model's 1×48×192 images, so there is nothing to guide the sampler with/);
  assert.ok(await none.isDisabled('#guide-on'));
  assert.ok(await none.isDisabled('#guide-subtype'));
  assert.ok(await none.isEnabled('#generate'));
  assert.deepEqual(none.errors, []);
  await bare.close();

  // A listed noise-aware classifier (index entry noise_conditional: true) guides; the clean one
  // keeps labelling. (The same file under another address here: the page cannot tell.)
  const two = await browser.newContext();
  await two.route('**/api/models', async (route) => {
    const response = await route.fetch();
    const list = await response.json();
    const clean = list.models.find((m) => m.kind === 'classifier');
    list.models.unshift({ ...clean, name: 'guide', file: 'guide.safetensors',
                          url: `${clean.url}?noise-aware`, noise_conditional: true });
    await route.fulfill({ response, json: list });
  });
  const both = await openPage(two, server.url);
  await waitState(both, ['ready']);
  await both.waitForFunction(() => window.ebmPage.guide !== null && window.ebmPage.classifier !== null,
                             null, { timeout: 30000 });
  assert.match(await both.textContent('#guide-why'), /trained on noisy states \(noise-aware\)/);
  const fetched = both.modelRequests.filter((u) => u.includes('subtypes.safetensors'));
  assert.equal(fetched.filter((u) => u.includes('noise-aware')).length, 1, fetched.join('\n'));
  assert.equal(fetched.filter((u) => !u.includes('noise-aware')).length, 1, fetched.join('\n'));
  // Two families with a noise-aware guide: the noisy state itself, not the denoised estimate.
  await both.check('input[name="guide-mode"][value="pair"]');
  assert.ok(!(await both.isChecked('#guide-denoised')));
  // ... at the strengths measured for it (models/README.md), not the clean guide's.
  assert.equal(await both.textContent('#guide-scale-out'), 'L 10', 'a noise-aware guide, two families');
  await both.check('input[name="guide-mode"][value="subtype"]');
  assert.equal(await both.textContent('#guide-scale-out'), 'L 30', 'a noise-aware guide, one subtype');
  assert.deepEqual(both.errors, []);
  await two.close();
  await context.close();
});

test('clear messages: invalid model file, missing SIMD, unreachable server', async () => {
  const context = await browser.newContext();

  const page = await openPage(context, server.url);
  await waitState(page, ['ready']);
  await page.setInputFiles('#file-input', { name: 'junk.safetensors', mimeType: 'application/octet-stream',
                                            buffer: Buffer.from('definitely not a model') });
  await waitState(page, ['no-model']);
  assert.match(await page.textContent('#notice'), /junk\.safetensors is not a valid model file: .*header/);
  assert.ok(await page.isDisabled('#generate'));

  const noSimd = await context.newPage();
  await noSimd.addInitScript(() => {
    const validate = WebAssembly.validate.bind(WebAssembly);
    WebAssembly.validate = (bytes) => (new Uint8Array(bytes).includes(0xfd) ? false : validate(bytes));
  });
  await noSimd.goto(server.url);
  await waitState(noSimd, ['unsupported']);
  assert.match(await noSimd.textContent('#notice'), /WebAssembly SIMD/);

  const offline = await context.newPage();
  await offline.route(/api\/models|index\.json/, (route) => route.abort('connectionrefused'));
  await offline.goto(server.url);
  await offline.waitForFunction(() => !document.getElementById('notice').hidden);
  assert.match(await offline.textContent('#notice'), /server is unreachable/);
  await offline.screenshot({ path: path.join(WORK, 'unreachable.png') });
  await context.close();
});

test('a static host serves the same page with models/index.json', async () => {
  const context = await browser.newContext();
  const page = await openPage(context, staticHost.url);
  await waitState(page, ['ready']);
  assert.equal(await page.getAttribute('#model-list', 'data-source'), 'models/index.json');
  await generate(page, { count: 2, steps: 5, seed: 1 });
  await waitState(page, ['done']);
  // A model by URL parameter, as a shared link would open it.
  const byUrl = await openPage(context, `${staticHost.url}?model=models/bridges.safetensors`);
  await waitState(byUrl, ['ready']);
  assert.match(await byUrl.textContent('#card'), /random paper/);
  await context.close();
});
