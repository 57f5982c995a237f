-- Extend a lease, only if the caller still holds it.
-- KEYS[1] lock key; ARGV[1] the holder's token; ARGV[2] new lease in ms
-- Returns 1 if extended, 0 if the lock is held by another token. A lock key that is gone (expired while Redis
-- was failing over, or lost with an unreplicated write to a master that died) is no one else's: it is taken
-- again for the same holder, so a backend outage never reads as a takeover.
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
