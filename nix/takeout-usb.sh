# shellcheck shell=bash
# The USB Takeout: run by hitvault-takeout-usb@<device>.service
# (nix/module.nix) when a USB stick carrying the Takeout label appears.
# Mounts the stick, writes a Takeout into a new directory on it through the
# running daemon (or from the data dir when it is stopped), verifies it
# against its MANIFEST, syncs and unmounts; the journal gets every step, and
# the dashboard the outcome (/admin/usb-takeouts). On
# any failure the stick is unmounted and the exit status says so.
#
#   $1                 the block device
#   TAKEOUT_FORMAT     parquet, csv, json or ndjson
#   TAKEOUT_LABEL      the label that started it (for the log)
#   RUNTIME_DIRECTORY  an empty directory to mount the stick on
#                      (systemd's RuntimeDirectory=)
#   HITVAULT_CONFIG, HITVAULT_DATA_DIR: as the daemon's service has them
#
# Needs hitvault, mount, umount, sync and date. tests/tests/nix.rs runs it
# against a real daemon and a real file system on a loop device.
set -euo pipefail

device="$1"
mnt="$RUNTIME_DIRECTORY"
mounted=no

finish() {
    local status=$?
    if [ "$mounted" = yes ]; then
        umount "$mnt" || echo "hitvault: could not unmount $device from $mnt" >&2
    fi
    if [ "$status" -ne 0 ]; then
        echo "hitvault: Takeout onto $device FAILED (exit $status); the stick is unmounted and holds no verified export from this run" >&2
    fi
}
trap finish EXIT

mount -o nosuid,nodev,noexec "$device" "$mnt"
mounted=yes
name="hitvault-takeout-$(date -u +%Y%m%dT%H%M%SZ)"
echo "hitvault: Takeout ($TAKEOUT_FORMAT) onto $device (label $TAKEOUT_LABEL) into $name"
# Exports, verifies against the MANIFEST and syncs; the outcome, good or
# bad, is recorded for the dashboard's /admin/usb-takeouts page.
hitvault takeout --to "$mnt/$name" --format "$TAKEOUT_FORMAT" \
    --stick-label "$TAKEOUT_LABEL" --stick-device "${device##*/}"
sync --file-system "$mnt"
umount "$mnt"
mounted=no
echo "hitvault: Takeout onto $device verified, synced and unmounted: the stick can be removed"
