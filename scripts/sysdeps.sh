#!/usr/bin/env bash
# System packages hilreward's demo and tests need (Debian/Ubuntu): GL libraries for MuJoCo's
# offscreen rendering (EGL, with OSMesa as fallback); with --with-browser also what the tests
# drive: Chromium and its WebDriver (chromium-driver, /usr/bin/chromedriver) for the report and
# label-station browser tests, and PostgreSQL (server binaries for a throwaway cluster the
# correction-store and replica tests start in a temp dir; they never use a system cluster).
# Installs only what is missing; needs root (or sudo) the first time. libgl1-mesa-dri holds
# the software rasteriser (llvmpipe) that EGL uses on machines without a GPU.
set -euo pipefail
want=(libegl1 libgl1 libgl1-mesa-dri libosmesa6 libglfw3)
[ "${1:-}" = "--with-browser" ] && want+=(chromium chromium-driver postgresql)
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
command -v apt-get >/dev/null || { echo "sysdeps: not a Debian system; install by hand: ${missing[*]}" >&2; exit 0; }
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "sysdeps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
