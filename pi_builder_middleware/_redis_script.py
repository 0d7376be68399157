"""The Lua script every RedisStateStore write goes through: keep the newest entry per provider, publish it.

It trusts nothing it finds stored. An entry that breaks the wire rules of
:meth:`~pi_builder_middleware.state.BreakerUpdate.check` (the same bounds, passed in as arguments) is
overwritten instead of compared with: otherwise a leftover entry stamped far in the future, or with a
NaN, would make every later transition of its provider "stale" for good. A key of another Redis type
where the hash belongs is replaced by the hash.
"""

from __future__ import annotations

from string import Template

from .enums import CircuitState
from .state import MAX_CLOCK_AHEAD_S, MAX_SHARED_S, MAX_TRIPS, SHARED_EVENT_KINDS

__all__ = ["REPAIRED_ENTRY", "REPLACED_KEY", "STALE", "WRITE_IF_NEWER", "WRITTEN", "script_args"]

#: Script results: not written (what is stored is newer), written, written over an invalid entry,
#: written after replacing a key of another type.
STALE, WRITTEN, REPAIRED_ENTRY, REPLACED_KEY = 0, 1, 2, 3


def _lua_set(values: list[str]) -> str:
    return "{" + ", ".join(f"['{v}'] = true" for v in sorted(values)) + "}"


# KEYS[1] hash; ARGV: field, payload, mode ('b' transition, 'c' cooldown), ttl ms, channel, writer's wall
# clock, seconds a stamp may be ahead of it, longest shared time, largest trip count.
WRITE_IF_NEWER = Template("""
local KINDS = $kinds
local STATES = $states
local now, ahead, longest, max_trips = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local function number_in(v, high)  -- false for NaN and for infinities
  return type(v) == 'number' and v >= 0 and v <= high and v ~= math.huge
end
local function whole_in(v, high)
  return number_in(v, high) and math.floor(v) == v
end
local function valid(e)
  if type(e) ~= 'table' or e['f'] ~= 1 or e['provider_id'] ~= ARGV[1] then return false end
  if type(e['origin']) ~= 'string' or e['origin'] == '' then return false end
  if not KINDS[e['kind']] or not STATES[e['state']] then return false end
  if (e['kind'] == 'rate_limited') ~= (ARGV[3] == 'c') then return false end
  return number_in(e['sent_at'], now + ahead) and number_in(e['open_for_s'], longest)
    and number_in(e['cooldown_for_s'], longest) and whole_in(e['trips'], max_trips) and whole_in(e['seq'], 2^53)
end

local result = $written
local key_type = redis.call('TYPE', KEYS[1])['ok']
if key_type ~= 'hash' and key_type ~= 'none' then
  redis.call('DEL', KEYS[1])
  result = $replaced_key
else
  local old = redis.call('HGET', KEYS[1], ARGV[1])
  if old then
    local json = cjson
    if cjson.new then  -- a private decoder: strict about NaN, Infinity and hex, as Python's json is
      json = cjson.new()
      json.decode_invalid_numbers(false)
    end
    local ok, cur = pcall(json.decode, old)
    if ok and valid(cur) then
      local new = cjson.decode(ARGV[2])
      if ARGV[3] == 'c' then
        if cur['sent_at'] + cur['cooldown_for_s'] >= new['sent_at'] + new['cooldown_for_s'] then return $stale end
      elseif cur['sent_at'] > new['sent_at']
          or (cur['sent_at'] == new['sent_at'] and cur['origin'] >= new['origin']) then
        return $stale
      end
    else
      result = $repaired
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
redis.call('PUBLISH', ARGV[5], ARGV[2])
return result
""").substitute(
    kinds=_lua_set([k.value for k in SHARED_EVENT_KINDS]),
    states=_lua_set([s.value for s in CircuitState]),
    stale=STALE,
    written=WRITTEN,
    repaired=REPAIRED_ENTRY,
    replaced_key=REPLACED_KEY,
)


def script_args(
    provider_id: str, payload: str, cooldown: bool, ttl_ms: int, channel: str, wall_now: float
) -> list[str | int | float]:
    """ARGV for :data:`WRITE_IF_NEWER`."""
    return [
        provider_id,
        payload,
        "c" if cooldown else "b",
        ttl_ms,
        channel,
        wall_now,
        MAX_CLOCK_AHEAD_S,
        MAX_SHARED_S,
        MAX_TRIPS,
    ]
