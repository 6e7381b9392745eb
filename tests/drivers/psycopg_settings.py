#!/usr/bin/python3
"""Usage: /usr/bin/python3 tests/drivers/psycopg_settings.py postgresql://user:pass@host:port/db

psycopg 3 (Debian's python3-psycopg): settings that a transaction undoes must not follow the
client to its later transactions. PostgreSQL undoes a SET in a transaction that rolls back (a
block, a savepoint, or the implicit transaction of a multi-statement Query that fails), and
ignores SET LOCAL outside a transaction block. Each case runs on one connection while SHUFFLERS
other connections keep the servers busy, so the checking transactions land on servers other than
the one that ran the SET; each check runs CHECKS times.

Prints one line, `psycopg-settings: N checks, E errors`, and exits 0 only when E is 0.
"""

import sys
import threading

import psycopg

SHUFFLERS = 6
CHECKS = 6
DEFAULT_PATH = '"$user", public'


class Counters:
    def __init__(self):
        self.checks = 0
        self.errors = []


def expect(conn, c, case, search_path, timeout):
    for _ in range(CHECKS):
        got = conn.execute(
            "select current_setting('search_path'), current_setting('statement_timeout')"
        ).fetchone()
        if not conn.autocommit:
            conn.commit()
        c.checks += 1
        if got != (search_path, timeout):
            c.errors.append(f"{case}: got {got}, want {(search_path, timeout)}")
            return


def shuffler(url, stop, errors):
    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            while not stop.is_set():
                got = conn.execute(
                    "select current_setting('search_path'), current_setting('statement_timeout'),"
                    " pg_sleep(0.001)"
                ).fetchone()
                conn.commit()
                # Nobody else's settings ever show up here.
                if got[:2] != (DEFAULT_PATH, "0"):
                    errors.append(f"a shuffler saw {got[:2]}")
                    return
    except Exception as e:  # noqa: BLE001
        errors.append(f"shuffler: {e!r}")


def run_cases(url, c):
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as setup:
        for schema in ("s_a", "s_b", "s_c", "s_x"):
            setup.execute(f"create schema if not exists {schema}")

    # SET LOCAL outside a transaction block: a WARNING, and no effect.
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute("set local search_path = s_x; set local statement_timeout = '60ms'")
        expect(conn, c, "SET LOCAL outside a transaction (one Query)", DEFAULT_PATH, "0")
        conn.execute("set local search_path = s_x")
        conn.execute("set local statement_timeout = '60ms'")
        expect(conn, c, "SET LOCAL outside a transaction (two)", DEFAULT_PATH, "0")

    with psycopg.connect(url, connect_timeout=10) as conn:  # Transactions, as psycopg opens them.
        # SET LOCAL inside a transaction: gone at commit.
        conn.execute("set local statement_timeout = '60ms'")
        conn.commit()
        expect(conn, c, "SET LOCAL in a committed transaction", DEFAULT_PATH, "0")

        # SET in a transaction that rolls back.
        conn.execute("set search_path = s_x")
        conn.rollback()
        expect(conn, c, "SET then ROLLBACK", DEFAULT_PATH, "0")

        # SET in a transaction that commits: kept.
        conn.execute("set statement_timeout = '60ms'")
        conn.commit()
        expect(conn, c, "SET then COMMIT", DEFAULT_PATH, "60ms")

        # Savepoints: the one rolled back undoes its SET only.
        conn.execute("set search_path = s_a")
        conn.execute("savepoint one")
        conn.execute("set search_path = s_b")
        conn.execute("rollback to savepoint one")
        conn.commit()
        expect(conn, c, "SET, SAVEPOINT, SET, ROLLBACK TO", "s_a", "60ms")

        # RESET in a transaction that rolls back: the old value stays.
        conn.execute("reset statement_timeout")
        conn.execute("reset search_path")
        conn.rollback()
        expect(conn, c, "RESET then ROLLBACK", "s_a", "60ms")

        # RESET ALL in a savepoint that is rolled back.
        conn.execute("savepoint two")
        conn.execute("reset all")
        conn.execute("rollback to savepoint two")
        conn.commit()
        expect(conn, c, "RESET ALL in a rolled-back savepoint", "s_a", "60ms")

    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        # A Query of SET statements only, outside a transaction: kept.
        conn.execute("set search_path = s_c; set statement_timeout = '70ms'")
        expect(conn, c, "SET in autocommit", "s_c", "70ms")
        # The implicit transaction of a multi-statement Query fails: its SET is undone.
        try:
            conn.execute("set search_path = s_x; select 1/0")
            c.errors.append("select 1/0 succeeded")
        except psycopg.errors.DivisionByZero:
            pass
        expect(conn, c, "SET in a failed multi-statement Query", "s_c", "70ms")
        # An explicit block in one Query that rolls back.
        conn.execute("begin; set search_path = s_x; rollback")
        expect(conn, c, "BEGIN; SET; ROLLBACK in one Query", "s_c", "70ms")
        # And one that commits.
        conn.execute("begin; set search_path = s_b; commit")
        expect(conn, c, "BEGIN; SET; COMMIT in one Query", "s_b", "70ms")
        # The extended protocol (psycopg sends parameters that way).
        conn.execute("select set_config('application_name', %s, false)", ("psy",))
        conn.execute("set statement_timeout = 0")
        conn.execute("reset search_path")
        expect(conn, c, "RESET in autocommit", DEFAULT_PATH, "0")


def main():
    if len(sys.argv) != 2:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    url = sys.argv[1]
    c = Counters()
    stop = threading.Event()
    shuffler_errors = []
    threads = [
        threading.Thread(target=shuffler, args=(url, stop, shuffler_errors), daemon=True)
        for _ in range(SHUFFLERS)
    ]
    for th in threads:
        th.start()
    try:
        run_cases(url, c)
    except Exception as e:  # noqa: BLE001
        c.errors.append(f"{e!r}")
    stop.set()
    for th in threads:
        th.join(30)
    c.errors.extend(shuffler_errors)
    print(f"psycopg-settings: {c.checks} checks, {len(c.errors)} errors")
    for e in c.errors[:8]:
        print(f"  {e}")
    return 0 if not c.errors else 1


if __name__ == "__main__":
    sys.exit(main())
