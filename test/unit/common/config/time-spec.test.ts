import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseTimeSpec, formatDuration, PERMANENT } from '../../../../common/config/time-spec.js';

test('fail2ban time syntax', () => {
  assert.equal(parseTimeSpec('600'), 600);
  assert.equal(parseTimeSpec('10m'), 600);
  assert.equal(parseTimeSpec('1h'), 3600);
  assert.equal(parseTimeSpec('1d'), 86400);
  assert.equal(parseTimeSpec('1w'), 604800);
  assert.equal(parseTimeSpec('1h 30m'), 5400);
  assert.equal(parseTimeSpec('1d12h'), 129600);
  assert.equal(parseTimeSpec('2 hours'), 7200);
  assert.equal(parseTimeSpec('-1'), PERMANENT);
  assert.throws(() => parseTimeSpec('soon'), /not a time value/);
  assert.throws(() => parseTimeSpec('5 parsecs'), /unknown time unit 'parsecs'/);
  assert.equal(formatDuration(3600 + 61), '1h1m1s');
  assert.equal(formatDuration(-1), 'permanent');
});
