import { test } from 'node:test';
import assert from 'node:assert/strict';
import { failureTime } from '../../../coordinator/aggregator.js';

test('a failure is placed on Redis time by its age on the host clock, whatever the host clock says', () => {
  const redisNow = Date.parse('2026-11-26T12:00:00Z');
  for (const skewMs of [-7 * 60_000, 0, 5 * 60_000]) {
    const hostNow = redisNow + skewMs;
    // Logged 3 s before the agent reported it; Redis received it at redisNow.
    assert.equal(failureTime(`${redisNow}-0`, hostNow - 3000, hostNow), redisNow - 3000, `skew ${skewMs}`);
  }
  // A log time after the report time (a host clock that jumped back) counts as "just now".
  assert.equal(failureTime(`${redisNow}-5`, redisNow + 10_000, redisNow), redisNow);
  // A backlog that waited in the stream keeps its arrival time: the coordinator's delay does not age it.
  assert.equal(failureTime('1000-0', 400, 900), 500);
});
