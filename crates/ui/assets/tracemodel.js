// The trace model the pages draw: from Jaeger's trace JSON to a span tree with parents,
// children, depth, error and proxy flags, the critical path, per-service counts and summaries.
// Pure functions, no DOM; iterative walks so deep traces cannot overflow the stack.

/** True for spans marked failed the way Jaeger does (error tag true) or OTel status ERROR. */
function isErrorSpan(tags) {
  for (const t of tags) {
    if (t.key === 'error' && (t.value === true || t.value === 'true')) return true;
    if (t.key === 'otel.status_code' && t.value === 'ERROR') return true;
  }
  return false;
}

function tagValue(tags, key) {
  const t = tags.find((x) => x.key === key);
  return t ? t.value : undefined;
}

/** Builds the tree of one Jaeger trace ({traceID, spans, processes}). */
export function buildTrace(raw) {
  const processes = raw.processes || {};
  const byId = new Map();
  const spans = raw.spans.map((s) => {
    const proc = processes[s.processID] || { serviceName: '(unknown)', tags: [] };
    const tags = s.tags || [];
    const span = {
      raw: s,
      spanID: s.spanID,
      traceID: s.traceID,
      service: proc.serviceName,
      process: proc,
      operation: s.operationName,
      start: s.startTime,
      duration: s.duration,
      end: s.startTime + s.duration,
      tags,
      logs: s.logs || [],
      references: s.references || [],
      kind: tagValue(tags, 'span.kind') || '',
      error: isErrorSpan(tags),
      proxy: tagValue(tags, 'component') === 'proxy',
      parent: null,
      children: [],
      depth: 0,
      critical: false,
      selfTime: 0,
      descendants: 0,
    };
    if (!byId.has(span.spanID)) byId.set(span.spanID, span);
    return span;
  });

  const roots = [];
  for (const span of spans) {
    const ref = span.references.find((r) => r.refType === 'CHILD_OF' && r.traceID === span.traceID)
      || span.references.find((r) => r.traceID === span.traceID);
    const parent = ref && byId.get(ref.spanID);
    if (parent && parent !== span) { span.parent = parent; parent.children.push(span); } else roots.push(span);
  }
  const byStart = (a, b) => a.start - b.start || a.end - b.end;
  roots.sort(byStart);
  for (const s of spans) if (s.children.length > 1) s.children.sort(byStart);

  // Pre-order flattening (the timeline's row order), depths, and cycle safety: a span reached
  // twice (a reference loop) is cut from its second parent.
  const order = [];
  const seen = new Set();
  const stack = roots.slice().reverse();
  for (const r of stack) r.depth = 0;
  let maxDepth = 0;
  while (stack.length) {
    const s = stack.pop();
    if (seen.has(s)) continue;
    seen.add(s);
    order.push(s);
    if (s.depth > maxDepth) maxDepth = s.depth;
    for (let i = s.children.length - 1; i >= 0; i--) {
      const c = s.children[i];
      if (seen.has(c)) { s.children.splice(i, 1); continue; }
      c.depth = s.depth + 1;
      stack.push(c);
    }
  }
  // Spans only reachable through a loop become roots.
  for (const s of spans) if (!seen.has(s)) { s.parent = null; s.children = []; roots.push(s); order.push(s); seen.add(s); }

  // Descendant counts (shown on collapsed rows), children before parents in reverse pre-order.
  for (let i = order.length - 1; i >= 0; i--) {
    const s = order[i];
    s.descendants = s.children.reduce((n, c) => n + 1 + c.descendants, 0);
  }

  let start = Infinity; let end = -Infinity;
  const services = new Map();
  let errors = 0;
  for (const s of spans) {
    if (s.start < start) start = s.start;
    if (s.end > end) end = s.end;
    services.set(s.service, (services.get(s.service) || 0) + 1);
    if (s.error) errors++;
    s.selfTime = selfTime(s);
  }
  if (!spans.length) { start = 0; end = 0; }
  const root = roots[0] || null;
  markCriticalPath(roots);
  return {
    traceID: raw.traceID,
    spans,
    order,
    roots,
    root,
    byId,
    start,
    end,
    duration: end - start,
    services,
    depth: spans.length ? maxDepth + 1 : 0,
    errors,
    warnings: raw.warnings || [],
  };
}

/** Time in a span not covered by any child. */
function selfTime(s) {
  if (!s.children.length) return s.duration;
  const iv = s.children.map((c) => [Math.max(c.start, s.start), Math.min(c.end, s.end)]).filter(([a, b]) => b > a).sort((a, b) => a[0] - b[0]);
  let covered = 0; let curS = -Infinity; let curE = -Infinity;
  for (const [a, b] of iv) {
    if (a > curE) { if (curE > curS) covered += curE - curS; curS = a; curE = b; } else if (b > curE) curE = b;
  }
  if (curE > curS) covered += curE - curS;
  return Math.max(0, s.duration - covered);
}

/**
 * Marks the spans on the critical path: from the first root's end, walk back through the child
 * that finished last before the current point, then continue before that child started.
 */
function markCriticalPath(roots) {
  const stack = roots.length ? [[roots[0], roots[0].end]] : [];
  while (stack.length) {
    const [span, cutoff] = stack.pop();
    span.critical = true;
    let t = Math.min(span.end, cutoff);
    let picked = false;
    const kids = span.children.slice().sort((a, b) => b.end - a.end);
    for (const c of kids) {
      // The first pick may run past the cut-off (it is clipped); later ones must end before
      // the previous pick started, else the parent was not waiting on them.
      if (c.start >= t || c.end <= span.start || (picked && c.end > t)) continue;
      picked = true;
      stack.push([c, Math.min(c.end, t)]);
      t = c.start;
      if (t <= span.start) break;
    }
  }
}

/** A one-line summary of a search result: root, spans, services touched, errors. */
export function summarize(raw) {
  const t = buildTrace(raw);
  const rootSpan = t.root;
  return {
    traceID: t.traceID,
    rootService: rootSpan ? rootSpan.service : '(no spans)',
    rootOperation: rootSpan ? rootSpan.operation : '',
    missingRoot: rootSpan ? rootSpan.parent === null && rootSpan.references.length > 0 : false,
    spanCount: t.spans.length,
    services: [...t.services.entries()].sort((a, b) => b[1] - a[1]),
    errors: t.errors,
    start: t.start,
    duration: t.duration,
  };
}

/** Spans matching a find text (id, service, operation, tag key or value), as a Set of spanIDs. */
export function findSpans(model, text) {
  const q = text.trim().toLowerCase();
  const out = new Set();
  if (!q) return out;
  for (const s of model.spans) {
    if (s.spanID === q || s.service.toLowerCase().includes(q) || s.operation.toLowerCase().includes(q)
      || s.tags.some((t) => t.key.toLowerCase().includes(q) || String(t.value).toLowerCase().includes(q))) out.add(s.spanID);
  }
  return out;
}
