-- Write an active ban everywhere it is kept: the bans hash, the expiry index, the counters, the
-- address' ban history (pruned to the retention) and a ban decision for every agent.
-- Needs: addDecision, and the locals bansKey, expiryKey, decisionsKey, statsKey, historyPrefix,
-- retention (ms), maxlen, version.
local function recordBan(jail, addr, since, untilMs, reason, origin, failures)
  local banId = jail .. '|' .. addr
  local existed = rcall('HEXISTS', bansKey, banId)
  rcall('HSET', bansKey, banId, cjson.encode({
    jail = jail, addr = addr, since = since, ['until'] = untilMs, reason = reason, origin = origin, failures = failures
  }))
  if untilMs > 0 then rcall('ZADD', expiryKey, untilMs, banId) else rcall('ZREM', expiryKey, banId) end
  if existed == 0 then rcall('HINCRBY', statsKey, jail .. ':banned', 1) end
  local history = historyPrefix .. addr
  -- Member: jail|since|until|origin|reason (reason last: it may itself contain '|').
  rcall('ZADD', history, since, jail .. '|' .. since .. '|' .. untilMs .. '|' .. origin .. '|' .. reason)
  rcall('ZREMRANGEBYSCORE', history, '-inf', since - retention)
  rcall('PEXPIRE', history, retention)
  local id = addDecision(decisionsKey, maxlen, version, {'op', 'ban', 'jail', jail, 'origin', origin, 'addr', addr,
    'since', tostring(since), 'until', tostring(untilMs), 'reason', reason})
  return existed, id
end

-- Number of earlier bans of addr still in its history: in one jail, or in all jails.
local function earlierBans(addr, jail, overall, now)
  local history = historyPrefix .. addr
  rcall('ZREMRANGEBYSCORE', history, '-inf', now - retention)
  if overall then return rcall('ZCARD', history) end
  local n = 0
  local prefix = jail .. '|'
  for _, entry in ipairs(rcall('ZRANGE', history, 0, -1)) do
    if string.sub(entry, 1, #prefix) == prefix then n = n + 1 end
  end
  return n
end
