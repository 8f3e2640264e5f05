/* libaside-clock.so: a `clock` fault's wall clock for a server in a container.
 *
 * Preloaded into redis-server (LD_PRELOAD), it moves what clock_gettime of the wall clocks (CLOCK_REALTIME, _COARSE, _ALARM and CLOCK_TAI),
 * gettimeofday and time return by the skew in /tmp/aside-clock, a line
 * "JUMP_MS RATE_PERMILLE SINCE_MS" the harness writes (atomically: a rename) and removes at the
 * heal: the clock reads JUMP_MS off true time from true time SINCE_MS (ms since the epoch) on,
 * and runs at RATE_PERMILLE / 1000 of true speed. The monotonic clocks are left alone, as an NTP
 * step leaves them. The rule is the library's (aside::wall::skewed_ms).
 *
 * Why not libfaketime: Debian's redis-server allocates with jemalloc, which reads the clock while
 * it initialises; libfaketime allocates while it initialises, and the recursion stops Redis at
 * start ("Unexpected recursive calls to clock_gettime()"). This shim allocates nothing and calls
 * no libc function that could: the kernel is asked through raw system calls, and the file is
 * read again at most every 10 ms (errno kept). The cost: every clock read is a system call, not
 * the vDSO's, a fraction of a microsecond per Redis command. The only symbol it takes from libc
 * is syscall(), so the host's compiler and glibc build it for any image.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define SKEW_FILE "/tmp/aside-clock"
#define REREAD_NS 10000000LL

/* The skew, published as one: a writer makes `version` odd, stores, makes it even again; a
 * reader retries until it read an even, unchanged version (a seqlock), so no thread ever sees a
 * new rate with an old start. One thread rereads at a time (`rereading`). */
static long long jump_ms, rate_permille = 1000, since_ms;
static unsigned long version;
static int rereading;
static long long read_at_ns = -1;

static int raw_clock(clockid_t clock, struct timespec *ts) {
    return (int)syscall(SYS_clock_gettime, clock, ts);
}

/* Reads one signed decimal number (at most 18 digits) at *p, moving past it and the spaces
 * after it. */
static int number(const char **p, const char *end, long long *out) {
    const char *s = *p;
    int neg = 0, digits = 0;
    long long n = 0;
    if (s < end && (*s == '-' || *s == '+')) {
        neg = *s == '-';
        s++;
    }
    if (s >= end || *s < '0' || *s > '9')
        return 0;
    while (s < end && *s >= '0' && *s <= '9') {
        if (++digits > 18)
            return 0;
        n = n * 10 + (*s++ - '0');
    }
    while (s < end && (*s == ' ' || *s == '\n'))
        s++;
    *out = neg ? -n : n;
    *p = s;
    return 1;
}

static void reread(void) {
    struct timespec mono;
    if (raw_clock(CLOCK_MONOTONIC, &mono) != 0)
        return;
    long long now_ns = (long long)mono.tv_sec * 1000000000LL + mono.tv_nsec;
    long long last = __atomic_load_n(&read_at_ns, __ATOMIC_ACQUIRE);
    if (last >= 0 && now_ns - last < REREAD_NS)
        return;
    if (__atomic_exchange_n(&rereading, 1, __ATOMIC_ACQUIRE))
        return;
    int saved_errno = errno;
    long long j = 0, r = 1000, s = 0;
    int fd = (int)syscall(SYS_openat, AT_FDCWD, SKEW_FILE, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        char buf[128];
        long n = syscall(SYS_read, fd, buf, sizeof buf);
        syscall(SYS_close, fd);
        const char *p = buf, *end = buf + (n > 0 ? n : 0);
        /* A rate is at most 65535 (the harness's bound), so the drift's product never
         * overflows. */
        if (!(number(&p, end, &j) && number(&p, end, &r) && number(&p, end, &s)) || r < 1 ||
            r > 65535)
            j = 0, r = 1000, s = 0;
    }
    errno = saved_errno;
    __atomic_add_fetch(&version, 1, __ATOMIC_ACQ_REL);
    __atomic_store_n(&jump_ms, j, __ATOMIC_RELAXED);
    __atomic_store_n(&rate_permille, r, __ATOMIC_RELAXED);
    __atomic_store_n(&since_ms, s, __ATOMIC_RELAXED);
    __atomic_add_fetch(&version, 1, __ATOMIC_ACQ_REL);
    __atomic_store_n(&read_at_ns, now_ns, __ATOMIC_RELEASE);
    __atomic_store_n(&rereading, 0, __ATOMIC_RELEASE);
}

/* Moves a true wall-clock reading by the skew. */
static void skew(struct timespec *ts) {
    reread();
    long long j, r, s;
    unsigned long v;
    do {
        v = __atomic_load_n(&version, __ATOMIC_ACQUIRE);
        j = __atomic_load_n(&jump_ms, __ATOMIC_RELAXED);
        r = __atomic_load_n(&rate_permille, __ATOMIC_RELAXED);
        s = __atomic_load_n(&since_ms, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
    } while ((v & 1) || v != __atomic_load_n(&version, __ATOMIC_RELAXED));
    if (j == 0 && r == 1000)
        return;
    long long true_ms = (long long)ts->tv_sec * 1000LL + ts->tv_nsec / 1000000;
    long long elapsed_ms = true_ms > s ? true_ms - s : 0;
    long long off_ns = (j + elapsed_ms * (r - 1000) / 1000) * 1000000LL;
    long long t_ns = (long long)ts->tv_sec * 1000000000LL + ts->tv_nsec + off_ns;
    if (t_ns < 0)
        t_ns = 0;
    ts->tv_sec = t_ns / 1000000000LL;
    ts->tv_nsec = t_ns % 1000000000LL;
}

/* The wall clocks an NTP step moves (CLOCK_TAI is CLOCK_REALTIME plus the leap seconds). */
static int wall(clockid_t clock) {
    return clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE || clock == CLOCK_TAI ||
           clock == CLOCK_REALTIME_ALARM;
}

int clock_gettime(clockid_t clock, struct timespec *ts) {
    int r = raw_clock(clock, ts);
    if (r == 0 && wall(clock))
        skew(ts);
    return r;
}

#pragma GCC diagnostic ignored "-Wnonnull-compare"
int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
    (void)tz;
    if (tv == NULL)
        return 0;
    struct timespec ts;
    int r = raw_clock(CLOCK_REALTIME, &ts);
    if (r != 0)
        return r;
    skew(&ts);
    tv->tv_sec = ts.tv_sec;
    tv->tv_usec = ts.tv_nsec / 1000;
    return 0;
}

time_t time(time_t *out) {
    struct timespec ts;
    if (raw_clock(CLOCK_REALTIME, &ts) != 0)
        return (time_t)-1;
    skew(&ts);
    if (out)
        *out = ts.tv_sec;
    return ts.tv_sec;
}
