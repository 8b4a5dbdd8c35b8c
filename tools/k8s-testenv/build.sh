#!/usr/bin/env bash
# Builds the local Kubernetes test control plane and the operators it runs from Go modules, once:
#   kube-apiserver, kube-controller-manager, kube-scheduler  (k8s.io/kubernetes, ./go.mod)
#   etcd                                                      (go.etcd.io/etcd/server/v3, ./go.mod)
#   kwok                                                      (sigs.k8s.io/kwok, ./kwok/go.mod)
#   training-operator  (github.com/kubeflow/training-operator, ./training-operator/go.mod)
#   mpi-operator       (github.com/kubeflow/mpi-operator, ./mpi-operator/go.mod)
#   kueue              (sigs.k8s.io/kueue, ./kueue/go.mod)
# into <repo>/.cache/k8s-testenv/<versions>/bin/ and prints that directory on stdout; and
#   crds: the Kubeflow and Kueue CRDs, taken from the pinned modules (versions.env) as the Go
#         module proxy serves them, into <versions>/crds/{kubeflow,kueue}/ beside bin/.
# Idempotent: exits at once when the binaries are there and were built from the same inputs.
#
# Env: K8S_TESTENV_CACHE  the cache root (default <repo>/.cache/k8s-testenv)
#      K8S_TESTENV_ONLY   space-separated subset to build, e.g. "kube-apiserver etcd"
#      GOCACHE/GOMODCACHE/GOPROXY/GOFLAGS as usual (GOFLAGS gets -p=2 unless it has -p).
set -euo pipefail
# The whole script is one function, read by bash before it runs, so that editing this file
# while a (long) build is running can't change what that build does.
main() {

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

die() { echo "k8s-testenv build: $*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "go not found on PATH (Go >= 1.26 is needed)"

# The pins in versions.env must be the ones in the go.mod files.
requires() { # <go.mod> <module> <version>
  grep -qE "^[[:space:]]*(require[[:space:]]+)?${2//./\\.}[[:space:]]+${3//./\\.}([[:space:]]|\$)" "$1"
}
requires "$here/go.mod" k8s.io/kubernetes "$KUBERNETES_VERSION" \
  || die "go.mod does not require k8s.io/kubernetes ${KUBERNETES_VERSION}"
requires "$here/go.mod" go.etcd.io/etcd/server/v3 "$ETCD_VERSION" \
  || die "go.mod does not require go.etcd.io/etcd/server/v3 ${ETCD_VERSION}"
requires "$here/kwok/go.mod" sigs.k8s.io/kwok "$KWOK_VERSION" \
  || die "kwok/go.mod does not require sigs.k8s.io/kwok ${KWOK_VERSION}"
requires "$here/training-operator/go.mod" github.com/kubeflow/training-operator "$TRAINING_OPERATOR_VERSION" \
  || die "training-operator/go.mod does not require github.com/kubeflow/training-operator ${TRAINING_OPERATOR_VERSION}"
requires "$here/mpi-operator/go.mod" github.com/kubeflow/mpi-operator "$MPI_OPERATOR_VERSION" \
  || die "mpi-operator/go.mod does not require github.com/kubeflow/mpi-operator ${MPI_OPERATOR_VERSION}"
requires "$here/kueue/go.mod" sigs.k8s.io/kueue "$KUEUE_VERSION" \
  || die "kueue/go.mod does not require sigs.k8s.io/kueue ${KUEUE_VERSION}"
minor_patch="${KUBERNETES_VERSION#v1.}"
bad="$(grep -E '^[[:space:]]*k8s\.io/[a-z0-9-]+ => ' "$here/go.mod" | grep -v " v0\.${minor_patch}\$" || true)"
[ -z "$bad" ] || die "staging replaces not pinned to v0.${minor_patch}: $bad"

all=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok training-operator mpi-operator kueue crds)
want=(${K8S_TESTENV_ONLY:-${all[@]}})

cache_root="${K8S_TESTENV_CACHE:-$repo/.cache/k8s-testenv}"
dir="$cache_root/kubernetes-${KUBERNETES_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}"
bin="$dir/bin"
mkdir -p "$bin"

kube_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ldflags+=" -X $pkg.gitVersion=${KUBERNETES_VERSION}"
  kube_ldflags+=" -X $pkg.gitMajor=1 -X $pkg.gitMinor=${minor_patch%%.*}"
  kube_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

# What the binaries depend on; bump recipe= when changing how they are built.
recipe=1
go_version="$(go env GOVERSION)"
inputs_hash="$( { echo "recipe=$recipe $go_version CGO_ENABLED=0 -trimpath $kube_ldflags"
  grep -E '^(KUBERNETES|ETCD|KWOK)_VERSION=' "$here/versions.env"
  cat "$here/go.mod" "$here/go.sum" "$here/kwok/go.mod" "$here/kwok/go.sum"
} | sha256sum | cut -c1-16)"
# The operators each have a module of their own, and a stamp of their own inputs, so that moving
# one of them rebuilds that one alone (and never the control plane).
operator_ldflags() { # <name>
  case "$1" in
    training-operator) echo "-s -w" ;;  # it has no version variables to stamp
    mpi-operator) echo "-s -w -X github.com/kubeflow/mpi-operator/pkg/version.Version=${MPI_OPERATOR_VERSION}" ;;
    kueue) echo "-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=${KUEUE_VERSION}" ;;
  esac
}
operator_package() { # <name>
  case "$1" in
    training-operator) echo github.com/kubeflow/training-operator/cmd/training-operator.v1 ;;
    mpi-operator) echo github.com/kubeflow/mpi-operator/cmd/mpi-operator ;;
    kueue) echo sigs.k8s.io/kueue/cmd/kueue ;;
  esac
}
operator_hash() { # <name>
  local pin
  case "$1" in
    training-operator) pin=TRAINING_OPERATOR_VERSION ;;
    mpi-operator) pin=MPI_OPERATOR_VERSION ;;
    kueue) pin=KUEUE_VERSION ;;
  esac
  { echo "operator recipe=1 $go_version CGO_ENABLED=0 -trimpath $(operator_ldflags "$1") $(operator_package "$1")"
    grep -E "^${pin}=" "$here/versions.env"
    cat "$here/$1/go.mod" "$here/$1/go.sum"
  } | sha256sum | cut -c1-16
}
stamp_of() { # <name>: the hash of the inputs it is built from
  case "$1" in
    training-operator|mpi-operator|kueue) operator_hash "$1" ;;
    *) echo "$inputs_hash" ;;
  esac
}
stages="$dir/kwok-stages.yaml"
crds="$dir/crds"
crds_hash="$( { echo "crds recipe=1"; grep -E '^(TRAINING_OPERATOR|MPI_OPERATOR|KUEUE)_VERSION=' "$here/versions.env"
} | sha256sum | cut -c1-16)"

built() { # <name>: is it there, from these inputs?
  if [ "$1" = crds ]; then
    [ "$(cat "$crds/.stamp" 2>/dev/null)" = "$crds_hash" ]
  else
    [ -x "$bin/$1" ] && [ "$(cat "$bin/.$1.stamp" 2>/dev/null)" = "$(stamp_of "$1")" ] \
      && { [ "$1" != kwok ] || [ -s "$stages" ]; }
  fi
}

up_to_date() {
  local name
  for name in "${want[@]}"; do built "$name" || return 1; done
}

if up_to_date; then echo "$bin"; exit 0; fi

# One build at a time (pytest-xdist workers, parallel shells): the others wait, then find it done.
exec 9>"$dir/.build.lock"
flock 9
if up_to_date; then echo "$bin"; exit 0; fi

export CGO_ENABLED=0
case " ${GOFLAGS:-} " in *" -p="*) ;; *) export GOFLAGS="${GOFLAGS:-} -p=2" ;; esac
# No toolchain switching: build with the Go on PATH (go.mod says go 1.26.0).
export GOTOOLCHAIN=local

gobuild() { # <module dir> <output file> <ldflags> <package>
  local mod="$1" out="$2" ldflags="$3" pkg="$4" start
  start=$(date +%s)
  echo "k8s-testenv build: $(basename "$out") <- $pkg" >&2
  (cd "$mod" && nice -n 10 go build -trimpath -ldflags="$ldflags" -o "$out.tmp" "$pkg") >&2
  mv -f "$out.tmp" "$out"
  stamp_of "$(basename "$out")" > "$bin/.$(basename "$out").stamp"
  echo "k8s-testenv build: $(basename "$out") done in $(( $(date +%s) - start ))s" >&2
}

# kwok needs Stage objects to move nodes and pods along; take the "fast" ones that kwokctl uses
# (node-initialize, node-heartbeat-with-lease, pod-ready, pod-complete, pod-delete) from the
# kwok module itself, so that they match the binary.
write_kwok_stages() {
  local kdir f
  kdir="$(cd "$here/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
  {
    echo "# Generated by tools/k8s-testenv/build.sh from sigs.k8s.io/kwok@${KWOK_VERSION}/kustomize/stage"
    for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
             pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
      echo "---"
      cat "$kdir/kustomize/stage/$f"
    done
  } > "$stages.tmp"
  mv -f "$stages.tmp" "$stages"
}

# The directory of <module>@<version> in the module cache, downloaded through the proxy if need
# be. The proxy serves exact versions even where it refuses to list a module's versions.
module_dir() { # <module> <version>
  local tmp out
  tmp="$(mktemp -d)"
  out="$(cd "$tmp" && GOFLAGS=-mod=mod go mod download -json "$1@$2")" || { rm -rf "$tmp"; die "go mod download $1@$2 failed"; }
  rm -rf "$tmp"
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$out"
}

# Only the CRDs: kubeflow/ (PyTorchJob and TFJob from the training operator, MPIJob v2beta1 from
# the MPI operator, whose file also holds its Deployment and RBAC: readers take the
# CustomResourceDefinition documents) and kueue/ (all of Kueue's).
write_crds() {
  local training mpi kueue
  training="$(module_dir github.com/kubeflow/training-operator "$TRAINING_OPERATOR_VERSION")"
  mpi="$(module_dir github.com/kubeflow/mpi-operator "$MPI_OPERATOR_VERSION")"
  kueue="$(module_dir sigs.k8s.io/kueue "$KUEUE_VERSION")"
  rm -rf "$crds.tmp"
  mkdir -p "$crds.tmp/kubeflow" "$crds.tmp/kueue"
  install -m 0644 "$training/manifests/base/crds/kubeflow.org_pytorchjobs.yaml" \
    "$training/manifests/base/crds/kubeflow.org_tfjobs.yaml" "$crds.tmp/kubeflow/"
  install -m 0644 "$mpi/deploy/v2beta1/mpi-operator.yaml" "$crds.tmp/kubeflow/"
  install -m 0644 "$kueue"/config/components/crd/bases/*.yaml "$crds.tmp/kueue/"
  echo "$crds_hash" > "$crds.tmp/.stamp"
  rm -rf "$crds"
  mv "$crds.tmp" "$crds"
  echo "k8s-testenv build: crds <- training-operator $TRAINING_OPERATOR_VERSION, mpi-operator $MPI_OPERATOR_VERSION, kueue $KUEUE_VERSION" >&2
}

t0=$(date +%s)
for name in "${want[@]}"; do
  if built "$name"; then continue; fi
  if [ "$name" = kwok ] && [ -x "$bin/kwok" ] && [ "$(cat "$bin/.kwok.stamp" 2>/dev/null)" = "$inputs_hash" ]; then
    write_kwok_stages
    continue
  fi
  case "$name" in
    kube-apiserver|kube-controller-manager|kube-scheduler)
      gobuild "$here" "$bin/$name" "$kube_ldflags" "k8s.io/kubernetes/cmd/$name" ;;
    etcd)
      gobuild "$here" "$bin/etcd" "-s -w" "go.etcd.io/etcd/server/v3" ;;
    kwok)
      gobuild "$here/kwok" "$bin/kwok" "-s -w" "sigs.k8s.io/kwok/cmd/kwok"
      write_kwok_stages ;;
    training-operator|mpi-operator|kueue)
      gobuild "$here/$name" "$bin/$name" "$(operator_ldflags "$name")" "$(operator_package "$name")" ;;
    crds)
      write_crds ;;
    *) die "unknown binary '$name' (known: ${all[*]})" ;;
  esac
done
echo "k8s-testenv build: all done in $(( $(date +%s) - t0 ))s" >&2
echo "$bin"
}

main "$@"
