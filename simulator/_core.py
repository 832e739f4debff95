"""The event core of the simulated cluster, compiled with numba over preallocated arrays.

Why this shape: a Python event loop with objects and ``heapq`` manages some tens of thousands of
invocations per second; the controller needs hundreds of thousands. Here the whole cluster lives in
a tuple of numpy arrays (one row per container, activation, invoker or function; columns named by
the integer constants below), and every event handler is an ``@njit`` function over that tuple.
Nothing in this module allocates per event.

Event sources, and how the next event is found without a heap:

* arrivals — the caller's sorted arrays, read with a cursor;
* CPU completions — each invoker knows the earliest finish among its running containers (its rates
  are recomputed only when an event touches that invoker); a segment tree over invokers gives the
  earliest of all in O(1), updated in O(log N);
* container timers (end of a cold start, end of an invocation's I/O phase) — at most one per
  container, kept in a second segment tree over container slots;
* idle eviction — evictable idle containers sit in one list in the order they became idle, so the
  head is always the next to time out.

Keep-alive: an invoker that needs memory for a new container, or whose idle unmanaged containers
hold more than their budget, evicts idle unmanaged containers one at a time by the cluster's rule:
least recently used (OpenWhisk's container pool), or lowest Greedy-Dual priority (FaasCache, Fuerst
& Sharma, ASPLOS 2021, eq. 1: priority = clock + frequency x cold-start cost / memory).

Accounting: every change of a function's container counts (held, idle, starting) first brings
that function's and that invoker's time integrals up to the event's time (:func:`_acct`), so
container-seconds and memory MB-s are exact event-time integrals; :func:`totals` reads them at
any instant without changing the state.

Simultaneous events are handled CPU completions first, then timers, then evictions, then
arrivals, so that a container freed at time t can serve an arrival at time t.

The model itself (placement, pools, processor sharing) is described in ``docs/simulator.md``;
the Python façade is ``simulator.cluster``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

INF = np.inf
#: CPU work below this many core-seconds counts as done: absorbs rounding in rate x time products.
WORK_TOLERANCE = 1e-9
#: Marks "no change requested" in the pending control arrays handed to :func:`apply_controls`.
NO_CHANGE = -2
#: The pool target meaning "OpenWhisk's default behaviour" (``policies.types.UNMANAGED``).
UNMANAGED = -1

# Return codes of :func:`run`.
DONE = 0
NEED_RECORDS = 1
NEED_ACTIVATIONS = 2

# Globals, int (g_i has shape (1, N_GI) so that it can own linked lists like the other tables).
G_C_FREE_N = 0  # free container slots on the c_free stack
G_A_FREE_N = 1  # free activation slots on the a_free stack
G_REC_N = 2  # records written to rec_i / rec_f
G_ARR_POS = 3  # cursor into the current arrival batch
G_IDLE_HEAD = 4  # oldest evictable idle container (global list), -1 if none
G_IDLE_TAIL = 5
G_N_BLOCKED = 6  # functions waiting for memory to start a container
G_EVICTION = 7  # eviction rule for idle unmanaged containers: EVICT_LRU or EVICT_GREEDY_DUAL
N_GI = 8
# Globals, float.
G_IDLE_TIMEOUT = 0
N_GF = 1

# Eviction rules (G_EVICTION).
EVICT_LRU = 0
EVICT_GREEDY_DUAL = 1

# Container states.
ST_FREE = 0  # slot unused
ST_STARTING = 1  # cold start in progress: memory reserved, no CPU
ST_BUSY = 2  # running an activation (I/O phase, then CPU phase)
ST_IDLE = 3  # paused, waiting for work
ST_READY = 4  # transient: just became free, disposition being decided
PH_IO = 0
PH_CPU = 1

# Container columns, int.
C_FN = 0
C_INV = 1
C_STATE = 2
C_PHASE = 3
C_ACT = 4  # activation being run, -1 if none
C_SLOT = 5  # index in the invoker's active (CPU) array, -1 if not in the CPU phase
C_FPREV = 6  # function's idle list (most recently used at the tail)
C_FNEXT = 7
C_VPREV = 8  # invoker's evictable-idle list (least recently used at the head)
C_VNEXT = 9
C_GPREV = 10  # global evictable-idle list, ordered by idle-since
C_GNEXT = 11
C_EVICTABLE = 12  # 1 while in the two evictable lists
N_CI = 13
# Container columns, float.
C_SHARES = 0
C_REM = 1  # CPU work left, core-seconds
C_RATE = 2  # cores currently granted
C_IDLE_SINCE = 3
C_MEM = 4
C_CAP = 5  # max cores one invocation can use
C_PRIO = 6  # Greedy-Dual priority, set when the container last became evictable
N_CF = 7

# Activation columns, int.
A_FN = 0
A_NEXT = 1  # next in the function's FIFO queue
A_COLD = 2
A_INV = 3
N_AI = 4
# Activation columns, float.
A_ARRIVAL = 0
A_CPU = 1
A_IO = 2
A_START = 3
A_WAIT = 4
A_INIT = 5
N_AF = 6

# Invoker columns, int.
V_NACT = 0  # containers in the CPU phase
V_LRU_HEAD = 1
V_LRU_TAIL = 2
V_NEXT_C = 3  # container finishing first at current rates
N_VI = 4
# Invoker columns, float.
V_CORES = 0
V_MEM = 1
V_FREE = 2  # memory not reserved by any container, MB
V_EVICTABLE = 3  # memory held by evictable idle containers, MB
V_LAST = 4  # time up to which CPU progress has been applied
V_CPU_USED = 5  # cumulative core-seconds
V_SHARES = 6  # sum of shares of live containers
V_CLOCK = 7  # Greedy-Dual clock: priority of the last container evicted for memory
V_IDLE_BUDGET = 8  # most memory evictable idle containers may hold, MB
V_ACCT_LAST = 9  # time up to which the memory integrals below have been taken
V_MEM_S = 10  # cumulative memory held (user memory - free), MB-s
V_IDLE_MB = 11  # memory of idle containers (managed or not), MB
V_IDLE_MEM_S = 12  # cumulative V_IDLE_MB, MB-s
V_START_MB = 13  # memory of starting containers, MB
V_INIT_MEM_S = 14  # cumulative V_START_MB, MB-s
N_VF = 15

# Function columns, int.
F_TARGET = 0  # pool target: UNMANAGED, 0, or k >= 1
F_NCONT = 1
F_NBUSY = 2
F_NSTART = 3  # starting containers not reserved for an activation (they take the queue head)
F_QHEAD = 4
F_QTAIL = 5
F_QLEN = 6
F_IHEAD = 7
F_ITAIL = 8
F_NIDLE = 9
F_HOME = 10
F_STEP = 11
F_COLD = 12  # cumulative cold starts
F_NRECENT = 13  # completions ever (indexes the ring of the last 3)
F_BLOCKED = 14  # 1 while in the blocked list
F_NBOUND = 15  # starting containers reserved for the activation that caused them
F_EVICT_IDLE = 16  # cumulative idle containers removed by the idle timeout
F_EVICT_ROOM = 17  # cumulative idle containers evicted for memory (a new container, or the budget)
N_FI = 18
# Then one column per invoker i: the function's containers on invoker i, at column F_NCONT_ON + i.
F_NCONT_ON = N_FI
# Function columns, float.
F_MEM = 0
F_INIT = 1
F_CAP = 2
F_SHARES = 3
F_ALLOC_ACC = 4  # cumulative containers x shares / 1024, core-seconds
F_ALLOC_LAST = 5
F_CPU_USED = 6  # cumulative core-seconds
F_RECENT = 7  # three slots: ring of the last 3 execution times
F_ACCT_LAST = 10  # time up to which the container integrals below have been taken
F_CONT_S = 11  # cumulative containers held (starting, busy or idle), container-seconds
F_IDLE_S = 12  # cumulative idle containers, container-seconds
F_INIT_S = 13  # cumulative starting containers, container-seconds
N_FF = 14
# Then one column per invoker i: the function's Greedy-Dual frequency there, at column F_FREQ_ON + i
# (invocations started on invoker i since the function's first container there was created).
F_FREQ_ON = N_FF

# Columns of the function table written by :func:`totals`.
T_CONT_S = 0
T_IDLE_S = 1
T_INIT_S = 2
T_CPU_USED = 3
T_ALLOC = 4
N_TF = 5
# Columns of the invoker table written by :func:`totals`.
T_MEM_S = 0
T_IDLE_MEM_S = 1
T_INIT_MEM_S = 2
T_INV_CPU_USED = 3
N_TV = 4

# Record columns.
R_FN = 0
R_COLD = 1
R_INV = 2
N_RI = 3
R_ARRIVAL = 0
R_START = 1
R_END = 2
R_WAIT = 3
R_INIT = 4
R_DURATION = 5
N_RF = 6


# ----------------------------------------------------------------------------- small structures


@njit(cache=True)
def _tree_set(tv, ti, k, value):
    """Set leaf ``k`` of a min segment tree (values ``tv``, argmin ``ti``; root at index 1)."""
    p = tv.shape[0] // 2
    pos = p + k
    tv[pos] = value
    pos >>= 1
    while pos >= 1:
        left = 2 * pos
        if tv[left + 1] < tv[left]:
            tv[pos] = tv[left + 1]
            ti[pos] = ti[left + 1]
        else:
            tv[pos] = tv[left]
            ti[pos] = ti[left]
        pos >>= 1


@njit(cache=True)
def _link_append(c_i, owner, row, head_col, tail_col, c, prev_col, next_col):
    tail = owner[row, tail_col]
    c_i[c, prev_col] = tail
    c_i[c, next_col] = -1
    if tail >= 0:
        c_i[tail, next_col] = c
    else:
        owner[row, head_col] = c
    owner[row, tail_col] = c


@njit(cache=True)
def _link_remove(c_i, owner, row, head_col, tail_col, c, prev_col, next_col):
    p = c_i[c, prev_col]
    n = c_i[c, next_col]
    if p >= 0:
        c_i[p, next_col] = n
    else:
        owner[row, head_col] = n
    if n >= 0:
        c_i[n, prev_col] = p
    else:
        owner[row, tail_col] = p
    c_i[c, prev_col] = -1
    c_i[c, next_col] = -1


# ----------------------------------------------------------------------------- accounting


@njit(cache=True)
def _alloc_touch(st, f, t):
    """Bring function ``f``'s allocation integral (containers x shares / 1024) up to time ``t``."""
    f_i = st[11]
    f_f = st[12]
    dt = t - f_f[f, F_ALLOC_LAST]
    if dt > 0.0:
        f_f[f, F_ALLOC_ACC] += f_i[f, F_NCONT] * f_f[f, F_SHARES] / 1024.0 * dt
    f_f[f, F_ALLOC_LAST] = t


@njit(cache=True)
def _acct(st, f, i, t):
    """Bring function ``f``'s and invoker ``i``'s held / idle / starting integrals up to time ``t``.

    Called just before any of those counts changes, so the integrals are exact.
    """
    v_f = st[9]
    f_i, f_f = st[11], st[12]
    dt = t - f_f[f, F_ACCT_LAST]
    if dt > 0.0:
        f_f[f, F_CONT_S] += f_i[f, F_NCONT] * dt
        f_f[f, F_IDLE_S] += f_i[f, F_NIDLE] * dt
        f_f[f, F_INIT_S] += (f_i[f, F_NSTART] + f_i[f, F_NBOUND]) * dt
        f_f[f, F_ACCT_LAST] = t
    dt = t - v_f[i, V_ACCT_LAST]
    if dt > 0.0:
        v_f[i, V_MEM_S] += (v_f[i, V_MEM] - v_f[i, V_FREE]) * dt
        v_f[i, V_IDLE_MEM_S] += v_f[i, V_IDLE_MB] * dt
        v_f[i, V_INIT_MEM_S] += v_f[i, V_START_MB] * dt
        v_f[i, V_ACCT_LAST] = t


@njit(cache=True)
def _progress(st, i, t):
    """Apply invoker ``i``'s current CPU rates from its last update to ``t`` (work done, CPU used)."""
    c_i, c_f = st[2], st[3]
    v_i, v_f, v_act = st[8], st[9], st[10]
    f_f = st[12]
    dt = t - v_f[i, V_LAST]
    if dt > 0.0:
        total = 0.0
        for s in range(v_i[i, V_NACT]):
            c = v_act[i, s]
            work = c_f[c, C_RATE] * dt
            c_f[c, C_REM] -= work
            f_f[c_i[c, C_FN], F_CPU_USED] += work
            total += work
        v_f[i, V_CPU_USED] += total
        v_f[i, V_LAST] = t


@njit(cache=True)
def _reschedule(st, i, t):
    """Recompute invoker ``i``'s CPU rates and its next completion (after :func:`_progress` to ``t``).

    Weighted processor sharing with per-container caps: container j gets
    r_j = min(cap_j, lam * w_j) with lam chosen so that sum_j r_j = cores (water-filling), or
    r_j = cap_j for all when the caps add up to no more than the cores.
    """
    c_f = st[3]
    v_i, v_f, v_act = st[8], st[9], st[10]
    vt_v, vt_i = st[15], st[16]
    key, order = st[21], st[20][0]
    n = v_i[i, V_NACT]
    if n == 0:
        _tree_set(vt_v, vt_i, i, INF)
        return
    cores = v_f[i, V_CORES]
    sum_cap = 0.0
    sum_w = 0.0
    for s in range(n):
        c = v_act[i, s]
        sum_cap += c_f[c, C_CAP]
        sum_w += c_f[c, C_SHARES]
    if sum_cap <= cores:
        for s in range(n):
            c = v_act[i, s]
            c_f[c, C_RATE] = c_f[c, C_CAP]
    else:
        binds = False
        for s in range(n):
            c = v_act[i, s]
            if cores * c_f[c, C_SHARES] > c_f[c, C_CAP] * sum_w:
                binds = True
                break
        if not binds:
            for s in range(n):
                c = v_act[i, s]
                c_f[c, C_RATE] = cores * c_f[c, C_SHARES] / sum_w
        else:
            # Water-filling: visit containers by cap / weight ascending; those whose cap is below
            # their fair share of what is left get their cap, the rest split the remainder by weight.
            for s in range(n):
                c = v_act[i, s]
                k = c_f[c, C_CAP] / c_f[c, C_SHARES]
                j = s
                while j > 0 and key[j - 1] > k:
                    key[j] = key[j - 1]
                    order[j] = order[j - 1]
                    j -= 1
                key[j] = k
                order[j] = c
            left = cores
            w_left = sum_w
            j = 0
            while j < n:
                c = order[j]
                if c_f[c, C_CAP] * w_left <= left * c_f[c, C_SHARES]:
                    c_f[c, C_RATE] = c_f[c, C_CAP]
                    left -= c_f[c, C_CAP]
                    w_left -= c_f[c, C_SHARES]
                    j += 1
                else:
                    break
            while j < n:
                c = order[j]
                c_f[c, C_RATE] = left * c_f[c, C_SHARES] / w_left
                j += 1
    best = INF
    best_c = -1
    for s in range(n):
        c = v_act[i, s]
        dt = c_f[c, C_REM] / c_f[c, C_RATE]
        if dt < best:
            best = dt
            best_c = c
    best = max(best, 0.0)
    v_i[i, V_NEXT_C] = best_c
    _tree_set(vt_v, vt_i, i, t + best)


@njit(cache=True)
def _cpu_join(st, c, t):
    """Container ``c`` enters the CPU phase on its invoker at time ``t``."""
    c_i = st[2]
    v_i, v_act = st[8], st[10]
    i = c_i[c, C_INV]
    _progress(st, i, t)
    slot = v_i[i, V_NACT]
    v_act[i, slot] = c
    c_i[c, C_SLOT] = slot
    c_i[c, C_PHASE] = PH_CPU
    v_i[i, V_NACT] = slot + 1
    _reschedule(st, i, t)


@njit(cache=True)
def _cpu_drop_slot(st, i, s):
    """Remove slot ``s`` from invoker ``i``'s active array (the last slot moves into it)."""
    c_i = st[2]
    v_i, v_act = st[8], st[10]
    last = v_i[i, V_NACT] - 1
    c = v_act[i, s]
    if s != last:
        moved = v_act[i, last]
        v_act[i, s] = moved
        c_i[moved, C_SLOT] = s
    c_i[c, C_SLOT] = -1
    v_i[i, V_NACT] = last


# ----------------------------------------------------------------------------- containers


@njit(cache=True)
def _make_evictable(st, c):
    """Idle container ``c`` (of an unmanaged function) joins the evictable lists, and gets its
    Greedy-Dual priority: clock + frequency x cold-start cost / memory (FaasCache, eq. 1), with the
    invoker's clock and the function's frequency on that invoker as they are now."""
    g_i = st[0]
    c_i, c_f = st[2], st[3]
    v_i, v_f = st[8], st[9]
    f_f = st[12]
    i = c_i[c, C_INV]
    f = c_i[c, C_FN]
    _link_append(c_i, v_i, i, V_LRU_HEAD, V_LRU_TAIL, c, C_VPREV, C_VNEXT)
    _link_append(c_i, g_i, 0, G_IDLE_HEAD, G_IDLE_TAIL, c, C_GPREV, C_GNEXT)
    v_f[i, V_EVICTABLE] += c_f[c, C_MEM]
    c_i[c, C_EVICTABLE] = 1
    c_f[c, C_PRIO] = v_f[i, V_CLOCK] + f_f[f, F_FREQ_ON + i] * f_f[f, F_INIT] / c_f[c, C_MEM]


@njit(cache=True)
def _make_unevictable(st, c):
    g_i = st[0]
    c_i, c_f = st[2], st[3]
    v_i, v_f = st[8], st[9]
    i = c_i[c, C_INV]
    _link_remove(c_i, v_i, i, V_LRU_HEAD, V_LRU_TAIL, c, C_VPREV, C_VNEXT)
    _link_remove(c_i, g_i, 0, G_IDLE_HEAD, G_IDLE_TAIL, c, C_GPREV, C_GNEXT)
    v_f[i, V_EVICTABLE] -= c_f[c, C_MEM]
    c_i[c, C_EVICTABLE] = 0


@njit(cache=True)
def _remove_container(st, c, t):
    """Destroy container ``c`` (idle, starting or ready; never one running an activation).

    Does not retry blocked functions: callers do that once they are done freeing memory.
    """
    g_i = st[0]
    c_i, c_f, c_free = st[2], st[3], st[4]
    v_f = st[9]
    f_i, f_f = st[11], st[12]
    ct_v, ct_i = st[13], st[14]
    f = c_i[c, C_FN]
    i = c_i[c, C_INV]
    mem = c_f[c, C_MEM]
    state = c_i[c, C_STATE]
    _acct(st, f, i, t)
    if state == ST_IDLE:
        _link_remove(c_i, f_i, f, F_IHEAD, F_ITAIL, c, C_FPREV, C_FNEXT)
        f_i[f, F_NIDLE] -= 1
        v_f[i, V_IDLE_MB] -= mem
        if c_i[c, C_EVICTABLE] == 1:
            _make_unevictable(st, c)
    elif state == ST_STARTING:
        # Only unreserved cold starts are ever removed; a reserved one always runs its activation.
        f_i[f, F_NSTART] -= 1
        v_f[i, V_START_MB] -= mem
        _tree_set(ct_v, ct_i, c, INF)
    _alloc_touch(st, f, t)
    f_i[f, F_NCONT] -= 1
    v_f[i, V_FREE] += mem
    v_f[i, V_SHARES] -= c_f[c, C_SHARES]
    c_i[c, C_STATE] = ST_FREE
    f_i[f, F_NCONT_ON + i] -= 1
    if f_i[f, F_NCONT_ON + i] == 0:
        # The function has no container left on this invoker: its Greedy-Dual frequency restarts.
        f_f[f, F_FREQ_ON + i] = 0.0
    n = g_i[0, G_C_FREE_N]
    c_free[n] = c
    g_i[0, G_C_FREE_N] = n + 1


@njit(cache=True)
def _evict_one(st, i, t):
    """Evict one evictable idle container of invoker ``i`` (it must have one) by the cluster's rule.

    LRU: the one idle longest. Greedy-Dual: the one of lowest priority (ties: the one idle longest),
    and the invoker's clock becomes that priority.
    """
    g_i = st[0]
    c_i, c_f = st[2], st[3]
    v_i, v_f = st[8], st[9]
    f_i = st[11]
    c = v_i[i, V_LRU_HEAD]
    if g_i[0, G_EVICTION] == EVICT_GREEDY_DUAL:
        best = c
        k = c_i[c, C_VNEXT]
        while k >= 0:
            if c_f[k, C_PRIO] < c_f[best, C_PRIO]:
                best = k
            k = c_i[k, C_VNEXT]
        c = best
        v_f[i, V_CLOCK] = c_f[c, C_PRIO]
    f_i[c_i[c, C_FN], F_EVICT_ROOM] += 1
    _remove_container(st, c, t)


@njit(cache=True)
def _enforce_idle_budget(st, i, t):
    """Evict idle unmanaged containers of invoker ``i`` until their memory is within its budget."""
    v_f = st[9]
    while v_f[i, V_EVICTABLE] > v_f[i, V_IDLE_BUDGET]:
        _evict_one(st, i, t)


@njit(cache=True)
def _create_container(st, f, i, t, a):
    """Cold-start a container of function ``f`` on invoker ``i`` (which must admit it), reserved
    for activation ``a`` (or for whoever heads the queue when it is ready, if ``a`` is -1).

    Like OpenWhisk's container pool, evicts the invoker's evictable idle containers (least
    recently used first, or by Greedy-Dual priority) until the memory fits.
    """
    g_i = st[0]
    c_i, c_f, c_free = st[2], st[3], st[4]
    v_f = st[9]
    f_i, f_f = st[11], st[12]
    ct_v, ct_i = st[13], st[14]
    mem = f_f[f, F_MEM]
    while v_f[i, V_FREE] < mem:
        _evict_one(st, i, t)
    _acct(st, f, i, t)
    n = g_i[0, G_C_FREE_N] - 1
    c = c_free[n]
    g_i[0, G_C_FREE_N] = n
    for col in range(N_CI):
        c_i[c, col] = -1
    c_i[c, C_FN] = f
    c_i[c, C_INV] = i
    c_i[c, C_STATE] = ST_STARTING
    c_i[c, C_PHASE] = PH_IO
    c_i[c, C_EVICTABLE] = 0
    c_i[c, C_ACT] = a
    c_f[c, C_SHARES] = f_f[f, F_SHARES]
    c_f[c, C_REM] = 0.0
    c_f[c, C_RATE] = 0.0
    c_f[c, C_IDLE_SINCE] = t
    c_f[c, C_MEM] = mem
    c_f[c, C_CAP] = f_f[f, F_CAP]
    c_f[c, C_PRIO] = 0.0
    v_f[i, V_FREE] -= mem
    v_f[i, V_START_MB] += mem
    v_f[i, V_SHARES] += c_f[c, C_SHARES]
    f_i[f, F_NCONT_ON + i] += 1
    _alloc_touch(st, f, t)
    f_i[f, F_NCONT] += 1
    if a >= 0:
        f_i[f, F_NBOUND] += 1
    else:
        f_i[f, F_NSTART] += 1
    _tree_set(ct_v, ct_i, c, t + f_f[f, F_INIT])


@njit(cache=True)
def _needs_container(st, f):
    """Whether function ``f`` wants another container started now (see ``Decisions.containers``)."""
    f_i = st[11]
    k = f_i[f, F_TARGET]
    if k >= 1:
        return f_i[f, F_NCONT] < k
    # UNMANAGED and scale-to-zero: one unreserved starting container per queued invocation (queued
    # invocations of these functions are those memory turned away).
    return f_i[f, F_NSTART] < f_i[f, F_QLEN]


@njit(cache=True)
def _place(st, f, t, a):
    """Start one container of ``f`` (reserved for activation ``a``, or -1) on the first invoker of
    its probe order that admits it; False if none does."""
    v_f = st[9]
    f_i, f_f = st[11], st[12]
    n_inv = v_f.shape[0]
    mem = f_f[f, F_MEM]
    i = f_i[f, F_HOME]
    step = f_i[f, F_STEP]
    for _ in range(n_inv):
        if v_f[i, V_FREE] + v_f[i, V_EVICTABLE] >= mem:
            _create_container(st, f, i, t, a)
            return True
        i += step
        if i >= n_inv:
            i -= n_inv
    return False


@njit(cache=True)
def _reconcile(st, f, t):
    """Start the containers ``f`` needs; when memory runs out, remember ``f`` as blocked."""
    g_i = st[0]
    f_i = st[11]
    blocked = st[19]
    while _needs_container(st, f):
        if not _place(st, f, t, -1):
            if f_i[f, F_BLOCKED] == 0:
                n = g_i[0, G_N_BLOCKED]
                blocked[n] = f
                g_i[0, G_N_BLOCKED] = n + 1
                f_i[f, F_BLOCKED] = 1
            return


@njit(cache=True)
def _retry_blocked(st, i, t):
    """Memory became available on invoker ``i``: start blocked functions' containers there, in order."""
    g_i = st[0]
    v_f = st[9]
    f_i, f_f = st[11], st[12]
    blocked = st[19]
    n = g_i[0, G_N_BLOCKED]
    if n == 0:
        return
    kept = 0
    for r in range(n):
        f = blocked[r]
        while _needs_container(st, f) and v_f[i, V_FREE] + v_f[i, V_EVICTABLE] >= f_f[f, F_MEM]:
            _create_container(st, f, i, t, -1)
        if _needs_container(st, f):
            blocked[kept] = f
            kept += 1
        else:
            f_i[f, F_BLOCKED] = 0
    g_i[0, G_N_BLOCKED] = kept


@njit(cache=True)
def _make_idle(st, c, t):
    """Pause container ``c``: it waits in its function's idle list (and is evictable if unmanaged,
    which may evict idle containers over the invoker's idle-memory budget, ``c`` included)."""
    c_i, c_f = st[2], st[3]
    v_f = st[9]
    f_i = st[11]
    f = c_i[c, C_FN]
    i = c_i[c, C_INV]
    _acct(st, f, i, t)
    c_i[c, C_STATE] = ST_IDLE
    c_f[c, C_IDLE_SINCE] = t
    _link_append(c_i, f_i, f, F_IHEAD, F_ITAIL, c, C_FPREV, C_FNEXT)
    f_i[f, F_NIDLE] += 1
    v_f[i, V_IDLE_MB] += c_f[c, C_MEM]
    if f_i[f, F_TARGET] == UNMANAGED:
        _make_evictable(st, c)
        if v_f[i, V_EVICTABLE] > v_f[i, V_IDLE_BUDGET]:
            _enforce_idle_budget(st, i, t)
        _retry_blocked(st, i, t)


@njit(cache=True)
def _take_idle(st, f, t):
    """Take function ``f``'s most recently used idle container out of the idle lists at ``t``."""
    c_i, c_f = st[2], st[3]
    v_f = st[9]
    f_i = st[11]
    c = f_i[f, F_ITAIL]
    i = c_i[c, C_INV]
    _acct(st, f, i, t)
    _link_remove(c_i, f_i, f, F_IHEAD, F_ITAIL, c, C_FPREV, C_FNEXT)
    f_i[f, F_NIDLE] -= 1
    v_f[i, V_IDLE_MB] -= c_f[c, C_MEM]
    if c_i[c, C_EVICTABLE] == 1:
        _make_unevictable(st, c)
    return c


# ----------------------------------------------------------------------------- activations


@njit(cache=True)
def _bind(st, c, a, t, cold):
    """Start activation ``a`` on container ``c`` at ``t``: its I/O phase first, then its CPU work.

    ``cold`` says the container has just finished initialising: the activation's initTime is the
    part of the cold start it waited through, the rest of its wait is queueing.
    """
    c_i, c_f = st[2], st[3]
    a_i, a_f = st[5], st[6]
    f_i, f_f = st[11], st[12]
    ct_v, ct_i = st[13], st[14]
    f = c_i[c, C_FN]
    c_i[c, C_STATE] = ST_BUSY
    c_i[c, C_ACT] = a
    f_i[f, F_NBUSY] += 1
    f_f[f, F_FREQ_ON + c_i[c, C_INV]] += 1.0
    arrival = a_f[a, A_ARRIVAL]
    init = 0.0
    if cold:
        init = min(f_f[f, F_INIT], t - arrival)
        a_i[a, A_COLD] = 1
        f_i[f, F_COLD] += 1
    else:
        a_i[a, A_COLD] = 0
    a_f[a, A_WAIT] = t - arrival - init
    a_f[a, A_INIT] = init
    a_f[a, A_START] = t
    a_i[a, A_INV] = c_i[c, C_INV]
    io = a_f[a, A_IO]
    if io > 0.0:
        c_i[c, C_PHASE] = PH_IO
        _tree_set(ct_v, ct_i, c, t + io)
    elif a_f[a, A_CPU] > 0.0:
        c_f[c, C_REM] = a_f[a, A_CPU]
        _cpu_join(st, c, t)
    else:
        # No work at all: finish through the timer path at this same instant.
        c_i[c, C_PHASE] = PH_IO
        _tree_set(ct_v, ct_i, c, t)


@njit(cache=True)
def _dequeue(st, f):
    a_i = st[5]
    f_i = st[11]
    a = f_i[f, F_QHEAD]
    nxt = a_i[a, A_NEXT]
    f_i[f, F_QHEAD] = nxt
    if nxt < 0:
        f_i[f, F_QTAIL] = -1
    f_i[f, F_QLEN] -= 1
    return a


@njit(cache=True)
def _oldest_waiter_for_room(st, c):
    """The function blocked on memory whose queue head has waited longest, longer than the head of
    container ``c``'s own queue, among those that would fit on ``c``'s invoker if ``c`` made way;
    -1 if none."""
    g_i = st[0]
    c_i, c_f = st[2], st[3]
    a_f = st[6]
    v_f = st[9]
    f_i, f_f = st[11], st[12]
    blocked = st[19]
    f = c_i[c, C_FN]
    i = c_i[c, C_INV]
    oldest = a_f[f_i[f, F_QHEAD], A_ARRIVAL]
    room = v_f[i, V_FREE] + v_f[i, V_EVICTABLE] + c_f[c, C_MEM]
    best = -1
    for r in range(g_i[0, G_N_BLOCKED]):
        other = blocked[r]
        if other == f or f_i[other, F_QLEN] == 0 or f_f[other, F_MEM] > room:
            continue
        arrival = a_f[f_i[other, F_QHEAD], A_ARRIVAL]
        if arrival < oldest and _needs_container(st, other):
            oldest = arrival
            best = other
    return best


@njit(cache=True)
def _after_work(st, c, t, from_start):
    """Container ``c`` (state READY) is free at ``t``: remove it, give it queued work, or pause it."""
    g_i = st[0]
    c_i = st[2]
    f_i = st[11]
    f = c_i[c, C_FN]
    k = f_i[f, F_TARGET]
    if k >= 1 and f_i[f, F_NCONT] > k:
        i = c_i[c, C_INV]
        _remove_container(st, c, t)
        _retry_blocked(st, i, t)
        return
    if f_i[f, F_QLEN] > 0:
        # OpenWhisk's invoker serves its buffer first come, first served across actions: a platform-
        # managed container makes way for an older invocation of a function waiting for memory, so
        # that no function starves while another keeps its containers busy. Policy-managed pools
        # keep their containers.
        if k < 1 and not from_start and g_i[0, G_N_BLOCKED] > 0:
            other = _oldest_waiter_for_room(st, c)
            if other >= 0:
                i = c_i[c, C_INV]
                _remove_container(st, c, t)
                _create_container(st, other, i, t, -1)
                _retry_blocked(st, i, t)
                return
        _bind(st, c, _dequeue(st, f), t, from_start)
        return
    if k == 0:
        i = c_i[c, C_INV]
        _remove_container(st, c, t)
        _retry_blocked(st, i, t)
        return
    _make_idle(st, c, t)


@njit(cache=True)
def _finish(st, c, t):
    """Container ``c``'s activation completes at ``t``: write its record and free the container."""
    g_i = st[0]
    c_i = st[2]
    a_i, a_f, a_free = st[5], st[6], st[7]
    f_i, f_f = st[11], st[12]
    rec_i, rec_f = st[17], st[18]
    a = c_i[c, C_ACT]
    f = c_i[c, C_FN]
    r = g_i[0, G_REC_N]
    g_i[0, G_REC_N] = r + 1
    duration = t - a_f[a, A_START]
    rec_i[r, R_FN] = f
    rec_i[r, R_COLD] = a_i[a, A_COLD]
    rec_i[r, R_INV] = a_i[a, A_INV]
    rec_f[r, R_ARRIVAL] = a_f[a, A_ARRIVAL]
    rec_f[r, R_START] = a_f[a, A_START]
    rec_f[r, R_END] = t
    rec_f[r, R_WAIT] = a_f[a, A_WAIT]
    rec_f[r, R_INIT] = a_f[a, A_INIT]
    rec_f[r, R_DURATION] = duration
    f_f[f, F_RECENT + f_i[f, F_NRECENT] % 3] = duration
    f_i[f, F_NRECENT] += 1
    n = g_i[0, G_A_FREE_N]
    a_free[n] = a
    g_i[0, G_A_FREE_N] = n + 1
    c_i[c, C_ACT] = -1
    c_i[c, C_STATE] = ST_READY
    f_i[f, F_NBUSY] -= 1
    _after_work(st, c, t, False)


# ----------------------------------------------------------------------------- event handlers


@njit(cache=True)
def _on_cpu_done(st, i, t):
    """The earliest CPU finish on invoker ``i`` is due: complete it and any that finish with it."""
    c_f = st[3]
    v_i, v_act = st[8], st[10]
    done = st[20][1]
    _progress(st, i, t)
    c_f[v_i[i, V_NEXT_C], C_REM] = 0.0
    k = 0
    s = v_i[i, V_NACT] - 1
    while s >= 0:
        c = v_act[i, s]
        if c_f[c, C_REM] <= WORK_TOLERANCE:
            done[k] = c
            k += 1
            _cpu_drop_slot(st, i, s)
        s -= 1
    _reschedule(st, i, t)
    for j in range(k):
        _finish(st, done[j], t)


@njit(cache=True)
def _on_timer(st, c, t):
    """Container ``c``'s timer is due: its cold start ended, or its activation's I/O phase did."""
    c_i, c_f = st[2], st[3]
    a_f = st[6]
    v_f = st[9]
    f_i = st[11]
    ct_v, ct_i = st[13], st[14]
    _tree_set(ct_v, ct_i, c, INF)
    if c_i[c, C_STATE] == ST_STARTING:
        i = c_i[c, C_INV]
        _acct(st, c_i[c, C_FN], i, t)
        v_f[i, V_START_MB] -= c_f[c, C_MEM]
        a = c_i[c, C_ACT]
        if a >= 0:
            f_i[c_i[c, C_FN], F_NBOUND] -= 1
            _bind(st, c, a, t, True)
            return
        f_i[c_i[c, C_FN], F_NSTART] -= 1
        c_i[c, C_STATE] = ST_READY
        _after_work(st, c, t, True)
        return
    a = c_i[c, C_ACT]
    if a_f[a, A_CPU] > 0.0:
        c_f[c, C_REM] = a_f[a, A_CPU]
        _cpu_join(st, c, t)
    else:
        _finish(st, c, t)


@njit(cache=True)
def _on_arrival(st, a, t):
    """Activation ``a`` arrives: it reuses the function's most recently used idle container; else,
    for a platform-managed function with nobody queued, it gets a container cold-started for it
    (as OpenWhisk's container pool does) if memory admits one; else it queues, and a pool below
    its target starts containers for the queue."""
    a_i = st[5]
    f_i = st[11]
    f = a_i[a, A_FN]
    if f_i[f, F_NIDLE] > 0:
        _bind(st, _take_idle(st, f, t), a, t, False)
        return
    if f_i[f, F_TARGET] < 1 and f_i[f, F_QLEN] == 0 and _place(st, f, t, a):
        return
    a_i[a, A_NEXT] = -1
    tail = f_i[f, F_QTAIL]
    if tail >= 0:
        a_i[tail, A_NEXT] = a
    else:
        f_i[f, F_QHEAD] = a
    f_i[f, F_QTAIL] = a
    f_i[f, F_QLEN] += 1
    _reconcile(st, f, t)


# ----------------------------------------------------------------------------- entry points


@njit(cache=True)
def run(st, until, arr_t, arr_fn, arr_cpu, arr_io):
    """Process every event before ``until``; arrivals come from the batch at cursor G_ARR_POS.

    Returns DONE, or NEED_RECORDS / NEED_ACTIVATIONS when a buffer must grow first (the state is
    consistent and the call can simply be repeated with bigger arrays).
    """
    g_i, g_f = st[0], st[1]
    c_f = st[3]
    a_i, a_f, a_free = st[5], st[6], st[7]
    v_act = st[10]
    ct_v, ct_i = st[13], st[14]
    vt_v, vt_i = st[15], st[16]
    rec_i = st[17]
    per_event = v_act.shape[1] + 1
    timeout = g_f[0, G_IDLE_TIMEOUT]
    pos = g_i[0, G_ARR_POS]
    n_arr = arr_t.shape[0]
    while True:
        if g_i[0, G_REC_N] + per_event > rec_i.shape[0]:
            g_i[0, G_ARR_POS] = pos
            return NEED_RECORDS
        t_cpu = vt_v[1]
        t_timer = ct_v[1]
        head = g_i[0, G_IDLE_HEAD]
        t_idle = c_f[head, C_IDLE_SINCE] + timeout if head >= 0 else INF
        t_arr = arr_t[pos] if pos < n_arr else INF
        t = min(min(t_cpu, t_timer), min(t_idle, t_arr))
        if t >= until:
            break
        if t_cpu == t:
            _on_cpu_done(st, vt_i[1], t)
        elif t_timer == t:
            _on_timer(st, ct_i[1], t)
        elif t_idle == t:
            i = st[2][head, C_INV]
            st[11][st[2][head, C_FN], F_EVICT_IDLE] += 1
            _remove_container(st, head, t)
            _retry_blocked(st, i, t)
        else:
            n = g_i[0, G_A_FREE_N]
            if n == 0:
                g_i[0, G_ARR_POS] = pos
                return NEED_ACTIVATIONS
            a = a_free[n - 1]
            g_i[0, G_A_FREE_N] = n - 1
            a_i[a, A_FN] = arr_fn[pos]
            a_i[a, A_NEXT] = -1
            a_i[a, A_COLD] = 0
            a_i[a, A_INV] = -1
            a_f[a, A_ARRIVAL] = t
            a_f[a, A_CPU] = arr_cpu[pos]
            a_f[a, A_IO] = arr_io[pos]
            pos += 1
            _on_arrival(st, a, t)
    g_i[0, G_ARR_POS] = pos
    return DONE


@njit(cache=True)
def sync(st, t):
    """Bring every invoker's CPU accounting and every function's allocation integral up to ``t``."""
    v_f = st[9]
    f_i = st[11]
    for i in range(v_f.shape[0]):
        _progress(st, i, t)
    for f in range(f_i.shape[0]):
        _alloc_touch(st, f, t)


@njit(cache=True)
def apply_controls(st, t, new_target, new_shares):
    """Apply pending pool targets and CPU shares at time ``t`` (``NO_CHANGE`` / 0 where none).

    Shares apply to existing and new containers at once. Pool targets follow
    ``policies.types.Decisions``: surplus idle (then still-starting) containers go now, busy
    surplus when it finishes; missing containers are started now as far as memory admits.
    Memory is freed for every function before any new container is placed.
    """
    c_i, c_f = st[2], st[3]
    v_f = st[9]
    f_i, f_f = st[11], st[12]
    n_inv = v_f.shape[0]
    n_fn = f_i.shape[0]
    touched = np.zeros(n_inv, np.bool_)
    freed = np.zeros(n_inv, np.bool_)
    shares_changed = False
    for f in range(n_fn):
        s = new_shares[f]
        if s > 0 and s != f_f[f, F_SHARES]:
            _alloc_touch(st, f, t)
            f_f[f, F_SHARES] = s
            shares_changed = True
    if shares_changed:
        for c in range(c_i.shape[0]):
            if c_i[c, C_STATE] == ST_FREE:
                continue
            s = f_f[c_i[c, C_FN], F_SHARES]
            if c_f[c, C_SHARES] != s:
                i = c_i[c, C_INV]
                if c_i[c, C_SLOT] >= 0 and not touched[i]:
                    _progress(st, i, t)
                    touched[i] = True
                v_f[i, V_SHARES] += s - c_f[c, C_SHARES]
                c_f[c, C_SHARES] = s
        for i in range(n_inv):
            if touched[i]:
                _reschedule(st, i, t)
    changed = np.zeros(n_fn, np.bool_)
    for f in range(n_fn):
        k = new_target[f]
        if k == NO_CHANGE or k == f_i[f, F_TARGET]:
            continue
        changed[f] = True
        old = f_i[f, F_TARGET]
        c = f_i[f, F_IHEAD]
        while c >= 0:
            if old == UNMANAGED:
                _make_unevictable(st, c)
            elif k == UNMANAGED:
                # Handed back to the platform: its idle clock starts now, and its memory may be
                # taken by functions waiting for room.
                c_f[c, C_IDLE_SINCE] = t
                _make_evictable(st, c)
                freed[c_i[c, C_INV]] = True
            c = c_i[c, C_FNEXT]
        f_i[f, F_TARGET] = k
        if k == UNMANAGED:
            continue
        keep = k if k >= 1 else 0
        while f_i[f, F_NCONT] > keep and f_i[f, F_NIDLE] > 0:
            victim = f_i[f, F_IHEAD]  # least recently used first
            freed[c_i[victim, C_INV]] = True
            _remove_container(st, victim, t)
        if k >= 1 and f_i[f, F_NCONT] > k:
            for c in range(c_i.shape[0]):
                if f_i[f, F_NCONT] <= k:
                    break
                if c_i[c, C_STATE] == ST_STARTING and c_i[c, C_FN] == f and c_i[c, C_ACT] < 0:
                    freed[c_i[c, C_INV]] = True
                    _remove_container(st, c, t)
    for f in range(n_fn):
        if changed[f]:
            _reconcile(st, f, t)
    for i in range(n_inv):
        if freed[i]:
            # Containers handed back to the platform count against the idle-memory budget.
            _enforce_idle_budget(st, i, t)
            _retry_blocked(st, i, t)


@njit(cache=True)
def totals(st, t, out_f, out_v):
    """Write the cumulative integrals since time 0, taken up to ``t`` (>= every event handled), into
    ``out_f`` (functions x N_TF) and ``out_v`` (invokers x N_TV), without changing the state.

    Each value extends the stored integral by the current count times the time since it was last
    brought up to date, as :func:`_acct`, :func:`_progress` and :func:`_alloc_touch` would.
    """
    c_i, c_f = st[2], st[3]
    v_i, v_f, v_act = st[8], st[9], st[10]
    f_i, f_f = st[11], st[12]
    for f in range(f_i.shape[0]):
        dt = max(t - f_f[f, F_ACCT_LAST], 0.0)
        out_f[f, T_CONT_S] = f_f[f, F_CONT_S] + f_i[f, F_NCONT] * dt
        out_f[f, T_IDLE_S] = f_f[f, F_IDLE_S] + f_i[f, F_NIDLE] * dt
        out_f[f, T_INIT_S] = f_f[f, F_INIT_S] + (f_i[f, F_NSTART] + f_i[f, F_NBOUND]) * dt
        out_f[f, T_CPU_USED] = f_f[f, F_CPU_USED]
        alloc = f_f[f, F_ALLOC_ACC]
        dt = t - f_f[f, F_ALLOC_LAST]
        if dt > 0.0:
            alloc += f_i[f, F_NCONT] * f_f[f, F_SHARES] / 1024.0 * dt
        out_f[f, T_ALLOC] = alloc
    for i in range(v_f.shape[0]):
        total = 0.0
        dt = t - v_f[i, V_LAST]
        if dt > 0.0:
            for s in range(v_i[i, V_NACT]):
                c = v_act[i, s]
                work = c_f[c, C_RATE] * dt
                out_f[c_i[c, C_FN], T_CPU_USED] += work
                total += work
        out_v[i, T_INV_CPU_USED] = v_f[i, V_CPU_USED] + total
        dt = max(t - v_f[i, V_ACCT_LAST], 0.0)
        out_v[i, T_MEM_S] = v_f[i, V_MEM_S] + (v_f[i, V_MEM] - v_f[i, V_FREE]) * dt
        out_v[i, T_IDLE_MEM_S] = v_f[i, V_IDLE_MEM_S] + v_f[i, V_IDLE_MB] * dt
        out_v[i, T_INIT_MEM_S] = v_f[i, V_INIT_MEM_S] + v_f[i, V_START_MB] * dt
