#!/usr/bin/env bash
# Installs the programs `ferry-bench transfer` measures ferry against, from Debian's packages:
# nginx (the local server every tool downloads from), curl, wget and aria2c.
#
#   bash scripts/bench-peers.sh
#
# Runs `apt-get update` once, then `apt-get install -y nginx-light curl wget aria2`, as root or
# through sudo. Packages already installed stay as they are. The benchmark starts its own nginx
# (a generated config on a high port of 127.0.0.1, as a child process); it does not use the
# system service the package may set up.
set -euo pipefail
packages=(nginx-light curl wget aria2)
programs=(nginx curl wget aria2c)
if ! command -v apt-get >/dev/null 2>&1; then
  echo "bench-peers: no apt-get here; install ${programs[*]} with this system's package manager" >&2
  exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "bench-peers: installing packages needs root, and sudo is not installed" >&2
    exit 1
  fi
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update
"${sudo[@]}" apt-get install -y "${packages[@]}"
# nginx lives in /usr/sbin, which a non-root PATH may lack; ferry-bench looks there too.
missing=()
for p in "${programs[@]}"; do
  if ! command -v "$p" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$p" ]; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "bench-peers: still missing after the install: ${missing[*]}" >&2
  exit 1
fi
echo "bench-peers: ready: $(PATH="$PATH:/usr/sbin" nginx -v 2>&1); $(curl --version | head -n1 | cut -d' ' -f1-2);" \
  "$(wget --version | head -n1 | cut -d' ' -f1-3); $(aria2c --version | head -n1)"
