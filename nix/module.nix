# services.hitvault: the NixOS module (flake output nixosModules.default).
#
# What it builds on, all builtins-only and evaluated by the CI
# (tests/tests/nix.rs): nix/settings.nix (the daemon's defaults, the TOML
# rendering of `settings`), nix/service.nix (the unit from
# nix/hardening.nix, the same data systemd/hitvault.service is rendered from).
# This file adds what needs nixpkgs: the option types, the config file
# checked with `hitvault check-config` at build time, the firewall and the
# USB Takeout units. It is evaluated only on a host with nixpkgs
# (`nix flake check`, see README.md).
{
  config,
  lib,
  pkgs,
  ...
}: let
  inherit (lib) mkEnableOption mkIf mkMerge mkOption types literalExpression;

  cfg = config.services.hitvault;
  s = import ./settings.nix;
  d = s.defaults;

  # Key files handed to the service with LoadCredential= (the service's
  # DynamicUser cannot read a root-owned key in place): credential name ->
  # the path on this host, and the path the daemon reads instead.
  credentials = lib.filterAttrs (_: path: path != null) {
    tls-cert = cfg.tls.cert_file;
    tls-key = cfg.tls.key_file;
    cluster-key = cfg.cluster.key_file;
  };
  credentialPath = name:
    if credentials ? ${name}
    then s.credential name
    else null;

  # The daemon's configuration file: `settings` with the typed options merged
  # in (nix/settings.nix), loaded by the daemon itself at build time so a bad
  # setting fails the build with the daemon's own message, naming the key.
  # The check runs with the unit's environment, as the service will.
  rendered = pkgs.writeText "hitvault-unchecked.toml" (s.toTOML (s.configOf {
    inherit (cfg) settings hostnames allow_plain_http;
    tls = {
      inherit (cfg.tls) mode;
      cert_file = credentialPath "tls-cert";
      key_file = credentialPath "tls-key";
    };
    cluster = {
      inherit (cfg.cluster) enable node_id bind peers ack init snapshot_every;
      key_file = credentialPath "cluster-key";
    };
  }));
  service = import ./service.nix {
    execStart = "${lib.getExe cfg.package} --config ${configFile} serve";
    loadCredential = lib.mapAttrsToList (name: path: "${name}:${path}") credentials;
  };
  configFile =
    pkgs.runCommand "hitvault.toml" {
      nativeBuildInputs = [cfg.package];
      env = service.environment;
    } ''
      hitvault check-config ${rendered} > effective.json
      cp ${rendered} $out
    '';

  dashboardPort = s.portOf cfg.settings.listen;

  # USB Takeout: a stick labelled `takeout.usb.label` gets an export in
  # `takeout.usb.format`, verified against its MANIFEST, synced, unmounted
  # (nix/takeout-usb.sh, which the CI runs for real).
  takeoutScript = pkgs.writeShellApplication {
    name = "hitvault-takeout-usb";
    runtimeInputs = [cfg.package pkgs.coreutils pkgs.util-linux];
    text = builtins.readFile ./takeout-usb.sh;
  };

  site = types.either types.str (types.submodule {
    options = {
      hostname = mkOption {
        type = types.str;
        description = "The site's hostname.";
      };
      aliases = mkOption {
        type = types.listOf types.str;
        default = [];
        description = "Other hostnames that count as this site.";
      };
    };
  });
in {
  options.services.hitvault = {
    enable = mkEnableOption "hitvault, sovereign web analytics";

    package = mkOption {
      type = types.package;
      default = pkgs.callPackage ./package.nix {};
      defaultText = literalExpression "pkgs.callPackage ./nix/package.nix { }";
      description = "The hitvault package; its `hitvault` binary runs the service and checks the configuration at build time.";
    };

    settings = mkOption {
      default = {};
      description = ''
        The daemon's configuration file, as Nix (RFC 42): every key of the
        configuration reference (docs/reference/configuration.md) by its file
        name, tables as attribute sets (`settings.retention.sites."shop.example.com" = 90;`).
        A null value leaves the key out. Rendered to TOML and loaded by
        `hitvault check-config` at build time: an unknown key or a bad value
        fails the build with the daemon's message. `data_dir` is the unit's
        state directory, /var/lib/hitvault, and cannot be changed here.
      '';
      example = literalExpression ''
        {
          listen = "0.0.0.0:8080";
          sites = [ "example.com" { hostname = "shop.example.com"; aliases = [ "www.shop.example.com" ]; } ];
          retention.days = 395;
          retention.sites."shop.example.com" = 90;
        }
      '';
      type = types.submodule {
        freeformType = (pkgs.formats.toml {}).type;
        options = {
          listen = mkOption {
            type = types.str;
            default = d.listen;
            description = "HTTP address, `host:port` with a numeric IP. The port must be 1024 or above (the unit grants no capability). `0.0.0.0:8080` serves the LAN.";
          };
          sites = mkOption {
            type = types.listOf site;
            default = d.sites;
            description = "Declared sites: hostnames, or `{ hostname, aliases }`.";
          };
          log_level = mkOption {
            type = types.str;
            default = d.log_level;
            description = "A tracing filter: `error`, `warn`, `info`, `debug`, `trace`, or per module.";
          };
        };
      };
    };

    # Settings of the sign-in issue (16): TLS on the LAN.
    hostnames = mkOption {
      type = types.listOf types.str;
      default = s.options.hostnames;
      example = ["analytics.clinic.lan"];
      description = "The daemon's `hostnames`: DNS names the appliance answers to (a passkey needs a DNS name). Empty: the key is left out.";
    };
    tls = {
      mode = mkOption {
        type = types.nullOr (types.enum ["local-ca" "files" "off"]);
        default = s.options.tls.mode;
        example = "local-ca";
        description = "The daemon's `tls.mode`: `local-ca` (the appliance's own CA), `files` (`cert_file` and `key_file`) or `off`. Null: the daemon decides (`files` when they are set, else `off` on loopback and `local-ca` on any other listener).";
      };
      cert_file = mkOption {
        type = types.nullOr types.str;
        default = s.options.tls.cert_file;
        example = "/var/lib/acme/analytics.clinic.lan/fullchain.pem";
        description = "An organisation's own certificate (chain), as a path on this host, handed to the service with LoadCredential= (renewed files take effect on restart). Never a Nix path: it would be copied into the world-readable store.";
      };
      key_file = mkOption {
        type = types.nullOr types.str;
        default = s.options.tls.key_file;
        example = "/var/lib/acme/analytics.clinic.lan/key.pem";
        description = "The private key of `tls.cert_file`, handed over the same way.";
      };
    };
    allow_plain_http = mkOption {
      type = types.nullOr types.bool;
      default = s.options.allow_plain_http;
      description = "The daemon's `allow_plain_http`: plain HTTP on a non-loopback listener (a TLS proxy in front). Null: the daemon's default (no).";
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open the dashboard's port (from `settings.listen`) on `lanInterfaces`, and, with the cluster, the cluster port on `cluster.interface` only.";
    };
    lanInterfaces = mkOption {
      type = types.listOf types.str;
      default = [];
      example = ["enp1s0"];
      description = "The interfaces facing the LAN, where `openFirewall` opens the dashboard's port. Empty: every interface.";
    };

    # The cluster (docs/operations/cluster.md): checked by the daemon itself
    # at build time, as every setting.
    cluster = {
      enable = mkEnableOption "this appliance as a node of a cluster over a private interface";
      node_id = mkOption {
        type = types.nullOr types.ints.positive;
        default = s.options.cluster.node_id;
        description = "This node's id in the cluster, never reused.";
      };
      bind = mkOption {
        type = types.nullOr types.str;
        default = s.options.cluster.bind;
        example = "10.77.0.1:7946";
        description = "The cluster address, `host:port` on the cluster interface.";
      };
      peers = mkOption {
        type = types.attrsOf types.str;
        default = s.options.cluster.peers;
        example = {
          "2" = "10.77.0.2:7946";
          "3" = "10.77.0.3:7946";
        };
        description = "The other nodes: node id to cluster address. A node connects only to these, so list every node this one may ever talk to.";
      };
      init = mkOption {
        type = types.nullOr types.bool;
        default = s.options.cluster.init;
        description = "On the first start, form the cluster from this node and `peers` (set it alike on every founding node); leave it unset on a node that joins later with `hitvault cluster add`.";
      };
      key_file = mkOption {
        type = types.nullOr types.str;
        default = s.options.cluster.key_file;
        description = "The cluster key, as a path on this host, handed to the service with LoadCredential=.";
      };
      ack = mkOption {
        type = types.enum ["majority" "local"];
        default = s.options.cluster.ack;
        description = "`majority`: a hit's 202 waits for a majority of nodes; `local`: for the local fsync.";
      };
      snapshot_every = mkOption {
        type = types.nullOr (types.ints.between 10 10000000);
        default = s.options.cluster.snapshot_every;
        description = "Null: the daemon's default (20000). Log entries applied between two snapshots (a copy of the store and the accounts); the log they cover is then dropped but for its last `snapshot_every` entries, and a node further behind, or a new one, is sent the snapshot. An interval must outlast a snapshot's install.";
      };
      interface = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "enp2s0";
        description = "The private cluster interface: the only one where `openFirewall` opens the cluster port.";
      };
    };

    takeout.usb = {
      enable = mkEnableOption "a Takeout onto every USB stick plugged in with the label `takeout.usb.label`";
      label = mkOption {
        type = types.strMatching "[A-Za-z0-9_-]{1,11}";
        default = s.takeout.usb.label;
        description = "The file system label that marks a Takeout stick (at most 11 characters, as FAT allows). A stick without it is never written.";
      };
      format = mkOption {
        type = types.enum s.takeout.usb.formats;
        default = s.takeout.usb.format;
        description = "The Takeout format written onto the stick.";
      };
    };
  };

  config = mkIf cfg.enable (mkMerge [
    {
      assertions = [
        {
          assertion = (cfg.settings.data_dir or null) == null || cfg.settings.data_dir == service.environment.HITVAULT_DATA_DIR;
          message = "services.hitvault.settings.data_dir: the data dir is the unit's state directory, ${service.environment.HITVAULT_DATA_DIR}.";
        }
        {
          assertion = dashboardPort >= 1024;
          message = "services.hitvault.settings.listen: port ${toString dashboardPort} is below 1024, which needs CAP_NET_BIND_SERVICE; the hardened unit grants no capability.";
        }
        {
          assertion = (cfg.tls.cert_file == null) == (cfg.tls.key_file == null);
          message = "services.hitvault.tls: set both cert_file and key_file, or neither.";
        }
        {
          assertion = !cfg.cluster.enable || (cfg.cluster.node_id != null && cfg.cluster.bind != null && cfg.cluster.key_file != null);
          message = "services.hitvault.cluster: node_id, bind and key_file are required with the cluster.";
        }
        {
          assertion = !(cfg.cluster.enable && cfg.openFirewall) || cfg.cluster.interface != null;
          message = "services.hitvault.cluster.interface: name the cluster interface, where openFirewall opens the cluster port.";
        }
      ];

      systemd.services.hitvault = service;
    }

    (mkIf cfg.openFirewall {
      networking.firewall = s.firewall {
        inherit (cfg.settings) listen;
        inherit (cfg) lanInterfaces;
        cluster =
          if cfg.cluster.enable
          then {inherit (cfg.cluster) bind interface;}
          else null;
      };
    })

    (mkIf cfg.takeout.usb.enable {
      # Only a USB block device carrying the label: a disk with the same
      # label on another bus is never written.
      services.udev.extraRules = ''
        ACTION=="add", SUBSYSTEM=="block", ENV{ID_BUS}=="usb", ENV{ID_FS_LABEL}=="${cfg.takeout.usb.label}", TAG+="systemd", ENV{SYSTEMD_WANTS}+="hitvault-takeout-usb@%k.service"
      '';
      systemd.services."hitvault-takeout-usb@" = {
        description = "hitvault Takeout onto the USB stick /dev/%I";
        after = ["hitvault.service"];
        environment = {
          TAKEOUT_FORMAT = cfg.takeout.usb.format;
          TAKEOUT_LABEL = cfg.takeout.usb.label;
          HITVAULT_CONFIG = "${configFile}";
          inherit (service.environment) HITVAULT_DATA_DIR;
        };
        serviceConfig = {
          Type = "oneshot";
          ExecStart = "${lib.getExe takeoutScript} /dev/%I";
          # Root for mount(2) and to reach the DynamicUser's data dir and
          # control socket; nothing else.
          CapabilityBoundingSet = ["CAP_SYS_ADMIN" "CAP_DAC_OVERRIDE" "CAP_DAC_READ_SEARCH"];
          NoNewPrivileges = true;
          RuntimeDirectory = "hitvault-takeout-usb/%i";
          RuntimeDirectoryMode = "0700";
          PrivateMounts = true;
          PrivateNetwork = true;
          RestrictAddressFamilies = ["AF_UNIX"];
          ProtectSystem = "strict";
          # With the daemon stopped, the CLI takes the data dir's lock itself.
          ReadWritePaths = ["-/var/lib/private/hitvault"];
          ProtectHome = true;
          PrivateTmp = true;
          DevicePolicy = "closed";
          DeviceAllow = ["block-sd rw"];
          ProtectKernelTunables = true;
          ProtectControlGroups = true;
          ProtectClock = true;
          ProtectHostname = true;
          RestrictNamespaces = true;
          RestrictRealtime = true;
          RestrictSUIDSGID = true;
          LockPersonality = true;
          SystemCallArchitectures = "native";
          SystemCallFilter = ["@system-service" "@mount"];
          UMask = "0077";
        };
      };
    })
  ]);
}
