#!/usr/bin/env bash
# Recipe for the offline test image `aside-servers:<hash>`.
#
# The machine has a Docker engine but no registry, so the image is a Debian
# bookworm rootfs made with debootstrap and turned into an image with
# `docker import`. ci/build-images.sh sources this file; the image tag is the
# sha256 of the ci/images/*.sh files, so ANY change here gives a new tag.
#
# It can also be run by hand (as root) to make just the rootfs:
#   ci/images/recipe.sh /var/tmp/some-empty-dir
#
# What the image holds: redis-server + redis-sentinel (7.0), memcached (1.6.18,
# meta commands), PostgreSQL 15, and iproute2/iptables/procps/netcat-openbsd
# for fault injection, and /usr/local/lib/libaside-clock.so (clock-shim.c, the
# `clock` fault's wall clock for Redis). No service is started at install time and no database
# cluster is created; containers pick the server through their command (see
# ci/images/README.md for the exact commands).

ASIDE_SUITE=bookworm

# Installed with --no-install-recommends into a minbase system.
ASIDE_PACKAGES=(
    redis-server redis-sentinel redis-tools
    memcached
    postgresql-15 postgresql-client-15
    iproute2 iptables procps netcat-openbsd
)

# Metadata given to `docker import --change`.
ASIDE_IMPORT_CHANGES=(
    'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
    'ENV LANG=C.UTF-8'
    'ENV PGDATA=/var/lib/postgresql/data'
    'WORKDIR /'
    'CMD ["/bin/bash"]'
)

# First URI of an enabled apt source of this machine whose path ends in
# /$1 (debian or debian-security); empty if none.
aside_host_mirror() {
    local want=$1 f uri
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        while read -r uri; do
            uri=${uri%/}
            case "$uri" in
                http://*/"$want" | https://*/"$want") echo "$uri"; return 0 ;;
            esac
        done < <(sed -n -e 's/^[[:space:]]*URIs:[[:space:]]*//p' \
                        -e 's/^[[:space:]]*deb[[:space:]]\{1,\}\(\[[^]]*\][[:space:]]*\)\{0,1\}\([^[:space:]]*\).*/\2/p' "$f" \
                 | tr ' ' '\n')
    done
    return 0
}

# Build the rootfs into $1 (must be empty or absent). Needs root and debootstrap.
# Mirrors: $ASIDE_DEBIAN_MIRROR / $ASIDE_SECURITY_MIRROR, else the ones this
# machine's apt uses, else deb.debian.org.
aside_build_rootfs() {
    local root=$1
    local mirror=${ASIDE_DEBIAN_MIRROR:-$(aside_host_mirror debian)}
    local secmirror=${ASIDE_SECURITY_MIRROR:-$(aside_host_mirror debian-security)}
    mirror=${mirror:-http://deb.debian.org/debian}
    secmirror=${secmirror:-http://deb.debian.org/debian-security}
    local arch
    arch=$(dpkg --print-architecture)

    echo "recipe: debootstrap $ASIDE_SUITE ($arch, minbase) from $mirror" >&2
    debootstrap --variant=minbase --arch="$arch" "$ASIDE_SUITE" "$root" "$mirror"

    cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror $ASIDE_SUITE main
deb $mirror $ASIDE_SUITE-updates main
deb $secmirror $ASIDE_SUITE-security main
EOF
    # Never start a service while installing (there is no init in the chroot
    # and nothing may escape onto the build host).
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 0755 "$root/usr/sbin/policy-rc.d"
    # Keep the image lean: no docs, man pages or message translations.
    cat >"$root/etc/dpkg/dpkg.cfg.d/01-aside-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
    cat >"$root/etc/apt/apt.conf.d/01-aside" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Retries "3";
Dpkg::Options { "--force-confdef"; "--force-confold"; };
EOF

    # (/proc is unmounted below; on failure the caller unmounts it.)
    mount -t proc proc "$root/proc"
    local in_root=(chroot "$root" /usr/bin/env -i
        PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 HOME=/root)

    "${in_root[@]}" apt-get update
    "${in_root[@]}" apt-get -y dist-upgrade
    # postgresql-common first, so that no "main" cluster is created when the
    # server package is configured: containers run their own initdb.
    "${in_root[@]}" apt-get install -y postgresql-common
    sed -i 's/^#\{0,1\}[[:space:]]*create_main_cluster[[:space:]]*=.*/create_main_cluster = false/' \
        "$root/etc/postgresql-common/createcluster.conf"
    grep -q '^create_main_cluster = false' "$root/etc/postgresql-common/createcluster.conf"
    "${in_root[@]}" apt-get install -y "${ASIDE_PACKAGES[@]}"

    # Directories the container commands rely on.
    "${in_root[@]}" sh -euc '
        install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data
        install -d -o postgres -g postgres -m 2775 /var/run/postgresql
        test ! -e /var/lib/postgresql/15/main
        redis-server --version; memcached -V; /usr/lib/postgresql/15/bin/postgres --version
    '

    # The clock shim a `clock` fault moves Redis's wall clock through, built with
    # the host's C compiler (the image has none; both are bookworm's glibc).
    cc -O2 -Wall -shared -fPIC -o "$root/usr/local/lib/libaside-clock.so" \
        "$(dirname "${BASH_SOURCE[0]}")/clock-shim.c"

    # Clean up.
    "${in_root[@]}" apt-get clean
    rm -f "$root/usr/sbin/policy-rc.d"
    # The same for what debootstrap installed before the dpkg filter existed.
    find "$root/usr/share/doc" -xdev -type f ! -name copyright -delete
    find "$root/usr/share/locale" -xdev -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
    rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/*
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
           "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old \
           "$root"/var/log/*.log "$root"/var/log/apt/* \
           "$root"/tmp/* "$root"/var/tmp/* "$root"/root/.cache
    : >"$root/etc/resolv.conf"
    : >"$root/etc/hostname"
    umount "$root/proc"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    [ $# -eq 1 ] || { echo "usage: $0 ROOTFS_DIR" >&2; exit 2; }
    trap 'umount "$1/proc" 2>/dev/null || true' EXIT
    aside_build_rootfs "$1"
fi
