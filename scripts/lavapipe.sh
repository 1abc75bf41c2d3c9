#!/bin/sh
# Fetches lavapipe, Mesa's Vulkan driver on the CPU, from Debian 12's
# backports (Mesa 25) into a folder of the project's, and writes an ICD file
# for it. Nothing is installed: the system's packages and Vulkan ICDs stay as
# they are, and only the processes that point VK_ICD_FILENAMES at this file
# see the driver. Debian 12's own lavapipe (Mesa 22.3) does not work with
# Dawn (it lacks shaderUniform*ArrayDynamicIndexing); Mesa 25's does.
#
# The webgpu tests run on SwiftShader and, for a second, independent Vulkan
# implementation, on this lavapipe (scripts/test.js; RETROMAE_TEST_VULKAN).
# Its libraries' dependencies (LLVM 15, libxcb, libwayland) are Debian 12's,
# installed by .ci/run.
#
# Usage: sh scripts/lavapipe.sh [FOLDER]   (default .cache/lavapipe)
# Prints the ICD file's path. Needs apt's network (deb.debian.org).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$root/.cache/lavapipe}
icd=$dest/lvp_icd.json
if [ -f "$icd" ] && [ -f "$dest/libvulkan_lvp.so" ]; then
  echo "$icd"
  exit 0
fi
if [ "$(dpkg --print-architecture 2>/dev/null)" != amd64 ] || ! grep -q '^VERSION_CODENAME=bookworm' /etc/os-release 2>/dev/null; then
  echo "scripts/lavapipe.sh fetches Debian 12 (bookworm) amd64's backports; this system is another: install a Mesa of 23 or later with its lavapipe (mesa-vulkan-drivers) instead." >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/x"
echo "deb http://deb.debian.org/debian bookworm-backports main" >"$work/sources.list"
# apt's own state and cache stay untouched: the lists and the package cache are the temporary folder's
set -- -o "Dir::Etc::sourcelist=$work/sources.list" -o Dir::Etc::sourceparts=/dev/null \
  -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o APT::Sandbox::User=root -qq
apt-get "$@" update
(cd "$work" && apt-get "$@" download mesa-vulkan-drivers/bookworm-backports)
deb=$(ls "$work"/mesa-vulkan-drivers_*.deb)
dpkg-deb -x "$deb" "$work/x"
version=$(dpkg-deb -f "$deb" Version)
# the libraries it loads must be the system's (.ci/run installs Debian 12's); a later backport may need others
missing=$(ldd "$work/x/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so" 2>/dev/null | sed -n 's/^[[:space:]]*\([^ ]*\) => not found.*/\1/p' | tr '\n' ' ')
if [ -n "$missing" ]; then
  echo "lavapipe ($version) needs libraries this system lacks: ${missing}; install the Debian packages that hold them (its Depends: $(dpkg-deb -f "$deb" Depends)) and run scripts/lavapipe.sh again." >&2
  exit 1
fi
mkdir -p "$dest"
tmp=$(mktemp "$dest/.lvp.XXXXXX")
cp "$work/x/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so" "$tmp"
chmod 644 "$tmp"
mv "$tmp" "$dest/libvulkan_lvp.so"
api=$(sed -n 's/.*"api_version": *"\([^"]*\)".*/\1/p' "$work/x/usr/share/vulkan/icd.d/lvp_icd.json")
tmp=$(mktemp "$dest/.icd.XXXXXX")
printf '{\n  "file_format_version": "1.0.0",\n  "ICD": { "library_path": "%s", "api_version": "%s" },\n  "mesa_vulkan_drivers": "%s"\n}\n' "$dest/libvulkan_lvp.so" "${api:-1.3.0}" "$version" >"$tmp"
chmod 644 "$tmp"
mv "$tmp" "$icd"
echo "$icd"
