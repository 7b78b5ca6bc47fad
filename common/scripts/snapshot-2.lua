--[[
  The active bans and the decisions stream position that matches them, read atomically: an agent
  applies the bans, then reads decisions after that id, and so misses none and applies none twice
  that matters (a repeated ban only refreshes its timeout).
    Input:  KEYS[1] bans hash  KEYS[2] decisions stream
    Output: { last decision id or '0-0', flat field/value list of the bans hash }
]]
local rcall = redis.call
local last = rcall('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local id = '0-0'
if #last > 0 then id = last[1][1] end
return { id, rcall('HGETALL', KEYS[1]) }
