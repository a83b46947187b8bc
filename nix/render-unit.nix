# Renders systemd/hitvault.service: the service of nix/service.nix (the
# hardening data of nix/hardening.nix) with /usr/bin/hitvault as the
# command, as a unit file (nix/unit-file.nix). Builtins only.
#
#   nix --extra-experimental-features nix-command eval --raw \
#     --option substituters '' -f nix/render-unit.nix > systemd/hitvault.service
import ./unit-file.nix {execStart = "/usr/bin/hitvault serve";}
