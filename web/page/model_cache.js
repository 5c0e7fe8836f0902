// Downloaded model files kept in IndexedDB, keyed by URL and checked against the ETag (the
// file's SHA-256), so a reload does not download a model again. IndexedDB rather than Cache
// Storage because it also works on plain-http static hosts.
const DB_NAME = 'bridge-ebm', STORE = 'models';

function open() {
  return new Promise((resolve, reject) => {
    if (!('indexedDB' in self)) { reject(new Error('no IndexedDB')); return; }
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE, { keyPath: 'url' });
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function request(mode, body) {
  return open().then((db) => new Promise((resolve, reject) => {
    const tx = db.transaction(STORE, mode);
    const req = body(tx.objectStore(STORE));
    tx.oncomplete = () => { db.close(); resolve(req.result); };
    tx.onerror = () => { db.close(); reject(tx.error); };
  }));
}

// {url, etag, bytes: ArrayBuffer, savedAt} or undefined. Never throws: no cache is a cache miss.
export async function getCached(url) {
  try {
    return await request('readonly', (s) => s.get(url));
  } catch {
    return undefined;
  }
}

export async function putCached(url, etag, bytes) {
  try {
    await request('readwrite', (s) => s.put({ url, etag, bytes, savedAt: Date.now() }));
  } catch {
    // Private windows and full disks: the model still works, it just is not cached.
  }
}
