import { test } from 'node:test';
import { readFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import { parseFormula } from '../../../../common/policy/formula.js';
import { banTimeTable, DEFAULT_FORMULA, type BanTimePolicy } from '../../../../common/policy/ban-time.js';
import { MAX_BAN_MS } from '../../../../common/protocol/messages.js';

const base: BanTimePolicy = { bantime: 600, increment: true, factor: 1, formula: DEFAULT_FORMULA, multipliers: [], maxtime: 0, rndtime: 0, overalljails: false };

test("fail2ban's default formula doubles per earlier ban and saturates at 2^20", () => {
  const t = banTimeTable(base);
  assert.deepEqual(t.slice(0, 4), [600_000, 1_200_000, 2_400_000, 4_800_000]);
  assert.equal(t[20], 600_000 * 2 ** 20);
  assert.equal(t.length, 21);
});

test('maxtime caps, factor scales, multipliers replace the formula, no increment means the base', () => {
  assert.deepEqual(banTimeTable({ ...base, maxtime: 3600 }).slice(0, 5), [600_000, 1_200_000, 2_400_000, 3_600_000, 3_600_000]);
  assert.deepEqual(banTimeTable({ ...base, factor: 2 }).slice(0, 2), [1_200_000, 2_400_000]);
  const m = banTimeTable({ ...base, multipliers: [1, 5, 30] });
  assert.deepEqual(m.slice(0, 4), [600_000, 3_000_000, 18_000_000, 18_000_000]);
  assert.deepEqual(banTimeTable({ ...base, increment: false }), [600_000]);
  assert.deepEqual(banTimeTable({ ...base, bantime: -1 }), [-1]);
});

test("the exponential formula from fail2ban's jail.conf evaluates without eval", () => {
  const f = parseFormula('ban.Time * math.exp(float(ban.Count+1)*banFactor)/math.exp(1*banFactor)');
  assert.equal(Math.round(f({ time: 600, count: 0, factor: 1 })), 600);
  assert.equal(Math.round(f({ time: 600, count: 1, factor: 1 })), Math.round(600 * Math.E));
  const g = parseFormula('min(ban.Time * 2 ** ban.Count, 86400) if ban.Count > 0 and not ban.Count == 3 else ban.Time // 2');
  assert.equal(g({ time: 600, count: 0, factor: 1 }), 300);
  assert.equal(g({ time: 600, count: 2, factor: 1 }), 2400);
  assert.equal(g({ time: 600, count: 3, factor: 1 }), 300);
  assert.equal(g({ time: 600, count: 20, factor: 1 }), 86400);
});

test('code is refused, not run', () => {
  assert.throws(() => parseFormula('__import__("os").system("id")'), /unsupported text at position 12/);
  assert.throws(() => parseFormula('__import__(1)'), /'__import__' is not supported/);
  assert.throws(() => parseFormula('ban.Time; 1'), /unsupported text at position 9/);
  assert.throws(() => parseFormula('open(1)'), /'open' is not supported/);
  assert.throws(() => parseFormula('ban.Time *'), /unexpected end/);
  assert.throws(() => parseFormula('(ban.Time'), /expected '\)'/);
});

test('escalation and the base are cut to the longest ban every firewall accepts (100 years)', () => {
  // 1 day doubled 2^20 times is ~2.9 million years: far past nft's ~213,503-day limit.
  const t = banTimeTable({ ...base, bantime: 86_400 });
  assert.equal(Math.max(...t), MAX_BAN_MS);
  assert.deepEqual(banTimeTable({ ...base, bantime: 1000 * 365 * 86_400, increment: false }), [MAX_BAN_MS]);
  assert.equal(Math.max(...banTimeTable({ ...base, multipliers: [1, 1e9] })), MAX_BAN_MS);
  assert.deepEqual(banTimeTable({ ...base, bantime: -1 }), [-1], 'permanent stays permanent');
});

test('the Lua scripts cut bans at the same limit as the TypeScript side', () => {
  const lua = readFileSync('common/scripts/includes/record-ban.lua', 'utf8');
  assert.equal(Number(/^local MAX_BAN_MS = (\d+)$/m.exec(lua)?.[1]), MAX_BAN_MS);
});
