#!/usr/bin/env bash
# Installs what only the tests use, where missing, on top of .ci/system-deps.sh (which it
# runs first): Chromium (the demo report's browser test), Prometheus (the dashboard query
# test), and helm, kubeconform, compose-go's validator and BuildKit's Dockerfile checks
# (the offline deploy tests), built from source at pinned versions into the cache.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bash "$here/.ci/system-deps.sh"

CACHE="${PIXELFLEET_DEV_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pixelfleet}"
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

need=()
# Headless Chromium opens the demo's HTML report in the end-to-end tests.
command -v chromium >/dev/null 2>&1 || need+=(chromium fonts-dejavu-core)
# A real Prometheus evaluates the dashboard's and the alert rules' queries in the tests.
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
  echo "test-deps: installing ${need[*]}"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# helm and kubeconform check the Helm chart offline (tests/unit/deploy); built from source
# with `go install` at pinned versions, once, into the cache.
HELM_VERSION=v3.19.0
KUBECONFORM_VERSION=v0.7.0
tools="$CACHE/tools"
build_tool() {  # name module version
  if ! "$tools/bin/$1" version >/dev/null 2>&1 && ! "$tools/bin/$1" -v >/dev/null 2>&1; then
    echo "test-deps: building $1 $3 with go install"
    GOBIN="$tools/bin" GOMODCACHE="$tools/mod" GOFLAGS=-modcacherw go install "$2@$3"
  fi
  if [ "$(command -v "$1")" != "$tools/bin/$1" ] && [ "$(readlink -f "$(command -v "$1" || true)")" != "$tools/bin/$1" ]; then
    as_root ln -sf "$tools/bin/$1" "/usr/local/bin/$1"
  fi
}
build_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
build_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"

# compose-go's own validator (the loader `docker compose config` uses) checks
# deploy/compose.yaml; its command is named `cmd`, so it gets a folder of its own.
COMPOSE_GO_VERSION=v2.16.2
if [ ! -x "$tools/compose-go-$COMPOSE_GO_VERSION/cmd" ]; then
  echo "test-deps: building compose-go's validator $COMPOSE_GO_VERSION with go install"
  GOBIN="$tools/compose-go-$COMPOSE_GO_VERSION" GOMODCACHE="$tools/mod" GOFLAGS=-modcacherw \
    go install "github.com/compose-spec/compose-go/v2/cmd@$COMPOSE_GO_VERSION"
fi
as_root ln -sf "$tools/compose-go-$COMPOSE_GO_VERSION/cmd" /usr/local/bin/compose-spec
# BuildKit's Dockerfile checks without a daemon (deploy/docker/lint, pinned by its go.mod);
# rebuilt every run, which the Go build cache makes a no-op when nothing changed.
# BuildKit needs a newer Go than the fallback above; GOTOOLCHAIN=auto fetches it if so.
(cd "$here/deploy/docker/lint" && GOTOOLCHAIN=auto GOMODCACHE="$tools/mod" GOFLAGS=-modcacherw \
  go build -o "$tools/bin/dockerfile-lint" .)
as_root ln -sf "$tools/bin/dockerfile-lint" /usr/local/bin/dockerfile-lint

echo "test-deps: helm $(helm version --short); kubeconform $(kubeconform -v); compose-go $COMPOSE_GO_VERSION"
