// Builds and starts `semcache serve` for the Node tests: a fresh binary in a
// temporary directory, a free loopback port, the built-in simulated upstream,
// memory only, and nothing from the caller's SEMCACHE_* environment.
import { spawn, spawnSync } from 'node:child_process';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const START_TIMEOUT_MS = 15_000;

// A running semcache: base is http://127.0.0.1:PORT, log() its output so far.
export class Semcache {
  constructor(child, tmpDir) {
    this.child = child;
    this.tmpDir = tmpDir;
    this.output = '';
    this.base = '';
  }

  log() { return this.output; }

  alive() { return this.child.exitCode === null && this.child.signalCode === null; }

  // stop sends SIGTERM, then SIGKILL after 5 s, and removes the binary.
  async stop() {
    if (this.alive()) {
      const exited = new Promise((resolve) => this.child.once('exit', resolve));
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.kill(), 5_000);
      await exited;
      clearTimeout(timer);
    }
    fs.rmSync(this.tmpDir, { recursive: true, force: true });
  }

  kill() { if (this.alive()) this.child.kill('SIGKILL'); }
}

// startSemcache builds ./cmd/semcache and starts `semcache serve` with args
// after the test defaults, env added to the caller's environment without
// its SEMCACHE_* variables. It resolves once the server logs its address.
export async function startSemcache(args = [], env = {}) {
  const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'semcache-nodetest-'));
  const bin = path.join(tmpDir, 'semcache');
  const build = spawnSync('go', ['build', '-o', bin, './cmd/semcache'], { cwd: repoRoot, encoding: 'utf8', timeout: 90_000 });
  if (build.error) throw build.error;
  assert.equal(build.status, 0, `go build ./cmd/semcache failed:\n${build.stdout}${build.stderr}`);
  const child = spawn(
    bin,
    ['serve', '--listen', '127.0.0.1:0', '--sim-latency', '0s', '--sim-per-token-latency', '0s', '--log-format', 'text',
      // Memory only: a test starts from an empty cache and leaves nothing
      // in the user's default data directory.
      '--data-dir', 'none', ...args],
    {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SEMCACHE_'))), ...env },
    },
  );
  const s = new Semcache(child, tmpDir);
  // Last resort: never leave the server behind, even if the test process
  // exits early.
  process.on('exit', () => { s.kill(); fs.rmSync(tmpDir, { recursive: true, force: true }); });
  s.base = await new Promise((resolve, reject) => {
    let settled = false;
    const done = (f, v) => { if (!settled) { settled = true; clearTimeout(timer); f(v); } };
    const timer = setTimeout(() => done(reject, new Error(`semcache did not log its listening address within ${START_TIMEOUT_MS} ms; log:\n${s.output}`)), START_TIMEOUT_MS);
    const onData = (chunk) => {
      s.output += chunk.toString();
      const m = s.output.match(/semcache listening.*?\baddr="?(http:\/\/127\.0\.0\.1:\d+)/);
      if (m) done(resolve, m[1]);
    };
    child.stderr.on('data', onData);
    child.stdout.on('data', onData);
    child.on('error', (err) => done(reject, err));
    child.on('exit', (code, signal) => done(reject, new Error(`semcache exited before listening (code ${code}, signal ${signal}); log:\n${s.output}`)));
  });
  return s;
}
