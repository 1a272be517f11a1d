"""Which MT19937 state words an output needs: the plan shared by the numba, torch and GPU kernel paths.

Seeding costs a 624-step chain and each twist 624 more words, but one output needs only a handful of them:
output i < 227 needs init words i, i+1, i+397; later outputs need a few twisted words. Computing just those
is what makes MT19937 sieving fast.
"""

from __future__ import annotations

MT_N, MT_M = 624, 397


def mt_program(positions: list[int]) -> tuple[list[int], list[tuple[int, int, int, int]], dict[int, int]]:
    """Which MT19937 init words to keep and which twisted words to derive, for outputs at `positions`.

    W(b, j) is state word j after b twists (W(0, j) = init word j); output p is temper(W(p // 624 + 1, p % 624)).
    The in-place twist makes W(b, j) = twist(W(b-1, j), next, far) with next = W(b, 0) for j = 623 (already
    updated) else W(b-1, j+1), and far = W(b-1, j+397) for j < 227 else W(b, j-227). Returns (sorted init
    indices, ops (dst, a, b, c) over slots in dependency order, {position: slot of its untempered word}).
    Slots 0..len(init)-1 hold the init words in sorted order, then one slot per op.
    """
    init: set[int] = set()
    deps: dict[tuple[int, int], tuple[tuple[int, int], ...]] = {}
    order: list[tuple[int, int]] = []

    def visit(b: int, j: int) -> tuple[int, int]:
        if b == 0:
            init.add(j)
        elif (b, j) not in deps:
            a = visit(b - 1, j)
            nxt = visit(b, 0) if j == MT_N - 1 else visit(b - 1, j + 1)
            far = visit(b - 1, j + MT_M) if j < MT_N - MT_M else visit(b, j - (MT_N - MT_M))
            deps[(b, j)] = (a, nxt, far)
            order.append((b, j))
        return (b, j)

    targets = {p: visit(p // MT_N + 1, p % MT_N) for p in positions}
    needed = sorted(init)
    slot = {(0, j): k for k, j in enumerate(needed)}
    for k, key in enumerate(order):
        slot[key] = len(needed) + k
    ops = [(slot[key], *(slot[d] for d in deps[key])) for key in order]
    return needed, ops, {p: slot[key] for p, key in targets.items()}
