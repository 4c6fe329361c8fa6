#!/usr/bin/env bash
# Installs the system parts pixelfleet's local stack and demo need, only where they are
# missing: a Java 17+ runtime and Maven (the Kafka broker), Go 1.21+ (builds MinIO; newer
# toolchains are fetched by Go itself through the module proxy), make and Python's venv.
# The tools only the tests use are .ci/test-deps.sh's.
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

echo "system: $(java -version 2>&1 | head -1); $(mvn -v 2>/dev/null | head -1); $(go version)"
