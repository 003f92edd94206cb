// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The DHCP client's driver: runs the engine of dhcp_client.c on one
 * interface.  AF_PACKET sockets carry DHCP and ARP (so the client works
 * before the interface has an address, and in report-only mode when it
 * never gets one), rtnetlink applies the address, a small JSON file keeps
 * the lease for INIT-REBOOT, and every engine event becomes one JSON line.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/if_packet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <cjson/cJSON.h>

#include "agent/core/log.h"
#include "agent/core/nl.h"
#include "agent/core/util.h"
#include "agent/dhcp/dhcp_client.h"
#include "agent/dhcp/dhcp_io.h"

struct driver {
	const struct dhcp_client_opts *o;
	struct dhcpc *c;
	int ifindex;
	uint8_t mac[6];
	int pkt_fd, arp_fd, udp_fd, tfd, sfd, epfd;
	FILE *log;
	int apply_err;
	sigset_t old_mask;
	bool masked;
};

static uint64_t boot_ms(void)
{
	return clock_ns(CLOCK_BOOTTIME) / 1000000;
}

static double real_s(void)
{
	return clock_ns(CLOCK_REALTIME) / 1e9;
}

/* ---- sockets ---- */

/* Only UDP to port 68, unfragmented, reaches the IP packet socket. */
static int attach_dhcp_filter(int fd)
{
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 9),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_UDP, 0, 6),
		BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 6),
		BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x1fff, 4, 0),
		BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, 0),
		BPF_STMT(BPF_LD | BPF_H | BPF_IND, 2),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, DHCP_CLIENT_PORT, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, 0xffff),
		BPF_STMT(BPF_RET | BPF_K, 0),
	};
	struct sock_fprog prog = { .len = sizeof(code) / sizeof(code[0]), .filter = code };

	if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)))
		return -errno;
	return 0;
}

/* ---- rtnetlink ---- */

static int nl_addr(int cmd, int ifindex, const struct dhcpc_lease *l, uint32_t valid_s)
{
	struct ifaddrmsg ifa = {
		.ifa_family = AF_INET,
		.ifa_prefixlen = l->prefix,
		.ifa_scope = RT_SCOPE_UNIVERSE,
		.ifa_index = (unsigned int)ifindex,
	};
	uint32_t bcast = l->ip_be | ~l->mask_be;
	struct ifa_cacheinfo ci = { .ifa_prefered = valid_s, .ifa_valid = valid_s };
	struct nl_req r;

	nl_req_init(&r, (unsigned short)cmd,
		    cmd == RTM_NEWADDR ? NLM_F_CREATE | NLM_F_REPLACE : 0, &ifa, sizeof(ifa));
	nl_put(&r, IFA_LOCAL, &l->ip_be, 4);
	nl_put(&r, IFA_ADDRESS, &l->ip_be, 4);
	if (cmd == RTM_NEWADDR) {
		if (l->prefix < 31)
			nl_put(&r, IFA_BROADCAST, &bcast, 4);
		/* The kernel drops the address when the lease runs out even if
		 * this process is gone. */
		nl_put(&r, IFA_CACHEINFO, &ci, sizeof(ci));
	}
	return nl_talk(&r);
}

static int nl_route(int cmd, int ifindex, const struct dhcpc_lease *l)
{
	struct rtmsg rtm = {
		.rtm_family = AF_INET,
		.rtm_table = RT_TABLE_MAIN,
		.rtm_protocol = RTPROT_DHCP,
		.rtm_scope = RT_SCOPE_UNIVERSE,
		.rtm_type = RTN_UNICAST,
	};
	uint32_t oif = (uint32_t)ifindex;
	struct nl_req r;

	nl_req_init(&r, (unsigned short)cmd,
		    cmd == RTM_NEWROUTE ? NLM_F_CREATE | NLM_F_REPLACE : 0, &rtm, sizeof(rtm));
	nl_put(&r, RTA_GATEWAY, &l->router_be, 4);
	nl_put(&r, RTA_OIF, &oif, 4);
	nl_put(&r, RTA_PREFSRC, &l->ip_be, 4);
	return nl_talk(&r);
}

/* ---- lease file ---- */

static void lease_save(struct driver *d, const struct dhcpc_lease *l)
{
	char tmp[4200], a[INET_ADDRSTRLEN];
	double now = real_s();
	cJSON *j;
	char *s;
	FILE *f;

	if (!d->o->lease_file)
		return;
	if (!l) {
		if (unlink(d->o->lease_file) && errno != ENOENT)
			log_warn("dhcp client: %s: %s", d->o->lease_file, strerror(errno));
		return;
	}
	j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "iface", d->o->ifname);
	cJSON_AddStringToObject(j, "ip", inet_ntop(AF_INET, &l->ip_be, a, sizeof(a)));
	cJSON_AddNumberToObject(j, "prefix", l->prefix);
	cJSON_AddStringToObject(j, "server", inet_ntop(AF_INET, &l->server_be, a, sizeof(a)));
	if (l->router_be)
		cJSON_AddStringToObject(j, "router", inet_ntop(AF_INET, &l->router_be, a, sizeof(a)));
	cJSON_AddNumberToObject(j, "lease_time", l->lease_s);
	cJSON_AddNumberToObject(j, "acquired", floor(now));
	cJSON_AddNumberToObject(j, "expires", l->expiry_ms ?
				floor(now + (double)(l->expiry_ms - l->acquired_ms) / 1000) : 0);
	s = cJSON_Print(j);
	cJSON_Delete(j);
	snprintf(tmp, sizeof(tmp), "%s.tmp", d->o->lease_file);
	f = s ? fopen(tmp, "w") : NULL;
	if (!f || fprintf(f, "%s\n", s) < 0 || fflush(f) || fsync(fileno(f))) {
		log_warn("dhcp client: writing %s: %s", tmp, strerror(errno));
		if (f)
			fclose(f);
	} else if (fclose(f) || rename(tmp, d->o->lease_file)) {
		log_warn("dhcp client: %s: %s", d->o->lease_file, strerror(errno));
	}
	free(s);
}

/* The remembered address, if the file names one whose lease has not run out. */
static bool lease_load(struct driver *d, struct dhcpc_lease *l)
{
	const cJSON *ip, *exp;
	FILE *f;
	char buf[4096];
	size_t n;
	cJSON *j;
	bool ok = false;

	if (!d->o->lease_file || !(f = fopen(d->o->lease_file, "r")))
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	j = cJSON_Parse(buf);
	ip = cJSON_GetObjectItemCaseSensitive(j, "ip");
	exp = cJSON_GetObjectItemCaseSensitive(j, "expires");
	memset(l, 0, sizeof(*l));
	if (cJSON_IsString(ip) && inet_pton(AF_INET, ip->valuestring, &l->ip_be) == 1 &&
	    cJSON_IsNumber(exp) && (exp->valuedouble == 0 || exp->valuedouble > real_s()))
		ok = true;
	else if (j)
		log_info("dhcp client: %s: no valid unexpired lease, starting from INIT",
			 d->o->lease_file);
	else
		log_warn("dhcp client: %s: not JSON, ignored", d->o->lease_file);
	cJSON_Delete(j);
	return ok;
}

/* ---- engine callbacks ---- */

static void cb_send(void *ctx, const struct dhcpc_tx *tx)
{
	struct driver *d = ctx;
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	static const uint8_t zero[6];
	uint8_t frame[DHCPC_PKT_MAX + DHCP_IPUDP_HDR_LEN];
	int len, err;

	len = dhcp_ipudp_wrap(frame, sizeof(frame), tx->src_be, tx->dst_be, DHCP_CLIENT_PORT,
			      DHCP_SERVER_PORT, tx->pkt, tx->len);
	if (len < 0)
		return;
	err = dhcp_io_send_l2(d->pkt_fd, d->ifindex,
		      tx->broadcast || !memcmp(tx->dst_mac, zero, 6) ? bcast : tx->dst_mac,
		      ETH_P_IP, frame, (size_t)len);
	if (err)
		log_warn("dhcp client %s: sending %s: %s", d->o->ifname,
			 dhcp_msg_type_name(tx->type), strerror(-err));
}

static void cb_arp(void *ctx, bool announce, uint32_t ip_be)
{
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	static const uint8_t zero[6];
	struct driver *d = ctx;
	uint8_t pkt[ARP_PKT_LEN];
	int err;

	arp_build(pkt, 1, d->mac, announce ? ip_be : 0, zero, ip_be);
	err = dhcp_io_send_l2(d->arp_fd, d->ifindex, bcast, ETH_P_ARP, pkt, sizeof(pkt));
	if (err)
		log_warn("dhcp client %s: ARP: %s", d->o->ifname, strerror(-err));
}

static void cb_apply(void *ctx, const struct dhcpc_lease *l)
{
	struct driver *d = ctx;
	uint32_t valid = 0xffffffffU;
	uint64_t now = boot_ms();
	int err;

	if (!d->o->apply)
		return;
	if (l->expiry_ms)
		valid = l->expiry_ms > now ? (uint32_t)((l->expiry_ms - now + 999) / 1000) + 1 : 1;
	err = nl_addr(RTM_NEWADDR, d->ifindex, l, valid);
	if (err) {
		log_err("dhcp client %s: adding the address: %s", d->o->ifname, strerror(-err));
		d->apply_err = err;
		return;
	}
	if (d->o->set_route && l->router_be) {
		err = nl_route(RTM_NEWROUTE, d->ifindex, l);
		if (err)
			log_warn("dhcp client %s: default route: %s", d->o->ifname, strerror(-err));
	}
}

static void cb_remove(void *ctx, const struct dhcpc_lease *l)
{
	struct driver *d = ctx;
	int err;

	if (!d->o->apply)
		return;
	if (d->o->set_route && l->router_be)
		nl_route(RTM_DELROUTE, d->ifindex, l);
	err = nl_addr(RTM_DELADDR, d->ifindex, l, 0);
	if (err && err != -EADDRNOTAVAIL)
		log_warn("dhcp client %s: removing the address: %s", d->o->ifname, strerror(-err));
}

static void cb_lease(void *ctx, const struct dhcpc_lease *l)
{
	lease_save(ctx, l);
}

static void cb_event(void *ctx, const struct dhcpc_event *ev)
{
	struct driver *d = ctx;
	char line[512];

	dhcpc_event_json(ev, real_s(), d->o->ifname, line, sizeof(line));
	if (!d->o->quiet)
		fprintf(stderr, "%s\n", line);
	if (d->log) {
		fprintf(d->log, "%s\n", line);
		fflush(d->log);
	}
}

/* ---- the loop ---- */

static void read_packets(struct driver *d)
{
	uint8_t frame[2048];
	struct sockaddr_ll from;
	const uint8_t *payload;
	uint32_t src, dst;
	uint16_t sport, dport;
	size_t plen;
	ssize_t n;

	for (;;) {
		socklen_t flen = sizeof(from);

		n = recvfrom(d->pkt_fd, frame, sizeof(frame), 0, (struct sockaddr *)&from, &flen);
		if (n < 0)
			return;
		if (from.sll_pkttype == PACKET_OUTGOING)
			continue;
		if (dhcp_ipudp_unwrap(frame, (size_t)n, &payload, &plen, &src, &dst, &sport, &dport) ||
		    sport != DHCP_SERVER_PORT || dport != DHCP_CLIENT_PORT)
			continue;
		dhcpc_input_pkt(d->c, payload, plen, from.sll_addr, boot_ms());
	}
}

static void read_arp(struct driver *d)
{
	struct sockaddr_ll from;
	struct arp_pkt a;
	uint8_t buf[64];
	ssize_t n;

	for (;;) {
		socklen_t flen = sizeof(from);

		n = recvfrom(d->arp_fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &flen);
		if (n < 0)
			return;
		if (from.sll_pkttype == PACKET_OUTGOING || arp_parse(&a, buf, (size_t)n))
			continue;
		dhcpc_arp_input(d->c, &a, boot_ms());
	}
}

static void arm_timer(struct driver *d, uint64_t at_ms)
{
	struct itimerspec its = { 0 };

	if (at_ms != UINT64_MAX) {
		if (!at_ms)
			at_ms = 1;
		its.it_value.tv_sec = (time_t)(at_ms / 1000);
		its.it_value.tv_nsec = (long)(at_ms % 1000) * 1000000;
	}
	timerfd_settime(d->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static int open_all(struct driver *d)
{
	const struct dhcp_client_opts *o = d->o;
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(DHCP_CLIENT_PORT) };
	struct ifreq ifr;
	sigset_t mask;
	int one = 1, err;

	d->ifindex = (int)if_nametoindex(o->ifname);
	if (!d->ifindex) {
		log_err("dhcp client: interface %s does not exist", o->ifname);
		return -ENODEV;
	}
	d->udp_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (d->udp_fd < 0)
		return -errno;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", o->ifname);
	if (ioctl(d->udp_fd, SIOCGIFHWADDR, &ifr))
		return -errno;
	if (ifr.ifr_hwaddr.sa_family != 1 /* ARPHRD_ETHER */) {
		log_err("dhcp client: %s is not an Ethernet interface", o->ifname);
		return -EAFNOSUPPORT;
	}
	memcpy(d->mac, ifr.ifr_hwaddr.sa_data, 6);
	/* A port-68 socket only so that the kernel does not answer unicast
	 * replies with ICMP port unreachable; packets are read off the packet
	 * socket.  Another client owning the port is not fatal. */
	if (setsockopt(d->udp_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    setsockopt(d->udp_fd, SOL_SOCKET, SO_BINDTODEVICE, o->ifname,
		       (socklen_t)strlen(o->ifname)) ||
	    bind(d->udp_fd, (struct sockaddr *)&sin, sizeof(sin))) {
		log_debug("dhcp client %s: port 68: %s", o->ifname, strerror(errno));
		close(d->udp_fd);
		d->udp_fd = -1;
	}

	if ((d->pkt_fd = dhcp_io_packet_socket(d->ifindex, ETH_P_IP)) < 0 ||
	    (d->arp_fd = dhcp_io_packet_socket(d->ifindex, ETH_P_ARP)) < 0) {
		err = d->pkt_fd < 0 ? d->pkt_fd : d->arp_fd;
		log_err("dhcp client %s: packet socket: %s (needs CAP_NET_RAW)", o->ifname,
			strerror(-err));
		return err;
	}
	err = attach_dhcp_filter(d->pkt_fd);
	if (err)
		log_debug("dhcp client %s: socket filter: %s", o->ifname, strerror(-err));

	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	d->masked = !sigprocmask(SIG_BLOCK, &mask, &d->old_mask);
	d->sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	d->tfd = timerfd_create(CLOCK_BOOTTIME, TFD_NONBLOCK | TFD_CLOEXEC);
	d->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (d->sfd < 0 || d->tfd < 0 || d->epfd < 0)
		return -errno;
	struct epoll_event ev = { .events = EPOLLIN };
	int fds[] = { d->pkt_fd, d->arp_fd, d->udp_fd, d->tfd, d->sfd };
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
		if (fds[i] < 0)
			continue;
		ev.data.fd = fds[i];
		if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, fds[i], &ev))
			return -errno;
	}
	if (o->log_file) {
		d->log = fopen(o->log_file, "a");
		if (!d->log) {
			err = -errno;
			log_err("dhcp client: log file %s: %s", o->log_file, strerror(errno));
			return err;
		}
	}
	return 0;
}

int dhcp_client_run(const struct dhcp_client_opts *o)
{
	struct driver d = {
		.o = o, .pkt_fd = -1, .arp_fd = -1, .udp_fd = -1, .tfd = -1, .sfd = -1, .epfd = -1,
	};
	struct dhcpc_ops ops = {
		.ctx = &d, .send = cb_send, .arp = cb_arp, .apply = cb_apply,
		.remove = cb_remove, .lease = cb_lease, .event = cb_event,
	};
	struct dhcpc_cfg cfg;
	struct dhcpc_lease remembered;
	uint64_t end_at = UINT64_MAX, now;
	bool stop = false;
	int err;

	memset(&cfg, 0, sizeof(cfg));
	err = open_all(&d);
	if (err)
		goto out;
	memcpy(cfg.mac, d.mac, 6);
	if (o->hostname)
		snprintf(cfg.hostname, sizeof(cfg.hostname), "%s", o->hostname);
	if (o->client_id) {
		cfg.client_id_len = strlen(o->client_id);
		if (cfg.client_id_len > sizeof(cfg.client_id))
			cfg.client_id_len = sizeof(cfg.client_id);
		memcpy(cfg.client_id, o->client_id, cfg.client_id_len);
	}
	cfg.time_scale = o->time_scale;
	cfg.offer_window_ms = o->offer_window_ms;
	cfg.decline_backoff_ms = o->decline_backoff_ms;
	cfg.static_ip_be = o->static_ip_be;
	cfg.static_router_be = o->static_router_be;
	cfg.static_prefix = o->static_prefix;
	cfg.static_after_ms = o->static_after_ms;
	if (getrandom(&cfg.seed, sizeof(cfg.seed), 0) != sizeof(cfg.seed))
		cfg.seed = boot_ms() ^ ((uint64_t)getpid() << 32);
	err = dhcpc_new(&cfg, &ops, &d.c);
	if (err)
		goto out;

	now = boot_ms();
	if (o->max_seconds)
		end_at = now + (uint64_t)o->max_seconds * 1000;
	dhcpc_start(d.c, lease_load(&d, &remembered) ? &remembered : NULL, now);
	err = 0;
	while (!stop) {
		struct epoll_event evs[8];
		enum dhcpc_state s;
		uint64_t next;
		int n, i;

		now = boot_ms();
		if (dhcpc_next_deadline(d.c) <= now)
			dhcpc_tick(d.c, now);
		s = dhcpc_state(d.c);
		if (o->exit_when_bound && (s == DHCPC_BOUND || s == DHCPC_STATIC) &&
		    !dhcpc_announcing(d.c)) {
			err = d.apply_err;
			break;
		}
		if (now >= end_at) {
			if (o->exit_when_bound)
				err = -ETIMEDOUT;
			break;
		}
		next = dhcpc_next_deadline(d.c);
		arm_timer(&d, next < end_at ? next : end_at);
		n = epoll_wait(d.epfd, evs, 8, -1);
		if (n < 0 && errno != EINTR) {
			err = -errno;
			break;
		}
		for (i = 0; i < n; i++) {
			int fd = evs[i].data.fd;

			if (fd == d.pkt_fd) {
				read_packets(&d);
			} else if (fd == d.arp_fd) {
				read_arp(&d);
			} else if (fd == d.udp_fd) {
				char junk[1500];

				while (recv(d.udp_fd, junk, sizeof(junk), 0) >= 0)
					;
			} else if (fd == d.tfd) {
				uint64_t exp;

				if (read(d.tfd, &exp, sizeof(exp)) < 0)
					continue;
			} else if (fd == d.sfd) {
				struct signalfd_siginfo si;

				while (read(d.sfd, &si, sizeof(si)) == sizeof(si))
					stop = true;
			}
		}
	}
	if (o->release_on_exit)
		dhcpc_release(d.c, boot_ms());
	if (err == -ETIMEDOUT)
		log_err("dhcp client %s: not bound after %u s (state %s)", o->ifname,
			o->max_seconds, dhcpc_state_name(dhcpc_state(d.c)));
out:
	dhcpc_free(d.c);
	if (d.log)
		fclose(d.log);
	if (d.epfd >= 0)
		close(d.epfd);
	if (d.tfd >= 0)
		close(d.tfd);
	if (d.sfd >= 0)
		close(d.sfd);
	if (d.arp_fd >= 0)
		close(d.arp_fd);
	if (d.pkt_fd >= 0)
		close(d.pkt_fd);
	if (d.udp_fd >= 0)
		close(d.udp_fd);
	if (d.masked)
		sigprocmask(SIG_SETMASK, &d.old_mask, NULL);
	return err;
}

/* ---- `dhcp client IFACE [options]` ---- */

const char dhcp_client_usage[] =
	"usage: rayos-agent dhcp client IFACE [options]\n"
	"  --lease-file F       remember the lease in F (INIT-REBOOT on the next start)\n"
	"  --log F              append the transaction log (JSON lines) to F\n"
	"  --static A/P[,GW]    static address to fall back to when no server answers\n"
	"  --static-after S     seconds without an offer before the fallback (30)\n"
	"  --once               exit 0 once bound (or on the static address)\n"
	"  --no-apply           report only: do not configure the interface\n"
	"  --route              also set the default route via the router option\n"
	"  --release            send RELEASE and remove the address on exit\n"
	"  --max-seconds N      stop after N seconds (with --once: exit 1 if not bound)\n"
	"  --scale X            multiply protocol timers and lease times by X (tests)\n"
	"  --offer-window MS    collect offers this long after the first (1000)\n"
	"  --decline-backoff MS wait after a DECLINE before restarting (10000)\n"
	"  --hostname H         send option 12\n"
	"  --client-id S        send option 61 (raw bytes of S)\n"
	"  --quiet              no log lines on stderr\n";

static int parse_static(const char *s, struct dhcp_client_opts *o)
{
	char buf[64], *slash, *comma, *end;
	unsigned long p = 24;

	snprintf(buf, sizeof(buf), "%s", s);
	comma = strchr(buf, ',');
	if (comma) {
		*comma++ = 0;
		if (inet_pton(AF_INET, comma, &o->static_router_be) != 1)
			return -EINVAL;
	}
	slash = strchr(buf, '/');
	if (slash) {
		*slash++ = 0;
		p = strtoul(slash, &end, 10);
		if (*end || p < 1 || p > 32)
			return -EINVAL;
	}
	if (inet_pton(AF_INET, buf, &o->static_ip_be) != 1 || !o->static_ip_be)
		return -EINVAL;
	o->static_prefix = (uint8_t)p;
	return 0;
}

int dhcp_client_main(int argc, char **argv)
{
	struct dhcp_client_opts o = { .apply = true };
	char *end;
	int i, err;

	if (argc < 1 || argv[0][0] == '-') {
		fputs(dhcp_client_usage, stderr);
		return 2;
	}
	o.ifname = argv[0];
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		bool takes = true;

		if (!strcmp(a, "--once")) {
			o.exit_when_bound = true;
			takes = false;
		} else if (!strcmp(a, "--no-apply")) {
			o.apply = false;
			takes = false;
		} else if (!strcmp(a, "--route")) {
			o.set_route = true;
			takes = false;
		} else if (!strcmp(a, "--release")) {
			o.release_on_exit = true;
			takes = false;
		} else if (!strcmp(a, "--quiet")) {
			o.quiet = true;
			takes = false;
		} else if (!v) {
			fprintf(stderr, "dhcp client: %s: unknown option or missing value\n%s",
				a, dhcp_client_usage);
			return 2;
		} else if (!strcmp(a, "--lease-file")) {
			o.lease_file = v;
		} else if (!strcmp(a, "--log")) {
			o.log_file = v;
		} else if (!strcmp(a, "--hostname")) {
			o.hostname = v;
		} else if (!strcmp(a, "--client-id")) {
			o.client_id = v;
		} else if (!strcmp(a, "--static")) {
			if (parse_static(v, &o)) {
				fprintf(stderr, "dhcp client: --static %s: want A.B.C.D/P[,GW]\n", v);
				return 2;
			}
		} else {
			double x = strtod(v, &end);

			if (*end || !(x >= 0) || x > 1e7) {
				fprintf(stderr, "dhcp client: %s %s: not a number\n", a, v);
				return 2;
			}
			if (!strcmp(a, "--static-after"))
				o.static_after_ms = (uint32_t)(x * 1000);
			else if (!strcmp(a, "--max-seconds"))
				o.max_seconds = (unsigned int)x;
			else if (!strcmp(a, "--scale"))
				o.time_scale = x;
			else if (!strcmp(a, "--offer-window"))
				o.offer_window_ms = (uint32_t)x;
			else if (!strcmp(a, "--decline-backoff"))
				o.decline_backoff_ms = (uint32_t)x;
			else {
				fprintf(stderr, "dhcp client: %s: unknown option\n%s", a,
					dhcp_client_usage);
				return 2;
			}
		}
		if (takes)
			i++;
	}
	err = dhcp_client_run(&o);
	return err ? 1 : 0;
}
