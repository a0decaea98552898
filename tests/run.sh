#!/usr/bin/env bash
# run.sh - the whole test suite, from a fresh Debian 12 machine: installs
# dependencies, configures, builds and runs every ctest test (labels unit and
# integration). Exits non-zero on any failure.
#
# usage: tests/run.sh [--sanitize] [-L LABEL]
#   --sanitize  build with ASan+UBSan in build-asan/ and run the tests there
#   -L LABEL    run only tests with that ctest label (unit, integration)
# Environment: BUILD_DIR (default build/ or build-asan/), JOBS (default nproc).
set -euo pipefail
cd "$(dirname "$0")/.."

sanitize=OFF
label=()
while [ $# -gt 0 ]; do
	case "$1" in
	--sanitize) sanitize=ON ;;
	-L) label=(-L "$2"); shift ;;
	-h | --help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "run.sh: unknown option '$1'" >&2; exit 2 ;;
	esac
	shift
done

deploy/install-deps.sh

if [ "$sanitize" = ON ]; then
	build_dir=${BUILD_DIR:-build-asan}
else
	build_dir=${BUILD_DIR:-build}
fi
jobs=${JOBS:-$(nproc)}
werror=OFF
if [ "${CI:-}" = true ]; then
	werror=ON
fi

cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	-DDICEFLEET_SANITIZE="$sanitize" -DDICEFLEET_WERROR="$werror" >/dev/null
cmake --build "$build_dir" -j "$jobs"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --test-dir "$build_dir" --output-on-failure --timeout 900 -j "$jobs" "${label[@]}"
