import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { COMMAND_CONCURRENCY, Whitelist } from '../../../../common/policy/whitelist.js';
import { RateLimitedWarner } from '../../../../common/log-limit.js';
import { componentLogger } from '../../../../common/log.js';
import { Writable } from 'node:stream';
import { pino } from 'pino';

/**
 * ignorecommand runs concurrently with a cap: a batch of new addresses no longer waits for one
 * command after another (50 addresses with a 0.2 s command stalled counting for 10.8 s), and a
 * flood of them never forks more than COMMAND_CONCURRENCY processes at once. Concurrency is read
 * from the commands' own start/end marks, not from timings.
 */
test('ignorecommand: a batch of new addresses runs commands at once, never more than the cap', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fleetban-ignorecmd-'));
  const marks = join(dir, 'marks');
  const log = componentLogger('test');
  log.level = 'silent';
  const wl = await Whitelist.load({
    jail: 'sshd', ignoreip: [], ignoreself: false,
    ignorecommand: `/bin/sh -c 'echo start >> ${marks}; sleep 0.2; echo end >> ${marks}; test "$1" = 198.51.100.7' sh <ip>`,
  }, undefined, log);
  const addrs = Array.from({ length: 50 }, (_, i) => `198.51.100.${i + 1}`);
  await wl.prefetch(addrs);
  let running = 0;
  let peak = 0;
  const lines = readFileSync(marks, 'utf8').trim().split('\n');
  assert.equal(lines.length, 100, 'one run per address');
  for (const l of lines) {
    running += l === 'start' ? 1 : -1;
    peak = Math.max(peak, running);
  }
  assert.ok(peak > 1, `commands ran at once (peak ${peak})`);
  assert.ok(peak <= COMMAND_CONCURRENCY, `never more than ${COMMAND_CONCURRENCY} at once (peak ${peak})`);
  // The checks that follow are answered from the cache.
  assert.equal(await wl.checkCommand('198.51.100.7'), 'ignorecommand');
  assert.equal(await wl.checkCommand('198.51.100.8'), undefined);
  assert.equal(readFileSync(marks, 'utf8').trim().split('\n').length, 100, 'no command ran again');
  rmSync(dir, { recursive: true, force: true });
});

test('warnings about malformed entries are rate-limited per kind, and the rest summed up', () => {
  const seen: Array<{ msg: string; fields: Record<string, unknown> }> = [];
  // A real pino logger whose lines are collected.
  const out = new Writable({ write(chunk: Buffer, _enc, done) {
    for (const line of chunk.toString().split('\n').filter(Boolean)) {
      const o = JSON.parse(line) as Record<string, unknown>;
      seen.push({ msg: String(o.msg), fields: o });
    }
    done();
  } });
  const w = new RateLimitedWarner(pino(out), 10, 50);
  for (let i = 0; i < 1000; i++) w.warn('malformed decision', { i }, 'malformed decision skipped');
  w.warn('guard', {}, 'ban refused');
  assert.equal(seen.filter((s) => s.msg === 'malformed decision skipped').length, 10);
  assert.equal(seen.filter((s) => s.msg === 'ban refused').length, 1, 'another kind has its own share');
  const until = Date.now() + 60;
  while (Date.now() < until) { /* the window passes */ }
  w.warn('malformed decision', { i: 1000 }, 'malformed decision skipped');
  const summary = seen.find((s) => /suppressed/.test(s.msg));
  assert.equal(summary?.fields.suppressed, 990);
});
