#include "speedups.h"

/* --- sendmmsg and recvmmsg, with UDP segmentation and receive coalescing ---------------------------
 *
 * With ``segment`` (UDP_SEGMENT, Linux 4.18+), consecutive datagrams of equal length leave in one
 * message: the kernel (or the network card) cuts it into separate datagrams, each its own frame on
 * the link, each with its own header and MAC; only the per-datagram trip through the stack is saved.
 * With UDP_GRO set on the receiving socket (Linux 5.0+), the kernel hands over a run of datagrams of
 * one size from one sender as one message, with the size in a control message; it is cut again here,
 * and every datagram is checked on its own as before.
 */

#ifdef HAVE_MMSG
#include <netinet/in.h>
#include <sys/socket.h>

#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
/* The kernel's cap on segments per message (UDP_MAX_SEGMENTS was 64 before Linux 6.11) and the
 * largest UDP payload. */
#define MAX_SEGMENTS 64
#define MAX_UDP_PAYLOAD 65507

/* send_batch(fd, address, buffer, slot, lengths, first, count, segment) -> datagrams sent */
PyObject *
speedups_send_batch(PyObject *module, PyObject *args)
{
    int fd, segment;
    Py_buffer address, buffer;
    Py_ssize_t slot, first, count;
    PyObject *lengths;
    if (!PyArg_ParseTuple(args, "iy*y*nO!nnp:send_batch", &fd, &address, &buffer, &slot, &PyList_Type, &lengths,
                          &first, &count, &segment))
        return NULL;
    PyObject *result = NULL;
    struct mmsghdr messages[MAX_FRAGMENTS];
    struct iovec vectors[MAX_FRAGMENTS];
    /* One control message per message: the segment size. */
    union {
        char buf[CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } controls[MAX_FRAGMENTS];
    int datagrams_in[MAX_FRAGMENTS];
    /* Subtracted and divided rather than added and multiplied, which could overflow and pass. */
    if (count < 0 || count > MAX_FRAGMENTS || first < 0 || first > PyList_GET_SIZE(lengths) - count || slot < 1 ||
        (first + count > 0 && slot > buffer.len / (first + count)) ||
        address.len > (Py_ssize_t)sizeof(struct sockaddr_storage)) {
        PyErr_SetString(PyExc_ValueError, "send_batch: first, count, lengths and slot do not fit the buffer");
        goto done;
    }
    int nmessages = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_ssize_t length = PyLong_AsSsize_t(PyList_GET_ITEM(lengths, first + i));
        if (length == -1 && PyErr_Occurred())
            goto done;
        if (length < 1 || length > slot) {
            PyErr_SetString(PyExc_ValueError, "send_batch: a length is not within the slot");
            goto done;
        }
        vectors[i].iov_base = (char *)buffer.buf + (first + i) * slot;
        vectors[i].iov_len = (size_t)length;
        struct msghdr *open = nmessages ? &messages[nmessages - 1].msg_hdr : NULL;
        /* Join the open message if segmenting and this datagram has its size and still fits. */
        if (segment && open != NULL && vectors[i - 1].iov_len == (size_t)length &&
            datagrams_in[nmessages - 1] < MAX_SEGMENTS &&
            (Py_ssize_t)(datagrams_in[nmessages - 1] + 1) * length <= MAX_UDP_PAYLOAD) {
            open->msg_iovlen++;
            datagrams_in[nmessages - 1]++;
            continue;
        }
        struct msghdr *header = &messages[nmessages].msg_hdr;
        memset(&messages[nmessages], 0, sizeof messages[nmessages]);
        header->msg_name = address.buf;
        header->msg_namelen = (socklen_t)address.len;
        header->msg_iov = &vectors[i];
        header->msg_iovlen = 1;
        datagrams_in[nmessages] = 1;
        nmessages++;
    }
    for (int j = 0; j < nmessages; j++) {
        struct msghdr *header = &messages[j].msg_hdr;
        if (datagrams_in[j] < 2)
            continue; /* a lone datagram goes as it is */
        memset(&controls[j], 0, sizeof controls[j]);
        header->msg_control = controls[j].buf;
        header->msg_controllen = sizeof controls[j].buf;
        struct cmsghdr *cmsg = CMSG_FIRSTHDR(header);
        cmsg->cmsg_level = SOL_UDP;
        cmsg->cmsg_type = UDP_SEGMENT;
        cmsg->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t size = (uint16_t)header->msg_iov[0].iov_len;
        memcpy(CMSG_DATA(cmsg), &size, sizeof size);
    }
    int sent;
    Py_BEGIN_ALLOW_THREADS
    sent = nmessages ? sendmmsg(fd, messages, (unsigned int)nmessages, MSG_DONTWAIT) : 0;
    Py_END_ALLOW_THREADS
    if (sent < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS || errno == EINTR)
            sent = 0;
        else {
            PyErr_SetFromErrno(PyExc_OSError);
            goto done;
        }
    }
    long datagrams = 0;
    for (int j = 0; j < sent; j++)
        datagrams += datagrams_in[j];
    result = PyLong_FromLong(datagrams);
done:
    PyBuffer_Release(&address);
    PyBuffer_Release(&buffer);
    return result;
}

/*
 * recv_batch(fd, buffer, slot, count[, starts, sizes]) -> (starts, sizes) or count
 *
 * recvmmsg up to ``count`` messages, message i into buffer[i * slot : (i + 1) * slot]. Each message is
 * one datagram, or (UDP_GRO) a run of datagrams of the size its control message gives, the last one
 * possibly shorter. Gives where each datagram starts in the buffer and its size: -1 for a message
 * the kernel truncated (longer than slot: it cannot be ours), and a message whose segment size is
 * below the smallest datagram of ours counts as one datagram of size -1. Empty lists: none queued.
 *
 * With ``starts`` and ``sizes`` (writable buffers of signed 64-bit integers, array('q'), each with room
 * for recv_capacity(slot, count) entries) they are filled in place and the number of datagrams is
 * returned: no Python integer per datagram, which at a few hundred thousand datagrams a second is
 * a measurable share of the receiver (docs/bench/diode.md); parse_batch reads the same buffers.
 */
/* The most datagrams one recv_batch can give: every message cut into segments no smaller than ours. */
static Py_ssize_t
recv_capacity(Py_ssize_t slot, Py_ssize_t count)
{
    return count * (slot / OVERHEAD + 1);
}

/* A writable buffer of 64-bit signed integers (array('q') or alike), at least ``need`` of them. */
static int
get_index_buffer(PyObject *object, Py_buffer *view, Py_ssize_t need, const char *what)
{
    if (PyObject_GetBuffer(object, view, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    const char *format = view->format ? view->format : "B";
    if (view->itemsize != (Py_ssize_t)sizeof(int64_t) || (strcmp(format, "q") != 0 && strcmp(format, "l") != 0) ||
        view->len / view->itemsize < need) {
        PyErr_Format(PyExc_ValueError, "recv_batch: %s must be an array('q') of at least %zd entries", what, need);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

PyObject *
speedups_recv_batch(PyObject *module, PyObject *args)
{
    int fd;
    Py_buffer buffer, starts_out = {0}, sizes_out = {0};
    Py_ssize_t slot, count;
    PyObject *starts_arg = NULL, *sizes_arg = NULL;
    if (!PyArg_ParseTuple(args, "iw*nn|OO:recv_batch", &fd, &buffer, &slot, &count, &starts_arg, &sizes_arg))
        return NULL;
    PyObject *result = NULL, *starts = NULL, *sizes = NULL;
    int64_t *start_at = NULL, *size_at = NULL;
    Py_ssize_t filled = 0, capacity = 0;
    struct mmsghdr messages[1024];
    struct iovec vectors[1024];
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } controls[1024];
    if (count < 1 || count > 1024 || slot < 1 || slot > buffer.len / count) { /* count * slot could overflow */
        PyErr_SetString(PyExc_ValueError, "recv_batch: count and slot do not fit the buffer");
        goto done;
    }
    if ((starts_arg == NULL) != (sizes_arg == NULL)) {
        PyErr_SetString(PyExc_TypeError, "recv_batch: give both starts and sizes, or neither");
        goto done;
    }
    if (starts_arg != NULL) {
        capacity = recv_capacity(slot, count);
        if (get_index_buffer(starts_arg, &starts_out, capacity, "starts") < 0)
            goto done;
        if (get_index_buffer(sizes_arg, &sizes_out, capacity, "sizes") < 0)
            goto done;
        start_at = starts_out.buf;
        size_at = sizes_out.buf;
    }
    memset(messages, 0, sizeof(struct mmsghdr) * (size_t)count);
    for (Py_ssize_t i = 0; i < count; i++) {
        vectors[i].iov_base = (char *)buffer.buf + i * slot;
        vectors[i].iov_len = (size_t)slot;
        messages[i].msg_hdr.msg_iov = &vectors[i];
        messages[i].msg_hdr.msg_iovlen = 1;
        messages[i].msg_hdr.msg_control = controls[i].buf;
        messages[i].msg_hdr.msg_controllen = sizeof controls[i].buf;
    }
    int got;
    Py_BEGIN_ALLOW_THREADS
    got = recvmmsg(fd, messages, (unsigned int)count, MSG_DONTWAIT, NULL);
    Py_END_ALLOW_THREADS
    if (got < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            got = 0;
        else {
            PyErr_SetFromErrno(PyExc_OSError);
            goto done;
        }
    }
    if (start_at == NULL) {
        starts = PyList_New(0);
        sizes = PyList_New(0);
        if (starts == NULL || sizes == NULL)
            goto done;
    }
    for (int i = 0; i < got; i++) {
        struct msghdr *header = &messages[i].msg_hdr;
        Py_ssize_t total = (Py_ssize_t)messages[i].msg_len, base = i * slot, segment = total;
        if ((header->msg_flags & MSG_TRUNC) || total > slot)
            segment = total = -1;
        else {
            for (struct cmsghdr *c = CMSG_FIRSTHDR(header); c != NULL; c = CMSG_NXTHDR(header, c)) {
                if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
                    int value;
                    memcpy(&value, CMSG_DATA(c), sizeof value);
                    segment = value;
                }
            }
            if (segment < OVERHEAD)
                segment = total = -1; /* nothing of ours is this small: one rejection, not thousands */
        }
        Py_ssize_t position = 0;
        do {
            Py_ssize_t size = total < 0 ? -1 : (total - position < segment ? total - position : segment);
            if (start_at != NULL) {
                /* segment >= OVERHEAD and total <= slot: at most slot / OVERHEAD + 1 per message. */
                if (filled >= capacity) {
                    PyErr_SetString(PyExc_RuntimeError, "recv_batch: more datagrams than the arrays hold");
                    goto done;
                }
                start_at[filled] = base + position;
                size_at[filled++] = size;
            }
            else {
                PyObject *start = PyLong_FromSsize_t(base + position), *length = PyLong_FromSsize_t(size);
                int failed = start == NULL || length == NULL || PyList_Append(starts, start) < 0 ||
                             PyList_Append(sizes, length) < 0;
                Py_XDECREF(start);
                Py_XDECREF(length);
                if (failed)
                    goto done;
            }
            position += segment;
        } while (total > 0 && position < total);
    }
    result = start_at != NULL ? PyLong_FromSsize_t(filled) : PyTuple_Pack(2, starts, sizes);
done:
    Py_XDECREF(starts);
    Py_XDECREF(sizes);
    if (starts_out.obj != NULL)
        PyBuffer_Release(&starts_out);
    if (sizes_out.obj != NULL)
        PyBuffer_Release(&sizes_out);
    PyBuffer_Release(&buffer);
    return result;
}

/* enable_coalescing(fd) -> True if the kernel will hand over runs of datagrams (UDP_GRO). */
PyObject *
speedups_enable_coalescing(PyObject *module, PyObject *args)
{
    int fd, on = 1;
    if (!PyArg_ParseTuple(args, "i:enable_coalescing", &fd))
        return NULL;
    return PyBool_FromLong(setsockopt(fd, SOL_UDP, UDP_GRO, &on, sizeof on) == 0);
}

#endif /* HAVE_MMSG */
