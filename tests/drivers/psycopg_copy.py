#!/usr/bin/python3
"""Usage: /usr/bin/python3 tests/drivers/psycopg_copy.py postgresql://user:pass@host:port/db

psycopg 3 (Debian's python3-psycopg) COPY ... FROM STDIN in autocommit, the way an app bulk-loads:
COPIERS connections each run ROUNDS copies of about 2 MB written in 8 KB pieces. Every other copy
has a bad row early in the data, so the server rejects it while the client is still streaming;
the client must get the server's error (22P02) and its connection must stay usable. Meanwhile
TAKERS connections run short transactions without pause, so that whenever a copier's server is
freed by the error, another client takes it at once.

Prints one line, `psycopg-copy: N copies, E errors`, and exits 0 only when E is 0.
"""

import sys
import threading
import time

import psycopg

COPIERS = 10
TAKERS = 10
ROUNDS = 6
ROWS = 20000  # about 2 MB
BAD_ROW = 3
TIMEOUT_S = 120


class Counters:
    def __init__(self):
        self.lock = threading.Lock()
        self.copies = 0
        self.errors = 0
        self.first_errors = []

    def copied(self):
        with self.lock:
            self.copies += 1

    def fail(self, what):
        with self.lock:
            self.errors += 1
            if len(self.first_errors) < 5:
                self.first_errors.append(what)


def rows(bad):
    value = "v" * 90
    return "".join(
        f"{'oops' if bad and i == BAD_ROW else i}\t{value}\n" for i in range(ROWS)
    ).encode()


def copier(url, t, c, stop):
    good_data, bad_data = rows(False), rows(True)
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            for r in range(ROUNDS):
                bad = r % 2 == 0
                data = bad_data if bad else good_data
                table = f"copy_py_{t}"
                conn.execute(f"truncate {table}")
                try:
                    with conn.cursor() as cur:
                        with cur.copy(f"copy {table} (id, v) from stdin") as copy:
                            for i in range(0, len(data), 8192):
                                copy.write(data[i : i + 8192])
                    if bad:
                        c.fail(f"t{t} r{r}: the bad copy succeeded")
                except psycopg.errors.InvalidTextRepresentation:
                    if not bad:
                        c.fail(f"t{t} r{r}: the good copy failed")
                except Exception as e:  # noqa: BLE001 - anything else is a pgmux failure
                    c.fail(f"t{t} r{r}: {e!r}")
                    return
                try:
                    count = conn.execute(f"select count(*) from {table}").fetchone()[0]
                    want = 0 if bad else ROWS
                    if count != want:
                        c.fail(f"t{t} r{r}: {count} rows, want {want}")
                    c.copied()
                except Exception as e:  # noqa: BLE001
                    c.fail(f"t{t} r{r} after the copy: {e!r}")
                    return
    except Exception as e:  # noqa: BLE001
        c.fail(f"t{t}: {e!r}")


def taker(url, t, c, stop):
    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            while not stop.is_set():
                conn.execute("select pg_sleep(0.002)")
                conn.commit()
    except Exception as e:  # noqa: BLE001
        c.fail(f"taker {t}: {e!r}")


def main():
    if len(sys.argv) != 2:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    url = sys.argv[1]
    c = Counters()
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            for t in range(COPIERS):
                conn.execute(f"create table if not exists copy_py_{t} (id int, v text)")
    except Exception as e:  # noqa: BLE001
        c.fail(f"setup: {e!r}")

    if c.errors == 0:
        stop = threading.Event()
        takers = [
            threading.Thread(target=taker, args=(url, t, c, stop), daemon=True)
            for t in range(TAKERS)
        ]
        copiers = [
            threading.Thread(target=copier, args=(url, t, c, stop), daemon=True)
            for t in range(COPIERS)
        ]
        for th in takers + copiers:
            th.start()
        deadline = time.monotonic() + TIMEOUT_S
        for th in copiers:
            th.join(max(0.0, deadline - time.monotonic()))
        stop.set()
        for th in takers:
            th.join(max(0.0, deadline - time.monotonic()))
        if any(th.is_alive() for th in takers + copiers):
            c.fail(f"timed out after {TIMEOUT_S} s")

    print(f"psycopg-copy: {c.copies} copies, {c.errors} errors")
    for e in c.first_errors:
        print(f"  {e}")
    return 0 if c.errors == 0 and c.copies == COPIERS * ROUNDS else 1


if __name__ == "__main__":
    sys.exit(main())
