-- Longest ban in ms (100 years, MAX_BAN_MS in common/protocol/messages.ts): nft refuses timeouts
-- over ~213,503 days, so a longer ban, typed or reached by escalation, is cut to this.
local MAX_BAN_MS = 3153600000000

-- Needs the includes add-decision and signed-fields; every input is a parameter.

-- Where bans are kept: bans hash, expiry zset, decisions stream, stats hash (key names); the ban
-- history key prefix and its retention (ms); the decisions stream's maxlen and the protocol
-- version; the hash bans wait in for their signature ('' to publish them unsigned at once).
-- `parked` collects the ids of the bans parked by this call (see parkBans).
local function banStore(bans, expiry, decisions, stats, historyPrefix, retention, maxlen, version, pending)
  return { bans = bans, expiry = expiry, decisions = decisions, stats = stats, historyPrefix = historyPrefix,
    retention = tonumber(retention), maxlen = maxlen, version = version, pending = pending, parked = {} }
end

-- Note the bans this call parked as one field of the parking hash: `<now>:<call id>` -> their ids
-- joined by ','. One write per call, not one per ban (and one HDEL when they are published).
local function parkBans(store, now, callId)
  if store.pending == '' or #store.parked == 0 then return end
  rcall('HSET', store.pending, string.format('%d', now) .. ':' .. callId, table.concat(store.parked, ','))
end

-- Write an active ban everywhere it is kept (`store`, from banStore): the bans hash, the expiry
-- index, the counters, the address' ban history (pruned to the retention) and a ban decision for
-- every agent. A ban signed by the caller (kid, sig) is recorded and published with its
-- signature. An unsigned one is published as it is when store.pending is '' (signing off), else
-- parked (store.parked, written by parkBans) without a decision: this script cannot sign, so its
-- caller signs the parked bans and publishes them (publish-3.lua), and any coordinator publishes
-- those a crashed one left parked.
-- Returns: existed (0/1), the decision's id ('' when parked).
local function recordBan(store, jail, addr, since, untilMs, reason, origin, failures, kid, sig)
  local banId = jail .. '|' .. addr
  if untilMs > since + MAX_BAN_MS then untilMs = since + MAX_BAN_MS end
  local existed = rcall('HEXISTS', store.bans, banId)
  local record = { jail = jail, addr = addr, since = since, ['until'] = untilMs, reason = reason, origin = origin, failures = failures }
  local signed = addSignature({}, kid, sig)
  if signed then
    record.kid = kid
    record.sig = sig
  end
  rcall('HSET', store.bans, banId, cjson.encode(record))
  if untilMs > 0 then rcall('ZADD', store.expiry, untilMs, banId) else rcall('ZREM', store.expiry, banId) end
  if existed == 0 then rcall('HINCRBY', store.stats, jail .. ':banned', 1) end
  local history = store.historyPrefix .. addr
  -- Member: jail|since|until|origin|reason (reason last: it may itself contain '|').
  rcall('ZADD', history, since, jail .. '|' .. since .. '|' .. untilMs .. '|' .. origin .. '|' .. reason)
  rcall('ZREMRANGEBYSCORE', history, '-inf', since - store.retention)
  rcall('PEXPIRE', history, store.retention)
  if not signed and store.pending ~= '' then
    store.parked[#store.parked + 1] = banId
    return existed, ''
  end
  local fields = {'op', 'ban', 'jail', jail, 'origin', origin, 'addr', addr,
    'since', string.format('%d', since), 'until', string.format('%d', untilMs), 'reason', reason}
  addSignature(fields, kid, sig)
  return existed, addDecision(store.decisions, store.maxlen, store.version, fields)
end

-- Number of earlier bans of addr still in its history: in one jail, or in all jails.
local function earlierBans(store, addr, jail, overall, now)
  local history = store.historyPrefix .. addr
  rcall('ZREMRANGEBYSCORE', history, '-inf', now - store.retention)
  if overall then return rcall('ZCARD', history) end
  local n = 0
  local prefix = jail .. '|'
  for _, entry in ipairs(rcall('ZRANGE', history, 0, -1)) do
    if string.sub(entry, 1, #prefix) == prefix then n = n + 1 end
  end
  return n
end
