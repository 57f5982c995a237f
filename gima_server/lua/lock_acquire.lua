-- Take a lock and hand out the next fencing token, in one step.
-- KEYS[1] lock key, KEYS[2] fencing counter key (same hash tag)
-- ARGV[1] random token of the new holder, ARGV[2] lease in ms
-- Returns the fencing token, or nil when the lock is held by someone else. Tokens only grow, and follow
-- the clock (microseconds) so that tokens handed out by a process's local fall-back during a Redis outage
-- order with these ones.
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  -- This acquisition delivered again (a client retrying a command whose answer it lost, as redis-py's cluster
  -- client does on a timeout): tokens are never reused, so the lock is the caller's, with the fence it was given.
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(redis.call('GET', KEYS[2]))
end
if holder or not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return nil
end
local time = redis.call('TIME')
local now_us = tonumber(time[1]) * 1000000 + tonumber(time[2])
local fence = math.max((tonumber(redis.call('GET', KEYS[2])) or 0) + 1, now_us)
redis.call('SET', KEYS[2], string.format('%d', fence), 'PX', 2592000000)
return fence
