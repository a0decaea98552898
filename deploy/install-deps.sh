#!/usr/bin/env bash
# install-deps.sh - installs the Debian 12 packages dicefleet needs to build,
# test and benchmark. Idempotent: packages already present are skipped, and
# nothing is done (not even apt-get update) when all are there.
#
# usage: deploy/install-deps.sh [--runtime-only] [--with-training]
#   --runtime-only   only what the services need at run time (for images)
#   --with-training  also python3-torch & co. (retraining the shipped models
#                    and the ONNX Runtime comparison benchmark)
set -euo pipefail

build_pkgs=(
	build-essential cmake pkg-config git
	libmicrohttpd-dev libcurl4-openssl-dev libjansson-dev libdnnl-dev
	libsqlite3-dev libcmocka-dev libprotobuf-c-dev protobuf-c-compiler
	libonnx-dev libjpeg62-turbo-dev libpng-dev zlib1g-dev
)
test_pkgs=(dataset-fashion-mnist sqlite3 curl python3 python3-numpy iproute2 procps)
runtime_pkgs=(
	libmicrohttpd12 libcurl4 libjansson4 libdnnl2 libsqlite3-0
	libprotobuf-c1 libjpeg62-turbo libpng16-16 zlib1g curl
)
training_pkgs=(python3-torch python3-torchvision python3-onnx python3-matplotlib nodejs npm)

want=()
case "${1:-}" in
--runtime-only) want=("${runtime_pkgs[@]}") ;;
--with-training) want=("${build_pkgs[@]}" "${test_pkgs[@]}" "${training_pkgs[@]}") ;;
"") want=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
-h | --help)
	sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
	exit 0
	;;
*)
	echo "install-deps.sh: unknown option '$1' (see --help)" >&2
	exit 2
	;;
esac

missing=()
for p in "${want[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	echo "install-deps: all ${#want[@]} packages present"
	exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
	sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
