-- Extend a lease, only if the caller still holds it.
-- KEYS[1] lock key; ARGV[1] the holder's token; ARGV[2] new lease in ms
-- Returns 1 if extended, 0 if the lock is gone or held by another token.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
