#!/usr/bin/env bash
# Build a real `helm` from Go modules (for the chart tests: `helm lint` and `helm template`).
#
# helm.sh/helm/v4 has no replace directives in its go.mod, so `go install module@version` builds
# it directly; the version string is stamped the way helm's own Makefile does.
#
#   scripts/build-helm.sh          # prints the binary's path (builds it if missing)
#
# Output: $OPENSERGO_HELM_DIR (default ~/.cache/opensergo/helm/<version>)/helm.
# A few minutes on 2 cores the first time (progress on stderr); instant afterwards.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v4.3.2}"
DIR="${OPENSERGO_HELM_DIR:-$HOME/.cache/opensergo/helm/$HELM_VERSION}"
OUT="$DIR/helm"

if [ -x "$OUT" ]; then
  echo "$OUT"
  exit 0
fi

export PATH="$PATH:/usr/local/go/bin"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
log() { printf '[build-helm %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
command -v go >/dev/null || { log "go is not installed"; exit 1; }

log "building helm $HELM_VERSION into $DIR ($(go version))"
mkdir -p "$DIR"
BIN="$(mktemp -d "$DIR/gobin.XXXXXX")"
trap 'rm -rf "$BIN"' EXIT
LDFLAGS="-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION"
LDFLAGS+=" -X helm.sh/helm/v4/internal/version.gitTreeState=clean"
log "go install helm.sh/helm/v4/cmd/helm@$HELM_VERSION (downloads modules, then compiles)"
started=$(date +%s)
GOBIN="$BIN" go install -v -trimpath -ldflags "$LDFLAGS" "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" 2>&1 \
  | awk '/[ :]/ { print; fflush(); next }   # errors and download notices as they are
         { n++ } n % 50 == 0 { printf "[build-helm] %d packages compiled (%s)\n", n, $0; fflush() }' >&2
[ -x "$BIN/helm" ] || { log "go install produced no binary"; exit 1; }
mv "$BIN/helm" "$OUT"
log "built in $(( $(date +%s) - started )) s"
echo "$OUT"
