# A systemd unit file, as text, of the service nix/service.nix describes (the
# hardening data of nix/hardening.nix with a given command). Builtins only.
# nix/render-unit.nix renders the shipped unit with it; tests/tests/nix.rs
# renders the NixOS module's service with it:
#
#   nix-instantiate --eval --strict nix/unit-file.nix \
#     --argstr execStart '/nix/store/…/bin/hitvault --config … serve'
#
# The [Service] section starts with ExecStart, then the environment, then
# every other setting in name order, one line per list element.
{
  execStart,
  loadCredential ? [],
}: let
  s = import ./service.nix {inherit execStart loadCredential;};
  inherit (builtins) attrNames concatLists concatStringsSep filter isBool isInt isList map toString;

  value = v:
    if isBool v
    then
      (
        if v
        then "yes"
        else "no"
      )
    else if isInt v
    then toString v
    else v;
  lines = name: v:
    if isList v
    then map (x: "${name}=${value x}") v
    else ["${name}=${value v}"];
  settings = attrs: concatLists (map (name: lines name attrs.${name}) (filter (n: n != "ExecStart") (attrNames attrs)));
  section = title: body: concatStringsSep "\n" (["[${title}]"] ++ body) + "\n";

  environment = map (name: "Environment=${name}=${s.environment.${name}}") (attrNames s.environment);
in
  concatStringsSep "\n" [
    ''
      # hitvault.service: rendered from nix/hardening.nix by nix/render-unit.nix.
      # Do not edit here: change nix/hardening.nix and render again (see
      # nix/render-unit.nix); tests/tests/systemd_unit.rs checks the two agree.
    ''
    (section "Unit" (["Description=${s.description}"] ++ lines "After" s.after))
    (section "Service" (lines "ExecStart" s.serviceConfig.ExecStart ++ environment ++ settings s.serviceConfig))
    (section "Install" (lines "WantedBy" s.wantedBy))
  ]
