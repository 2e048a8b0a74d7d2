/*
 * fsync_rate: how many 4 KiB write+fdatasync rounds this disk does per
 * second in a file under DIR, for `make bench` to print beside the relay's
 * accept rate (a durable store can only batch its way past this number).
 * usage: fsync_rate DIR [SECONDS]
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double
fsync_rate_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	char path[4096], block[4096];
	double secs = 2.0, start, t;
	long n = 0;
	int fd;

	if (argc < 2) {
		fprintf(stderr, "usage: fsync_rate DIR [SECONDS]\n");
		return 2;
	}
	if (argc > 2)
		secs = strtod(argv[2], NULL);
	snprintf(path, sizeof(path), "%s/fsync_rate.tmp", argv[1]);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0) {
		perror(path);
		return 1;
	}
	memset(block, 'x', sizeof(block));
	start = fsync_rate_now();
	do {
		if (pwrite(fd, block, sizeof(block), (off_t)(n % 256) * 4096) !=
		    (ssize_t)sizeof(block) || fdatasync(fd) != 0) {
			perror("write");
			return 1;
		}
		n++;
		t = fsync_rate_now();
	} while (t - start < secs);
	close(fd);
	unlink(path);
	printf("%.0f\n", (double)n / (t - start));
	return 0;
}
