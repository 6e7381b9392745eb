#!/usr/bin/python3
"""Usage: /usr/bin/python3 tests/drivers/psycopg_test.py postgresql://user:pass@host:port/db

Runs psycopg 3 (Debian's python3-psycopg) with its default prepare_threshold=5: a query executed
more than five times on a connection is prepared as a named statement (_pg3_0, _pg3_1, ...) and
later executions only Bind/Execute that name. Each thread has its own connection with autocommit
off, so every statement is prepared in one transaction and reused in the following ones. Five
transactions are rolled back instead of committed: on ROLLBACK psycopg forgets its statements and
sends DEALLOCATE ALL, then prepares them again. `prepare=True` prepares on first use.

psycopg does not retry a failed prepared statement, so any "prepared statement does not exist"
surfaces as an error here.

Prints one line, `psycopg: N queries, E errors`, and exits 0 only when E is 0 and N is the
expected count.
"""

import sys
import threading

import psycopg

THREADS = 8
ITERATIONS = 60  # at least 50 executions of each query per connection
QUERIES_PER_ITERATION = 5  # scalar, series, prepare=True, insert, select
EXPECTED = THREADS * ITERATIONS * QUERIES_PER_ITERATION
ROLLBACK_AT = frozenset({4, 14, 24, 34, 44})  # then 15 commits: all 5 end prepared
TIMEOUT_S = 60


class Counters:
    def __init__(self):
        self.lock = threading.Lock()
        self.queries = 0
        self.errors = 0
        self.first_errors = []
        self.prepared_names = 0
        self.prepared_known = True

    def query(self):
        with self.lock:
            self.queries += 1

    def fail(self, what):
        with self.lock:
            self.errors += 1
            if len(self.first_errors) < 5:
                self.first_errors.append(what)

    def check(self, condition, what):
        if not condition:
            self.fail(what)


def worker(url, t, c):
    try:
        conn = psycopg.connect(url, connect_timeout=10)
    except Exception as e:  # noqa: BLE001 - any failure is a test error
        c.fail(f"t{t} connect: {e!r}")
        return
    try:
        for i in range(ITERATIONS):
            row_id = t * ITERATIONS + i
            try:
                v = conn.execute("select /* pgmux-py */ %s::int + 1", (i,)).fetchone()[0]
                c.query()
                c.check(v == i + 1, f"scalar t{t} i{i}: {v}")

                n = 1 + row_id % 50
                rows = conn.execute(
                    "select /* pgmux-py */ g from generate_series(1, %s::int) g", (n,)
                ).fetchall()
                c.query()
                c.check([r[0] for r in rows] == list(range(1, n + 1)), f"series t{t} i{i}")

                v = conn.execute("select /* pgmux-py */ %s::int", (i,), prepare=True).fetchone()[0]
                c.query()
                c.check(v == i, f"prepare=True t{t} i{i}: {v}")

                text = f"t{t}-i{i}"
                conn.execute(
                    "insert /* pgmux-py */ into drivers_py (id, v) values (%s, %s)", (row_id, text)
                )
                c.query()
                got = conn.execute(
                    "select /* pgmux-py */ v from drivers_py where id = %s", (row_id,)
                ).fetchall()
                c.query()
                c.check(got == [(text,)], f"tx t{t} i{i}: {got}")

                if i in ROLLBACK_AT:
                    conn.rollback()
                else:
                    conn.commit()
            except Exception as e:  # noqa: BLE001
                c.fail(f"t{t} i{i}: {e!r}")
                conn.rollback()
        # psycopg's own record of what it prepared on this connection (private, so optional).
        names = getattr(getattr(conn, "_prepared", None), "_names", None)
        with c.lock:
            if names is None:
                c.prepared_known = False
            else:
                c.prepared_names += len(names)
    finally:
        conn.close()


def main():
    if len(sys.argv) != 2:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    url = sys.argv[1]
    c = Counters()
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            conn.execute("create table if not exists drivers_py (id int, v text)")
            conn.execute("truncate drivers_py")
    except Exception as e:  # noqa: BLE001
        c.fail(f"setup: {e!r}")

    if c.errors == 0:
        threads = [
            threading.Thread(target=worker, args=(url, t, c), daemon=True) for t in range(THREADS)
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join(TIMEOUT_S)
        if any(th.is_alive() for th in threads):
            c.fail(f"timed out after {TIMEOUT_S} s")
        else:
            try:
                with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
                    count = conn.execute("select count(*) from drivers_py").fetchone()[0]
                committed = THREADS * (ITERATIONS - len(ROLLBACK_AT))
                c.check(count == committed, f"table has {count} rows, want {committed}")
            except Exception as e:  # noqa: BLE001
                c.fail(f"final count: {e!r}")
            # Proof that the driver really switched to named statements: each connection ends
            # with all its queries prepared.
            want = THREADS * QUERIES_PER_ITERATION
            c.check(
                not c.prepared_known or c.prepared_names == want,
                f"driver holds {c.prepared_names} prepared statements, want {want}",
            )

    for e in c.first_errors:
        print(f"psycopg: error: {e}", file=sys.stderr)
    note = "" if c.queries == EXPECTED else f" (expected {EXPECTED})"
    print(f"psycopg: {c.queries} queries, {c.errors} errors{note}", flush=True)
    return 0 if c.errors == 0 and c.queries == EXPECTED else 1


if __name__ == "__main__":
    sys.exit(main())
