#!/usr/bin/env bash
# Installs the pinned client generators (versions.env) into a cache outside the clone, once:
#   openapi-python-client       PyPI, its own virtualenv        <dir>/openapi-python-client/
#   openapi-generator-cli       PyPI (bundles the jar), a venv  <dir>/openapi-generator/
#   typescript (tsc)            npm                             <dir>/typescript/
#   oapi-codegen + a Go module  Go module proxy                 <dir>/go/
# and prints <dir> on stdout. Idempotent: a tool whose stamp matches its inputs is skipped, so
# a second run takes a fraction of a second. With --check it installs nothing: it prints <dir>
# when everything is installed, else fails.
#
# Env: RUNPLANE_CLIENTS_CACHE  the cache root (default $HOME/.cache/runplane-clients)
#      PYTHON                  the Python for the virtualenvs (default python3, >= 3.10)
#      GOPROXY/GOFLAGS, npm's config as usual. The Go module and build caches live in the
#      cache root (go-mod/, go-build/), shared by every version.
set -euo pipefail
main() {

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

die() { echo "clients build: $*" >&2; exit 1; }
say() { echo "clients build: $*" >&2; }

python="${PYTHON:-python3}"
for tool in "$python" java npm go; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found on PATH"
done

root="${RUNPLANE_CLIENTS_CACHE:-$HOME/.cache/runplane-clients}"
dir="$root/opc-${OPENAPI_PYTHON_CLIENT_VERSION}_ogc-${OPENAPI_GENERATOR_CLI_VERSION}_ts-${TYPESCRIPT_VERSION}_oapi-${OAPI_CODEGEN_VERSION}"
export GOMODCACHE="$root/go-mod" GOCACHE="$root/go-build" GOTOOLCHAIN=local

# What each tool depends on; bump recipe= when changing how they are installed.
recipe=1
python_version="$("$python" -c 'import sys; print(sys.version.split()[0])')"
stamp_of() { # <tool> -> the hash its stamp must hold
  case "$1" in
    openapi-python-client) echo "$recipe $python_version $OPENAPI_PYTHON_CLIENT_VERSION" ;;
    openapi-generator) echo "$recipe $python_version $OPENAPI_GENERATOR_CLI_VERSION" ;;
    typescript) echo "$recipe $TYPESCRIPT_VERSION" ;;
    go) echo "$recipe $OAPI_CODEGEN_VERSION $OAPI_CODEGEN_RUNTIME_VERSION $GO_YAML_VERSION" ;;
  esac
}
tools=(openapi-python-client openapi-generator typescript go)
done_() { [ "$(cat "$dir/.$1.stamp" 2>/dev/null)" = "$(stamp_of "$1")" ]; }
up_to_date() { local t; for t in "${tools[@]}"; do done_ "$t" || return 1; done; }

if up_to_date; then echo "$dir"; exit 0; fi
[ "${1:-}" != --check ] || die "not installed under $dir (run tools/clients/build.sh)"
mkdir -p "$dir"

# One install at a time (pytest-xdist workers, parallel shells): the others wait, then find it done.
exec 9>"$dir/.build.lock"
flock 9
if up_to_date; then echo "$dir"; exit 0; fi

venv() { # <dir> <requirement>
  rm -rf "$1"
  "$python" -m venv "$1"
  "$1/bin/pip" install --quiet --disable-pip-version-check "$2" >&2
}

t0=$(date +%s)
for tool in "${tools[@]}"; do
  done_ "$tool" && continue
  start=$(date +%s)
  case "$tool" in
    openapi-python-client)
      venv "$dir/openapi-python-client" "openapi-python-client==${OPENAPI_PYTHON_CLIENT_VERSION}" ;;
    openapi-generator)
      venv "$dir/openapi-generator" "openapi-generator-cli==${OPENAPI_GENERATOR_CLI_VERSION}"
      # The first run unpacks nothing and downloads nothing: the jar is in the wheel.
      "$dir/openapi-generator/bin/openapi-generator-cli" version >&2 ;;
    typescript)
      rm -rf "$dir/typescript"
      mkdir -p "$dir/typescript"
      (cd "$dir/typescript" && echo '{"private": true}' > package.json \
        && npm install --no-audit --no-fund --silent "typescript@${TYPESCRIPT_VERSION}") >&2
      "$dir/typescript/node_modules/.bin/tsc" --version >&2 ;;
    go)
      rm -rf "$dir/go"
      mkdir -p "$dir/go/bin" "$dir/go/module"
      GOBIN="$dir/go/bin" go install \
        "github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen@${OAPI_CODEGEN_VERSION}" >&2
      # The module a generated client builds in: go.mod and go.sum with the runtime, its
      # dependencies downloaded into GOMODCACHE and compiled into GOCACHE.
      (cd "$dir/go/module" \
        && go mod init runplane.test/client >&2 2>/dev/null \
        && go get "github.com/oapi-codegen/runtime@${OAPI_CODEGEN_RUNTIME_VERSION}" \
                  "go.yaml.in/yaml/v3@${GO_YAML_VERSION}" >&2 \
        && go build github.com/oapi-codegen/runtime/... go.yaml.in/yaml/v3 >&2) ;;
  esac
  stamp_of "$tool" > "$dir/.$tool.stamp"
  say "$tool done in $(( $(date +%s) - start ))s"
done
say "all done in $(( $(date +%s) - t0 ))s"
echo "$dir"
}

main "$@"
