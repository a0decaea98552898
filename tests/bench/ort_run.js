#!/usr/bin/env node
// ort_run.js - runs an ONNX model with ONNX Runtime (onnxruntime-node, CPU
// execution provider) the way `dicefleet run --repeat` does: one warm-up
// run, then R timed runs; prints one JSON line of latency statistics on
// stdout and writes the first output to OUT.npy.
//
// usage: node ort_run.js MODEL.onnx INPUT.npy THREADS REPEAT OUT.npy
//
// Session options: intraOpNumThreads = THREADS, interOpNumThreads = 1,
// executionMode 'sequential', graphOptimizationLevel 'all' (ORT's fusions
// and its own layout choices). Each timed run is one awaited session.run();
// the time includes the binding's tensor wrapping, a few microseconds.
// ORT_ALLOW_SPINNING=0|1 sets the session config entry
// session.intra_op.allow_spinning (ORT's default is 1: idle pool threads
// spin); unset leaves ORT's default.
// Resolve onnxruntime-node from the directory it was installed into
// (bench_ort.sh installs it in tests/bench/work); ORT_NODE_DIR overrides.
'use strict';
const fs = require('fs');
const path = require('path');

const ortDir = process.env.ORT_NODE_DIR ||
	path.join(__dirname, 'work', 'node_modules', 'onnxruntime-node');
const ort = require(ortDir);

// Minimal .npy reader for little-endian f32, C order (what the bench writes).
function readNpy(file) {
	const buf = fs.readFileSync(file);
	if (buf.toString('latin1', 1, 6) !== 'NUMPY')
		throw new Error(`${file}: not a .npy file`);
	const major = buf[6];
	const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
	const off = major === 1 ? 10 : 12;
	const header = buf.toString('latin1', off, off + hlen);
	if (!/'descr':\s*'<f4'/.test(header) || /'fortran_order':\s*True/.test(header))
		throw new Error(`${file}: need little-endian f32 in C order`);
	const m = header.match(/'shape':\s*\(([^)]*)\)/);
	const dims = m[1].split(',').map(s => s.trim()).filter(s => s).map(Number);
	const start = off + hlen;
	const n = dims.reduce((a, b) => a * b, 1);
	const data = new Float32Array(n);
	for (let i = 0; i < n; i++)
		data[i] = buf.readFloatLE(start + 4 * i);
	return { dims, data };
}

function writeNpy(file, dims, data) {
	const shape = dims.length === 1 ? `(${dims[0]},)` : `(${dims.join(', ')})`;
	let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shape}, }`;
	const pad = 64 - ((10 + header.length + 1) % 64);
	header += ' '.repeat(pad % 64) + '\n';
	const out = Buffer.alloc(10 + header.length + 4 * data.length);
	out.write('\x93NUMPY', 0, 'latin1');
	out[6] = 1;
	out[7] = 0;
	out.writeUInt16LE(header.length, 8);
	out.write(header, 10, 'latin1');
	for (let i = 0; i < data.length; i++)
		out.writeFloatLE(data[i], 10 + header.length + 4 * i);
	fs.writeFileSync(file, out);
}

function quantile(sorted, q) {
	const idx = Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1);
	return sorted[Math.max(0, idx)];
}

async function main() {
	const [model, input, threadsArg, repeatArg, outFile] = process.argv.slice(2);
	if (!outFile) {
		console.error('usage: node ort_run.js MODEL.onnx INPUT.npy THREADS REPEAT OUT.npy');
		process.exit(2);
	}
	const threads = Number(threadsArg), repeat = Number(repeatArg);
	const opts = {
		executionProviders: ['cpu'],
		intraOpNumThreads: threads,
		interOpNumThreads: 1,
		executionMode: 'sequential',
		graphOptimizationLevel: 'all',
	};
	const spin = process.env.ORT_ALLOW_SPINNING;
	if (spin === '0' || spin === '1')
		opts.extra = { session: { intra_op: { allow_spinning: spin } } };
	const session = await ort.InferenceSession.create(model, opts);
	const x = readNpy(input);
	const feeds = {};
	feeds[session.inputNames[0]] = new ort.Tensor('float32', x.data, x.dims);
	const first = await session.run(feeds);
	const times = [];
	for (let i = 0; i < repeat; i++) {
		const t0 = process.hrtime.bigint();
		await session.run(feeds);
		times.push(Number(process.hrtime.bigint() - t0) / 1e6);
	}
	const y = first[session.outputNames[0]];
	writeNpy(outFile, y.dims, y.data);
	const s = times.slice().sort((a, b) => a - b);
	const mean = times.reduce((a, b) => a + b, 0) / Math.max(1, times.length);
	console.log(JSON.stringify({
		model: path.basename(model), engine: 'onnxruntime', version: ort.env.versions ? ort.env.versions.common : undefined,
		threads, repeat, allow_spinning: opts.extra ? spin : 'default',
		min_ms: s[0], median_ms: quantile(s, 0.5), p90_ms: quantile(s, 0.9), mean_ms: mean,
	}));
}

main().catch(e => { console.error(`ort_run.js: ${e.message}`); process.exit(1); });
