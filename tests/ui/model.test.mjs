// Unit tests of the UI's pure modules, run in node without a browser: the trace model
// (tree, depth, critical path, orphans, reference loops, deep traces) and the text parsers.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fmtDuration, normTraceId, parseGoDuration, parseTagText, tagsToText } from '../../crates/ui/assets/format.js';
import { buildTrace, findSpans, summarize } from '../../crates/ui/assets/tracemodel.js';

const T = 'abc';
function trace(spans) {
  return {
    traceID: T,
    processes: { p1: { serviceName: 'a', tags: [] }, p2: { serviceName: 'b', tags: [] } },
    spans: spans.map(([id, parent, start, duration, extra = {}]) => ({
      traceID: T, spanID: id, operationName: `op-${id}`, startTime: start, duration, processID: extra.p || 'p1',
      references: parent ? [{ refType: 'CHILD_OF', traceID: T, spanID: parent }] : [], tags: extra.tags || [], logs: [],
    })),
  };
}

test('tree, depth, services, errors and proxy spans', () => {
  const m = buildTrace(trace([
    ['r', null, 0, 100],
    ['b', 'r', 50, 40, { p: 'p2', tags: [{ key: 'error', type: 'bool', value: true }] }],
    ['a', 'r', 10, 30, { tags: [{ key: 'component', type: 'string', value: 'proxy' }] }],
    ['c', 'a', 12, 5],
  ]));
  assert.deepEqual(m.order.map((s) => s.spanID), ['r', 'a', 'c', 'b'], 'pre-order, children by start time');
  assert.equal(m.depth, 3);
  assert.equal(m.errors, 1);
  assert.equal(m.duration, 100);
  assert.deepEqual([...m.services.entries()], [['a', 3], ['b', 1]]);
  assert.equal(m.byId.get('a').proxy, true);
  assert.equal(m.byId.get('r').descendants, 3);
  assert.equal(m.byId.get('r').selfTime, 100 - 30 - 40);
  const s = summarize(trace([['r', null, 0, 100], ['x', 'r', 1, 2, { p: 'p2' }]]));
  assert.equal(s.rootService, 'a');
  assert.equal(s.spanCount, 2);
});

test('critical path: the last-finishing child, then what ran before it', () => {
  const m = buildTrace(trace([
    ['r', null, 0, 100],
    ['early', 'r', 5, 20], // before 'late' starts: on the path
    ['overlap', 'r', 10, 30], // ends at 40 after 'early' ends (25): on the path instead of 'early'
    ['late', 'r', 45, 50],
    ['inner', 'late', 50, 10],
  ]));
  const crit = m.spans.filter((s) => s.critical).map((s) => s.spanID).sort();
  assert.deepEqual(crit, ['inner', 'late', 'overlap', 'r']);
});

test('orphans become roots and reference loops cannot hang the page', () => {
  const orphan = buildTrace(trace([['r', null, 0, 10], ['o', 'missing', 2, 3]]));
  assert.deepEqual(orphan.roots.map((s) => s.spanID), ['r', 'o']);
  const loop = buildTrace(trace([['x', 'y', 0, 10], ['y', 'x', 1, 5]]));
  assert.equal(loop.order.length, 2);
});

test('a 20,000-deep chain builds without overflowing the stack', () => {
  const spans = [['s0', null, 0, 40_000]];
  for (let i = 1; i < 20_000; i++) spans.push([`s${i}`, `s${i - 1}`, i, 40_000 - 2 * i]);
  const m = buildTrace(trace(spans));
  assert.equal(m.depth, 20_000);
  assert.equal(m.spans.filter((s) => s.critical).length, 20_000);
  assert.equal(m.byId.get('s0').descendants, 19_999);
});

test('find matches ids, names and tags', () => {
  const m = buildTrace(trace([['r', null, 0, 10, { tags: [{ key: 'http.url', type: 'string', value: '/cart' }] }], ['q', 'r', 1, 2]]));
  assert.deepEqual([...findSpans(m, 'CART')], ['r']);
  assert.deepEqual([...findSpans(m, 'q')], ['q']);
  assert.equal(findSpans(m, '  ').size, 0);
});

test('text parsers: Go durations, k=v tags, trace ids, duration format', () => {
  assert.equal(parseGoDuration('1.5s'), 1_500_000);
  assert.equal(parseGoDuration('1m30s'), 90_000_000);
  assert.equal(parseGoDuration('250ms'), 250_000);
  assert.ok(Number.isNaN(parseGoDuration('fast')));
  assert.ok(Number.isNaN(parseGoDuration('10')));
  assert.deepEqual(parseTagText('error=true http.url="/a b" k='), [['error', 'true'], ['http.url', '/a b'], ['k', '']]);
  assert.throws(() => parseTagText('error'), /"error" is not key=value/);
  assert.equal(tagsToText([['a', 'b c'], ['d', 'e']]), 'a="b c" d=e');
  assert.equal(normTraceId(' ABCdef '), 'abcdef');
  assert.equal(normTraceId('xyz'), null);
  assert.equal(fmtDuration(1234), '1.23ms');
  assert.equal(fmtDuration(850), '850µs');
  assert.equal(fmtDuration(2_500_000), '2.50s');
});
