--[[
  Record a manual ban (or replace an existing ban's expiry) and publish it to every agent.
    Input:
      KEYS[1] bans hash  KEYS[2] ban expiry zset  KEYS[3] decisions stream  KEYS[4] stats hash
      ARGV[1] jail  ARGV[2] addr  ARGV[3] now ms  ARGV[4] until ms (-1 permanent)
      ARGV[5] reason  ARGV[6] origin  ARGV[7] decisions maxlen  ARGV[8] protocol version
      ARGV[9] window key prefix (the ban's window is cleared)  ARGV[10] history key prefix
      ARGV[11] history retention ms  ARGV[12] key id and ARGV[13] signature of the ban ('' unsigned)
    Output: { 1 new ban or 0 an existing ban was replaced, id of the decision }
]]
local rcall = redis.call
--- @include "includes/add-decision"
--- @include "includes/signed-fields"
--- @include "includes/record-ban"

-- A manual ban is signed before this script runs (or not at all): never parked.
local store = banStore(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[10], ARGV[11], ARGV[7], ARGV[8], '')
local RESULT = { replaced = 0, new = 1 }
local jail, addr = ARGV[1], ARGV[2]
rcall('HDEL', ARGV[9] .. jail, addr)
local existed, id = recordBan(store, jail, addr, tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], ARGV[6], 0, ARGV[12], ARGV[13])
return { existed == 1 and RESULT.replaced or RESULT.new, id }
