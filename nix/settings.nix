# The daemon's settings as Nix sees them: builtins only (no nixpkgs), so the
# CI evaluates this file for real (tests/tests/nix.rs) and nix/module.nix
# builds on it.
#
#   defaults   the daemon's own default of every file key
#              (docs/reference/configuration.md); null where the daemon
#              leaves it unset or decides at start
#   pending    keys the module already writes for settings the daemon does
#              not read yet, with the issue that adds them
#   options    the defaults of the module's typed options that are settings
#   configOf   the settings the module writes: `settings` with the typed
#              options merged in, null values and empty tables left out
#   toTOML     renders that attribute set as the daemon's TOML file
#   portOf     the port of a `host:port` address
#   firewall   what the module sets as networking.firewall: the dashboard's
#              port on the LAN interfaces, the cluster's only on its own
#   credential where a file handed over with LoadCredential= is read
#   takeout    the USB Takeout's label, formats (those of `hitvault
#              takeout --format`) and default format
#
# The tests check: the keys of `defaults` are exactly the keys the binary
# accepts; `defaults` rendered and loaded by `hitvault check-config` gives
# what an empty file gives; every `pending` key is still refused; rendered
# settings of every shape load and read back as written; the typed options
# merge as described; the firewall opens what it says; the Takeout formats
# and default are those of the binary.
let
  inherit
    (builtins)
    attrNames
    concatLists
    concatStringsSep
    elem
    filter
    fromJSON
    genList
    head
    isAttrs
    isBool
    isFloat
    isInt
    isList
    isPath
    isString
    listToAttrs
    map
    match
    replaceStrings
    toJSON
    toString
    typeOf
    ;

  # A string as a TOML basic string: backslash, quote and every control
  # character escaped (tab, newline and return by name, the others as
  # \uXXXX; Nix strings cannot hold NUL, and Nix has no escape for the
  # others, so fromJSON makes them).
  hex = n: let
    digits = "0123456789ABCDEF";
  in
    builtins.substring (n / 16) 1 digits + builtins.substring (n - n / 16 * 16) 1 digits;
  controls = filter (n: n != 9 && n != 10 && n != 13) (genList (n: n + 1) 31 ++ [127]);
  from = ["\\" "\"" "\t" "\n" "\r"] ++ map (n: fromJSON "\"\\u00${hex n}\"") controls;
  to = ["\\\\" "\\\"" "\\t" "\\n" "\\r"] ++ map (n: "\\u00${hex n}") controls;
  string = s: "\"${replaceStrings from to s}\"";

  # A key: bare when TOML allows it, quoted otherwise ("shop.example.com").
  key = k:
    if match "[A-Za-z0-9_-]+" k != null
    then k
    else string k;

  # A value on the right of `=`: tables inside lists are inline tables.
  value = v:
    if isBool v
    then
      (
        if v
        then "true"
        else "false"
      )
    else if isInt v
    then toString v
    else if isFloat v
    then toJSON v
    else if isString v
    then string v
    else if isPath v
    then string "${v}"
    else if isList v
    then "[" + concatStringsSep ", " (map value v) + "]"
    else if isAttrs v
    then "{ " + concatStringsSep ", " (map (n: "${key n} = ${value v.${n}}") (attrNames v)) + " }"
    else throw "hitvault settings: a ${typeOf v} cannot be written as TOML";

  # Null values and tables left empty by them are dropped, at every depth
  # of tables (a list keeps what it holds).
  prune = attrs: let
    kept = filter (n: attrs.${n} != null) (attrNames attrs);
    pruned =
      map (n: {
        name = n;
        value =
          if isAttrs attrs.${n}
          then prune attrs.${n}
          else attrs.${n};
      })
      kept;
  in
    listToAttrs (filter (p: p.value != {}) pruned);

  # One table: its own scalars and lists under its header (none for the
  # root, none for a table holding only tables), then its tables.
  section = path: attrs: let
    names = attrNames attrs;
    plain = filter (n: !isAttrs attrs.${n}) names;
    tables = filter (n: isAttrs attrs.${n}) names;
    header =
      if path == [] || plain == []
      then []
      else ["[${concatStringsSep "." (map key path)}]"];
    body = map (n: "${key n} = ${value attrs.${n}}") plain;
    own =
      if header ++ body == []
      then []
      else [(concatStringsSep "\n" (header ++ body) + "\n")];
  in
    own ++ concatLists (map (n: section (path ++ [n]) attrs.${n}) tables);
in rec {
  defaults = {
    # "./data", and /var/lib/hitvault when started as root: decided at
    # start (the units set it, see nix/hardening.nix).
    data_dir = null;
    listen = "127.0.0.1:8080";
    sites = [];
    trusted_proxies = [];
    excluded_addresses = [];
    ingest_token_file = null;
    geoip_database = null;
    referrer_spam = [];
    log_level = "info";
    log_format = "text";
    queue = {
      max_bytes = "1GiB";
      segment_bytes = "64MiB";
    };
    store = {
      memory_limit = "1GB";
      threads = 2;
    };
    batch = {
      max_rows = 10000;
      max_wait_ms = 200;
    };
    retention = {
      days = 0;
      sites = {};
      archive_dir = null;
    };
    user = null;
    seccomp = "enforce";
    landlock = "best-effort";
    hostnames = [];
    allow_plain_http = false;
    tls = {
      mode = null;
      cert_file = null;
      key_file = null;
    };
    accounts = {
      require_second_factor = false;
      session_idle_minutes = 60;
      session_lifetime_hours = 12;
    };
    cluster = {
      enable = false;
      node_id = null;
      bind = null;
      peers = {};
      key_file = null;
      ack = "majority";
      init = false;
      snapshot_every = 20000;
    };
  };

  pending = {};

  options = {
    hostnames = [];
    tls = {
      mode = null;
      cert_file = null;
      key_file = null;
    };
    allow_plain_http = null;
    cluster = {
      enable = false;
      node_id = null;
      bind = null;
      peers = {};
      key_file = null;
      ack = "majority";
      init = null;
      snapshot_every = null;
    };
  };

  takeout.usb = {
    label = "HV-TAKEOUT";
    formats = ["parquet" "csv" "json" "ndjson"];
    format = "parquet";
  };

  credential = name: "/run/credentials/hitvault.service/${name}";

  configOf = {
    settings ? {},
    hostnames ? options.hostnames,
    tls ? options.tls,
    allow_plain_http ? options.allow_plain_http,
    cluster ? options.cluster,
  }:
  # A typed option left at null (or `hostnames` at []) leaves the key
  # as `settings` has it.
    settings
    // prune (
      {
        inherit allow_plain_http;
        tls = (settings.tls or {}) // prune tls;
      }
      // (
        if hostnames == []
        then {}
        else {inherit hostnames;}
      )
      // (
        if cluster.enable
        then {cluster = (settings.cluster or {}) // prune cluster;}
        else {}
      )
    );

  toTOML = attrs: concatStringsSep "\n" (section [] (prune attrs));

  portOf = address: let
    m = match ".*:([1-9][0-9]*)" address;
  in
    if m == null
    then throw "hitvault settings: ${address} is not host:port"
    else fromJSON (head m);

  # The dashboard's port (TCP) on every LAN interface (all interfaces when
  # none is named); with the cluster, its port (TCP: the cluster's RPC) on
  # the cluster interface only, which must not be a LAN one.
  firewall = {
    listen,
    lanInterfaces ? [],
    cluster ? null,
  }: let
    dashboard = {allowedTCPPorts = [(portOf listen)];};
    lan =
      if lanInterfaces == []
      then dashboard
      else {
        interfaces = listToAttrs (map (name: {
            inherit name;
            value = dashboard;
          })
          lanInterfaces);
      };
    port = portOf cluster.bind;
  in
    if cluster == null
    then lan
    else if cluster.interface == null
    then throw "hitvault: name the cluster interface (services.hitvault.cluster.interface) to open the cluster port on"
    else if elem cluster.interface lanInterfaces
    then throw "hitvault: ${cluster.interface} is both a LAN interface and the cluster interface"
    else
      lan
      // {
        interfaces =
          (lan.interfaces or {})
          // {
            ${cluster.interface} = {
              allowedTCPPorts = [port];
            };
          };
      };
}
