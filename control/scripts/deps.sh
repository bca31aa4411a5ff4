#!/usr/bin/env bash
# Installs what building, running and testing Switchyard need on Debian 12, when it is missing:
# the system DPDK 22.11 (through pkg-config), clang for bindgen, and the tools the demo and the
# tests use (iproute2, ping, curl, nc, tshark to read captures). Checks that a Rust toolchain is
# there.
set -euo pipefail

packages=(dpdk dpdk-dev libdpdk-dev pkg-config clang libclang-dev gcc make iproute2 iputils-ping curl netcat-openbsd tshark)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if ((${#missing[@]})); then
    echo "deps: installing ${missing[*]}"
    if [ "$(id -u)" = 0 ]; then
        sudo=()
    elif command -v sudo >/dev/null; then
        sudo=(sudo)
    else
        echo "deps: these Debian packages are missing and installing them needs root: ${missing[*]}" >&2
        exit 1
    fi
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        echo "deps: cargo is in $HOME/.cargo/bin but not on PATH: run 'source \$HOME/.cargo/env' first" >&2
    else
        echo "deps: no Rust toolchain found: install one with rustup (Rust 1.80 or newer; Debian 12's own cargo is too old)" >&2
    fi
    exit 1
fi

pkg-config --atleast-version=22.11 libdpdk || {
    echo "deps: pkg-config does not find libdpdk >= 22.11 although the packages are installed; check PKG_CONFIG_PATH" >&2
    exit 1
}
