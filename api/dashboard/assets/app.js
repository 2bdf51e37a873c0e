// semcache dashboard: polls /ui/api/data and the charts under
// /ui/api/chart/ every few seconds. Plain JavaScript, no dependencies, no
// network beyond this server.
'use strict';

const REFRESH_MS = 5000;
const classNames = { exact: 'exact hit', semantic: 'semantic hit', miss: 'miss', bypass: 'bypass' };
let tokenNeeded = false;

function token() { return sessionStorage.getItem('semcache-admin-token') || ''; }

function authHeaders() {
  const t = token();
  return t ? { Authorization: 'Bearer ' + t } : {};
}

const int = (n) => Number(n).toLocaleString('en-US');

// format turns a stats field into the text shown; the browser test reads
// these back, so keep them simple.
function format(field, v) {
  switch (field) {
    case 'hit_rate': return (v * 100).toFixed(1) + '%';
    case 'cost_saved_usd': return '$' + Number(v).toFixed(4);
    case 'entries':
    case 'store_bytes': return v < 0 ? 'n/a' : int(v);
    default: return int(v);
  }
}

function cell(tr, text, cls) {
  const td = document.createElement('td');
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function render(d) {
  for (const el of document.querySelectorAll('[data-stat]')) {
    const f = el.dataset.stat;
    el.textContent = format(f, d.stats[f]);
  }
  const lat = document.querySelector('#latency tbody');
  lat.replaceChildren();
  for (const c of ['exact', 'semantic', 'miss', 'bypass']) {
    const l = d.recorder.latency[c];
    const tr = document.createElement('tr');
    tr.dataset.class = c;
    cell(tr, classNames[c]);
    cell(tr, int(l.count));
    cell(tr, l.count ? l.p50_ms.toFixed(2) : '–');
    cell(tr, l.count ? l.p99_ms.toFixed(2) : '–');
    lat.appendChild(tr);
  }
  document.getElementById('near-misses').textContent =
    `threshold ${d.threshold.toFixed(2)}; ${int(d.near_misses)} misses had a neighbour within ${d.near_window} below it`;
  document.getElementById('policy').textContent = d.stats.policy === 'adaptive'
    ? `estimated ${(d.stats.estimated_error_rate * 100).toFixed(3)}% against δ ${(d.stats.max_error_rate * 100).toFixed(3)}%`
    : 'static policy: no error estimate';
  document.getElementById('prompts-note').textContent = d.prompts
    ? '(prompts shown: --ui-prompts is on)'
    : '(prompts hidden; semcache serve --ui-prompts shows them)';
  for (const el of document.querySelectorAll('.prompt')) el.hidden = !d.prompts;
  const rec = document.querySelector('#recent tbody');
  rec.replaceChildren();
  for (const r of d.recorder.recent) {
    const tr = document.createElement('tr');
    tr.dataset.class = r.class;
    cell(tr, new Date(r.time_ms).toLocaleTimeString());
    cell(tr, classNames[r.class] + (r.explored ? ' (explored)' : ''), r.class === 'miss' || r.class === 'bypass' ? r.class : 'hit');
    const k = cell(tr, r.key ? r.key.slice(0, 12) : '', 'key');
    k.title = r.key || '';
    k.addEventListener('click', () => { document.querySelector('#by-key input[name=key]').value = r.key; });
    const sim = r.similarity ?? r.nearest;
    cell(tr, sim === undefined ? '' : sim.toFixed(4) + (r.nearest !== undefined ? ' (nearest)' : ''));
    cell(tr, r.refused || '');
    cell(tr, r.class === 'exact' || r.class === 'semantic' ? r.age_s.toFixed(0) : '');
    cell(tr, r.ms.toFixed(2));
    const p = cell(tr, r.prompt || '', 'prompt');
    p.title = r.prompt || '';
    p.hidden = !d.prompts;
    rec.appendChild(tr);
  }
  document.getElementById('admin').hidden = !d.admin;
  document.getElementById('token-box').hidden = !(d.admin || tokenNeeded);
}

async function loadCharts() {
  await Promise.all(['traffic', 'similarity', 'refusals', 'adaptive'].map(async (name) => {
    const r = await fetch(`/ui/api/chart/${name}.svg`, { headers: authHeaders(), cache: 'no-store' });
    if (!r.ok) throw new Error(`chart ${name}: HTTP ${r.status}`);
    // Our own server's SVG, drawn by gonum/plot from numbers only.
    document.getElementById('chart-' + name).innerHTML = await r.text();
  }));
}

async function refresh() {
  const status = document.getElementById('status');
  try {
    const r = await fetch('/ui/api/data', { headers: authHeaders(), cache: 'no-store' });
    if (r.status === 401) {
      tokenNeeded = true;
      document.getElementById('token-box').hidden = false;
      status.textContent = 'enter the admin token (--ui token)';
      return;
    }
    const body = await r.json();
    if (!r.ok) throw new Error(body.error ? body.error.message : `HTTP ${r.status}`);
    render(body);
    await loadCharts();
    status.textContent = 'updated ' + new Date(body.recorder.now_ms).toLocaleTimeString();
    document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
  } catch (e) {
    status.textContent = 'error: ' + e.message;
  }
}

async function admin(method, path, body) {
  const out = document.getElementById('admin-result');
  out.className = '';
  try {
    const r = await fetch(path, {
      method,
      headers: { ...authHeaders(), 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const j = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(j.error ? j.error.message : `HTTP ${r.status}`);
    out.textContent = `deleted ${j.deleted}`;
    refresh();
  } catch (e) {
    out.className = 'error';
    out.textContent = 'failed: ' + e.message;
  }
}

function onSubmit(id, fn) {
  document.getElementById(id).addEventListener('submit', (ev) => {
    ev.preventDefault();
    fn(new FormData(ev.target));
  });
}

document.addEventListener('DOMContentLoaded', () => {
  const t = document.getElementById('token');
  t.value = token();
  t.addEventListener('change', () => { sessionStorage.setItem('semcache-admin-token', t.value.trim()); refresh(); });
  onSubmit('by-key', (f) => admin('DELETE', '/api/v1/cache/entries/' + encodeURIComponent(f.get('key').trim())));
  onSubmit('by-tag', (f) => admin('POST', '/api/v1/cache/invalidate', { tag: f.get('tag').trim() }));
  onSubmit('by-namespace', (f) => {
    const body = { namespace: f.get('namespace').trim() };
    if (f.get('api_key')) body.api_key = f.get('api_key');
    admin('POST', '/api/v1/cache/invalidate', body);
  });
  refresh();
  setInterval(refresh, REFRESH_MS);
});
