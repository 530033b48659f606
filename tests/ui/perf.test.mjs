// Speed of the trace page on a 10,000-span trace: time to first render (from navigation start to
// the painted timeline), measured in headless Chromium against the real binary; checks that the
// timeline is virtualised (only visible rows in the DOM) and that scrolling stays fast.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { sendBigTrace } from './fixtures.mjs';
import { eventually, openBrowser, screenshots, startMeshtrace } from './harness.mjs';

// The goal is < 1 s; the test fails only above this budget so a busy shared machine does not
// make it flaky (set MESHTRACE_UI_RENDER_BUDGET_MS=1000 to enforce the goal itself).
const BUDGET_MS = Number(process.env.MESHTRACE_UI_RENDER_BUDGET_MS || 3000);
const RUNS = 5;
let server; let browser; let big;

const median = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];

describe('10,000-span trace', { timeout: 300_000 }, () => {
  before(async () => {
    server = await startMeshtrace();
    browser = await openBrowser();
    big = await sendBigTrace(server.addrs, 10_000);
    await eventually(async () => {
      const r = await fetch(`${server.queryUrl}/api/traces/${big.traceId}`);
      return r.ok && (await r.json()).data[0].spans.length === 10_000;
    }, 'the 10,000-span trace to be stored', 30_000);
  });
  after(async () => {
    if (browser) await browser.close();
    if (server) await server.stop();
  });

  test('first render is fast and only visible rows are in the DOM', { timeout: 120_000 }, async () => {
    const { page } = browser;
    const url = `${server.queryUrl}/trace/${big.traceId}`;
    await page.goto(url); // warm: the browser caches the immutable assets, as a returning user has them
    const runs = [];
    for (let i = 0; i < RUNS; i++) {
      await page.goto('about:blank');
      const wall0 = Date.now();
      await page.goto(url);
      await page.locator('[data-testid=timeline] [role=treeitem]').first().waitFor();
      const wall = Date.now() - wall0;
      const marks = await page.evaluate(async () => {
        for (let k = 0; k < 100 && !performance.getEntriesByName('meshtrace:trace-painted').length; k++) await new Promise((r) => setTimeout(r, 20));
        const at = (n) => performance.getEntriesByName(n)[0]?.startTime;
        return { rendered: at('meshtrace:trace-rendered'), painted: at('meshtrace:trace-painted'), app: window.__meshtraceRender };
      });
      runs.push({ wall, painted: marks.painted, rendered: marks.rendered, fetchBuildRender: marks.app.ms });
      assert.equal(marks.app.spans, 10_000);
    }
    const fig = (k) => Math.round(median(runs.map((r) => r[k])));
    const report = { runs: runs.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, Math.round(v)]))), medianPaintedMs: fig('painted'), medianWallMs: fig('wall'), medianFetchBuildRenderMs: fig('fetchBuildRender') };
    console.log(`10k-span trace first render: ${JSON.stringify(report)}`);

    const inDom = await page.locator('[data-testid=timeline] [role=treeitem]').count();
    assert.ok(inDom > 10 && inDom < 150, `virtualised: ${inDom} rows in the DOM for 10,000 spans`);
    assert.match(await page.getByTestId('trace-stats').innerText(), /Spans\s*10000/);
    await page.screenshot({ path: path.join(screenshots, 'perf-10k-trace.png') });

    // Scrolling through the whole trace: time per frame while jumping 40 rows at a time.
    const perFrame = await page.evaluate(async () => {
      const sc = document.querySelector('[data-testid=timeline]');
      const frames = 100; const t0 = performance.now();
      for (let i = 0; i < frames; i++) { sc.scrollTop += 960; await new Promise((r) => requestAnimationFrame(() => r())); }
      return (performance.now() - t0) / frames;
    });
    console.log(`10k-span trace scroll: ${perFrame.toFixed(1)} ms per frame`);
    assert.ok(perFrame < 50, `scrolling costs ${perFrame} ms per frame`);

    // End jumps to the last span, which is then in the DOM.
    await page.getByTestId('timeline').focus();
    await page.keyboard.press('End');
    await eventually(async () => (await page.locator('[data-testid=timeline] [role=treeitem][data-index="9999"]').count()) === 1, 'the last row');
    assert.ok(report.medianPaintedMs < BUDGET_MS, `first render ${report.medianPaintedMs} ms > budget ${BUDGET_MS} ms`);
  });
});
