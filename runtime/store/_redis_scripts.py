"""The Lua scripts behind :class:`corral.store.redis.RedisStore`: one per state transition.

Each transition touches several keys (the stream, the task's hash, the retry set, the
dead-letter stream, the idempotency key), so each runs as one script: Redis executes
it atomically and, with ``appendfsync always``, writes it to the AOF before replying.
Keys are derived from the stream name ``P`` (``ARGV[1]``)::

    P             stream of due tasks (entry fields: id), consumer group ARGV[2]
    P:t:<id>      hash: the task record (name, payload, attempts, state, entry, ...)
    P:live        zset id -> created_at: every unfinished task (listing, pending gauge)
    P:retry       zset id -> not_before: retries waiting for their time
    P:dead        stream: the dead-letter log (entry fields: id, name, error, at)
    P:done        zset id -> finished_at: done records kept for idempotency
    P:cancelled   zset id -> cancelled_at: cancelled records kept for inspection
    P:k:<key>     string: idempotency key -> task id (SET NX)

Put the stream name in braces (``{corral:emails}``) on Redis Cluster so every derived
key hashes to the same slot. Every script takes ``ARGV[3]`` = now (epoch seconds).
"""

from __future__ import annotations

import hashlib

__all__ = ["SCRIPTS", "sha1"]

_PRELUDE = """
local P = ARGV[1]
local G = ARGV[2]
local NOW = tonumber(ARGV[3])
local function tkey(id) return P .. ':t:' .. id end
local function push(id)
  local e = redis.call('XADD', P, '*', 'id', id)
  redis.call('HSET', tkey(id), 'state', 'pending', 'entry', e, 'consumer', '')
  return e
end
local function drop_entry(h)
  local e = redis.call('HGET', h, 'entry')
  if e and e ~= '' then
    redis.call('XACK', P, G, e)
    redis.call('XDEL', P, e)
  end
  redis.call('HSET', h, 'entry', '')
end
local function drop_key(id, h)
  local key = redis.call('HGET', h, 'idempotency_key')
  if key then
    local k = P .. ':k:' .. key
    if redis.call('GET', k) == id then redis.call('DEL', k) end
  end
end
local function to_dead(id, h, err, tb)
  drop_entry(h)
  redis.call('ZREM', P .. ':live', id)
  redis.call('ZREM', P .. ':retry', id)
  if err then redis.call('HSET', h, 'last_error', err) end
  if tb then redis.call('HSET', h, 'last_traceback', tb) end
  local de = redis.call('XADD', P .. ':dead', '*', 'id', id,
    'name', redis.call('HGET', h, 'name') or '',
    'error', redis.call('HGET', h, 'last_error') or '', 'at', ARGV[3])
  redis.call('HSET', h, 'state', 'dead', 'updated_at', ARGV[3], 'consumer', '',
    'dead_entry', de)
end
-- cancel by id: never claimed, retried or dead-lettered again; the key is free again;
-- the record stays for inspection for the stream's keep_cancelled seconds
local function to_cancelled(id, h, err)
  drop_entry(h)
  drop_key(id, h)
  redis.call('ZREM', P .. ':live', id)
  redis.call('ZREM', P .. ':retry', id)
  if err then redis.call('HSET', h, 'last_error', err) end
  redis.call('HSET', h, 'state', 'cancelled', 'updated_at', ARGV[3], 'consumer', '')
  local keep = tonumber(redis.call('HGET', P .. ':meta', 'keep_cancelled') or '86400')
  redis.call('EXPIRE', h, math.ceil(keep))
  redis.call('ZADD', P .. ':cancelled', NOW, id)
  redis.call('ZREMRANGEBYSCORE', P .. ':cancelled', '-inf', '(' .. (NOW - keep))
end
local function cancel_flagged(id, h, err)
  if redis.call('HEXISTS', h, 'cancel') == 1 then
    to_cancelled(id, h, err)
    return true
  end
  return false
end
"""

# ARGV[4] = number of tasks, then 8 fields per task:
# id, queue, name, payload, max_attempts, not_before, idempotency key ('' = none), created_at.
# Returns per task {id, 1} when stored (or already stored under this id: a retried
# submit), or {existing id, 0, HGETALL} when the idempotency key names a live record.
_ENQUEUE = """
local out = {}
local i = 5
for t = 1, tonumber(ARGV[4]) do
  local id, queue, name, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local maxa, nb, key, created = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
  i = i + 8
  local h = tkey(id)
  local existing = nil
  if redis.call('EXISTS', h) == 0 and key ~= '' then
    local k = P .. ':k:' .. key
    if not redis.call('SET', k, id, 'NX') then
      local other = redis.call('GET', k)
      if redis.call('EXISTS', tkey(other)) == 1 then
        existing = other
      else
        redis.call('SET', k, id)
      end
    end
  end
  if existing then
    out[t] = {existing, 0, redis.call('HGETALL', tkey(existing))}
  elseif redis.call('EXISTS', h) == 1 then
    out[t] = {id, 1}
  else
    redis.call('HSET', h, 'id', id, 'queue', queue, 'name', name, 'payload', payload,
      'attempts', 0, 'max_attempts', maxa, 'not_before', nb, 'created_at', created,
      'updated_at', created, 'state', 'pending', 'entry', '', 'consumer', '')
    if key ~= '' then redis.call('HSET', h, 'idempotency_key', key) end
    redis.call('ZADD', P .. ':live', created, id)
    redis.call('HSETNX', P .. ':meta', 'queue', queue)
    if tonumber(nb) > NOW then
      redis.call('ZADD', P .. ':retry', nb, id)
    else
      push(id)
    end
    out[t] = {id, 1}
  end
end
return out
"""

# ARGV[4] consumer, ARGV[5] limit, ARGV[6] idle ms for reclaiming (0: skip),
# ARGV[7] XAUTOCLAIM cursor, ARGV[8] message for reclaimed tasks.
# Returns {cursor, {HGETALL of each claimed task}, {ids dead-lettered}, undelivered
# entries left in the stream, earliest retry time or ''} (the last two feed next_due).
_CLAIM = """
local me = ARGV[4]
local limit = tonumber(ARGV[5])
local due = redis.call('ZRANGEBYSCORE', P .. ':retry', '-inf', NOW, 'LIMIT', 0, 1000)
for _, id in ipairs(due) do
  redis.call('ZREM', P .. ':retry', id)
  if redis.call('HGET', tkey(id), 'state') == 'pending' then push(id) end
end
local got, dead = {}, {}
local function take(id, e, reclaimed)
  local h = id and tkey(id)
  if not id or redis.call('HGET', h, 'entry') ~= e then
    redis.call('XACK', P, G, e)
    redis.call('XDEL', P, e)
    return
  end
  if reclaimed then
    local msg = ARGV[8] .. ' (' .. (redis.call('HGET', h, 'consumer') or '?') .. ')'
    if cancel_flagged(id, h, msg) then return end
    redis.call('HSET', h, 'last_error', msg)
    local att = tonumber(redis.call('HGET', h, 'attempts'))
    if att >= tonumber(redis.call('HGET', h, 'max_attempts')) then
      to_dead(id, h, msg, '')
      dead[#dead + 1] = id
      return
    end
  end
  redis.call('HINCRBY', h, 'attempts', 1)
  redis.call('HSET', h, 'state', 'running', 'consumer', me, 'updated_at', ARGV[3])
  got[#got + 1] = redis.call('HGETALL', h)
end
local cursor = ARGV[7]
if tonumber(ARGV[6]) > 0 then
  local r = redis.call('XAUTOCLAIM', P, G, me, ARGV[6], cursor, 'COUNT', limit)
  cursor = r[1]
  for _, ent in ipairs(r[2]) do
    if ent[2] then take(ent[2][2], ent[1], true) end
  end
end
if #got < limit then
  local r = redis.call('XREADGROUP', 'GROUP', G, me, 'COUNT', limit - #got, 'STREAMS', P, '>')
  if r then
    for _, ent in ipairs(r[1][2]) do take(ent[2][2], ent[1], false) end
  end
end
local backlog = redis.call('XLEN', P) - redis.call('XPENDING', P, G)[1]
local first = redis.call('ZRANGE', P .. ':retry', 0, 0, 'WITHSCORES')
return {cursor, got, dead, backlog, first[2] or ''}
"""

# ARGV[4] id, ARGV[5] result JSON, ARGV[6] has result (1/0), ARGV[7] keep_done seconds.
_COMPLETE = """
local id = ARGV[4]
local h = tkey(id)
if redis.call('HGET', h, 'state') ~= 'running' then return 0 end
drop_entry(h)
redis.call('ZREM', P .. ':live', id)
local keep = tonumber(ARGV[7])
local key = redis.call('HGET', h, 'idempotency_key')
if key and keep > 0 then
  redis.call('HSET', h, 'state', 'done', 'updated_at', ARGV[3], 'consumer', '')
  if ARGV[6] == '1' then redis.call('HSET', h, 'result', ARGV[5]) end
  redis.call('EXPIRE', h, math.ceil(keep))
  local k = P .. ':k:' .. key
  if redis.call('GET', k) == id then redis.call('EXPIRE', k, math.ceil(keep)) end
  redis.call('ZADD', P .. ':done', ARGV[3], id)
  redis.call('ZREMRANGEBYSCORE', P .. ':done', '-inf', '(' .. (NOW - keep))
else
  drop_key(id, h)
  redis.call('DEL', h)
end
return 1
"""

# ARGV[4] id, ARGV[5] not_before, ARGV[6] error, ARGV[7] traceback.
# Returns 1 (retry stored), 2 (cancelled instead: a cancel was requested) or 0.
_RETRY = """
local id = ARGV[4]
local h = tkey(id)
if redis.call('HGET', h, 'state') ~= 'running' then return 0 end
if cancel_flagged(id, h, ARGV[6]) then
  redis.call('HSET', h, 'last_traceback', ARGV[7])
  return 2
end
drop_entry(h)
redis.call('HSET', h, 'state', 'pending', 'not_before', ARGV[5], 'last_error', ARGV[6],
  'last_traceback', ARGV[7], 'updated_at', ARGV[3], 'consumer', '')
if tonumber(ARGV[5]) > NOW then
  redis.call('ZADD', P .. ':retry', ARGV[5], id)
else
  push(id)
end
return 1
"""

# ARGV[4] id, ARGV[5] error, ARGV[6] traceback.
_DEAD = """
local id = ARGV[4]
local h = tkey(id)
local state = redis.call('HGET', h, 'state')
if state ~= 'running' and state ~= 'pending' then return 0 end
if cancel_flagged(id, h, ARGV[5]) then
  redis.call('HSET', h, 'last_traceback', ARGV[6])
  return 2
end
to_dead(id, h, ARGV[5], ARGV[6])
return 1
"""

# ARGV[4] id. Returns the state the task was in ('' when there is none): a pending one
# is cancelled now, a running one gets the flag its worker's lease renewal reads.
_CANCEL = """
local id = ARGV[4]
local h = tkey(id)
local state = redis.call('HGET', h, 'state')
if not state then return '' end
if state == 'pending' then
  to_cancelled(id, h, ARGV[5])
elseif state == 'running' then
  redis.call('HSETNX', h, 'cancel', ARGV[3])
end
return state
"""

# ARGV[4] id, ARGV[5] error: the running attempt ended because of its cancel.
_RECORD_CANCELLED = """
local id = ARGV[4]
local h = tkey(id)
if redis.call('HGET', h, 'state') ~= 'running' then return 0 end
to_cancelled(id, h, ARGV[5])
return 1
"""

# ARGV[4] consumer whose unacknowledged entries go back to the stream (a previous
# incarnation of this process), ARGV[5] message. Returns {requeued ids, dead ids}.
_RELEASE = """
local requeued, dead = {}, {}
local pel = redis.call('XPENDING', P, G, '-', '+', 10000, ARGV[4])
for _, p in ipairs(pel) do
  local e = p[1]
  local ent = redis.call('XRANGE', P, e, e)
  local id = ent[1] and ent[1][2][2]
  local h = id and tkey(id)
  if not id or redis.call('HGET', h, 'entry') ~= e then
    redis.call('XACK', P, G, e)
    redis.call('XDEL', P, e)
  elseif not cancel_flagged(id, h, ARGV[5]) then
    redis.call('HSET', h, 'last_error', ARGV[5], 'updated_at', ARGV[3])
    local att = tonumber(redis.call('HGET', h, 'attempts'))
    if att >= tonumber(redis.call('HGET', h, 'max_attempts')) then
      to_dead(id, h, ARGV[5], '')
      dead[#dead + 1] = id
    else
      drop_entry(h)
      push(id)
      requeued[#requeued + 1] = id
    end
  end
end
return {requeued, dead}
"""

# ARGV[4] consumer, ARGV[5..] pairs (task id, entry id) it is working on: reset their
# idle time (the lease) if this consumer still owns them. Returns {how many were
# renewed, ids of those whose cancel was requested}: the renewer cancels those attempts.
_RENEW = """
local me = ARGV[4]
local n, flagged = 0, {}
for i = 5, #ARGV - 1, 2 do
  local id, e = ARGV[i], ARGV[i + 1]
  local p = redis.call('XPENDING', P, G, e, e, 1)
  if p[1] and p[1][2] == me then
    redis.call('XCLAIM', P, G, me, 0, e, 'JUSTID')
    n = n + 1
    if redis.call('HEXISTS', tkey(id), 'cancel') == 1 then flagged[#flagged + 1] = id end
  end
end
return {n, flagged}
"""

# ARGV[4] '1' = every dead task, else ARGV[4..] ids. Fresh attempt budget, due now.
_REQUEUE_DEAD = """
local ids = {}
if ARGV[4] == '*' then
  for _, ent in ipairs(redis.call('XRANGE', P .. ':dead', '-', '+')) do
    ids[#ids + 1] = ent[2][2]
  end
else
  for i = 4, #ARGV do ids[#ids + 1] = ARGV[i] end
end
local moved = {}
for _, id in ipairs(ids) do
  local h = tkey(id)
  if redis.call('HGET', h, 'state') == 'dead' then
    redis.call('XDEL', P .. ':dead', redis.call('HGET', h, 'dead_entry'))
    redis.call('HSET', h, 'attempts', 0, 'not_before', ARGV[3], 'updated_at', ARGV[3],
      'dead_entry', '')
    redis.call('ZADD', P .. ':live', redis.call('HGET', h, 'created_at'), id)
    push(id)
    moved[#moved + 1] = id
  end
end
return moved
"""

_PURGE_DEAD = """
local n = 0
for _, ent in ipairs(redis.call('XRANGE', P .. ':dead', '-', '+')) do
  local id = ent[2][2]
  local h = tkey(id)
  if redis.call('HGET', h, 'state') == 'dead' then
    drop_key(id, h)
    redis.call('DEL', h)
    n = n + 1
  end
end
redis.call('DEL', P .. ':dead')
return n
"""

# ARGV[4] older_than: forget done and cancelled records finished before it.
_PURGE_DONE = """
local n = 0
for _, kind in ipairs({'done', 'cancelled'}) do
  local old = redis.call('ZRANGEBYSCORE', P .. ':' .. kind, '-inf', '(' .. ARGV[4])
  for _, id in ipairs(old) do
    local h = tkey(id)
    if redis.call('HGET', h, 'state') == kind then
      drop_key(id, h)
      redis.call('DEL', h)
      n = n + 1
    end
  end
  redis.call('ZREMRANGEBYSCORE', P .. ':' .. kind, '-inf', '(' .. ARGV[4])
end
return n
"""

#: name -> full script text (prelude included).
SCRIPTS: dict[str, str] = {
    name: _PRELUDE + body
    for name, body in {
        "enqueue": _ENQUEUE,
        "claim": _CLAIM,
        "complete": _COMPLETE,
        "retry": _RETRY,
        "dead": _DEAD,
        "cancel": _CANCEL,
        "record_cancelled": _RECORD_CANCELLED,
        "release": _RELEASE,
        "renew": _RENEW,
        "requeue_dead": _REQUEUE_DEAD,
        "purge_dead": _PURGE_DEAD,
        "purge_done": _PURGE_DONE,
    }.items()
}


def sha1(text: str) -> str:
    """The SHA1 Redis uses for EVALSHA (computed locally: no round trip to learn it)."""
    return hashlib.sha1(text.encode()).hexdigest()
