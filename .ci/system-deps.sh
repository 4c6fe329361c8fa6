#!/usr/bin/env bash
# Installs the system parts pixelfleet's local stack and demo need, only where they are
# missing: a Java 17+ runtime and Maven (the Kafka broker), Go 1.21+ (builds MinIO, whose
# pinned version needs Go 1.24: the build sets GOTOOLCHAIN=auto, so an older go fetches
# that toolchain itself through the module proxy), make and Python's venv.
# The tools only the tests use are .ci/test-deps.sh's.
set -euo pipefail

GO_FALLBACK=go1.24.13
JAVA_MIN=17
CACHE="${PIXELFLEET_DEV_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pixelfleet}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

go_is_recent() {
  command -v go >/dev/null 2>&1 || return 1
  local v
  v=$(go env GOVERSION 2>/dev/null | sed 's/^go//')
  [ -n "$v" ] && [ "$(printf '%s\n1.21\n' "$v" | sort -V | head -1)" = "1.21" ]
}

# The major version of the `java` on the PATH, 0 when there is none. Parsed as
# streams/devstack/kafka.py's check_java does: `version "17.0.15"`, `version "21"`, and
# the old scheme `version "1.8.0_392"` (major 8).
java_major() {
  command -v java >/dev/null 2>&1 || { echo 0; return; }
  local v
  v=$(java -version 2>&1 | sed -n 's/.*version "\([0-9][0-9.]*\).*/\1/p' | head -1)
  case "$v" in 1.*) v=${v#1.} ;; esac
  v=${v%%.*}
  echo "${v:-0}"
}

# Go's name for this machine's architecture (the toolchain module's suffix).
go_arch() {
  case "$(uname -m)" in
    x86_64 | amd64) echo amd64 ;;
    aarch64 | arm64) echo arm64 ;;
    armv6l | armv7l) echo armv6l ;;
    i386 | i686) echo 386 ;;
    ppc64le) echo ppc64le ;;
    s390x) echo s390x ;;
    riscv64) echo riscv64 ;;
    loongarch64) echo loong64 ;;
    *) echo "system: no Go toolchain known for $(uname -m); install Go 1.24+ yourself" >&2
       return 1 ;;
  esac
}

need=()
# Any java is not enough: Kafka 4 refuses to start on one older than 17.
[ "$(java_major)" -ge "$JAVA_MIN" ] || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
command -v make >/dev/null 2>&1 || need+=(make)
command -v go >/dev/null 2>&1 || need+=(golang-go)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "system: installing ${need[*]}"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
  hash -r
fi
if [ "$(java_major)" -lt "$JAVA_MIN" ]; then
  # Installed, but an older java still comes first on the PATH (one outside Debian's
  # alternatives, or alternatives set by hand): say so rather than let Kafka fail later.
  echo "system: \`java\` on the PATH is $(java_major), Kafka needs $JAVA_MIN+; put a Java" \
    "$JAVA_MIN+ first (e.g. sudo update-alternatives --config java; JDKs are in /usr/lib/jvm)" >&2
  exit 1
fi

if ! go_is_recent; then
  # Debian 12's Go (1.19) predates toolchain switching; fetch a current toolchain through
  # the Go module proxy, as GOTOOLCHAIN=auto does, and put it first on the PATH.
  toolchain="golang.org/toolchain@v0.0.1-$GO_FALLBACK.linux-$(go_arch)"
  echo "system: fetching the $GO_FALLBACK toolchain through the Go module proxy"
  mod="$CACHE/go/toolchain"
  GOFLAGS=-modcacherw GOMODCACHE="$mod" go mod download "$toolchain"
  root="$mod/$toolchain"
  chmod -R u+x "$root/bin" "$root/pkg/tool"
  as_root ln -sf "$root/bin/go" /usr/local/bin/go
  hash -r
fi

echo "system: $(java -version 2>&1 | head -1); $(mvn -v 2>/dev/null | head -1); $(go version)"
