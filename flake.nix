# hitvault as a Nix flake: the daemon, the NixOS module, the appliance and
# its image, the VM test, a development shell.
#
# flake.lock is not in the repository yet: it pins nixpkgs, and is made on
# a host with Nix and network by `nix flake lock` (README.md, "Nix"). The
# builtins-only parts (nix/settings.nix, nix/service.nix, the unit
# rendering) are evaluated by the CI without nixpkgs (tests/tests/nix.rs).
{
  description = "hitvault: sovereign web analytics, one hardened daemon, and its NixOS appliance";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs = {
    self,
    nixpkgs,
  }: let
    inherit (nixpkgs) lib;
    systems = ["x86_64-linux" "aarch64-linux"];
    forSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
  in {
    packages = forSystems (pkgs:
      {
        default = pkgs.callPackage ./nix/package.nix {};
      }
      // lib.optionalAttrs (pkgs.stdenv.hostPlatform.system == "x86_64-linux") {
        # The appliance's disk image: nix build .#image
        image = self.nixosConfigurations.appliance.config.system.build.finalImage;
      });

    nixosModules.default = ./nix/module.nix;

    nixosConfigurations.appliance = lib.nixosSystem {
      modules = [
        ./nix/appliance.nix
        {services.hitvault.package = self.packages.x86_64-linux.default;}
      ];
    };

    checks = forSystems (pkgs: {
      package = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
      one-node = pkgs.testers.runNixOSTest (import ./nix/tests/one-node.nix {
        module = self.nixosModules.default;
        package = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
      });
    });

    devShells = forSystems (pkgs: {
      default = pkgs.mkShell {
        inputsFrom = [self.packages.${pkgs.stdenv.hostPlatform.system}.default];
        packages = [
          pkgs.clippy
          pkgs.rustfmt
          pkgs.alejandra
          pkgs.deadnix
          pkgs.systemd
        ];
      };
    });

    formatter = forSystems (pkgs: pkgs.alejandra);
  };
}
