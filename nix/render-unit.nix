# Renders systemd/hitvault.service from nix/hardening.nix. Builtins only.
#
#   nix --extra-experimental-features nix-command eval --raw \
#     --option substituters '' -f nix/render-unit.nix > systemd/hitvault.service
#
# The [Service] section starts with ExecStart, then every setting of
# hardening.nix in name order, one line per list element.
let
  h = import ./hardening.nix;
  inherit (builtins) attrNames concatLists concatStringsSep isBool isInt isList map toString;

  value = v:
    if isBool v then (if v then "yes" else "no")
    else if isInt v then toString v
    else v;
  lines = name: v: if isList v then map (x: "${name}=${value x}") v else [ "${name}=${value v}" ];
  settings = attrs: concatLists (map (name: lines name attrs.${name}) (attrNames attrs));
  section = title: body: concatStringsSep "\n" ([ "[${title}]" ] ++ body) + "\n";

  environment = map (name: "Environment=${name}=${h.environment.${name}}") (attrNames h.environment);
in
concatStringsSep "\n" [
  ''
    # hitvault.service: rendered from nix/hardening.nix by nix/render-unit.nix.
    # Do not edit here: change nix/hardening.nix and render again (see
    # nix/render-unit.nix); tests/tests/systemd_unit.rs checks the two agree.
  ''
  (section "Unit" ([ "Description=${h.description}" ] ++ lines "After" h.after))
  (section "Service" ([ "ExecStart=/usr/bin/hitvault serve" ] ++ environment ++ settings h.serviceConfig))
  (section "Install" (lines "WantedBy" h.wantedBy))
]
