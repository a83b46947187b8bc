# What nix/package.nix builds the daemon from, relative to the repository's
# root: the workspace's manifests and lock file, the crates, the members'
# manifests and libraries Cargo needs to load the workspace, and the files
# the crates compile in from outside daemon/ (the seccomp policy). Anything
# else (docs, tests' data, the image) changes without rebuilding it.
#
# Builtins only: tests/tests/nix.rs checks that every file a crate compiles
# in (include_str!, include_bytes!) and every workspace member lies here.
[
  "Cargo.toml"
  "Cargo.lock"
  "daemon"
  "tests/Cargo.toml"
  "tests/src"
  "policy/seccomp.json"
]
