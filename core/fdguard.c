/*
 * fdguard: the admission rule of include/redrive/fdguard.h.  Descriptors
 * are allocated lowest first, so a new connection on fd n means about
 * n + 1 descriptors in use: comparing fd with the limit needs no count of
 * the process's descriptors.  The counts of connections are the
 * listeners' own (fdguard_count), kept here so that each can see the
 * other's.
 */
#include <sys/resource.h>

#include <stddef.h>
#include <stdint.h>

#include "redrive/fdguard.h"
#include "redrive/log.h"

static unsigned fdguard_open[FDGUARD_N];
static bool fdguard_on[FDGUARD_N];

void
fdguard_listening(enum fdguard_who who, bool on)
{
	if (who < FDGUARD_N)
		fdguard_on[who] = on;
}

bool
fdguard_admit(enum fdguard_who who, int fd, unsigned reserve, const char *peer)
{
	struct rlimit rl;
	unsigned k = reserve;
	int i;

	for (i = 0; i < FDGUARD_N; i++)
		if (i != (int)who && fdguard_on[i] &&
		    fdguard_open[i] < FDGUARD_SHARE)
			k += FDGUARD_SHARE - fdguard_open[i];
	if (fd < 0 || getrlimit(RLIMIT_NOFILE, &rl) != 0 ||
	    rl.rlim_cur == RLIM_INFINITY || (rlim_t)fd + k < rl.rlim_cur)
		return true;
	log_warn(who == FDGUARD_RELAY ? "smtp client refused"
				      : "http client refused",
	    LF_STR(who == FDGUARD_RELAY ? "client" : "peer", peer),
	    LF_STR("reason", "file descriptors nearly exhausted"),
	    LF_INT("fd", fd), LF_UINT("rlimit_nofile", (uint64_t)rl.rlim_cur),
	    LF_UINT("reserved", k), LF_END);
	return false;
}

void
fdguard_count(enum fdguard_who who, int delta)
{
	if (who >= FDGUARD_N)
		return;
	if (delta < 0 && fdguard_open[who] < (unsigned)-delta)
		fdguard_open[who] = 0;
	else
		fdguard_open[who] = (unsigned)((int)fdguard_open[who] + delta);
}
