#!/usr/bin/env bash
# Installs what building, running and testing Drover needs and this machine lacks:
# a C/C++ toolchain and libclang (RocksDB and its Rust bindings are built from source),
# Prometheus (promtool checks the metrics exposition; the server is used by one test), and a
# static busybox (the container tests' image is made from it with `docker import`), and the
# cargo tools the test command runs (cargo-deny, cargo-fuzz).
# protoc needs nothing: the build uses a vendored one. Safe to run again: it installs only
# what is missing.
set -euo pipefail

missing=()
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
command -v c++ >/dev/null 2>&1 || missing+=(g++)
# bindgen (rocksdb's bindings) loads libclang at build time.
# Match libclang itself (libclang.so, libclang-14.so.1), not libclang-cpp, which some images
# carry without it.
if ! ls /usr/lib/llvm-*/lib/ 2>/dev/null | grep -Eq '^libclang(-[0-9.]+)?\.so' \
  && ! ldconfig -p 2>/dev/null | grep -Eq 'libclang(-[0-9.]+)?\.so'; then
  missing+=(libclang-dev)
fi
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v curl >/dev/null 2>&1 || missing+=(curl)
# Container tests build their image from a static busybox (no registry is reachable).
if ! ldd /bin/busybox 2>&1 | grep -q "not a dynamic"; then
  missing+=(busybox-static)
fi

if [ ${#missing[@]} -gt 0 ]; then
  # shellcheck disable=SC2207
  missing=($(printf '%s\n' "${missing[@]}" | sort -u))
  echo "setup: installing ${missing[*]}" >&2
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: apt-get not found; install these yourself: ${missing[*]}" >&2
    exit 1
  fi
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: installing the Rust toolchain with rustup" >&2
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component rustfmt,clippy
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$component"
  fi
done

# Cargo tools the test command runs: cargo-deny (licences, duplicate versions, sources) and
# cargo-fuzz (the fuzz smoke run). Pinned; built once into ~/.cargo/bin.
if ! cargo deny --version 2>/dev/null | grep -q '^cargo-deny 0.20.2$'; then
  echo "setup: installing cargo-deny" >&2
  cargo install --locked --quiet cargo-deny@0.20.2
fi
if ! cargo fuzz --version 2>/dev/null | grep -q '0.13.2'; then
  echo "setup: installing cargo-fuzz" >&2
  cargo install --locked --quiet cargo-fuzz@0.13.2
fi

# The real Marathon client the tests drive (marathon-python from PyPI, unchanged), in a
# virtualenv outside the work tree. Pinned versions: the test proves compatibility with these.
venv="${DROVER_VENV:-$HOME/.cache/drover-venv}"
if ! "$venv/bin/python" -c 'import marathon, requests_toolbelt' >/dev/null 2>&1; then
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -m venv --help >/dev/null 2>&1; then
    echo "setup: installing python3 and python3-venv" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
  fi
  echo "setup: making the Marathon client's virtualenv in $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'marathon==0.13.0' 'requests-toolbelt==1.0.0'
fi

# The real Mesos clients the tests drive (pymesos and mesoshttp from PyPI, unchanged), in the
# same virtualenv. pymesos needs http-parser 0.9.0, whose shipped C predates Python 3.11: its
# parser.c is made again from its own parser.pyx with Cython < 3, then installed from that
# source (master/MESOS_HTTP.md, section 7). The clients' own code is not touched.
if ! "$venv/bin/python" -c 'import pymesos, mesoshttp.client, http_parser.parser' >/dev/null 2>&1; then
  echo "setup: installing pymesos and mesoshttp in $venv" >&2
  work="$(mktemp -d)"
  "$venv/bin/pip" install -q 'cython<3'
  "$venv/bin/pip" download -q --no-deps --no-binary :all: 'http-parser==0.9.0' -d "$work"
  tar xzf "$work/http-parser-0.9.0.tar.gz" -C "$work"
  "$venv/bin/cython" "$work/http-parser-0.9.0/http_parser/parser.pyx" \
    -o "$work/http-parser-0.9.0/http_parser/parser.c" 2>/dev/null
  "$venv/bin/pip" install -q "$work/http-parser-0.9.0"
  "$venv/bin/pip" install -q 'pymesos==0.3.15' 'mesoshttp==0.4.2'
  rm -rf "$work"
fi
