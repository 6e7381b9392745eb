#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_session (tests/fuzz/corpus/session/).

Each seed is the header (3 bytes, see tests/fuzz/fuzz_session.cpp) and then
records: an op byte, and for client data a big-endian u16 length and the bytes.
Run from the repository root: python3 tests/fuzz/make_session_seeds.py
"""
import os
import struct

OUT = "tests/fuzz/corpus/session"


def msg(kind, body=b""):
    return kind + struct.pack(">I", len(body) + 4) + body


def cstr(s):
    return s.encode() + b"\0"


def query(sql):
    return msg(b"Q", cstr(sql))


def parse(name, sql, types=()):
    return msg(b"P", cstr(name) + cstr(sql) + struct.pack(">h", len(types)) +
               b"".join(struct.pack(">I", t) for t in types))


def bind(portal, stmt, params=()):
    body = cstr(portal) + cstr(stmt) + struct.pack(">h", 0) + struct.pack(">h", len(params))
    for p in params:
        body += struct.pack(">i", len(p)) + p
    return msg(b"B", body + struct.pack(">h", 0))


def describe(kind, name):
    return msg(b"D", kind + cstr(name))


def execute(portal=""):
    return msg(b"E", cstr(portal) + struct.pack(">i", 0))


def close(kind, name):
    return msg(b"C", kind + cstr(name))


SYNC = msg(b"S")
FLUSH = msg(b"H")


def rec(data, op=0):
    return bytes([op]) + struct.pack(">H", len(data)) + data


def event(n):
    return bytes([2 | (n << 2)])


def header(flags=0b01000000, server=0b00101000, limits=0b00000110):
    return bytes([flags, server, limits])


SEEDS = {
    "simple": header() + rec(query("select 1")),
    "transaction": header() + rec(query("begin")) + rec(query("select 1")) + rec(query("commit")),
    "extended_named": header() + rec(parse("s1", "select $1::int", [23]) + bind("", "s1", [b"42"]) +
                                     describe(b"P", "") + execute() + SYNC),
    "extended_unnamed": header() + rec(parse("", "select 1") + bind("", "") + execute() + SYNC),
    "prepare_twice_two_clients": header() + rec(parse("a", "select 2") + SYNC) +
    rec(parse("b", "select 2") + bind("", "b") + execute() + SYNC, op=1),
    "deallocate": header() + rec(parse("x", "select 3") + SYNC) + rec(query("deallocate x")) +
    rec(bind("", "x") + execute() + SYNC),
    "close_statement": header() + rec(parse("y", "select 4") + SYNC) + rec(close(b"S", "y") + SYNC),
    "eviction": header() + b"".join(
        rec(parse(f"e{i}", f"select {i}") + bind("", f"e{i}") + execute() + SYNC) for i in range(6)),
    "set_reset": header(0b01000110) + rec(query("set search_path = public")) +
    rec(query("reset search_path")) + rec(query("set local statement_timeout = 5")),
    "pipeline": header() + rec(query("select 1"), op=3) + rec(query("select 2")) +
    rec(parse("", "select 1") + bind("", "") + execute() + FLUSH),
    "copy_in": header() + rec(query("copy t from stdin")) + rec(msg(b"d", b"1\n") + msg(b"c")),
    "copy_fail": header() + rec(query("copy t from stdin")) + rec(msg(b"d", b"1\n") +
                                                              msg(b"f", cstr("no"))),
    "copy_rejected_streaming": header() + rec(query("copy t from STDIN")) +
    rec(msg(b"d", b"BADROW\n") + msg(b"d", b"x" * 300) + msg(b"d", b"2\n") + msg(b"c") +
        query("select 1")) + rec(query("select 2"), op=1),
    "copy_rejected_extended": header() + rec(parse("", "copy t from STDIN") + bind("", "") +
                                             execute() + SYNC) +
    rec(msg(b"d", b"BADROW\n") + msg(b"d", b"3\n") + msg(b"c") + SYNC) +
    rec(query("select 3"), op=1),
    "copy_extended_sync_behind": header() + rec(parse("", "copy t from STDIN") + bind("", "") +
                                                execute() + SYNC) +
    rec(msg(b"d", b"1\n") + msg(b"c") + SYNC) + rec(query("select 4"), op=1),
    "set_in_rolled_back_block": header(0b01000110) + rec(query("begin")) +
    rec(query("set search_path = a")) + rec(query("savepoint s; reset all")) +
    rec(query("rollback")) + rec(query("select 5"), op=1),
    "pin_temp": header() + rec(query("create temp table t(x int)")) + rec(query("discard all")),
    "pin_refuse": header(0b01100000) + rec(query("listen c")),
    "raw_ssl_request": header(0b01000001) + rec(struct.pack(">II", 8, 80877103)),
    "raw_cancel": header(0b01000001) + rec(struct.pack(">III", 16, 80877102, 1) + b"\0\0\0\7"),
    "empty_query": header() + rec(msg(b"Q")),
    "server_goes": header() + rec(query("begin")) + event(3) + rec(query("select 1")),
    "idle_server_goes": header() + rec(query("select 1")) + event(7) + rec(query("select 2")),
    "notice_and_status": header() + rec(query("select 1")) + event(5) + event(6) +
    rec(query("select 2")),
    "client_resets": header() + rec(query("select 1"), op=3) + event(0),
    "cancel_event": header() + rec(query("select pg_sleep(1)"), op=3) + event(8),
    "relogin": header() + rec(parse("r", "select 5") + SYNC) + event(9) +
    rec(parse("r", "select 5") + bind("", "r") + execute() + SYNC),
    "two_clients_one_server": header(0b00000000) + rec(query("begin")) +
    rec(query("select 1"), op=1) + rec(query("commit")),
}

os.makedirs(OUT, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
print(f"wrote {len(SEEDS)} seeds to {OUT}")
