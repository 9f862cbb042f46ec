"""Compiled (numba) inner loops of the exact Hamming search in :mod:`mmnerd.images.index`.

Imported lazily: numba's import and the first load of the cached machine code cost
~0.5 s, which ``mmnerd --help`` must not pay.  Every kernel is ``nogil``, so threads
(or Dask workers) run tasks in parallel, and writes its pairs into caller-owned
buffers: it returns how many it found, and a caller whose buffer was too small runs
the same task again with a bigger one (so a task never allocates).
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

LANES = 8  # uint64 values per padded row unit (one AVX-512 register)


@intrinsic
def _popcount(typingctx, x):  # type: ignore[no-untyped-def]
    """``popcount(x)`` for a uint64 (LLVM ``ctpop``: one instruction, vectorisable)."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.ctpop(args[0])

    return sig, codegen


@njit(nogil=True, cache=True, inline="always")
def _first_block(z, pshift, pmask, prad):  # type: ignore[no-untyped-def]
    """True unless an earlier block (``pshift/pmask/prad``) already catches XOR ``z``."""
    for q in range(len(pshift)):  # noqa: SIM110 (a loop numba compiles)
        if _popcount((z >> pshift[q]) & pmask[q]) <= prad[q]:
            return False
    return True


@intrinsic
def _row_mask(typingctx, arr, start, vx, tu):  # type: ignore[no-untyped-def]
    """Bit ``j`` set iff ``popcount(vx ^ arr[start + j]) <= tu``, for ``j < LANES``: one
    vector load, XOR, popcount and compare (AVX-512 ``vpopcntq`` where the CPU has it;
    LLVM lowers the same IR to narrower vectors elsewhere).  ``arr`` is a ``uint64``
    array with at least ``start + LANES`` values."""
    sig = types.uint64(arr, types.int64, types.uint64, types.uint64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        from llvmlite import ir
        from numba.core import cgutils

        data, first, x, t = args
        ary = context.make_array(signature.args[0])(context, builder, data)
        i64 = ir.IntType(64)
        vec = ir.VectorType(i64, LANES)
        ptr = builder.bitcast(builder.gep(ary.data, [first]), vec.as_pointer())
        row = builder.load(ptr, align=8)
        undef = ir.Constant(vec, ir.Undefined)
        lane0 = ir.Constant(ir.IntType(32), 0)
        zeros = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)
        sx = builder.shuffle_vector(builder.insert_element(undef, x, lane0), undef, zeros)
        st = builder.shuffle_vector(builder.insert_element(undef, t, lane0), undef, zeros)
        ctpop = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vec, [vec]), f"llvm.ctpop.v{LANES}i64"
        )
        hit = builder.icmp_unsigned("<=", builder.call(ctpop, [builder.xor(row, sx)]), st)
        return builder.zext(builder.bitcast(hit, ir.IntType(LANES)), i64)

    return sig, codegen


@intrinsic
def _lowest_bit(typingctx, x):  # type: ignore[no-untyped-def]
    """Index of the lowest set bit of a non-zero uint64 (LLVM ``cttz``)."""
    sig = types.int64(types.uint64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.cttz(args[0], ir_true(builder))

    return sig, codegen


def ir_true(builder):  # type: ignore[no-untyped-def]
    from llvmlite import ir

    return ir.Constant(ir.IntType(1), 1)


@njit(nogil=True, cache=True, inline="always")
def _keep(z, ai, bj, tu, pshift, pmask, prad, out_i, out_j, out_d, n):  # type: ignore[no-untyped-def]
    """Count the pair ``(ai, bj)`` whose XOR is ``z`` if it is within ``tu`` bits and no
    earlier block caught it, writing it at ``n`` while there is room; the new count."""
    d = _popcount(z)
    if d <= tu and _first_block(z, pshift, pmask, prad):
        if n < len(out_i):
            out_i[n] = ai
            out_j[n] = bj
            out_d[n] = d
        n += 1
    return n


@njit(nogil=True, cache=True, inline="always")
def _scan_row(  # type: ignore[no-untyped-def]
    rows, r0, r1, vx, tu, y0, y_end, y_skip, b_sv, b_order, ai,
    pshift, pmask, prad, out_i, out_j, out_d, n,
):  # fmt: skip
    """The items of side B within ``tu`` bits of ``vx`` in the padded row ``rows[r0:r1]``
    (item ``y0 + v - r0`` at ``v``; real below ``y_end``, those up to ``y_skip`` skipped:
    a self-join's pairs met from the other side), not caught by an earlier block, written
    as ``(ai, B id, distance)`` from ``n`` on (only below ``len(out_i)``); the new count."""
    for v in range(r0, r1, LANES):
        hits = _row_mask(rows, v, vx, tu)
        while hits:
            j = _lowest_bit(hits)
            hits &= hits - np.uint64(1)
            y = y0 + v - r0 + j
            if y >= y_end:
                break
            if y <= y_skip:
                continue
            n = _keep(vx ^ b_sv[y], ai, b_order[y], tu, pshift, pmask, prad,
                      out_i, out_j, out_d, n)  # fmt: skip
    return n


@njit(nogil=True, cache=True)
def fixed_join(  # type: ignore[no-untyped-def]
    a_sv, a_key, a_order, a_start,
    b_sv, b_order, b_start, b_rows, width,
    s, hmasks, lo_ptr, lo_masks, t0, t1, self_join, t,
    pshift, pmask, prad, out_i, out_j, out_d,
):  # fmt: skip
    """Pairs within ``t`` bits between side A's items in key tiles ``[t0, t1)`` and the
    first ``width`` items of each of side B's buckets.

    Keys are ``w``-bit block keys; a tile is the keys sharing their bits above the low
    ``s``.  Side A: ``a_sv`` values sorted by key, ``a_key`` their keys, ``a_order`` their
    ids, ``a_start`` ``(2**w + 1,)`` item offsets per key.  Side B (the same arrays for a
    self-join): ``b_rows`` ``(2**w * width,)`` holds each key's first ``width`` values,
    padded (:func:`pad_rows`), so the inner loop is a fixed-width, branch-free XOR +
    popcount; items past ``width`` are :func:`overflow_join`'s.  A key ``k`` meets the
    keys ``k ^ mu`` for ``mu = hmasks[h] << s | lo``, ``lo`` in ``lo_masks[lo_ptr[h] :
    lo_ptr[h + 1]]``: a tile pair ``(T, T ^ hmasks[h])`` stays in cache while all its low
    masks run.  Self-join: each unordered pair of non-overflow items once.  A pair an
    earlier block catches (``pshift, pmask, prad``) is skipped.  Returns the number of
    pairs; only the first ``len(out_i)`` are written.
    """
    n = 0
    tu = np.uint64(t)
    lomask = (1 << s) - 1
    n_keys = len(a_start) - 1
    for tile in range(t0, t1):
        x0 = a_start[tile << s]
        x1 = a_start[min((tile + 1) << s, n_keys)]
        if x0 == x1:
            continue
        for h in range(len(hmasks)):
            tile2 = tile ^ hmasks[h]
            if self_join and tile2 < tile:
                continue
            base2 = tile2 << s
            same_tile = tile2 == tile
            x = x0
            while x < x1:  # one key of the tile at a time: its items share every row
                kx = a_key[x]
                k_end = a_start[kx + 1]
                xa = x
                xb = min(k_end, x + width) if self_join else k_end  # overflow: not here
                x = k_end
                klo = kx & lomask
                for li in range(lo_ptr[h], lo_ptr[h + 1]):
                    k2 = base2 | (klo ^ lo_masks[li])
                    if self_join and same_tile and k2 < kx:
                        continue  # the pair of keys is met from k2's side
                    r0 = k2 * width
                    for xi in range(xa, xb):
                        vx = a_sv[xi]
                        acc = np.uint64(0)
                        for v in range(r0, r0 + width, LANES):
                            acc |= _row_mask(b_rows, v, vx, tu)
                        if acc == 0:
                            continue
                        skip = xi if self_join and k2 == kx else -1
                        n = _scan_row(b_rows, r0, r0 + width, vx, tu, b_start[k2],
                                      b_start[k2 + 1], skip, b_sv, b_order, a_order[xi],
                                      pshift, pmask, prad, out_i, out_j, out_d, n)  # fmt: skip
    return n


@njit(nogil=True, cache=True)
def overflow_join(  # type: ignore[no-untyped-def]
    ov, b_sv, b_key, b_order, b_start,
    a_sv, a_order, a_start, width, masks, self_join, t,
    pshift, pmask, prad, out_i, out_j, out_d,
):  # fmt: skip
    """The pairs :func:`fixed_join` leaves out: side B's overflow items ``ov`` (sorted
    positions past their bucket's first ``width``) against every item of side A's
    buckets ``key ^ mu`` (``masks``, ``0`` included).  Self-join (A is B): an overflow
    item pairs with each non-overflow item, and with each overflow item before it, once.
    Pairs are written ``(A id, B id)``."""
    n = 0
    tu = np.uint64(t)
    for q in range(len(ov)):
        y = ov[q]
        vy = b_sv[y]
        ky = b_key[y]
        for mi in range(len(masks)):
            k2 = ky ^ masks[mi]
            for x in range(a_start[k2], a_start[k2 + 1]):
                if self_join and (x == y or (x - a_start[k2] >= width and x > y)):
                    continue
                n = _keep(vy ^ a_sv[x], a_order[x], b_order[y], tu, pshift, pmask, prad,
                          out_i, out_j, out_d, n)  # fmt: skip
    return n


@njit(nogil=True, cache=True)
def sparse_join(  # type: ignore[no-untyped-def]
    a_sv, a_ukeys, a_order, a_start,
    b_sv, b_ukeys, b_order, b_start, b_pstart, b_pad,
    masks, u0, u1, self_join, t,
    pshift, pmask, prad, out_i, out_j, out_d,
):  # fmt: skip
    """:func:`dense_join` for wide keys (no dense table): side A's distinct keys
    ``a_ukeys[u0:u1]`` (``a_start`` offsets per distinct key) meet side B's distinct
    keys ``k ^ mu`` for every mask in ``masks`` (``0`` included), found by binary
    search in ``b_ukeys``."""
    n = 0
    tu = np.uint64(t)
    nb = len(b_ukeys)
    for u in range(u0, u1):
        ku = a_ukeys[u]
        x0 = a_start[u]
        x1 = a_start[u + 1]
        for mi in range(len(masks)):
            k2 = ku ^ masks[mi]
            if self_join and k2 < ku:
                continue
            w = np.searchsorted(b_ukeys, k2)
            if w >= nb or b_ukeys[w] != k2:
                continue
            r0 = b_pstart[w]
            r1 = b_pstart[w + 1]
            for x in range(x0, x1):
                vx = a_sv[x]
                skip = x if self_join and k2 == ku else -1
                n = _scan_row(b_pad, r0, r1, vx, tu, b_start[w], b_start[w + 1], skip,
                              b_sv, b_order, a_order[x], pshift, pmask, prad,
                              out_i, out_j, out_d, n)  # fmt: skip
    return n


@njit(nogil=True, cache=True)
def pad_rows(sv, start, pstart, out):  # type: ignore[no-untyped-def]
    """Fill ``out`` with each bucket's values (``sv[start[k]:start[k+1]]``) at
    ``pstart[k]``, padded to ``pstart[k + 1]`` with the bucket's first value (a pad never
    adds a pair: a hit on it is checked against the bucket's real size)."""
    for k in range(len(start) - 1):
        a = start[k]
        b = start[k + 1]
        p = pstart[k]
        q = pstart[k + 1]
        for i in range(min(b - a, q - p)):
            out[p + i] = sv[a + i]
        for i in range(p + min(b - a, q - p), q):
            out[i] = sv[a]


@njit(nogil=True, cache=True)
def fixed_rows(sv, start, width, shift, out):  # type: ignore[no-untyped-def]
    """Fill ``out`` ``(n_keys * width,)`` with each key's first ``width`` values, padded
    with its first value; an empty key's row holds a value with that key's block bits
    and alternating other bits (``0x55..``), far from most real hashes (a hit on a pad is
    only a wasted check: :func:`fixed_join` checks the bucket's real size)."""
    fill = np.uint64(0x5555555555555555)
    for k in range(len(start) - 1):
        a = start[k]
        c = min(start[k + 1] - a, width)
        r = k * width
        pad = sv[a] if c > 0 else (np.uint64(k) << np.uint64(shift)) ^ fill
        for i in range(c):
            out[r + i] = sv[a + i]
        for i in range(c, width):
            out[r + i] = pad
