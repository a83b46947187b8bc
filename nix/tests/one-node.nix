# NixOS VM test (flake output checks.<system>.one-node): one machine with
# services.hitvault from nix/module.nix, the daemon built by nix/package.nix.
#
#   - the service starts under the hardened unit and says it is ready;
#   - a hit posted to /api/event is answered 202 and is counted by the stats
#     API; the dashboard answers;
#   - a USB stick labelled HV-TAKEOUT, plugged in, gets a Takeout that
#     `hitvault takeout verify` accepts on the host; a stick with another
#     label is not written (its bytes are unchanged).
#
# Needs a host with Nix and nixpkgs (and KVM, or patience):
#   nix build .#checks.x86_64-linux.one-node -L
#
# The cluster test (three nodes on a private network) comes with the
# cluster (issue 18).
{
  module,
  package,
}: {hostPkgs, ...}: {
  name = "hitvault-one-node";

  nodes.machine = {pkgs, ...}: {
    imports = [module];
    services.hitvault = {
      enable = true;
      inherit package;
      settings.sites = ["example.com"];
      takeout.usb.enable = true;
    };
    environment.systemPackages = [pkgs.curl pkgs.jq];
    # A USB controller to plug sticks into through the QEMU monitor.
    virtualisation.qemu.options = ["-device qemu-xhci,id=xhci"];
  };

  testScript = ''
    import hashlib
    import os
    import subprocess

    def stick(name, label):
        path = os.path.join(os.environ.get("TMPDIR", "/tmp"), name + ".img")
        subprocess.run(["${hostPkgs.dosfstools}/bin/mkfs.vfat", "-C", "-n", label, path, "65536"], check=True)
        return path

    def plug(ident, path):
        machine.send_monitor_command(f"drive_add 0 if=none,id={ident},file={path},format=raw")
        machine.send_monitor_command(f"device_add usb-storage,bus=xhci.0,id=dev-{ident},drive={ident},removable=on")

    def unplug(ident):
        machine.send_monitor_command(f"device_del dev-{ident}")

    def sha256(path):
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    machine.wait_for_unit("hitvault.service")
    machine.wait_until_succeeds("curl -sf http://127.0.0.1:8080/readyz")

    with subtest("the service runs as the hardened unit says"):
        machine.succeed("systemctl show hitvault -p DynamicUser | grep -qx DynamicUser=yes")
        machine.fail("grep -q '^Uid:\\s*0' /proc/$(systemctl show hitvault -p MainPID --value)/status")

    with subtest("a hit is taken, stored and counted"):
        code = machine.succeed(
            "curl -s -o /dev/null -w '%{http_code}' "
            "-H 'User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0' "
            "-H 'Content-Type: application/json' "
            "-d '{\"name\":\"pageview\",\"url\":\"https://example.com/from-nixos\",\"domain\":\"example.com\"}' "
            "http://127.0.0.1:8080/api/event"
        )
        assert code.strip() == "202", f"ingest answered {code}"
        machine.wait_until_succeeds(
            "curl -sf 'http://127.0.0.1:8080/api/v1/stats/overview?site=example.com' | jq -e '.kpis.pageviews == 1'"
        )

    with subtest("the dashboard answers"):
        machine.succeed("curl -sf http://127.0.0.1:8080/ | grep -q 'hitvault</title>'")

    with subtest("a Takeout stick gets a verified Takeout"):
        path = stick("takeout", "HV-TAKEOUT")
        plug("takeout", path)
        machine.wait_until_succeeds("journalctl -b | grep -q 'verified, synced and unmounted'", timeout=300)
        unplug("takeout")
        out = os.path.join(os.environ.get("TMPDIR", "/tmp"), "takeout-out")
        os.makedirs(out)
        subprocess.run(["${hostPkgs.mtools}/bin/mcopy", "-s", "-i", path, "::/", out], check=True)
        [export] = [d for d in os.listdir(out) if d.startswith("hitvault-takeout-")]
        subprocess.run(["${package}/bin/hitvault", "takeout", "verify", os.path.join(out, export)], check=True)

    with subtest("a stick with another label is not written"):
        path = stick("other", "OTHER")
        before = sha256(path)
        plug("other", path)
        machine.wait_until_succeeds("lsblk -no LABEL | grep -qx OTHER")
        machine.sleep(10)
        unplug("other")
        machine.fail("systemctl list-units --all 'hitvault-takeout-usb@*' | grep -q failed")
        assert sha256(path) == before, "the stick without the label was written"
  '';
}
