#!/usr/bin/env bash
# Build (if needed) the offline test image aside-servers:<hash>.
#
#   ci/build-images.sh          -> last line of stdout is the image tag
#   tag=$(ci/build-images.sh)   -> progress goes to stderr, the tag to stdout
#
# <hash> = first 12 hex chars of the sha256 over ci/images/*.sh and *.c (name and
# content). If that image exists, nothing is done. Otherwise a Debian bookworm
# rootfs is debootstrapped into a temp dir under /var/tmp and `docker import`ed
# (no registry is reachable; only Debian's package mirrors are). Needs root.
# The full build log is kept in /var/tmp/aside-build-images.log.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
images_dir=$here/images
repo=aside-servers
log=/var/tmp/aside-build-images.log
work=

die() { echo "build-images: ERROR: $*" >&2; exit 1; }
say() { echo "build-images: $*" >&2; }

cleanup() {
    local rc=$?
    if [ -n "$work" ] && [ -d "$work" ]; then
        # Unmount anything left mounted below the work dir before removing it.
        local m
        for m in $(awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r); do
            umount -l "$m" 2>/dev/null || true
        done
        if awk -v w="$work/" 'index($2, w) == 1 { f = 1 } END { exit !f }' /proc/mounts; then
            echo "build-images: ERROR: mounts remain under $work; not removing it" >&2
        else
            rm -rf --one-file-system "$work"
        fi
    fi
    return $rc
}
trap cleanup EXIT
trap 'rc=$?; echo "build-images: ERROR: command failed (exit $rc) at line $LINENO: $BASH_COMMAND (see $log)" >&2; exit $rc' ERR

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap and chroot need it)"
command -v docker >/dev/null 2>&1 || die "docker CLI not found: install docker.io"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 \
    || die "docker is not reachable: start the Docker engine (systemctl start docker)"
command -v cc >/dev/null 2>&1 || die "no C compiler (cc) to build the clock shim with: apt-get install gcc"

# Hash of the recipe files: names and contents, in a fixed order.
hash=$(cd "$images_dir" && LC_ALL=C ls -1 -- *.sh *.c | LC_ALL=C sort \
       | while read -r f; do printf '%s\n' "$f"; sha256sum <"$f"; done \
       | sha256sum | cut -c1-12)
tag=$repo:$hash

# One build at a time on this machine.
exec 9>/var/tmp/aside-build-images.lock
flock 9

if docker image inspect "$tag" >/dev/null 2>&1; then
    say "$tag is up to date"
    docker tag "$tag" "$repo:latest"
    echo "$tag"
    exit 0
fi

: >"$log"
# debootstrap (and the Debian keyring it verifies with) on a fresh machine.
if ! command -v debootstrap >/dev/null 2>&1 || [ ! -s /usr/share/keyrings/debian-archive-keyring.gpg ]; then
    say "installing debootstrap"
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y debootstrap debian-archive-keyring; } >>"$log" 2>&1 \
        || die "could not install debootstrap with apt-get (see $log)"
fi

# For ASIDE_IMPORT_CHANGES.
# shellcheck source=images/recipe.sh
. "$images_dir/recipe.sh"

start=$SECONDS
work=$(mktemp -d /var/tmp/aside-image.XXXXXX)
say "building $tag in $work (log: $log)"
# A child bash (not a function call): `set -e` must stay in force inside it.
bash "$images_dir/recipe.sh" "$work/rootfs" >>"$log" 2>&1 || {
    tail -n 30 "$log" >&2
    die "building the rootfs failed (full log: $log)"
}
say "rootfs built in $((SECONDS - start))s ($(du -sh --one-file-system "$work/rootfs" | cut -f1)); importing"

changes=()
for c in "${ASIDE_IMPORT_CHANGES[@]}"; do changes+=(--change "$c"); done
changes+=(--change "LABEL org.aside.recipe-hash=$hash")
tar --numeric-owner --xattrs -C "$work/rootfs" -c \
    --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' . \
  | docker import "${changes[@]}" --message "aside-servers recipe $hash" - "$tag" >>"$log" 2>&1 \
  || die "docker import failed (see $log)"
docker tag "$tag" "$repo:latest"

size=$(docker image inspect --format '{{.Size}}' "$tag")
say "built $tag in $((SECONDS - start))s, size $((size / 1000000)) MB"
echo "$tag"
