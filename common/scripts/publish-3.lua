--[[
  Publish bans the counting script parked for their signature (includes/record-ban): store each
  one's signed record and append its signed decision, unless the ban changed meanwhile (lifted,
  renewed: that change has its own decision), and take it off the parking hash either way.
    Input:
      KEYS[1] bans hash  KEYS[2] decisions stream  KEYS[3] parking hash (ban id -> since)
      ARGV[1] decisions maxlen  ARGV[2] protocol version
      then per ban: ban id, since, until, signed record (JSON), F, then F decision fields
    Output: per ban, the id of its decision, or '' when it was not published
]]
local rcall = redis.call
--- @include "includes/add-decision"

local out = {}
local i = 3
while i <= #ARGV do
  local banId, since, untilMs, record, f = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), ARGV[i + 3], tonumber(ARGV[i + 4])
  local fields = {}
  for k = 1, f do fields[k] = ARGV[i + 4 + k] end
  i = i + 5 + f
  local id = ''
  local current = rcall('HGET', KEYS[1], banId)
  if current then
    local ok, r = pcall(cjson.decode, current)
    if ok and type(r) == 'table' and r.since == since and r['until'] == untilMs then
      rcall('HSET', KEYS[1], banId, record)
      id = addDecision(KEYS[2], ARGV[1], ARGV[2], fields)
    end
  end
  rcall('HDEL', KEYS[3], banId)
  out[#out + 1] = id
end
return out
