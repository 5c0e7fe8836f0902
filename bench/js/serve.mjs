// A static server for the bench page on 127.0.0.1 that makes the page cross-origin isolated
// (Cross-Origin-Opener-Policy: same-origin, Cross-Origin-Embedder-Policy: require-corp), which
// browsers require before they give a page SharedArrayBuffer, and so WebAssembly threads: the
// threaded builds of TensorFlow.js's wasm backend and of onnxruntime-web need it. ebm-serve does
// not send these headers (its page parallelises with one single-threaded module per worker).
//
//   startServer({'/bench/': dir, '/site/': dir, ...}) -> Promise<{url, close()}>
import { createReadStream, statSync } from 'node:fs';
import { createServer } from 'node:http';
import path from 'node:path';

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript',
  '.json': 'application/json', '.wasm': 'application/wasm', '.map': 'application/json',
};

export function startServer(mounts) {
  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    const prefix = Object.keys(mounts).find((p) => url.pathname.startsWith(p));
    let file = null;
    if (prefix) {
      const root = path.resolve(mounts[prefix]);
      const rel = decodeURIComponent(url.pathname.slice(prefix.length));
      const candidate = path.resolve(root, rel);
      if (candidate.startsWith(root + path.sep)) file = candidate;
    }
    let stat = null;
    try { stat = file && statSync(file); } catch { stat = null; }
    const headers = {
      'Cross-Origin-Opener-Policy': 'same-origin',
      'Cross-Origin-Embedder-Policy': 'require-corp',
      'Cross-Origin-Resource-Policy': 'same-origin',
      'Cache-Control': 'no-store',
    };
    if (!stat || !stat.isFile()) {
      res.writeHead(404, { ...headers, 'Content-Type': 'text/plain' });
      res.end('not found');
      return;
    }
    res.writeHead(200, { ...headers, 'Content-Length': stat.size,
                         'Content-Type': TYPES[path.extname(file)] ?? 'application/octet-stream' });
    createReadStream(file).pipe(res);
  });
  return new Promise((resolve, reject) => {
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      resolve({
        url: `http://127.0.0.1:${server.address().port}`,
        close: () => new Promise((done) => { server.closeAllConnections(); server.close(done); }),
      });
    });
  });
}
