/* SPDX-License-Identifier: MIT */
/*
 * The reply stream stays intact under backpressure: a property test.
 *
 * One connection pipelines a random mix of methods whose replies range from
 * a few bytes to tens of KiB (list of 200 domains, api.info, info, errors),
 * with up to 64 MiB of replies outstanding, while the client reads slowly,
 * in random chunks, with random pauses.  Every byte is parsed by msgpack-c's
 * own streaming unpacker (not the daemon's scanner), and every reply must
 * answer a msgid that was sent and is still unanswered, with the result the
 * method promises.  msgpack-RPC has no framing of its own: a single cut or
 * stale byte desynchronises the stream and shows up here.
 *
 * The seed is printed; CORRAL_STREAM_SEED=N replays a run.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

#define NDOMAINS    200
#define MAX_IDS     (1u << 16)
#define OUTSTANDING (64u << 20)         /* estimated reply bytes in flight */

static struct dt_daemon dd;

static void stop(void)
{
	dt_stop(&dd);
}

TestSuite(stream, .fini = stop, .timeout = 600);

enum kind { K_LIST, K_INFO, K_INFO_MISSING, K_API_INFO, K_DAEMON_INFO, K_NO_METHOD, K_COUNT };

/* Rough reply sizes, to keep the estimate of bytes in flight honest. */
static const size_t kind_bytes[K_COUNT] = {
	[K_LIST] = NDOMAINS * 136, [K_INFO] = 700, [K_INFO_MISSING] = 60,
	[K_API_INFO] = 24000, [K_DAEMON_INFO] = 200, [K_NO_METHOD] = 80,
};

struct pending {
	bool sent, answered;
	enum kind kind;
	int dom;
};

static uint64_t rng_state;

static uint64_t rnd(void)
{
	/* xorshift64*: reproducible from the printed seed. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

static size_t rnd_below(size_t n)
{
	return (size_t)(rnd() % n);
}

static const msgpack_object *map_get(const msgpack_object *m, const char *key)
{
	if (m->type != MSGPACK_OBJECT_MAP)
		return NULL;
	for (uint32_t i = 0; i < m->via.map.size; i++) {
		const msgpack_object *k = &m->via.map.ptr[i].key;

		if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(key) &&
		    !memcmp(k->via.str.ptr, key, k->via.str.size))
			return &m->via.map.ptr[i].val;
	}
	return NULL;
}

static bool str_eq(const msgpack_object *o, const char *s)
{
	return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) &&
	       !memcmp(o->via.str.ptr, s, o->via.str.size);
}

/* Append one request of kind k to buf. */
static void pack_request(msgpack_sbuffer *sb, uint32_t id, enum kind k, int dom)
{
	msgpack_packer pk;
	char name[32];
	const char *method = NULL;

	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_uint32(&pk, 0);
	msgpack_pack_uint32(&pk, id);
	switch (k) {
	case K_LIST: method = "list"; break;
	case K_INFO: case K_INFO_MISSING: method = "info"; break;
	case K_API_INFO: method = "api.info"; break;
	case K_DAEMON_INFO: method = "daemon.info"; break;
	case K_NO_METHOD: method = "no.such.method"; break;
	case K_COUNT: break;
	}
	msgpack_pack_str_with_body(&pk, method, strlen(method));
	if (k == K_INFO || k == K_INFO_MISSING) {
		snprintf(name, sizeof(name), k == K_INFO ? "s%03d" : "missing%d", dom);
		msgpack_pack_array(&pk, 1);
		msgpack_pack_map(&pk, 1);
		msgpack_pack_str_with_body(&pk, "name", 4);
		msgpack_pack_str_with_body(&pk, name, strlen(name));
	} else {
		msgpack_pack_array(&pk, 0);
	}
}

/* One response checked against what was asked. */
static void check_response(const msgpack_object *o, struct pending *pend, uint32_t next_id)
{
	const msgpack_object *a, *err, *res;
	struct pending *p;
	uint32_t id;
	char name[32];

	cr_assert_eq(o->type, MSGPACK_OBJECT_ARRAY, "a message that is not an array");
	a = o->via.array.ptr;
	cr_assert_eq(o->via.array.size, 4, "a message of %u elements", o->via.array.size);
	cr_assert_eq(a[0].type, MSGPACK_OBJECT_POSITIVE_INTEGER);
	cr_assert_eq(a[0].via.u64, 1, "not a response: type %" PRIu64, a[0].via.u64);
	cr_assert_eq(a[1].type, MSGPACK_OBJECT_POSITIVE_INTEGER);
	cr_assert_lt(a[1].via.u64, next_id, "response to msgid %" PRIu64 ", never sent",
		     a[1].via.u64);
	id = (uint32_t)a[1].via.u64;
	p = &pend[id];
	cr_assert(p->sent && !p->answered, "msgid %u answered twice or never sent", id);
	p->answered = true;
	err = &a[2];
	res = &a[3];
	switch (p->kind) {
	case K_LIST:
		cr_assert_eq(err->type, MSGPACK_OBJECT_NIL, "list %u failed", id);
		cr_assert_eq(res->type, MSGPACK_OBJECT_ARRAY);
		cr_assert_eq(res->via.array.size, NDOMAINS, "list %u: %u domains", id,
			     res->via.array.size);
		for (uint32_t i = 0; i < res->via.array.size; i++) {
			const msgpack_object *n = map_get(&res->via.array.ptr[i], "name");

			cr_assert(n && n->type == MSGPACK_OBJECT_STR && n->via.str.size == 4 &&
				  n->via.str.ptr[0] == 's', "list %u: entry %u has no name", id, i);
		}
		break;
	case K_INFO:
		cr_assert_eq(err->type, MSGPACK_OBJECT_NIL, "info %u failed", id);
		snprintf(name, sizeof(name), "s%03d", p->dom);
		cr_assert(str_eq(map_get(res, "name"), name), "info %u: not %s", id, name);
		cr_assert(map_get(res, "config"), "info %u: no config", id);
		break;
	case K_INFO_MISSING:
	case K_NO_METHOD:
		cr_assert_eq(err->type, MSGPACK_OBJECT_ARRAY, "msgid %u: no error", id);
		cr_assert_eq(err->via.array.size, 2);
		cr_assert_eq(err->via.array.ptr[0].via.u64, p->kind == K_NO_METHOD ? 2 : 4,
			     "msgid %u: error code %" PRIu64, id, err->via.array.ptr[0].via.u64);
		cr_assert_eq(res->type, MSGPACK_OBJECT_NIL);
		break;
	case K_API_INFO:
		cr_assert_eq(err->type, MSGPACK_OBJECT_NIL);
		cr_assert(map_get(res, "methods") && map_get(res, "errors"), "api.info %u", id);
		break;
	case K_DAEMON_INFO: {
		const msgpack_object *n = map_get(res, "domains");

		cr_assert_eq(err->type, MSGPACK_OBJECT_NIL);
		cr_assert(n && n->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
			  n->via.u64 == NDOMAINS, "daemon.info %u", id);
		break;
	}
	case K_COUNT:
		break;
	}
}

/* Define the domains the replies talk about (machine none: no QEMU runs). */
static void define_domains(void)
{
	struct dt_client c;
	char params[256];

	dt_connect(&c, dd.rw);
	for (int i = 0; i < NDOMAINS; i++) {
		snprintf(params, sizeof(params),
			 "{\"config\": {\"name\": \"s%03d\", \"machine\": \"none\", "
			 "\"memory\": %d}}", i, 16 + i);
		json_decref(dt_call_ok(&c, "define", params));
	}
	dt_close(&c);
}

/*
 * One run: nreq requests, at most `window` unanswered at a time and about
 * OUTSTANDING bytes of replies owed; reads of 1 byte to 256 KiB, with
 * pauses now and then, so the daemon's output buffer fills, is written in
 * pieces and slides its unwritten bytes down while replies are packed.
 */
static void run_once(unsigned nreq, unsigned window)
{
	struct pending *pend = calloc(MAX_IDS, sizeof(*pend));
	msgpack_unpacker up;
	msgpack_unpacked msg;
	msgpack_sbuffer out;
	size_t out_off = 0, owed = 0, answered = 0;
	uint32_t next_id = 1;
	unsigned unanswered = 0;
	struct dt_client c;
	time_t deadline = time(NULL) + 300;

	cr_assert_not_null(pend);
	cr_assert(nreq < MAX_IDS);
	dt_connect(&c, dd.rw);
	cr_assert_eq(fcntl(c.fd, F_SETFL, O_NONBLOCK), 0);
	cr_assert(msgpack_unpacker_init(&up, 1 << 20));
	msgpack_unpacked_init(&msg);
	msgpack_sbuffer_init(&out);

	while (answered < nreq) {
		struct pollfd pfd = { .fd = c.fd, .events = POLLIN };
		msgpack_unpack_return ur;
		ssize_t n;
		size_t want;

		cr_assert_lt(time(NULL), deadline, "stuck: %zu of %u answered", answered, nreq);
		/* Queue more requests while the window and the byte budget allow. */
		while (next_id <= nreq && unanswered < window && owed < OUTSTANDING &&
		       out.size - out_off < (1u << 20)) {
			enum kind k = (enum kind)rnd_below(K_COUNT);

			/* Mostly big replies: they are what fills buffers. */
			if (rnd_below(3))
				k = K_LIST;
			pend[next_id].kind = k;
			pend[next_id].dom = (int)rnd_below(NDOMAINS);
			pend[next_id].sent = true;
			pack_request(&out, next_id, k, pend[next_id].dom);
			owed += kind_bytes[k];
			next_id++;
			unanswered++;
		}
		if (out_off < out.size)
			pfd.events |= POLLOUT;
		cr_assert_geq(poll(&pfd, 1, 1000), 0);
		if (pfd.revents & POLLOUT) {
			n = send(c.fd, out.data + out_off, out.size - out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n > 0)
				out_off += (size_t)n;
			else
				cr_assert(n < 0 && (errno == EAGAIN || errno == EINTR),
					  "send: %s", strerror(errno));
			if (out_off == out.size) {
				msgpack_sbuffer_clear(&out);
				out_off = 0;
			}
		}
		if (!(pfd.revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		/* A slow reader: small random reads, and a pause now and then. */
		switch (rnd_below(4)) {
		case 0: want = 1 + rnd_below(16); break;
		case 1: want = 1 + rnd_below(4096); break;
		case 2: want = 1 + rnd_below(65536); break;
		default: want = 1 + rnd_below(256 << 10); break;
		}
		if (rnd_below(64) == 0)
			usleep((useconds_t)rnd_below(20000));
		if (!msgpack_unpacker_reserve_buffer(&up, want))
			cr_assert_fail("out of memory");
		n = recv(c.fd, msgpack_unpacker_buffer(&up), want, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		cr_assert_gt(n, 0, "the daemon closed the connection after %zu of %u replies "
			     "(%s)", answered, nreq, n < 0 ? strerror(errno) : "EOF");
		msgpack_unpacker_buffer_consumed(&up, (size_t)n);
		while ((ur = msgpack_unpacker_next(&up, &msg)) == MSGPACK_UNPACK_SUCCESS) {
			uint32_t id;

			check_response(&msg.data, pend, next_id);
			id = (uint32_t)msg.data.via.array.ptr[1].via.u64;
			owed -= kind_bytes[pend[id].kind];
			unanswered--;
			answered++;
		}
		cr_assert_neq(ur, MSGPACK_UNPACK_PARSE_ERROR,
			      "the stream is not msgpack any more after %zu replies", answered);
	}
	/* Nothing extra after the last reply. */
	cr_assert_eq(msgpack_unpacker_message_size(&up) - msgpack_unpacker_parsed_size(&up), 0,
		     "bytes after the last reply");
	msgpack_unpacked_destroy(&msg);
	msgpack_unpacker_destroy(&up);
	msgpack_sbuffer_destroy(&out);
	dt_close(&c);
	free(pend);
}

Test(stream, replies_intact_under_slow_random_reads)
{
	const char *env = getenv("CORRAL_STREAM_SEED");
	uint64_t seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL) ^ (uint64_t)getpid();

	fprintf(stderr, "stream: seed %" PRIu64 " (CORRAL_STREAM_SEED=%" PRIu64 " replays it)\n",
		seed, seed);
	rng_state = seed | 1;
	dt_start(&dd, NULL);
	define_domains();
	/* A deep pipeline with a lot owed, then shallower ones. */
	run_once(4000, 4000);
	run_once(3000, 128);
	for (int i = 0; i < 4; i++)
		run_once(200 + (unsigned)rnd_below(800), 1 + (unsigned)rnd_below(512));
	dt_stop(&dd);
}
