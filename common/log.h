/*
 * log.h - leveled logging to stderr, one line per call, safe from any
 * thread. Library code logs here and never prints to stdout.
 *
 * Line format: "2026-11-26T09:30:01.123Z INFO  gateway: message".
 * The level comes from log_set_level() or DICEFLEET_LOG_LEVEL
 * (debug|info|warn|error|off) read by log_init_from_env().
 */
#ifndef DF_LOG_H
#define DF_LOG_H

#include "err.h"

typedef enum log_level {
	LOG_DEBUG = 0,
	LOG_INFO,
	LOG_WARN,
	LOG_ERROR,
	LOG_OFF,
	LOG_LEVEL_COUNT
} log_level;

/* Parses "debug", "info", "warn", "error", "off". */
df_err log_level_parse(const char *s, log_level *out);

void log_set_level(log_level level);
log_level log_get_level(void);

/* Sets the component tag printed on each line (borrowed; a string literal). */
void log_set_component(const char *component);

/* Applies DICEFLEET_LOG_LEVEL if set; DF_EINVAL if it holds a bad value. */
df_err log_init_from_env(void);

void log_msg(log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
