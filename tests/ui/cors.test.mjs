// The proxy's CORS policy against a real browser: a page served from one origin calls an API
// behind `meshtrace proxy` (an edge) on another, with a JSON body and a custom header, so
// Chromium sends a preflight first. From the allowed origin the call succeeds, the preflight
// is answered by the proxy (the app never sees an OPTIONS), and only the exposed response
// header is readable; from another origin Chromium refuses the answer.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openBrowser, repo } from './harness.mjs';

const T = { timeout: 60_000 };

/** An HTTP server on 127.0.0.1 port 0; resolves with {port, close()}. */
function serve(handler) {
  const server = http.createServer(handler);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({
    port: server.address().port,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
  })));
}

/** `meshtrace proxy` with `yaml`; resolves with {addr, stop()} once its edge listener is up. */
async function startProxy(yaml) {
  const bin = process.env.MESHTRACE_BIN || path.join(repo, 'target', 'debug', 'meshtrace');
  const dir = await mkdtemp(path.join(tmpdir(), 'meshtrace-cors-'));
  const config = path.join(dir, 'proxy.yaml');
  await writeFile(config, yaml);
  const child = spawn(bin, ['proxy', '--config', config], { stdio: ['ignore', 'pipe', 'inherit'] });
  const addr = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the proxy did not start in 30 s')), 30_000);
    let buf = '';
    child.stdout.on('data', (chunk) => {
      buf += chunk;
      const m = /^meshtrace: edge listening on (\S+)/m.exec(buf);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`the proxy exited with ${code}`)); });
  });
  child.removeAllListeners('exit');
  return {
    addr,
    async stop() {
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await gone;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

describe('CORS through the proxy, in Chromium', { timeout: 180_000 }, () => {
  let app; let allowedSite; let otherSite; let proxy; let browser;
  const methodsSeen = [];
  // A page that calls the API (given in its query) and writes what happened into its title.
  const page = `<!doctype html><title>waiting</title><script>
    const api = new URLSearchParams(location.search).get('api');
    fetch(api + '/orders', { method: 'POST', headers: { 'content-type': 'application/json', 'x-user': 'alice' }, body: '{"item":3}' })
      .then(async (r) => { document.title = JSON.stringify({ status: r.status, body: await r.text(), exposed: r.headers.get('x-order-id'), hidden: r.headers.get('x-internal') }); })
      .catch((e) => { document.title = JSON.stringify({ failed: String(e) }); });
  </script>`;
  const site = (req, res) => { res.writeHead(200, { 'content-type': 'text/html' }); res.end(page); };

  before(async () => {
    app = await serve((req, res) => {
      methodsSeen.push(req.method);
      let body = '';
      req.on('data', (c) => { body += c; });
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json', 'x-order-id': '42', 'x-internal': 'secret' });
        res.end(JSON.stringify({ got: JSON.parse(body || 'null'), user: req.headers['x-user'] }));
      });
    });
    allowedSite = await serve(site);
    otherSite = await serve(site);
    proxy = await startProxy(`node_id: edge-cors
listeners:
  - name: edge
    mode: edge
    listen: 127.0.0.1:0
    upstream: 127.0.0.1:${app.port}
    cors:
      allow_origin_string_match: [{ exact: "http://localhost:${allowedSite.port}" }]
      allow_methods: "GET, POST"
      allow_headers: "content-type, x-user"
      expose_headers: x-order-id
      max_age: "600"
`);
    browser = await openBrowser();
  });
  after(async () => {
    if (browser) await browser.close();
    if (proxy) await proxy.stop();
    for (const s of [app, allowedSite, otherSite]) if (s) await s.close();
  });

  const outcome = async (sitePort) => {
    await browser.page.goto(`http://localhost:${sitePort}/?api=${encodeURIComponent(`http://${proxy.addr}`)}`);
    await browser.page.waitForFunction(() => document.title !== 'waiting', null, { timeout: 15_000 });
    return JSON.parse(await browser.page.title());
  };

  test('from the allowed origin: preflight answered by the proxy, the call succeeds', T, async () => {
    const r = await outcome(allowedSite.port);
    assert.equal(r.status, 200, JSON.stringify(r));
    assert.deepEqual(JSON.parse(r.body), { got: { item: 3 }, user: 'alice' });
    assert.equal(r.exposed, '42', 'expose_headers makes it readable');
    assert.equal(r.hidden, null, 'a header not exposed stays hidden from the page');
    assert.deepEqual(methodsSeen, ['POST'], 'the preflight never reached the app');
  });

  test('from another origin: the browser refuses the answer', T, async () => {
    methodsSeen.length = 0;
    const r = await outcome(otherSite.port);
    assert.match(r.failed || '', /TypeError|Failed to fetch/, JSON.stringify(r));
    // Not allowed: the proxy passed the preflight on to the app, which does not speak CORS.
    assert.deepEqual(methodsSeen, ['OPTIONS']);
  });
});
