#!/usr/bin/env bash
# Provisions a Debian 12 machine to run Switchyard on a real PMD: installs DPDK and the build
# tools (control/scripts/deps.sh), reserves hugepages, loads vfio-pci, binds the second NIC with
# dpdk-devbind.py, builds and installs `switchyard`, writes its config for the virtio profile and
# starts it under systemd. The Vagrant VM runs it at `vagrant up`.
#
# Usage (root, from the repository): vagrant/provision.sh [options]
#   --no-bind       leave NICs alone; the config then uses net_tap (what CI runs on a host)
#   --no-systemd    do not install or start the unit
#   --no-persist    do not write /etc/sysctl.d or /etc/modules-load.d (the reservation lasts until reboot)
#   --prefix DIR    install the binary in DIR/bin (default /usr/local)
#   --etc DIR       write the config in DIR (default /etc/switchyard)
#   --build B       cargo profile to build and install: release (default) or debug
# Environment: HUGEPAGES (2 MiB pages to reserve, default 512), DPDK_NIC (the interface to bind;
# default: the first Ethernet interface that carries no address and no default route).
set -euo pipefail

bind=1 systemd=1 persist=1 prefix=/usr/local etc=/etc/switchyard profile=release
while [ $# -gt 0 ]; do
    case "$1" in
        --no-bind) bind=0 ;;
        --no-systemd) systemd=0 ;;
        --no-persist) persist=0 ;;
        --prefix) prefix=$2; shift ;;
        --etc) etc=$2; shift ;;
        --build) profile=$2; shift ;;
        *) echo "provision: unknown option $1 (see the usage at the top of $0)" >&2; exit 2 ;;
    esac
    shift
done
case "$profile" in release|debug) ;; *) echo "provision: --build is release or debug, not $profile" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "provision: needs root (packages, hugepages, vfio, systemd)" >&2; exit 1; }
cd "$(dirname "$0")/.."
say() { echo "provision: $*"; }

# 1. Packages.
control/scripts/deps.sh
command -v dpdk-devbind.py >/dev/null || { echo "provision: dpdk-devbind.py missing (package dpdk)" >&2; exit 1; }

# 2. Hugepages (2 MiB): reserve, mount, persist.
pages=${HUGEPAGES:-512}
echo "$pages" > /proc/sys/vm/nr_hugepages
got=$(cat /proc/sys/vm/nr_hugepages)
say "hugepages: $got of $pages 2 MiB pages reserved"
mkdir -p /dev/hugepages
mountpoint -q /dev/hugepages || mount -t hugetlbfs nodev /dev/hugepages
if [ "$persist" = 1 ]; then
    echo "vm.nr_hugepages = $pages" > /etc/sysctl.d/80-switchyard-hugepages.conf
fi

# 3. vfio-pci; without an IOMMU (most VMs) in no-IOMMU mode.
if [ "$bind" = 1 ]; then
    modprobe vfio-pci
    if [ -z "$(ls -A /sys/kernel/iommu_groups 2>/dev/null)" ]; then
        echo 1 > /sys/module/vfio/parameters/enable_unsafe_noiommu_mode
        say "no IOMMU: vfio in no-IOMMU mode"
    fi
    [ "$persist" = 1 ] && echo vfio-pci > /etc/modules-load.d/switchyard-vfio.conf
fi

# 4. The NIC for DPDK.
devargs="" profile_name=net_tap address=198.18.0.2/24
if [ "$bind" = 1 ]; then
    nic=${DPDK_NIC:-}
    if [ -z "$nic" ]; then
        default=$(ip route show default | awk '{print $5; exit}')
        for dev in /sys/class/net/*; do
            n=$(basename "$dev")
            [ "$n" = lo ] || [ "$n" = "$default" ] || [ ! -e "$dev/device" ] && continue
            [ -n "$(ip -o addr show dev "$n" scope global)" ] && continue
            nic=$n
            break
        done
    fi
    if [ -n "$nic" ]; then
        pci=$(basename "$(readlink -f "/sys/class/net/$nic/device")")
        ip link set "$nic" down
        dpdk-devbind.py --bind=vfio-pci "$pci"
        say "bound $nic ($pci) to vfio-pci"
    else
        pci=$(dpdk-devbind.py --status-dev net | awk '/drv=vfio-pci/ {print $1; exit}')
        [ -n "$pci" ] || { echo "provision: no NIC to bind (set DPDK_NIC)" >&2; exit 1; }
        say "already bound: $pci"
    fi
    devargs=$pci profile_name=virtio
fi

# 5. Build and install.
export PATH="$HOME/.cargo/bin:$PATH"
if [ "$profile" = release ]; then
    cargo build --release --locked -p switchyard-control --bin switchyard
else
    cargo build --locked -p switchyard-control --bin switchyard
fi
install -D -m 0755 "target/$profile/switchyard" "$prefix/bin/switchyard"
say "installed $prefix/bin/switchyard ($("$prefix/bin/switchyard" --version))"

# 6. The config.
mkdir -p "$etc"
hugepages_line="no_huge = false"
[ "$got" -gt 0 ] || hugepages_line="no_huge = true"
cat > "$etc/switchyard.toml" <<CFG
# Written by vagrant/provision.sh. The appliance on the NIC DPDK took over ($profile_name).
[eal]
lcores = "0@(0-1)"
memory_mb = 512
$hugepages_line

[engine]
cores = 1

[[port]]
profile = "$profile_name"
devargs = "$devargs"
address = "$address"

[[service]]
kind = "echo"
port = 7

[[service]]
kind = "http"
port = 80
body = "Hello from Switchyard on $profile_name\n"
CFG
"$prefix/bin/switchyard" check --config "$etc/switchyard.toml"

# 7. systemd.
if [ "$systemd" = 1 ] && [ -d /run/systemd/system ]; then
    sed -e "s#/usr/local/bin/switchyard#$prefix/bin/switchyard#" -e "s#/etc/switchyard/switchyard.toml#$etc/switchyard.toml#" \
        control/systemd/switchyard.service > /etc/systemd/system/switchyard.service
    systemctl daemon-reload
    systemctl enable --now switchyard
    say "switchyard.service started: switchyard ctl status"
else
    say "not started (no systemd, or --no-systemd): $prefix/bin/switchyard run --config $etc/switchyard.toml"
fi
