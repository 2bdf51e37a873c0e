// Browser test of the operator's dashboard (GET /ui), run by `node --test`:
// it starts `semcache serve` (simulated upstream, an admin token), drives
// traffic with every outcome, opens /ui in headless Chromium through
// playwright-core, and checks that the figures shown are those of
// GET /api/v1/cache/stats, that every chart is a non-empty SVG, that the page
// asks for nothing outside the server, and that invalidation from the page
// works. It saves a screenshot to $SEMCACHE_UI_SCREENSHOT, default
// sdktest/artifacts/dashboard.png.
//
// Chromium: $SEMCACHE_TEST_CHROMIUM, default /usr/bin/chromium (Debian's
// chromium package, which .ci/run installs). Without it the test is skipped
// with a line saying so.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { repoRoot, startSemcache } from './semcache.mjs';

const CHROMIUM = process.env.SEMCACHE_TEST_CHROMIUM || '/usr/bin/chromium';
const SCREENSHOT = path.resolve(repoRoot, process.env.SEMCACHE_UI_SCREENSHOT || 'sdktest/artifacts/dashboard.png');
const ADMIN_TOKEN = 'ui-test-admin-token-0123456789';
const haveChromium = fs.existsSync(CHROMIUM);
if (!haveChromium) console.log(`# ${CHROMIUM} not found: the dashboard browser test is skipped (apt-get install chromium, or set SEMCACHE_TEST_CHROMIUM)`);

let server;
let browser;

async function chat(prompt, model = 'ui-test') {
  const r = await fetch(server.base + '/v1/chat/completions', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: 'Bearer sk-ui-test' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: prompt }] }),
  });
  const body = await r.text();
  assert.equal(r.status, 200, `chat ${prompt}: ${body}\n${server.log()}`);
  return {
    status: r.headers.get('x-semcache-status'),
    tier: r.headers.get('x-semcache-tier'),
    refused: r.headers.get('x-semcache-refused'),
    key: r.headers.get('x-semcache-key'),
  };
}

async function stats() {
  const r = await fetch(server.base + '/api/v1/cache/stats');
  assert.equal(r.status, 200);
  return r.json();
}

// The page's formatting of a stats field (app.js, format).
function shown(field, v) {
  const int = (n) => Number(n).toLocaleString('en-US');
  switch (field) {
    case 'hit_rate': return (v * 100).toFixed(1) + '%';
    case 'cost_saved_usd': return '$' + Number(v).toFixed(4);
    case 'entries':
    case 'store_bytes': return v < 0 ? 'n/a' : int(v);
    default: return int(v);
  }
}

describe('dashboard in a real browser', { skip: !haveChromium, timeout: 120_000 }, () => {
  before(async () => {
    server = await startSemcache(['--ui', 'loopback', '--ui-prompts'], { SEMCACHE_ADMIN_TOKEN: ADMIN_TOKEN });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  });

  after(async () => {
    if (browser) await browser.close();
    if (server) await server.stop();
  });

  test('figures match the stats, charts render, nothing leaves the host, invalidation works', async () => {
    // Traffic with every outcome the page shows.
    const outcomes = [];
    outcomes.push(await chat('How do I reset my password?')); // miss
    outcomes.push(await chat('How do I reset my password?')); // exact hit
    outcomes.push(await chat('Can I return an item after 30 days?')); // miss
    outcomes.push(await chat('Can I return items after 30 days?')); // semantic hit
    outcomes.push(await chat('Can I return an item after 60 days?')); // refused: number
    for (let i = 0; i < 5; i++) outcomes.push(await chat(`Where is order number ${1000 + i} now?`));
    const kinds = outcomes.map((o) => o.status + (o.tier ? ':' + o.tier : '') + (o.refused ? ':' + o.refused : ''));
    assert.ok(kinds.includes('HIT:exact'), `no exact hit in ${kinds}`);
    assert.ok(kinds.includes('HIT:semantic'), `no semantic hit in ${kinds}`);
    assert.ok(kinds.includes('MISS:number'), `no refusal in ${kinds}`);

    const page = await browser.newPage({ viewport: { width: 1400, height: 1800 } });
    const outside = [];
    // Only this server may be asked for anything: the page must work
    // without network access.
    await page.route('**/*', (route) => {
      const url = route.request().url();
      if (url.startsWith(server.base + '/')) return route.continue();
      outside.push(url);
      return route.abort();
    });
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });

    await page.goto(server.base + '/ui');
    await page.waitForFunction(() => Number(document.body.dataset.loaded || 0) >= 1, null, { timeout: 20_000 });

    const want = await stats();
    for (const field of ['requests', 'hit_rate', 'exact_hits', 'semantic_hits', 'misses', 'bypasses', 'upstream_calls',
      'hits', 'prompt_tokens_saved', 'completion_tokens_saved', 'cost_saved_usd', 'entries', 'store_bytes', 'upstream_errors', 'explorations', 'verified_wrong']) {
      const text = await page.textContent(`[data-stat="${field}"]`);
      assert.equal(text, shown(field, want[field]), `${field} shown as ${text}, stats say ${want[field]}`);
    }
    assert.equal(want.requests, outcomes.length);
    assert.ok(want.guard_refusals.number >= 1, 'no number refusal counted');

    // Every chart is an SVG with drawn marks and a size.
    for (const name of ['traffic', 'similarity', 'refusals', 'adaptive']) {
      const c = await page.$eval(`#chart-${name}`, (el) => {
        const svg = el.querySelector('svg');
        if (!svg) return null;
        const box = svg.getBoundingClientRect();
        return { marks: svg.querySelectorAll('path, rect, line, polyline').length, w: box.width, h: box.height };
      });
      assert.ok(c, `chart ${name}: no <svg>`);
      assert.ok(c.marks > 10 && c.w > 100 && c.h > 50, `chart ${name}: ${JSON.stringify(c)}`);
    }

    // The latest requests, newest first, with their prompts (--ui-prompts).
    const rows = await page.$$eval('#recent tbody tr', (trs) => trs.map((tr) => ({ cls: tr.dataset.class, text: tr.textContent })));
    assert.equal(rows.length, outcomes.length);
    assert.equal(rows[0].cls, 'miss');
    assert.ok(rows[0].text.includes('Where is order number 1004 now?'), rows[0].text);
    assert.ok(rows.some((r) => r.cls === 'semantic' && r.text.includes('Can I return items after 30 days?')));
    assert.ok(rows.some((r) => r.text.includes('number')), 'the refusal is not in the latest requests');
    const latency = await page.$$eval('#latency tbody tr', (trs) => trs.map((tr) => [tr.dataset.class, tr.children[1].textContent]));
    assert.deepEqual(latency, [['exact', '1'], ['semantic', '1'], ['miss', String(outcomes.length - 2)], ['bypass', '0']]);

    fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });

    // Invalidate the exact hit's entry from the page with the admin token.
    const key = outcomes[1].key;
    assert.ok(await page.isVisible('#admin'), 'admin section hidden although an admin token is set');
    await page.fill('#token', ADMIN_TOKEN);
    await page.dispatchEvent('#token', 'change');
    await page.fill('#by-key input[name=key]', key);
    await page.click('#by-key button');
    await page.waitForFunction(() => document.getElementById('admin-result').textContent !== '', null, { timeout: 10_000 });
    assert.equal(await page.textContent('#admin-result'), 'deleted 1');
    const again = await chat('How do I reset my password?');
    assert.equal(again.status, 'MISS', 'the entry deleted from the page still served');

    assert.deepEqual(outside, [], 'the page asked for something outside its server');
    assert.deepEqual(errors, [], 'the page logged errors');
    await page.close();
  });

  test('a request through a proxy header is refused (loopback only)', async () => {
    const r = await fetch(server.base + '/ui/api/data', { headers: { 'X-Forwarded-For': '203.0.113.9' } });
    assert.equal(r.status, 403);
    const body = await r.json();
    assert.equal(body.error.code, 'ui_loopback_only');
  });
});
