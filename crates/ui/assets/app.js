// Entry point and router: picks the page from the URL (the Jaeger UI's paths), turns same-origin
// link clicks into history entries, re-renders on back/forward, and runs the trace-id box.
import { normTraceId } from './format.js';
import * as search from './search.js';
import * as trace from './trace.js';

const routes = [
  { re: /^\/(search)?$/, nav: 'search', load: async () => search },
  { re: /^\/trace\/([^/]+)$/, nav: 'search', load: async () => trace },
  { re: /^\/dependencies$/, nav: 'dependencies', load: () => import('./graph.js') },
  { re: /^\/compare$/, nav: 'compare', load: () => import('./compare.js') },
];

const main = document.getElementById('main');
let dispose = null;
let renderSeq = 0;

/** Goes to `url` (a path with query) as a new history entry, or replacing the current one. */
export function navigate(url, { replace = false } = {}) {
  const target = new URL(url, location.href);
  if (target.href === location.href && !replace) return render(false);
  history[replace ? 'replaceState' : 'pushState'](null, '', target.pathname + target.search + target.hash);
  render(true);
}

async function render(moveFocus) {
  const seq = ++renderSeq;
  const url = new URL(location.href);
  const route = routes.find((r) => r.re.test(url.pathname));
  for (const a of document.querySelectorAll('.topbar nav a')) {
    if (route && a.dataset.nav === route.nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (dispose) { try { dispose(); } catch (e) { console.error(e); } dispose = null; }
  if (!route) {
    main.replaceChildren(notFound(url.pathname));
    document.title = 'Not found · meshtrace';
    return;
  }
  const page = await route.load();
  if (seq !== renderSeq) return;
  main.replaceChildren();
  dispose = page.mount(main, url, route.re.exec(url.pathname)) || null;
  if (moveFocus) {
    const h = main.querySelector('h1');
    if (h) { h.tabIndex = -1; h.focus({ preventScroll: true }); } else main.focus({ preventScroll: true });
  }
}

function notFound(path) {
  const box = document.createElement('div');
  box.className = 'notice error';
  box.setAttribute('role', 'alert');
  const h = document.createElement('h1');
  h.textContent = 'Page not found';
  const p = document.createElement('p');
  p.textContent = `Nothing is served at ${path}. `;
  const a = document.createElement('a');
  a.href = '/search';
  a.textContent = 'Search traces';
  p.append(a);
  box.append(h, p);
  return box;
}

document.addEventListener('click', (e) => {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.target.closest('a[href]');
  if (!a || a.target || a.hasAttribute('download')) return;
  const url = new URL(a.getAttribute('href'), location.href);
  if (url.origin !== location.origin || url.pathname.startsWith('/api/') || url.pathname.startsWith('/static/')) return;
  if (url.pathname === location.pathname && url.search === location.search && url.hash) return; // in-page anchor
  e.preventDefault();
  navigate(url.href);
});

window.addEventListener('popstate', () => render(false));

const jump = document.getElementById('jump');
jump.addEventListener('submit', (e) => {
  e.preventDefault();
  const input = jump.elements.id;
  const id = normTraceId(input.value);
  if (!id) {
    input.setCustomValidity('A trace id is 1 to 32 hexadecimal digits.');
    input.reportValidity();
    return;
  }
  input.setCustomValidity('');
  input.value = '';
  navigate(`/trace/${id}`);
});
jump.elements.id.addEventListener('input', (e) => e.target.setCustomValidity(''));

render(false);
