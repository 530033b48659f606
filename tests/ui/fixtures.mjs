// Test data: a realistic checkout trace across four services, sent over OTLP (the apps) and
// Zipkin (the cart's sidecar proxy, tagged component=proxy as Envoy does), with one error span;
// a second, unrelated trace; and a 10,000-span trace for the speed test.
import { hex, resource, sendOtlp, sendZipkin, span } from './harness.mjs';

const SERVER = 2; const CLIENT = 3; const INTERNAL = 1;

/** Sends the checkout trace; returns its ids and expectations. */
export async function sendCheckoutTrace(addrs) {
  const traceId = hex(16);
  const base = Date.now() - 5_000;
  const id = { root: hex(8), cartCall: hex(8), proxy: hex(8), cartServer: hex(8), redis: hex(8), price: hex(8), shipCall: hex(8), shipServer: hex(8) };
  await sendOtlp(addrs, [
    resource('frontend', [
      span({ traceId, spanId: id.root, name: 'GET /checkout', kind: SERVER, base, from: 0, to: 120, attributes: { 'http.method': 'GET', 'http.route': '/checkout', 'http.status_code': 500 } }),
      span({ traceId, spanId: id.cartCall, parentSpanId: id.root, name: 'POST /api/cart', kind: CLIENT, base, from: 5, to: 60, attributes: { 'http.method': 'POST', 'server.address': 'cart' } }),
      span({ traceId, spanId: id.shipCall, parentSpanId: id.root, name: 'GET /api/shipping', kind: CLIENT, base, from: 62, to: 115, attributes: { 'http.method': 'GET' } }),
    ], { 'host.name': 'frontend-7d9f', 'telemetry.sdk.language': 'nodejs' }),
    resource('cart', [
      span({ traceId, spanId: id.cartServer, parentSpanId: id.proxy, name: 'POST /api/cart', kind: SERVER, base, from: 8, to: 55, attributes: { 'http.method': 'POST', 'http.status_code': 500 } }),
      span({ traceId, spanId: id.redis, parentSpanId: id.cartServer, name: 'redis SET', kind: CLIENT, base, from: 10, to: 20, attributes: { 'db.system': 'redis' } }),
      span({
        traceId, spanId: id.price, parentSpanId: id.cartServer, name: 'price lookup', kind: INTERNAL, base, from: 22, to: 50,
        attributes: { 'price.currency': 'EUR' }, status: { code: 2, message: 'price service unavailable' },
        events: [{ at: 49, name: 'exception', attributes: { 'exception.type': 'UpstreamError', 'exception.message': 'connection refused' } }],
      }),
    ], { 'host.name': 'cart-5c4b' }),
    resource('shipping', [
      span({ traceId, spanId: id.shipServer, parentSpanId: id.shipCall, name: 'GET /api/shipping', kind: SERVER, base, from: 64, to: 112, attributes: { 'http.method': 'GET', 'http.status_code': 200 } }),
    ]),
  ]);
  await sendZipkin(addrs, [{
    traceId, id: id.proxy, parentId: id.cartCall, name: 'ingress', kind: 'SERVER',
    timestamp: (base + 6) * 1000, duration: 51_000,
    localEndpoint: { serviceName: 'cart-sidecar', ipv4: '10.0.0.7' },
    tags: { component: 'proxy', 'http.method': 'POST', 'http.url': 'http://cart/api/cart', 'http.status_code': '500', upstream_cluster: 'inbound|8080|cart', node_id: 'sidecar~10.0.0.7~cart-5c4b', 'guid:x-request-id': 'a1b2c3', error: 'true' },
  }]);
  return { traceId, ids: id, spanCount: 8, services: ['frontend', 'cart-sidecar', 'cart', 'shipping'] };
}

/** A small trace of another service, so searching without a service finds two. */
export async function sendBatchTrace(addrs) {
  const traceId = hex(16);
  const base = Date.now() - 3_000;
  const root = hex(8);
  await sendOtlp(addrs, [resource('batch-job', [
    span({ traceId, spanId: root, name: 'nightly export', kind: INTERNAL, base, from: 0, to: 30 }),
    span({ traceId, spanId: hex(8), parentSpanId: root, name: 'write file', kind: INTERNAL, base, from: 2, to: 25 }),
  ])]);
  return { traceId };
}

/** Sends a trace of `n` spans (fan-out 1 → 9 → 90 → 900 → 9000 for 10,000) across 20 services. */
export async function sendBigTrace(addrs, n = 10_000) {
  const traceId = hex(16);
  const base = Date.now() - 60_000;
  const spans = [{ id: hex(8), parent: '', depth: 0, from: 0, to: 10_000 }];
  for (let i = 0; spans.length < n; i++) {
    const p = spans[i];
    const fan = p.depth === 0 ? 9 : 10;
    const width = (p.to - p.from) / fan;
    for (let k = 0; k < fan && spans.length < n; k++) {
      const from = p.from + k * width + width * 0.05;
      spans.push({ id: hex(8), parent: p.id, depth: p.depth + 1, from, to: from + width * 0.9 });
    }
  }
  const byService = new Map();
  spans.forEach((s, i) => {
    const service = i === 0 ? 'gateway' : `svc-${String(i % 20).padStart(2, '0')}`;
    if (!byService.has(service)) byService.set(service, []);
    byService.get(service).push(span({
      traceId, spanId: s.id, parentSpanId: s.parent, name: `op-${s.depth}-${i % 7}`, kind: i % 2 ? CLIENT : SERVER, base, from: s.from, to: s.to,
      attributes: { 'http.method': 'GET', 'http.status_code': i % 997 === 0 ? 500 : 200, component: i % 5 === 0 ? 'proxy' : 'app' },
      status: i % 997 === 0 ? { code: 2, message: 'boom' } : {},
    }));
  });
  await sendOtlp(addrs, [...byService.entries()].map(([svc, list]) => resource(svc, list)));
  return { traceId, spanCount: spans.length };
}
