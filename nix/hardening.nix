# The systemd hardening of hitvault: one source for the NixOS module
# (systemd.services.hitvault.{serviceConfig,environment,after,wantedBy}) and
# for systemd/hitvault.service, which nix/render-unit.nix renders from it
# (both through nix/service.nix).
#
# Plain data, builtins only (no nixpkgs): booleans render as yes/no, lists as
# one line per element (systemd merges repeated lines of these keys).
#
# Checked by tests/tests/systemd_unit.rs: the committed unit equals the
# rendering, `systemd-analyze security --offline=yes` reports an exposure of
# 1.0 or less, and `systemd-analyze verify` prints no warning.
{
  description = "hitvault web analytics";
  after = ["network.target"];
  wantedBy = ["multi-user.target"];

  environment = {
    HITVAULT_DATA_DIR = "/var/lib/hitvault";
  };

  serviceConfig = {
    # The daemon says READY=1 once its listeners and store are up, and sends
    # WATCHDOG=1 from the batcher's loop: a stuck writer gets restarted.
    Type = "notify";
    NotifyAccess = "main";
    WatchdogSec = "30s";
    Restart = "on-failure";
    RestartSec = "2s";

    # A fresh unprivileged user, its state in /var/lib/hitvault, nothing
    # readable by others.
    DynamicUser = true;
    StateDirectory = "hitvault";
    StateDirectoryMode = "0700";
    UMask = "0077";
    # No core dumps: the memory of a killed daemon holds client addresses
    # that are never to reach a disk (a seccomp kill is diagnosed from the
    # audit log instead, see policy/README.md).
    LimitCORE = "0";

    # No privileges, ever. A listen port below 1024 would need
    # CAP_NET_BIND_SERVICE here (and in AmbientCapabilities); the default
    # ports are above it.
    CapabilityBoundingSet = "";
    AmbientCapabilities = "";
    NoNewPrivileges = true;

    # The file system: read-only everywhere but the state directory.
    ProtectSystem = "strict";
    ProtectHome = true;
    PrivateTmp = true;
    PrivateDevices = true;
    PrivateIPC = true;
    PrivateMounts = true;
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    ProtectClock = true;
    ProtectHostname = true;
    # Other processes are invisible. ProcSubset=pid is deliberately NOT set:
    # it hides /proc/stat and /proc/meminfo, and DuckDB aborts the whole
    # process when it cannot read /proc/stat (it costs 0.1 of exposure).
    ProtectProc = "invisible";

    # Alone with its own user in a user namespace (only root and the
    # service user are mapped).
    PrivateUsers = true;

    # The network: TCP and the notify socket only, and only with this host
    # and the private address ranges of a LAN (enforced by a cgroup BPF
    # filter, in both directions). A site that numbers its LAN from public
    # ranges adds them with a drop-in (IPAddressAllow=...). The daemon's own
    # Landlock rules narrow this further to the configured ports.
    RestrictAddressFamilies = ["AF_INET" "AF_INET6" "AF_UNIX"];
    IPAddressDeny = "any";
    IPAddressAllow = ["localhost" "link-local" "10.0.0.0/8" "172.16.0.0/12" "192.168.0.0/16" "fc00::/7"];

    # The kernel surface.
    RestrictNamespaces = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    LockPersonality = true;
    MemoryDenyWriteExecute = true;
    RemoveIPC = true;
    SystemCallArchitectures = "native";
    # systemd 252's @system-service lacks the Landlock calls and seccomp(2),
    # which installs the daemon's own filter on every thread (TSYNC): name
    # them, or Landlock degrades (EPERM) and the daemon refuses to start
    # without its filter (exit 3). The daemon's own seccomp allow-list
    # (policy/seccomp.json) is stricter still.
    SystemCallFilter = [
      "@system-service"
      "landlock_create_ruleset landlock_add_rule landlock_restrict_self seccomp"
      "~@privileged @resources"
    ];
    SystemCallErrorNumber = "EPERM";
  };
}
