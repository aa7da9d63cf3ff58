#!/usr/bin/env bash
# Packs what the device check needs to run tidarc's own runtime on a GPU machine that has no
# Node (see ../shared/docs/toolchain.md): node itself (stripped, xz) and the built package
# (dist, bin, templates, the addon built for any x86-64-v2 CPU, production node_modules) as
# one tar.xz, into the device check's bundle. Run after `npm ci` and device-check:prepare:
#   bash scripts/device-check/pack-runtime.sh [out/device-check]
set -euo pipefail
bundle=${1:-out/device-check}
out="$bundle/node"
mkdir -p "$out"
# The addon of `npm ci` is built with -march=native for this CPU; the GPU machine's may lack
# its instructions, so a portable one is built beside it (libstdc++ linked in: it needs only
# glibc >= 2.34 there).
npx cmake-js compile --directory runtime --out build/native-portable --log-level warn --CDTIDARC_CPU_ARCH=x86-64-v2 \
  "--CDCMAKE_SHARED_LINKER_FLAGS=-static-libstdc++ -static-libgcc" >&2
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/tidarc/build/native/Release"
cp build/native-portable/Release/tidarc_native.node "$stage/tidarc/build/native/Release/"
deps=$(npm ls --omit=dev --parseable --all | tail -n +2 | sed "s|^$PWD/||")
# runtime/emu and the driver API header: so the same pack also runs on the emulated driver (a local check).
tar -cf - package.json bin dist templates runtime/emu runtime/src/cuda/cuda_driver_api.h $deps | tar -xf - -C "$stage/tidarc"
tar -C "$stage" -cJf "$out/tidarc.tar.xz" tidarc
strip -o "$stage/node" "$(command -v node)"
xz -T0 -6 -c "$stage/node" > "$out/node.xz"
du -sh "$out"/* >&2
echo "$out"
