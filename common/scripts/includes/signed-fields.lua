-- Append a decision's signature (key id, signature) to its fields; nothing when unsigned ('').
-- @returns true when the decision is signed
local function addSignature(fields, kid, sig)
  if kid == nil or kid == '' or sig == nil or sig == '' then return false end
  fields[#fields + 1] = 'kid'
  fields[#fields + 1] = kid
  fields[#fields + 1] = 'sig'
  fields[#fields + 1] = sig
  return true
end
