-- Take a webhook backend's callback batch for a reply, once per delivery id, in one step.
-- KEYS[1] the delivery's key, KEYS[2] the reply's inbox stream (same hash tag)
-- ARGV[1] a token new to this call, ARGV[2] the batch (JSON), ARGV[3] seconds both are kept
-- Returns 1 when the batch is in the inbox, 0 when this delivery id was taken before (the backend's retry).
local taken = redis.call('GET', KEYS[1])
if taken == ARGV[1] then
  -- This call delivered again (a client retrying a command whose answer it lost): it already ran whole.
  return 1
end
if taken then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('XADD', KEYS[2], '*', 'events', ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
