// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * agent/core/evloop.c: a timer fires and repeats, a signal arrives through
 * its source, deferred work runs after the round's handlers in the order
 * it was queued, and evloop_stop ends the run with no further handler.
 */
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "agent/core/evloop.h"
#include "tests/lib/tap.h"

static struct evloop *loop;
static struct ev_source timer, sig;
static int ticks, signals, order[8], nr_order;
static bool deferred_ran_in_handler;

static void note(void *ctx)
{
	order[nr_order++] = (int)(long)ctx;
}

static void on_timer(struct ev_source *src, uint32_t events)
{
	(void)events;
	ticks += (int)ev_timer_ack(src);
	if (ticks == 1) {
		evloop_defer(loop, note, (void *)1L);
		evloop_defer(loop, note, (void *)2L);
		deferred_ran_in_handler = nr_order != 0;
		kill(getpid(), SIGUSR1);
	}
	if (ticks >= 3)
		evloop_stop(loop);
}

static void on_signal(struct ev_source *src, uint32_t events)
{
	struct signalfd_siginfo si;

	(void)events;
	while (read(src->fd, &si, sizeof(si)) == sizeof(si))
		signals += si.ssi_signo == SIGUSR1;
}

int main(void)
{
	static const int sigs[] = { SIGUSR1 };

	if (!ASSERT_EQ(evloop_new(&loop), 0, "evloop_new"))
		return tap_done();
	ASSERT_EQ(ev_timer_open(evloop_fd(loop), &timer, on_timer), 0, "a timer source");
	ASSERT_EQ(ev_signals_open(evloop_fd(loop), &sig, sigs, 1, on_signal), 0,
		  "a signal source for SIGUSR1");
	ASSERT_EQ(ev_timer_arm(&timer, 5, 5), 0, "timer armed: 5 ms, every 5 ms");
	ASSERT_EQ(evloop_run(loop), 0, "evloop_run returns 0 after evloop_stop");
	ASSERT_TRUE(ticks >= 3, "the timer repeated until the handler stopped the loop");
	ASSERT_TRUE(!deferred_ran_in_handler, "deferred work waits for the end of the round");
	ASSERT_TRUE(nr_order == 2 && order[0] == 1 && order[1] == 2,
		    "deferred work ran once each, in the order queued");
	ASSERT_EQ(signals, 1, "SIGUSR1 came through the signal source");
	ev_close(evloop_fd(loop), &timer);
	ASSERT_EQ(timer.fd, -1, "ev_close closes the source and marks it closed");
	ev_close(evloop_fd(loop), &sig);
	evloop_defer(loop, note, (void *)3L);
	ASSERT_TRUE(nr_order == 3 && order[2] == 3, "outside a run, deferred work runs at once");
	evloop_free(loop);
	return tap_done();
}
