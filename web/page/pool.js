// A pool of sampling workers (worker.js), one per core up to a limit. A grid of N chains is split
// into contiguous shares; chain i always draws its noise from stream i of the seed, so the grid
// does not depend on how many workers there are.

export function defaultWorkerCount(limit = 8) {
  const param = Number(new URLSearchParams(location.search).get('workers'));
  if (Number.isInteger(param) && param > 0) return Math.min(param, 32);
  return Math.max(1, Math.min(navigator.hardwareConcurrency || 2, limit));
}

// Chains [first, first + count) for each of `workers` shares of n (empty shares dropped).
export function splitGrid(n, workers) {
  const shares = [];
  for (let w = 0; w < workers; ++w) {
    const first = Math.floor((w * n) / workers), end = Math.floor(((w + 1) * n) / workers);
    if (end > first) shares.push({ first, count: end - first });
  }
  return shares;
}

export class WorkerPool {
  constructor(size) {
    this.size = size;
    this.workers = [];
    this.jobId = 0;
    this.active = null;  // {id, handlers}
    this.requests = new Map();  // classifier request id -> {resolve, reject}
    this.requestId = 0;
    this.loads = 0;
    this.warmUps = [];  // per worker, for the model loaded last: {ms, error} of its warm-up walk
  }

  // The classifier lives in the first worker, next to its share of the sampling; classification
  // is quick and happens once a grid is finished.
  #request(type, payload, transfer = [], worker = null) {
    if (this.workers.length === 0) this.workers.push(this.#spawn());
    const job = `c${++this.requestId}`;
    return new Promise((resolve, reject) => {
      this.requests.set(job, { resolve, reject });
      (worker || this.workers[0]).postMessage({ type, job, ...payload }, transfer);
    });
  }

  // The guide classifier goes into every worker: each steps its share of the chains with it.
  // Resolves with its card; rejects with the runtime's message.
  async loadGuide(bytes) {
    if (this.workers.length === 0) this.workers.push(this.#spawn());
    while (this.workers.length < this.size) this.workers.push(this.#spawn());
    const cards = await Promise.all(this.workers.map((w) => {
      const copy = bytes.slice(0);
      return this.#request('load-guide', { bytes: copy }, [copy], w);
    }));
    return cards[0];
  }

  // Resolves with the classifier's card; rejects with the runtime's message.
  loadClassifier(bytes) {
    const copy = bytes.slice(0);
    return this.#request('load-classifier', { bytes: copy }, [copy]);
  }

  // images: Float32Array of n images. Resolves with one result per image (see worker.js).
  classify(images, n) {
    const copy = images.slice();
    return this.#request('classify', { images: copy, n }, [copy.buffer]);
  }

  #spawn() {
    const w = new Worker('worker.js');
    w.onmessage = (e) => this.#dispatch(w, e.data);
    w.onerror = (e) => {
      e.preventDefault();
      this.#dispatch(w, { type: 'error', job: this.active?.id ?? null,
                          message: e.message || 'a sampling worker failed to start' });
    };
    return w;
  }

  #dispatch(worker, msg) {
    if (msg.type === 'warmed') {
      if (msg.load !== this.loads) return;  // a model loaded before the last one
      this.warmUps.push({ ms: msg.ms, error: msg.error });
      // Not the visitor's concern (the first Generate is only slower), but a developer's.
      if (msg.error) console.warn(`a sampling worker's warm-up walk was refused: ${msg.error}`);
      return;
    }
    if (typeof msg.job === 'string' && msg.job.startsWith('c')) {  // classifier requests
      const p = this.requests.get(msg.job);
      this.requests.delete(msg.job);
      if (!p) return;
      if (msg.type === 'error') p.reject(new Error(msg.message));
      else p.resolve(msg.type === 'classified' ? msg.results : msg.card);
      return;
    }
    if (worker.pending && (msg.type === 'loaded' || (msg.type === 'error' && msg.job == null))) {
      const p = worker.pending;
      worker.pending = null;
      if (msg.type === 'loaded') p.resolve(msg.card);
      else p.reject(new Error(msg.message));
      return;
    }
    const job = this.active;
    if (!job || msg.job !== job.id) return;  // a late message from a stopped job
    job.onMessage(worker, msg);
  }

  #loadInto(worker, bytes) {
    return new Promise((resolve, reject) => {
      worker.pending = { resolve, reject };
      const copy = bytes.slice(0);  // each worker gets its own copy, transferred
      worker.postMessage({ type: 'load', bytes: copy, load: this.loads }, [copy]);
    });
  }

  // Loads the model into the first worker (which validates it) and then into the rest.
  // Resolves with the model's card; rejects with the runtime's message for an invalid file.
  async load(bytes) {
    this.stop();
    ++this.loads;
    this.warmUps = [];
    if (this.workers.length === 0) this.workers.push(this.#spawn());
    const card = await this.#loadInto(this.workers[0], bytes);
    while (this.workers.length < this.size) this.workers.push(this.#spawn());
    await Promise.all(this.workers.slice(1).map((w) => this.#loadInto(w, bytes)));
    return card;
  }

  // Runs n chains. start: {kind:'uniform'}, {kind:'blend', a, b, t: Float32Array(n)},
  // {kind:'variation', image, strength} or {kind:'inpaint', image, mask} (mask 1 = keep).
  // guide: null, or {target, scale, sigma, onDenoised} for every worker (after loadGuide).
  // Callbacks: onProgress({chain0, count, step, total, energies, images?, denoised, sigma, level,
  // levels}) for each step of each worker's chains (a worker reports a slice's steps in one
  // message; denoised: images are the chains' denoised estimates, not their noisy states),
  // onDone({stopped, msPerStep}), onError(message). Returns the job id.
  run({ n, params, seed, start, guide = null, sliceMs = 100 }, { onProgress, onDone, onError }) {
    this.stop();
    const id = ++this.jobId;
    const shares = splitGrid(n, this.workers.length);
    const byWorker = new Map();
    let remaining = shares.length, stopped = false, msSum = 0;
    const job = {
      id,
      onMessage: (worker, msg) => {
        const share = byWorker.get(worker);
        if (msg.type === 'progress') {
          for (const s of msg.steps) {
            onProgress({ chain0: share.first, count: share.count, step: s.step, total: s.total,
                         energies: s.energies, images: s.images, denoised: !!s.denoised, moves: s.moves,
                         sigma: s.sigma, level: s.level, levels: s.levels });
          }
        } else if (msg.type === 'done') {
          stopped ||= msg.stopped;
          msSum += msg.msPerStep / share.count;
          if (--remaining === 0) {
            this.active = null;
            onDone({ stopped, msPerImageStep: msSum / shares.length });
          }
        } else if (msg.type === 'error') {
          this.stop();
          onError(msg.message);
        }
      },
    };
    this.active = job;
    shares.forEach((share, w) => {
      const worker = this.workers[w];
      byWorker.set(worker, share);
      let s = start;
      if (start.kind === 'blend') s = { ...start, t: start.t.slice(share.first, share.first + share.count) };
      worker.postMessage({ type: 'run', job: id, params, seed, count: share.count,
                           firstChain: share.first, start: s, guide, sliceMs });
    });
    return id;
  }

  // Asks every worker to stop after its current slice; their 'done' messages still arrive.
  requestStop() {
    if (!this.active) return;
    for (const w of this.workers) w.postMessage({ type: 'stop', job: this.active.id });
  }

  // Forgets the running job at once (later messages from it are ignored).
  stop() {
    if (!this.active) return;
    this.requestStop();
    this.active = null;
  }
}
