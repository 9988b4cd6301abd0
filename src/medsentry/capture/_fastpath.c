/*
 * medsentry fast path: walk pcap / pcapng records in a memory buffer and decode link, network and
 * transport headers of every frame into one fixed-size record per packet.
 *
 * Why C: a Python loop over packets costs ~1-3 us per packet before any work is done. This walk and the
 * flow table below are the per-packet code on the hot path; Python sees a packet only when a dissector
 * still wants its payload. Only headers are touched here: payload bytes are never copied.
 *
 * Record walk (all lengths checked against the buffer, nothing trusted):
 *   pcap   : 16-byte record header (ts_sec, ts_frac, incl_len, orig_len) + incl_len bytes
 *   pcapng : blocks (type, total_len, body, total_len); EPB (6) and SPB (3) decoded here, SHB and IDB
 *            handed back to Python (status NEED_BLOCK), any other block skipped by its length.
 * Link types: EN10MB (1) with 802.1Q / QinQ tags, 802.3 LLC/SNAP and PPPoE sessions, NULL (0) / LOOP (108),
 *   LINUX_SLL (113), LINUX_SLL2 (276), RAW (101, 12, 14), IPV4 (228), IPV6 (229).
 * Tunnels, opened (up to MAX_TUNNELS deep) so that the record describes the packet inside: IP in IP
 *   (IPv4/IPv6 protocol 4 or 41: 4in4, 6in4, 4in6, 6in6), GRE version 0 (RFC 2784/2890: IPv4, IPv6,
 *   transparent Ethernet bridging 0x6558, ERSPAN type II 0x88BE and III 0x22EB: what a switch mirrors
 *   to a remote sensor), VXLAN (RFC 7348, UDP 4789) and CAPWAP data (RFC 5415/5416, UDP 5247: a wireless
 *   controller's tunnel, carrying 802.3 frames or unencrypted 802.11 data frames with LLC/SNAP). The
 *   outer headers are not kept.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#pragma pack(push, 1)
typedef struct {
    double ts;
    uint64_t flow_hash;     /* IP: direction-independent hash of (vlan, proto, endpoints); else of src MAC */
    uint64_t frame_off;     /* frame start, as an offset into the input buffer */
    uint32_t caplen;
    uint32_t wirelen;
    uint32_t payload_off;   /* L4 payload (or L3 payload for non-IP ethertypes) within the frame */
    uint32_t payload_len;   /* bounded by caplen and by the IP/UDP length fields */
    uint32_t tcp_seq;
    uint16_t ethertype;     /* after VLAN tags; SNAP PID for non-zero SNAP OUIs (CDP: 0x2000) */
    uint16_t vlan;
    uint16_t sport;
    uint16_t dport;
    uint16_t tcp_win;
    uint8_t ipver;          /* 0, 4 or 6 */
    uint8_t proto;          /* IP protocol */
    uint8_t tcp_flags;
    uint8_t ttl;
    uint8_t dir;            /* 1 when the source is the higher endpoint of the canonical flow key */
    uint8_t status;         /* see ST_* */
    uint8_t iface;
    uint8_t linktype_ok;
    uint8_t src_mac[6];
    uint8_t dst_mac[6];
    uint8_t src_ip[16];
    uint8_t dst_ip[16];
} packet_rec;
#pragma pack(pop)

enum { ST_OK = 0, ST_MALFORMED = 1, ST_FRAGMENT = 2, ST_UNSUPPORTED = 3 };
enum { RET_NEED_DATA = 0, RET_OUT_FULL = 1, RET_CORRUPT = 2, RET_NEED_BLOCK = 3 };

#define MAX_CAPLEN (256u * 1024u)
#define MAX_BLOCK (MAX_CAPLEN + 4096u) /* the longest pcapng block read: a frame and its block's options */

/* A pcapng block length `scan_pcapng` reads, and `resync_pcapng` takes for one. */
static inline int block_len_ok(uint32_t blen) { return blen >= 12 && !(blen & 3) && blen <= MAX_BLOCK; }
#define MAX_TUNNELS 3
#define VXLAN_PORT 4789
#define CAPWAP_DATA_PORT 5247

/*
 * Why prefetch: where the next record starts depends on this one's length, so walking records is a
 * chain of dependent loads, each a cache miss (~1 per packet: the capture is far larger than any cache).
 * Asking for every line a little ahead of the walker turns that chain into a stream the memory system
 * overlaps: scanning the bench capture takes half the time.
 */
#define PREFETCH_AHEAD 2048
static inline void prefetch_ahead(const uint8_t *buf, size_t *done, size_t off, size_t len) {
    size_t until = len - off > PREFETCH_AHEAD ? off + PREFETCH_AHEAD : len;
    for (; *done < until; *done += 64) __builtin_prefetch(buf + *done);
}

static inline uint16_t be16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint32_t rd32(const uint8_t *p, int swapped) {
    uint32_t v;
    memcpy(&v, p, 4);
    return swapped ? __builtin_bswap32(v) : v;
}
static inline uint16_t rd16(const uint8_t *p, int swapped) {
    uint16_t v;
    memcpy(&v, p, 2);
    return swapped ? __builtin_bswap16(v) : v;
}

static inline uint64_t fnv1a(uint64_t h, const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* FNV-1a's low bits depend only on the low bits of the input bytes, so flows that differ in a structured
 * way (the same hosts in ward subnets 10.78.K.0/24) shared low bits: the flow table indexes by the low
 * bits (and `--workers` dealt by hash % N). MurmurHash3's finaliser mixes every bit in. Never 0. */
static uint64_t fmix64(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h ? h : 1;
}

static void flow_key(packet_rec *r) {
    size_t alen = r->ipver == 4 ? 4 : 16;
    int c = memcmp(r->src_ip, r->dst_ip, alen);
    if (c == 0) c = (int)r->sport - (int)r->dport;
    const uint8_t *lo_ip = c <= 0 ? r->src_ip : r->dst_ip, *hi_ip = c <= 0 ? r->dst_ip : r->src_ip;
    uint16_t lo_p = c <= 0 ? r->sport : r->dport, hi_p = c <= 0 ? r->dport : r->sport;
    uint8_t head[6] = {r->ipver, r->proto, (uint8_t)(r->vlan >> 8), (uint8_t)r->vlan,
                       (uint8_t)(lo_p >> 8), (uint8_t)lo_p};
    uint8_t tail[2] = {(uint8_t)(hi_p >> 8), (uint8_t)hi_p};
    uint64_t h = 14695981039346656037ULL;
    h = fnv1a(h, head, sizeof head);
    h = fnv1a(h, lo_ip, alen);
    h = fnv1a(h, hi_ip, alen);
    h = fnv1a(h, tail, sizeof tail);
    r->flow_hash = fmix64(h);
    r->dir = c > 0;
}

static void decode_link(packet_rec *r, int linktype, const uint8_t *f, uint32_t caplen, int depth);
static void decode_ethertype(packet_rec *r, const uint8_t *f, uint32_t off, uint32_t caplen, uint16_t et,
                             int depth);
static void decode_ip(packet_rec *r, const uint8_t *f, uint32_t off, uint32_t caplen, int depth);

/* The IP packet a tunnel carries at f[off..end), decoded over the outer one's addresses. */
static void decode_inner_ip(packet_rec *r, const uint8_t *f, uint32_t off, uint32_t end, int depth) {
    memset(r->src_ip, 0, sizeof r->src_ip);
    memset(r->dst_ip, 0, sizeof r->dst_ip);
    decode_ip(r, f, off, end, depth + 1);
}

/* A record's fields that come from the capture's framing; decode_frame fills in the rest. */
static inline void start_record(packet_rec *r, double ts, uint64_t frame_off, uint32_t caplen,
                                uint32_t wirelen) {
    memset(r, 0, sizeof *r);
    r->ts = ts;
    r->frame_off = frame_off;
    r->caplen = caplen;
    r->wirelen = wirelen;
}

/* Forget what was decoded of an outer packet; keep what the capture's framing says of the frame. */
static void restart_record(packet_rec *r) {
    uint8_t iface = r->iface;
    start_record(r, r->ts, r->frame_off, r->caplen, r->wirelen);
    r->iface = iface;
}

/* The Ethernet frame a tunnel carries at f[off..end): the record describes it instead of the outer
 * packet (its MACs, VLAN, addresses, ports); offsets stay counted from the start of the captured frame. */
static void decap_ethernet(packet_rec *r, const uint8_t *f, uint32_t off, uint32_t end, int depth) {
    if (depth >= MAX_TUNNELS || off >= end) { r->status = ST_MALFORMED; return; }
    restart_record(r);
    decode_link(r, 1, f + off, end - off, depth + 1);
    r->payload_off += off;
}

/* An 802.11 data frame at f[off..end) (what a CAPWAP tunnel carries natively): its addresses and, behind
 * LLC/SNAP, its packet. Frame control: type (bits 2-3) 2 = data, subtype bit 0x40 = no body (null),
 * 0x80 = QoS (2 more bytes); flags ToDS 0x01, FromDS 0x02 (both: a fourth address), protected 0x40
 * (encrypted: left alone), order 0x80 with QoS: an HT control field (4 more). 1 if the record is now the
 * frame's (or malformed), 0 if it was left as the tunnel's packet (management frames, encrypted data). */
static int decap_80211(packet_rec *r, const uint8_t *f, uint32_t off, uint32_t end, int depth) {
    if (depth >= MAX_TUNNELS || end < off + 24) { r->status = ST_MALFORMED; return 1; }
    uint8_t fc0 = f[off], fc1 = f[off + 1];
    if ((fc0 & 0x03) && !(fc1 & 0x03)) {        /* Cisco controllers swap the two bytes (the protocol */
        uint8_t t = fc0;                        /* version bits, always 0, are then in the flags byte) */
        fc0 = fc1;
        fc1 = t;
    }
    if (((fc0 >> 2) & 3) != 2 || (fc0 & 0x40) || (fc1 & 0x40)) return 0;  /* not data, no body, encrypted */
    int to_ds = fc1 & 0x01, from_ds = (fc1 & 0x02) != 0, qos = (fc0 & 0x80) != 0;
    uint32_t hdr = 24 + (to_ds && from_ds ? 6 : 0) + (qos ? 2 : 0) + (qos && (fc1 & 0x80) ? 4 : 0);
    if (end < off + hdr + 8) { r->status = ST_MALFORMED; return 1; }
    const uint8_t *a1 = f + off + 4, *a2 = f + off + 10, *a3 = f + off + 16, *a4 = f + off + 24;
    const uint8_t *da = to_ds ? a3 : a1, *sa = from_ds ? (to_ds ? a4 : a3) : a2;
    const uint8_t *llc = f + off + hdr;
    if (llc[0] != 0xaa || llc[1] != 0xaa || llc[2] != 0x03 || llc[3] || llc[4] || llc[5]) return 0;
    restart_record(r);
    r->linktype_ok = 1;
    memcpy(r->dst_mac, da, 6);
    memcpy(r->src_mac, sa, 6);
    decode_ethertype(r, f, off + hdr + 8, end, be16(llc + 6), depth + 1);
    return 1;
}

/* GRE version 0 (RFC 2784, key and sequence of RFC 2890) at f[off..end): 1 if it carried a packet that
 * was decoded instead, 0 to leave the record as the GRE packet. */
static int decode_gre(packet_rec *r, const uint8_t *f, uint32_t off, uint32_t end, int depth) {
    if (end < off + 4 || (f[off + 1] & 0x07) != 0 || (f[off] & 0x40)) return 0;  /* v1 (PPTP), routing */
    uint32_t p = off + 4 + ((f[off] & 0x80) ? 4 : 0) + ((f[off] & 0x20) ? 4 : 0) + ((f[off] & 0x10) ? 4 : 0);
    uint16_t type = be16(f + off + 2);
    if (p > end || depth >= MAX_TUNNELS) return 0;
    switch (type) {
    case 0x0800: case 0x86dd:
        decode_inner_ip(r, f, p, end, depth);
        return 1;
    case 0x6558:                                /* transparent Ethernet bridging */
        decap_ethernet(r, f, p, end, depth);
        return 1;
    case 0x88be:                                /* ERSPAN type II: an 8-byte header */
        decap_ethernet(r, f, p + 8, end, depth);
        return 1;
    case 0x22eb:                                /* ERSPAN type III: 12 bytes, 8 more with the O flag */
        if (end < p + 12) { r->status = ST_MALFORMED; return 1; }
        decap_ethernet(r, f, p + 12 + ((f[p + 11] & 0x01) ? 8 : 0), end, depth);
        return 1;
    default:
        return 0;
    }
}

/* A CAPWAP data packet at f[off..end): preamble(1) then HLEN(5 bits, in 4-byte words) RID(5) WBID(5)
 * T(1: native frame of the wireless binding, else 802.3) F(1: fragment) L W M K flags(3). 1 if the frame
 * it carries was decoded instead (fragments, management and encrypted frames are left as the UDP packet,
 * with its own flow key). */
static int decode_capwap(packet_rec *r, const uint8_t *f, uint32_t off, uint32_t end, int depth) {
    uint32_t w = be32(f + off);
    uint32_t hlen = ((w >> 19) & 0x1f) * 4, wbid = (w >> 9) & 0x1f, native = (w >> 8) & 1, frag = (w >> 7) & 1;
    if (frag || hlen < 8 || off + hlen >= end) return 0;
    if (!native) {
        decap_ethernet(r, f, off + hlen, end, depth);
        return 1;
    }
    if (wbid != 1) return 0;                    /* only the IEEE 802.11 binding is known */
    return decap_80211(r, f, off + hlen, end, depth);
}

/* Transport header at f[off..end): ports, TCP flags/seq/window, payload bounds. Returns 1 when it
 * carried a VXLAN or CAPWAP frame that was decoded instead. */
static int decode_l4(packet_rec *r, const uint8_t *f, uint32_t off, uint32_t end, int depth) {
    uint32_t len = end > off ? end - off : 0;
    if (r->proto == 6) {
        if (len < 20) { r->status = ST_MALFORMED; return 0; }
        uint32_t doff = (uint32_t)(f[off + 12] >> 4) * 4;
        if (doff < 20 || doff > len) { r->status = ST_MALFORMED; return 0; }
        r->sport = be16(f + off);
        r->dport = be16(f + off + 2);
        r->tcp_seq = be32(f + off + 4);
        r->tcp_flags = f[off + 13];
        r->tcp_win = be16(f + off + 14);
        r->payload_off = off + doff;
        r->payload_len = len - doff;
    } else if (r->proto == 17) {
        if (len < 8) { r->status = ST_MALFORMED; return 0; }
        uint32_t ulen = be16(f + off + 4);
        r->sport = be16(f + off);
        r->dport = be16(f + off + 2);
        if (ulen < 8) { r->status = ST_MALFORMED; return 0; }
        r->payload_off = off + 8;
        r->payload_len = (ulen - 8 < len - 8) ? ulen - 8 : len - 8;
        /* VXLAN: flags (I bit 0x08 set) 3 reserved, VNI 3, reserved 1; then the Ethernet frame */
        if (r->dport == VXLAN_PORT && r->payload_len >= 8 + 14 && (f[off + 8] & 0x08) && depth < MAX_TUNNELS) {
            decap_ethernet(r, f, off + 16, off + 8 + r->payload_len, depth);
            return 1;
        }
        if ((r->dport == CAPWAP_DATA_PORT || r->sport == CAPWAP_DATA_PORT) && r->payload_len >= 8
            && f[off + 8] == 0 && depth < MAX_TUNNELS)   /* preamble: version 0, type 0 (1: DTLS) */
            return decode_capwap(r, f, off + 8, off + 8 + r->payload_len, depth);
    } else if (r->proto == 1 || r->proto == 58) {
        if (len < 4) { r->status = ST_MALFORMED; return 0; }
        r->payload_off = off;
        r->payload_len = len;
    } else {
        r->payload_off = off;
        r->payload_len = len;
    }
    return 0;
}

/* Inner IP of IP-in-IP and GRE: 1 if decoded instead of the outer packet (which then keeps nothing). */
static int decode_tunnel(packet_rec *r, const uint8_t *f, uint32_t off, uint32_t end, int depth) {
    if ((r->proto == 4 || r->proto == 41) && depth < MAX_TUNNELS) {
        decode_inner_ip(r, f, off, end, depth);
        return 1;
    }
    return r->proto == 47 ? decode_gre(r, f, off, end, depth) : 0;
}

static void decode_ip(packet_rec *r, const uint8_t *f, uint32_t off, uint32_t caplen, int depth) {
    if (off >= caplen) { r->status = ST_MALFORMED; return; }
    uint8_t v = f[off] >> 4;
    if (v == 4) {
        if (caplen - off < 20) { r->status = ST_MALFORMED; return; }
        uint32_t ihl = (uint32_t)(f[off] & 0x0f) * 4, tot = be16(f + off + 2);
        if (ihl < 20 || tot < ihl || caplen - off < ihl) { r->status = ST_MALFORMED; return; }
        r->ipver = 4;
        r->ttl = f[off + 8];
        r->proto = f[off + 9];
        memcpy(r->src_ip, f + off + 12, 4);
        memcpy(r->dst_ip, f + off + 16, 4);
        uint32_t end = off + tot < caplen ? off + tot : caplen;
        uint16_t frag = be16(f + off + 6);
        if (frag & 0x1fff) {            /* a later fragment: no transport header in it */
            r->status = ST_FRAGMENT;
            r->payload_off = off + ihl;
            r->payload_len = end > off + ihl ? end - off - ihl : 0;
        } else if (decode_tunnel(r, f, off + ihl, end, depth) || decode_l4(r, f, off + ihl, end, depth)) {
            return;                     /* the record is the tunnelled packet's, its flow key too */
        }
    } else if (v == 6) {
        if (caplen - off < 40) { r->status = ST_MALFORMED; return; }
        uint32_t plen = be16(f + off + 4), end = off + 40 + plen;
        if (end > caplen) end = caplen;
        r->ipver = 6;
        r->ttl = f[off + 7];
        memcpy(r->src_ip, f + off + 8, 16);
        memcpy(r->dst_ip, f + off + 24, 16);
        uint8_t nh = f[off + 6];
        uint32_t p = off + 40;
        for (int i = 0; i < 8; i++) {   /* extension headers, bounded */
            if (nh == 0 || nh == 43 || nh == 60 || nh == 51) {
                if (end < p + 8) { r->status = ST_MALFORMED; return; }
                uint32_t hlen = nh == 51 ? ((uint32_t)f[p + 1] + 2) * 4 : ((uint32_t)f[p + 1] + 1) * 8;
                nh = f[p];
                p += hlen;
            } else if (nh == 44) {
                if (end < p + 8) { r->status = ST_MALFORMED; return; }
                uint16_t fo = be16(f + p + 2);
                nh = f[p];
                p += 8;
                if (fo & 0xfff8) { r->proto = nh; r->status = ST_FRAGMENT; return; }
            } else {
                break;
            }
        }
        r->proto = nh;
        if (p > end) { r->status = ST_MALFORMED; return; }
        if (decode_tunnel(r, f, p, end, depth) || decode_l4(r, f, p, end, depth)) return;
    } else {
        r->status = ST_MALFORMED;
        return;
    }
    if (r->status != ST_MALFORMED) flow_key(r);
}

static void decode_ethertype(packet_rec *r, const uint8_t *f, uint32_t off, uint32_t caplen, uint16_t et,
                             int depth) {
    r->ethertype = et;
    if (et == 0x8864 && caplen >= off + 8 && f[off] == 0x11 && f[off + 1] == 0) {
        uint16_t ppp = be16(f + off + 6);       /* PPPoE session (RFC 2516): 6-byte header, PPP protocol */
        if (ppp == 0x0021 || ppp == 0x0057) {
            r->ethertype = ppp == 0x0021 ? 0x0800 : 0x86dd;
            decode_ip(r, f, off + 8, caplen, depth);
            return;
        }
    }
    if (et == 0x0800 || et == 0x86dd) {
        decode_ip(r, f, off, caplen, depth);
    } else {
        r->payload_off = off;
        r->payload_len = caplen > off ? caplen - off : 0;
    }
}

static void decode_link(packet_rec *r, int linktype, const uint8_t *f, uint32_t caplen, int depth) {
    uint32_t off;
    r->linktype_ok = 1;
    switch (linktype) {
    case 1: {                                   /* Ethernet II / 802.3 */
        if (caplen < 14) { r->status = ST_MALFORMED; return; }
        memcpy(r->dst_mac, f, 6);
        memcpy(r->src_mac, f + 6, 6);
        uint16_t et = be16(f + 12);
        off = 14;
        for (int tags = 0; (et == 0x8100 || et == 0x88a8 || et == 0x9100) && tags < 4; tags++) {
            if (caplen < off + 4) { r->status = ST_MALFORMED; return; }
            if (tags == 0) r->vlan = be16(f + off) & 0x0fff;
            et = be16(f + off + 2);
            off += 4;
        }
        if (et <= 1500) {                       /* 802.3 length: LLC, maybe SNAP */
            if (caplen >= off + 8 && f[off] == 0xaa && f[off + 1] == 0xaa && f[off + 2] == 0x03) {
                uint32_t oui = ((uint32_t)f[off + 3] << 16) | ((uint32_t)f[off + 4] << 8) | f[off + 5];
                uint16_t pid = be16(f + off + 6);
                if (oui == 0) { decode_ethertype(r, f, off + 8, caplen, pid, depth); return; }
                r->ethertype = pid;
                r->payload_off = off + 8;
                r->payload_len = caplen - off - 8;
                return;
            }
            r->ethertype = 0;
            r->payload_off = off;
            r->payload_len = caplen > off ? caplen - off : 0;
            return;
        }
        decode_ethertype(r, f, off, caplen, et, depth);
        return;
    }
    case 113:                                   /* Linux cooked v1 */
        if (caplen < 16) { r->status = ST_MALFORMED; return; }
        if (be16(f + 4) == 6) memcpy(r->src_mac, f + 6, 6);
        decode_ethertype(r, f, 16, caplen, be16(f + 14), depth);
        return;
    case 276:                                   /* Linux cooked v2 */
        if (caplen < 20) { r->status = ST_MALFORMED; return; }
        if (f[11] == 6) memcpy(r->src_mac, f + 12, 6);
        decode_ethertype(r, f, 20, caplen, be16(f), depth);
        return;
    case 0: case 108: {                         /* BSD loopback: 4-byte address family */
        if (caplen < 5) { r->status = ST_MALFORMED; return; }
        decode_ethertype(r, f, 4, caplen, (f[4] >> 4) == 6 ? 0x86dd : 0x0800, depth);
        return;
    }
    case 101: case 12: case 14: case 228: case 229:
        if (caplen < 1) { r->status = ST_MALFORMED; return; }
        decode_ethertype(r, f, 0, caplen, (f[0] >> 4) == 6 ? 0x86dd : 0x0800, depth);
        return;
    default:
        r->linktype_ok = 0;
        r->status = ST_UNSUPPORTED;
    }
}

/* Every frame gets a key (`flow_hash`): an IP frame its flow's, any other (ARP, LLDP, a malformed frame)
 * its source MAC's, which `--workers` deals it by (`deal`): link-layer traffic spreads too, one
 * sender's in one shard. */
static void decode_frame(packet_rec *r, int linktype, const uint8_t *f, uint32_t caplen) {
    decode_link(r, linktype, f, caplen, 0);
    if (!r->flow_hash) {
        uint64_t mac = 0;
        memcpy(&mac, r->src_mac, 6);
        r->flow_hash = fmix64(mac ^ 0x9e3779b97f4a7c15ULL);
    }
}

/*
 * scan_pcap(buf, start, swapped, nsec, linktype, out, max_records[, stop]) -> (offset, n, ret)
 * Decodes complete records of buf[start:] that start before `stop` (default: the end of buf); offset is
 * where the next unread record starts.
 */
static PyObject *scan_pcap(PyObject *self, PyObject *args) {
    Py_buffer in, out;
    Py_ssize_t start, max_records, stop = PY_SSIZE_T_MAX;
    int swapped, nsec, linktype;
    if (!PyArg_ParseTuple(args, "y*niiiw*n|n", &in, &start, &swapped, &nsec, &linktype, &out, &max_records,
                          &stop))
        return NULL;
    const uint8_t *buf = in.buf;
    size_t len = (size_t)in.len, off = start < 0 ? 0 : (size_t)start;
    if (off > len) off = len;
    size_t until = stop < 0 ? 0 : (size_t)stop;
    Py_ssize_t cap = out.len / (Py_ssize_t)sizeof(packet_rec);
    if (max_records > cap) max_records = cap;
    packet_rec *recs = out.buf;
    Py_ssize_t n = 0;
    int ret = RET_NEED_DATA;
    double frac_unit = nsec ? 1e-9 : 1e-6;
    Py_BEGIN_ALLOW_THREADS
    size_t fetched = off;
    while (1) {
        if (off >= until) break;
        if (n >= max_records) { ret = RET_OUT_FULL; break; }
        if (len - off < 16) break;
        prefetch_ahead(buf, &fetched, off, len);
        const uint8_t *h = buf + off;
        uint32_t incl = rd32(h + 8, swapped), orig = rd32(h + 12, swapped), frac = rd32(h + 4, swapped);
        if (incl > MAX_CAPLEN) { ret = RET_CORRUPT; break; }
        if (len - off - 16 < incl) break;
        packet_rec *r = &recs[n++];
        start_record(r, (double)rd32(h, swapped) + frac * frac_unit, off + 16, incl, orig);
        decode_frame(r, linktype, buf + off + 16, incl);
        off += 16 + (size_t)incl;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&in);
    PyBuffer_Release(&out);
    return Py_BuildValue("nni", (Py_ssize_t)off, n, ret);
}

/*
 * scan_frames(data, meta, linktype, out) -> n
 * Frames as a live capture hands them over (pcapy-ng's next_batch): `data` holds the frames, `meta` one
 * record of four native uint32 per frame: seconds, microseconds, offset in data, captured length. The
 * wire length is not among them: it is taken to be the captured length (live capture keeps whole frames).
 * A record pointing outside `data` is counted as malformed, not read.
 */
static PyObject *scan_frames(PyObject *self, PyObject *args) {
    Py_buffer in, meta, out;
    int linktype;
    if (!PyArg_ParseTuple(args, "y*y*iw*", &in, &meta, &linktype, &out)) return NULL;
    const uint8_t *buf = in.buf;
    size_t len = (size_t)in.len;
    Py_ssize_t n = meta.len / 16, cap = out.len / (Py_ssize_t)sizeof(packet_rec);
    if (n > cap) n = cap;
    packet_rec *recs = out.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t m[4];
        memcpy(m, (const uint8_t *)meta.buf + 16 * i, 16);
        packet_rec *r = &recs[i];
        start_record(r, (double)m[0] + m[1] * 1e-6, m[2], m[3], m[3]);
        if ((size_t)m[2] > len || (size_t)m[3] > len - m[2] || m[3] > MAX_CAPLEN) {
            r->caplen = 0;
            r->status = ST_MALFORMED;
            continue;
        }
        decode_frame(r, linktype, buf + m[2], m[3]);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&in);
    PyBuffer_Release(&meta);
    PyBuffer_Release(&out);
    return PyLong_FromSsize_t(n);
}

/*
 * scan_pcapng(buf, start, swapped, ifaces, out, max_records[, stop]) -> (offset, n, ret)
 * ifaces: packed little-endian {uint32 linktype; uint32 pad; double seconds_per_tick} per interface.
 * Stops before an SHB or IDB (RET_NEED_BLOCK) so Python can update endianness / interfaces, and before
 * a block starting at or after `stop` (default: the end of buf).
 */
static PyObject *scan_pcapng(PyObject *self, PyObject *args) {
    Py_buffer in, ifc, out;
    Py_ssize_t start, max_records, stop = PY_SSIZE_T_MAX;
    int swapped;
    if (!PyArg_ParseTuple(args, "y*niy*w*n|n", &in, &start, &swapped, &ifc, &out, &max_records, &stop))
        return NULL;
    const uint8_t *buf = in.buf;
    size_t len = (size_t)in.len, off = start < 0 ? 0 : (size_t)start;
    if (off > len) off = len;
    size_t until = stop < 0 ? 0 : (size_t)stop;
    size_t n_if = (size_t)ifc.len / 16;
    const uint8_t *ifs = ifc.buf;
    Py_ssize_t cap = out.len / (Py_ssize_t)sizeof(packet_rec);
    if (max_records > cap) max_records = cap;
    packet_rec *recs = out.buf;
    Py_ssize_t n = 0;
    int ret = RET_NEED_DATA;
    Py_BEGIN_ALLOW_THREADS
    size_t fetched = off;
    while (1) {
        if (off >= until) break;
        if (n >= max_records) { ret = RET_OUT_FULL; break; }
        if (len - off < 12) break;
        prefetch_ahead(buf, &fetched, off, len);
        const uint8_t *b = buf + off;
        uint32_t type = rd32(b, swapped), blen = rd32(b + 4, swapped);
        if (type == 0x0A0D0D0A || type == 1) { ret = RET_NEED_BLOCK; break; }
        if (!block_len_ok(blen)) { ret = RET_CORRUPT; break; }
        if (len - off < blen) break;
        if (type == 6 || type == 3) {
            uint32_t iface = 0, incl, orig, hdr;
            double ts = 0;
            if (type == 6) {
                if (blen < 32) { ret = RET_CORRUPT; break; }
                iface = rd32(b + 8, swapped);
                uint64_t ticks = ((uint64_t)rd32(b + 12, swapped) << 32) | rd32(b + 16, swapped);
                incl = rd32(b + 20, swapped);
                orig = rd32(b + 24, swapped);
                hdr = 28;
                if (iface < n_if) {
                    double unit;
                    memcpy(&unit, ifs + iface * 16 + 8, 8);
                    ts = (double)ticks * unit;
                }
            } else {
                if (blen < 16) { ret = RET_CORRUPT; break; }
                orig = rd32(b + 8, swapped);
                hdr = 12;
                incl = blen - 16 < orig ? blen - 16 : orig;
            }
            if (iface >= n_if || incl > blen - hdr - 4) { ret = RET_CORRUPT; break; }
            uint32_t lt;
            memcpy(&lt, ifs + iface * 16, 4);
            packet_rec *r = &recs[n++];
            start_record(r, ts, off + hdr, incl, orig);
            r->iface = (uint8_t)iface;
            decode_frame(r, (int)lt, b + hdr, incl);
        }
        off += blen;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&in);
    PyBuffer_Release(&ifc);
    PyBuffer_Release(&out);
    return Py_BuildValue("nni", (Py_ssize_t)off, n, ret);
}

/*
 * FlowTable: the bidirectional flow table, per packet, in C.
 *
 * Why: most packets belong to flows whose inspection is over (bulk DICOM image transfers, unrecognised
 * TCP, UDP without a dissector) or are pure ACKs; Python should not touch them at all. `update` walks a
 * batch of packet records once, keeps every flow's counters (packets/bytes per direction, first/last
 * seen, TCP state) and hands Python only the rows it still has to look at, grouped by flow:
 *   - all rows of a flow Python still inspects, except TCP segments without payload and without SYN;
 *   - none of a flow Python has given up on (`ignore`);
 *   - for a TCP side Python has `arm`ed (its inspection budget is spent, nothing out of order pending),
 *     in-order segments only move that side's sequence number on; the first segment that is not next in
 *     sequence disarms the side and goes to Python with everything after it;
 *   - for a DICOM side armed with `arm_pdata` (Python's parser is between data-set fragments it only
 *     skips), in-order segments that hold nothing but data-set bytes and the P-DATA-TF / PDV headers of
 *     data fragments (`pdata_walk`) only move the side on; the first other segment disarms it.
 * Semantics follow the former numpy table, which aggregated per batch: TCP flags are OR-ed over a
 * flow's packets in the batch and the TCP state moves once per batch; a closed flow whose first packet
 * in a batch is a bare SYN ends and a new flow starts (port reuse); groups come out sorted by flow key.
 * Flows end on idle/active timeout or closed linger (`expire`), port reuse, or eviction of the oldest
 * tenth when the table is full; ended flows wait in a list until Python takes their counters.
 * Memory: entries and the open-addressing index grow by doubling with the number of live flows, which
 * Python caps (max_flows).
 */
enum { FS_NONE = 0, FS_SYN = 1, FS_EST = 2, FS_CLOSED = 3, FS_RESET = 4 };
#define TH_FIN 0x01
#define TH_SYN 0x02
#define TH_RST 0x04
#define TH_ACK 0x10

typedef struct {
    uint64_t key, serial;
    double first_ts, last_ts;
    uint64_t pk[2], by[2];      /* by the records' `dir` */
    uint64_t skip[2];           /* ARM_PDATA: bytes of the current data-set fragment still to pass */
    uint32_t next_seq[2];
    uint32_t pdu_left[2];       /* ARM_PDATA: bytes left in the current P-DATA-TF PDU (0: a header is next) */
    uint32_t batch, nrows;
    int32_t head, tail, first_row;
    uint8_t bflags, proto, state, closed, ignore, is_new, live, evicted_in_batch;
    uint8_t armed[2];           /* ARM_* */
    uint8_t ttl[2];             /* TTL / hop limit of the first packet by `dir`: how far its sender is */
} fent;

enum { ARM_NONE = 0, ARM_SPENT = 1, ARM_PDATA = 2 };

/*
 * DICOM P-DATA-TF framing (PS3.8 9.3.5), for a side whose parser only skips data-set fragments:
 *   PDU header  : type (1) = 4, reserved (1), length (4, big-endian)
 *   PDV item    : length (4, big-endian, >= 2, within the PDU), presentation context id (1),
 *                 message control header (1: bit 0 set = command fragment), then length - 2 bytes
 * Why in C: image transfers are most of a hospital's bytes, and a 16 KiB PDU spans a dozen segments;
 * Python then sees only the segments that hold a command or anything else, not every PDU header.
 * Returns 1 and moves the state on when the whole segment is data-set bytes and headers of data
 * fragments that lie entirely inside it; 0 (state untouched) when it holds anything else for Python:
 * a command fragment, another PDU, a header cut by the segment's end or one that breaks the framing.
 */
static int pdata_walk(const uint8_t *p, uint32_t len, uint64_t *skip, uint32_t *pdu_left) {
    uint64_t s = *skip;
    uint32_t left = *pdu_left, pos = 0;
    while (pos < len) {
        if (s) {
            uint32_t k = s < (uint64_t)(len - pos) ? (uint32_t)s : len - pos;
            s -= k;
            pos += k;
            continue;
        }
        if (len - pos < 6) return 0;
        if (left == 0) {
            if (p[pos] != 4) return 0;
            left = be32(p + pos + 2);
            pos += 6;
            continue;
        }
        uint32_t item = be32(p + pos);
        if (left < 6 || item < 2 || (uint64_t)item + 4 > left || (p[pos + 5] & 1)) return 0;
        left -= 4 + item;
        s = item - 2;
        pos += 6;
    }
    *skip = s;
    *pdu_left = left;
    return 1;
}

/* Whether C moves a side on over the in-sequence segment of `len` bytes at `at` in `fb`: always when the
 * side is spent, when `pdata_walk` takes it for a walked DICOM side. */
static int side_takes(int spent, const Py_buffer *fb, uint64_t at, uint32_t len, uint64_t *skip, uint32_t *left) {
    if (spent) return 1;
    return at + len <= (uint64_t)fb->len && pdata_walk((const uint8_t *)fb->buf + at, len, skip, left);
}

typedef struct {
    PyObject_HEAD
    fent *ents;
    uint32_t n_ents, cap_ents;  /* ids in use or freed are < n_ents */
    uint32_t *free_ids;
    uint32_t n_free;
    uint32_t *index;            /* id + 1, 0 = empty */
    uint64_t mask;
    Py_ssize_t count, max_flows;
    unsigned long long total, evicted, serial;
    uint32_t batch;
    uint32_t *ended;            /* ids, in the order Python gets them */
    uint32_t n_ended, cap_ended;
} FlowTableObject;

static int ft_grow_index(FlowTableObject *t, uint64_t size) {
    uint32_t *ix = PyMem_Calloc(size, sizeof *ix);
    if (!ix) { PyErr_NoMemory(); return -1; }
    uint64_t mask = size - 1;
    if (t->index) {
        for (uint64_t i = 0; i <= t->mask; i++) {
            uint32_t v = t->index[i];
            if (!v) continue;
            uint64_t j = t->ents[v - 1].key & mask;
            while (ix[j]) j = (j + 1) & mask;
            ix[j] = v;
        }
        PyMem_Free(t->index);
    }
    t->index = ix;
    t->mask = mask;
    return 0;
}

static int ft_init(FlowTableObject *t, PyObject *args, PyObject *kw) {
    Py_ssize_t max_flows;
    if (!PyArg_ParseTuple(args, "n", &max_flows)) return -1;
    if (max_flows < 1) { PyErr_SetString(PyExc_ValueError, "max_flows must be positive"); return -1; }
    t->max_flows = max_flows;
    return ft_grow_index(t, 1 << 12);
}

static void ft_dealloc(FlowTableObject *t) {
    PyMem_Free(t->ents);
    PyMem_Free(t->free_ids);
    PyMem_Free(t->index);
    PyMem_Free(t->ended);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

static int64_t ft_find(FlowTableObject *t, uint64_t key) {
    uint64_t j = key & t->mask;
    for (uint32_t v; (v = t->index[j]); j = (j + 1) & t->mask)
        if (t->ents[v - 1].key == key) return (int64_t)j;
    return -1;
}

/* Remove index slot j, shifting the following cluster back (no tombstones). */
static void ft_unindex(FlowTableObject *t, uint64_t j) {
    uint64_t mask = t->mask;
    t->index[j] = 0;
    for (uint64_t k = (j + 1) & mask; t->index[k]; k = (k + 1) & mask) {
        uint64_t home = t->ents[t->index[k] - 1].key & mask;
        /* move k's entry to j if its home is not in the cyclic range (j, k] */
        if ((k > j && (home <= j || home > k)) || (k < j && home <= j && home > k)) {
            t->index[j] = t->index[k];
            t->index[k] = 0;
            j = k;
        }
    }
}

static int ft_push_ended(FlowTableObject *t, uint32_t id) {
    if (t->n_ended == t->cap_ended) {
        uint32_t cap = t->cap_ended ? t->cap_ended * 2 : 1024;
        uint32_t *e = PyMem_Realloc(t->ended, cap * sizeof *e);
        if (!e) return -1;
        t->ended = e;
        t->cap_ended = cap;
    }
    t->ended[t->n_ended++] = id;
    return 0;
}

/* End a live flow: out of the index, onto the ended list (its entry stays until take_ended). */
static int ft_end(FlowTableObject *t, uint32_t id) {
    int64_t j = ft_find(t, t->ents[id].key);
    if (j >= 0) ft_unindex(t, (uint64_t)j);
    t->ents[id].live = 0;
    t->count--;
    return ft_push_ended(t, id);
}

static FlowTableObject *sort_table;  /* qsort has no context argument; the GIL is held */
static int by_last_seen(const void *a, const void *b) {
    const fent *x = &sort_table->ents[*(const uint32_t *)a], *y = &sort_table->ents[*(const uint32_t *)b];
    if (x->last_ts != y->last_ts) return x->last_ts < y->last_ts ? -1 : 1;
    return x->serial < y->serial ? -1 : x->serial > y->serial;
}
static int by_serial(const void *a, const void *b) {
    uint64_t x = sort_table->ents[*(const uint32_t *)a].serial, y = sort_table->ents[*(const uint32_t *)b].serial;
    return x < y ? -1 : x > y;
}
static int by_key(const void *a, const void *b) {
    uint64_t x = sort_table->ents[*(const uint32_t *)a].key, y = sort_table->ents[*(const uint32_t *)b].key;
    return x < y ? -1 : x > y;
}

/* The n least recently seen flows end (in bulk: a flood of new flows costs one sort per n flows). */
static int ft_evict_oldest(FlowTableObject *t, Py_ssize_t n) {
    uint32_t *ids = PyMem_Malloc((t->count ? t->count : 1) * sizeof *ids);
    if (!ids) { PyErr_NoMemory(); return -1; }
    Py_ssize_t m = 0;
    for (uint32_t id = 0; id < t->n_ents; id++)
        if (t->ents[id].live) ids[m++] = id;
    sort_table = t;
    qsort(ids, (size_t)m, sizeof *ids, by_last_seen);
    if (n > m) n = m;
    for (Py_ssize_t i = 0; i < n; i++) {
        t->ents[ids[i]].evicted_in_batch = 1;
        if (ft_end(t, ids[i]) < 0) { PyMem_Free(ids); PyErr_NoMemory(); return -1; }
    }
    t->evicted += (unsigned long long)n;
    PyMem_Free(ids);
    return 0;
}

static int64_t ft_create(FlowTableObject *t, const packet_rec *r, int32_t row) {
    if (t->count >= t->max_flows) {
        Py_ssize_t n = t->max_flows / 10;
        if (ft_evict_oldest(t, n > 1 ? n : 1) < 0) return -1;
    }
    uint32_t id;
    if (t->n_free) {
        id = t->free_ids[--t->n_free];
    } else {
        if (t->n_ents == t->cap_ents) {
            uint32_t cap = t->cap_ents ? t->cap_ents * 2 : 4096;
            fent *e = PyMem_Realloc(t->ents, (size_t)cap * sizeof *e);
            if (!e) { PyErr_NoMemory(); return -1; }
            uint32_t *f = PyMem_Realloc(t->free_ids, (size_t)cap * sizeof *f);
            if (!f) { t->ents = e; PyErr_NoMemory(); return -1; }
            t->ents = e;
            t->free_ids = f;
            t->cap_ents = cap;
        }
        id = t->n_ents++;
    }
    fent *e = &t->ents[id];
    memset(e, 0, sizeof *e);
    e->key = r->flow_hash;
    e->serial = UINT64_MAX;  /* numbered in key order at the end of the batch, as flows reach Python */
    e->first_ts = e->last_ts = r->ts;
    e->proto = r->proto;
    e->state = (r->proto == 6 && (r->tcp_flags & TH_SYN)) ? FS_SYN : FS_NONE;
    e->live = 1;
    e->is_new = 1;
    e->first_row = row;
    e->batch = t->batch - 1;   /* not yet touched in this batch */
    if ((uint64_t)(t->count + 1) * 2 > t->mask + 1 && ft_grow_index(t, (t->mask + 1) * 2) < 0) return -1;
    uint64_t j = e->key & t->mask;
    while (t->index[j]) j = (j + 1) & t->mask;
    t->index[j] = id + 1;
    t->count++;
    t->total++;
    return id;
}

/*
 * update(recs, n, groups, rows, buf) -> (n_groups, n_rows)
 * buf: the batch buffer the records point into (payloads of ARM_PDATA sides are walked)
 * groups: writable int64 buffer, 4 per group: id, is_new, first row of the flow in this batch, row count
 * rows  : writable int64 buffer, 5 per row: row, payload start in the buffer, payload length,
 *         TCP sequence number of the payload (+1 after a SYN), dir
 * Both must hold n entries.
 */
static PyObject *ft_update(FlowTableObject *t, PyObject *args) {
    Py_buffer in, gb, rb, fb;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "y*nw*w*y*", &in, &n, &gb, &rb, &fb)) return NULL;
    PyObject *result = NULL;
    uint32_t *touched = NULL;
    int32_t *next_row = NULL;
    if (n < 0 || (size_t)in.len < (size_t)n * sizeof(packet_rec) || gb.len < n * 32 || rb.len < n * 40) {
        PyErr_SetString(PyExc_ValueError, "update: buffers too small");
        goto done;
    }
    touched = PyMem_Malloc((size_t)(n ? n : 1) * sizeof *touched);
    next_row = PyMem_Malloc((size_t)(n ? n : 1) * sizeof *next_row);
    if (!touched || !next_row) { PyErr_NoMemory(); goto done; }
    const packet_rec *recs = in.buf;
    int64_t *go = gb.buf, *ro = rb.buf;
    uint32_t n_touched = 0, ended_from = t->n_ended;
    t->batch++;
    for (Py_ssize_t i = 0; i < n; i++) {
        const packet_rec *r = &recs[i];
        if (r->ipver == 0 || r->status != ST_OK) continue;
        int64_t j = ft_find(t, r->flow_hash);
        int64_t id = j >= 0 ? (int64_t)t->index[j] - 1 : -1;
        if (id >= 0 && t->ents[id].batch != t->batch && t->ents[id].closed &&
            (r->tcp_flags & (TH_SYN | TH_ACK)) == TH_SYN) {
            if (ft_end(t, (uint32_t)id) < 0) { PyErr_NoMemory(); goto done; }  /* 4-tuple reused */
            id = -1;
        }
        if (id < 0 && (id = ft_create(t, r, (int32_t)i)) < 0) goto done;
        fent *e = &t->ents[id];
        if (e->batch != t->batch) {
            e->batch = t->batch;
            e->bflags = 0;
            e->nrows = 0;
            e->head = e->tail = -1;
            e->first_row = (int32_t)i;
            e->evicted_in_batch = 0;
            if (r->ts < e->first_ts) e->first_ts = r->ts;
            touched[n_touched++] = (uint32_t)id;
        }
        int d = r->dir & 1;
        if (!e->pk[d]) e->ttl[d] = r->ttl;
        e->pk[d]++;
        e->by[d] += r->wirelen;
        if (r->ts > e->last_ts) e->last_ts = r->ts;
        e->bflags |= r->tcp_flags;
        if (e->ignore) continue;
        if (r->proto == 6) {
            int syn = (r->tcp_flags & TH_SYN) != 0;
            if (!r->payload_len && !syn) continue;
            if (e->armed[d]) {
                uint32_t seq = r->tcp_seq + (uint32_t)syn;
                if (!r->payload_len) continue;
                if (seq == e->next_seq[d] && side_takes(e->armed[d] == ARM_SPENT, &fb, r->frame_off + r->payload_off,
                                                        r->payload_len, &e->skip[d], &e->pdu_left[d])) {
                    e->next_seq[d] = seq + r->payload_len;
                    continue;
                }
                e->armed[d] = ARM_NONE;
            }
        }
        next_row[i] = -1;
        if (e->tail >= 0) next_row[e->tail] = (int32_t)i; else e->head = (int32_t)i;
        e->tail = (int32_t)i;
        e->nrows++;
    }
    sort_table = t;
    qsort(touched, n_touched, sizeof *touched, by_key);
    Py_ssize_t ng = 0, nr = 0;
    for (uint32_t k = 0; k < n_touched; k++) {
        fent *e = &t->ents[touched[k]];
        if (e->proto == 6 && e->live) {
            if (e->bflags & TH_RST) { e->state = FS_RESET; e->closed = 1; }
            else if (e->bflags & TH_FIN) { e->state = FS_CLOSED; e->closed = 1; }
            else if (e->state <= FS_SYN && (e->bflags & TH_ACK)) e->state = FS_EST;
        }
        int is_new = e->is_new;
        e->is_new = 0;
        if (is_new) e->serial = t->serial++;
        if (e->evicted_in_batch || (!is_new && !e->nrows)) continue;
        go[ng * 4] = touched[k];
        go[ng * 4 + 1] = is_new;
        go[ng * 4 + 2] = e->first_row;
        go[ng * 4 + 3] = e->nrows;
        ng++;
        for (int32_t i = e->head; i >= 0; i = next_row[i]) {
            const packet_rec *r = &recs[i];
            int64_t *o = ro + nr * 5;
            o[0] = i;
            o[1] = (int64_t)(r->frame_off + r->payload_off);
            o[2] = r->payload_len;
            o[3] = (uint32_t)(r->tcp_seq + ((r->proto == 6 && (r->tcp_flags & TH_SYN)) ? 1u : 0u));
            o[4] = r->dir;
            nr++;
        }
    }
    /* flows ended inside the batch (port reuse, eviction) in key order, as the groups */
    qsort(t->ended + ended_from, t->n_ended - ended_from, sizeof *t->ended, by_key);
    result = Py_BuildValue("nn", ng, nr);
done:
    PyMem_Free(touched);
    PyMem_Free(next_row);
    PyBuffer_Release(&in);
    PyBuffer_Release(&gb);
    PyBuffer_Release(&rb);
    PyBuffer_Release(&fb);
    return result;
}

/* expire(now, force, closed_linger, tcp_idle, udp_idle, active): end flows timed out by `now`. */
static PyObject *ft_expire(FlowTableObject *t, PyObject *args) {
    double now, linger, tcp_idle, udp_idle, active;
    int force;
    if (!PyArg_ParseTuple(args, "dpdddd", &now, &force, &linger, &tcp_idle, &udp_idle, &active)) return NULL;
    uint32_t from = t->n_ended;
    for (uint32_t id = 0; id < t->n_ents; id++) {
        fent *e = &t->ents[id];
        if (!e->live) continue;
        double limit = e->closed ? linger : (e->proto == 6 ? tcp_idle : udp_idle);
        if (force || now - e->last_ts > limit || now - e->first_ts > active) {
            e->live = 0;
            t->count--;
            if (ft_push_ended(t, id) < 0) return PyErr_NoMemory();
        }
    }
    if (force) {
        memset(t->index, 0, (t->mask + 1) * sizeof *t->index);
    } else {
        for (uint32_t k = from; k < t->n_ended; k++) {
            int64_t j = ft_find(t, t->ents[t->ended[k]].key);
            if (j >= 0) ft_unindex(t, (uint64_t)j);
        }
    }
    sort_table = t;  /* in creation order, as the former dict */
    qsort(t->ended + from, t->n_ended - from, sizeof *t->ended, by_serial);
    Py_RETURN_NONE;
}

/* (id, packets by dir 0, by dir 1, bytes by dir 0, by dir 1, first_ts, last_ts, state, first TTL by dir 0,
 * by dir 1) */
static PyObject *ft_counters_of(uint32_t id, const fent *e) {
    return Py_BuildValue("IKKKKddiii", id, (unsigned long long)e->pk[0], (unsigned long long)e->pk[1],
                         (unsigned long long)e->by[0], (unsigned long long)e->by[1], e->first_ts, e->last_ts,
                         (int)e->state, (int)e->ttl[0], (int)e->ttl[1]);
}

/* take_ended() -> [counters of each ended flow (ft_counters_of)] */
static PyObject *ft_take_ended(FlowTableObject *t, PyObject *noargs) {
    PyObject *out = PyList_New(t->n_ended);
    if (!out) return NULL;
    for (uint32_t k = 0; k < t->n_ended; k++) {
        uint32_t id = t->ended[k];
        PyObject *item = ft_counters_of(id, &t->ents[id]);
        if (!item) { Py_DECREF(out); return NULL; }
        PyList_SET_ITEM(out, k, item);
        t->free_ids[t->n_free++] = id;
    }
    t->n_ended = 0;
    return out;
}

/* The live flow `id` (and `d` a direction, 0 or 1, unless NULL), or NULL with KeyError set. */
static fent *ft_entry(FlowTableObject *t, unsigned int id, const int *d) {
    if (id >= t->n_ents || !t->ents[id].live || (d && (*d < 0 || *d > 1))) {
        PyErr_SetString(PyExc_KeyError, "no such live flow");
        return NULL;
    }
    return &t->ents[id];
}

static fent *ft_live(FlowTableObject *t, PyObject *args, int *d, unsigned int *seq, const char *fmt) {
    unsigned int id;
    if (!PyArg_ParseTuple(args, fmt, &id, d, seq)) return NULL;
    return ft_entry(t, id, d);
}

/* ignore(id): Python is done with this flow; count its packets only. */
static PyObject *ft_ignore(FlowTableObject *t, PyObject *args) {
    fent *e = ft_live(t, args, NULL, NULL, "I");
    if (!e) return NULL;
    e->ignore = 1;
    Py_RETURN_NONE;
}

/* arm(id, dir, next_seq): consume this side's in-order segments in C from next_seq on. */
static PyObject *ft_arm(FlowTableObject *t, PyObject *args) {
    int d;
    unsigned int seq;
    fent *e = ft_live(t, args, &d, &seq, "IiI");
    if (!e) return NULL;
    e->armed[d] = ARM_SPENT;
    e->next_seq[d] = seq;
    Py_RETURN_NONE;
}

/* arm_pdata(id, dir, next_seq, skip, pdu_left): walk this DICOM side's data-set fragments in C. */
static PyObject *ft_arm_pdata(FlowTableObject *t, PyObject *args) {
    unsigned int id, seq, left;
    int d;
    unsigned long long skip;
    if (!PyArg_ParseTuple(args, "IiIKI", &id, &d, &seq, &skip, &left)) return NULL;
    fent *e = ft_entry(t, id, &d);
    if (!e) return NULL;
    e->armed[d] = ARM_PDATA;
    e->next_seq[d] = seq;
    e->skip[d] = skip;
    e->pdu_left[d] = left;
    Py_RETURN_NONE;
}

/* disarm(id, dir) -> (next sequence number, skip, pdu_left): the side as C left it */
static PyObject *ft_disarm(FlowTableObject *t, PyObject *args) {
    int d;
    fent *e = ft_live(t, args, &d, NULL, "Ii");
    if (!e) return NULL;
    e->armed[d] = ARM_NONE;
    return Py_BuildValue("kKk", (unsigned long)e->next_seq[d], (unsigned long long)e->skip[d],
                         (unsigned long)e->pdu_left[d]);
}

/* counters(id) -> the counters of a live flow so far (ft_counters_of) */
static PyObject *ft_counters(FlowTableObject *t, PyObject *args) {
    fent *e = ft_live(t, args, NULL, NULL, "I");
    return e ? ft_counters_of((uint32_t)(e - t->ents), e) : NULL;
}

static PyObject *ft_get_total(FlowTableObject *t, void *c) { return PyLong_FromUnsignedLongLong(t->total); }
static PyObject *ft_get_evicted(FlowTableObject *t, void *c) { return PyLong_FromUnsignedLongLong(t->evicted); }
static Py_ssize_t ft_len(FlowTableObject *t) { return t->count; }

static PyMethodDef ft_methods[] = {
    {"update", (PyCFunction)ft_update, METH_VARARGS, "Account a batch; write the groups and rows for Python."},
    {"expire", (PyCFunction)ft_expire, METH_VARARGS, "End flows that timed out."},
    {"take_ended", (PyCFunction)ft_take_ended, METH_NOARGS, "Counters of ended flows; frees their ids."},
    {"counters", (PyCFunction)ft_counters, METH_VARARGS, "Counters of a live flow so far."},
    {"ignore", (PyCFunction)ft_ignore, METH_VARARGS, "Stop handing a flow's rows to Python."},
    {"arm", (PyCFunction)ft_arm, METH_VARARGS, "Consume a spent TCP side's in-order segments in C."},
    {"arm_pdata", (PyCFunction)ft_arm_pdata, METH_VARARGS, "Walk a DICOM side's data-set fragments in C."},
    {"disarm", (PyCFunction)ft_disarm, METH_VARARGS, "Hand a TCP side back: (next sequence, skip, pdu_left)."},
    {NULL, NULL, 0, NULL},
};
static PyGetSetDef ft_getset[] = {
    {"total", (getter)ft_get_total, NULL, "flows created", NULL},
    {"evicted", (getter)ft_get_evicted, NULL, "flows evicted because the table was full", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};
static PySequenceMethods ft_seq = {.sq_length = (lenfunc)ft_len};

static PyTypeObject FlowTableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "medsentry.capture._fastpath.FlowTable",
    .tp_basicsize = sizeof(FlowTableObject),
    .tp_dealloc = (destructor)ft_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "FlowTable(max_flows): per-packet flow accounting (see _fastpath.c).",
    .tp_methods = ft_methods,
    .tp_getset = ft_getset,
    .tp_as_sequence = &ft_seq,
    .tp_init = (initproc)ft_init,
    .tp_new = PyType_GenericNew,
};

/*
 * walk_run(buf, rows, begin, side0, side1) -> (side0, side1, kept, stop)
 * The in-Python counterpart of armed sides, for the rows of a batch Python already holds (a side's
 * budget is often spent, or an image's data set begins, in the middle of the batch that carries the
 * whole transfer). `rows`: a flow's rows as `update` gives them (C-contiguous int64, n x 5: batch row,
 * payload start, length, sequence number, dir), read in place so that the rows a walk consumes never
 * become Python objects. sideN, by `dir`: None (not walked), or (next_seq, skip, pdu_left) where skip -1
 * means spent (every in-sequence row is consumed) and skip >= 0 a DICOM side walked as by `arm_pdata`. Rows
 * from `begin` on that continue a walked side in sequence, and its rows without payload, are consumed
 * up to its first row that is out of sequence or that the walk cannot take; the side's state moves on.
 * The run stops there (`stop`: that row's position, or the number of rows): Python goes on with the rows
 * before it that it still has to look at (`kept`, the other side's: a copy of those rows, bytes in the
 * layout of `rows`: indexing the rows by a list of positions cost numpy more than the walk) and
 * everything from `stop` on. Not
 * going past `stop` keeps each run's cost to the rows it consumes (a DICOM association stops once an
 * image).
 */
static int walk_side(PyObject *spec, int *on, uint32_t *next, long long *skip, uint32_t *left) {
    *on = spec != Py_None;
    if (!*on) return 0;
    unsigned long nx, lf;
    if (!PyArg_ParseTuple(spec, "kLk", &nx, skip, &lf)) return -1;
    *next = (uint32_t)nx;
    *left = (uint32_t)lf;
    return 0;
}

static PyObject *walk_run(PyObject *self, PyObject *args) {
    Py_buffer fb, rb;
    PyObject *spec[2];
    Py_ssize_t begin;
    if (!PyArg_ParseTuple(args, "y*y*nOO", &fb, &rb, &begin, &spec[0], &spec[1])) return NULL;
    PyObject *kept = NULL, *result = NULL;
    if (rb.len % (Py_ssize_t)(5 * sizeof(int64_t)) || begin < 0) {
        PyErr_SetString(PyExc_ValueError, "walk_run: rows must be n x 5 int64");
        goto done;
    }
    const int64_t *rows = (const int64_t *)rb.buf;
    Py_ssize_t n = rb.len / (Py_ssize_t)(5 * sizeof(int64_t));
    int on[2], walked[2];
    uint32_t next[2], left[2];
    long long skip[2];
    for (int d = 0; d < 2; d++)
        if (walk_side(spec[d], &on[d], &next[d], &skip[d], &left[d]) < 0) goto done;
    walked[0] = on[0];
    walked[1] = on[1];
    int64_t *held = NULL;  /* the kept rows, copied */
    Py_ssize_t nheld = 0;
    Py_ssize_t i = begin;
    for (; i < n && (on[0] || on[1]); i++) {
        const int64_t *o = rows + i * 5;
        int64_t at = o[1], len = o[2], seq = o[3], d = o[4];
        if ((d == 0 || d == 1) && on[d]) {
            if (len == 0) continue;
            uint64_t s = skip[d] < 0 ? 0 : (uint64_t)skip[d];
            if ((uint32_t)seq == next[d] && at >= 0 && len <= UINT32_MAX &&
                side_takes(skip[d] < 0, &fb, (uint64_t)at, (uint32_t)len, &s, &left[d])) {
                if (skip[d] >= 0) skip[d] = (long long)s;
                next[d] = (uint32_t)(seq + len);
                continue;
            }
            on[d] = 0;
            break;
        }
        if (!held && !(held = PyMem_Malloc((size_t)(n - i) * 5 * sizeof(int64_t)))) {
            PyErr_NoMemory();
            goto done;
        }
        memcpy(held + nheld * 5, o, 5 * sizeof(int64_t));
        nheld++;
    }
    kept = PyBytes_FromStringAndSize((const char *)held, nheld * 5 * (Py_ssize_t)sizeof(int64_t));
    PyMem_Free(held);
    if (!kept) goto done;
    PyObject *out[2];
    for (int d = 0; d < 2; d++) {
        if (walked[d]) out[d] = Py_BuildValue("kLk", (unsigned long)next[d], skip[d], (unsigned long)left[d]);
        else { out[d] = Py_None; Py_INCREF(Py_None); }
    }
    if (!out[0] || !out[1]) { Py_XDECREF(out[0]); Py_XDECREF(out[1]); goto done; }
    result = Py_BuildValue("NNOn", out[0], out[1], kept, i);
done:
    Py_XDECREF(kept);
    PyBuffer_Release(&fb);
    PyBuffer_Release(&rb);
    return result;
}

/*
 * resync_pcap(buf, start, swapped, nsec, chain, first_second) -> offset, or -1
 * The first offset at or after `start` where `chain` consecutive plausible record headers follow one
 * another (a header: a frame of 1 byte or more, captured length <= MAX_CAPLEN and <= the wire length,
 * fraction of a second below one second, time from a day before the file's first record, whose seconds
 * are `first_second`, to twenty years after); a chain reaching the end of buf counts. (Without the
 * lengths' and the time's bounds, runs of zero bytes in payloads read as records.) `--workers` readers start a byte range of a file
 * there without walking the records before it; the guess is checked against where the range before
 * really ended (`pipeline.SegmentReader`), so a payload that happens to look like records costs a re-read,
 * never a wrong record. Only the first MAX_CAPLEN + 16 bytes are searched: a record starts within them.
 */
static PyObject *resync_pcap(PyObject *self, PyObject *args) {
    Py_buffer in;
    Py_ssize_t start;
    int swapped, nsec, chain;
    unsigned long first_second;
    if (!PyArg_ParseTuple(args, "y*niiik", &in, &start, &swapped, &nsec, &chain, &first_second)) return NULL;
    const uint8_t *buf = in.buf;
    size_t len = (size_t)in.len, first = start < 0 ? 0 : (size_t)start;
    size_t last = first + 16 + MAX_CAPLEN < len ? first + 16 + MAX_CAPLEN : len;
    uint32_t second = nsec ? 1000000000u : 1000000u;
    uint64_t t_lo = first_second > 86400 ? first_second - 86400 : 0, t_hi = (uint64_t)first_second + 631152000u;
    Py_ssize_t found = -1;
    Py_BEGIN_ALLOW_THREADS
    for (size_t at = first; at < last && found < 0; at++) {
        size_t off = at;
        int k = 0;
        for (; k < chain; k++) {
            if (off == len) { k = chain; break; }
            if (len - off < 16) break;
            const uint8_t *h = buf + off;
            uint32_t incl = rd32(h + 8, swapped), orig = rd32(h + 12, swapped);
            uint32_t t = rd32(h, swapped);
            if (incl > MAX_CAPLEN || incl > orig || orig == 0 || rd32(h + 4, swapped) >= second || t < t_lo ||
                t > t_hi)
                break;
            if (len - off - 16 < incl) { k = chain; break; }  /* runs past the buffer: cannot tell more */
            off += 16 + (size_t)incl;
        }
        if (k == chain) found = (Py_ssize_t)at;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&in);
    return PyLong_FromSsize_t(found);
}

/*
 * resync_pcapng(buf, start, swapped, chain) -> offset, or -1
 * `resync_pcap` for pcapng: the first offset at or after `start`, on the 4-byte grid blocks keep from the
 * start of buf, where `chain` blocks follow one another, each of a valid length (12 bytes or more, a
 * multiple of 4) repeated in its last four bytes; a chain reaching the end of buf counts, if its first
 * block is whole.
 */
static PyObject *resync_pcapng(PyObject *self, PyObject *args) {
    Py_buffer in;
    Py_ssize_t start;
    int swapped, chain;
    if (!PyArg_ParseTuple(args, "y*nii", &in, &start, &swapped, &chain)) return NULL;
    const uint8_t *buf = in.buf;
    size_t len = (size_t)in.len, first = start < 0 ? 0 : ((size_t)start + 3) & ~(size_t)3;
    size_t last = first + MAX_BLOCK < len ? first + MAX_BLOCK : len;
    Py_ssize_t found = -1;
    Py_BEGIN_ALLOW_THREADS
    for (size_t at = first; at < last && found < 0; at += 4) {
        size_t off = at;
        int k = 0;
        for (; k < chain; k++) {
            if (off == len) { k = chain; break; }
            if (len - off < 12) break;
            uint32_t blen = rd32(buf + off + 4, swapped);
            if (!block_len_ok(blen)) break;
            if (len - off < blen) {  /* runs past the buffer: cannot tell more, if one block was whole */
                if (k > 0) k = chain;
                break;
            }
            if (rd32(buf + off + blen - 4, swapped) != blen) break;
            off += blen;
        }
        if (k == chain) found = (Py_ssize_t)at;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&in);
    return PyLong_FromSsize_t(found);
}

/* `analyze --workers` deals a file's records by host, not by flow: all of a device's connections go to
 * one worker, so each worker meets a few devices instead of nearly every one, and identification's
 * per-device work (a new endpoint, its first facts) is neither repeated in every worker nor merged from
 * each at the end (8 workers: 4.4x -> 5.4x projected, bench/scaling.py). A flow's host is its client,
 * taken to be the side with the higher port (an ephemeral port against a service's; equal ports: the
 * lower address), so both directions of a flow pick the same one. Non-IP frames keep `flow_hash`, their
 * source MAC's. */
static uint64_t host_key(const packet_rec *r) {
    if (r->ipver == 0) return r->flow_hash;
    size_t alen = r->ipver == 4 ? 4 : 16;
    int src = r->sport != r->dport ? r->sport > r->dport : memcmp(r->src_ip, r->dst_ip, alen) <= 0;
    uint8_t head[3] = {r->ipver, (uint8_t)(r->vlan >> 8), (uint8_t)r->vlan};
    uint64_t h = fnv1a(14695981039346656037ULL, head, sizeof head);
    return fmix64(fnv1a(h, src ? r->src_ip : r->dst_ip, alen));
}

#define DEAL_BULK 1200 /* payload bytes from which a TCP segment is bulk data, walked in C: no work */

/*
 * deal(recs, owner, load, shards) -> None
 * Each record's shard (`shards`: n x int32) by its host's bucket (host key % len(owner)). `owner`
 * (int64 per bucket, -1 = none yet) and `load` (int64 per shard) may be shared by several reading
 * processes (`--workers` readers, each on its own byte ranges). The buckets a batch meets for the first
 * time are placed in the order it meets them, each on the shard with the least load, counting the work
 * its records in the batch make (a host's first batch says much of what it will do: placed blind,
 * before its work was known, 8 workers' CPU spread 1.21 to 1); a claim is a compare-and-swap, so every
 * reader deals a bucket alike whoever met it first. Load is the work a record makes a worker's Python:
 * a datagram 8 (each is parsed), a connection's SYN 4 (a flow made, ended and identified), a
 * message-sized segment 3 (a command, an HL7 message), a bulk segment 0 (fitted to the workers' CPU on
 * the bench capture, r^2 0.87 over 16 shards; without the SYNs 0.58: the attack capture's port scan,
 * 3,000 connections of one host, counted as no work). Dealt by packets, a few dozen modalities sending
 * images made one of 8 workers take 1.7 times the CPU of another.
 */
static inline int64_t record_work(const packet_rec *r) {
    if (r->proto == 17) return 8;
    if (r->proto == 6 && (r->tcp_flags & (TH_SYN | TH_ACK)) == TH_SYN) return 4;
    return r->payload_len > 0 && r->payload_len < DEAL_BULK ? 3 : 0;
}

static PyObject *deal(PyObject *self, PyObject *args) {
    Py_buffer in, own, ld, out;
    if (!PyArg_ParseTuple(args, "y*w*w*w*", &in, &own, &ld, &out)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = in.len / (Py_ssize_t)sizeof(packet_rec);
    Py_ssize_t buckets = own.len / 8, shards = ld.len / 8;
    if (in.len % (Py_ssize_t)sizeof(packet_rec) || out.len != n * 4 || buckets < 1 || shards < 1) {
        PyErr_SetString(PyExc_ValueError, "deal: records, owners, loads and n x int32 shards expected");
        goto done;
    }
    /* per bucket met unplaced in this batch: its work here (+1, so 0 = not met), and the order met */
    int64_t *met = calloc((size_t)buckets, sizeof(int64_t));
    uint32_t *order = malloc((size_t)(n < buckets ? n : buckets) * sizeof(uint32_t) + 1);
    uint32_t *bucket_of = malloc((size_t)n * sizeof(uint32_t) + 1);
    if (!met || !order || !bucket_of) {
        free(met), free(order), free(bucket_of);
        PyErr_NoMemory();
        goto done;
    }
    const packet_rec *recs = in.buf;
    int64_t *owner = own.buf, *load = ld.buf;
    int32_t *shard = out.buf;
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t new = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t b = (uint32_t)(host_key(&recs[i]) % (uint64_t)buckets);
        bucket_of[i] = b;
        if (__atomic_load_n(&owner[b], __ATOMIC_ACQUIRE) >= 0) continue;
        if (!met[b]) order[new++] = b, met[b] = 1;
        met[b] += record_work(&recs[i]);
    }
    for (Py_ssize_t j = 0; j < new; j++) {
        uint32_t b = order[j];
        int64_t least = 0;
        for (Py_ssize_t k = 1; k < shards; k++)
            if (__atomic_load_n(&load[k], __ATOMIC_RELAXED) < __atomic_load_n(&load[least], __ATOMIC_RELAXED))
                least = k;
        int64_t none = -1;
        if (__atomic_compare_exchange_n(&owner[b], &none, least, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            __atomic_fetch_add(&load[least], met[b] - 1, __ATOMIC_RELAXED);
        else
            met[b] = 0; /* another reader placed it first: its records' work is counted one by one below */
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t b = bucket_of[i];
        int64_t k = __atomic_load_n(&owner[b], __ATOMIC_ACQUIRE);
        if (k >= shards || k < 0) k = (k < 0 ? 0 : k % shards);
        shard[i] = (int32_t)k;
        int64_t work = record_work(&recs[i]);
        if (work && !met[b]) __atomic_fetch_add(&load[k], work, __ATOMIC_RELAXED);
    }
    Py_END_ALLOW_THREADS
    free(met), free(order), free(bucket_of);
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&in);
    PyBuffer_Release(&own);
    PyBuffer_Release(&ld);
    PyBuffer_Release(&out);
    return result;
}

/*
 * records(recs, rows) -> [tuple, ...]: the records at `rows` (a list of ints) as tuples of the record's
 * fields in order, the values numpy's `recs[rows].tolist()` gives (floats, ints, bytes for the address
 * fields). Why C: numpy converts a structured record field by field through scalar objects, some ten
 * thousand instructions a record; the pipeline converts every record it hands to a dissector.
 */
static PyObject *records(PyObject *self, PyObject *args) {
    Py_buffer in;
    PyObject *rows;
    if (!PyArg_ParseTuple(args, "y*O!", &in, &PyList_Type, &rows)) return NULL;
    PyObject *out = NULL;
    Py_ssize_t n = in.len / (Py_ssize_t)sizeof(packet_rec), m = PyList_GET_SIZE(rows);
    if (in.len % (Py_ssize_t)sizeof(packet_rec)) {
        PyErr_SetString(PyExc_ValueError, "records: not an array of packet records");
        goto done;
    }
    const packet_rec *recs = in.buf;
    if (!(out = PyList_New(m))) goto done;
    for (Py_ssize_t i = 0; i < m; i++) {
        Py_ssize_t row = PyLong_AsSsize_t(PyList_GET_ITEM(rows, i));
        if (row == -1 && PyErr_Occurred()) goto fail;
        if (row < 0 || row >= n) {
            PyErr_SetString(PyExc_IndexError, "records: row out of range");
            goto fail;
        }
        const packet_rec *r = &recs[row];
        PyObject *t = PyTuple_New(25);
        if (!t) goto fail;
        PyList_SET_ITEM(out, i, t);
        PyObject *v[25] = {
            PyFloat_FromDouble(r->ts), PyLong_FromUnsignedLongLong(r->flow_hash),
            PyLong_FromUnsignedLongLong(r->frame_off), PyLong_FromUnsignedLong(r->caplen),
            PyLong_FromUnsignedLong(r->wirelen), PyLong_FromUnsignedLong(r->payload_off),
            PyLong_FromUnsignedLong(r->payload_len), PyLong_FromUnsignedLong(r->tcp_seq),
            PyLong_FromLong(r->ethertype), PyLong_FromLong(r->vlan), PyLong_FromLong(r->sport),
            PyLong_FromLong(r->dport), PyLong_FromLong(r->tcp_win), PyLong_FromLong(r->ipver),
            PyLong_FromLong(r->proto), PyLong_FromLong(r->tcp_flags), PyLong_FromLong(r->ttl),
            PyLong_FromLong(r->dir), PyLong_FromLong(r->status), PyLong_FromLong(r->iface),
            PyLong_FromLong(r->linktype_ok), PyBytes_FromStringAndSize((const char *)r->src_mac, 6),
            PyBytes_FromStringAndSize((const char *)r->dst_mac, 6),
            PyBytes_FromStringAndSize((const char *)r->src_ip, 16),
            PyBytes_FromStringAndSize((const char *)r->dst_ip, 16),
        };
        for (int k = 0; k < 25; k++) {
            if (!v[k]) {
                for (int j = 0; j < 25; j++) Py_XDECREF(v[j]);
                goto fail;
            }
        }
        for (int k = 0; k < 25; k++) PyTuple_SET_ITEM(t, k, v[k]);
    }
    goto done;
fail:
    Py_CLEAR(out);
done:
    PyBuffer_Release(&in);
    return out;
}

/*
 * payload(buf, start, length) -> bytes: bytes(buf[start:start + length]) for any buffer (bytes, a mapped
 * window's memoryview), with the slice's clamping. Why C: the slice of a memoryview is an object of its
 * own before the copy, and the pipeline copies a payload for every segment and datagram it dissects.
 */
static PyObject *payload(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "payload(buf, start, length)");
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[1]), length = PyLong_AsSsize_t(args[2]);
    if ((start == -1 || length == -1) && PyErr_Occurred()) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    Py_ssize_t end = start + length;
    if (start < 0 || length < 0 || end < start) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "payload: negative start or length");
        return NULL;
    }
    if (start > view.len) start = view.len;
    if (end > view.len) end = view.len;
    PyObject *out = PyBytes_FromStringAndSize((const char *)view.buf + start, end - start);
    PyBuffer_Release(&view);
    return out;
}

/*
 * row_lists(cols, lo, hi, recs) -> (row, start, length, seq, dir, ts): rows lo..hi of the flow table's
 * (n x 5 int64) output as six plain lists, the time stamps read from the batch's records at each row.
 * Why C: a flow's rows are converted in pieces of a few (a long run as Python reaches it), where numpy's
 * slicing, transposing, fancy indexing and tolist cost more per call than the rows themselves.
 */
static PyObject *row_lists(PyObject *self, PyObject *args) {
    Py_buffer cb, rb;
    Py_ssize_t lo, hi;
    if (!PyArg_ParseTuple(args, "y*nny*", &cb, &lo, &hi, &rb)) return NULL;
    PyObject *lists[6] = {NULL}, *out = NULL;
    Py_ssize_t n = cb.len / (Py_ssize_t)(5 * sizeof(int64_t)), nrec = rb.len / (Py_ssize_t)sizeof(packet_rec);
    if (cb.len % (Py_ssize_t)(5 * sizeof(int64_t)) || rb.len % (Py_ssize_t)sizeof(packet_rec) || lo < 0 ||
        hi < lo || hi > n) {
        PyErr_SetString(PyExc_ValueError, "row_lists: n x 5 int64 rows, lo <= hi <= n, and packet records");
        goto done;
    }
    const int64_t *cols = cb.buf;
    const packet_rec *recs = rb.buf;
    for (int k = 0; k < 6; k++)
        if (!(lists[k] = PyList_New(hi - lo))) goto done;
    for (Py_ssize_t i = lo; i < hi; i++) {
        const int64_t *c = cols + 5 * i;
        if (c[0] < 0 || c[0] >= nrec) {
            PyErr_SetString(PyExc_IndexError, "row_lists: row outside the records");
            goto done;
        }
        for (int k = 0; k < 5; k++) {
            PyObject *v = PyLong_FromLongLong(c[k]);
            if (!v) goto done;
            PyList_SET_ITEM(lists[k], i - lo, v);
        }
        PyObject *ts = PyFloat_FromDouble(recs[c[0]].ts);
        if (!ts) goto done;
        PyList_SET_ITEM(lists[5], i - lo, ts);
    }
    out = PyTuple_Pack(6, lists[0], lists[1], lists[2], lists[3], lists[4], lists[5]);
done:
    for (int k = 0; k < 6; k++) Py_XDECREF(lists[k]);
    PyBuffer_Release(&cb);
    PyBuffer_Release(&rb);
    return out;
}

/*
 * link_rows(recs, ethertypes) -> [row, ...]: the rows of well-formed non-IP frames whose ethertype is one
 * of `ethertypes` (native uint16s): what link-layer dissectors read. (numpy took two masks, a
 * flatnonzero and an isin: 43 us a batch, 22 us for a `--workers` share of one eighth.)
 */
static PyObject *link_rows(PyObject *self, PyObject *args) {
    Py_buffer in, types;
    if (!PyArg_ParseTuple(args, "y*y*", &in, &types)) return NULL;
    PyObject *out = NULL;
    if (in.len % (Py_ssize_t)sizeof(packet_rec) || types.len % 2) {
        PyErr_SetString(PyExc_ValueError, "link_rows: packet records and uint16 ethertypes expected");
        goto done;
    }
    const packet_rec *recs = in.buf;
    const uint16_t *wanted = types.buf;
    Py_ssize_t n = in.len / (Py_ssize_t)sizeof(packet_rec), n_types = types.len / 2;
    if (!(out = PyList_New(0))) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (recs[i].ipver != 0 || recs[i].status != ST_OK) continue;
        for (Py_ssize_t t = 0; t < n_types; t++) {
            if (recs[i].ethertype != wanted[t]) continue;
            PyObject *row = PyLong_FromSsize_t(i);
            if (!row || PyList_Append(out, row) < 0) {
                Py_XDECREF(row);
                Py_CLEAR(out);
                goto done;
            }
            Py_DECREF(row);
            break;
        }
    }
done:
    PyBuffer_Release(&in);
    PyBuffer_Release(&types);
    return out;
}

/*
 * tally(recs) -> (wire bytes, malformed, fragments, unsupported link): a batch's counters for the run's
 * statistics, in one pass (numpy needed three over strided fields, casting each).
 */
static PyObject *tally(PyObject *self, PyObject *args) {
    Py_buffer in;
    if (!PyArg_ParseTuple(args, "y*", &in)) return NULL;
    PyObject *out = NULL;
    if (in.len % (Py_ssize_t)sizeof(packet_rec)) {
        PyErr_SetString(PyExc_ValueError, "tally: not an array of packet records");
        goto done;
    }
    const packet_rec *recs = in.buf;
    Py_ssize_t n = in.len / (Py_ssize_t)sizeof(packet_rec);
    unsigned long long wire = 0, by_status[4] = {0, 0, 0, 0};
    for (Py_ssize_t i = 0; i < n; i++) {
        wire += recs[i].wirelen;
        if (recs[i].status < 4) by_status[recs[i].status]++;
    }
    out = Py_BuildValue("KKKK", wire, by_status[ST_MALFORMED], by_status[ST_FRAGMENT],
                        by_status[ST_UNSUPPORTED]);
done:
    PyBuffer_Release(&in);
    return out;
}

static PyMethodDef methods[] = {
    {"scan_pcap", scan_pcap, METH_VARARGS, "Decode complete pcap records into packet records."},
    {"scan_pcapng", scan_pcapng, METH_VARARGS, "Decode pcapng EPB/SPB blocks into packet records."},
    {"scan_frames", scan_frames, METH_VARARGS, "Decode live-capture frames (data + per-frame meta)."},
    {"walk_run", walk_run, METH_VARARGS, "Consume walked TCP sides' in-sequence rows of a batch."},
    {"resync_pcap", resync_pcap, METH_VARARGS, "Where pcap records plausibly start again in a buffer."},
    {"resync_pcapng", resync_pcapng, METH_VARARGS, "Where pcapng blocks plausibly start again in a buffer."},
    {"deal", deal, METH_VARARGS, "Each record's shard by its host: its flow's client, or its source MAC."},
    {"records", records, METH_VARARGS, "The records at some rows as tuples of their fields."},
    {"payload", (PyCFunction)(void (*)(void))payload, METH_FASTCALL, "bytes(buf[start:start + length])."},
    {"row_lists", row_lists, METH_VARARGS, "Rows of the flow table's output as six lists, time stamps too."},
    {"link_rows", link_rows, METH_VARARGS, "Rows of well-formed non-IP frames of some ethertypes."},
    {"tally", tally, METH_VARARGS, "A batch's wire bytes and malformed / fragment / unsupported-link counts."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastpath", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fastpath(void) {
    if (PyType_Ready(&FlowTableType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    PyModule_AddIntConstant(m, "RECORD_SIZE", (long)sizeof(packet_rec));
    PyModule_AddIntConstant(m, "MAX_CAPLEN", (long)MAX_CAPLEN);
    PyModule_AddIntConstant(m, "MAX_BLOCK", (long)MAX_BLOCK);
    Py_INCREF(&FlowTableType);
    if (PyModule_AddObject(m, "FlowTable", (PyObject *)&FlowTableType) < 0) {
        Py_DECREF(&FlowTableType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
