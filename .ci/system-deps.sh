#!/usr/bin/env bash
# Installs the system parts pixelfleet's local stack needs, only where they are missing:
# a Java 17+ runtime and Maven (the Kafka broker), Go 1.21+ (builds MinIO; newer toolchains
# are fetched by Go itself through the module proxy), make, Python's venv, Chromium (the
# demo report test) and Prometheus (the dashboard query test).
set -euo pipefail

GO_FALLBACK=go1.24.13
CACHE="${PIXELFLEET_DEV_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pixelfleet}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

go_is_recent() {
  command -v go >/dev/null 2>&1 || return 1
  local v
  v=$(go env GOVERSION 2>/dev/null | sed 's/^go//')
  [ -n "$v" ] && [ "$(printf '%s\n1.21\n' "$v" | sort -V | head -1)" = "1.21" ]
}

need=()
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
command -v make >/dev/null 2>&1 || need+=(make)
command -v go >/dev/null 2>&1 || need+=(golang-go)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
# Headless Chromium opens the demo's HTML report in the end-to-end tests.
command -v chromium >/dev/null 2>&1 || need+=(chromium fonts-dejavu-core)
# A real Prometheus evaluates the dashboard's and the alert rules' queries in the tests.
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
  echo "system: installing ${need[*]}"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi

if ! go_is_recent; then
  # Debian 12's Go (1.19) predates toolchain switching; fetch a current toolchain through
  # the Go module proxy, as GOTOOLCHAIN=auto does, and put it first on the PATH.
  echo "system: fetching the $GO_FALLBACK toolchain through the Go module proxy"
  mod="$CACHE/go/toolchain"
  GOFLAGS=-modcacherw GOMODCACHE="$mod" go mod download "golang.org/toolchain@v0.0.1-$GO_FALLBACK.linux-amd64"
  root="$mod/golang.org/toolchain@v0.0.1-$GO_FALLBACK.linux-amd64"
  chmod -R u+x "$root/bin" "$root/pkg/tool"
  as_root ln -sf "$root/bin/go" /usr/local/bin/go
  hash -r
fi

# helm and kubeconform check the Helm chart offline (tests/unit/deploy); built from source
# with `go install` at pinned versions, once, into the cache.
HELM_VERSION=v3.19.0
KUBECONFORM_VERSION=v0.7.0
tools="$CACHE/tools"
build_tool() {  # name module version
  if ! "$tools/bin/$1" version >/dev/null 2>&1 && ! "$tools/bin/$1" -v >/dev/null 2>&1; then
    echo "system: building $1 $3 with go install"
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
  echo "system: building compose-go's validator $COMPOSE_GO_VERSION with go install"
  GOBIN="$tools/compose-go-$COMPOSE_GO_VERSION" GOMODCACHE="$tools/mod" GOFLAGS=-modcacherw \
    go install "github.com/compose-spec/compose-go/v2/cmd@$COMPOSE_GO_VERSION"
fi
as_root ln -sf "$tools/compose-go-$COMPOSE_GO_VERSION/cmd" /usr/local/bin/compose-spec
# BuildKit's Dockerfile checks without a daemon (deploy/docker/lint, pinned by its go.mod);
# rebuilt every run, which the Go build cache makes a no-op when nothing changed.
here="$(cd "$(dirname "$0")/.." && pwd)"
# BuildKit needs a newer Go than the fallback above; GOTOOLCHAIN=auto fetches it if so.
(cd "$here/deploy/docker/lint" && GOTOOLCHAIN=auto GOMODCACHE="$tools/mod" GOFLAGS=-modcacherw \
  go build -o "$tools/bin/dockerfile-lint" .)
as_root ln -sf "$tools/bin/dockerfile-lint" /usr/local/bin/dockerfile-lint

echo "system: $(java -version 2>&1 | head -1); $(mvn -v 2>/dev/null | head -1); $(go version)"
echo "system: helm $(helm version --short); kubeconform $(kubeconform -v); compose-go $COMPOSE_GO_VERSION"
