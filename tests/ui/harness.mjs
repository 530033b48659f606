// Test harness for the UI tests: starts the real `meshtrace all-in-one` on free ports, sends
// spans through its receivers, and opens Debian's headless Chromium through playwright-core.
import { spawn } from 'node:child_process';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repo = path.resolve(here, '..', '..');
export const screenshots = path.join(here, 'screenshots');

/** Starts meshtrace; resolves with {addrs, queryUrl, stop()} once its four listeners are announced. */
export async function startMeshtrace() {
  const bin = process.env.MESHTRACE_BIN || path.join(repo, 'target', 'debug', 'meshtrace');
  const dataDir = await mkdtemp(path.join(tmpdir(), 'meshtrace-ui-'));
  const child = spawn(bin, ['all-in-one', '--data-dir', dataDir, '--otlp-grpc', '127.0.0.1:0', '--otlp-http', '127.0.0.1:0',
    '--zipkin', '127.0.0.1:0', '--query', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, RUST_LOG: 'warn' } });
  const addrs = {};
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`meshtrace did not announce its listeners in 60 s (got ${JSON.stringify(addrs)})`)), 60_000);
    let buf = '';
    child.stdout.on('data', (chunk) => {
      buf += chunk;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i); buf = buf.slice(i + 1);
        const m = /^meshtrace: (\S+) listening on (\S+) /.exec(line);
        if (m) addrs[m[1]] = m[2];
        if (Object.keys(addrs).length === 4) { clearTimeout(timer); resolve(); }
      }
    });
    child.on('error', (e) => { clearTimeout(timer); reject(new Error(`cannot start ${bin}: ${e.message} (build it with cargo build -p meshtrace)`)); });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`meshtrace exited early with ${code}`)); });
  });
  child.removeAllListeners('exit');
  let exited = false;
  child.once('exit', () => { exited = true; });
  return {
    addrs,
    queryUrl: `http://${addrs.query}`,
    /** SIGTERM (SIGKILL after 10 s), then the data folder is removed; safe to call twice. */
    async stop() {
      if (!exited) {
        const gone = new Promise((r) => { const t = setTimeout(() => { child.kill('SIGKILL'); r(); }, 10_000); child.once('exit', () => { clearTimeout(t); r(); }); });
        child.kill('SIGTERM');
        await gone;
      }
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Headless Chromium with a fresh profile; resolves with {context, page, close()}. */
export async function openBrowser() {
  const profile = await mkdtemp(path.join(tmpdir(), 'meshtrace-chromium-'));
  await mkdir(screenshots, { recursive: true });
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    timeout: 60_000,
    viewport: { width: 1400, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  context.setDefaultTimeout(15_000);
  const page = context.pages()[0] || await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  return {
    context, page, errors,
    async close() { await context.close(); await rm(profile, { recursive: true, force: true }); },
  };
}

export const hex = (bytes) => Array.from({ length: bytes }, () => Math.floor(Math.random() * 256).toString(16).padStart(2, '0')).join('');

/** POSTs OTLP/JSON resourceSpans to the OTLP HTTP receiver. */
export async function sendOtlp(addrs, resourceSpans) {
  const r = await fetch(`http://${addrs['otlp-http']}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ resourceSpans }) });
  if (!r.ok) throw new Error(`OTLP HTTP answered ${r.status}: ${await r.text()}`);
}

/** POSTs Zipkin v2 JSON spans to the Zipkin receiver. */
export async function sendZipkin(addrs, spans) {
  const r = await fetch(`http://${addrs.zipkin}/api/v2/spans`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(spans) });
  if (r.status !== 202) throw new Error(`Zipkin answered ${r.status}: ${await r.text()}`);
}

const attr = (key, v) => ({ key, value: typeof v === 'number' ? (Number.isInteger(v) ? { intValue: String(v) } : { doubleValue: v }) : typeof v === 'boolean' ? { boolValue: v } : { stringValue: v } });
export const attrs = (o) => Object.entries(o).map(([k, v]) => attr(k, v));
/** One OTLP resourceSpans for `service` holding `spans`. */
export function resource(service, spans, extra = {}) {
  return { resource: { attributes: attrs({ 'service.name': service, ...extra }) }, scopeSpans: [{ scope: { name: 'meshtrace-ui-test', version: '1' }, spans }] };
}
/** One OTLP span: times in ms from `base` (Unix ms). */
export function span({ traceId, spanId, parentSpanId, name, kind = 1, base, from, to, attributes = {}, status, events = [] }) {
  const ns = (ms) => String(BigInt(Math.round((base + ms) * 1000)) * 1000n);
  return {
    traceId, spanId, parentSpanId: parentSpanId || '', name, kind,
    startTimeUnixNano: ns(from), endTimeUnixNano: ns(to), attributes: attrs(attributes),
    events: events.map((e) => ({ timeUnixNano: ns(e.at), name: e.name, attributes: attrs(e.attributes || {}) })),
    status: status || {},
  };
}

/** Polls `fn` until it returns a truthy value (spans are searchable at once, but be patient). */
export async function eventually(fn, what, ms = 10_000) {
  const until = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => null);
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
