#!/usr/bin/env bash
# Builds, without any container registry, the images that stand in for the official ones:
#   leadvibe/debian:bookworm   for debian:bookworm-slim  debootstrap (minbase) + docker import
#   leadvibe/postgres:15       for postgres:16           Debian's postgresql-15 package
#   leadvibe/kafka:<version>   for apache/kafka:<version> the Maven-fetched jars of scripts/kafka.sh
# Each honours the environment variables of the image it stands in for, so the test fixtures
# and compose.yaml run unchanged on either.
#   docker/images.sh build [--force]   build those missing or whose recipe changed
#   docker/images.sh env               print the exports that point the fixtures and compose.yaml
#                                      at the local tags (eval "$(docker/images.sh env)")
# Packages come from the Debian mirror this machine's apt uses (DEBIAN_MIRROR overrides it).
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
DIR="$LOCAL/docker"
SUITE=bookworm
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/scripts/kafka/pom.xml")
BASE_TAG=leadvibe/debian:$SUITE
POSTGRES_TAG=leadvibe/postgres:15
KAFKA_TAG=leadvibe/kafka:$KAFKA_VERSION
RECIPE_LABEL=dev.leadvibe.recipe
export DOCKER_BUILDKIT=0  # the classic builder: no buildx plugin or frontend image to fetch

# apt_mirror SUITE: the first URI this machine's apt sources list for SUITE (one-line .list
# files and deb822 .sources files alike).
apt_mirror() {
  local suite=$1 f
  {
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [ -f "$f" ] || continue
      awk -v s="$suite" '$1 == "deb" { sub(/^deb[ \t]+(\[[^]]*\][ \t]+)?/, ""); if ($2 == s) print $1 }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] || continue
      awk -v s="$suite" '
        function flush() { if (uri != "" && deb && suite) print uri; uri = ""; deb = 0; suite = 0 }
        /^[ \t]*$/ { flush(); next }
        tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
        tolower($1) == "uris:" { uri = $2 }
        tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == s) suite = 1 }
        END { flush() }' "$f"
    done
  } | head -n 1
}

# recipe FILES...: a digest of a build's inputs, kept as a label to rebuild only on change.
recipe() {
  { find "$@" -type f -print0 | sort -z | xargs -0 sha1sum | sed "s:$ROOT/::"
    docker image inspect -f '{{.Id}}' "$BASE_TAG"
  } | sha1sum | cut -c1-16
}

up_to_date() {  # up_to_date TAG RECIPE
  [ "$(docker image inspect -f "{{ index .Config.Labels \"$RECIPE_LABEL\" }}" "$1" 2>/dev/null)" = "$2" ]
}

build_base() {
  if docker image inspect "$BASE_TAG" > /dev/null 2>&1 && [ "$FORCE" = 0 ]; then
    return
  fi
  local mirror="${DEBIAN_MIRROR:-$(apt_mirror "$SUITE")}"
  local security="${DEBIAN_SECURITY_MIRROR:-$(apt_mirror "$SUITE-security")}"
  mirror="${mirror:-http://deb.debian.org/debian}"
  security="${security:-http://deb.debian.org/debian-security}"
  command -v debootstrap > /dev/null || "$ROOT/docker/engine.sh" install debootstrap
  local rootfs="$DIR/rootfs"
  rm -rf "$rootfs"
  mkdir -p "$DIR"
  echo "images: debootstrap --variant=minbase $SUITE from $mirror (log: $DIR/debootstrap.log)"
  if ! debootstrap --variant=minbase "$SUITE" "$rootfs" "$mirror" > "$DIR/debootstrap.log" 2>&1; then
    tail -n 20 "$DIR/debootstrap.log" >&2
    exit 1
  fi
  # What Debian's own container images add to a minbase root: the same apt sources as the
  # host, no services started by package scripts, and no package caches left in layers.
  rm -f "$rootfs/etc/apt/sources.list"
  cat > "$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # The image trusts what this machine trusts: CA certificates added locally (a TLS-inspecting
  # proxy's, say) reach the image's bundle when a build installs ca-certificates, so builds on
  # it fetch from PyPI the way the host does.
  if [ -d /usr/local/share/ca-certificates ]; then
    cp -R /usr/local/share/ca-certificates/. "$rootfs/usr/local/share/ca-certificates/"
  fi
  printf '#!/bin/sh\nexit 101\n' > "$rootfs/usr/sbin/policy-rc.d"
  chmod +x "$rootfs/usr/sbin/policy-rc.d"
  cat > "$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
APT::Install-Recommends "false";
EOF
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log
  tar --numeric-owner -C "$rootfs" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    --message "debootstrap --variant=minbase $SUITE $mirror" - "$BASE_TAG" > /dev/null
  rm -rf "$rootfs"
}

build_image() {  # build_image TAG CONTEXT
  local tag=$1 context=$2 sum
  sum=$(recipe "$context")
  if up_to_date "$tag" "$sum" && [ "$FORCE" = 0 ]; then
    return
  fi
  echo "images: building $tag (log: $DIR/build-${tag//[\/:]/-}.log)"
  if ! docker build --network host --pull=false --build-arg "BASE_IMAGE=$BASE_TAG" \
      --label "$RECIPE_LABEL=$sum" -t "$tag" "$context" > "$DIR/build-${tag//[\/:]/-}.log" 2>&1; then
    tail -n 30 "$DIR/build-${tag//[\/:]/-}.log" >&2
    exit 1
  fi
}

build_kafka() {
  "$ROOT/scripts/kafka.sh" fetch
  # The build context is the recipe plus the jars, staged together (Docker reads no files
  # outside its context).
  local context="$DIR/kafka-context"
  rm -rf "$context"
  mkdir -p "$context"
  cp -R "$ROOT/docker/kafka/." "$context/"
  mkdir "$context/libs"
  cp "$LOCAL"/kafka/libs/*.jar "$context/libs/"
  build_image "$KAFKA_TAG" "$context"
  rm -rf "$context"
}

timed() {  # timed NAME COMMAND...: run it; report how long it took if it did any work
  local start=$SECONDS
  "${@:2}"
  echo "images: $1 ready ($((SECONDS - start)) s)"
}

build() {
  FORCE=0
  [ "${1:-}" != --force ] || FORCE=1
  mkdir -p "$DIR"
  timed "$BASE_TAG" build_base
  timed "$POSTGRES_TAG" build_image "$POSTGRES_TAG" "$ROOT/docker/postgres"
  timed "$KAFKA_TAG" build_kafka
  # The images the rebuilds replaced, now untagged.
  docker image prune -f --filter "label=$RECIPE_LABEL" > /dev/null
}

env_exports() {  # values already set in the environment are kept
  echo "export LEADVIBE_BASE_IMAGE=${LEADVIBE_BASE_IMAGE:-$BASE_TAG}"
  echo "export LEADVIBE_POSTGRES_IMAGE=${LEADVIBE_POSTGRES_IMAGE:-$POSTGRES_TAG}"
  echo "export LEADVIBE_KAFKA_IMAGE=${LEADVIBE_KAFKA_IMAGE:-$KAFKA_TAG}"
  # Ryuk, testcontainers' reaper, is one more image to pull; the fixtures remove their own.
  echo "export TESTCONTAINERS_RYUK_DISABLED=${TESTCONTAINERS_RYUK_DISABLED:-true}"
}

case "${1:-}" in
  build) build "${2:-}" ;;
  env) env_exports ;;
  *) echo "usage: $0 build [--force] | env" >&2; exit 2 ;;
esac
