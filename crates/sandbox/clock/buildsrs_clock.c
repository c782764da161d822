/*
 * buildsrs-clock: a frozen wall clock for reproducible builds.
 *
 * Preloaded (LD_PRELOAD) into every process of a compile (cargo, rustc and the proc macros
 * it loads, build scripts, C compilers), it answers every question about the wall-clock
 * time with SOURCE_DATE_EPOCH, exactly, so that a build script or a proc macro that embeds
 * "now" produces the same bytes on every builder. Elapsed-time clocks (CLOCK_MONOTONIC,
 * CLOCK_BOOTTIME, the CPU-time clocks) are left alone, so sleeps, timeouts and progress
 * reports still work; file timestamps are left alone too.
 *
 * Why not libfaketime: it looks its symbols up with dlsym() on first use, and rustc's
 * allocator (jemalloc) asks for the time while it initialises itself; a failed lookup then
 * allocates, and rustc deadlocks before main. This file never allocates, never calls dlsym,
 * and reaches the real clocks with the raw system call.
 *
 * Without SOURCE_DATE_EPOCH (or with a value that is not a plain number of seconds) every
 * call passes through to the real clock.
 *
 * Known limits: calls that pass through use the system call, not the vDSO, so reading the
 * monotonic clock costs a little more; a deadline computed from the frozen clock (say for
 * pthread_cond_timedwait on its default realtime clock) has already passed, so such a wait
 * returns at once; code that waits for time() to advance never sees it move and runs into
 * the build's wall-clock limit. Statically linked programs and programs that read the clock
 * without libc are not covered.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define NOT_READ (-2L)
#define NOT_SET (-1L)

static long frozen = NOT_READ;

/* SOURCE_DATE_EPOCH as seconds, or NOT_SET. Read once; racing first calls compute the same
 * value, so a relaxed store is enough. getenv() neither allocates nor locks. */
static long frozen_seconds(void) {
    long value = __atomic_load_n(&frozen, __ATOMIC_RELAXED);
    if (value != NOT_READ) {
        return value;
    }
    const char *text = getenv("SOURCE_DATE_EPOCH");
    value = NOT_SET;
    if (text != NULL && *text != '\0') {
        long parsed = 0;
        const char *p = text;
        while (*p >= '0' && *p <= '9' && parsed < 100000000000L) {
            parsed = parsed * 10 + (*p - '0');
            p++;
        }
        if (*p == '\0') {
            value = parsed;
        }
    }
    __atomic_store_n(&frozen, value, __ATOMIC_RELAXED);
    return value;
}

/* glibc declares these pointers nonnull, which lets the compiler drop a NULL check; passing
 * the pointer through an empty asm statement hides where it came from. */
#define LAUNDER(pointer) __asm__("" : "+r"(pointer))

static int is_wall_clock(clockid_t id) {
    return id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE || id == CLOCK_TAI ||
           id == CLOCK_REALTIME_ALARM;
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    long epoch = frozen_seconds();
    if (epoch != NOT_SET && is_wall_clock(id)) {
        /* As the kernel does for a bad pointer it can detect. */
        struct timespec *out = ts;
        LAUNDER(out);
        if (out == NULL) {
            errno = EFAULT;
            return -1;
        }
        out->tv_sec = (time_t)epoch;
        out->tv_nsec = 0;
        return 0;
    }
    return (int)syscall(SYS_clock_gettime, id, ts);
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
    long epoch = frozen_seconds();
    if (epoch == NOT_SET) {
        return (int)syscall(SYS_gettimeofday, tv, tz);
    }
    struct timeval *out = tv;
    LAUNDER(out);
    if (out != NULL) {
        out->tv_sec = (time_t)epoch;
        out->tv_usec = 0;
    }
    if (tz != NULL) {
        struct timezone *zone = tz;
        zone->tz_minuteswest = 0;
        zone->tz_dsttime = 0;
    }
    return 0;
}

time_t time(time_t *out) {
    long epoch = frozen_seconds();
    time_t now;
    if (epoch != NOT_SET) {
        now = (time_t)epoch;
    } else {
        struct timespec ts;
        syscall(SYS_clock_gettime, CLOCK_REALTIME, &ts);
        now = ts.tv_sec;
    }
    if (out != NULL) {
        *out = now;
    }
    return now;
}

int timespec_get(struct timespec *ts, int base) {
    if (base != TIME_UTC) {
        return 0;
    }
    return clock_gettime(CLOCK_REALTIME, ts) == 0 ? base : 0;
}
