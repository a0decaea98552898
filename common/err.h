/*
 * err.h - the one error enum of dicefleet, its messages, its HTTP statuses,
 * and a per-thread detail message.
 *
 * Functions that can fail return a df_err; DF_OK is 0. A function that fails
 * may also record a human-readable detail ("node conv1 (Conv): kernel_shape
 * has 3 values, expected 2") with df_errf(); callers that report the error
 * read it back with df_err_msg(). The detail is thread-local, so concurrent
 * requests never see each other's messages.
 */
#ifndef DF_ERR_H
#define DF_ERR_H

typedef enum df_err {
	DF_OK = 0,
	DF_EINVAL,     /* bad argument or malformed input */
	DF_ENOMEM,     /* allocation failed */
	DF_EIO,        /* read/write failed */
	DF_ENOENT,     /* no such file, model, device, ... */
	DF_ENOTSUP,    /* valid but not supported (op, dtype, format) */
	DF_ERANGE,     /* value or size out of the accepted range */
	DF_ECORRUPT,   /* data failed an integrity check (checksum, sha256) */
	DF_ETOOBIG,    /* input exceeds a configured limit */
	DF_ETIMEDOUT,  /* deadline passed */
	DF_EUNAVAIL,   /* service or device not available */
	DF_EAUTH,      /* missing or wrong credentials */
	DF_EFORBIDDEN, /* operation not allowed in this configuration */
	DF_ECONFLICT,  /* state conflict (e.g. version mismatch) */
	DF_EINTERNAL,  /* a bug or a library failure we cannot classify */
	DF_ERR_COUNT
} df_err;

/* Short English description of err ("invalid argument"). Never NULL. */
const char *df_err_str(df_err err);

/* Stable machine-readable code for JSON errors ("invalid_argument"). */
const char *df_err_code(df_err err);

/* HTTP status that fits err (400, 404, 413, 500, 503, ...). */
int df_err_http_status(df_err err);

/* Records a detail message for the calling thread and returns err, so that
 * `return df_errf(DF_EINVAL, "node %s: ...", name);` reads naturally. */
df_err df_errf(df_err err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The calling thread's last detail message, or "" if none. Borrowed; valid
 * until the next df_errf() or df_err_clear() on this thread. */
const char *df_err_msg(void);

/* Forgets the calling thread's detail message. */
void df_err_clear(void);

#endif
