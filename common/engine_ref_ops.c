/*
 * engine_ref_ops.c - the reference engine's op kernels (engine_ref.c is the
 * engine): one plain loop nest per graph_op, accumulating in double, and the
 * post-ops a Conv or Gemm may carry.
 *
 * Kernels only run on nodes that engine_ref_create() has checked (shapes,
 * attributes, ranks), so they index without further checks and cannot fail;
 * each writes exactly the output value's element count. NaN propagates as
 * in ONNX (Relu, Clip and MaxPool keep it). The output-size and padding
 * rules are stated in engine_ref.c.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "engine_ref_internal.h"

/* ---------------------------------------------------------------- kernels */

static float act_apply(graph_act act, float alpha, float beta, float v)
{
	switch (act) {
	case GRAPH_ACT_RELU:
		return v < 0.0f ? 0.0f : v; /* NaN stays NaN */
	case GRAPH_ACT_CLIP:
		/* fmaxf/fminf would drop NaN; ONNX Clip propagates it. */
		if (v < alpha)
			v = alpha;
		if (v > beta)
			v = beta;
		return v;
	case GRAPH_ACT_LEAKYRELU:
		return v >= 0.0f ? v : alpha * v;
	case GRAPH_ACT_SIGMOID:
		if (v >= 0.0f)
			return (float)(1.0 / (1.0 + exp(-(double)v)));
		else {
			double e = exp((double)v);
			return (float)(e / (1.0 + e));
		}
	default:
		return v;
	}
}

static void act_run(graph_act act, float alpha, float beta, const float *x,
		    float *y, size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] = act_apply(act, alpha, beta, x[i]);
}

static void conv_run(const graph *g, const graph_node *n, float *const *buf,
		     float *y, double *acc)
{
	const graph_conv_attr *a = &n->attr.conv;
	const graph_value *xv = engine_ref_val(g, n, 0),
	                  *wv = engine_ref_val(g, n, 1);
	const float *x = buf[n->inputs[0]], *w = buf[n->inputs[1]];
	const float *bias = n->n_inputs > 2 && n->inputs[2] >= 0
				    ? buf[n->inputs[2]]
				    : NULL;
	const graph_value *yv = &g->values[n->output];
	int64_t N = xv->dims[0], C = xv->dims[1], H = xv->dims[2],
		W = xv->dims[3];
	int64_t M = wv->dims[0], KH = a->kernel[0], KW = a->kernel[1];
	int64_t OH = yv->dims[2], OW = yv->dims[3];
	int64_t sh = a->strides[0], sw = a->strides[1];
	int64_t dh = a->dilations[0], dw = a->dilations[1];
	int64_t pt = a->pads[0], pl = a->pads[1];
	int64_t cg = C / a->group, mg = M / a->group;

	for (int64_t b = 0; b < N; b++) {
		for (int64_t m = 0; m < M; m++) {
			int64_t grp = m / mg;
			double b0 = bias ? bias[m] : 0.0;
			for (int64_t i = 0; i < OH * OW; i++)
				acc[i] = b0;
			for (int64_t c = 0; c < cg; c++) {
				const float *xp =
					x + ((b * C + grp * cg + c) * H) * W;
				const float *wp = w + ((m * cg + c) * KH) * KW;
				for (int64_t kh = 0; kh < KH; kh++) {
					for (int64_t kw = 0; kw < KW; kw++) {
						double wt = wp[kh * KW + kw];
						/* ow range whose iw = ow*sw - pl
						 * + kw*dw lies in [0, W). */
						int64_t off = kw * dw - pl;
						int64_t ow0 = off >= 0
							? 0 : (-off + sw - 1) / sw;
						int64_t ow1 = W - off <= 0
							? 0 : (W - off + sw - 1) / sw;
						if (ow1 > OW)
							ow1 = OW;
						for (int64_t oh = 0; oh < OH; oh++) {
							int64_t ih = oh * sh - pt + kh * dh;
							if (ih < 0 || ih >= H)
								continue;
							const float *row = xp + ih * W;
							double *ar = acc + oh * OW;
							for (int64_t ow = ow0; ow < ow1; ow++)
								ar[ow] += wt * row[ow * sw + off];
						}
					}
				}
			}
			float *yp = y + (b * M + m) * OH * OW;
			for (int64_t i = 0; i < OH * OW; i++)
				yp[i] = (float)acc[i];
		}
	}
}

static void gemm_run(const graph *g, const graph_node *n, float *const *buf,
		     float *y)
{
	const graph_value *xv = engine_ref_val(g, n, 0),
	                  *wv = engine_ref_val(g, n, 1);
	const float *x = buf[n->inputs[0]], *w = buf[n->inputs[1]];
	const float *bias = n->n_inputs > 2 && n->inputs[2] >= 0
				    ? buf[n->inputs[2]]
				    : NULL;
	int64_t N = wv->dims[0], K = wv->dims[1];
	bool ta = n->attr.gemm.trans_a;
	int64_t M =
	    ta ? xv->dims[1] : engine_ref_prod(xv->dims, 0, xv->ndim - 1);
	for (int64_t i = 0; i < M; i++) {
		for (int64_t j = 0; j < N; j++) {
			const float *wr = w + j * K;
			double s = bias ? bias[j] : 0.0;
			if (ta)
				for (int64_t k = 0; k < K; k++)
					s += (double)x[k * M + i] * wr[k];
			else
				for (int64_t k = 0; k < K; k++)
					s += (double)x[i * K + k] * wr[k];
			y[i * N + j] = (float)s;
		}
	}
}

static void matmul_run(const graph *g, const graph_node *n, float *const *buf,
		       float *y, double *acc)
{
	engine_ref_mm_geom mg;
	engine_ref_shape s;
	/* checked by engine_ref_create() */
	(void)engine_ref_mm_plan(n, engine_ref_val(g, n, 0),
	                         engine_ref_val(g, n, 1), &mg, &s);
	const float *a = buf[n->inputs[0]], *b = buf[n->inputs[1]];
	int64_t M = mg.m, K = mg.k, N = mg.n;
	int64_t batches = engine_ref_prod(mg.bdims, 0, mg.nb);
	int64_t idx[TENSOR_MAX_DIMS] = {0};
	for (int64_t bt = 0; bt < batches; bt++) {
		int64_t ao = 0, bo = 0;
		for (int d = 0; d < mg.nb; d++) {
			ao += idx[d] * mg.astr[d];
			bo += idx[d] * mg.bstr[d];
		}
		const float *ap = a + ao * M * K, *bp = b + bo * K * N;
		float *yp = y + bt * M * N;
		for (int64_t i = 0; i < M; i++) {
			for (int64_t j = 0; j < N; j++)
				acc[j] = 0.0;
			for (int64_t k = 0; k < K; k++) {
				double av = ap[i * K + k];
				const float *br = bp + k * N;
				for (int64_t j = 0; j < N; j++)
					acc[j] += av * br[j];
			}
			for (int64_t j = 0; j < N; j++)
				yp[i * N + j] = (float)acc[j];
		}
		for (int d = mg.nb - 1; d >= 0; d--) {
			if (++idx[d] < mg.bdims[d])
				break;
			idx[d] = 0;
		}
	}
}

static void batchnorm_run(const graph *g, const graph_node *n,
			  float *const *buf, float *y)
{
	const graph_value *xv = engine_ref_val(g, n, 0);
	const float *x = buf[n->inputs[0]];
	const float *sc = buf[n->inputs[1]], *sh = buf[n->inputs[2]];
	int64_t N = xv->dims[0], C = xv->dims[1];
	int64_t inner = engine_ref_prod(xv->dims, 2, xv->ndim);
	for (int64_t b = 0; b < N; b++)
		for (int64_t c = 0; c < C; c++) {
			size_t base = (size_t)((b * C + c) * inner);
			for (int64_t i = 0; i < inner; i++)
				y[base + i] = x[base + i] * sc[c] + sh[c];
		}
}

static void pool_run(const graph *g, const graph_node *n, float *const *buf,
		     float *y)
{
	const graph_pool_attr *a = &n->attr.pool;
	const graph_value *xv = engine_ref_val(g, n, 0),
	                  *yv = &g->values[n->output];
	const float *x = buf[n->inputs[0]];
	bool is_max = n->op == GRAPH_OP_MAXPOOL;
	int64_t NC = xv->dims[0] * xv->dims[1], H = xv->dims[2],
		W = xv->dims[3];
	int64_t OH = yv->dims[2], OW = yv->dims[3];
	int64_t KH = a->kernel[0], KW = a->kernel[1];
	int64_t sh = a->strides[0], sw = a->strides[1];
	int64_t dh = a->dilations[0], dw = a->dilations[1];
	int64_t pt = a->pads[0], pl = a->pads[1], pb = a->pads[2],
		pr = a->pads[3];
	for (int64_t p = 0; p < NC; p++) {
		const float *xp = x + p * H * W;
		float *yp = y + p * OH * OW;
		for (int64_t oh = 0; oh < OH; oh++) {
			int64_t h0 = oh * sh - pt;
			for (int64_t ow = 0; ow < OW; ow++) {
				int64_t w0 = ow * sw - pl;
				double sum = 0.0;
				float mx = -INFINITY;
				for (int64_t kh = 0; kh < KH; kh++) {
					int64_t ih = h0 + kh * dh;
					if (ih < 0 || ih >= H)
						continue;
					for (int64_t kw = 0; kw < KW; kw++) {
						int64_t iw = w0 + kw * dw;
						if (iw < 0 || iw >= W)
							continue;
						float v = xp[ih * W + iw];
						sum += v;
						if (v > mx || isnan(v))
							mx = isnan(mx) ? mx : v;
					}
				}
				if (is_max) {
					yp[oh * OW + ow] = mx;
					continue;
				}
				int64_t cnt;
				if (a->count_include_pad)
					cnt = engine_ref_taps_inside(
					          h0, KH, dh, -pt, H + pb) *
					      engine_ref_taps_inside(
					          w0, KW, dw, -pl, W + pr);
				else
					cnt = engine_ref_taps_inside(h0, KH, dh,
					                             0, H) *
					      engine_ref_taps_inside(w0, KW, dw,
					                             0, W);
				yp[oh * OW + ow] = (float)(sum / (double)cnt);
			}
		}
	}
}

static void gap_run(const graph *g, const graph_node *n, float *const *buf,
		    float *y)
{
	const graph_value *xv = engine_ref_val(g, n, 0);
	const float *x = buf[n->inputs[0]];
	int64_t NC = xv->dims[0] * xv->dims[1];
	int64_t inner = engine_ref_prod(xv->dims, 2, xv->ndim);
	for (int64_t p = 0; p < NC; p++) {
		double s = 0.0;
		for (int64_t i = 0; i < inner; i++)
			s += x[p * inner + i];
		y[p] = inner > 0 ? (float)(s / (double)inner) : NAN;
	}
}

static void binary_run(const graph *g, const graph_node *n, float *const *buf,
		       float *y)
{
	const graph_value *av = engine_ref_val(g, n, 0),
	                  *bv = engine_ref_val(g, n, 1);
	const graph_value *yv = &g->values[n->output];
	const float *a = buf[n->inputs[0]], *b = buf[n->inputs[1]];
	bool mul = n->op == GRAPH_OP_MUL;
	int r = yv->ndim;
	int64_t od[TENSOR_MAX_DIMS], as[TENSOR_MAX_DIMS], bs[TENSOR_MAX_DIMS];
	int64_t sa = 1, sb = 1;
	for (int i = r - 1; i >= 0; i--) {
		int ia = i - (r - av->ndim), ib = i - (r - bv->ndim);
		int64_t da = ia >= 0 ? av->dims[ia] : 1;
		int64_t db = ib >= 0 ? bv->dims[ib] : 1;
		od[i] = yv->dims[i];
		as[i] = da == 1 ? 0 : sa;
		bs[i] = db == 1 ? 0 : sb;
		sa *= da;
		sb *= db;
	}
	size_t total = (size_t)engine_ref_prod(yv->dims, 0, r);
	if (total == 0)
		return;
	if (r == 0) {
		y[0] = mul ? a[0] * b[0] : a[0] + b[0];
		return;
	}
	/* Walk the output row by row (last dim inner), with per-input offsets
	 * advanced by an odometer over the outer dims. */
	int64_t last = od[r - 1], ia = as[r - 1], ib = bs[r - 1];
	int64_t idx[TENSOR_MAX_DIMS] = {0};
	size_t rows = total / (size_t)last;
	for (size_t row = 0; row < rows; row++) {
		int64_t ao = 0, bo = 0;
		for (int d = 0; d < r - 1; d++) {
			ao += idx[d] * as[d];
			bo += idx[d] * bs[d];
		}
		float *yr = y + row * (size_t)last;
		if (mul)
			for (int64_t j = 0; j < last; j++)
				yr[j] = a[ao + j * ia] * b[bo + j * ib];
		else
			for (int64_t j = 0; j < last; j++)
				yr[j] = a[ao + j * ia] + b[bo + j * ib];
		for (int d = r - 2; d >= 0; d--) {
			if (++idx[d] < od[d])
				break;
			idx[d] = 0;
		}
	}
}

static void concat_run(const graph *g, const graph_node *n, float *const *buf,
		       float *y)
{
	const graph_value *yv = &g->values[n->output];
	int64_t axis = n->attr.axis.axis;
	int64_t outer = engine_ref_prod(yv->dims, 0, (int)axis);
	int64_t ychunk = engine_ref_prod(yv->dims, (int)axis, yv->ndim);
	int64_t off = 0;
	for (int i = 0; i < n->n_inputs; i++) {
		const graph_value *xv = engine_ref_val(g, n, i);
		const float *x = buf[n->inputs[i]];
		int64_t chunk = engine_ref_prod(xv->dims, (int)axis, xv->ndim);
		if (chunk > 0)
			for (int64_t o = 0; o < outer; o++)
				memcpy(y + o * ychunk + off, x + o * chunk,
				       (size_t)chunk * sizeof *y);
		off += chunk;
	}
}

static void softmax_run(const graph *g, const graph_node *n, float *const *buf,
			float *y)
{
	const graph_value *xv = engine_ref_val(g, n, 0);
	const float *x = buf[n->inputs[0]];
	int ax = (int)n->attr.axis.axis;
	int64_t outer = engine_ref_prod(xv->dims, 0, ax);
	int64_t len, inner;
	if (n->attr.axis.legacy) {
		len = engine_ref_prod(xv->dims, ax, xv->ndim);
		inner = 1;
	} else {
		len = xv->dims[ax];
		inner = engine_ref_prod(xv->dims, ax + 1, xv->ndim);
	}
	for (int64_t o = 0; o < outer; o++) {
		for (int64_t i = 0; i < inner; i++) {
			const float *xp = x + o * len * inner + i;
			float *yp = y + o * len * inner + i;
			float mx = -INFINITY;
			for (int64_t k = 0; k < len; k++)
				if (xp[k * inner] > mx)
					mx = xp[k * inner];
			double s = 0.0;
			for (int64_t k = 0; k < len; k++)
				s += exp((double)xp[k * inner] - mx);
			for (int64_t k = 0; k < len; k++)
				yp[k * inner] =
					(float)(exp((double)xp[k * inner] - mx) / s);
		}
	}
}

/* Runs node n's op (not its post-ops) into y. */
void engine_ref_ops_run(const graph *g, const graph_node *n, float *const *buf,
                        float *y, size_t ny, double *scratch)
{
	const float *x = buf[n->inputs[0]];
	switch (n->op) {
	case GRAPH_OP_CONV:
		conv_run(g, n, buf, y, scratch);
		return;
	case GRAPH_OP_GEMM:
		gemm_run(g, n, buf, y);
		return;
	case GRAPH_OP_MATMUL:
		matmul_run(g, n, buf, y, scratch);
		return;
	case GRAPH_OP_BATCHNORM:
		batchnorm_run(g, n, buf, y);
		return;
	case GRAPH_OP_RELU:
		act_run(GRAPH_ACT_RELU, 0, 0, x, y, ny);
		return;
	case GRAPH_OP_CLIP:
		act_run(GRAPH_ACT_CLIP, n->attr.clip.lo, n->attr.clip.hi, x, y,
			ny);
		return;
	case GRAPH_OP_LEAKYRELU:
		act_run(GRAPH_ACT_LEAKYRELU, n->attr.leaky.alpha, 0, x, y, ny);
		return;
	case GRAPH_OP_SIGMOID:
		act_run(GRAPH_ACT_SIGMOID, 0, 0, x, y, ny);
		return;
	case GRAPH_OP_MAXPOOL:
	case GRAPH_OP_AVGPOOL:
		pool_run(g, n, buf, y);
		return;
	case GRAPH_OP_GLOBALAVGPOOL:
		gap_run(g, n, buf, y);
		return;
	case GRAPH_OP_ADD:
	case GRAPH_OP_MUL:
		binary_run(g, n, buf, y);
		return;
	case GRAPH_OP_CONCAT:
		concat_run(g, n, buf, y);
		return;
	case GRAPH_OP_FLATTEN:
	case GRAPH_OP_RESHAPE:
		if (ny > 0)
			memcpy(y, x, ny * sizeof *y);
		return;
	case GRAPH_OP_SOFTMAX:
		softmax_run(g, n, buf, y);
		return;
	default:
		return; /* rejected by check_node */
	}
}

void engine_ref_ops_postops_run(const graph_node *n, float *const *buf,
                                float *y, size_t ny)
{
	for (int p = 0; p < n->n_postops; p++) {
		const graph_postop *po = &n->postops[p];
		if (po->kind == GRAPH_POSTOP_ACT) {
			act_run(po->act, po->alpha, po->beta, y, y, ny);
		} else {
			const float *o = buf[po->operand];
			for (size_t i = 0; i < ny; i++)
				y[i] += o[i];
		}
	}
}
