/* SPDX-License-Identifier: MIT */
#include "rpc/prom.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum prom_src {
	SRC_UP,                 /* the domain's QEMU runs */
	SRC_MON,                /* its monitor answers */
	SRC_AGE,                /* age_s */
	SRC_CPU,                /* cpu.time_ns */
	SRC_VCPU,               /* cpu.vcpus[].time_ns, per vCPU */
	SRC_RSS,                /* memory.rss_bytes */
	SRC_BALLOON,            /* memory.balloon_bytes */
	SRC_DISK,               /* disks[].<key>, per disk */
	SRC_NIC,                /* nics[].<key>, per NIC that has counters */
};

struct prom_metric {
	const char *name;
	const char *type;       /* gauge or counter */
	const char *help;
	enum prom_src src;
	const char *key;        /* SRC_DISK, SRC_NIC: the disk's or NIC's field */
};

static const struct prom_metric metrics[] = {
	{ "corral_domain_up", "gauge", "Whether the domain's QEMU is running (1) or not (0).",
	  SRC_UP, NULL },
	{ "corral_domain_monitor_responsive", "gauge",
	  "1 when the domain's QMP monitor answers in time, else 0.", SRC_MON, NULL },
	{ "corral_domain_stats_age_seconds", "gauge",
	  "Seconds since the domain's figures were read from QEMU.", SRC_AGE, NULL },
	{ "corral_domain_cpu_seconds_total", "counter",
	  "CPU time used by the domain's QEMU, user and system.", SRC_CPU, NULL },
	{ "corral_domain_vcpu_seconds_total", "counter",
	  "CPU time used by each of the domain's vCPU threads.", SRC_VCPU, NULL },
	{ "corral_domain_memory_rss_bytes", "gauge",
	  "Resident memory of the domain's QEMU.", SRC_RSS, NULL },
	{ "corral_domain_memory_balloon_bytes", "gauge",
	  "Memory the guest's balloon leaves it.", SRC_BALLOON, NULL },
	{ "corral_domain_disk_read_bytes_total", "counter", "Bytes the guest read from a disk.",
	  SRC_DISK, "rd_bytes" },
	{ "corral_domain_disk_written_bytes_total", "counter",
	  "Bytes the guest wrote to a disk.", SRC_DISK, "wr_bytes" },
	{ "corral_domain_disk_reads_total", "counter", "Read requests to a disk.",
	  SRC_DISK, "rd_ops" },
	{ "corral_domain_disk_writes_total", "counter", "Write requests to a disk.",
	  SRC_DISK, "wr_ops" },
	{ "corral_domain_disk_flushes_total", "counter", "Flush requests to a disk.",
	  SRC_DISK, "flush_ops" },
	{ "corral_domain_net_receive_bytes_total", "counter",
	  "Bytes a NIC received, as the guest sees it.", SRC_NIC, "rx_bytes" },
	{ "corral_domain_net_transmit_bytes_total", "counter",
	  "Bytes a NIC sent, as the guest sees it.", SRC_NIC, "tx_bytes" },
	{ "corral_domain_net_receive_packets_total", "counter",
	  "Packets a NIC received.", SRC_NIC, "rx_packets" },
	{ "corral_domain_net_transmit_packets_total", "counter",
	  "Packets a NIC sent.", SRC_NIC, "tx_packets" },
	{ "corral_domain_net_receive_drops_total", "counter",
	  "Packets for a NIC that were dropped.", SRC_NIC, "rx_dropped" },
	{ "corral_domain_net_transmit_drops_total", "counter",
	  "Packets from a NIC that were dropped.", SRC_NIC, "tx_dropped" },
};

/* A label value: backslash, double quote and newline escaped. */
static void label(FILE *f, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			fprintf(f, "\\%c", *v);
		else if (*v == '\n')
			fputs("\\n", f);
		else
			fputc(*v, f);
	}
}

static void sample_start(FILE *f, const struct prom_metric *m, const char *dom)
{
	fprintf(f, "%s{domain=\"", m->name);
	label(f, dom);
	fputc('"', f);
}

static bool num(const json_t *o, const char *key, double *v)
{
	const json_t *x = json_object_get(o, key);

	if (!json_is_number(x))
		return false;
	*v = json_number_value(x);
	return true;
}

static void domain_samples(FILE *f, const struct prom_metric *m, const json_t *d)
{
	const char *dom = json_string_value(json_object_get(d, "name"));
	const json_t *cpu = json_object_get(d, "cpu"), *mem = json_object_get(d, "memory");
	const json_t *mon = json_object_get(d, "monitor"), *e;
	const char *st = json_string_value(json_object_get(d, "state"));
	const char *ms = json_string_value(json_is_object(mon) ? json_object_get(mon, "state")
							       : mon);
	double v;
	size_t i;

	if (!dom)
		return;
	switch (m->src) {
	case SRC_UP:
		sample_start(f, m, dom);
		fprintf(f, "} %d\n", st && strcmp(st, "shutoff") && strcmp(st, "crashed"));
		break;
	case SRC_MON:
		sample_start(f, m, dom);
		fprintf(f, "} %d\n", ms && !strcmp(ms, "ok"));
		break;
	case SRC_AGE:
		if (num(d, "age_s", &v)) {
			sample_start(f, m, dom);
			fprintf(f, "} %.3f\n", v);
		}
		break;
	case SRC_CPU:
		if (num(cpu, "time_ns", &v)) {
			sample_start(f, m, dom);
			fprintf(f, "} %.9f\n", v / 1e9);
		}
		break;
	case SRC_VCPU:
		json_array_foreach(json_object_get(cpu, "vcpus"), i, e) {
			double idx;

			if (!num(e, "time_ns", &v) || !num(e, "index", &idx))
				continue;
			sample_start(f, m, dom);
			fprintf(f, ",vcpu=\"%.0f\"} %.9f\n", idx, v / 1e9);
		}
		break;
	case SRC_RSS:
	case SRC_BALLOON:
		if (num(mem, m->src == SRC_RSS ? "rss_bytes" : "balloon_bytes", &v)) {
			sample_start(f, m, dom);
			fprintf(f, "} %.0f\n", v);
		}
		break;
	case SRC_DISK:
	case SRC_NIC:
		json_array_foreach(json_object_get(d, m->src == SRC_DISK ? "disks" : "nics"), i, e) {
			const char *dev = json_string_value(json_object_get(e, "device"));

			if (!dev || !num(e, m->key, &v))
				continue;
			sample_start(f, m, dom);
			fputs(",device=\"", f);
			label(f, dev);
			fprintf(f, "\"} %.0f\n", v);
		}
		break;
	}
}

char *prom_render_stats(const json_t *stats, size_t *len)
{
	const json_t *doms = json_object_get(stats, "domains"), *d;
	char *text = NULL;
	size_t i, n = 0;
	FILE *f = open_memstream(&text, &n);

	if (!f)
		return NULL;
	/* All samples of a family together, after its HELP and TYPE. */
	for (size_t k = 0; k < sizeof(metrics) / sizeof(metrics[0]); k++) {
		fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", metrics[k].name, metrics[k].help,
			metrics[k].name, metrics[k].type);
		json_array_foreach(doms, i, d)
			domain_samples(f, &metrics[k], d);
	}
	if (ferror(f)) {
		fclose(f);
		free(text);
		return NULL;
	}
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	*len = n;
	return text;
}
