# The hitvault service as NixOS's systemd.services.hitvault takes it, from
# nix/hardening.nix and nothing else: nix/module.nix sets it as is, and
# nix/render-unit.nix renders it (with /usr/bin/hitvault) into
# systemd/hitvault.service. Builtins only.
#
#   execStart       the command line (the module adds --config FILE)
#   loadCredential  "name:path" entries: files the service reads from
#                   /run/credentials/hitvault.service/name (a DynamicUser
#                   cannot read a root-owned key file in place)
#
# tests/tests/nix.rs renders this with the module's arguments and checks
# that it differs from the committed unit by those two things only.
{
  execStart,
  loadCredential ? [],
}: let
  h = import ./hardening.nix;
in {
  inherit (h) description after wantedBy environment;
  serviceConfig =
    h.serviceConfig
    // {ExecStart = execStart;}
    // (
      if loadCredential == []
      then {}
      else {LoadCredential = loadCredential;}
    );
}
