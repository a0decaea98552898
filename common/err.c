/*
 * err.c - messages, codes and HTTP statuses for df_err, and the thread-local
 * detail message. The tables are tied to the enum by static_assert.
 */
#include "err.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>

static const struct {
	const char *str;
	const char *code;
	int http;
} err_table[] = {
	[DF_OK] = {"ok", "ok", 200},
	[DF_EINVAL] = {"invalid argument", "invalid_argument", 400},
	[DF_ENOMEM] = {"out of memory", "out_of_memory", 503},
	[DF_EIO] = {"input/output error", "io_error", 500},
	[DF_ENOENT] = {"not found", "not_found", 404},
	[DF_ENOTSUP] = {"not supported", "not_supported", 415},
	[DF_ERANGE] = {"out of range", "out_of_range", 400},
	[DF_ECORRUPT] = {"corrupt data", "corrupt_data", 400},
	[DF_ETOOBIG] = {"too large", "too_large", 413},
	[DF_ETIMEDOUT] = {"timed out", "timeout", 504},
	[DF_EUNAVAIL] = {"unavailable", "unavailable", 503},
	[DF_EAUTH] = {"unauthorized", "unauthorized", 401},
	[DF_EFORBIDDEN] = {"forbidden", "forbidden", 403},
	[DF_ECONFLICT] = {"conflict", "conflict", 409},
	[DF_EINTERNAL] = {"internal error", "internal", 500},
};
static_assert(sizeof err_table / sizeof err_table[0] == DF_ERR_COUNT,
	      "err_table must have one row per df_err");

static _Thread_local char err_detail[512];

static int err_valid(df_err err)
{
	return (unsigned)err < DF_ERR_COUNT;
}

const char *df_err_str(df_err err)
{
	return err_valid(err) ? err_table[err].str : "unknown error";
}

const char *df_err_code(df_err err)
{
	return err_valid(err) ? err_table[err].code : "internal";
}

int df_err_http_status(df_err err)
{
	return err_valid(err) ? err_table[err].http : 500;
}

df_err df_errf(df_err err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err_detail, sizeof err_detail, fmt, ap);
	va_end(ap);
	return err;
}

const char *df_err_msg(void)
{
	return err_detail;
}

void df_err_clear(void)
{
	err_detail[0] = '\0';
}
