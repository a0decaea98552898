/*
 * log.c - formats each message into one buffer and writes it with a single
 * fputs under the stream lock, so lines from threads never interleave.
 */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const char *const level_names[] = {"debug", "info", "warn", "error",
					  "off"};
_Static_assert(sizeof level_names / sizeof level_names[0] == LOG_LEVEL_COUNT,
	       "one name per log level");

static atomic_int current_level = LOG_INFO;
static const char *_Atomic current_component = "dicefleet";

df_err log_level_parse(const char *s, log_level *out)
{
	for (int i = 0; i < LOG_LEVEL_COUNT; i++) {
		if (strcasecmp(s, level_names[i]) == 0) {
			*out = (log_level)i;
			return DF_OK;
		}
	}
	return df_errf(DF_EINVAL,
		       "log level '%s' is not one of debug, info, warn, error, off",
		       s);
}

void log_set_level(log_level level)
{
	atomic_store(&current_level, (int)level);
}

log_level log_get_level(void)
{
	return (log_level)atomic_load(&current_level);
}

void log_set_component(const char *component)
{
	atomic_store(&current_component, component);
}

df_err log_init_from_env(void)
{
	const char *s = getenv("DICEFLEET_LOG_LEVEL");
	log_level level;

	if (!s || !*s)
		return DF_OK;
	df_err err = log_level_parse(s, &level);
	if (err)
		return err;
	log_set_level(level);
	return DF_OK;
}

void log_msg(log_level level, const char *fmt, ...)
{
	if ((int)level < atomic_load(&current_level) || level >= LOG_OFF)
		return;

	char line[2048];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(line, sizeof line,
			 "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s: ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
			 tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
			 level_names[level], atomic_load(&current_component));
	if (n < 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
	va_end(ap);
	size_t len = strlen(line);
	line[len] = '\n';
	line[len + 1] = '\0';
	flockfile(stderr);
	fputs(line, stderr);
	funlockfile(stderr);
}
