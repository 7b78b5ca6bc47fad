-- Forget an active ban and the failures that led to it, so a later offence starts a fresh window.
local function removeBan(bansKey, expiryKey, windowPrefix, banId)
  local existed = rcall('HDEL', bansKey, banId)
  rcall('ZREM', expiryKey, banId)
  rcall('DEL', windowPrefix .. banId)
  return existed
end
