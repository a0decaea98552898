/*
 * impute.c - calibration statistics, recon map fitting, and filling missing
 * channels.
 *
 * The Gram matrix G = sum over pixels of [x; 1][x; 1]^T (x = all C channels
 * at one pixel) is accumulated once per stage. For a failure set with
 * surviving channels S and missing channels M, the ridge least-squares map
 * W ((|S|+1) x |M|) solves (G[S',S'] + lambda I) W = G[S',M], with S' = S
 * plus the bias row, so fitting a map costs one Cholesky of |S|+1, not a
 * pass over the data.
 */
#include "impute.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *const mode_names[] = {"zero", "mean", "recon"};
_Static_assert(sizeof mode_names / sizeof mode_names[0] == IMPUTE_MODE_COUNT,
	       "one name per impute mode");

const char *impute_mode_name(impute_mode m)
{
	return (unsigned)m < IMPUTE_MODE_COUNT ? mode_names[m] : "?";
}

df_err impute_mode_parse(const char *s, impute_mode *out)
{
	for (int i = 0; i < IMPUTE_MODE_COUNT; i++)
		if (s && strcmp(s, mode_names[i]) == 0) {
			*out = (impute_mode)i;
			return DF_OK;
		}
	return df_errf(DF_EINVAL, "unknown impute mode '%s' (zero, mean, recon)",
		       s ? s : "");
}

typedef struct stage_stats {
	int64_t c;        /* channels; 0 for LOCAL stages */
	double *sum;      /* [c] */
	double *sum_abs;  /* [c] */
	double *gram;     /* [(c+1)^2], row-major, last row/col = bias */
	float *mean;      /* [c] after finish */
	float *act;       /* [c] after finish */
	float *var;       /* [c] after finish */
	float lo, hi;     /* clamp range of the final activation */
	double pixels;    /* pixels observed */
	size_t images;
} stage_stats;

struct impute_stats {
	int n_stages;
	stage_stats *st;
	bool finished;
};

void impute_stats_destroy(impute_stats *s)
{
	if (!s)
		return;
	for (int i = 0; i < s->n_stages; i++) {
		free(s->st[i].sum);
		free(s->st[i].sum_abs);
		free(s->st[i].gram);
		free(s->st[i].mean);
		free(s->st[i].act);
		free(s->st[i].var);
	}
	free(s->st);
	free(s);
}

/* Range of the activation that ends stage st, looking through pooling
 * (max/avg pooling of values in [lo,hi] stays in [lo,hi]). */
static void stage_clamp(const graph *g, const stage *st, float *lo, float *hi)
{
	*lo = -INFINITY;
	*hi = INFINITY;
	for (int i = st->n_nodes - 1; i >= 0; i--) {
		const graph_node *nd = &g->nodes[st->nodes[i]];
		if (nd->op == GRAPH_OP_MAXPOOL || nd->op == GRAPH_OP_AVGPOOL ||
		    nd->op == GRAPH_OP_GLOBALAVGPOOL)
			continue;
		graph_act act;
		float a = 0, b = 0;
		if (nd->n_postops > 0) {
			const graph_postop *po = &nd->postops[nd->n_postops - 1];
			if (po->kind != GRAPH_POSTOP_ACT)
				return;
			act = po->act;
			a = po->alpha;
			b = po->beta;
		} else if (nd->op == GRAPH_OP_RELU) {
			act = GRAPH_ACT_RELU;
		} else if (nd->op == GRAPH_OP_CLIP) {
			act = GRAPH_ACT_CLIP;
			a = nd->attr.clip.lo;
			b = nd->attr.clip.hi;
		} else if (nd->op == GRAPH_OP_SIGMOID) {
			act = GRAPH_ACT_SIGMOID;
		} else {
			return;
		}
		switch (act) {
		case GRAPH_ACT_RELU:
			*lo = 0;
			break;
		case GRAPH_ACT_CLIP:
			*lo = a;
			*hi = b;
			break;
		case GRAPH_ACT_SIGMOID:
			*lo = 0;
			*hi = 1;
			break;
		default:
			break;
		}
		return;
	}
}

df_err impute_stats_create(const graph *g, const stage_plan *p,
			   impute_stats **out)
{
	impute_stats *s = calloc(1, sizeof *s);
	if (!s)
		return DF_ENOMEM;
	s->n_stages = p->n_stages;
	s->st = calloc((size_t)p->n_stages + 1, sizeof *s->st);
	if (!s->st)
		goto nomem;
	for (int i = 0; i < p->n_stages; i++) {
		const stage *st = &p->stages[i];
		stage_stats *ss = &s->st[i];
		if (st->kind != STAGE_NEURON)
			continue;
		if (st->n_neurons > 4096) {
			impute_stats_destroy(s);
			return df_errf(DF_ENOTSUP, "stage %s: %lld channels is too many to calibrate",
				       st->name, (long long)st->n_neurons);
		}
		ss->c = st->n_neurons;
		size_t c = (size_t)ss->c;
		ss->sum = calloc(c, sizeof *ss->sum);
		ss->sum_abs = calloc(c, sizeof *ss->sum_abs);
		ss->gram = calloc((c + 1) * (c + 1), sizeof *ss->gram);
		ss->mean = calloc(c, sizeof *ss->mean);
		ss->act = calloc(c, sizeof *ss->act);
		ss->var = calloc(c, sizeof *ss->var);
		if (!ss->sum || !ss->sum_abs || !ss->gram || !ss->mean || !ss->act ||
		    !ss->var)
			goto nomem;
		stage_clamp(g, st, &ss->lo, &ss->hi);
	}
	*out = s;
	return DF_OK;
nomem:
	impute_stats_destroy(s);
	return DF_ENOMEM;
}

df_err impute_stats_observe(impute_stats *s, int st, const tensor *t)
{
	if (st < 0 || st >= s->n_stages)
		return df_errf(DF_EINVAL, "stage %d out of range", st);
	if (s->finished)
		return df_errf(DF_EINVAL, "statistics already finished");
	stage_stats *ss = &s->st[st];
	if (ss->c == 0)
		return DF_OK;
	if (t->dtype != TENSOR_F32 || t->ndim < 2 || t->dims[0] != 1 ||
	    t->dims[1] != ss->c)
		return df_errf(DF_EINVAL, "stage %d: calibration output has the wrong shape",
			       st);
	const size_t c = (size_t)ss->c;
	const size_t hw = t->numel / c;
	const float *x = tensor_f32(t);
	const size_t dim = c + 1;
	double *row = malloc(dim * sizeof *row);
	if (!row)
		return DF_ENOMEM;
	for (size_t k = 0; k < c; k++) {
		for (size_t p = 0; p < hw; p++) {
			double v = x[k * hw + p];
			ss->sum[k] += v;
			ss->sum_abs[k] += fabs(v);
		}
	}
	for (size_t p = 0; p < hw; p++) {
		for (size_t k = 0; k < c; k++)
			row[k] = x[k * hw + p];
		row[c] = 1.0;
		/* upper triangle only; mirrored in finish */
		for (size_t i = 0; i < dim; i++) {
			double ri = row[i];
			if (ri == 0.0)
				continue;
			double *gi = ss->gram + i * dim;
			for (size_t j = i; j < dim; j++)
				gi[j] += ri * row[j];
		}
	}
	free(row);
	ss->pixels += (double)hw;
	ss->images++;
	return DF_OK;
}

df_err impute_stats_finish(impute_stats *s)
{
	if (s->finished)
		return DF_OK;
	for (int i = 0; i < s->n_stages; i++) {
		stage_stats *ss = &s->st[i];
		if (ss->c == 0)
			continue;
		if (ss->pixels == 0)
			return df_errf(DF_EINVAL, "stage %d saw no calibration data", i);
		size_t dim = (size_t)ss->c + 1;
		for (size_t a = 0; a < dim; a++)
			for (size_t b = 0; b < a; b++)
				ss->gram[a * dim + b] = ss->gram[b * dim + a];
		for (int64_t k = 0; k < ss->c; k++) {
			ss->mean[k] = (float)(ss->sum[k] / ss->pixels);
			ss->act[k] = (float)(ss->sum_abs[k] / ss->pixels);
			double m = ss->sum[k] / ss->pixels;
			double sq = ss->gram[(size_t)k * dim + (size_t)k] / ss->pixels;
			ss->var[k] = (float)(sq - m * m > 0 ? sq - m * m : 0);
		}
	}
	s->finished = true;
	return DF_OK;
}

size_t impute_stats_images(const impute_stats *s)
{
	for (int i = 0; i < s->n_stages; i++)
		if (s->st[i].c)
			return s->st[i].images;
	return 0;
}

const float *impute_stats_mean(const impute_stats *s, int st)
{
	if (!s || st < 0 || st >= s->n_stages || !s->st[st].c || !s->finished)
		return NULL;
	return s->st[st].mean;
}

const float *impute_stats_act(const impute_stats *s, int st)
{
	if (!s || st < 0 || st >= s->n_stages || !s->st[st].c || !s->finished)
		return NULL;
	return s->st[st].act;
}

const float *impute_stats_var(const impute_stats *s, int st)
{
	if (!s || st < 0 || st >= s->n_stages || !s->st[st].c || !s->finished)
		return NULL;
	return s->st[st].var;
}

const float *impute_stats_score(const impute_stats *s, int st, int score)
{
	switch (score) {
	case PARTITION_SCORE_ACT:
		return impute_stats_act(s, st);
	case PARTITION_SCORE_VAR:
		return impute_stats_var(s, st);
	default:
		return NULL;
	}
}

/* ---- recon maps ----------------------------------------------------- */

typedef struct recon_map {
	int stage;
	int32_t *missing;     /* ascending */
	size_t n_missing;
	int32_t *surviving;   /* ascending */
	size_t n_surviving;
	float *w;             /* [(n_surviving + 1) * n_missing] */
} recon_map;

struct impute_recon {
	size_t n, cap;
	recon_map *maps;
	size_t bytes;
};

void impute_recon_destroy(impute_recon *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++) {
		free(r->maps[i].missing);
		free(r->maps[i].surviving);
		free(r->maps[i].w);
	}
	free(r->maps);
	free(r);
}

size_t impute_recon_bytes(const impute_recon *r)
{
	return r ? r->bytes : 0;
}

size_t impute_recon_count(const impute_recon *r)
{
	return r ? r->n : 0;
}

/* In-place Cholesky of the n x n SPD matrix a (lower triangle). */
static df_err cholesky(double *a, size_t n)
{
	for (size_t j = 0; j < n; j++) {
		double d = a[j * n + j];
		for (size_t k = 0; k < j; k++)
			d -= a[j * n + k] * a[j * n + k];
		if (!(d > 0))
			return df_errf(DF_ERANGE, "recon fit: matrix not positive definite");
		d = sqrt(d);
		a[j * n + j] = d;
		for (size_t i = j + 1; i < n; i++) {
			double v = a[i * n + j];
			for (size_t k = 0; k < j; k++)
				v -= a[i * n + k] * a[j * n + k];
			a[i * n + j] = v / d;
		}
	}
	return DF_OK;
}

/* Solves L L^T x = b in place for one right-hand side. */
static void chol_solve(const double *l, size_t n, double *b)
{
	for (size_t i = 0; i < n; i++) {
		double v = b[i];
		for (size_t k = 0; k < i; k++)
			v -= l[i * n + k] * b[k];
		b[i] = v / l[i * n + i];
	}
	for (size_t i = n; i-- > 0;) {
		double v = b[i];
		for (size_t k = i + 1; k < n; k++)
			v -= l[k * n + i] * b[k];
		b[i] = v / l[i * n + i];
	}
}

static bool same_set(const int32_t *a, size_t na, const int32_t *b, size_t nb)
{
	return na == nb && memcmp(a, b, na * sizeof *a) == 0;
}

static df_err fit_one(const stage_stats *ss, int st, const bool *miss,
		      impute_recon *r)
{
	const size_t c = (size_t)ss->c, dim = c + 1;
	recon_map m = {.stage = st};
	df_err err = DF_OK;
	double *a = NULL, *rhs = NULL;
	m.missing = malloc(c * sizeof *m.missing);
	m.surviving = malloc(c * sizeof *m.surviving);
	if (!m.missing || !m.surviving) {
		err = DF_ENOMEM;
		goto out;
	}
	for (size_t k = 0; k < c; k++) {
		if (miss[k])
			m.missing[m.n_missing++] = (int32_t)k;
		else
			m.surviving[m.n_surviving++] = (int32_t)k;
	}
	for (size_t i = 0; i < r->n; i++)
		if (r->maps[i].stage == st &&
		    same_set(r->maps[i].missing, r->maps[i].n_missing, m.missing,
			     m.n_missing))
			goto out; /* already fitted for this missing set */
	if (m.n_missing == 0 || m.n_surviving == 0)
		goto out; /* nothing to predict, or nothing to predict from */
	const size_t ns = m.n_surviving + 1, nm = m.n_missing;
	a = malloc(ns * ns * sizeof *a);
	rhs = malloc(ns * sizeof *rhs);
	m.w = malloc(ns * nm * sizeof *m.w);
	if (!a || !rhs || !m.w) {
		err = DF_ENOMEM;
		goto out;
	}
	/* index into the Gram matrix: surviving channels, then the bias */
	double trace = 0;
	for (size_t i = 0; i < ns; i++) {
		size_t gi = i < m.n_surviving ? (size_t)m.surviving[i] : c;
		for (size_t j = 0; j < ns; j++) {
			size_t gj = j < m.n_surviving ? (size_t)m.surviving[j] : c;
			a[i * ns + j] = ss->gram[gi * dim + gj];
		}
		trace += a[i * ns + i];
	}
	/* Ridge: a small multiple of the mean diagonal keeps the solve stable
	 * when channels are collinear or dead (always 0 after ReLU). */
	double lambda = 1e-6 * trace / (double)ns + 1e-9;
	for (size_t i = 0; i < ns; i++)
		a[i * ns + i] += lambda;
	err = cholesky(a, ns);
	if (err)
		goto out;
	for (size_t k = 0; k < nm; k++) {
		size_t gm = (size_t)m.missing[k];
		for (size_t i = 0; i < ns; i++) {
			size_t gi = i < m.n_surviving ? (size_t)m.surviving[i] : c;
			rhs[i] = ss->gram[gi * dim + gm];
		}
		chol_solve(a, ns, rhs);
		for (size_t i = 0; i < ns; i++)
			m.w[i * nm + k] = (float)rhs[i];
	}
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 16;
		recon_map *maps = realloc(r->maps, cap * sizeof *maps);
		if (!maps) {
			err = DF_ENOMEM;
			goto out;
		}
		r->maps = maps;
		r->cap = cap;
	}
	r->bytes += ns * nm * sizeof *m.w + c * sizeof *m.missing;
	r->maps[r->n++] = m;
	memset(&m, 0, sizeof m);
out:
	free(a);
	free(rhs);
	free(m.missing);
	free(m.surviving);
	free(m.w);
	return err;
}

/* Neurons of stage ps that lose every holder when devices in mask fail. */
static void lost_neurons(const partition_map *m, const partition_stage *ps,
			 uint64_t mask, bool *miss)
{
	const int reps = m->copies - 1;
	for (int64_t i = 0; i < ps->n_neurons; i++) {
		bool lost = (mask >> ps->primary[i]) & 1;
		for (int c = 0; c < reps && lost; c++) {
			int32_t d = ps->replicas[i * reps + c];
			if (d >= 0 && !((mask >> d) & 1))
				lost = false;
		}
		miss[i] = lost;
	}
}

df_err impute_recon_fit(const impute_stats *s, const stage_plan *p,
			const partition_map *m, int max_fail,
			impute_recon **out)
{
	if (!s->finished)
		return df_errf(DF_EINVAL, "calibration statistics not finished");
	if (s->n_stages != p->n_stages || m->n_stages != p->n_stages)
		return df_errf(DF_EINVAL, "statistics, plan and map disagree on stages");
	if (max_fail < 0 || max_fail > 3)
		return df_errf(DF_EINVAL, "recon fit: max_fail must be 0..3, got %d",
			       max_fail);
	if (m->n_devices > 63)
		return df_errf(DF_EINVAL, "recon fit: at most 63 devices, got %d",
			       m->n_devices);
	impute_recon *r = calloc(1, sizeof *r);
	if (!r)
		return DF_ENOMEM;
	df_err err = DF_OK;
	const int nd = m->n_devices;
	for (int st = 0; st < p->n_stages && !err; st++) {
		const partition_stage *ps = &m->stages[st];
		if (ps->on_gateway || s->st[st].c == 0)
			continue;
		bool *miss = malloc((size_t)ps->n_neurons * sizeof *miss);
		if (!miss) {
			err = DF_ENOMEM;
			break;
		}
		/* every device set of size 1..max_fail (enumerated, not a scan
		 * of all 2^n masks: 40 devices must stay cheap) */
		for (int k = 1; k <= max_fail && k <= nd && !err; k++) {
			uint64_t *masks = NULL;
			size_t count = 0;
			err = partition_device_sets(nd, k, SIZE_MAX, 0, &masks, &count);
			for (size_t i = 0; i < count && !err; i++) {
				lost_neurons(m, ps, masks[i], miss);
				err = fit_one(&s->st[st], st, miss, r);
			}
			free(masks);
		}
		free(miss);
	}
	if (err) {
		impute_recon_destroy(r);
		return err;
	}
	*out = r;
	return DF_OK;
}

static const recon_map *find_map(const impute_recon *r, int st,
				 const int32_t *missing, size_t n)
{
	for (size_t i = 0; r && i < r->n; i++)
		if (r->maps[i].stage == st &&
		    same_set(r->maps[i].missing, r->maps[i].n_missing, missing, n))
			return &r->maps[i];
	return NULL;
}

static float clampf(float v, float lo, float hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

df_err impute_apply(impute_mode mode, const impute_stats *s,
		    const impute_recon *r, int st, tensor *t,
		    const bool *missing, bool *fell_back)
{
	if (fell_back)
		*fell_back = false;
	if (t->dtype != TENSOR_F32 || t->ndim < 2 || t->dims[0] != 1 ||
	    t->dims[1] < 1)
		return df_errf(DF_EINVAL, "impute: stage output must be [1, C, ...] with C >= 1");
	const size_t c = (size_t)t->dims[1], hw = t->numel / c;
	float *x = tensor_f32(t);
	if (mode != IMPUTE_ZERO &&
	    (!s || st < 0 || st >= s->n_stages || (size_t)s->st[st].c != c ||
	     !s->finished))
		return df_errf(DF_EINVAL, "impute %s needs calibration statistics for stage %d",
			       impute_mode_name(mode), st);
	const recon_map *map = NULL;
	if (mode == IMPUTE_RECON) {
		int32_t *ids = malloc(c * sizeof *ids);
		if (!ids)
			return DF_ENOMEM;
		size_t n = 0;
		for (size_t k = 0; k < c; k++)
			if (missing[k])
				ids[n++] = (int32_t)k;
		map = find_map(r, st, ids, n);
		free(ids);
		if (!map && n > 0) {
			mode = IMPUTE_MEAN;
			if (fell_back)
				*fell_back = true;
		}
	}
	if (mode == IMPUTE_ZERO || mode == IMPUTE_MEAN) {
		for (size_t k = 0; k < c; k++) {
			if (!missing[k])
				continue;
			float v = mode == IMPUTE_MEAN ? s->st[st].mean[k] : 0.0f;
			for (size_t p = 0; p < hw; p++)
				x[k * hw + p] = v;
		}
		return DF_OK;
	}
	if (!map)
		return DF_OK;
	const size_t nm = map->n_missing, ns = map->n_surviving;
	const float lo = s->st[st].lo, hi = s->st[st].hi;
	for (size_t k = 0; k < nm; k++) {
		float *y = x + (size_t)map->missing[k] * hw;
		const float bias = map->w[ns * nm + k];
		for (size_t p = 0; p < hw; p++)
			y[p] = bias;
		for (size_t j = 0; j < ns; j++) {
			const float wj = map->w[j * nm + k];
			const float *xs = x + (size_t)map->surviving[j] * hw;
			for (size_t p = 0; p < hw; p++)
				y[p] += wj * xs[p];
		}
		for (size_t p = 0; p < hw; p++)
			y[p] = clampf(y[p], lo, hi);
	}
	return DF_OK;
}
