#!/bin/sh
# Fetches what tests/vhost_qemu.rs boots: Debian's cloud kernel and the
# virtio modules it needs for a virtio-net device, into DEST (default
# target/qemu-guest). Run by .ci/run; idempotent.
set -eu
dest=${1:-target/qemu-guest}
[ -f "$dest/vmlinuz" ] && [ -d "$dest/modules" ] && exit 0
kernel_pkg() {
    apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}
pkg=$(kernel_pkg)
if [ -z "$pkg" ]; then
    apt-get update -qq
    pkg=$(kernel_pkg)
fi
[ -n "$pkg" ] || { echo "no Debian cloud kernel package found" >&2; exit 1; }
tmp=$(mktemp -d)
chmod 777 "$tmp" # apt downloads as _apt
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download -q "$pkg" >/dev/null)
dpkg -x "$tmp"/*.deb "$tmp/x"
mkdir -p "$dest/modules"
cp "$tmp"/x/boot/vmlinuz-* "$dest/vmlinuz"
kver=$(ls "$tmp/x/lib/modules")
# In load order; those built into the kernel are simply absent.
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net; do
    f=$(find "$tmp/x/lib/modules/$kver" -name "$m.ko*" | head -n 1)
    if [ -n "$f" ]; then
        case "$f" in
            *.xz) xz -dc "$f" > "$dest/modules/$m.ko" ;;
            *.zst) zstd -qdc "$f" > "$dest/modules/$m.ko" ;;
            *) cp "$f" "$dest/modules/$m.ko" ;;
        esac
    fi
done
echo "$pkg" > "$dest/kernel-package"
