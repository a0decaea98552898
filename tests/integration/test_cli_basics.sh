# The dicefleet command: help, version, usage errors.
. "$(dirname "$0")/lib.sh"

expect_status 0 "dicefleet --help exits 0" "$DICEFLEET" --help
expect_grep "usage: dicefleet" "$TEST_TMP/out" "--help prints usage on stdout"
expect_status 0 "dicefleet --version exits 0" "$DICEFLEET" --version
expect_grep "^dicefleet [0-9]" "$TEST_TMP/out" "--version prints the version"
expect_status 2 "no command is a usage error" "$DICEFLEET"
expect_status 2 "unknown command is a usage error" "$DICEFLEET" frobnicate
expect_grep "unknown command 'frobnicate'" "$TEST_TMP/err" "unknown command is named"
finish
