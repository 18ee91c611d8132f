#!/usr/bin/env python3
"""Writes the seed corpus of tests/fuzz/fuzz_map.c (input format: its header
comment): every configuration and every operation at least once.

    python3 tests/fuzz/gen_corpus.py [DIR]     (default: tests/fuzz/corpus)

Deterministic; the files are named after what they cover.
"""
import os
import sys

(SET, GET, REMOVE, GET_WITH, SET2, REMOVE2, BATCH, LEN, VALIDATE, DEFER,
 COLLECT, DRAIN, THREAD_EXIT, INVALID, BULK_SET, BULK_REMOVE, CHECK_ALL,
 NEXT_MAP, MISC, BAD_CONFIG, THREAD, INSERT, REPLACE, CAS, REMOVE_IF,
 COMPUTE, COMPUTE2, WALK, RETAIN, CURSOR, WBATCH, WBATCH2) = range(32)

# compute flags (fuzz_map.c, op_compute)
KEEP, CSET, CREMOVE, ABORT = range(4)
C_BADACT, C_READ, C_WRITE, C_TYPED, C_BADVAL, C_INTOCUR = (4, 8, 0x10, 0x20,
                                                          0x40, 0x80)
# walk flags (op_walk)
W_NESTED, W_BETWEEN, W_STOP, W_TYPED = 2, 4, 8, 0x10
# write batch flags (op_wbatch)
WB_SET, WB_REMOVE, WB_INSERT, WB_NORES = 0, 1, 2, 4
# retain flags (op_retain)
R_PARITY, R_NONE, R_ALL, R_SERIAL, R_CALLS, R_CLEAR = 0, 1, 2, 3, 4, 8

KSIZE = {0: 0, 4: 1, 8: 2, 16: 3}
VSIZE = {0: 0, 8: 1, 24: 2}
HASH = {"fixed": 0, "random": 1, "identity": 2, "city": 3, "collide": 4,
        "masked": 6}
EQ = {None: 0, "exact": 1, "masked": 2}
EVERY = {0: 0, 3: 5, 11: 6, 37: 7}


class Map:
    """One segment: the configuration bytes, then operations."""

    def __init__(self, ks=4, vs=8, hash="fixed", nopool=False, kdtor=False,
                 vdtor=False, dcalls=False, eq=None, hooks=False,
                 size0=False, typed=False, ids=16, collide=1, every=0,
                 seed=7, new_fail=None):
        self.ks, self.vs, self.hooks = ks, vs, hooks
        self.ids = ids
        c0 = KSIZE[ks] | VSIZE[vs] << 2 | HASH[hash] << 4 | nopool << 7
        c1 = (kdtor | vdtor << 1 | dcalls << 2 | EQ[eq] << 3 | hooks << 5
              | size0 << 6 | typed << 7)
        c2 = (ids.bit_length() - 2) | (collide - 1) << 3 | EVERY[every] << 5
        c3 = seed & 0x7f
        if new_fail is not None:
            c3 = 0x80 | (new_fail - 1) & 3
        self.b = bytearray([c0, c1, c2, c3])

    def op(self, kind, fail=0, k=1):
        self.b.append(kind | fail << 5)
        if fail == 4 and self.hooks:
            self.b.append(k - 1)
        return self

    def key(self, id, v=0):
        self.b.append((id % 64) << 2 | v)
        if self.ids > 64:
            self.b.append(id >> 6)
        return self

    def set(self, id, v=0, flags=0, vlen=8, fail=0):
        self.op(SET, fail).key(id, v).b += bytes([flags, vlen])
        return self

    def get(self, id, v=0, flags=0, fail=0):
        self.op(GET, fail).key(id, v).b.append(flags)
        return self

    def remove(self, id, v=0, flags=0, fail=0):
        self.op(REMOVE, fail).key(id, v).b.append(flags)
        return self

    def rmw(self, kind, id, v=0, flags=0, vlen=8, exp=0, elen=8, fail=0):
        """insert, replace, cas or remove_if; exp: the expected value's
        mode (0 the current one, 1 another of the same length, 2 a length
        off by one, 3 length elen)."""
        self.op(kind, fail).key(id, v).b += bytes([flags, vlen, exp, elen])
        return self

    def compute(self, id, v=0, flags=CSET, vlen=8, fail=0):
        self.op(COMPUTE, fail).key(id, v).b += bytes([flags, vlen])
        return self

    def walk(self, flags=0, max=4, stop=0, cursor=False, fail=0):
        """stop: bits 0-2 the first stop - 1, 3-4 the gap between
        stops (cursor), 5-7 nested operations every (n + 1) visits."""
        self.op(CURSOR if cursor else WALK, fail).b += bytes(
            [flags, max - 1, stop])
        return self

    def retain(self, flags=0, r=0, fail=0):
        self.op(RETAIN, fail).b += bytes([flags, r])
        return self

    def get_with(self, id, v=0, nested=None):
        self.op(GET_WITH).key(id, v).b.append(1 if nested else 0)
        if nested:
            nested(self)
        return self

    def batch(self, n, start=0, stride=1, flags=0):
        self.op(BATCH).b.append(flags)
        if self.ks and self.vs:
            self.b += bytes([n, stride])
            self.key(start)
        return self

    def wbatch(self, flags, n, start=0, v=0, stride=1, dup=0, fail=0,
               k=1):
        """cmap_set/remove/insert_batch of n keys from start (stride:
        bits 0-2 step - 1, 3-5 variant step, 6-7 variant of repeats);
        dup: bit i % 8 makes key i repeat an earlier one."""
        self.op(WBATCH, fail, k).b += bytes([flags, n])
        if self.ks and self.vs:
            self.b += bytes([stride, dup])
            self.key(start, v)
        return self

    def simple(self, kind, fail=0):
        return self.op(kind, fail)

    def validate(self, flags=2):
        self.op(VALIDATE).b.append(flags)
        return self

    def bulk(self, kind, start, n, flags=0, vlen=0, v=0, fail=0):
        self.op(kind, fail).b += bytes([(n - 1) % 64, flags, vlen])
        return self.key(start, v)

    def invalid(self, sub, id=1):
        self.op(INVALID).b.append(sub)
        self.key(id)
        self.b.append(3)  # oversize lengths: CMAP_MAX_VAR_LEN + 1 + 3
        s = sub % 24
        extra = {6: 0 if self.ks else 1, 8: 1 if self.ks else 0,
                 10: 1 if self.vs else 0, 11: 0 if self.vs else 1,
                 16: 2, 19: 1}.get(s, 0)
        self.b += bytes([1] * extra)
        return self

    def bad_config(self, sub):
        self.op(BAD_CONFIG).b.append(sub)
        if sub % 11 in (0, 1, 2, 3, 6):
            self.b.append(5)
        return self

    def misc(self, data=b"cmap fuzz"):
        self.op(MISC).b.append(len(data))
        self.b += data
        self.b.append(42)
        return self


def tour(m):
    """Every operation, with its flag variants, on a small key space."""
    for i in range(6):
        m.set(i, flags=0, vlen=3 + 9 * i)
    m.set(0, vlen=0, flags=0x10)           # empty value (NULL pointer)
    m.set(1, flags=1, vlen=20)             # replace, old, ample buffer
    m.set(2, flags=1 | 1 << 1, vlen=7)     # old, no capacity
    m.set(3, flags=1 | 2 << 1, vlen=250)   # old, one byte short
    m.set(4, flags=1 | 3 << 1 | 8, vlen=33)  # old, exact; old_len (fixed)
    m.set(5, v=1, vlen=12)                 # another variant
    m.get(1).get(1, flags=1).get(1, flags=3).get(2, flags=1 << 2)
    m.get(3, flags=2 << 2).get(3, flags=3 << 2).get(9)
    m.get_with(1).get_with(9)
    m.get_with(2, nested=lambda m: m.set(2, flags=1, vlen=5))
    m.get_with(3, nested=lambda m: m.remove(3, flags=1))
    m.batch(5, start=0, stride=1).batch(40, start=1, stride=9, flags=1)
    m.batch(0, flags=2)
    m.simple(LEN).validate(0).validate(1).validate(2)
    m.validate(2 | 1 << 2).validate(2 | 2 << 2).validate(3 << 2)
    m.simple(DEFER).simple(COLLECT).simple(DEFER)
    m.remove(1, flags=1).remove(2).remove(4, flags=1 | 1 << 1)
    m.remove(5, v=1, flags=1 | 3 << 1 | 8).remove(9)
    m.simple(DRAIN).simple(THREAD_EXIT).get(0).simple(COLLECT)
    m.simple(CHECK_ALL)
    return m


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "corpus")
    os.makedirs(out, exist_ok=True)
    seeds = {}

    # Every key size x value size, the whole tour.
    for ks in (0, 4, 8, 16):
        for vs in (0, 8, 24):
            seeds[f"tour-k{ks}-v{vs}"] = tour(Map(ks, vs, vdtor=True))
    # Every hasher: a bulk load that splits buckets, then removes that
    # contract the trie again.
    for h in HASH:
        for ks in ((4, 8) if h == "identity" else (0, 8)):
            m = Map(ks, 8, hash=h, ids=256, collide=3)
            m.bulk(BULK_SET, 0, 64).bulk(BULK_SET, 64, 64, vlen=9, v=2)
            m.validate().bulk(BULK_REMOVE, 0, 60).validate()
            m.simple(CHECK_ALL)
            seeds[f"hash-{h}-k{ks}"] = m
    # Full-hash collisions: one and two hash values, many keys.
    for c in (1, 2, 4):
        m = Map(0, 0, hash="collide", ids=128, collide=c, kdtor=True,
                vdtor=True)
        m.bulk(BULK_SET, 0, 64, vlen=5).bulk(BULK_SET, 64, 64, vlen=77)
        m.validate().get(70).bulk(BULK_REMOVE, 10, 50).validate()
        m.bulk(BULK_REMOVE, 60, 64).validate().simple(DRAIN)
        seeds[f"collide-{c}"] = m
    # Equality: exact custom, masked (variants are one key).
    for eq in ("exact", "masked"):
        for ks in (0, 8):
            m = Map(ks, 0, hash="collide" if ks else "fixed", eq=eq,
                    kdtor=True, vdtor=True, ids=32, collide=2)
            for v in range(4):
                m.set(3, v=v, vlen=10 + v).get(3, v=(v + 1) % 4)
            m.get_with(3, v=1).remove(3, v=2, flags=1).get(3)
            m.bulk(BULK_SET, 0, 32, v=3).validate().simple(CHECK_ALL)
            seeds[f"eq-{eq}-k{ks}"] = m
    # Destructors that call back into the map, inside collect and free.
    for ks, vs in ((4, 8), (0, 0), (16, 24)):
        m = Map(ks, vs, kdtor=True, vdtor=True, dcalls=True, ids=64)
        m.bulk(BULK_SET, 0, 40, vlen=6).bulk(BULK_SET, 0, 40, vlen=2)
        m.simple(COLLECT).simple(DEFER).simple(DRAIN)
        m.bulk(BULK_REMOVE, 0, 20).simple(COLLECT).simple(COLLECT)
        m.simple(COLLECT).simple(COLLECT).simple(DRAIN)
        seeds[f"dtor-calls-k{ks}-v{vs}"] = m
    # Allocator hooks: each injection mode, with and without the pools,
    # with cmap_new failing, and failing every Nth allocation.
    for nopool in (False, True):
        for ks, vs in ((4, 8), (0, 0)):
            m = Map(ks, vs, hooks=True, nopool=nopool, kdtor=True,
                    vdtor=True, ids=64, new_fail=2)
            for fail in (4, 5, 6, 7):
                m.bulk(BULK_SET, 0, 40, fail=fail, vlen=fail)
                m.bulk(BULK_REMOVE, 0, 40, fail=fail)
                m.set(1, fail=fail).get(1, fail=fail)
                m.op(GET_WITH, fail).key(1).b.append(0)
                m.op(DEFER, fail).op(VALIDATE, fail).b.append(0)
                m.op(THREAD_EXIT).op(GET, 6).key(1).b.append(0)
            m.validate().simple(DRAIN)
            seeds[f"oom-{'nopool' if nopool else 'pool'}-k{ks}-v{vs}"] = m
    for every in (3, 11, 37):
        m = Map(0, 8, hooks=True, nopool=True, every=every, ids=64,
                vdtor=True)
        m.bulk(BULK_SET, 0, 64).bulk(BULK_REMOVE, 0, 64).validate()
        seeds[f"oom-every-{every}"] = m
    # Operations in a second thread, which exits with its garbage (reaped by
    # the main thread's collects, or by cmap_free with destructors that
    # collect), also while the main thread is inside a get_with callback.
    for ks, vs in ((4, 8), (0, 0)):
        m = Map(ks, vs, kdtor=True, vdtor=True, dcalls=True, ids=64)
        m.bulk(BULK_SET, 0, 40, vlen=6)
        m.simple(THREAD).bulk(BULK_SET, 0, 40, vlen=9)
        m.simple(THREAD).bulk(BULK_REMOVE, 10, 20)
        m.get_with(1, nested=lambda m: m.simple(THREAD).remove(1, flags=1))
        m.validate().simple(COLLECT).simple(THREAD).simple(COLLECT)
        m.validate(0).simple(DRAIN).simple(THREAD).bulk(BULK_SET, 0, 9)
        seeds[f"thread-k{ks}-v{vs}"] = m
    # The typed wrappers (u32 -> u64).
    m = Map(4, 8, hash="random", typed=True)
    for i in range(8):
        m.set(i, flags=0x20)
    m.set(1, flags=0x21).get(2, flags=0x20).remove(3, flags=0x21)
    m.remove(4, flags=0x20).simple(LEN)
    seeds["typed"] = m
    # config.size 0 (the 0.2 layout), identity hashers, several maps.
    m = Map(8, 24, hash="identity", size0=True)
    m.set(1).set(2).simple(NEXT_MAP)
    m.b += Map(16, 0, hash="city", kdtor=True).b[:4]
    m.ks, m.vs = 16, 0
    m.set(1, vlen=90).get_with(1).simple(NEXT_MAP)
    m.b += Map(0, 24, hash="masked", eq="masked").b[:4]
    m.ks, m.vs = 0, 24
    m.set(0).set(1).set(2).get(1).simple(THREAD_EXIT).get(2)
    seeds["next-map"] = m
    # Bad arguments and bad configurations, every kind.
    for ks, vs in ((4, 8), (0, 0), (0, 8), (8, 0)):
        m = Map(ks, vs, hooks=True)
        m.set(1, vlen=4)
        for sub in range(24):
            m.invalid(sub)
        for sub in range(11):
            m.bad_config(sub)
        m.misc().misc(bytes(range(40)))
        seeds[f"invalid-k{ks}-v{vs}"] = m

    # Read-modify-write: every outcome of insert, replace, cas and
    # remove_if (with and without output buffers, too small ones), compute
    # with every action, a read and a refused write inside fn, bad answers.
    for ks, vs in ((4, 8), (0, 0), (0, 8), (16, 24), (8, 0)):
        m = Map(ks, vs, kdtor=True, vdtor=True, ids=32)
        for i in range(6):
            m.rmw(INSERT, i, vlen=5 + i)                  # inserted
        m.rmw(INSERT, 1, flags=1, vlen=3)                # exists, cur
        m.rmw(INSERT, 2, flags=1 | 1 << 1)               # cur, no room
        m.rmw(INSERT, 3, flags=1 | 3 << 1 | 8)           # cur, exact
        m.rmw(REPLACE, 9, vlen=4).rmw(REPLACE, 1, vlen=30)
        m.rmw(REPLACE, 2, flags=1, vlen=12)              # old to caller
        m.rmw(REPLACE, 3, flags=1 | 2 << 1)              # one byte short
        m.rmw(REPLACE, 0, flags=0x10, vlen=0)            # empty value
        for exp in range(4):
            m.rmw(CAS, 4, exp=exp, flags=1, vlen=6 + exp, elen=3)
            m.rmw(CAS, 5, exp=exp, flags=1 | 1 << 1, elen=9)
        m.rmw(CAS, 11, exp=0)                            # not found
        m.rmw(REMOVE_IF, 4, exp=1).rmw(REMOVE_IF, 4, exp=0)
        m.rmw(REMOVE_IF, 12, exp=0).rmw(REMOVE_IF, 0, exp=0, flags=0x10)
        for act in (KEEP, CSET, CREMOVE, ABORT):
            m.compute(20, flags=act, vlen=7)             # absent
            m.compute(1, flags=act | C_READ, vlen=9)     # present
        m.compute(21, flags=CSET | C_WRITE | C_READ)
        m.compute(1, flags=CSET | C_BADACT).compute(1, flags=C_BADVAL)
        m.compute(1, flags=CSET | C_BADVAL).compute(2, flags=CSET, vlen=0)
        m.compute(2, flags=CREMOVE | C_WRITE).compute(2, flags=CREMOVE)
        m.validate().simple(DRAIN).simple(CHECK_ALL)
        seeds[f"rmw-k{ks}-v{vs}"] = m
    # compute storing the current value by pointing into it (no value
    # destructor), masked keys (the stored key is kept on replace)
    for ks, vs in ((0, 0), (8, 24)):
        m = Map(ks, vs, hash="masked", eq="masked", kdtor=True, ids=16)
        m.set(3, v=1, vlen=10).compute(3, v=2, flags=CSET | C_INTOCUR)
        m.rmw(REPLACE, 3, v=3, vlen=5).rmw(CAS, 3, v=0, exp=0, vlen=6)
        m.compute(3, v=2, flags=CSET, vlen=8).get_with(3, v=1)
        m.rmw(INSERT, 3, v=1, flags=1).rmw(REMOVE_IF, 3, v=3, exp=0)
        m.validate().simple(DRAIN)
        seeds[f"rmw-masked-k{ks}-v{vs}"] = m
    # allocation failures in every read-modify-write call
    for ks, vs in ((4, 8), (0, 0)):
        m = Map(ks, vs, hooks=True, nopool=True, kdtor=True, vdtor=True,
                ids=32)
        m.bulk(BULK_SET, 0, 24, vlen=5)
        for fail in (4, 5, 6, 7):
            m.rmw(INSERT, 25, fail=fail).rmw(REPLACE, 1, fail=fail)
            m.rmw(CAS, 2, exp=0, fail=fail).rmw(REMOVE_IF, 3, fail=fail)
            m.compute(4, flags=CSET, fail=fail)
            m.compute(5, flags=CREMOVE, fail=fail)
            m.compute(26, flags=CSET | C_READ, fail=fail)
            m.walk(fail=fail).walk(cursor=True, max=3, fail=fail)
            m.retain(R_PARITY, r=fail, fail=fail)
            m.bulk(BULK_SET, 0, 24, vlen=6)
        m.op(RETAIN, 4, k=3).b += bytes([R_CLEAR, 0])
        m.validate().simple(DRAIN)
        seeds[f"rmw-oom-k{ks}-v{vs}"] = m
    # The typed wrappers' read-modify-write, update and foreach.
    m = Map(4, 8, hash="random", typed=True)
    for i in range(8):
        m.rmw(INSERT, i, flags=0x20 | (i & 1))
    m.rmw(REPLACE, 1, flags=0x21).rmw(CAS, 2, flags=0x21, exp=0)
    m.rmw(CAS, 3, flags=0x21, exp=1).rmw(REMOVE_IF, 4, flags=0x20, exp=0)
    for act in (KEEP, CSET, CREMOVE, ABORT):
        m.compute(5, flags=act | C_TYPED).compute(9, flags=act | C_TYPED)
    m.compute(6, flags=C_TYPED | C_BADACT | C_READ | C_WRITE)
    m.walk(W_TYPED).walk(W_TYPED | W_STOP, stop=2)
    seeds["typed-rmw"] = m
    # Walks: foreach and cursors over every layout, with stops, nested
    # operations in the visitor, operations between cursor slices; on
    # colliding hashes (runs of equal positions, stops inside them).
    for ks, vs, h, c in ((4, 8, "fixed", 1), (0, 0, "fixed", 1),
                         (0, 24, "collide", 2), (8, 8, "collide", 1),
                         (16, 0, "identity", 1)):
        m = Map(ks, vs, hash=h, collide=c, kdtor=True, vdtor=True,
                dcalls=True, ids=64)
        m.walk().walk(cursor=True, max=1)
        m.bulk(BULK_SET, 0, 50, vlen=7)
        m.walk().walk(cursor=True, max=5).walk(cursor=True, max=16)
        m.walk(W_STOP, stop=4).walk(W_STOP, stop=4 | 1 << 3, cursor=True)
        m.walk(W_STOP, stop=0 | 2 << 3, cursor=True, max=2)
        m.walk(W_NESTED, stop=2 << 5)
        m.set(60, vlen=9).remove(3).rmw(INSERT, 61)
        m.walk(W_NESTED, stop=0, cursor=True, max=3)
        m.set(62).remove(4).compute(5, flags=CREMOVE)
        m.walk(W_BETWEEN, cursor=True, max=7)
        m.set(63).remove(6).compute(7, flags=CSET).simple(THREAD).set(8)
        m.simple(COLLECT).validate().simple(DRAIN)
        seeds[f"walk-k{ks}-v{vs}-{h}"] = m
    # Retain with each predicate, reads and refused writes in it; clear;
    # retain and clear from inside a get_with callback and a walk.
    for ks, vs in ((4, 8), (0, 0), (8, 24)):
        m = Map(ks, vs, kdtor=True, vdtor=True, dcalls=True, ids=64)
        for mode in (R_PARITY, R_SERIAL, R_ALL, R_NONE):
            m.bulk(BULK_SET, 0, 48, vlen=3 + mode)
            m.retain(mode | R_CALLS, r=mode * 37)
        m.bulk(BULK_SET, 0, 30).retain(R_CLEAR).retain(R_CLEAR)
        m.bulk(BULK_SET, 0, 30)
        m.get_with(3, nested=lambda m: m.retain(R_PARITY, r=1))
        m.bulk(BULK_SET, 0, 30)
        m.walk(W_NESTED, stop=1 << 5).retain(R_CLEAR)
        m.simple(COLLECT).validate().simple(DRAIN)
        seeds[f"retain-k{ks}-v{vs}"] = m

    # Write batches (cmap_set_batch, cmap_remove_batch, cmap_insert_batch):
    # duplicates and variants within a batch, present and absent keys,
    # statuses or none, several groups; variable maps refused.
    for ks, vs, h, eq in ((4, 8, "identity", None), (8, 24, "fixed", None),
                          (16, 8, "masked", "masked"),
                          (8, 8, "masked", None), (0, 8, "fixed", None),
                          (4, 0, "fixed", None)):
        m = Map(ks, vs, hash=h, eq=eq, kdtor=True, vdtor=True, ids=128)
        m.wbatch(WB_INSERT, 40, start=0, dup=0x90)
        m.wbatch(WB_INSERT, 99, start=20, stride=2, dup=0x24)
        m.wbatch(WB_SET, 70, start=10, stride=1 | 1 << 3, dup=0x81)
        m.wbatch(WB_SET | WB_NORES, 50, start=5, dup=0x42)
        m.wbatch(WB_SET | WB_NORES, 30, start=90)
        m.wbatch(WB_REMOVE, 60, start=0, stride=3, dup=0x11)
        m.wbatch(WB_INSERT | WB_NORES, 80, start=3, dup=0x18)
        m.wbatch(WB_REMOVE | WB_NORES, 99, start=0, dup=0x66)
        m.wbatch(WB_SET, 0).wbatch(WB_INSERT, 1, start=7)
        m.validate().simple(COLLECT).simple(DRAIN).simple(CHECK_ALL)
        seeds[f"wbatch-k{ks}-v{vs}-{h}"] = m
    # Bulk loads into empty regions: subtrees deeper than a bucket, full-hash
    # collision buckets larger than BMAX, then loads into a live map.
    for c in (1, 2, 4):
        m = Map(8, 8, hash="collide", collide=c, ids=256, kdtor=True,
                vdtor=True)
        m.wbatch(WB_INSERT, 99, start=0, dup=0x80).validate()
        m.wbatch(WB_INSERT, 99, start=50, stride=1, dup=0x01).validate()
        m.wbatch(WB_REMOVE, 99, start=0).validate()
        m.wbatch(WB_SET, 99, start=100, dup=0x08).validate()
        m.simple(DRAIN)
        seeds[f"wbatch-collide-{c}"] = m
    # More than BMAX copies of one key (variants under the masked
    # equality): the bulk-built subtree must contract to one bucket.
    m = Map(8, 8, hash="masked", eq="masked", ids=16, kdtor=True)
    m.wbatch(WB_INSERT, 40, start=3, dup=0xff).validate()
    m.wbatch(WB_INSERT, 99, start=5, dup=0xfe).validate()
    seeds["wbatch-insert-dup-chain"] = m
    m = Map(4, 8, hash="identity", ids=256, vdtor=True)
    m.wbatch(WB_INSERT, 99, start=0, stride=6).validate()
    m.wbatch(WB_INSERT, 99, start=1, stride=6).validate()
    m.wbatch(WB_REMOVE, 99, start=0, stride=0).validate()
    seeds["wbatch-identity-load"] = m
    # Allocation failures in every batch call (each mode, with and without
    # the pools), every Nth allocation failing, a thread's first call (the
    # join) failing; destructors calling back into the map.
    for nopool in (False, True):
        m = Map(4, 8, hooks=True, nopool=nopool, kdtor=True, vdtor=True,
                ids=64)
        m.bulk(BULK_SET, 0, 30)
        for fail in (4, 5, 6, 7):
            for k in (1, 2, 3, 5):
                m.wbatch(WB_SET, 40, start=k, dup=0x21, fail=fail, k=k)
                m.wbatch(WB_REMOVE, 30, start=k, stride=1, fail=fail, k=k)
                m.wbatch(WB_INSERT, 50, start=k * 3, dup=0x12, fail=fail,
                         k=k)
                m.wbatch(WB_SET | WB_NORES, 20, start=k, fail=fail, k=k)
                m.wbatch(WB_REMOVE | WB_NORES, 15, start=k, fail=fail,
                         k=k)
        m.simple(THREAD_EXIT).wbatch(WB_INSERT, 9, fail=6)
        m.simple(THREAD_EXIT).wbatch(WB_SET, 9, fail=6)
        m.validate().simple(DRAIN)
        seeds[f"wbatch-oom-{'nopool' if nopool else 'pool'}"] = m
    for every in (3, 11):
        m = Map(8, 24, hash="collide", collide=2, hooks=True, nopool=True,
                every=every, ids=128, vdtor=True, kdtor=True)
        m.wbatch(WB_INSERT, 99, dup=0x40).wbatch(WB_SET, 80, start=30)
        m.wbatch(WB_REMOVE, 99, start=0).validate()
        seeds[f"wbatch-oom-every-{every}"] = m
    for ks, vs in ((4, 8), (0, 0)):
        m = Map(ks, vs, kdtor=True, vdtor=True, dcalls=True, ids=64)
        m.wbatch(WB_INSERT, 60).wbatch(WB_SET, 60, dup=0x55)
        m.simple(COLLECT).wbatch(WB_REMOVE, 60).simple(COLLECT)
        m.compute(3, flags=CSET | C_WRITE).retain(R_PARITY | R_CALLS)
        m.get_with(5, nested=lambda m: m.wbatch(WB_SET, 20))
        m.walk(W_NESTED, stop=0).wbatch(WB_REMOVE, 30)
        m.simple(THREAD).wbatch(WB_INSERT, 40).simple(DRAIN)
        seeds[f"wbatch-dtor-calls-k{ks}-v{vs}"] = m

    for name, m in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(bytes(m.b))
    print(f"{len(seeds)} seeds, {sum(len(m.b) for m in seeds.values())} "
          f"bytes in {out}")


if __name__ == "__main__":
    main()
