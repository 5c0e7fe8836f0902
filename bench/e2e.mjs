// End to end as a user sees it (issue 7): ebm-serve hosts the site and the models folder, headless
// Chromium opens the page with a model (downloaded once, then from the page's cache), and the
// time from pressing Generate to the finished grid is measured: the workers' Langevin loops,
// the live updates, the energy chart and the classifier's labels, all of it. Medians over runs.
//
//   node bench/e2e.mjs [--model models/bridges.safetensors] [--count 16] [--runs 5]
//                      [--workers 0] [--steps K] [--rho R] [--sigma-max S] [--screenshot page.png] [--phone]
//                      [--guide MIX [--guide-scale L] [--guide-denoised]] [--trace trace.json]
// --workers 0: the page's own choice (one per core, up to its limit); --steps: override the
// model's default steps (default: the model's, as a visitor gets them); --rho: its level spacing;
// --sigma-max: its first noise level. Needs build/site
// (scripts/build-wasm.sh), build/release/web/server/ebm-serve and bench/node_modules
// (scripts/install-deps.sh --tests), all of which bench/run.sh makes. --phone: a 390x844 touch
// screen at twice the pixels (an iPhone's size) instead of a 1440x1000 desktop window.
// --guide: guided sampling toward MIX (cable_fan, arch:0.5,suspension:0.5) by the listed
// classifier, set through the page's link (guide=MIX&guide_scale=L&guide_denoised=1).
// --trace: a Chromium trace of the last run's Generate to the file, and where its CPU went: the
// sampling workers, and beside them Chromium's own threads (the page's main thread, the
// compositors), with the frames the page drew. On 2 cores every second of the latter is taken
// from the workers. Tracing itself costs time: the traced run's times are not comparable.
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const { values: opt } = parseArgs({
  options: {
    model: { type: 'string', default: path.join(root, 'models', 'bridges.safetensors') },
    count: { type: 'string', default: '16' },
    runs: { type: 'string', default: '5' },
    workers: { type: 'string', default: '0' },
    steps: { type: 'string' },
    rho: { type: 'string' },
    'sigma-max': { type: 'string' },
    screenshot: { type: 'string' },
    trace: { type: 'string' },
    phone: { type: 'boolean', default: false },
    guide: { type: 'string' },
    'guide-scale': { type: 'string', default: '3000' },
    'guide-denoised': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opt.help) {
  console.log('usage: node bench/e2e.mjs [--model M.safetensors] [--count 16] [--runs 5] [--workers 0] [--steps K] [--rho R] [--sigma-max S] [--screenshot page.png] [--phone] [--guide MIX [--guide-scale L] [--guide-denoised]] [--trace trace.json]');
  process.exit(0);
}
const fail = (msg) => { console.error(`e2e: ${msg}`); process.exit(1); };

// CPU seconds per thread kind in a Chromium trace (each task's thread time, tdur) and the frames
// committed: 'workers 6.61 s; beside them 0.60 s (CrRendererMain 0.30, ...); 32 frames'.
function traceSummary(file) {
  const { traceEvents } = JSON.parse(readFileSync(file, 'utf8'));
  const names = new Map();
  for (const e of traceEvents) {
    if (e.ph === 'M' && e.name === 'thread_name') names.set(`${e.pid}/${e.tid}`, e.args.name);
  }
  const cpu = new Map();
  let frames = 0;
  for (const e of traceEvents) {
    if (e.ph !== 'X') continue;
    if (e.name === 'Commit') ++frames;
    if (e.name !== 'ThreadControllerImpl::RunTask') continue;
    const name = names.get(`${e.pid}/${e.tid}`) ?? 'unnamed';
    cpu.set(name, (cpu.get(name) ?? 0) + (e.tdur ?? 0) / 1e6);
  }
  const workers = cpu.get('DedicatedWorker thread') ?? 0;
  cpu.delete('DedicatedWorker thread');
  const rest = [...cpu].sort((a, b) => b[1] - a[1]);
  const beside = rest.reduce((sum, [, s]) => sum + s, 0);
  return `CPU of the traced run: workers ${workers.toFixed(2)} s; beside them ${beside.toFixed(2)} s (` +
         `${rest.slice(0, 4).map(([n, s]) => `${n} ${s.toFixed(2)}`).join(', ')}); ${frames} frames committed`;
}
// The release build's server, or the one of a build without LibTorch.
const SERVE = ['release', 'no-torch'].map((b) => path.join(root, 'build', b, 'web', 'server', 'ebm-serve'))
  .find(existsSync) ?? path.join(root, 'build', 'release', 'web', 'server', 'ebm-serve');
const SITE = path.join(root, 'build', 'site');
if (!existsSync(SERVE)) fail(`no ${SERVE}: build it with cmake --build --preset release`);
if (!existsSync(path.join(SITE, 'ebm_runtime.wasm'))) fail('no build/site: run scripts/build-wasm.sh');
if (!existsSync(opt.model)) fail(`no model file ${opt.model} (--model picks another)`);
const { chromium } = await import('playwright-core');

// The model, the classifier the page labels samples with and the guide it pulls with (the
// noise-aware one the page prefers, as a visitor of the shipped models gets it), in a models
// folder of their own.
const models = mkdtempSync(path.join(os.tmpdir(), 'ebm-e2e-'));
cpSync(opt.model, path.join(models, path.basename(opt.model)));
let classifiers = 0;
for (const f of readdirSync(path.join(root, 'models'))) {
  if ((f.includes('classifier') || f.includes('guide')) && f.endsWith('.safetensors')) {
    cpSync(path.join(root, 'models', f), path.join(models, f));
    ++classifiers;
  }
}

const server = await new Promise((resolve, reject) => {
  const proc = spawn(SERVE, ['--web', SITE, '--models', models, '--host', '127.0.0.1', '--port', '0'],
                     { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const onData = (d) => {
    out += d;
    const m = out.match(/http:\/\/127\.0\.0\.1:(\d+)\//);
    if (m) resolve({ proc, url: `http://127.0.0.1:${m[1]}/` });
  };
  proc.stdout.on('data', onData);
  proc.stderr.on('data', onData);
  proc.on('exit', (code) => reject(new Error(`ebm-serve exited ${code}:\n${out}`)));
});

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
});
const median = (v) => [...v].sort((a, b) => a - b)[(v.length - 1) >> 1];
try {
  const context = await browser.newContext(opt.phone
    ? { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true }
    : { viewport: { width: 1440, height: 1000 } });
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error(`page error: ${e}`));
  const query = new URLSearchParams({ model: `models/${path.basename(opt.model)}` });
  if (Number(opt.workers) > 0) query.set('workers', opt.workers);
  if (opt.guide) {
    if (!classifiers) fail('--guide needs a classifier in models/ (none found)');
    query.set('guide', opt.guide);
    query.set('guide_scale', opt['guide-scale']);
    query.set('guide_denoised', opt['guide-denoised'] ? '1' : '0');
  }
  const url = `${server.url}?${query}`;
  // The page is polled every 100 ms, not at every animation frame (Playwright's default), which
  // makes Chromium draw 60 frames a second, each of them time the workers lack on 2 cores
  // (bench/README.md). The times are the page's own performance.now().
  const poll = (fn, arg, timeout = 600000) => page.waitForFunction(fn, arg, { timeout, polling: 100 });
  const waitState = (states, timeout) => poll((s) => s.includes(document.body.dataset.state), states, timeout);

  await page.goto(url);  // downloads the model into the page's cache
  await waitState(['ready']);
  const runs = [], msPerImageStep = [], firstGrid = [];
  let info = null;
  for (let r = 0; r < Number(opt.runs); ++r) {
    await page.goto(url);  // a visitor coming back: the model comes from the cache
    await waitState(['ready']);
    if (classifiers) await poll(() => window.ebmPage.classifier !== null, null, 60000);
    if (opt.guide) {
      await poll(() => window.ebmPage.guide !== null, null, 60000);
      if (!(await page.isChecked('#guide-on'))) fail(`the page did not take the guide ${opt.guide}: ${await page.textContent('#notice')}`);
    }
    await page.fill('#count', opt.count);
    if (opt.steps) await page.fill('#steps', opt.steps);
    if (opt.rho) await page.fill('#rho', opt.rho);
    if (opt['sigma-max']) await page.fill('#sigma_max', opt['sigma-max']);
    await page.fill('#seed', String(r + 1));
    const traced = opt.trace && r === Number(opt.runs) - 1;
    if (traced) await browser.startTracing(page, { path: opt.trace, categories: ['devtools.timeline', 'disabled-by-default-devtools.timeline', 'toplevel'] });
    const t0 = await page.evaluate(() => {
      const t = performance.now();
      document.getElementById('generate').click();
      return t;
    });
    await waitState(['done']);
    // Finished means labelled too, when a classifier is there (the page notes when).
    await poll(() => window.ebmPage.finishedAt !== null, null, 60000);
    if (classifiers && !(await page.evaluate(() => window.ebmPage.labels().every((l) => l !== null)))) {
      fail(`the grid was not labelled: ${await page.textContent('#notice')}`);
    }
    const t1 = await page.evaluate(() => window.ebmPage.finishedAt);
    if (traced) {
      await browser.stopTracing();
      console.log(`e2e: ${traceSummary(opt.trace)}`);
    }
    runs.push((t1 - t0) / 1000);
    firstGrid.push((await page.evaluate(() => window.ebmPage.firstGridMs)) / 1000);
    msPerImageStep.push(await page.evaluate(() => window.ebmPage.msPerImageStep));
    info ??= await page.evaluate(() => ({
      workers: window.ebmPage.workers,
      steps: document.getElementById('steps').value,
      status: document.getElementById('status').textContent,
      caption: document.getElementById('caption').textContent,
    }));
    console.log(`run ${r + 1}: ${runs.at(-1).toFixed(2)} s, first full grid ${firstGrid.at(-1).toFixed(2)} s ` +
                `(${await page.$eval('#status', (e) => e.textContent)})`);
  }
  if (opt.screenshot) {
    await page.evaluate(() => { document.activeElement?.blur(); window.scrollTo(0, 0); });
    await page.screenshot({ path: opt.screenshot });
    console.log(`e2e: wrote ${opt.screenshot}`);
  }
  console.log(`e2e: ${info.caption}`);
  console.log(`e2e: ${opt.count} samples of ${path.basename(opt.model)}, ${info.steps} steps, ${info.workers} ` +
              `worker(s)${opt.guide ? `, guided toward ${opt.guide} (L ${opt['guide-scale']}${opt['guide-denoised'] ? ', denoised' : ''})` : ''}, ` +
              `Generate to a first full grid (every tile a denoised estimate at sigma <= 5, or finished): ` +
              `median ${median(firstGrid).toFixed(2)} s; ` +
              `Generate to finished labelled grid: median ${median(runs).toFixed(2)} s ` +
              `(min ${Math.min(...runs).toFixed(2)}, max ${Math.max(...runs).toFixed(2)}, ${runs.length} runs); ` +
              `median ${median(msPerImageStep).toFixed(1)} ms per image-step in the workers; ` +
              `load average ${os.loadavg().map((v) => v.toFixed(2)).join(' ')}`);
} finally {
  await browser.close();
  server.proc.kill('SIGTERM');
  rmSync(models, { recursive: true, force: true });
}
