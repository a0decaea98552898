# lib.sh - helpers for integration tests (sourced). Tests run real binaries
# from $DF_BUILD_DIR; every check prints what it expected on failure.
set -euo pipefail
: "${DF_BUILD_DIR:?DF_BUILD_DIR must point at the build directory}"
: "${DF_SOURCE_DIR:?DF_SOURCE_DIR must point at the source tree}"
DICEFLEET="$DF_BUILD_DIR/services/cli/dicefleet"
TEST_TMP=$(mktemp -d)
trap 'rm -rf "$TEST_TMP"' EXIT
failures=0

fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }

# expect_status WANT DESC CMD... : runs CMD, checks its exit status.
expect_status() {
	local want=$1 desc=$2; shift 2
	local got=0
	"$@" >"$TEST_TMP/out" 2>"$TEST_TMP/err" || got=$?
	if [ "$got" -eq "$want" ]; then pass "$desc"; else
		fail "$desc: exit $got, expected $want; stderr: $(head -c 400 "$TEST_TMP/err")"; fi
}

# expect_grep PATTERN FILE DESC
expect_grep() {
	if grep -q -- "$1" "$2"; then pass "$3"; else fail "$3: '$1' not in $(head -c 400 "$2")"; fi
}

finish() {
	if [ "$failures" -ne 0 ]; then echo "$failures check(s) failed" >&2; exit 1; fi
	echo "all checks passed"
}
