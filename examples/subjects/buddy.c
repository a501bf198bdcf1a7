/*
 * buddy.c - a small buddy page allocator with kmalloc and slab caches on top, speaking the
 * kmemspec subject protocol, version 1 (../shared/design/oracle-protocol.md; JSON Lines on
 * stdin/stdout). It is an example subject for `kmemspec oracle`: a correct allocator by
 * default, and one deliberately broken variant per -DBUG_* macro (see README.md).
 *
 * What it models, after Linux 6.12.117 (file names are the kernel's):
 *   - per-zone free lists per order, split by expand() and merged by __free_one_page()
 *     without crossing a zone boundary (mm/page_alloc.c);
 *   - gfp_zone() (include/linux/gfp.h), zonelists ordered by node distance, highest zone
 *     first within a node (build_zonelists), __GFP_THISNODE;
 *   - the min watermark plus lowmem_reserve[highest_zoneidx], with the reserve arithmetic of
 *     __zone_watermark_ok() for __GFP_HIGH and non-blocking callers, and no watermark for
 *     __GFP_MEMALLOC without __GFP_NOMEMALLOC (gfp_pfmemalloc_allowed);
 *   - kmalloc-8 .. kmalloc-8192 and dma-kmalloc-* caches with the kernel's size_index table
 *     (mm/slab_common.c), kmalloc_large() above KMALLOC_MAX_CACHE_SIZE (order get_order());
 *   - kmem_cache_create/alloc/free/destroy with per-node partial slab lists (mm/slub.c, much
 *     simplified: a slab is one block of pages, its free objects are a bitmap).
 * It never sleeps (it has no reclaim), so no answer carries "slept".
 *
 * Cost per request does not grow with memory size or live objects: free lists are doubly
 * linked through per-page arrays, pfn -> zone is a binary search over the zones, a free
 * object is found by scanning at most 8 words of a slab's bitmap.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ GFP (spec/gfp.py) --- */
#define G_DMA 0x1u
#define G_HIGHMEM 0x2u
#define G_DMA32 0x4u
#define G_MOVABLE 0x8u
#define G_RECLAIMABLE 0x10u
#define G_HIGH 0x20u
#define G_IO 0x40u
#define G_FS 0x80u
#define G_ZERO 0x100u
#define G_DIRECT_RECLAIM 0x400u
#define G_KSWAPD_RECLAIM 0x800u
#define G_WRITE 0x1000u
#define G_NOWARN 0x2000u
#define G_RETRY_MAYFAIL 0x4000u
#define G_NOFAIL 0x8000u
#define G_NORETRY 0x10000u
#define G_MEMALLOC 0x20000u
#define G_COMP 0x40000u
#define G_NOMEMALLOC 0x80000u
#define G_HARDWALL 0x100000u
#define G_THISNODE 0x200000u
#define G_ACCOUNT 0x400000u
#define G_ZEROTAGS 0x800000u
#define G_NO_OBJ_EXT 0x1000000u
#define G_RECLAIM (G_DIRECT_RECLAIM | G_KSWAPD_RECLAIM)
#define GFP_ATOMIC (G_HIGH | G_KSWAPD_RECLAIM)
#define GFP_KERNEL (G_RECLAIM | G_IO | G_FS)
#define GFP_USER (G_RECLAIM | G_IO | G_FS | G_HARDWALL)
#define GFP_HIGHUSER (GFP_USER | G_HIGHMEM)
#define GFP_HIGHUSER_MOVABLE (GFP_HIGHUSER | G_MOVABLE)
#define GFP_TRANSHUGE_LIGHT \
    ((GFP_HIGHUSER_MOVABLE | G_COMP | G_NOMEMALLOC | G_NOWARN) & ~G_RECLAIM)

static const struct { const char *name; unsigned bits; } gfp_names[] = {
    {"GFP_ATOMIC", GFP_ATOMIC}, {"GFP_KERNEL", GFP_KERNEL},
    {"GFP_KERNEL_ACCOUNT", GFP_KERNEL | G_ACCOUNT},
    {"GFP_NOWAIT", G_KSWAPD_RECLAIM | G_NOWARN}, {"GFP_NOIO", G_RECLAIM},
    {"GFP_NOFS", G_RECLAIM | G_IO}, {"GFP_USER", GFP_USER}, {"GFP_DMA", G_DMA},
    {"GFP_DMA32", G_DMA32}, {"GFP_HIGHUSER", GFP_HIGHUSER},
    {"GFP_HIGHUSER_MOVABLE", GFP_HIGHUSER_MOVABLE},
    {"GFP_TRANSHUGE_LIGHT", GFP_TRANSHUGE_LIGHT},
    {"GFP_TRANSHUGE", GFP_TRANSHUGE_LIGHT | G_DIRECT_RECLAIM},
    {"__GFP_DMA", G_DMA}, {"__GFP_HIGHMEM", G_HIGHMEM}, {"__GFP_DMA32", G_DMA32},
    {"__GFP_MOVABLE", G_MOVABLE}, {"__GFP_RECLAIMABLE", G_RECLAIMABLE},
    {"__GFP_HIGH", G_HIGH}, {"__GFP_IO", G_IO}, {"__GFP_FS", G_FS}, {"__GFP_ZERO", G_ZERO},
    {"__GFP_DIRECT_RECLAIM", G_DIRECT_RECLAIM}, {"__GFP_KSWAPD_RECLAIM", G_KSWAPD_RECLAIM},
    {"__GFP_RECLAIM", G_RECLAIM}, {"__GFP_WRITE", G_WRITE}, {"__GFP_NOWARN", G_NOWARN},
    {"__GFP_RETRY_MAYFAIL", G_RETRY_MAYFAIL}, {"__GFP_NOFAIL", G_NOFAIL},
    {"__GFP_NORETRY", G_NORETRY}, {"__GFP_MEMALLOC", G_MEMALLOC}, {"__GFP_COMP", G_COMP},
    {"__GFP_NOMEMALLOC", G_NOMEMALLOC}, {"__GFP_HARDWALL", G_HARDWALL},
    {"__GFP_THISNODE", G_THISNODE}, {"__GFP_ACCOUNT", G_ACCOUNT},
    {"__GFP_ZEROTAGS", G_ZEROTAGS},
    /* 0 in the pinned config (no KASAN_HW_TAGS, no LOCKDEP): accepted, add nothing */
    {"__GFP_SKIP_ZERO", 0}, {"__GFP_SKIP_KASAN", 0}, {"__GFP_NOLOCKDEP", 0},
    {"__GFP_NO_OBJ_EXT", G_NO_OBJ_EXT},
};

/* Parse "GFP_KERNEL|__GFP_ZERO" (or "none"); 0x... tokens are ignored. 0 on success. */
static int parse_gfp(const char *s, unsigned *out)
{
    unsigned g = 0;
    if (strcmp(s, "none") == 0) { *out = 0; return 0; }
    if (!*s) return -1;
    while (*s) {
        const char *e = strchr(s, '|');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
            /* a bit the kernel prints without a name: ignored, as the protocol asks */
        } else {
            size_t i, found = 0;
            for (i = 0; i < sizeof gfp_names / sizeof gfp_names[0]; i++)
                if (strlen(gfp_names[i].name) == n && memcmp(gfp_names[i].name, s, n) == 0) {
                    g |= gfp_names[i].bits;
                    found = 1;
                    break;
                }
            if (!found) return -1;
        }
        s += n;
        if (*s == '|') s++;
    }
    *out = g;
    return 0;
}

enum { ZONE_DMA, ZONE_DMA32, ZONE_NORMAL, NZONETYPES };
static const char *zone_type_names[NZONETYPES] = {"DMA", "DMA32", "Normal"};

/* gfp_zone() (include/linux/gfp.h): the highest zone the mask may use. __GFP_HIGHMEM|
 * __GFP_MOVABLE would be ZONE_MOVABLE, which these machines do not have: Normal. That is also
 * the right lowmem_reserve index: an empty ZONE_MOVABLE adds no pages to the running sum of
 * setup_per_zone_lowmem_reserve() (mm/page_alloc.c), so lowmem_reserve[ZONE_MOVABLE] equals
 * lowmem_reserve[ZONE_NORMAL]. */
static int gfp_zone(unsigned gfp)
{
#ifdef BUG_DMA_ZONE
    /* defect: "any DMA bit means the 32-bit zone" -- GFP_DMA may get DMA32 pages */
    if (gfp & (G_DMA | G_DMA32)) return ZONE_DMA32;
#else
    if (gfp & G_DMA) return ZONE_DMA;
    if (gfp & G_DMA32) return ZONE_DMA32;
#endif
    return ZONE_NORMAL;
}

/* ------------------------------------------------------------------------ output --- */
static char obuf[1 << 16];
static size_t olen;

static void out(const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(obuf + olen, sizeof obuf - olen, fmt, ap);
    va_end(ap);
    if (n > 0) olen += (size_t)n < sizeof obuf - olen ? (size_t)n : sizeof obuf - olen - 1;
}

static void flush_answer(void)
{
    obuf[olen++] = '\n';
    fwrite(obuf, 1, olen, stdout);
    fflush(stdout);
    olen = 0;
}

/* --------------------------------------------------------------------- JSON parser --- */
/* A small DOM for one line: objects, arrays, strings, integers, null, booleans. Numbers
 * with a fraction or exponent are J_OTHER; integers beyond 64 bits are clamped with big=1. */
enum { J_NULL, J_BOOL, J_INT, J_STR, J_ARR, J_OBJ, J_OTHER };
typedef struct {
    int type, big;
    long long i;
    const char *s;     /* J_STR: decoded, NUL-terminated */
    const char *key;   /* member name when inside an object */
    int first, next;   /* children list; -1 ends */
} jv;

static jv *jpool;
static int jn, jcap;
static char *sbuf;  /* decoded strings of the current line */
static size_t sused, scap;
static const char *jp;

static int jnew(int type)
{
    if (jn == jcap) {
        jcap = jcap ? jcap * 2 : 256;
        jpool = realloc(jpool, (size_t)jcap * sizeof *jpool);
        if (!jpool) { perror("realloc"); exit(3); }
    }
    memset(&jpool[jn], 0, sizeof *jpool);
    jpool[jn].type = type;
    jpool[jn].first = jpool[jn].next = -1;
    return jn++;
}

static void jws(void) { while (*jp == ' ' || *jp == '\t' || *jp == '\r' || *jp == '\n') jp++; }

static const char *jstring(void)  /* at the opening quote; returns the decoded text or NULL */
{
    char *d = sbuf + sused, *start = d;
    jp++;
    for (;;) {
        char c = *jp++;
        if (c == '"') break;
        if (c == 0 || (unsigned char)c < 0x20) return NULL;
        if (c == '\\') {
            c = *jp++;
            switch (c) {
            case '"': case '\\': case '/': *d++ = c; break;
            case 'n': *d++ = '\n'; break;
            case 't': *d++ = '\t'; break;
            case 'r': *d++ = '\r'; break;
            case 'b': *d++ = '\b'; break;
            case 'f': *d++ = '\f'; break;
            case 'u': {
                int k;
                for (k = 0; k < 4; k++) {
                    char h = jp[k];
                    if (!((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') || (h >= 'A' && h <= 'F')))
                        return NULL;
                }
                jp += 4;
                *d++ = '?';  /* no protocol string needs non-ASCII */
                break;
            }
            default: return NULL;
            }
        } else {
            *d++ = c;
        }
    }
    *d++ = 0;
    sused = (size_t)(d - sbuf);
    return start;
}

static int jvalue(int depth)
{
    int v;
    if (depth > 16) return -1;
    jws();
    if (*jp == '{' || *jp == '[') {
        int obj = *jp == '{', last = -1;
        char close = obj ? '}' : ']';
        v = jnew(obj ? J_OBJ : J_ARR);
        jp++;
        jws();
        if (*jp == close) { jp++; return v; }
        for (;;) {
            const char *key = NULL;
            int c;
            jws();
            if (obj) {
                if (*jp != '"' || !(key = jstring())) return -1;
                jws();
                if (*jp++ != ':') return -1;
            }
            c = jvalue(depth + 1);
            if (c < 0) return -1;
            jpool[c].key = key;
            if (last < 0) jpool[v].first = c; else jpool[last].next = c;
            last = c;
            jws();
            if (*jp == ',') { jp++; continue; }
            if (*jp == close) { jp++; return v; }
            return -1;
        }
    }
    if (*jp == '"') {
        const char *s = jstring();
        if (!s) return -1;
        v = jnew(J_STR);
        jpool[v].s = s;
        return v;
    }
    if (strncmp(jp, "null", 4) == 0) { jp += 4; return jnew(J_NULL); }
    if (strncmp(jp, "true", 4) == 0) { jp += 4; v = jnew(J_BOOL); jpool[v].i = 1; return v; }
    if (strncmp(jp, "false", 5) == 0) { jp += 5; return jnew(J_BOOL); }
    if (*jp == '-' || (*jp >= '0' && *jp <= '9')) {
        int neg = 0, big = 0, digits = 0;
        unsigned long long u = 0;
        if (*jp == '-') { neg = 1; jp++; }
        while (*jp >= '0' && *jp <= '9') {
            unsigned d = (unsigned)(*jp++ - '0');
            if (u > (unsigned long long)(INT64_MAX - d) / 10) big = 1; else u = u * 10 + d;
            digits++;
        }
        if (!digits) return -1;
        if (*jp == '.' || *jp == 'e' || *jp == 'E') {
            jp++;
            while ((*jp >= '0' && *jp <= '9') || *jp == '+' || *jp == '-' || *jp == 'e' || *jp == 'E')
                jp++;
            return jnew(J_OTHER);
        }
        v = jnew(J_INT);
        jpool[v].big = big;
        jpool[v].i = big ? (neg ? INT64_MIN : INT64_MAX) : (neg ? -(long long)u : (long long)u);
        return v;
    }
    return -1;
}

static int jparse(const char *line, size_t len)  /* root index or -1 */
{
    int root;
    if (len + 1 > scap) {
        scap = len + 1;
        sbuf = realloc(sbuf, scap);
        if (!sbuf) { perror("realloc"); exit(3); }
    }
    jn = 0;
    sused = 0;
    jp = line;
    root = jvalue(0);
    if (root < 0) return -1;
    jws();
    return *jp ? -1 : root;
}

static int jget(int obj, const char *key)
{
    int c;
    if (obj < 0 || jpool[obj].type != J_OBJ) return -1;
    for (c = jpool[obj].first; c >= 0; c = jpool[c].next)
        if (strcmp(jpool[c].key, key) == 0) return c;
    return -1;
}

/* An integer member: 1 if present and an integer (clamped if huge), 0 if absent, -1 else. */
static int jint(int obj, const char *key, long long *out_v)
{
    int c = jget(obj, key);
    if (c < 0) return 0;
    if (jpool[c].type != J_INT) return -1;
    *out_v = jpool[c].i;
    return 1;
}

static const char *jstr(int obj, const char *key)
{
    int c = jget(obj, key);
    return c >= 0 && jpool[c].type == J_STR ? jpool[c].s : NULL;
}

static int parse_hex(const char *s, unsigned long long *v)
{
    int n = 0;
    unsigned long long x = 0;
    if (!s || s[0] != '0' || (s[1] != 'x' && s[1] != 'X')) return -1;
    for (s += 2; *s; s++, n++) {
        int d;
        if (*s >= '0' && *s <= '9') d = *s - '0';
        else if (*s >= 'a' && *s <= 'f') d = *s - 'a' + 10;
        else if (*s >= 'A' && *s <= 'F') d = *s - 'A' + 10;
        else return -1;
        if (n >= 16) return -1;
        x = x << 4 | (unsigned)d;
    }
    if (!n) return -1;
    *v = x;
    return 0;
}

/* ----------------------------------------------------------------------- machine --- */
#define MAXNODES 64
#define MAXZONES (MAXNODES * NZONETYPES)
#define MAXORD 30
#define MAXCPUS 4096

enum { K_NONE, K_FREE, K_PAGES, K_LARGE, K_SLAB };

typedef struct {
    int nid, type;
    long long start, end, min, reserve[NZONETYPES], nr_free;
    int32_t head[MAXORD + 1];  /* free list per order: zone-relative index, -1 empty */
    uint8_t *kind;             /* per page */
    int8_t *ord;               /* order of a free or allocated block's first page */
    int32_t *next, *prev;      /* free-list links; next[] holds the slab id of slab pages */
} zone_t;

static int booted, max_order, nnodes, nzones, ncpus_map;
static unsigned page_shift = 12;
static unsigned long long page_offset = 0xffff888000000000ULL;
static zone_t zones[MAXZONES];
static int zsorted[MAXZONES];               /* zone ids by start pfn, for pfn -> zone */
static int zonelist[MAXNODES][MAXZONES];    /* per preferred node: zone ids in fallback order */
static int zonelist_len[MAXNODES];
static int cpu_node[MAXCPUS];               /* -1: no such CPU */
static int node_order[MAXNODES][MAXNODES];  /* per node: nodes by distance */

static zone_t *pfn_zone(long long pfn)
{
    int lo = 0, hi = nzones - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        zone_t *z = &zones[zsorted[mid]];
        if (pfn < z->start) hi = mid - 1;
        else if (pfn >= z->end) lo = mid + 1;
        else return z;
    }
    return NULL;
}

static void list_add(zone_t *z, int32_t i, int o)
{
    z->kind[i] = K_FREE;
    z->ord[i] = (int8_t)o;
    z->prev[i] = -1;
    z->next[i] = z->head[o];
    if (z->head[o] >= 0) z->prev[z->head[o]] = i;
    z->head[o] = i;
}

static void list_del(zone_t *z, int32_t i)
{
    int o = z->ord[i];
    if (z->prev[i] >= 0) z->next[z->prev[i]] = z->next[i]; else z->head[o] = z->next[i];
    if (z->next[i] >= 0) z->prev[z->next[i]] = z->prev[i];
    z->kind[i] = K_NONE;
}

/* __free_one_page(): merge with the buddy while it is a free block of the same order inside
 * this zone (a buddy outside the zone is never looked at: merging does not cross zones). */
static void free_one(zone_t *z, long long pfn, int o)
{
    z->nr_free += 1LL << o;
    while (o < max_order) {
        long long buddy = pfn ^ (1LL << o);
        zone_t *bz = z;
        int32_t bi;
#ifdef BUG_MERGE_ACROSS_ZONES
        /* defect: page_is_buddy() without its same-zone check: the buddy is looked up in
         * whichever zone holds it, so a block can grow over a zone boundary */
        bz = pfn_zone(buddy);
        if (!bz || buddy + (1LL << o) > bz->end) break;
#else
        if (buddy < z->start || buddy + (1LL << o) > z->end) break;
#endif
        bi = (int32_t)(buddy - bz->start);
        if (bz->kind[bi] != K_FREE || bz->ord[bi] != o) break;
        list_del(bz, bi);
        bz->nr_free -= 1LL << o;
        z->nr_free += 1LL << o;
#ifdef BUG_MERGE_WRONG_HEAD
        /* defect: the merged block starts at the buddy, not at pfn & buddy */
        pfn = buddy;
#else
        pfn &= buddy;
#endif
        o++;
    }
#ifdef BUG_MERGE_ACROSS_ZONES
    {
        zone_t *h = pfn_zone(pfn);  /* the block goes on the list of its first page's zone */
        z->nr_free -= 1LL << o;
        h->nr_free += 1LL << o;
        z = h;
    }
#endif
    list_add(z, (int32_t)(pfn - z->start), o);
}

/* __rmqueue_smallest() + expand(): the smallest free block of order >= o, split down. */
static int last_split;  /* whether the last rmqueue() split a larger block */

static long long rmqueue(zone_t *z, int o)
{
    int cur;
    for (cur = o; cur <= max_order; cur++) {
        int32_t i = z->head[cur];
        long long pfn;
        if (i < 0) continue;
        list_del(z, i);
        z->nr_free -= 1LL << cur;
        pfn = z->start + i;
        last_split = cur > o;
        while (cur > o) {
            zone_t *hz = z;
            long long half;
            cur--;
#ifdef BUG_OVERLAP_AFTER_SPLIT
            /* defect: the lower half, which is handed out, goes on the free list */
            half = pfn;
#else
            half = pfn + (1LL << cur);
#endif
#ifdef BUG_MERGE_ACROSS_ZONES
            hz = pfn_zone(half);  /* a block merged over a boundary has halves in two zones */
#endif
            list_add(hz, (int32_t)(half - hz->start), cur);
            hz->nr_free += 1LL << cur;
        }
        return pfn;
    }
    return -1;
}

/* Boot: free each zone as memblock_free_all() does, in maximal naturally aligned blocks. */
static void boot_zone(zone_t *z)
{
    long long pfn = z->start;
    while (pfn < z->end) {
        int o = max_order;
#ifndef BUG_MISALIGNED_BOOT
        while (o > 0 && (pfn & ((1LL << o) - 1))) o--;
#endif
        /* defect (BUG_MISALIGNED_BOOT): blocks start at start_pfn, whatever its alignment */
        while (o > 0 && pfn + (1LL << o) > z->end) o--;
        z->nr_free += 1LL << o;
        list_add(z, (int32_t)(pfn - z->start), o);
        pfn += 1LL << o;
    }
}

/* Whether zone z may serve 2^o pages: __zone_watermark_ok() with the min watermark, the
 * reserve arithmetic of ALLOC_MIN_RESERVE (__GFP_HIGH) and ALLOC_NON_BLOCK (no direct
 * reclaim), and lowmem_reserve[highest_zoneidx]; ALLOC_NO_WATERMARKS for __GFP_MEMALLOC. */
static int watermark_ok(const zone_t *z, int o, unsigned gfp, int hz)
{
    long long min = z->min, reserve;
    if ((gfp & G_MEMALLOC) && !(gfp & G_NOMEMALLOC)) return 1;
    if (gfp & G_HIGH) {
        min -= min / 2;
        if (!(gfp & G_DIRECT_RECLAIM) && !(gfp & G_NOMEMALLOC)) min -= min / 4;
    }
#ifdef BUG_WMARK_WRONG_RESERVE
    /* defect: always the reserve against Normal-zone requests, the largest one */
    (void)hz;
    reserve = z->reserve[ZONE_NORMAL];
#else
    reserve = z->reserve[hz];
#endif
    return z->nr_free - (1LL << o) >= min + reserve;
}

/* alloc_pages_node(): walk the zonelist of the preferred node; kind marks the block's use.
 * Returns the pfn or -1. *slept is left 0: this allocator never sleeps. */
static long long alloc_pages(int o, unsigned gfp, int pref, int atomic, int kind, int *slept)
{
    int k, hz;
    if (o > max_order) return -1;
    if (atomic) gfp &= ~G_DIRECT_RECLAIM;  /* a blocking mask in atomic context: never sleep */
    hz = gfp_zone(gfp);
    for (k = 0; k < zonelist_len[pref]; k++) {
        zone_t *z = &zones[zonelist[pref][k]];
        long long pfn;
        if (z->type > hz) continue;
#ifndef BUG_THISNODE_IGNORED
        if ((gfp & G_THISNODE) && z->nid != pref) continue;
#endif
        if (!watermark_ok(z, o, gfp, hz)) continue;
        pfn = rmqueue(z, o);
        if (pfn < 0) continue;
        z->kind[pfn - z->start] = (uint8_t)kind;
        z->ord[pfn - z->start] = (int8_t)o;
#ifdef BUG_SLEEP_IN_ATOMIC
        /* defect: a split "refills" under a sleeping lock whenever the mask has any reclaim
         * bit (tests __GFP_RECLAIM instead of __GFP_DIRECT_RECLAIM, ignores the context) */
        if (last_split && (gfp & G_RECLAIM)) *slept = 1;
#endif
        (void)slept;
        return pfn;
    }
    return -1;
}

/* __free_pages() of a block whose first page is at zone index i. */
static void free_block(zone_t *z, int32_t i)
{
    int o = z->ord[i];
    z->kind[i] = K_NONE;
#ifdef BUG_LEAK_ON_FREE
    /* defect: a high-order block is freed as if it were order 0 (put_page on a non-compound
     * page): its other 2^order - 1 pages never come back */
    o = 0;
#endif
    free_one(z, z->start + i, o);
}

/* ------------------------------------------------------------------------- slab --- */
#define MAXOBJS 512
typedef struct {
    int cache, nid, inuse, prev, next;  /* prev/next: the node's partial list; -2: not on it */
    long long pfn;
    uint64_t used[MAXOBJS / 64];
} slab_t;

typedef struct {
    char *name;       /* NULL: a kmalloc cache (not nameable) or a destroyed cache */
    long long size, stride, live;
    int align, order, nobjs, dma, hnext;
    int partial[MAXNODES];
} cache_t;

static slab_t *slabs;
static int nslabs, slabcap, slab_freelist = -1;
static cache_t *caches;
static int ncaches, cachecap;
#define HBUCKETS 4096
static int hbucket[HBUCKETS];

/* kmalloc caches: [dma][index], index as kmalloc_index(): 1 = 96, 2 = 192, 3..13 = 8..8192 */
#define KMALLOC_SHIFT_HIGH 13
static int kmalloc_cache[2][KMALLOC_SHIFT_HIGH + 1];
static const int8_t kmalloc_size_index[24] = {3, 4, 5, 5, 6, 6, 6, 6, 1, 1, 1, 1,
                                              7, 7, 7, 7, 2, 2, 2, 2, 2, 2, 2, 2};

static unsigned hash(const char *s)
{
    unsigned h = 2166136261u;
    while (*s) h = (h ^ (unsigned char)*s++) * 16777619u;
    return h % HBUCKETS;
}

static int cache_lookup(const char *name)
{
    int c;
    for (c = hbucket[hash(name)]; c >= 0; c = caches[c].hnext)
        if (caches[c].name && strcmp(caches[c].name, name) == 0) return c;
    return -1;
}

static int get_order(long long size)  /* get_order(): smallest order with size <= page << order */
{
    int o = 0;
    while (((long long)1 << (page_shift + (unsigned)o)) < size) o++;
    return o;
}

static int cache_new(const char *name, long long size, int align, int dma)
{
    cache_t *c;
#ifdef BUG_CACHE_ALIGN_IGNORED
    /* defect: calculate_alignment()'s result is dropped: objects are only pointer aligned */
    int n, a = 8;
    (void)align;
#else
    int n, a = align > 8 ? align : 8;
#endif
    if (ncaches == cachecap) {
        cachecap = cachecap ? cachecap * 2 : 64;
        caches = realloc(caches, (size_t)cachecap * sizeof *caches);
        if (!caches) { perror("realloc"); exit(3); }
    }
    c = &caches[ncaches];
    memset(c, 0, sizeof *c);
    c->size = size;
    c->align = a;
    c->stride = (size + a - 1) / a * a;
    c->order = get_order(c->stride);
    c->nobjs = (int)(((long long)1 << (page_shift + (unsigned)c->order)) / c->stride);
    if (c->nobjs > MAXOBJS) c->nobjs = MAXOBJS;
    c->dma = dma;
    c->hnext = -1;
    for (n = 0; n < MAXNODES; n++) c->partial[n] = -1;
    if (name) {
        unsigned h = hash(name);
        c->name = strdup(name);
        c->hnext = hbucket[h];
        hbucket[h] = ncaches;
    }
    return ncaches++;
}

static void partial_add(cache_t *c, int s)
{
    slab_t *sl = &slabs[s];
    sl->prev = -1;
    sl->next = c->partial[sl->nid];
    if (sl->next >= 0) slabs[sl->next].prev = s;
    c->partial[sl->nid] = s;
}

static void partial_del(cache_t *c, int s)
{
    slab_t *sl = &slabs[s];
    if (sl->prev >= 0) slabs[sl->prev].next = sl->next; else c->partial[sl->nid] = sl->next;
    if (sl->next >= 0) slabs[sl->next].prev = sl->prev;
    sl->prev = sl->next = -2;
}

static unsigned long long slab_take(cache_t *c, int s)
{
    slab_t *sl = &slabs[s];
    int w, b;
    for (w = 0; w < MAXOBJS / 64; w++)
        if (~sl->used[w]) break;
    b = __builtin_ctzll(~sl->used[w]);
    sl->used[w] |= 1ULL << b;
    if (++sl->inuse == c->nobjs) partial_del(c, s);
    c->live++;
    return page_offset + ((unsigned long long)sl->pfn << page_shift) +
           (unsigned long long)((w * 64 + b) * c->stride);
}

/* allocate_slab(): a new slab's pages from the page allocator, on the node they come from. */
static int slab_new(int ci, unsigned gfp, int pref, int atomic, int *slept)
{
    cache_t *c = &caches[ci];
    unsigned pgfp = (gfp & (G_RECLAIM | G_HIGH | G_THISNODE | G_MEMALLOC | G_NOMEMALLOC | G_IO |
                            G_FS)) | (c->dma ? G_DMA : 0);
    long long pfn = alloc_pages(c->order, pgfp, pref, atomic, K_SLAB, slept);
    zone_t *z;
    slab_t *sl;
    int s, w, nobj_words, k;
    if (pfn < 0) return -1;
    if (slab_freelist >= 0) {
        s = slab_freelist;
        slab_freelist = slabs[s].next;
    } else {
        if (nslabs == slabcap) {
            slabcap = slabcap ? slabcap * 2 : 256;
            slabs = realloc(slabs, (size_t)slabcap * sizeof *slabs);
            if (!slabs) { perror("realloc"); exit(3); }
        }
        s = nslabs++;
    }
    z = pfn_zone(pfn);
    sl = &slabs[s];
    memset(sl, 0, sizeof *sl);
    sl->cache = ci;
    sl->nid = z->nid;
    sl->pfn = pfn;
    /* objects beyond nobjs are marked used so they are never handed out */
    nobj_words = MAXOBJS / 64;
    for (w = 0; w < nobj_words; w++) {
        int lo = w * 64;
        if (c->nobjs >= lo + 64) sl->used[w] = 0;
        else if (c->nobjs <= lo) sl->used[w] = ~0ULL;
        else sl->used[w] = ~0ULL << (c->nobjs - lo);
    }
    for (k = 0; k < (1 << c->order); k++) {
        int32_t i = (int32_t)(pfn - z->start) + k;
        z->kind[i] = K_SLAB;
        z->next[i] = s;
    }
    partial_add(c, s);
    return s;
}

static void slab_release(cache_t *c, int s)
{
    slab_t *sl = &slabs[s];
    zone_t *z = pfn_zone(sl->pfn);
    int32_t i = (int32_t)(sl->pfn - z->start);
    int k;
    partial_del(c, s);
    for (k = 1; k < (1 << c->order); k++) z->kind[i + k] = K_NONE;
    z->ord[i] = (int8_t)c->order;
    free_block(z, i);
    sl->cache = -1;
    sl->next = slab_freelist;
    slab_freelist = s;
}

/* slab_alloc_node(): a partial slab of the preferred node, else a new slab (from the
 * preferred node's zonelist), else, without __GFP_THISNODE, a partial slab of another node. */
static unsigned long long cache_alloc(int ci, unsigned gfp, int pref, int atomic, int *slept)
{
    cache_t *c = &caches[ci];
    int s = c->partial[pref], k;
    if (s >= 0) return slab_take(c, s);
    s = slab_new(ci, gfp, pref, atomic, slept);
    if (s >= 0) return slab_take(c, s);
    if (gfp & G_THISNODE) return 0;
    for (k = 0; k < nnodes; k++) {
        s = c->partial[node_order[pref][k]];
        if (s >= 0) return slab_take(c, s);
    }
    return 0;
}

/* Resolve a direct-map address to its page: zone and index, or NULL. */
static zone_t *addr_page(unsigned long long addr, int32_t *idx)
{
    unsigned long long phys;
    zone_t *z;
    if (addr < page_offset) return NULL;
    phys = addr - page_offset;
    if ((phys >> page_shift) > (unsigned long long)INT64_MAX) return NULL;
    z = pfn_zone((long long)(phys >> page_shift));
    if (!z) return NULL;
    *idx = (int32_t)((long long)(phys >> page_shift) - z->start);
    return z;
}

/* The slab and object index of a live object starting at addr, or -1 with *why set. */
static int find_object(unsigned long long addr, int *obj, const char **why)
{
    int32_t i;
    zone_t *z = addr_page(addr, &i);
    slab_t *sl;
    cache_t *c;
    unsigned long long off;
    int s;
    if (!z || z->kind[i] != K_SLAB) { *why = "not a slab object"; return -1; }
    s = z->next[i];
    sl = &slabs[s];
    c = &caches[sl->cache];
    off = addr - page_offset - ((unsigned long long)sl->pfn << page_shift);
    if (off % (unsigned long long)c->stride || off / (unsigned long long)c->stride >= (unsigned)c->nobjs) {
        *why = "not the start of an object";
        return -1;
    }
    *obj = (int)(off / (unsigned long long)c->stride);
    if (!(sl->used[*obj / 64] >> (*obj % 64) & 1)) { *why = "object is already free"; return -1; }
    return s;
}

static void object_free(int s, int obj)
{
    slab_t *sl = &slabs[s];
    cache_t *c = &caches[sl->cache];
    int was_full = sl->inuse == c->nobjs;
    sl->used[obj / 64] &= ~(1ULL << (obj % 64));
    sl->inuse--;
    c->live--;
    if (was_full) partial_add(c, s);
    if (sl->inuse == 0) slab_release(c, s);
}

/* kmalloc_index()/kmalloc_slab(): the size class of 1..8192 bytes (mm/slab_common.c). */
static int kmalloc_index(long long size)
{
    if (size <= 192) {
#ifdef BUG_KMALLOC_CLASS_OFF_BY_ONE
        /* defect: size / 8 - 1 rounds down where (size - 1) / 8 rounds up: 65 -> kmalloc-64 */
        if (size <= 8) return 3;
        return kmalloc_size_index[size / 8 - 1];
#else
        return kmalloc_size_index[(size - 1) / 8];
#endif
    }
    return 64 - __builtin_clzll((unsigned long long)(size - 1));  /* fls(size - 1) */
}

/* ---------------------------------------------------------------------- requests --- */
static long long seq;
static int seq_ok;

static void answer_head(void)
{
    if (seq_ok) out("{\"seq\":%lld", seq); else out("{\"seq\":null");
}

static void error(const char *fmt, ...)
{
    char msg[256];
    size_t k;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (k = 0; msg[k]; k++)
        if (msg[k] == '"' || msg[k] == '\\' || (unsigned char)msg[k] < 0x20) msg[k] = '\'';
    answer_head();
    out(",\"error\":\"%s\"}", msg);
    flush_answer();
}

static void ok(void) { answer_head(); out(",\"ok\":true}"); flush_answer(); }

static void answer_ptr(const char *key, int found, unsigned long long v, int is_addr, int slept)
{
    answer_head();
    if (!found) out(",\"%s\":null", key);
    else if (is_addr) out(",\"%s\":\"0x%llx\"", key, v);
    else out(",\"%s\":%llu", key, v);
    if (slept) out(",\"slept\":true");
    out("}");
    flush_answer();
}

/* The fields every allocating request shares: gfp, nid (-1 default), cpu (0), ctx. */
static int alloc_args(int r, unsigned *gfp, int *pref, int *atomic)
{
    const char *g = jstr(r, "gfp"), *ctx = jstr(r, "ctx");
    long long nid = -1, cpu = 0;
    if (!g || parse_gfp(g, gfp)) { error("bad or missing gfp"); return -1; }
    if (jint(r, "nid", &nid) < 0 || jint(r, "cpu", &cpu) < 0) { error("nid/cpu not an integer"); return -1; }
    if (cpu < 0 || cpu >= ncpus_map || cpu_node[cpu] < 0) { error("no cpu %lld", cpu); return -1; }
    if (nid != -1 && (nid < 0 || nid >= nnodes)) { error("no node %lld", nid); return -1; }
    if (!ctx || strcmp(ctx, "process") == 0) *atomic = 0;
    else if (!strcmp(ctx, "atomic") || !strcmp(ctx, "softirq") || !strcmp(ctx, "hardirq") ||
             !strcmp(ctx, "spinlock") || !strcmp(ctx, "preempt_disabled")) *atomic = 1;
    else { error("unknown ctx"); return -1; }
    *pref = nid >= 0 ? (int)nid : cpu_node[cpu];
    return 0;
}

static void op_alloc_pages(int r)
{
    long long o;
    unsigned gfp;
    int pref, atomic, slept = 0;
    long long pfn;
    if (jint(r, "order", &o) != 1 || o < 0) { error("bad or missing order"); return; }
    if (alloc_args(r, &gfp, &pref, &atomic)) return;
    pfn = o > max_order ? -1 : alloc_pages((int)o, gfp, pref, atomic, K_PAGES, &slept);
    answer_ptr("pfn", pfn >= 0, (unsigned long long)pfn, 0, slept);
}

static void op_free_pages(int r)
{
    long long pfn, o;
    zone_t *z;
    int32_t i;
    if (jint(r, "pfn", &pfn) != 1 || pfn < 0) { error("bad or missing pfn"); return; }
    if (jint(r, "order", &o) != 1 || o < 0) { error("bad or missing order"); return; }
    z = pfn_zone(pfn);
    if (!z) { error("free_pages(pfn 0x%llx): pfn is not in any zone", pfn); return; }
    i = (int32_t)(pfn - z->start);
#ifdef BUG_DOUBLE_FREE_ACCEPTED
    /* defect: a page that is not a live block (a double free, a page never handed out) is
     * silently ignored and answered ok, instead of being reported */
    if (z->kind[i] != K_PAGES) { ok(); return; }
#endif
    if (z->kind[i] != K_PAGES) {
        error("free_pages(pfn 0x%llx, order %lld): %s", pfn, o,
              z->kind[i] == K_FREE ? "page is already free"
              : z->kind[i] == K_NONE ? "not the first page of a live block"
                                     : "page belongs to kmalloc or a slab");
        return;
    }
#ifndef BUG_WRONG_ORDER_ACCEPTED
    if (z->ord[i] != o) {
        error("free_pages(pfn 0x%llx, order %lld): the block was allocated with order %d", pfn,
              o, z->ord[i]);
        return;
    }
#else
    /* defect: frees with the caller's order, not the one the block was allocated with */
    if (o > max_order) { error("order above max_order"); return; }
    z->ord[i] = (int8_t)o;
#endif
    free_block(z, i);
    ok();
}

static void op_kmalloc(int r)
{
    long long size;
    unsigned gfp;
    int pref, atomic, slept = 0;
    unsigned long long addr = 0;
    if (jint(r, "size", &size) != 1 || size < 0) { error("bad or missing size"); return; }
    if (alloc_args(r, &gfp, &pref, &atomic)) return;
    if (size == 0) { answer_ptr("addr", 1, 0x10, 1, 0); return; }  /* ZERO_SIZE_PTR */
    if (size > ((long long)1 << (page_shift + (unsigned)max_order))) {
        answer_ptr("addr", 0, 0, 1, 0);  /* above KMALLOC_MAX_SIZE */
        return;
    }
    if (size > 8192) {
        /* kmalloc_large(): whole pages, __GFP_COMP */
        long long pfn = alloc_pages(get_order(size), gfp, pref, atomic, K_LARGE, &slept);
        if (pfn >= 0) addr = page_offset + ((unsigned long long)pfn << page_shift);
    } else {
#ifdef BUG_KMALLOC_DMA_IGNORED
        /* defect: kmalloc_type() forgets __GFP_DMA: GFP_DMA objects come from kmalloc-*,
         * whose slabs may be any pages */
        int ci = kmalloc_cache[0][kmalloc_index(size)];
#else
        int ci = kmalloc_cache[(gfp & G_DMA) ? 1 : 0][kmalloc_index(size)];
#endif
        addr = cache_alloc(ci, gfp, pref, atomic, &slept);
    }
    answer_ptr("addr", addr != 0, addr, 1, slept);
}

static void op_kfree(int r)
{
    unsigned long long addr;
    int32_t i;
    zone_t *z;
    int obj, s;
    const char *why;
    if (parse_hex(jstr(r, "addr"), &addr)) { error("bad or missing addr"); return; }
    if (addr == 0 || addr == 0x10) { ok(); return; }  /* NULL, ZERO_SIZE_PTR */
    z = addr_page(addr, &i);
    if (z && z->kind[i] == K_LARGE) {
        if ((addr - page_offset) & ((1ULL << page_shift) - 1)) {
            error("kfree(0x%llx): inside a large kmalloc", addr);
            return;
        }
        free_block(z, i);
        ok();
        return;
    }
    s = find_object(addr, &obj, &why);
    if (s < 0) { error("kfree(0x%llx): %s", addr, why); return; }
    object_free(s, obj);
    ok();
}

static void op_cache_create(int r)
{
    const char *name = jstr(r, "name");
    long long size, align = 0;
    if (!name || !*name) { error("bad or missing name"); return; }
    if (jint(r, "size", &size) != 1) { error("bad or missing size"); return; }
    if (jint(r, "align", &align) < 0) { error("bad align"); return; }
    if (cache_lookup(name) >= 0) { error("cache %s already exists", name); return; }
    if (size < 1 || size > (8LL << page_shift)) { error("size %lld out of range", size); return; }
    if (align < 0 || align > (1LL << page_shift) || (align & (align - 1))) {
        error("align %lld is not 0 or a power of two up to the page size", align);
        return;
    }
    cache_new(name, size, (int)align, 0);
    ok();
}

static int named_cache(int r)
{
    const char *name = jstr(r, "name");
    int c = name ? cache_lookup(name) : -1;
    if (c < 0) error("unknown cache");
    return c;
}

static void op_cache_alloc(int r)
{
    unsigned gfp;
    int pref, atomic, slept = 0, c = named_cache(r);
    unsigned long long addr;
    if (c < 0 || alloc_args(r, &gfp, &pref, &atomic)) return;
    addr = cache_alloc(c, gfp & ~(G_DMA | G_DMA32 | G_HIGHMEM | G_MOVABLE), pref, atomic, &slept);
    answer_ptr("addr", addr != 0, addr, 1, slept);
}

static void op_cache_free(int r)
{
    unsigned long long addr;
    int obj, s, c = named_cache(r);
    const char *why;
    if (c < 0) return;
    if (parse_hex(jstr(r, "addr"), &addr)) { error("bad or missing addr"); return; }
    s = find_object(addr, &obj, &why);
    if (s < 0) { error("kmem_cache_free(0x%llx): %s", addr, why); return; }
    if (slabs[s].cache != c) { error("kmem_cache_free(0x%llx): wrong slab cache", addr); return; }
    object_free(s, obj);
    ok();
}

static void op_cache_destroy(int r)
{
    int c = named_cache(r), *p;
    if (c < 0) return;
    if (caches[c].live) { error("objects remaining in %s", caches[c].name); return; }
    /* no live objects means no slabs: an empty slab goes back at once */
    for (p = &hbucket[hash(caches[c].name)]; *p != c; p = &caches[*p].hnext) {}
    *p = caches[c].hnext;
    free(caches[c].name);
    caches[c].name = NULL;
    ok();
}

/* ------------------------------------------------------------------------- hello --- */
static int zone_cmp(const void *a, const void *b)
{
    long long x = zones[*(const int *)a].start, y = zones[*(const int *)b].start;
    return (x > y) - (x < y);
}

static int hello_fail(const char *why)
{
    int k;
    for (k = 0; k < nzones; k++) {
        free(zones[k].kind); free(zones[k].ord); free(zones[k].next); free(zones[k].prev);
    }
    nzones = nnodes = 0;
    error("bad hello: %s", why);
    return -1;
}

static int op_hello(int r)
{
    long long v, dist[MAXNODES][MAXNODES];
    int nodes = jget(r, "nodes"), n, c, k, j, cpus_seen = 0;
    const char *po = jstr(r, "page_offset");
    if (jint(r, "protocol", &v) == 1 && v != 1) return hello_fail("protocol is not 1");
    v = 4096;
    if (jint(r, "page_size", &v) < 0 || v < 4096 || (v & (v - 1)) || v > (1 << 20))
        return hello_fail("page_size");
    for (page_shift = 0; (1LL << page_shift) < v; page_shift++) {}
    if (jint(r, "max_order", &v) != 1 || v < 0 || v > MAXORD) return hello_fail("max_order");
    max_order = (int)v;
    if (po && parse_hex(po, &page_offset)) return hello_fail("page_offset");
    if (nodes < 0 || jpool[nodes].type != J_ARR) return hello_fail("nodes");
    for (k = 0; k < MAXCPUS; k++) cpu_node[k] = -1;
    ncpus_map = 0;
    nnodes = nzones = 0;
    for (n = jpool[nodes].first; n >= 0; n = jpool[n].next, nnodes++) {
        int zs = jget(n, "zones"), cpus = jget(n, "cpus"), z;
        if (nnodes == MAXNODES) return hello_fail("too many nodes");
        if (jint(n, "nid", &v) != 1 || v != nnodes) return hello_fail("nids must be 0..N-1 in order");
        if (cpus >= 0) {
            if (jpool[cpus].type != J_ARR) return hello_fail("cpus");
            for (c = jpool[cpus].first; c >= 0; c = jpool[c].next) {
                long long cpu = jpool[c].i;
                if (jpool[c].type != J_INT || cpu < 0 || cpu >= MAXCPUS || cpu_node[cpu] >= 0)
                    return hello_fail("cpus");
                cpu_node[cpu] = nnodes;
                if (cpu >= ncpus_map) ncpus_map = (int)cpu + 1;
                cpus_seen++;
            }
        }
        if (zs < 0 || jpool[zs].type != J_ARR) return hello_fail("zones");
        for (z = jpool[zs].first; z >= 0; z = jpool[z].next) {
            zone_t *zt = &zones[nzones];
            const char *name = jstr(z, "zone");
            long long start, pages, min;
            int lr = jget(z, "lowmem_reserve"), t, e;
            if (nzones == MAXZONES) return hello_fail("too many zones");
            memset(zt, 0, sizeof *zt);
            for (t = 0; t < NZONETYPES; t++)
                if (name && strcmp(name, zone_type_names[t]) == 0) break;
            if (t == NZONETYPES) return hello_fail("zone name");
            if (jint(z, "start_pfn", &start) != 1 || jint(z, "pages", &pages) != 1 ||
                jint(z, "min", &min) != 1 || start < 0 || pages < 0 || min < 0 ||
                pages > INT32_MAX || start > (1LL << 50))
                return hello_fail("zone start_pfn/pages/min");
            zt->nid = nnodes;
            zt->type = t;
            zt->start = start;
            zt->end = start + pages;
            zt->min = min;
            if (lr >= 0) {
                if (jpool[lr].type != J_ARR) return hello_fail("lowmem_reserve");
                for (e = jpool[lr].first, t = 0; e >= 0; e = jpool[e].next, t++) {
                    if (jpool[e].type != J_INT || jpool[e].i < 0 || t >= NZONETYPES)
                        return hello_fail("lowmem_reserve");
                    zt->reserve[t] = jpool[e].i;
                }
            }
            zt->kind = calloc((size_t)pages + 1, 1);
            zt->ord = calloc((size_t)pages + 1, 1);
            zt->next = malloc(((size_t)pages + 1) * sizeof(int32_t));
            zt->prev = malloc(((size_t)pages + 1) * sizeof(int32_t));
            nzones++;
            if (!zt->kind || !zt->ord || !zt->next || !zt->prev) return hello_fail("out of memory");
            for (t = 0; t <= MAXORD; t++) zt->head[t] = -1;
        }
    }
    if (!nnodes || !cpus_seen) return hello_fail("no nodes or no cpus");
    for (k = 0; k < nzones; k++) zsorted[k] = k;
    qsort(zsorted, (size_t)nzones, sizeof zsorted[0], zone_cmp);
    for (k = 1; k < nzones; k++)
        if (zones[zsorted[k]].start < zones[zsorted[k - 1]].end) return hello_fail("zones overlap");
    /* distance: nnodes x nnodes, default 10 local / 20 remote */
    for (k = 0; k < nnodes; k++)
        for (j = 0; j < nnodes; j++) dist[k][j] = k == j ? 10 : 20;
    if ((c = jget(r, "distance")) >= 0) {
        int row, e;
        if (jpool[c].type != J_ARR) return hello_fail("distance");
        for (row = jpool[c].first, k = 0; row >= 0; row = jpool[row].next, k++) {
            if (k >= nnodes || jpool[row].type != J_ARR) return hello_fail("distance shape");
            for (e = jpool[row].first, j = 0; e >= 0; e = jpool[e].next, j++) {
                if (j >= nnodes || jpool[e].type != J_INT) return hello_fail("distance shape");
                dist[k][j] = jpool[e].i;
            }
            if (j != nnodes) return hello_fail("distance shape");
        }
        if (k != nnodes) return hello_fail("distance shape");
    }
    /* build_zonelists(): nodes by distance (the node itself first, ties by nid), and within a
     * node the highest zone first */
    for (n = 0; n < nnodes; n++) {
        int used[MAXNODES] = {0}, len = 0;
        for (k = 0; k < nnodes; k++) {
            int best = -1;
            for (j = 0; j < nnodes; j++) {
                if (used[j]) continue;
                if (best < 0 || (j == n && best != n) ||
                    (best != n && dist[n][j] < dist[n][best])) best = j;
            }
            used[best] = 1;
            node_order[n][k] = best;
            for (j = NZONETYPES - 1; j >= 0; j--)
                for (c = 0; c < nzones; c++)
                    if (zones[c].nid == best && zones[c].type == j) zonelist[n][len++] = c;
        }
        zonelist_len[n] = len;
    }
    for (k = 0; k < nzones; k++) boot_zone(&zones[k]);
    for (k = 0; k < HBUCKETS; k++) hbucket[k] = -1;
    {
        static const int sizes[KMALLOC_SHIFT_HIGH + 1] = {0, 96, 192, 8, 16, 32, 64,
                                                          128, 256, 512, 1024, 2048, 4096, 8192};
        int d;
        for (d = 0; d < 2; d++)
            for (k = 1; k <= KMALLOC_SHIFT_HIGH; k++) kmalloc_cache[d][k] = cache_new(NULL, sizes[k], 0, d);
    }
    booted = 1;
    answer_head();
    out(",\"ok\":true,\"name\":\"cbuddy\",\"features\":[\"pages\",\"kmalloc\",\"slab\"]}");
    flush_answer();
    return 0;
}

/* -------------------------------------------------------------------------- main --- */
int main(void)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    static char stdout_buf[1 << 16];
    setvbuf(stdout, stdout_buf, _IOFBF, sizeof stdout_buf);
    while ((len = getline(&line, &cap, stdin)) >= 0) {
        int r, s;
        const char *op;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0) continue;
        seq_ok = 0;
        r = jparse(line, (size_t)len);
        if (r < 0 || jpool[r].type != J_OBJ) { error("not a JSON object"); continue; }
        s = jget(r, "seq");
        if (s >= 0 && jpool[s].type == J_INT) { seq = jpool[s].i; seq_ok = 1; }
        op = jstr(r, "op");
        if (!seq_ok) { error("missing integer seq"); continue; }
        if (!op) { error("missing op"); continue; }
        if (strcmp(op, "bye") == 0) { ok(); return 0; }
        if (strcmp(op, "hello") == 0) {
            if (booted) error("hello twice"); else op_hello(r);
            continue;
        }
        if (!booted) { error("no hello yet"); continue; }
        if (strcmp(op, "alloc_pages") == 0) op_alloc_pages(r);
        else if (strcmp(op, "free_pages") == 0) op_free_pages(r);
        else if (strcmp(op, "kmalloc") == 0) op_kmalloc(r);
        else if (strcmp(op, "kfree") == 0) op_kfree(r);
        else if (strcmp(op, "kmem_cache_create") == 0) op_cache_create(r);
        else if (strcmp(op, "kmem_cache_alloc") == 0) op_cache_alloc(r);
        else if (strcmp(op, "kmem_cache_free") == 0) op_cache_free(r);
        else if (strcmp(op, "kmem_cache_destroy") == 0) op_cache_destroy(r);
        else error("unsupported op %s", op);
    }
    fprintf(stderr, "cbuddy: end of input without bye\n");
    return 0;
}
