// Usage: node tests/drivers/postgresjs.mjs postgresql://user:pass@host:port/db?sslmode=disable
//
// Runs postgres.js (npm `postgres`) with its default `prepare: true`: every parameterised query
// below is sent as Parse/Describe of a named statement on first use on a connection and as
// Bind/Execute of that name afterwards, so statements prepared in one transaction are reused in
// later ones, and queries from different workers are pipelined on the same connection.
//
// postgres.js silently re-prepares and retries a query when the server answers "prepared
// statement does not exist" (routine FetchPreparedStatement/RevalidateCachedQuery) outside a
// transaction. A retry would hide exactly the bug this test looks for, so every build of one of
// our queries is counted through the `debug` hook and a retry counts as an error.
//
// Prints one line, `postgresjs: N queries, E errors`, and exits 0 only when E is 0 and N is the
// expected count.
import postgres from 'postgres';

const kWorkers = 20;
const kIterations = 100;
const kQueriesPerIteration = 4;  // scalar, series, insert and select in a transaction
const kExpected = kWorkers * kIterations * kQueriesPerIteration;
const kTimeoutMs = 60_000;
const kMarker = '/* pgmux-js */';  // in the text of every counted query

const url = process.argv[2];
if (!url) {
  console.error('usage: node postgresjs.mjs postgresql://user:pass@host:port/db');
  process.exit(2);
}

let queries = 0;
let errors = 0;
let builds = 0;
const firstErrors = [];

function fail(what) {
  errors++;
  if (firstErrors.length < 5) firstErrors.push(what);
}

function check(condition, what) {
  if (!condition) fail(what);
}

const sql = postgres(url, {
  max: 10,
  onnotice: () => {},  // "relation already exists, skipping" would break the one-line output
  debug: (_connection, text) => {
    if (text.includes(kMarker)) builds++;
  },
});

function report(suffix) {
  for (const e of firstErrors) console.error(`postgresjs: error: ${e}`);
  console.log(`postgresjs: ${queries} queries, ${errors} errors${suffix}`);
}

const watchdog = setTimeout(() => {
  report(` (timed out after ${kTimeoutMs} ms)`);
  process.exit(1);
}, kTimeoutMs);

async function worker(w) {
  for (let i = 0; i < kIterations; i++) {
    const id = w * kIterations + i;
    try {
      const [row] = await sql`select /* pgmux-js */ ${i}::int + 1 as v`;
      queries++;
      check(row && row.v === i + 1, `scalar w${w} i${i}: ${JSON.stringify(row)}`);

      const n = 1 + (id % 50);
      const series = await sql`select /* pgmux-js */ g from generate_series(1, ${n}::int) g`;
      queries++;
      check(series.length === n && series.every((r, k) => r.g === k + 1),
            `series w${w} i${i}: ${series.length} rows, want ${n}`);

      const text = `w${w}-i${i}`;
      const got = await sql.begin(async (tx) => {
        await tx`insert /* pgmux-js */ into drivers_js (id, v) values (${id}, ${text})`;
        queries++;
        const rows = await tx`select /* pgmux-js */ v from drivers_js where id = ${id}`;
        queries++;
        return rows;
      });
      check(got.length === 1 && got[0].v === text, `tx w${w} i${i}: ${JSON.stringify(got)}`);
    } catch (err) {
      fail(`w${w} i${i}: ${err.code || ''} ${err.message}`);
    }
  }
}

let status = 1;
try {
  await sql`create table if not exists drivers_js (id int, v text)`;
  await sql`truncate drivers_js`;
  await Promise.all(Array.from({ length: kWorkers }, (_, w) => worker(w)));
  const [{ count }] = await sql`select count(*)::int as count from drivers_js`;
  const rows = kWorkers * kIterations;
  check(count === rows, `table has ${count} rows, want ${rows}`);
  check(builds === queries,
        `${builds} builds for ${queries} successful queries: the driver re-prepared and retried`);
  status = errors === 0 && queries === kExpected ? 0 : 1;
} catch (err) {
  fail(`setup: ${err.code || ''} ${err.message}`);
} finally {
  await sql.end({ timeout: 5 }).catch(() => {});
  clearTimeout(watchdog);
}

report(queries === kExpected ? '' : ` (expected ${kExpected})`);
process.exit(status);
