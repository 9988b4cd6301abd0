/*
 * medsentry fast path: walk pcap / pcapng records in a memory buffer and decode link, network and
 * transport headers of every frame into one fixed-size record per packet.
 *
 * Why C: a Python loop over packets costs ~1-3 us per packet before any work is done; the flow table
 * and dissector selection downstream run per *batch* in numpy, so this walk is the only per-packet
 * code on the hot path. It touches only headers: payload bytes are never copied here.
 *
 * Record walk (all lengths checked against the buffer, nothing trusted):
 *   pcap   : 16-byte record header (ts_sec, ts_frac, incl_len, orig_len) + incl_len bytes
 *   pcapng : blocks (type, total_len, body, total_len); EPB (6) and SPB (3) decoded here, SHB and IDB
 *            handed back to Python (status NEED_BLOCK), any other block skipped by its length.
 * Link types: EN10MB (1) with 802.1Q / QinQ tags and 802.3 LLC/SNAP, NULL (0) / LOOP (108),
 *   LINUX_SLL (113), LINUX_SLL2 (276), RAW (101, 12, 14), IPV4 (228), IPV6 (229).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#pragma pack(push, 1)
typedef struct {
    double ts;
    uint64_t flow_hash;     /* direction-independent hash of (vlan, proto, endpoints); 0 if not IP */
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
    r->flow_hash = h ? h : 1;
    r->dir = c > 0;
}

/* Transport header at f[off..end): ports, TCP flags/seq/window, payload bounds. */
static void decode_l4(packet_rec *r, const uint8_t *f, uint32_t off, uint32_t end) {
    uint32_t len = end > off ? end - off : 0;
    if (r->proto == 6) {
        if (len < 20) { r->status = ST_MALFORMED; return; }
        uint32_t doff = (uint32_t)(f[off + 12] >> 4) * 4;
        if (doff < 20 || doff > len) { r->status = ST_MALFORMED; return; }
        r->sport = be16(f + off);
        r->dport = be16(f + off + 2);
        r->tcp_seq = be32(f + off + 4);
        r->tcp_flags = f[off + 13];
        r->tcp_win = be16(f + off + 14);
        r->payload_off = off + doff;
        r->payload_len = len - doff;
    } else if (r->proto == 17) {
        if (len < 8) { r->status = ST_MALFORMED; return; }
        uint32_t ulen = be16(f + off + 4);
        r->sport = be16(f + off);
        r->dport = be16(f + off + 2);
        if (ulen < 8) { r->status = ST_MALFORMED; return; }
        r->payload_off = off + 8;
        r->payload_len = (ulen - 8 < len - 8) ? ulen - 8 : len - 8;
    } else if (r->proto == 1 || r->proto == 58) {
        if (len < 4) { r->status = ST_MALFORMED; return; }
        r->payload_off = off;
        r->payload_len = len;
    } else {
        r->payload_off = off;
        r->payload_len = len;
    }
}

static void decode_ip(packet_rec *r, const uint8_t *f, uint32_t off, uint32_t caplen) {
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
        } else {
            decode_l4(r, f, off + ihl, end);
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
        decode_l4(r, f, p, end);
    } else {
        r->status = ST_MALFORMED;
        return;
    }
    if (r->status != ST_MALFORMED) flow_key(r);
}

static void decode_ethertype(packet_rec *r, const uint8_t *f, uint32_t off, uint32_t caplen, uint16_t et) {
    r->ethertype = et;
    if (et == 0x0800 || et == 0x86dd) {
        decode_ip(r, f, off, caplen);
    } else {
        r->payload_off = off;
        r->payload_len = caplen > off ? caplen - off : 0;
    }
}

static void decode_frame(packet_rec *r, int linktype, const uint8_t *f, uint32_t caplen) {
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
                if (oui == 0) { decode_ethertype(r, f, off + 8, caplen, pid); return; }
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
        decode_ethertype(r, f, off, caplen, et);
        return;
    }
    case 113:                                   /* Linux cooked v1 */
        if (caplen < 16) { r->status = ST_MALFORMED; return; }
        if (be16(f + 4) == 6) memcpy(r->src_mac, f + 6, 6);
        decode_ethertype(r, f, 16, caplen, be16(f + 14));
        return;
    case 276:                                   /* Linux cooked v2 */
        if (caplen < 20) { r->status = ST_MALFORMED; return; }
        if (f[11] == 6) memcpy(r->src_mac, f + 12, 6);
        decode_ethertype(r, f, 20, caplen, be16(f));
        return;
    case 0: case 108: {                         /* BSD loopback: 4-byte address family */
        if (caplen < 5) { r->status = ST_MALFORMED; return; }
        decode_ethertype(r, f, 4, caplen, (f[4] >> 4) == 6 ? 0x86dd : 0x0800);
        return;
    }
    case 101: case 12: case 14: case 228: case 229:
        if (caplen < 1) { r->status = ST_MALFORMED; return; }
        decode_ethertype(r, f, 0, caplen, (f[0] >> 4) == 6 ? 0x86dd : 0x0800);
        return;
    default:
        r->linktype_ok = 0;
        r->status = ST_UNSUPPORTED;
    }
}

/*
 * scan_pcap(buf, start, swapped, nsec, linktype, out, max_records) -> (offset, n, ret)
 * Decodes complete records of buf[start:]; offset is where the next unread record starts.
 */
static PyObject *scan_pcap(PyObject *self, PyObject *args) {
    Py_buffer in, out;
    Py_ssize_t start, max_records;
    int swapped, nsec, linktype;
    if (!PyArg_ParseTuple(args, "y*niiiw*n", &in, &start, &swapped, &nsec, &linktype, &out, &max_records))
        return NULL;
    const uint8_t *buf = in.buf;
    size_t len = (size_t)in.len, off = (size_t)start;
    Py_ssize_t cap = out.len / (Py_ssize_t)sizeof(packet_rec);
    if (max_records > cap) max_records = cap;
    packet_rec *recs = out.buf;
    Py_ssize_t n = 0;
    int ret = RET_NEED_DATA;
    double frac_unit = nsec ? 1e-9 : 1e-6;
    Py_BEGIN_ALLOW_THREADS
    while (1) {
        if (n >= max_records) { ret = RET_OUT_FULL; break; }
        if (len - off < 16) break;
        const uint8_t *h = buf + off;
        uint32_t incl = rd32(h + 8, swapped), orig = rd32(h + 12, swapped), frac = rd32(h + 4, swapped);
        if (incl > MAX_CAPLEN) { ret = RET_CORRUPT; break; }
        if (len - off - 16 < incl) break;
        packet_rec *r = &recs[n++];
        memset(r, 0, sizeof *r);
        r->ts = (double)rd32(h, swapped) + frac * frac_unit;
        r->frame_off = off + 16;
        r->caplen = incl;
        r->wirelen = orig;
        decode_frame(r, linktype, buf + off + 16, incl);
        off += 16 + (size_t)incl;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&in);
    PyBuffer_Release(&out);
    return Py_BuildValue("nni", (Py_ssize_t)off, n, ret);
}

/*
 * scan_pcapng(buf, start, swapped, ifaces, out, max_records) -> (offset, n, ret)
 * ifaces: packed little-endian {uint32 linktype; uint32 pad; double seconds_per_tick} per interface.
 * Stops before an SHB or IDB (RET_NEED_BLOCK) so Python can update endianness / interfaces.
 */
static PyObject *scan_pcapng(PyObject *self, PyObject *args) {
    Py_buffer in, ifc, out;
    Py_ssize_t start, max_records;
    int swapped;
    if (!PyArg_ParseTuple(args, "y*niy*w*n", &in, &start, &swapped, &ifc, &out, &max_records))
        return NULL;
    const uint8_t *buf = in.buf;
    size_t len = (size_t)in.len, off = (size_t)start;
    size_t n_if = (size_t)ifc.len / 16;
    const uint8_t *ifs = ifc.buf;
    Py_ssize_t cap = out.len / (Py_ssize_t)sizeof(packet_rec);
    if (max_records > cap) max_records = cap;
    packet_rec *recs = out.buf;
    Py_ssize_t n = 0;
    int ret = RET_NEED_DATA;
    Py_BEGIN_ALLOW_THREADS
    while (1) {
        if (n >= max_records) { ret = RET_OUT_FULL; break; }
        if (len - off < 12) break;
        const uint8_t *b = buf + off;
        uint32_t type = rd32(b, swapped), blen = rd32(b + 4, swapped);
        if (type == 0x0A0D0D0A || type == 1) { ret = RET_NEED_BLOCK; break; }
        if (blen < 12 || (blen & 3) || blen > MAX_CAPLEN + 4096) { ret = RET_CORRUPT; break; }
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
            memset(r, 0, sizeof *r);
            r->ts = ts;
            r->frame_off = off + hdr;
            r->caplen = incl;
            r->wirelen = orig;
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

static PyMethodDef methods[] = {
    {"scan_pcap", scan_pcap, METH_VARARGS, "Decode complete pcap records into packet records."},
    {"scan_pcapng", scan_pcapng, METH_VARARGS, "Decode pcapng EPB/SPB blocks into packet records."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastpath", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fastpath(void) {
    PyObject *m = PyModule_Create(&module);
    if (m) PyModule_AddIntConstant(m, "RECORD_SIZE", (long)sizeof(packet_rec));
    return m;
}
