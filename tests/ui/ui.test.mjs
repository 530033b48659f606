// End-to-end tests of the web UI: the real binary, spans sent through its OTLP HTTP and Zipkin
// receivers, pages driven in headless Chromium; each step asserts on what the page shows and
// saves a screenshot under tests/ui/screenshots/.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { sendBatchTrace, sendCheckoutTrace } from './fixtures.mjs';
import { eventually, openBrowser, screenshots, startMeshtrace } from './harness.mjs';

const T = { timeout: 60_000 };
let server; let browser; let page; let checkout; let batch;
const shot = (name) => page.screenshot({ path: path.join(screenshots, `${name}.png`), fullPage: false });
const rows = () => page.locator('[data-testid=timeline] [role=treeitem]');

describe('web UI', { timeout: 300_000 }, () => {
  before(async () => {
    server = await startMeshtrace();
    browser = await openBrowser();
    page = browser.page;
  });
  after(async () => {
    if (browser) await browser.close();
    if (server) await server.stop();
  });

  test('the page paths serve the app and the API is still the API', T, async () => {
    for (const p of ['/', '/search?service=x', '/trace/abc', '/dependencies']) {
      const r = await fetch(server.queryUrl + p);
      assert.equal(r.status, 200, p);
      assert.match(r.headers.get('content-type'), /^text\/html/, p);
    }
    const api = await fetch(`${server.queryUrl}/api/services`);
    assert.match(api.headers.get('content-type'), /json/);
    assert.equal((await fetch(`${server.queryUrl}/api/nope`)).status, 404);
    assert.equal((await fetch(`${server.queryUrl}/healthz`)).status, 200);
  });

  test('with no spans yet, the search page shows how to send the first one', T, async () => {
    await page.goto(`${server.queryUrl}/`);
    const empty = page.getByTestId('empty-state');
    await empty.waitFor();
    const text = await empty.innerText();
    assert.match(text, /No traces yet/);
    assert.match(text, /OTLP HTTP: http:\/\/127\.0\.0\.1:4318\/v1\/traces/);
    assert.match(text, /Zipkin v2.*:9411\/api\/v2\/spans/);
    assert.match(text, /OTEL_EXPORTER_OTLP_ENDPOINT=/);
    await shot('01-empty-state');
  });

  test('spans arrive through the OTLP HTTP and Zipkin receivers', T, async () => {
    checkout = await sendCheckoutTrace(server.addrs);
    batch = await sendBatchTrace(server.addrs);
    await eventually(async () => {
      const r = await fetch(`${server.queryUrl}/api/traces/${checkout.traceId}`);
      const body = await r.json();
      return r.ok && body.data[0].spans.length === checkout.spanCount;
    }, 'the checkout trace to be stored whole');
  });

  test('search without a service lists both traces with their summaries', T, async () => {
    await page.goto(`${server.queryUrl}/search`);
    const cards = page.locator('.trace-item');
    await eventually(async () => (await cards.count()) === 2, 'two results');
    const heading = await page.locator('.results-head h2').innerText();
    assert.equal(heading, '2 traces');
    const card = page.locator(`[data-trace-id="${checkout.traceId}"]`);
    const text = await card.innerText();
    assert.match(text, /frontend: GET \/checkout/);
    assert.match(text, /8 spans/);
    assert.match(text, /2 errors/);
    assert.match(text, /120ms/);
    for (const s of checkout.services) assert.match(text, new RegExp(`${s} \\(\\d+\\)`));
    assert.match(text, /\d{2}:\d{2}:\d{2}\.\d{3} (UTC|GMT|[A-Z]{2,5})/, 'start time in local time with its zone');
    assert.equal(await page.locator('svg.scatter circle').count(), 2, 'one scatter point per trace');
    await shot('02-search-all-services');
  });

  test('search by service through the form puts the search in the URL', T, async () => {
    await page.goto(`${server.queryUrl}/search`);
    await page.locator('#s-service option[value=frontend]').waitFor({ state: 'attached' });
    await page.selectOption('#s-service', 'frontend');
    await page.locator('#s-operation option[value="GET /checkout"]').waitFor({ state: 'attached' });
    await page.selectOption('#s-lookback', '15m');
    await page.fill('#s-tags', 'http.method=GET');
    await page.fill('#s-min', '50ms');
    await page.click('button:has-text("Find traces")');
    await page.waitForURL(/\/search\?service=frontend/);
    const url = new URL(page.url());
    assert.equal(url.searchParams.get('lookback'), '15m');
    assert.equal(url.searchParams.get('minDuration'), '50ms');
    assert.deepEqual(JSON.parse(url.searchParams.get('tags')), { 'http.method': 'GET' });
    await eventually(async () => (await page.locator('.results-head h2').innerText()) === '1 trace', 'one result');
    assert.match(await page.locator('.trace-item').innerText(), /frontend: GET \/checkout/);
    await shot('03-search-frontend');

    // A bad duration is named next to the form, and nothing is searched.
    await page.fill('#s-min', 'fast');
    await page.click('button:has-text("Find traces")');
    assert.match(await page.locator('.search-form [role=alert]').innerText(), /Min duration: "fast" is not a duration/);
    assert.equal(await page.locator('#s-min').getAttribute('aria-invalid'), 'true');

    // A custom time range goes into the URL as start/end in µs, as Jaeger writes them.
    await page.selectOption('#s-lookback', 'custom');
    await page.fill('#s-min', '');
    const local = (ms) => new Date(ms - new Date(ms).getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
    await page.fill('#s-start', local(Date.now() - 3_600_000));
    await page.fill('#s-end', local(Date.now() + 120_000));
    await page.click('button:has-text("Find traces")');
    await page.waitForURL(/lookback=custom/);
    const custom = new URL(page.url()).searchParams;
    assert.ok(Number(custom.get('end')) - Number(custom.get('start')) > 3_600_000_000, 'a window of over an hour in µs');
    await eventually(async () => (await page.locator('.results-head h2').innerText()) === '1 trace', 'the trace in the custom window');

    // A search that finds nothing says so.
    await page.goto(`${server.queryUrl}/search?service=batch-job&minDuration=10s&lookback=1h`);
    await page.getByText('No traces found').waitFor();

    // An API error is shown with the server's message.
    await page.goto(`${server.queryUrl}/search?service=frontend&minDuration=2s&maxDuration=1s`);
    const alert = page.locator('.results [role=alert]');
    await alert.waitFor();
    assert.match(await alert.innerText(), /400.*maxDuration/);
  });

  test('a result opens the trace; the header and timeline show it; back returns', T, async () => {
    await page.goto(`${server.queryUrl}/search?lookback=1h`);
    await page.locator(`[data-trace-id="${checkout.traceId}"]`).click();
    await page.waitForURL(`**/trace/${checkout.traceId}`);
    const stats = await page.getByTestId('trace-stats').innerText();
    assert.match(stats, /Duration\s*120ms/);
    assert.match(stats, /Services\s*4/);
    assert.match(stats, /Depth\s*5/);
    assert.match(stats, /Spans\s*8/);
    assert.match(stats, /Errors\s*2/);
    assert.match(await page.locator('.trace-head h1').innerText(), /frontend: GET \/checkout/);
    assert.equal(await rows().count(), 8);
    // The proxy's span is marked as such; errors are marked; the critical path is drawn.
    const proxyRow = page.locator(`[data-span-id="${checkout.ids.proxy}"]`);
    assert.equal(await proxyRow.locator('.proxy-i').innerText(), 'proxy');
    assert.equal(await proxyRow.locator('.bar.proxy').count(), 1);
    assert.equal(await page.locator(`[data-span-id="${checkout.ids.redis}"] .proxy-i`).count(), 0);
    assert.equal(await page.locator(`[data-span-id="${checkout.ids.price}"] .bar.err`).count(), 1);
    assert.equal(await page.locator(`[data-span-id="${checkout.ids.price}"] .logmark`).count(), 1, 'its event is marked on the bar');
    assert.ok(await page.locator('.bar.crit').count() >= 3);
    await shot('04-trace');
    await page.goBack();
    await page.waitForURL(/\/search\?lookback=1h/);
    await page.locator(`[data-trace-id="${checkout.traceId}"]`).waitFor();
  });

  test('the span tree collapses and expands', T, async () => {
    await page.goto(`${server.queryUrl}/trace/${checkout.traceId}`);
    await eventually(async () => (await rows().count()) === 8, '8 rows');
    const cartCall = page.locator(`[data-span-id="${checkout.ids.cartCall}"]`);
    assert.equal(await cartCall.getAttribute('aria-expanded'), 'true');
    await cartCall.locator('[data-toggle]').click();
    await eventually(async () => (await rows().count()) === 4, 'the cart call collapsed to one row');
    assert.equal(await cartCall.getAttribute('aria-expanded'), 'false');
    assert.equal(await cartCall.locator('.hidden-n').innerText(), '+4', 'the count of hidden spans');
    await shot('05-collapsed');
    await cartCall.locator('[data-toggle]').click();
    await eventually(async () => (await rows().count()) === 8, 'expanded again');
    await page.click('button:has-text("Collapse all")');
    await eventually(async () => (await rows().count()) === 3, 'only the root and its children');
    await page.click('button:has-text("Expand all")');
    await eventually(async () => (await rows().count()) === 8, 'all rows');
  });

  test('clicking a span opens its details and puts it in the URL', T, async () => {
    await page.goto(`${server.queryUrl}/trace/${checkout.traceId}`);
    await page.locator(`[data-span-id="${checkout.ids.price}"]`).click();
    const details = page.getByTestId('span-details');
    await details.waitFor();
    const text = await details.innerText();
    assert.match(text, /cart: price lookup/);
    assert.match(text, /kind\s+internal/);
    assert.match(text, new RegExp(`span ID\\s+${checkout.ids.price}`));
    assert.match(text, new RegExp(`parent ID\\s+${checkout.ids.cartServer}`));
    assert.match(text, /start\s+\+22\.0ms/);
    assert.match(text, /duration\s+28\.0ms/);
    assert.match(text, /otel\.status_description\s+price service unavailable/);
    assert.match(text, /price\.currency\s+EUR/);
    assert.match(text, /Events \(1\)/i);
    assert.match(text, /\+49\.0ms into the trace/);
    assert.match(text, /exception\.type\s+UpstreamError/);
    assert.match(text, /host\.name\s+cart-5c4b/);
    assert.match(text, /child of\s+cart: POST \/api\/cart/);
    assert.equal(new URL(page.url()).searchParams.get('uiFind'), checkout.ids.price);
    await shot('06-span-details');

    // The link opens the same span; its parent reference moves the selection.
    await page.goto(`${server.queryUrl}/trace/${checkout.traceId}?uiFind=${checkout.ids.proxy}`);
    const proxyText = await details.innerText();
    assert.match(proxyText, /cart-sidecar: ingress/);
    assert.match(proxyText, /emitted by\s+a proxy \(component=proxy\)/);
    assert.match(proxyText, /upstream_cluster\s+inbound\|8080\|cart/);
    // Jaeger's other form, #<spanID>, opens a span too.
    await page.goto(`${server.queryUrl}/trace/${checkout.traceId}#${checkout.ids.shipServer}`);
    await eventually(async () => /shipping: GET \/api\/shipping/.test(await details.locator('h2').innerText()), 'the span named by the hash');
    await page.goto(`${server.queryUrl}/trace/${checkout.traceId}?uiFind=${checkout.ids.proxy}`);
    await details.waitFor();
    await details.getByRole('link', { name: 'frontend: POST /api/cart' }).click();
    await eventually(async () => /frontend: POST \/api\/cart/.test(await details.locator('h2').innerText()), 'the parent opened');
    assert.equal(new URL(page.url()).searchParams.get('uiFind'), checkout.ids.cartCall);
    await page.click('button[aria-label="Close span details"]');
    assert.equal(await details.count(), 0);
  });

  test('finding spans highlights them and is kept in the URL', T, async () => {
    await page.goto(`${server.queryUrl}/trace/${checkout.traceId}`);
    await rows().first().waitFor();
    await page.fill('#t-find', 'redis');
    await eventually(async () => (await page.locator('.row.match').count()) === 1, 'one match');
    assert.equal(await page.locator('.row.match').getAttribute('data-span-id'), checkout.ids.redis);
    assert.match(await page.locator('.toolbar [role=status]').innerText(), /1 match/);
    assert.equal(new URL(page.url()).searchParams.get('uiFind'), 'redis');
    await page.reload();
    await eventually(async () => (await page.locator('.row.match').count()) === 1, 'the match after a reload');
    assert.equal(await page.inputValue('#t-find'), 'redis');
  });

  test('the timeline works from the keyboard', T, async () => {
    await page.goto(`${server.queryUrl}/trace/${checkout.traceId}`);
    await rows().first().waitFor();
    await page.getByTestId('timeline').focus();
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('ArrowLeft'); // collapse the sidecar span
    await eventually(async () => (await rows().count()) === 5, 'collapsed by ArrowLeft');
    await page.keyboard.press('ArrowRight');
    await eventually(async () => (await rows().count()) === 8, 'expanded by ArrowRight');
    const active = await page.getByTestId('timeline').getAttribute('aria-activedescendant');
    assert.equal(active, `span-row-${checkout.ids.proxy}`, 'the current row is announced');
    await shot('07-keyboard');
    await page.keyboard.press('Enter');
    const details = page.getByTestId('span-details');
    await details.waitFor();
    assert.match(await details.locator('h2').innerText(), /cart-sidecar: ingress/);
    await page.keyboard.press('Escape');
    assert.equal(await details.count(), 0);

    // The name column's width: a separator moved by the arrow keys (or dragged).
    const nameCell = page.locator('.tl-axis .name-h');
    const before = (await nameCell.boundingBox()).width;
    await page.getByRole('separator', { name: 'Width of the name column' }).focus();
    await page.keyboard.press('ArrowRight');
    await page.keyboard.press('ArrowRight');
    assert.equal(await page.getByRole('separator').getAttribute('aria-valuenow'), '40');
    await eventually(async () => (await nameCell.boundingBox()).width > before + 20, 'a wider name column');
  });

  test('dragging on the mini-map zooms the timeline', T, async () => {
    await page.goto(`${server.queryUrl}/trace/${checkout.traceId}`);
    const map = page.getByTestId('minimap');
    await map.waitFor();
    const box = await map.boundingBox();
    await page.mouse.move(box.x + box.width * 0.5, box.y + 10);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.75, box.y + 20, { steps: 5 });
    await page.mouse.up();
    const firstTick = () => page.locator('.tl-axis .ticks span').first().innerText();
    await eventually(async () => (await firstTick()) === '60.0ms', "the axis to start at the window's start");
    const zoom = new URL(page.url()).searchParams.get('zoom');
    assert.match(zoom, /^0\.\d{4}-0\.\d{4}$/);
    await page.reload(); // the window is part of the URL
    await eventually(async () => (await firstTick()) === '60.0ms', 'the same window after a reload');
    await shot('08-zoomed');
    await page.click('button:has-text("Reset zoom")');
    await eventually(async () => (await firstTick()) === '0µs', 'the whole trace again');
    // From the keyboard: + zooms into the middle half, Escape resets.
    await map.focus();
    await page.keyboard.press('+');
    await eventually(async () => (await firstTick()) === '30.0ms', 'zoomed by the keyboard');
    await page.keyboard.press('Escape');
    await eventually(async () => (await firstTick()) === '0µs', 'reset by Escape');
  });

  test('the trace-id box jumps to a trace; unknown ids say so', T, async () => {
    await page.goto(`${server.queryUrl}/dependencies`);
    await page.fill('#jump-id', checkout.traceId.toUpperCase());
    await page.press('#jump-id', 'Enter');
    await page.waitForURL(`**/trace/${checkout.traceId}`);
    await rows().first().waitFor();
    await page.goto(`${server.queryUrl}/trace/00000000000000000000000000abcdef`);
    await page.getByText('Trace not found').waitFor();
    await shot('09-trace-not-found');
  });

  test('the flame graph and the compare view', T, async () => {
    await page.goto(`${server.queryUrl}/trace/${checkout.traceId}?view=flame`);
    const flame = page.getByTestId('flame');
    await flame.waitFor();
    assert.equal(await flame.locator('.flame-row').count(), 5, 'one row per depth');
    assert.equal(await flame.locator('.flame-box').count(), 8);
    await shot('10-flame');
    await page.goto(`${server.queryUrl}/trace/${checkout.traceId}...${batch.traceId}`);
    await page.waitForURL(/\/compare\?a=/);
    const summary = page.getByTestId('compare-summary');
    await summary.waitFor();
    assert.match(await summary.innerText(), /A: 8 spans.*B: 2 spans.*2 added, 8 removed/);
    await shot('11-compare');
  });

  test('the service graph shows services and calls', T, async () => {
    await page.goto(`${server.queryUrl}/dependencies?lookback=1h`);
    const graph = page.getByTestId('service-graph');
    await graph.waitFor();
    const nodes = await graph.locator('.node').evaluateAll((els) => els.map((e) => e.dataset.service));
    assert.deepEqual(nodes.sort(), ['cart', 'cart-sidecar', 'frontend', 'shipping']);
    const table = await page.locator('.edge-table').innerText();
    // The sidecar's span is an error: that call shows a 100% error rate, the others 0%.
    assert.match(table, /frontend\s+cart-sidecar\s+1\s+100%/);
    assert.match(table, /cart-sidecar\s+cart\s+1\s+0%/);
    assert.match(table, /frontend\s+shipping\s+1\s+0%/);
    assert.equal(await graph.locator('.edge').count(), 3);
    assert.equal(await graph.locator('.edge.err').count(), 1);
    assert.match(await graph.locator('.edge.err text').textContent(), /^1 call, 100% err$/);
    // Every column of the table is wide enough for its header on one line.
    const headerHeights = await page.locator('.edge-table th').evaluateAll((ths) => ths.map((th) => th.getBoundingClientRect().height));
    assert.ok(Math.max(...headerHeights) < 2 * Math.min(...headerHeights), `header heights ${headerHeights}`);
    await shot('12-service-graph');
    await graph.locator('.node', { hasText: 'shipping' }).click();
    await page.waitForURL(/\/search\?service=shipping/);
  });

  test('the theme follows the system: dark', T, async () => {
    await page.emulateMedia({ colorScheme: 'dark' });
    try {
      await page.goto(`${server.queryUrl}/trace/${checkout.traceId}?uiFind=${checkout.ids.proxy}`);
      await page.getByTestId('span-details').waitFor();
      const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
      const [r, g, b] = bg.match(/\d+/g).map(Number);
      assert.ok(r + g + b < 120, `dark background, got ${bg}`);
      await shot('13-trace-dark');
      await page.goto(`${server.queryUrl}/search`);
      await page.locator('.trace-item').first().waitFor();
      await shot('14-search-dark');
    } finally {
      await page.emulateMedia({ colorScheme: 'light' });
    }
  });

  test('when the server is gone, the pages say what went wrong', T, async () => {
    await page.goto(`${server.queryUrl}/search`);
    await page.locator('.trace-item').first().waitFor();
    await server.stop();
    await page.click('button:has-text("Find traces")');
    const alert = page.locator('.results [role=alert]');
    await alert.waitFor();
    assert.match(await alert.innerText(), /Cannot list services\s+Could not reach the meshtrace query API \(.*\)\. Is the server running\?/);
    await shot('15-server-gone');
  });

  test('no script errors on any page', T, async () => {
    assert.deepEqual(browser.errors.map((e) => e.message), []);
  });
});
