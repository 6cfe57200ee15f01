--[[ create: register an endpoint unless its client has as many as it may have.
  Checked and written in one step, so concurrent creates never take a client past `cap`.

  KEYS[1] endpoint      ep:<id>, the new endpoint's hash
  KEYS[2] endpoints     eps:<client>, the client's endpoint ids by creation time
  ARGV[1] cap           how many endpoints a client may have
  ARGV[2] id            the endpoint's id
  ARGV[3] client        its client
  ARGV[4] url           its url
  ARGV[5] events        its events, comma-separated
  ARGV[6] operations    its operations, comma-separated ('' for all)
  ARGV[7] description   its description
  ARGV[8] created       its creation time (ms)
  ARGV[9] secret        its signing secret

  Returns 1, or 0 (nothing written) when the client has `cap` endpoints already.
]]
local endpoint = KEYS[1]
local endpoints = KEYS[2]
local cap = tonumber(ARGV[1])
local id = ARGV[2]
local client = ARGV[3]
local url = ARGV[4]
local events = ARGV[5]
local operations = ARGV[6]
local description = ARGV[7]
local created = ARGV[8]
local secret = ARGV[9]

if redis.call('ZCARD', endpoints) >= cap then return 0 end
redis.call('HSET', endpoint, 'id', id, 'client', client, 'url', url, 'events', events,
  'operations', operations, 'description', description, 'created', created, 'disabled', '0',
  'disabled_reason', '', 'secret', secret)
redis.call('ZADD', endpoints, created, id)
return 1
