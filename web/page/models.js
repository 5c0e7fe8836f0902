// Where models come from: the server's list (GET api/models), or a static host's
// models/index.json; downloads with progress and the IndexedDB cache; local files.
import { getCached, putCached } from './model_cache.js';

export class ListError extends Error {}

// {models, source} from api/models, falling back to models/index.json. Throws ListError with a
// message for a person when neither answers.
export async function fetchModelList() {
  let networkFailures = 0;
  for (const url of ['api/models', 'models/index.json']) {
    let res;
    try {
      res = await fetch(url, { cache: 'no-cache' });
    } catch {
      ++networkFailures;
      continue;
    }
    if (!res.ok) continue;
    try {
      const list = await res.json();
      if (Array.isArray(list.models)) return { models: list.models, source: url };
    } catch {
      // not JSON: try the next source
    }
  }
  if (networkFailures === 2)
    throw new ListError('The server is unreachable: the model list could not be fetched. ' +
                        'Check that ebm-serve is running, or open a model file from disk.');
  throw new ListError('This host has no model list (neither api/models nor models/index.json). ' +
                      'Open a model file from disk, or add ?model=URL to the address.');
}

function stripQuotes(etag) {
  return etag ? etag.replace(/^W\//, '').replace(/^"|"$/g, '') : '';
}

// Reads a response body, reporting progress(loaded, total) as it arrives.
async function readWithProgress(res, progress) {
  const total = Number(res.headers.get('Content-Length')) || 0;
  if (!res.body || !res.body.getReader) {
    const buf = await res.arrayBuffer();
    progress(buf.byteLength, buf.byteLength);
    return buf;
  }
  const reader = res.body.getReader();
  const chunks = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.byteLength;
    progress(loaded, total);
  }
  const out = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) { out.set(c, at); at += c.byteLength; }
  return out.buffer;
}

// Fetches a model file: from the cache when its ETag is known and matches (entries from the
// list carry sha256, which is the server's ETag), else by download. Resolves with
// {bytes, fromCache}. `url` is the cache key; listed models are fetched as url?v=<sha256>,
// which the server lets the browser keep for good.
export async function fetchModel(url, { etag = '', progress = () => {} } = {}) {
  const cached = await getCached(url);
  let known = etag;
  if (cached && !known) {
    // A URL from ?model=: ask for the current ETag without downloading.
    try {
      const head = await fetch(url, { method: 'HEAD', cache: 'no-cache' });
      if (head.ok) known = stripQuotes(head.headers.get('ETag'));
    } catch {
      // offline: fall through to the download, which reports the problem
    }
  }
  if (cached && known && cached.etag === known) {
    progress(cached.bytes.byteLength, cached.bytes.byteLength);
    return { bytes: cached.bytes, fromCache: true };
  }
  const target = etag ? `${url}${url.includes('?') ? '&' : '?'}v=${etag}` : url;
  let res;
  try {
    res = await fetch(target);
  } catch (e) {
    throw new Error(`Cannot download ${url}: the server is unreachable (${e.message}).`);
  }
  if (!res.ok) {
    let why = `HTTP ${res.status}`;
    try { why = (await res.json()).error || why; } catch { /* not JSON */ }
    throw new Error(`Cannot download ${url}: ${why}`);
  }
  const bytes = await readWithProgress(res, progress);
  const got = stripQuotes(res.headers.get('ETag')) || etag;
  if (got) await putCached(url, got, bytes);
  return { bytes, fromCache: false };
}

export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}
