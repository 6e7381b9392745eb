// Usage: node tests/drivers/node_postgres.mjs postgresql://user:pass@host:port/db?sslmode=disable
//
// Runs node-postgres (npm `pg`) with named query configs, node-postgres's way to prepare: the
// first `{ name, text, values }` on a connection sends Parse with that name, later ones only
// Bind/Execute it (the driver remembers per connection which names it parsed and never retries).
// Each pooled connection is reused by many transactions, so a statement prepared in one
// transaction is executed in later ones.
//
// Prints one line, `node-postgres: N queries, E errors`, and exits 0 only when E is 0 and N is
// the expected count.
import pg from 'pg';

const kWorkers = 20;
const kIterations = 100;
const kQueriesPerIteration = 4;  // scalar, series, insert and select in a transaction
const kExpected = kWorkers * kIterations * kQueriesPerIteration;
const kTimeoutMs = 60_000;

const url = process.argv[2];
if (!url) {
  console.error('usage: node node_postgres.mjs postgresql://user:pass@host:port/db');
  process.exit(2);
}

let queries = 0;
let errors = 0;
const firstErrors = [];

function fail(what) {
  errors++;
  if (firstErrors.length < 5) firstErrors.push(what);
}

function check(condition, what) {
  if (!condition) fail(what);
}

const pool = new pg.Pool({ connectionString: url, max: 10 });
pool.on('error', (err) => fail(`idle client: ${err.message}`));

function report(suffix) {
  for (const e of firstErrors) console.error(`node-postgres: error: ${e}`);
  console.log(`node-postgres: ${queries} queries, ${errors} errors${suffix}`);
}

const watchdog = setTimeout(() => {
  report(` (timed out after ${kTimeoutMs} ms)`);
  process.exit(1);
}, kTimeoutMs);

async function worker(w) {
  for (let i = 0; i < kIterations; i++) {
    const id = w * kIterations + i;
    try {
      const scalar = await pool.query({
        name: 'pgmux_q1', text: 'select $1::int as v', values: [i],
      });
      queries++;
      check(scalar.rows.length === 1 && scalar.rows[0].v === i, `scalar w${w} i${i}`);

      const n = 1 + (id % 50);
      const series = await pool.query({
        name: 'pgmux_series', text: 'select g from generate_series(1, $1::int) g', values: [n],
      });
      queries++;
      check(series.rows.length === n && series.rows.every((r, k) => r.g === k + 1),
            `series w${w} i${i}: ${series.rows.length} rows, want ${n}`);

      const text = `w${w}-i${i}`;
      const client = await pool.connect();
      let broken;
      try {
        await client.query('begin');
        await client.query({
          name: 'pgmux_insert', text: 'insert into drivers_pg (id, v) values ($1, $2)',
          values: [id, text],
        });
        queries++;
        const got = await client.query({
          name: 'pgmux_select', text: 'select v from drivers_pg where id = $1', values: [id],
        });
        queries++;
        await client.query('commit');
        check(got.rows.length === 1 && got.rows[0].v === text, `tx w${w} i${i}`);
      } catch (err) {
        broken = err;
        await client.query('rollback').catch(() => {});
        throw err;
      } finally {
        client.release(broken);
      }
    } catch (err) {
      fail(`w${w} i${i}: ${err.code || ''} ${err.message}`);
    }
  }
}

let status = 1;
try {
  await pool.query('create table if not exists drivers_pg (id int, v text)');
  await pool.query('truncate drivers_pg');
  await Promise.all(Array.from({ length: kWorkers }, (_, w) => worker(w)));
  const { rows: [{ count }] } = await pool.query('select count(*)::int as count from drivers_pg');
  const rows = kWorkers * kIterations;
  check(count === rows, `table has ${count} rows, want ${rows}`);
  status = errors === 0 && queries === kExpected ? 0 : 1;
} catch (err) {
  fail(`setup: ${err.code || ''} ${err.message}`);
} finally {
  await pool.end().catch(() => {});
  clearTimeout(watchdog);
}

report(queries === kExpected ? '' : ` (expected ${kExpected})`);
process.exit(status);
