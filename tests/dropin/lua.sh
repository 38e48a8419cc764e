#!/usr/bin/env bash
# lua5.4 on a tables-and-strings script (tables growing and shrinking, string building, gsub,
# string.format, table.concat and sort, closures, coroutines, forced collections); the printed
# checksums under the system allocator and under ramalloc must be identical.
. "$(dirname "$0")/common.sh"
need lua5.4

cat > work.lua <<'LUA'
local function checksum(s)
  local h = 0
  for i = 1, #s, 7 do h = (h * 31 + s:byte(i)) % 4294967291 end
  return h
end

-- tables of tables, grown and emptied again
local total = 0
for round = 1, 4 do
  local t = {}
  for i = 1, 200000 do
    t[i] = { id = i, name = "item" .. i, tags = { i % 7, i % 11, tostring(i % 13) } }
  end
  for i = 1, #t, 3 do t[i] = nil end
  local n = 0
  for _, v in pairs(t) do n = n + v.id % 97 + #v.name + #v.tags end
  total = total + n
  collectgarbage("collect")
end
print("tables", total)

-- string building: concatenation, format, rep, gsub, table.concat
local parts = {}
for i = 1, 100000 do
  parts[#parts + 1] = string.format("%05d:%s:%x", i, string.rep("ab", i % 17), i * 2654435761 % 4294967296)
end
local big = table.concat(parts, ";")
local replaced, count = big:gsub("(%d+):(a?b?)", "%2<%1>")
print("strings", #big, count, checksum(replaced))

-- word counting in a hash table with string keys
local words = {}
for w in replaced:gmatch("[ab]+") do words[w] = (words[w] or 0) + 1 end
local keys = {}
for k in pairs(words) do keys[#keys + 1] = k end
table.sort(keys, function(a, b) return words[a] > words[b] or (words[a] == words[b] and a < b) end)
print("words", #keys, keys[1], words[keys[1]])

-- sorting records, closures and coroutines
local recs = {}
for i = 1, 150000 do recs[i] = { key = (i * 7919) % 150001, s = tostring(i):reverse() } end
table.sort(recs, function(a, b) return a.key < b.key end)
local acc = 0
for i = 1, #recs, 1000 do acc = acc + recs[i].key + #recs[i].s end
print("sort", acc)

local gens = {}
for i = 1, 2000 do
  gens[i] = coroutine.wrap(function()
    local s = ""
    for j = 1, 50 do s = s .. string.char(65 + (i + j) % 26); coroutine.yield(#s) end
    return -1
  end)
end
local csum = 0
for _ = 1, 50 do for i = 1, #gens do csum = csum + gens[i]() end end
print("coroutines", csum)
collectgarbage("collect")
LUA

timed "lua5.4 (system allocator)" lua5.4 work.lua > glibc.out 2> glibc.err ||
  fail "lua5.4 failed under the system allocator: $(cat glibc.err)"
timed "lua5.4 (ramalloc)" "${RAMALLOC[@]}" lua5.4 work.lua > ramalloc.out 2> ramalloc.err ||
  fail "lua5.4 failed under ramalloc: $(cat ramalloc.err)"
assert_ramalloc_active lua5.4 -e 'print(1)'
diff -u glibc.out ramalloc.out || fail "outputs differ"
cat ramalloc.out
show_figures
echo "lua5.4: identical output"
