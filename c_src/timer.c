/*
 * timer.c - the loop's timers: one binary min-heap of deadlines in
 * milliseconds of a monotonic clock.  Starting, stopping and re-arming a
 * timer are O(log n); a loop with 100,000 timers and none due costs
 * nothing but the heap's head at each wait.
 */
#include "isd_int.h"

#include <stdlib.h>
#include <errno.h>
#include <time.h>

uint64_t isd_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void isd_timer_init(isd_timer *t, isd_timer_cb cb, void *data)
{
    t->at = 0;
    t->hidx = 0;
    t->cb = cb;
    t->data = data;
}

static void heap_set(isd_loop *l, size_t i, isd_timer *t)
{
    l->heap[i] = t;
    t->hidx = i;
}

static void heap_up(isd_loop *l, size_t i)
{
    isd_timer *t = l->heap[i];

    while (i > 1 && l->heap[i / 2]->at > t->at) {
        heap_set(l, i, l->heap[i / 2]);
        i /= 2;
    }
    heap_set(l, i, t);
}

static void heap_down(isd_loop *l, size_t i)
{
    isd_timer *t = l->heap[i];
    size_t c;

    while ((c = i * 2) <= l->nheap) {
        if (c < l->nheap && l->heap[c + 1]->at < l->heap[c]->at)
            c++;
        if (l->heap[c]->at >= t->at)
            break;
        heap_set(l, i, l->heap[c]);
        i = c;
    }
    heap_set(l, i, t);
}

void isd_timer_stop(isd_loop *l, isd_timer *t)
{
    size_t i = t->hidx;
    isd_timer *last;

    if (!i)
        return;
    t->hidx = 0;
    last = l->heap[l->nheap--];
    if (last == t)
        return;
    heap_set(l, i, last);
    if (i > 1 && l->heap[i / 2]->at > last->at)
        heap_up(l, i);
    else
        heap_down(l, i);
}

/* Put t in the heap to fire at `at` (stopping it first). */
static int timer_insert(isd_loop *l, isd_timer *t, uint64_t at)
{
    isd_timer_stop(l, t);
    if (l->nheap + 1 >= l->heapcap) {
        size_t cap = l->heapcap ? l->heapcap * 2 : 16;
        isd_timer **h = realloc(l->heap, cap * sizeof *h);
        if (!h) {
            errno = ENOMEM;
            return -1;
        }
        l->heap = h;
        l->heapcap = cap;
    }
    /* A timer armed by a timer callback never fires in the same pass. */
    if (l->in_timers && at <= l->timer_now)
        at = l->timer_now + 1;
    t->at = at;
    l->heap[++l->nheap] = t;
    t->hidx = l->nheap;
    heap_up(l, l->nheap);
    return 0;
}

int isd_timer_start(isd_loop *l, isd_timer *t, uint64_t ms)
{
    uint64_t now = isd_now_ms();

    return timer_insert(l, t, ms > UINT64_MAX - now ? UINT64_MAX : now + ms);
}

int isd_timer_repeat(isd_loop *l, isd_timer *t, uint64_t ms)
{
    uint64_t at = t->at > UINT64_MAX - ms ? UINT64_MAX : t->at + ms;
    uint64_t now = isd_now_ms();

    /* behind by a whole interval (a long callback, a busy loop): the next
     * one an interval from now, not at once (no burst of catching up, not
     * even one) */
    return timer_insert(l, t, at <= now ? now + ms : at);
}

void isd_timers_run(isd_loop *l)
{
    uint64_t now = isd_now_ms();

    l->timer_now = now;
    l->in_timers++;
    while (l->nheap && l->heap[1]->at <= now) {
        isd_timer *t = l->heap[1];
        isd_timer_stop(l, t);
        t->cb(l, t);
    }
    l->in_timers--;
}

