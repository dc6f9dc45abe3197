#!/usr/bin/env bash
# Build a real kube-apiserver from Go modules (for the Kubernetes store tests).
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces the staging modules
# (k8s.io/api, k8s.io/apiserver, ...) with ./staging/... paths that are not in the module zip.
# So this creates a wrapper module that requires k8s.io/kubernetes and replaces every staging
# module with its published tag (v0.X.Y for Kubernetes v1.X.Y), then builds the command.
#
#   scripts/build-kube-apiserver.sh          # prints the binary's path (builds it if missing)
#
# Output: $OPENSERGO_KUBE_DIR (default ~/.cache/opensergo/kube-apiserver/<version>)/kube-apiserver.
# About 4-5 minutes on 2 cores the first time (progress on stderr); instant afterwards.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.34.1}"
STAGING_VERSION="v0.${K8S_VERSION#v1.}"   # v1.34.1 -> v0.34.1
DIR="${OPENSERGO_KUBE_DIR:-$HOME/.cache/opensergo/kube-apiserver/$K8S_VERSION}"
OUT="$DIR/kube-apiserver"
WRAP="$DIR/wrapper"

if [ -x "$OUT" ]; then
  echo "$OUT"
  exit 0
fi

export PATH="$PATH:/usr/local/go/bin"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
log() { printf '[build-kube-apiserver %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
command -v go >/dev/null || { log "go is not installed"; exit 1; }

log "building kube-apiserver $K8S_VERSION into $DIR ($(go version))"
mkdir -p "$WRAP"
KDIR="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
mapfile -t STAGING < <(awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print $1}' "$KDIR/go.mod")
[ "${#STAGING[@]}" -gt 0 ] || { log "no staging replaces in $KDIR/go.mod"; exit 1; }
GO_LINE="$(awk '$1 == "go" {print $2; exit}' "$KDIR/go.mod")"
GODEBUG_LINE="$(awk '$1 == "godebug" {print; exit}' "$KDIR/go.mod")"
{
  echo "module local.invalid/kube-apiserver-wrapper"
  echo
  echo "go $GO_LINE"
  [ -n "$GODEBUG_LINE" ] && { echo; echo "$GODEBUG_LINE"; }
  echo
  echo "require k8s.io/kubernetes $K8S_VERSION"
  echo
  echo "replace ("
  for m in "${STAGING[@]}"; do printf '\t%s => %s %s\n' "$m" "$m" "$STAGING_VERSION"; done
  echo ")"
} > "$WRAP/go.mod"
rm -f "$WRAP/go.sum"
cat > "$WRAP/tools.go" <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO

cd "$WRAP"
log "go mod tidy (${#STAGING[@]} staging modules pinned to $STAGING_VERSION)"
go mod tidy
MAJOR="${K8S_VERSION#v}"; MAJOR="${MAJOR%%.*}"
MINOR="${K8S_VERSION#v*.}"; MINOR="${MINOR%%.*}"
LDFLAGS="-s -w"
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  LDFLAGS+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$MAJOR -X $pkg.gitMinor=$MINOR"
done
log "go build k8s.io/kubernetes/cmd/kube-apiserver (the long part)"
started=$(date +%s)
go build -trimpath -ldflags "$LDFLAGS" -o "$OUT.tmp" k8s.io/kubernetes/cmd/kube-apiserver
mv "$OUT.tmp" "$OUT"
log "built in $(( $(date +%s) - started )) s"
echo "$OUT"
