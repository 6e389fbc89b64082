/*
 * loadgen.c: the load generator of wsline's benchmark suite (benchmarks/run.py).
 *
 * A single-threaded WebSocket client over plain TCP and epoll, written so that
 * it is not the bottleneck when it drives a Python server. It only ever
 * connects to (or listens on) 127.0.0.1. Client frames carry a fresh random
 * mask each (xorshift PRNG seeded from getrandom; not for cryptography).
 *
 *   loadgen rtt       --port P [--duration S] [--warmup S] [--size B] [--text]
 *       one connection: send one message, wait for its echo, repeat;
 *       rate and p50/p90/p99/p99.9 round-trip latency
 *   loadgen pipe      --port P [--window W] [--size B] [--text] ...
 *       one connection, W messages in flight: every echo sends one more
 *   loadgen bulk      --port P [--size 65536] [--window 2] [--discard] ...
 *       the same as pipe, for large messages (MB/s); with --discard the
 *       client reads each echo's header and sequence number, and has the
 *       kernel drop the rest of the payload (recv with MSG_TRUNC) instead of
 *       copying it out: the server, not the load generator, is then the
 *       side that limits the rate
 *   loadgen fanout    --port P [--conns 1000] [--window 16] ...
 *       C subscribers on /sub (each sends one message and waits for its echo,
 *       so the server has registered it), then one publisher on /pub that
 *       keeps W messages in flight: a message counts as delivered once every
 *       subscriber has it; the rate is deliveries (messages x subscribers) per s
 *   loadgen handshake --port P [--conns 16] ...
 *       N parallel connections, each: TCP connect, opening handshake, one
 *       message and its echo, closing handshake, wait for the server to close
 *       TCP; then a new connection. Rate: connections per second
 *   loadgen serve     [--port P]
 *       a reference server (echo on any path, /sub and /pub as above) used as
 *       the fixed peer of the client benchmarks and as the ceiling of the
 *       server benchmarks. Prints "PORT n" and runs until SIGTERM/SIGINT. It
 *       does not validate UTF-8 and supports no extension.
 *
 * Every client mode prints one JSON object on stdout, including the load
 * generator's own CPU time during the measured interval (getrusage), so that
 * one can tell it was not the bottleneck, and with --watch-pid PID the CPU
 * share of that process (the server) over the same interval, from /proc.
 * --cpu K pins the load generator to CPU K. Each run: connections set up,
 * --warmup seconds not counted, then --duration seconds measured. Exit
 * status 0 on success, 2 on error (the JSON then has "ok": false and "error").
 *
 * Echoed payloads are checked: each data message carries its sequence number
 * (16 hex digits) at the start, and echoes must come back in order.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define BUF_MAX ((size_t)256 << 20)   /* any single buffer */
#define MAX_FRAME ((uint64_t)64 << 20) /* largest frame accepted */
#define MAX_HEAD 16384                 /* HTTP head */
#define READ_CHUNK 16384
#define MAX_CONNS 60000
#define RING 1024       /* fan-out delivery ring; window must stay below */
#define MAX_SAMPLES (8u << 20)
#define SEQ_LEN 16

/* ------------------------------------------------------------------ utils */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t rng_state;

static uint64_t rng_next(void) { /* xorshift64* */
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static void rng_seed(void) {
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, 0) != (ssize_t)sizeof s) s = 0;
    s ^= now_ns() ^ ((uint64_t)getpid() << 32);
    rng_state = s ? s : 0x9E3779B97F4A7C15ull;
}

/* SHA-1 (RFC 3174), only for Sec-WebSocket-Accept. */
static uint32_t rol32(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1_block(uint32_t h[5], const uint8_t *p) {
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
               (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 80; i++) w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5A827999;
        } else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ED9EBA1;
        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8F1BBCDC;
        } else {
            f = b ^ c ^ d;
            k = 0xCA62C1D6;
        }
        uint32_t t = rol32(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rol32(b, 30);
        b = a;
        a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

static void sha1(const uint8_t *data, size_t len, uint8_t out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t full = len / 64;
    for (size_t i = 0; i < full; i++) sha1_block(h, data + 64 * i);
    uint8_t tail[128];
    size_t r = len % 64;
    memset(tail, 0, sizeof tail);
    memcpy(tail, data + 64 * full, r);
    tail[r] = 0x80;
    size_t tl = (r < 56) ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) tail[tl - 1 - i] = (uint8_t)(bits >> (8 * i));
    sha1_block(h, tail);
    if (tl == 128) sha1_block(h, tail + 64);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (uint8_t)(h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(h[i] >> 8);
        out[4 * i + 3] = (uint8_t)h[i];
    }
}

/* base64 of n bytes into out (needs 4*ceil(n/3)+1 bytes); returns the length. */
static size_t base64(const uint8_t *in, size_t n, char *out, size_t cap) {
    static const char tb[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t need = 4 * ((n + 2) / 3) + 1;
    if (cap < need) return 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n) v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n) v |= in[i + 2];
        out[o++] = tb[(v >> 18) & 63];
        out[o++] = tb[(v >> 12) & 63];
        out[o++] = (i + 1 < n) ? tb[(v >> 6) & 63] : '=';
        out[o++] = (i + 2 < n) ? tb[v & 63] : '=';
    }
    out[o] = 0;
    return o;
}

static void ws_accept(const char *key, char out[32]) {
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    uint8_t tmp[128], dig[20];
    size_t kl = strlen(key);
    if (kl > 64) kl = 64;
    memcpy(tmp, key, kl);
    memcpy(tmp + kl, guid, sizeof guid - 1);
    sha1(tmp, kl + sizeof guid - 1, dig);
    base64(dig, 20, out, 32);
}

/* XOR with a 4-byte mask (starting at phase 0), in place. */
static void xor_mask(uint8_t *p, size_t n, const uint8_t m[4]) {
    uint64_t m8;
    uint8_t mm[8] = {m[0], m[1], m[2], m[3], m[0], m[1], m[2], m[3]};
    memcpy(&m8, mm, 8);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        v ^= m8;
        memcpy(p + i, &v, 8);
    }
    for (; i < n; i++) p[i] ^= m[i & 3];
}

/* ---------------------------------------------------------------- buffers */

typedef struct {
    uint8_t *p;
    size_t off, len, cap; /* pending bytes are p[off..len) */
} buf_t;

static int buf_reserve(buf_t *b, size_t n) {
    if (b->off == b->len) b->off = b->len = 0;
    if (b->cap - b->len >= n) return 0;
    if (b->off > 0) {
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->cap - b->len >= n) return 0;
    }
    if (n > BUF_MAX - b->len) return -1;
    size_t need = b->len + n;
    size_t nc = b->cap ? b->cap : 4096;
    while (nc < need) nc *= 2; /* need <= BUF_MAX: at most ~17 doublings */
    if (nc > BUF_MAX) nc = BUF_MAX;
    uint8_t *q = realloc(b->p, nc);
    if (!q) return -1;
    b->p = q;
    b->cap = nc;
    return 0;
}

static void buf_free(buf_t *b) {
    free(b->p);
    b->p = NULL;
    b->off = b->len = b->cap = 0;
}

/* ----------------------------------------------------------- connections */

enum { R_LISTEN, R_ECHO, R_SUB, R_PUB, R_HS };
enum { S_CONNECTING, S_HANDSHAKE, S_OPEN, S_CLOSING, S_DEAD, S_HTTP };

typedef struct conn {
    int fd, role, state, events;
    int is_server;
    int close_after_flush; /* server: close TCP once the output is flushed */
    int ready;             /* fan-out subscriber: registered */
    int pending;           /* server: on the list of connections to flush */
    buf_t in, out;
    size_t in_need; /* bytes still missing of a partial frame */
    uint64_t skip;  /* --discard: payload bytes of the current echo still to drop */
    size_t skip_len;
    int skip_op;
    uint8_t skip_head[SEQ_LEN];
    char key[32];
    uint64_t sent, recvd;
    uint64_t t_send;
    double deadline;
    int sub_idx;
    struct conn *next_dead;
    struct conn *prev, *next; /* list of live connections */
} conn_t;

static int g_epfd = -1;
static conn_t *g_dead;
static conn_t *g_live;
static int g_nconns;

/* options */
static const char *g_mode = "";
static int g_port;
static double g_duration = 3.0, g_warmup = 0.5, g_timeout = 60.0;
static size_t g_size = 32;
static int g_window = 1, g_text, g_conns = 1, g_cpu = -1, g_watch_pid = 0, g_discard;

/* results */
static int g_measuring;
static uint64_t g_msgs, g_bytes, g_timeouts;
static uint32_t *g_samples;
static size_t g_nsamples, g_samples_cap;
static char g_error[256];
static double g_last_progress;
static uint8_t *g_template; /* payload bytes (size g_size) */

/* fan-out */
static conn_t *g_pub;
static int g_ready, g_pub_started;
static uint64_t g_pub_sent, g_full;
static uint32_t g_ring[RING];

/* server side */
static conn_t **g_subs;
static int g_nsubs, g_subs_cap;
/* subscribers written to while relaying one read's worth of messages: flushed
   once afterwards (one send per subscriber per read, not per message) */
static conn_t **g_pending;
static int g_npending;
static volatile sig_atomic_t g_stop;

static void fail(const char *fmt, ...) {
    if (g_error[0]) return; /* keep the first error */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_error, sizeof g_error, fmt, ap);
    va_end(ap);
}

static void set_events(conn_t *c, int ev) {
    if (c->state == S_DEAD || c->events == ev) return;
    struct epoll_event e = {.events = (uint32_t)ev, .data.ptr = c};
    if (epoll_ctl(g_epfd, EPOLL_CTL_MOD, c->fd, &e) == 0) c->events = ev;
}

static void subs_remove(conn_t *c) {
    if (c->sub_idx < 0 || c->sub_idx >= g_nsubs || g_subs[c->sub_idx] != c) return;
    g_subs[c->sub_idx] = g_subs[g_nsubs - 1];
    g_subs[c->sub_idx]->sub_idx = c->sub_idx;
    g_nsubs--;
    c->sub_idx = -1;
}

static int subs_add(conn_t *c) {
    if (g_nsubs == g_subs_cap) {
        int nc = g_subs_cap ? g_subs_cap * 2 : 1024;
        if (nc > MAX_CONNS) return -1;
        conn_t **q = realloc(g_subs, (size_t)nc * sizeof *q);
        if (!q) return -1;
        g_subs = q;
        /* g_pending holds at most one entry per subscriber: same capacity */
        conn_t **r = realloc(g_pending, (size_t)nc * sizeof *r);
        if (!r) return -1;
        g_pending = r;
        g_subs_cap = nc;
    }
    c->sub_idx = g_nsubs;
    g_subs[g_nsubs++] = c;
    return 0;
}

/* Close and schedule for freeing (after the current batch of epoll events). */
static void conn_kill(conn_t *c, int reset) {
    if (c->state == S_DEAD) return;
    if (reset) {
        struct linger lg = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    epoll_ctl(g_epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->state = S_DEAD;
    subs_remove(c);
    if (c == g_pub) g_pub = NULL;
    if (c->prev) c->prev->next = c->next; else if (g_live == c) g_live = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    c->next_dead = g_dead;
    g_dead = c;
    g_nconns--;
}

static void free_dead(void) {
    while (g_dead) {
        conn_t *c = g_dead;
        g_dead = c->next_dead;
        buf_free(&c->in);
        buf_free(&c->out);
        free(c);
    }
}

static conn_t *conn_new(int fd, int role, int state, int ev) {
    if (g_nconns >= MAX_CONNS) return NULL;
    conn_t *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->fd = fd;
    c->role = role;
    c->state = state;
    c->sub_idx = -1;
    struct epoll_event e = {.events = (uint32_t)ev, .data.ptr = c};
    if (epoll_ctl(g_epfd, EPOLL_CTL_ADD, fd, &e) < 0) {
        free(c);
        return NULL;
    }
    c->events = ev;
    c->next = g_live;
    if (g_live) g_live->prev = c;
    g_live = c;
    g_nconns++;
    return c;
}

/* Write what is pending; returns -1 when the connection died. */
static int conn_flush(conn_t *c) {
    if (c->state == S_DEAD || c->state == S_CONNECTING) return 0;
    buf_t *b = &c->out;
    int rounds = 0;
    while (b->off < b->len && rounds++ < 64) {
        ssize_t n = send(c->fd, b->p + b->off, b->len - b->off, MSG_NOSIGNAL);
        if (n > 0) {
            b->off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            if (!c->is_server) fail("send: %s", strerror(errno));
            conn_kill(c, 1);
            return -1;
        }
    }
    if (b->off == b->len) {
        b->off = b->len = 0;
        if (c->close_after_flush) {
            conn_kill(c, 0);
            return -1;
        }
        set_events(c, EPOLLIN);
    } else {
        set_events(c, EPOLLIN | EPOLLOUT);
    }
    return 0;
}

/* Append one frame (masked when from the client side). */
static int append_frame(conn_t *c, int op, int fin, const uint8_t *payload, size_t n, int masked,
                        const char *seq) {
    uint8_t head[14];
    size_t h = 0;
    head[h++] = (uint8_t)((fin ? 0x80 : 0) | (op & 0x0F));
    uint8_t mbit = masked ? 0x80 : 0;
    if (n < 126) {
        head[h++] = (uint8_t)(mbit | n);
    } else if (n < 65536) {
        head[h++] = mbit | 126;
        head[h++] = (uint8_t)(n >> 8);
        head[h++] = (uint8_t)n;
    } else {
        head[h++] = mbit | 127;
        for (int i = 7; i >= 0; i--) head[h++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    uint8_t mask[4] = {0, 0, 0, 0};
    if (masked) {
        uint32_t r = (uint32_t)rng_next();
        memcpy(mask, &r, 4);
        memcpy(head + h, mask, 4);
        h += 4;
    }
    if (buf_reserve(&c->out, h + n) < 0) {
        fail("output buffer limit");
        return -1;
    }
    uint8_t *dst = c->out.p + c->out.len;
    memcpy(dst, head, h);
    if (n) memcpy(dst + h, payload, n);
    if (seq && n >= SEQ_LEN) memcpy(dst + h, seq, SEQ_LEN);
    if (masked) xor_mask(dst + h, n, mask);
    c->out.len += h + n;
    return 0;
}

static void seq_hex(uint64_t v, char out[SEQ_LEN]) {
    static const char hx[] = "0123456789abcdef";
    for (int i = SEQ_LEN - 1; i >= 0; i--) {
        out[i] = hx[v & 15];
        v >>= 4;
    }
}

static int seq_check(const uint8_t *p, size_t n, uint64_t expect) {
    if (n < SEQ_LEN) return n == g_size ? 0 : -1;
    char want[SEQ_LEN];
    seq_hex(expect, want);
    return memcmp(p, want, SEQ_LEN) == 0 ? 0 : -1;
}

/* Client: send data message number seq. */
static int send_msg(conn_t *c, uint64_t seq) {
    char s[SEQ_LEN];
    seq_hex(seq, s);
    c->sent++;
    c->t_send = now_ns();
    return append_frame(c, g_text ? 1 : 2, 1, g_template, g_size, 1, s);
}

/* --------------------------------------------------------------- client */

static void client_open(conn_t *c);
static void new_client(int role);

static int connect_nb(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)g_port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK); /* 127.0.0.1 only */
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

static void new_client(int role) {
    int fd = connect_nb();
    if (fd < 0) {
        fail("connect: %s", strerror(errno));
        return;
    }
    conn_t *c = conn_new(fd, role, S_CONNECTING, EPOLLOUT);
    if (!c) {
        close(fd);
        fail("too many connections");
        return;
    }
    c->deadline = now_s() + 10.0;
}

static const char *role_path(int role) {
    switch (role) {
    case R_SUB:
        return "/sub";
    case R_PUB:
        return "/pub";
    default:
        return "/";
    }
}

static void send_handshake(conn_t *c) {
    uint8_t raw[16];
    for (int i = 0; i < 16; i += 8) {
        uint64_t r = rng_next();
        memcpy(raw + i, &r, 8);
    }
    base64(raw, 16, c->key, sizeof c->key);
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                     role_path(c->role), g_port, c->key);
    if (n <= 0 || (size_t)n >= sizeof req || buf_reserve(&c->out, (size_t)n) < 0) {
        fail("handshake request");
        conn_kill(c, 1);
        return;
    }
    memcpy(c->out.p + c->out.len, req, (size_t)n);
    c->out.len += (size_t)n;
    c->state = S_HANDSHAKE;
    conn_flush(c);
}

/* Find header `name` in an HTTP head (NUL-terminated copy); value into out. */
static int find_header(const char *head, const char *name, char *out, size_t cap) {
    size_t nl = strlen(name);
    const char *line = strstr(head, "\r\n");
    int guard = 0;
    while (line && guard++ < 200) {
        line += 2;
        if (line[0] == '\r' || line[0] == 0) break;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ' || *v == '\t') v++;
            const char *e = strstr(v, "\r\n");
            size_t vl = e ? (size_t)(e - v) : strlen(v);
            while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) vl--;
            if (vl >= cap) return -1;
            memcpy(out, v, vl);
            out[vl] = 0;
            return 0;
        }
        line = strstr(line, "\r\n");
    }
    return -1;
}

/* Returns the length of the head including CRLFCRLF, 0 if incomplete, -1 if too big. */
static ssize_t head_len(buf_t *b) {
    size_t avail = b->len - b->off;
    uint8_t *p = b->p + b->off;
    void *e = memmem(p, avail, "\r\n\r\n", 4);
    if (!e) return avail > MAX_HEAD ? -1 : 0;
    size_t n = (size_t)((uint8_t *)e - p) + 4;
    return n > MAX_HEAD ? -1 : (ssize_t)n;
}

static int client_handshake_done(conn_t *c) {
    ssize_t hl = head_len(&c->in);
    if (hl == 0) return 0;
    if (hl < 0) {
        fail("response head too large");
        return -1;
    }
    char head[MAX_HEAD + 1];
    memcpy(head, c->in.p + c->in.off, (size_t)hl);
    head[hl] = 0;
    c->in.off += (size_t)hl;
    if (strncmp(head, "HTTP/1.1 101", 12) != 0) {
        char *e = strstr(head, "\r\n");
        if (e) *e = 0;
        fail("handshake refused: %.120s", head);
        return -1;
    }
    char got[256], want[32];
    ws_accept(c->key, want);
    if (find_header(head, "Sec-WebSocket-Accept", got, sizeof got) < 0 || strcmp(got, want) != 0) {
        fail("bad Sec-WebSocket-Accept");
        return -1;
    }
    if (find_header(head, "Sec-WebSocket-Extensions", got, sizeof got) == 0) {
        fail("server negotiated an extension: %s", got);
        return -1;
    }
    c->state = S_OPEN;
    client_open(c);
    return 1;
}

static void fanout_pump(void) {
    conn_t *p = g_pub;
    if (!p || p->state != S_OPEN) return;
    int guard = 0;
    while (g_pub_sent - g_full < (uint64_t)g_window && guard++ < RING) {
        if (send_msg(p, g_pub_sent) < 0) return;
        g_pub_sent++;
    }
    conn_flush(p);
}

static void client_open(conn_t *c) {
    g_last_progress = now_s();
    switch (c->role) {
    case R_ECHO:
        if (!strcmp(g_mode, "rtt")) {
            send_msg(c, 0);
        } else {
            for (int i = 0; i < g_window; i++) send_msg(c, (uint64_t)i);
        }
        break;
    case R_SUB:
    case R_HS:
        send_msg(c, 0);
        break;
    case R_PUB:
        g_pub = c;
        g_pub_started = 1;
        fanout_pump();
        break;
    }
}

static void record_latency(uint64_t ns) {
    if (g_nsamples == g_samples_cap) {
        if (g_samples_cap >= MAX_SAMPLES) return;
        size_t nc = g_samples_cap ? g_samples_cap * 2 : 65536;
        uint32_t *q = realloc(g_samples, nc * sizeof *q);
        if (!q) return;
        g_samples = q;
        g_samples_cap = nc;
    }
    g_samples[g_nsamples++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
}

/* A complete frame from the server. Returns -1 on a fatal error. */
static int client_frame(conn_t *c, int fin, int op, uint8_t *p, size_t n) {
    if (op == 9) { /* ping: answer */
        return append_frame(c, 10, 1, p, n, 1, NULL);
    }
    if (op == 10) return 0;
    if (op == 8) {
        if (c->role == R_HS && c->sent == 2) {
            c->state = S_CLOSING;
            c->deadline = now_s() + 2.0;
            return 0;
        }
        fail("the server closed the connection (close frame, role %d)", c->role);
        return -1;
    }
    if (op > 2 || !fin) {
        fail("unexpected frame: opcode %d fin %d", op, fin);
        return -1;
    }
    if (op != (g_text ? 1 : 2) || n != g_size) {
        fail("bad echo: opcode %d, %zu bytes (want %zu)", op, n, g_size);
        return -1;
    }
    g_last_progress = now_s();
    switch (c->role) {
    case R_ECHO: {
        if (seq_check(p, n, c->recvd) < 0) {
            fail("echo out of order at %" PRIu64, c->recvd);
            return -1;
        }
        c->recvd++;
        if (g_measuring) {
            g_msgs++;
            g_bytes += n;
            if (!strcmp(g_mode, "rtt")) record_latency(now_ns() - c->t_send);
        }
        return send_msg(c, c->sent);
    }
    case R_SUB: {
        if (!c->ready) {
            c->ready = 1;
            g_ready++;
            if (g_ready == g_conns) new_client(R_PUB);
            return 0;
        }
        if (seq_check(p, n, c->recvd) < 0) {
            fail("fan-out delivery out of order at %" PRIu64, c->recvd);
            return -1;
        }
        uint64_t seq = c->recvd++;
        if (g_measuring) {
            g_msgs++;
            g_bytes += n;
        }
        if (seq >= g_full && seq < g_pub_sent) {
            uint32_t *slot = &g_ring[seq % RING];
            (*slot)++;
            int guard = 0;
            while (g_full < g_pub_sent && g_ring[g_full % RING] >= (uint32_t)g_ready && guard++ < RING) {
                g_ring[g_full % RING] = 0;
                g_full++;
            }
            if (g_pub && g_pub_sent - g_full < (uint64_t)g_window) fanout_pump();
        }
        return 0;
    }
    case R_PUB:
        fail("the publisher received a message");
        return -1;
    case R_HS: {
        if (c->sent != 1) {
            fail("unexpected message");
            return -1;
        }
        uint8_t code[2] = {0x03, 0xE8}; /* 1000 */
        c->sent = 2;
        return append_frame(c, 8, 1, code, 2, 1, NULL);
    }
    }
    return 0;
}

/* ----------------------------------------------------------------- server */

static int server_frame(conn_t *c, int fin, int op, uint8_t *p, size_t n) {
    if (c->close_after_flush) return 0;
    if (op == 8) {
        size_t keep = n >= 2 ? 2 : 0;
        if (append_frame(c, 8, 1, p, keep, 0, NULL) < 0) return -1;
        c->close_after_flush = 1;
        return 0;
    }
    if (op == 9) return append_frame(c, 10, 1, p, n, 0, NULL);
    if (op == 10) return 0;
    if (op > 2) return -1;
    if (c->role == R_PUB) {
        for (int i = 0; i < g_nsubs; i++) {
            conn_t *s = g_subs[i];
            if (s->state != S_OPEN || s->close_after_flush) continue;
            if (append_frame(s, op, fin, p, n, 0, NULL) < 0) {
                conn_kill(s, 1);
                i--; /* swap-removed: look at index i again */
                continue;
            }
            if (!s->pending && g_npending < g_subs_cap) {
                s->pending = 1;
                g_pending[g_npending++] = s;
            }
        }
        return 0;
    }
    return append_frame(c, op, fin, p, n, 0, NULL);
}

static int server_http(conn_t *c) {
    ssize_t hl = head_len(&c->in);
    if (hl == 0) return 0;
    if (hl < 0) return -1;
    char head[MAX_HEAD + 1];
    memcpy(head, c->in.p + c->in.off, (size_t)hl);
    head[hl] = 0;
    c->in.off += (size_t)hl;
    if (strncmp(head, "GET ", 4) != 0) return -1;
    const char *path = head + 4;
    const char *sp = strchr(path, ' ');
    if (!sp) return -1;
    size_t pl = (size_t)(sp - path);
    char key[64], accept[32];
    if (find_header(head, "Sec-WebSocket-Key", key, sizeof key) < 0) return -1;
    ws_accept(key, accept);
    char resp[256];
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                     accept);
    if (n <= 0 || (size_t)n >= sizeof resp || buf_reserve(&c->out, (size_t)n) < 0) return -1;
    memcpy(c->out.p + c->out.len, resp, (size_t)n);
    c->out.len += (size_t)n;
    if (pl == 4 && !memcmp(path, "/pub", 4)) {
        c->role = R_PUB;
    } else if (pl == 4 && !memcmp(path, "/sub", 4)) {
        c->role = R_SUB;
        if (subs_add(c) < 0) return -1;
    } else {
        c->role = R_ECHO;
    }
    c->state = S_OPEN;
    return 1;
}

/* ------------------------------------------------------------- frame loop */

/* Parse complete frames from c->in. Returns -1 on error. */
static int parse_frames(conn_t *c) {
    buf_t *b = &c->in;
    int expect_masked = c->is_server;
    c->in_need = 0;
    int guard = 0;
    while (c->state == S_OPEN || c->state == S_CLOSING) {
        if (guard++ > 1000000) break; /* bounded; the rest waits for the next read */
        uint8_t *p = b->p + b->off;
        size_t avail = b->len - b->off;
        if (avail < 2) break;
        int b0 = p[0], b1 = p[1];
        uint64_t plen = b1 & 0x7F;
        size_t h = 2;
        if (plen == 126) {
            if (avail < 4) break;
            plen = (uint64_t)p[2] << 8 | p[3];
            h = 4;
        } else if (plen == 127) {
            if (avail < 10) break;
            plen = 0;
            for (int i = 0; i < 8; i++) plen = plen << 8 | p[2 + i];
            h = 10;
        }
        if (b0 & 0x70) {
            fail("reserved bits set");
            return -1;
        }
        if (!!(b1 & 0x80) != expect_masked) {
            fail(expect_masked ? "unmasked client frame" : "masked server frame");
            return -1;
        }
        if (plen > MAX_FRAME) {
            fail("frame too large");
            return -1;
        }
        if (expect_masked) h += 4;
        if (g_discard && !c->is_server && c->role == R_ECHO && (b0 & 0x0F) <= 2 && plen > 2 * SEQ_LEN &&
            avail >= h + SEQ_LEN && avail - h < plen) {
            /* --discard: keep the sequence number, let the kernel drop the rest */
            size_t have = avail - h;
            memcpy(c->skip_head, p + h, SEQ_LEN);
            c->skip = plen - have;
            c->skip_len = (size_t)plen;
            c->skip_op = b0 & 0x8F;
            b->off += avail;
            break;
        }
        if (avail < h || avail - h < plen) {
            c->in_need = h + (size_t)plen - avail;
            break;
        }
        uint8_t *payload = p + h;
        if (expect_masked) xor_mask(payload, (size_t)plen, p + h - 4);
        b->off += h + (size_t)plen;
        int rc = c->is_server ? server_frame(c, b0 & 0x80, b0 & 0x0F, payload, (size_t)plen)
                              : client_frame(c, b0 & 0x80, b0 & 0x0F, payload, (size_t)plen);
        if (rc < 0) return -1;
    }
    if (b->off == b->len) b->off = b->len = 0;
    return 0;
}

static void on_hs_eof(conn_t *c);

static void conn_readable(conn_t *c) {
    if (c->skip) {
        ssize_t n = recv(c->fd, NULL, c->skip < ((uint64_t)1 << 30) ? (size_t)c->skip : ((size_t)1 << 30),
                         MSG_TRUNC | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
            fail("recv: %s", strerror(errno));
            conn_kill(c, 1);
            return;
        }
        if (n == 0) {
            fail("the server closed the TCP connection");
            conn_kill(c, 1);
            return;
        }
        c->skip -= (uint64_t)n;
        if (c->skip) return;
        int op = c->skip_op;
        if (client_frame(c, op & 0x80, op & 0x0F, c->skip_head, c->skip_len) < 0 || parse_frames(c) < 0) {
            conn_kill(c, 1);
            return;
        }
        conn_flush(c);
        return;
    }
    size_t want = READ_CHUNK;
    if (c->in_need > want) want = c->in_need < ((size_t)4 << 20) ? c->in_need : ((size_t)4 << 20);
    if (buf_reserve(&c->in, want) < 0) {
        fail("input buffer limit");
        conn_kill(c, 1);
        return;
    }
    ssize_t n = recv(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len, 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        if (c->role == R_HS && c->state == S_CLOSING) {
            on_hs_eof(c);
            return;
        }
        if (!c->is_server) fail("recv: %s", strerror(errno));
        conn_kill(c, 1);
        return;
    }
    if (n == 0) {
        if (c->is_server) {
            conn_kill(c, 0);
        } else if (c->role == R_HS && c->state == S_CLOSING) {
            on_hs_eof(c);
        } else {
            fail("the server closed the TCP connection");
            conn_kill(c, 1);
        }
        return;
    }
    c->in.len += (size_t)n;
    int rc = 0;
    if (c->state == S_HTTP) {
        rc = server_http(c);
        if (rc > 0) rc = parse_frames(c);
    } else if (c->state == S_HANDSHAKE) {
        rc = client_handshake_done(c);
        if (rc > 0) rc = parse_frames(c);
    } else {
        rc = parse_frames(c);
    }
    if (rc < 0) {
        conn_kill(c, 1);
        return;
    }
    conn_flush(c);
}

static void on_hs_eof(conn_t *c) {
    if (g_measuring) g_msgs++;
    g_last_progress = now_s();
    conn_kill(c, 0);
    new_client(R_HS);
}

static void conn_event(conn_t *c, uint32_t ev) {
    if (c->state == S_DEAD) return;
    if (c->state == S_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0) err = errno;
        if (err == EINPROGRESS) return;
        if (err) {
            fail("connect: %s", strerror(err));
            conn_kill(c, 1);
            return;
        }
        set_events(c, EPOLLIN);
        send_handshake(c);
        return;
    }
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) conn_readable(c);
    if (c->state != S_DEAD && (ev & EPOLLOUT)) conn_flush(c);
}

/* ----------------------------------------------------------------- modes */

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec * 1e-6;
}

/* CPU seconds (user + system) used so far by process pid, from /proc; -1 on error. */
static double proc_cpu_seconds(int pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p) return -1;
    p++;
    /* fields after ")": 3 state ... 14 utime 15 stime */
    unsigned long long ut = 0, st = 0;
    int field = 2;
    char *save = NULL;
    for (char *tok = strtok_r(p, " ", &save); tok && field < 15; tok = strtok_r(NULL, " ", &save)) {
        field++;
        if (field == 14) ut = strtoull(tok, NULL, 10);
        if (field == 15) st = strtoull(tok, NULL, 10);
    }
    if (field < 15) return -1;
    long hz = sysconf(_SC_CLK_TCK);
    return (double)(ut + st) / (double)(hz > 0 ? hz : 100);
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static double pct_us(double q) {
    if (!g_nsamples) return -1;
    size_t i = (size_t)(q * (double)(g_nsamples - 1) + 0.5);
    if (i >= g_nsamples) i = g_nsamples - 1;
    return g_samples[i] / 1000.0;
}

static void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

static int run_client(void) {
    int role = R_ECHO;
    if (!strcmp(g_mode, "fanout")) {
        role = R_SUB;
        if (g_window < 1 || g_window >= RING) {
            fprintf(stderr, "fan-out window must be 1..%d\n", RING - 1);
            return 2;
        }
    } else if (!strcmp(g_mode, "handshake")) {
        role = R_HS;
    } else if (strcmp(g_mode, "rtt") && strcmp(g_mode, "pipe") && strcmp(g_mode, "bulk")) {
        fprintf(stderr, "unknown mode %s\n", g_mode);
        return 2;
    }
    if (!strcmp(g_mode, "rtt")) g_window = 1;
    if (g_window < 1 || g_window > 100000) {
        fprintf(stderr, "bad window\n");
        return 2;
    }
    int nconn = (role == R_SUB || role == R_HS) ? g_conns : 1;
    if (nconn < 1 || nconn > MAX_CONNS - 16) {
        fprintf(stderr, "bad --conns\n");
        return 2;
    }
    g_template = malloc(g_size ? g_size : 1);
    if (!g_template) return 2;
    for (size_t i = 0; i < g_size; i++) g_template[i] = (uint8_t)('a' + i % 26);

    double t_start = now_s();
    double setup_deadline = t_start + g_timeout;
    int started = 0, opened = 0;
    double t_measure = 0, t_end = 0, cpu0 = 0, peer0 = -1;
    const int batch = 64; /* connections opened at once during setup */
    struct epoll_event evs[512];
    g_last_progress = t_start;

    while (!g_error[0]) {
        double now = now_s();
        /* open connections gradually (fan-out) or all at once */
        if (role == R_SUB) {
            int inflight = opened - g_ready;
            while (opened < nconn && inflight < batch) {
                new_client(R_SUB);
                opened++;
                inflight++;
            }
        } else if (!opened) {
            for (int i = 0; i < nconn; i++) new_client(role);
            opened = nconn;
        }
        /* phases: setup, warm-up, measurement */
        int setup_done = role == R_SUB ? g_pub_started : 1;
        if (setup_done && !started) {
            started = 1;
            t_measure = now + g_warmup;
            g_last_progress = now;
        }
        if (started && !g_measuring && now >= t_measure) {
            g_measuring = 1;
            cpu0 = cpu_seconds();
            if (g_watch_pid > 0) peer0 = proc_cpu_seconds(g_watch_pid);
            t_measure = now;
            t_end = now + g_duration;
        }
        if (g_measuring && now >= t_end) break;
        if (!started && now > setup_deadline) {
            fail("setup timed out (%d of %d subscribers ready)", g_ready, nconn);
            break;
        }
        if (started && now - g_last_progress > 5.0) {
            fail("no progress for 5 s");
            break;
        }
        if (role == R_HS) {
            /* a server that does not close TCP within 2 s of its close frame
               (or a connection stuck for 10 s) is dropped and replaced */
            int guard = 0, replace = 0;
            conn_t *nxt = NULL;
            for (conn_t *c = g_live; c && guard++ < MAX_CONNS; c = nxt) {
                nxt = c->next; /* conn_kill unlinks c */
                if (c->state == S_DEAD || now < c->deadline) continue;
                if (c->state != S_CLOSING) {
                    fail("connection stalled before its closing handshake");
                    break;
                }
                g_timeouts++;
                conn_kill(c, 1);
                replace++;
            }
            for (int i = 0; i < replace; i++) new_client(R_HS);
        }
        double next = started ? (g_measuring ? t_end : t_measure) : now + 0.1;
        int ms = (int)((next - now) * 1000.0) + 1;
        if (ms > 100) ms = 100;
        if (ms < 1) ms = 1;
        int n = epoll_wait(g_epfd, evs, 512, ms);
        if (n < 0 && errno != EINTR) {
            fail("epoll_wait: %s", strerror(errno));
            break;
        }
        for (int i = 0; i < n; i++) conn_event((conn_t *)evs[i].data.ptr, evs[i].events);
        free_dead();
    }
    double t1 = now_s();
    double cpu1 = cpu_seconds();
    double peer1 = (g_watch_pid > 0 && peer0 >= 0) ? proc_cpu_seconds(g_watch_pid) : -1;
    double secs = g_measuring ? t1 - t_measure : 0;
    if (g_nsamples) qsort(g_samples, g_nsamples, sizeof *g_samples, cmp_u32);
    if (!g_error[0] && g_measuring && g_msgs == 0) fail("no message during the measurement");
    int ok = !g_error[0] && g_measuring;
    printf("{\"ok\": %s, \"mode\": ", ok ? "true" : "false");
    json_string(g_mode);
    printf(", \"size\": %zu, \"window\": %d, \"conns\": %d, \"text\": %s", g_size, g_window, nconn,
           g_text ? "true" : "false");
    printf(", \"secs\": %.6f, \"msgs\": %" PRIu64 ", \"bytes\": %" PRIu64, secs, g_msgs, g_bytes);
    printf(", \"rate\": %.3f, \"mbps\": %.3f", secs > 0 ? (double)g_msgs / secs : 0.0,
           secs > 0 ? (double)g_bytes / secs / 1e6 : 0.0);
    printf(", \"cpu\": %.4f, \"cpu_share\": %.4f", cpu1 - cpu0, secs > 0 ? (cpu1 - cpu0) / secs : 0.0);
    if (peer0 >= 0 && peer1 >= 0 && secs > 0) printf(", \"server_cpu_share\": %.4f", (peer1 - peer0) / secs);
    printf(", \"samples\": %zu", g_nsamples);
    if (g_nsamples)
        printf(", \"p50_us\": %.2f, \"p90_us\": %.2f, \"p99_us\": %.2f, \"p999_us\": %.2f, \"max_us\": %.2f",
               pct_us(0.5), pct_us(0.9), pct_us(0.99), pct_us(0.999), pct_us(1.0));
    printf(", \"timeouts\": %" PRIu64, g_timeouts);
    if (g_error[0]) {
        printf(", \"error\": ");
        json_string(g_error);
    }
    printf("}\n");
    fflush(stdout);
    return ok ? 0 : 2;
}

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static int run_server(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return 2;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)g_port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 4096) < 0) {
        perror("bind/listen");
        return 2;
    }
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    static conn_t listener;
    listener.fd = fd;
    listener.role = R_LISTEN;
    listener.state = S_OPEN;
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = &listener};
    if (epoll_ctl(g_epfd, EPOLL_CTL_ADD, fd, &e) < 0) return 2;
    struct sigaction act;
    memset(&act, 0, sizeof act);
    act.sa_handler = on_signal;
    sigaction(SIGTERM, &act, NULL);
    sigaction(SIGINT, &act, NULL);
    signal(SIGPIPE, SIG_IGN);
    printf("PORT %d\n", ntohs(sa.sin_port));
    fflush(stdout);
    struct epoll_event evs[512];
    while (!g_stop) {
        int n = epoll_wait(g_epfd, evs, 512, 200);
        if (n < 0 && errno != EINTR) break;
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (c == &listener) {
                for (int k = 0; k < 256; k++) {
                    int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (cfd < 0) break;
                    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conn_t *nc = conn_new(cfd, R_ECHO, S_HTTP, EPOLLIN);
                    if (!nc) {
                        close(cfd);
                        continue;
                    }
                    nc->is_server = 1;
                }
                continue;
            }
            g_error[0] = 0; /* server errors only concern one connection */
            conn_event(c, evs[i].events);
            /* relayed frames: one flush per subscriber (dead ones are still
               allocated until free_dead below, and are skipped by conn_flush) */
            for (int k = 0; k < g_npending; k++) {
                g_pending[k]->pending = 0;
                conn_flush(g_pending[k]);
            }
            g_npending = 0;
        }
        free_dead();
    }
    return 0;
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen rtt|pipe|bulk|fanout|handshake|serve --port P [--duration S] [--warmup S]\n"
            "       [--size BYTES] [--window W] [--conns N] [--text] [--discard] [--cpu K] [--timeout S]\n"
            "       [--watch-pid PID]   (also report that process's CPU share: the server's)\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage();
        return 2;
    }
    g_mode = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--discard")) {
            g_discard = 1;
            continue;
        }
        if (!strcmp(a, "--text")) {
            g_text = 1;
            continue;
        }
        if (!v) {
            usage();
            return 2;
        }
        i++;
        if (!strcmp(a, "--port"))
            g_port = atoi(v);
        else if (!strcmp(a, "--duration"))
            g_duration = atof(v);
        else if (!strcmp(a, "--warmup"))
            g_warmup = atof(v);
        else if (!strcmp(a, "--timeout"))
            g_timeout = atof(v);
        else if (!strcmp(a, "--size"))
            g_size = (size_t)strtoull(v, NULL, 10);
        else if (!strcmp(a, "--window"))
            g_window = atoi(v);
        else if (!strcmp(a, "--conns"))
            g_conns = atoi(v);
        else if (!strcmp(a, "--cpu"))
            g_cpu = atoi(v);
        else if (!strcmp(a, "--watch-pid"))
            g_watch_pid = atoi(v);
        else {
            usage();
            return 2;
        }
    }
    if (g_port < 0 || g_port > 65535 || g_size > (64u << 20) || g_duration <= 0 || g_duration > 3600 ||
        g_warmup < 0 || g_warmup > 600 || g_timeout <= 0) {
        usage();
        return 2;
    }
    if (strcmp(g_mode, "serve") && (g_port == 0 || g_size < SEQ_LEN)) {
        fprintf(stderr, "--port is required and --size must be at least %d\n", SEQ_LEN);
        return 2;
    }
    if (g_cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(g_cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set) < 0) perror("sched_setaffinity");
    }
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    rng_seed();
    g_epfd = epoll_create1(EPOLL_CLOEXEC);
    if (g_epfd < 0) return 2;
    if (!strcmp(g_mode, "serve")) return run_server();
    return run_client();
}
