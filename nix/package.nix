# The hitvault daemon (flake output packages.<system>.default, and the
# module's default services.hitvault.package): the workspace's `hitvault`
# binary built from Cargo.lock, every crate vendored by Nix, DuckDB's C++
# compiled from the crate's bundled sources (no prebuilt library, nothing
# downloaded by a build script).
#
# Reproducible: the source is the files nix/sources.nix lists (a change to
# docs/ or tests/tests/ does not rebuild it), Cargo.lock pins every crate, and the
# build has no network. Check it on a Nix host with
#   nix build .#default && nix build .#default --rebuild
# (--rebuild builds again and fails if the output differs).
{
  lib,
  rustPlatform,
}: let
  root = ../.;
  cargo = lib.importTOML ../Cargo.toml;
in
  rustPlatform.buildRustPackage {
    pname = "hitvault";
    inherit (cargo.workspace.package) version;

    # nix/sources.nix: what the crates read, and nothing else.
    src = lib.fileset.toSource {
      inherit root;
      fileset = lib.fileset.unions (map (path: root + "/${path}") (import ./sources.nix));
    };
    cargoLock.lockFile = ../Cargo.lock;

    cargoBuildFlags = ["--package" "hitvault"];
    # The tests start the real binary as root, under seccomp, with Chromium
    # and systemd: tests/run on a Debian host runs them; the NixOS VM test
    # (flake checks) runs the service.
    doCheck = false;

    meta = {
      description = "Sovereign web analytics: one daemon, durable ingest, DuckDB, no outbound connections";
      license = lib.licenses.agpl3Only;
      mainProgram = "hitvault";
      platforms = lib.platforms.linux;
    };
  }
