#!/usr/bin/env bash
# sqlite3 on a generated workload of a million rows (inserts, an index, updates, deletes, joins,
# grouping, sorting, string functions) in an on-disk database with a large page cache; the query
# results under the system allocator and under ramalloc must be identical.
. "$(dirname "$0")/common.sh"
need sqlite3

cat > workload.sql <<'SQL'
PRAGMA journal_mode = OFF;
PRAGMA synchronous = OFF;
PRAGMA cache_size = -262144;
CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, name TEXT, payload BLOB);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000)
  INSERT INTO t SELECT x, (x * 7919) % 100003, printf('name-%08d-%s', x, hex(x * 31)), zeroblob(x % 97) FROM c;
CREATE INDEX t_k ON t(k);
CREATE INDEX t_name ON t(name);
SELECT count(*), sum(k), sum(length(name)), sum(length(payload)) FROM t;
UPDATE t SET name = upper(name) || '-' || k WHERE id % 3 = 0;
DELETE FROM t WHERE id % 10 = 7;
SELECT count(*), sum(length(name)), min(name), max(name) FROM t;
SELECT k % 100 AS g, count(*), sum(id), group_concat(substr(name, 6, 3), '') IS NOT NULL FROM t
  GROUP BY g ORDER BY g LIMIT 5;
CREATE TABLE u AS SELECT k, count(*) AS n, max(id) AS m FROM t GROUP BY k;
SELECT count(*), sum(n), sum(m) FROM u;
SELECT count(*), sum(t.id % 1000) FROM t JOIN u ON t.k = u.k AND t.id = u.m;
SELECT name FROM t ORDER BY name DESC LIMIT 3;
SELECT sum(length(replace(name, '-', '+'))), sum(instr(name, '9')) FROM t;
WITH w AS (SELECT id, k, row_number() OVER (PARTITION BY k % 1000 ORDER BY id) AS rn FROM t)
  SELECT count(*), sum(rn) FROM w WHERE rn <= 3;
SELECT group_concat(x, ',') FROM (SELECT DISTINCT k % 17 AS x FROM t ORDER BY x);
SQL

rm -f glibc.db ramalloc.db
timed "sqlite3 (system allocator)" sqlite3 glibc.db < workload.sql > glibc.out 2> glibc.err ||
  fail "sqlite3 failed under the system allocator: $(cat glibc.err)"
timed "sqlite3 (ramalloc)" "${RAMALLOC[@]}" sqlite3 ramalloc.db < workload.sql > ramalloc.out 2> ramalloc.err ||
  fail "sqlite3 failed under ramalloc: $(cat ramalloc.err)"
assert_ramalloc_active sqlite3 :memory: 'select 1'
diff -u glibc.out ramalloc.out || fail "results differ"
[ "$(wc -l < ramalloc.out)" -ge 10 ] || fail "too little output"
head -n 3 ramalloc.out
rm -f glibc.db ramalloc.db
show_figures
echo "sqlite3: identical results"
