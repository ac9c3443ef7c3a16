"""The fast path for capture files: the routine bulk of Modbus/TCP polling decoded a million frames at a time.

A plant's capture is mostly the same thing over and over: a master polling registers, one request and
one response per segment, in order. Running each of those frames through the per-frame analyser costs
about 20 microseconds of Python. Here the frames of a pcap or pcapng file are indexed once, their Ethernet,
IPv4, TCP and MBAP headers are decoded column-wise with numpy, and only what can matter is handed to the
per-frame code:

* a connection qualifies when every segment of it is *simple*: in sequence in each direction (no
  retransmission, overlap, hole or second SYN), each data segment exactly one well-framed ADU, requests and
  responses strictly alternating with matching transaction ids. Anything else (OPC UA, unusual ports,
  VLAN tags, IPv6, reordering, pipelining, a bad header) goes through :meth:`Monitor.process` unchanged;
* within a qualifying connection a message is *routine* when it is a well-formed read (functions 1 to 4)
  from an allowed master (or with no allow-list) or its normal response. Routine messages only feed the
  inventory and the counters, in bulk; every other message (writes, diagnostics, device identification,
  exceptions, malformed PDUs, unlisted masters) is decoded by the same :func:`decode_pdu` and given to the
  same detector, in frame order, interleaved with the frames of the per-frame path.

The result (alerts, inventory, counters) is the same as the per-frame analyser's; ``tests/monitor``
checks it on the public captures and on captures built to defeat each condition. Transaction records are
not built here: ``--transactions`` uses the per-frame path.
"""

from __future__ import annotations

import mmap
import struct
from typing import Any

import numpy as np

from otseam.monitor.analyzers.modbus import inventory, rules
from otseam.monitor.analyzers.modbus.parser import Message, decode_pdu
from otseam.monitor.capture import (
    _PCAP_MAGIC,
    _PCAPNG_SHB,
    LINKTYPE_ETHERNET,
    MAX_FRAME,
    CaptureError,
    CaptureStats,
    Frame,
    if_tsresol,
    pcapng_records,
)
from otseam.monitor.engine import Monitor
from otseam.monitor.packet import TCP_SYN
from otseam.monitor.rules import Endpoints

Buffer = bytes | mmap.mmap
NDArray = np.ndarray[Any, Any]

_U32 = struct.Struct("<I")
_ROUTINE_FUNCTIONS = (1, 2, 3, 4)


def index_pcap(buf: Buffer, stats: CaptureStats, name: str) -> tuple[NDArray, float, int] | None:
    """Offsets of every record header of a little-endian classic pcap, its time resolution and link type.

    None for anything else (pcapng, big-endian pcap): those are read by the per-frame path.
    """
    magic = bytes(buf[:4])
    if magic not in _PCAP_MAGIC or len(buf) < 24:
        return None
    order, resolution = _PCAP_MAGIC[magic]
    if order != "<":
        return None
    length_at = _U32.unpack_from
    linktype = (length_at(buf, 20)[0]) & 0xFFFF
    size = len(buf)
    offsets: list[int] = []
    append = offsets.append
    pos = 24
    last = size - 16
    # The only sequential part: each record's length says where the next one starts. The lengths are
    # checked afterwards, column-wise, to keep this loop as short as Python allows.
    while pos <= last:
        append(pos)
        pos += 16 + length_at(buf, pos + 8)[0]
    heads = np.asarray(offsets, dtype=np.int64)
    if len(heads):
        incl = _rows(np.frombuffer(buf, dtype=np.uint8), heads + 8, 4).view("<u4")[:, 0].astype(np.int64)
        bad = (incl > MAX_FRAME) | (heads + 16 + incl > size)
        if bad.any():
            first = int(np.argmax(bad))
            at, claimed = int(heads[first]), int(incl[first])
            if claimed > MAX_FRAME:
                stats.problems.append(f"{name}: record at byte {at} claims {claimed} bytes; stopped reading")
            else:
                stats.problems.append(f"{name}: truncated record at byte {at} ({size - at - 16} of {claimed} bytes)")
            heads = heads[:first]
        elif pos != size:
            stats.problems.append(f"{name}: truncated record header at byte {pos}")
    elif pos != size:
        stats.problems.append(f"{name}: truncated record header at byte {pos}")
    stats.frames = len(heads)
    return heads, resolution, linktype


def index_capture(buf: Buffer, stats: CaptureStats, name: str) -> tuple[NDArray, NDArray, NDArray] | None:
    """``(data positions, captured lengths, times)`` of every frame of an Ethernet capture: a little-endian
    classic pcap or a pcapng file whose packets are all Ethernet. None for anything else."""
    magic = bytes(buf[:4])
    if magic == _PCAPNG_SHB:
        simple = _index_pcapng_simple(buf)
        if simple is not None:
            stats.frames = len(simple[0])
            return simple
        try:
            records = list(pcapng_records(buf, stats, name))
        except CaptureError:
            return None  # the per-frame reader reports it
        if any(linktype != LINKTYPE_ETHERNET for _ts, linktype, _start, _caplen in records):
            return None
        if not records:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, np.zeros(0, dtype=np.float64)
        times, _linktypes, starts, lengths = zip(*records, strict=True)
        return (
            np.asarray(starts, dtype=np.int64),
            np.asarray(lengths, dtype=np.int64),
            np.asarray(times, dtype=np.float64),
        )
    indexed = index_pcap(buf, stats, name)
    if indexed is None:
        return None
    headers, resolution, linktype = indexed
    if linktype != LINKTYPE_ETHERNET:
        return None
    b = np.frombuffer(buf, dtype=np.uint8)
    record = _rows(b, headers, 16).view("<u4")  # (n, 4): seconds, fraction, included length, original length
    ts = record[:, 0].astype(np.float64) + record[:, 1].astype(np.float64) * resolution
    return headers + 16, record[:, 2].astype(np.int64), ts


def _index_pcapng_simple(buf: Buffer) -> tuple[NDArray, NDArray, NDArray] | None:
    """The pcapng files tcpdump, dumpcap and editcap write: one little-endian section, Ethernet
    interfaces described before the first packet, enhanced packet blocks, every length consistent.
    Indexed like a classic pcap (one short loop over the block lengths, then column-wise checks); None
    for anything else, which the full block walk (``pcapng_records``) reads, problems and all."""
    size = len(buf)
    if size < 28 or bytes(buf[8:12]) != b"\x4d\x3c\x2b\x1a":
        return None
    length_at = _U32.unpack_from
    pos = length_at(buf, 4)[0]
    if pos < 28 or pos % 4 or pos > size:
        return None
    heads_list: list[int] = []
    append = heads_list.append
    last = size - 12
    while pos <= last:
        append(pos)
        length = length_at(buf, pos + 4)[0]
        if length < 12 or length % 4:
            return None
        pos += length
    if pos != size:
        return None
    b = np.frombuffer(buf, dtype=np.uint8)
    heads = np.asarray(heads_list, dtype=np.int64)
    empty = np.zeros(0, dtype=np.int64)
    if not len(heads):
        return empty, empty, np.zeros(0, dtype=np.float64)
    fields = _rows(b, heads, 8).view("<u4")  # (n, 2): block type, block length
    kinds, lengths = fields[:, 0].astype(np.int64), fields[:, 1].astype(np.int64)
    packets = kinds == 6
    first_packet = int(heads[packets][0]) if packets.any() else size
    resolutions: list[float] = []
    for at, kind, length in zip(
        heads[~packets].tolist(), kinds[~packets].tolist(), lengths[~packets].tolist(), strict=True
    ):
        if kind in (2, 3, 0x0A0D0D0A):  # obsolete and simple packet blocks, a second section
            return None
        if kind == 1:  # interface description: Ethernet only, and before any packet
            if length < 20 or at > first_packet or _U16LE.unpack_from(buf, at + 8)[0] != LINKTYPE_ETHERNET:
                return None
            resolutions.append(if_tsresol(buf, at + 16, at + length - 4, "<"))
    starts = heads[packets]
    if not len(starts):
        return empty, empty, np.zeros(0, dtype=np.float64)
    block_lengths = lengths[packets]
    if (block_lengths < 32).any():
        return None
    rows = _rows(b, starts + 8, 20).view("<u4")  # (n, 5): interface, time high, time low, caplen, origlen
    interface = rows[:, 0].astype(np.int64)
    caplen = rows[:, 3].astype(np.int64)
    if (interface >= len(resolutions)).any() or (caplen > block_lengths - 32).any() or (caplen > MAX_FRAME).any():
        return None
    # Exactly the per-frame reader's float: the 64-bit count rounded once, then times the unit.
    ticks = rows[:, 1].astype(np.float64) * 4294967296.0 + rows[:, 2].astype(np.float64)
    times = ticks * np.asarray(resolutions, dtype=np.float64)[interface]
    return starts + 28, caplen, times


_U16LE = struct.Struct("<H")


def _rows(b: NDArray, starts: NDArray, width: int) -> NDArray:
    """``width`` bytes from each start, as an (n, width) array (starts must leave ``width`` bytes)."""
    windows = np.lib.stride_tricks.sliding_window_view(b, width)
    rows: NDArray = windows[starts]
    return rows


def _columns(b: NDArray, starts: NDArray, width: int) -> NDArray:
    """``width`` bytes from each start as a (width, n) array: byte k of every row is one contiguous column.

    Rows are copied whole through a sliding-window view (no per-byte index arrays). A start too close to
    the end of the buffer is moved back; callers only use the bytes that lie within each frame.
    """
    out = np.empty((width, len(starts)), dtype=np.uint8)
    if len(b) < width:
        out.fill(0)
        return out
    windows = np.lib.stride_tricks.sliding_window_view(b, width)
    starts = np.minimum(starts, len(b) - width)
    step = 1 << 16
    for i in range(0, len(starts), step):
        out[:, i : i + step] = windows[starts[i : i + step]].T
    return out


def _be16(columns: NDArray, at: int) -> NDArray:
    value: NDArray = (columns[at].astype(np.int64) << 8) | columns[at + 1]
    return value


def _be32(columns: NDArray, at: int) -> NDArray:
    value: NDArray = (_be16(columns, at) << 16) | _be16(columns, at + 2)
    return value


def _u16(b: NDArray, at: NDArray) -> NDArray:
    value: NDArray = (b[at].astype(np.int32) << 8) | b[at + 1]
    return value


def _u32be(b: NDArray, at: NDArray) -> NDArray:
    value: NDArray = (
        (b[at].astype(np.int64) << 24)
        | (b[at + 1].astype(np.int64) << 16)
        | (b[at + 2].astype(np.int64) << 8)
        | b[at + 3]
    )
    return value


def analyse_pcap(monitor: Monitor, buf: Buffer, stats: CaptureStats, name: str = "capture") -> bool:
    """Analyse a whole classic-pcap Ethernet capture into ``monitor`` (the caller then calls ``finish``).

    Returns False, having done nothing, for files this path does not read: use the per-frame path.
    """
    indexed = index_capture(buf, stats, name)
    if indexed is None:
        stats.problems.clear()
        stats.frames = 0
        return False
    data, caplen, ts = indexed
    b = np.frombuffer(buf, dtype=np.uint8)
    n = len(data)

    # --- Ethernet / IPv4 / TCP, column-wise. Rows failing a check go to the per-frame path. -----------
    fast = np.zeros(n, dtype=bool)
    candidates = np.flatnonzero(caplen >= 54)
    o = data[candidates]
    cl = caplen[candidates]
    # The first 54 bytes of each frame (Ethernet, a 20-byte IPv4 header, a 20-byte TCP header), one
    # gather, transposed so that each header byte is a contiguous column.
    h = _columns(b, o, 54)
    ihl = (h[14] & 0x0F).astype(np.int64) * 4
    ok = (_be16(h, 12) == 0x0800) & ((h[14] >> 4) == 4) & (h[23] == 6)
    ok &= (ihl >= 20) & (14 + ihl + 20 <= cl) & ((_be16(h, 20) & 0x3FFF) == 0)
    sel = np.flatnonzero(ok)
    candidates, o, cl, ihl, h = candidates[sel], o[sel], cl[sel], ihl[sel], h[:, sel]
    total = _be16(h, 16)
    end = np.where((total >= ihl) & (14 + total <= cl), 14 + total, cl)
    tcp = 14 + ihl
    src = _be32(h, 26)
    dst = _be32(h, 30)
    sport, dport, seq = _be16(h, 34), _be16(h, 36), _be32(h, 38)
    doff = (h[46] >> 4).astype(np.int64) * 4
    flags = h[47].copy()
    options = np.flatnonzero(ihl != 20)  # IP options shift the TCP header: read those few from the frame
    if len(options):
        at = o[options] + tcp[options]
        sport[options], dport[options], seq[options] = _u16(b, at), _u16(b, at + 2), _u32be(b, at + 4)
        doff[options] = (b[at + 12] >> 4).astype(np.int64) * 4
        flags[options] = b[at + 13]
    ok = (doff >= 20) & (tcp + doff <= end)
    known = np.asarray(sorted(set().union(*monitor.ports.values())), dtype=np.int64)
    c2s = np.isin(dport, known)
    s2c = ~c2s & np.isin(sport, known)
    server_port = np.where(c2s, dport, sport)
    ok &= (c2s | s2c) & np.isin(server_port, np.asarray(sorted(monitor.ports["modbus"]), dtype=np.int64))
    sel = np.flatnonzero(ok)
    candidates, o, end, tcp, doff, sport, dport, c2s = (
        candidates[sel],
        o[sel],
        end[sel],
        tcp[sel],
        doff[sel],
        sport[sel],
        dport[sel],
        c2s[sel],
    )
    src, dst, seq, flags = src[sel], dst[sel], seq[sel], flags[sel]
    payload = o + tcp + doff
    plen = end - tcp - doff
    del h, o, cl, ihl, total, end, tcp, doff, ok, sel, s2c, server_port  # memory: only what follows needs

    # --- connections ---------------------------------------------------------------------------------
    client = np.where(c2s, src, dst)
    server = np.where(c2s, dst, src)
    cport = np.where(c2s, sport, dport)
    sport_ = np.where(c2s, dport, sport)
    key1 = (client << 32) | server
    key2 = (cport.astype(np.int64) << 16) | sport_
    order = np.lexsort((candidates, key2, key1))  # by connection, then frame order
    k1, k2 = key1[order], key2[order]
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = (k1[1:] != k1[:-1]) | (k2[1:] != k2[:-1])
    conn_sorted = np.cumsum(starts) - 1
    conn = np.empty_like(conn_sorted)
    conn[order] = conn_sorted
    del key1, key2, k1, k2, src, dst, dport
    nconn = int(conn_sorted[-1]) + 1 if len(order) else 0
    del conn_sorted

    # --- per-segment simplicity -------------------------------------------------------------------------
    has_data = plen > 0
    syn = (flags & TCP_SYN) != 0
    mlen = np.zeros_like(plen)
    fc = np.zeros_like(plen)
    tid = np.zeros_like(plen)
    unit = np.zeros_like(plen)
    d = np.flatnonzero(has_data & (plen >= 8))
    mbap = _columns(b, payload[d], 9)  # the MBAP header, the function code and a response's byte count
    mlen[d] = _be16(mbap, 4)
    fc[d] = mbap[7]
    tid[d] = _be16(mbap, 0)
    unit[d] = mbap[6]
    proto = np.ones_like(plen)
    proto[d] = _be16(mbap, 2)
    byte_count = np.full_like(plen, -1)
    byte_count[d] = np.where(plen[d] >= 9, mbap[8], -1)
    framed = (proto == 0) & (mlen + 6 == plen) & (mlen >= 2) & (mlen <= 254) & ((fc & 0x7F) != 0)
    bad = (has_data & ~framed) | (syn & has_data)

    # Sequence continuity per direction: each SYN or data segment must start where the previous ended.
    relevant = np.flatnonzero(syn | has_data)
    direction = np.where(c2s, 0, 1)
    group = conn[relevant] * 2 + direction[relevant]
    r_order = relevant[np.lexsort((candidates[relevant], group))]
    g = conn[r_order] * 2 + direction[r_order]
    nxt = (seq[r_order] + np.where(syn[r_order], 1, plen[r_order])) & 0xFFFFFFFF
    same = g[1:] == g[:-1]
    broken = same & ((seq[r_order][1:] != nxt[:-1]) | syn[r_order][1:])
    bad[r_order[1:][broken]] = True

    # Strict alternation request/response with matching transaction ids, starting with a request.
    msgs = np.flatnonzero(has_data)
    m_order = msgs[np.lexsort((candidates[msgs], conn[msgs]))]
    mc = conn[m_order]
    is_req = c2s[m_order]
    first = np.ones(len(m_order), dtype=bool)
    first[1:] = mc[1:] != mc[:-1]
    wrong = first & ~is_req
    later = ~first
    prev_req = np.zeros(len(m_order), dtype=bool)
    prev_req[1:] = is_req[:-1]
    prev_tid = np.zeros(len(m_order), dtype=np.int64)
    prev_tid[1:] = tid[m_order][:-1]
    wrong |= later & (is_req == prev_req)
    wrong |= later & ~is_req & (tid[m_order] != prev_tid)
    bad[m_order[wrong]] = True
    del relevant, direction, group, r_order, g, nxt, same, broken, msgs, m_order, mc, is_req, first, wrong
    del later, prev_req, prev_tid, proto, framed, mbap, d

    conn_bad = np.bincount(conn[bad], minlength=nconn) > 0 if nconn else np.zeros(0, dtype=bool)
    in_fast = ~conn_bad[conn]
    fast[candidates[in_fast]] = True

    # --- routine messages and the per-connection allow-list ----------------------------------------------
    first_row = np.flatnonzero(starts)  # index into `order`
    conn_rows = order[first_row]  # one row per connection: its first frame
    conn_client = client[conn_rows]
    conn_server = server[conn_rows]
    conn_cport = cport[conn_rows]
    conn_sport = sport_[conn_rows]
    routine_fc = np.full(nconn, 0b1111, dtype=np.int64)  # bit f-1 set: function f is routine here
    requests_routine = np.ones(nconn, dtype=bool)
    ends_of: dict[int, Endpoints] = {}
    ip = _ip_text

    def ends(c: int) -> Endpoints:
        found = ends_of.get(c)
        if found is None:
            found = ends_of[c] = Endpoints(
                ip(int(conn_client[c])), ip(int(conn_server[c])), int(conn_cport[c]), int(conn_sport[c])
            )
        return found

    policy = monitor.policy
    if policy is not None:
        for c in np.flatnonzero(~conn_bad):
            e = ends(int(c))
            allowed = policy.is_master(e.client, e.server)
            if not allowed:
                requests_routine[c] = False
            else:
                mask = 0
                for f in _ROUTINE_FUNCTIONS:
                    if policy.function_allowed(e.client, e.server, f):
                        mask |= 1 << (f - 1)
                routine_fc[c] = mask
    m = np.flatnonzero(in_fast & has_data)
    mfc = fc[m]
    read = (mfc >= 1) & (mfc <= 4)
    shift = np.where(read, mfc - 1, 0)
    m_conn = conn[m]
    req = c2s[m]
    req_routine = req & read & (mlen[m] == 6) & requests_routine[m_conn] & (((routine_fc[m_conn] >> shift) & 1) == 1)
    resp_routine = ~req & read & (byte_count[m] == mlen[m] - 3)
    notable = m[~(req_routine | resp_routine)]

    # --- inventory in bulk, counters ---------------------------------------------------------------------
    inv = monitor.inventory
    stats_m = monitor.stats
    fast_rows = np.flatnonzero(in_fast)
    stats_m.frames += len(fast_rows)
    stats_m.tcp_segments += len(fast_rows)
    stats_m.modbus_messages += len(m)
    stats_m.transactions += int(np.count_nonzero(req))
    # Announce connections and hand over notable messages and slow frames in frame order.
    fast_conns = np.flatnonzero(~conn_bad)
    announce_rows = candidates[conn_rows[fast_conns]]
    slow_frames = np.flatnonzero(~fast)
    events = np.concatenate([slow_frames * 4 + 0, announce_rows * 4 + 1, candidates[notable] * 4 + 2])
    events.sort(kind="stable")
    row_of_frame = np.full(n, -1, dtype=np.int64)
    row_of_frame[candidates] = np.arange(len(candidates))
    for code in events.tolist():
        frame_index, kind = divmod(code, 4)
        number = frame_index + 1
        if kind == 0:
            start = int(data[frame_index])
            monitor.process(
                Frame(
                    number,
                    float(ts[frame_index]),
                    LINKTYPE_ETHERNET,
                    bytes(buf[start : start + int(caplen[frame_index])]),
                )
            )
            continue
        row = int(row_of_frame[frame_index])
        e = ends(int(conn[row]))
        when = float(ts[frame_index])
        if kind == 1:
            monitor.announce(e, "modbus", number, when, False)
            continue
        start = int(payload[row])
        length = int(mlen[row])
        msg = Message(number, when, int(tid[row]), int(unit[row]), int(fc[row]), bool(c2s[row]), length)
        decode_pdu(msg, bytes(buf[start + 7 : start + 6 + length]))
        if msg.is_request:
            rules.request(monitor.detector, e, msg)
        else:
            rules.response(monitor.detector, e, msg)
            if msg.objects:
                inventory.record(inv, e.client, e.server, msg.unit, msg.function, when, msg.objects)
    # Inventory: each (connection, unit, function) once, at its first and last time.
    if len(m):
        mt = ts[candidates[m]]
        keys = (m_conn * 256 + unit[m]) * 128 + (mfc & 0x7F)
        uniq, inverse = np.unique(keys, return_inverse=True)
        first_ts = np.full(len(uniq), np.inf)
        last_ts = np.full(len(uniq), -np.inf)
        np.minimum.at(first_ts, inverse, mt)
        np.maximum.at(last_ts, inverse, mt)
        for k, t0, t1 in zip(uniq.tolist(), first_ts.tolist(), last_ts.tolist(), strict=True):
            c, rest = divmod(k, 256 * 128)
            u, f = divmod(rest, 128)
            e = ends(c)
            inventory.record(inv, e.client, e.server, u, f, t0, {})
            inventory.record(inv, e.client, e.server, u, f, t1, {})
    return True


_ip_cache: dict[int, str] = {}


def _ip_text(value: int) -> str:
    text = _ip_cache.get(value)
    if text is None:
        text = f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"
        if len(_ip_cache) < 65536:
            _ip_cache[value] = text
    return text
