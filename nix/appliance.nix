# The appliance (flake outputs nixosConfigurations.appliance and, built
# from it, packages.x86_64-linux.image): NixOS with hitvault and nothing
# else, as one disk image made by systemd-repart (nixpkgs' image.repart).
#
#   ESP            systemd-boot and the UKI (kernel, initrd, command line
#                  with usrhash=: the root hash of the store's dm-verity)
#   store-verity   dm-verity hash of the store, slot A     } written at build,
#   store          /nix/store (erofs), read-only, slot A   } verified at boot
#   store-verity   slot B, labelled _empty               } filled by
#   store          slot B, labelled _empty               } systemd-sysupdate
#   var            created on first boot, erased by a factory reset
#
# / is a tmpfs: everything kept is in /var (hitvault's data in
# /var/lib/private/hitvault). An update (a USB stick labelled
# HV-UPDATE carrying a new UKI and store, with SHA256SUMS signed by the key
# of hitvault.appliance.updateKey) is written into the other slot by
# systemd-sysupdate, and the next boot runs it.
#
# Evaluated and built only on a host with Nix and nixpkgs (README.md):
#   nix build .#image
{
  config,
  lib,
  pkgs,
  modulesPath,
  ...
}: let
  inherit (config.image.repart.verityStore) partitionIds;
  inherit (config.system.image) version;
  cfg = config.hitvault.appliance;

  # The disk the appliance boots from (virtio in a VM; /dev/sda on most
  # hardware): systemd-repart grows it, systemd-sysupdate writes its slots.
  # / is a tmpfs, so sysupdate's `auto` cannot find it by itself.
  inherit (cfg) disk;

  arch = pkgs.stdenv.hostPlatform.efiArch;
  # The GPT types of the store and its verity hash (the UKI's usrhash= makes
  # the initrd find them by type and the hash's UUIDs).
  usrTypes = {
    x86_64 = {
      store = "usr-x86-64";
      verity = "usr-x86-64-verity";
    };
    arm64 = {
      store = "usr-arm64";
      verity = "usr-arm64-verity";
    };
  };
  inherit (pkgs.stdenv.hostPlatform) linuxArch;
  types = usrTypes.${linuxArch} or (throw "hitvault appliance: no usr partition type for ${linuxArch}");

  # Both slots the same size, so any version fits either.
  storeSize = "2G";
  veritySize = "128M";
  slot = type: size: {
    Type = type;
    SizeMinBytes = size;
    SizeMaxBytes = size;
  };

  # An update from a stick (nix/update-usb.sh): sysupdate writes the other
  # slot, then the appliance reboots into it.
  updateScript = pkgs.writeShellApplication {
    name = "hitvault-update-usb";
    runtimeInputs = [pkgs.util-linux pkgs.systemd];
    text = builtins.readFile ./update-usb.sh;
  };
in {
  imports = [
    (modulesPath + "/image/repart.nix")
    (modulesPath + "/profiles/minimal.nix")
    ./module.nix
  ];

  options.hitvault.appliance = {
    disk = lib.mkOption {
      type = lib.types.str;
      default = "/dev/vda";
      description = "The appliance's disk: systemd-repart adds /var to it, systemd-sysupdate writes its B slot.";
    };
    updateKey = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = null;
      description = "The OpenPGP public key (binary keyring) that signs the SHA256SUMS of an update. Unset: every update is refused (sysupdate verifies, and finds no key).";
    };
  };

  config = {
    nixpkgs.hostPlatform = lib.mkDefault "x86_64-linux";
    system.stateVersion = "25.11";
    system.image = {
      id = "hitvault";
      version = lib.mkDefault "1";
    };
    boot.uki.name = "hitvault";

    services.hitvault = {
      enable = true;
      settings.listen = "0.0.0.0:8080";
      hostnames = ["hitvault.lan"];
      openFirewall = true;
      takeout.usb.enable = true;
    };

    # The console says where the dashboard is (\4: the IPv4 address).
    services.getty.helpLine = lib.mkForce ''

      hitvault ${version}: the dashboard is at https://hitvault.lan:8080/ (this machine: \4)
    '';

    networking = {
      hostName = "hitvault";
      useNetworkd = true;
      firewall.enable = true;
    };

    # An appliance: no Nix daemon, no rebuilds on the machine, no login but
    # the console's.
    nix.enable = false;
    system.switch.enable = false;
    users.mutableUsers = false;
    # /usr is the verity-protected store: nothing may be created there.
    system.activationScripts.usrbinenv = lib.mkForce "";

    boot = {
      loader.grub.enable = false;
      initrd.systemd = {
        enable = true;
        # /var: created on the first boot, erased by a factory reset
        # (systemd.factory_reset=1 on the kernel command line, or the
        # FactoryReset EFI variable), then created again.
        repart = {
          enable = true;
          device = disk;
        };
      };
    };
    systemd.repart = {
      enable = false; # only in the initrd
      partitions."50-var" = {
        Type = "var";
        Format = "ext4";
        Label = "var";
        FactoryReset = "yes";
        SizeMinBytes = "1G";
      };
    };

    fileSystems = {
      "/" = {
        fsType = "tmpfs";
        options = ["mode=0755" "size=25%"];
      };
      # The initrd mounts the verified store at /usr (usrhash= in the UKI).
      "/nix/store" = {
        device = "/usr/nix/store";
        fsType = "none";
        options = ["bind"];
      };
      "/var" = {
        device = "/dev/disk/by-partlabel/var";
        fsType = "ext4";
        options = ["nosuid" "nodev"];
      };
    };

    image.repart = {
      name = "hitvault";
      verityStore.enable = true;
      partitions = {
        ${partitionIds.esp} = {
          contents."/EFI/BOOT/BOOT${lib.toUpper arch}.EFI".source = "${pkgs.systemd}/lib/systemd/boot/efi/systemd-boot${arch}.efi";
          repartConfig = {
            Type = "esp";
            Format = "vfat";
            # Room for two UKIs (A and B).
            SizeMinBytes = "256M";
          };
        };
        ${partitionIds.store-verity}.repartConfig =
          slot types.verity veritySize
          // {Label = "store-verity_${version}";};
        ${partitionIds.store}.repartConfig =
          slot types.store storeSize
          // {Label = "store_${version}";};
        "30-store-verity-b".repartConfig = slot types.verity veritySize // {Label = "_empty";};
        "40-store-b".repartConfig = slot types.store storeSize // {Label = "_empty";};
      };
    };

    # A/B updates: a new version's verity hash, store and UKI, from a stick.
    systemd.sysupdate = {
      enable = true;
      transfers = let
        source = pattern: {
          Type = "regular-file";
          Path = "/run/hitvault-update";
          MatchPattern = pattern;
        };
        transfer = {
          ProtectVersion = "%A";
          Verify = "yes";
        };
      in {
        "10-store-verity" = {
          Source = source "hitvault_@v.store-verity.raw";
          Target = {
            Type = "partition";
            Path = disk;
            MatchPartitionType = types.verity;
            MatchPattern = "store-verity_@v";
            ReadOnly = "yes";
          };
          Transfer = transfer;
        };
        "20-store" = {
          Source = source "hitvault_@v.store.raw";
          Target = {
            Type = "partition";
            Path = disk;
            MatchPartitionType = types.store;
            MatchPattern = "store_@v";
            ReadOnly = "yes";
          };
          Transfer = transfer;
        };
        "30-uki" = {
          Source = source "hitvault_@v.efi";
          Target = {
            Type = "regular-file";
            Path = "/EFI/Linux";
            PathRelativeTo = "boot";
            MatchPattern = "hitvault_@v.efi";
            Mode = "0444";
            InstancesMax = 2;
          };
          Transfer = transfer;
        };
      };
    };
    systemd.tmpfiles.rules = ["d /run/hitvault-update 0700 root root -"];
    environment.etc = lib.mkIf (cfg.updateKey != null) {
      "systemd/import-pubring.gpg".source = cfg.updateKey;
    };

    # An update stick: labelled HV-UPDATE, on USB.
    services.udev.extraRules = ''
      ACTION=="add", SUBSYSTEM=="block", ENV{ID_BUS}=="usb", ENV{ID_FS_LABEL}=="HV-UPDATE", TAG+="systemd", ENV{SYSTEMD_WANTS}+="hitvault-update-usb@%k.service"
    '';
    systemd.services."hitvault-update-usb@" = {
      description = "hitvault update from the USB stick /dev/%I";
      serviceConfig = {
        Type = "oneshot";
        ExecStart = "${lib.getExe updateScript} /dev/%I";
      };
    };
  };
}
