# shellcheck shell=bash
# An update from a USB stick: run by hitvault-update-usb@<device>.service
# (nix/appliance.nix) when a USB stick labelled HV-UPDATE appears. Mounts it
# read-only where systemd-sysupdate's transfers look (/run/hitvault-update),
# lets systemd-sysupdate verify the signed SHA256SUMS and write the newest
# version into the other slot, and reboots into it. Nothing is written
# when the signature or a checksum does not match (sysupdate refuses).
#
#   $1  the block device
set -euo pipefail

device="$1"
source=/run/hitvault-update
mounted=no

finish() {
    local status=$?
    if [ "$mounted" = yes ]; then
        umount "$source" || echo "hitvault: could not unmount $device" >&2
    fi
    if [ "$status" -ne 0 ]; then
        echo "hitvault: update from $device FAILED (exit $status); nothing changed" >&2
    fi
}
trap finish EXIT

mount -o ro,nosuid,nodev,noexec "$device" "$source"
mounted=yes
echo "hitvault: update from $device; the versions:"
systemd-sysupdate list
systemd-sysupdate update
umount "$source"
mounted=no
echo "hitvault: the new version is in the other slot; rebooting into it"
systemctl reboot
