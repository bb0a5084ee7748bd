#!/usr/bin/env bash
# bench/make_gtest_prefix.sh: copies this machine's GoogleTest (Debian's libgtest-dev) into
# build/gtest_prefix, a CMake prefix that travels to the GPU machine (which has no GoogleTest) as
#   run(command="bash bench/device_run.sh", carry=["build/gtest_prefix"]).
set -euo pipefail
cd "$(dirname "$0")/.."
triple=$(gcc -dumpmachine)
dst=build/gtest_prefix
rm -rf "$dst"
mkdir -p "$dst/include" "$dst/lib/$triple/cmake"
cp -r /usr/include/gtest /usr/include/gmock "$dst/include/"
cp /usr/lib/"$triple"/libgtest*.a /usr/lib/"$triple"/libgmock*.a "$dst/lib/$triple/"
cp -r /usr/lib/"$triple"/cmake/GTest "$dst/lib/$triple/cmake/"
du -sh "$dst"
