# Sourced by the build and test scripts: install Debian packages that are
# missing, with sudo when not root.
#
#   source scripts/apt.sh
#   apt_install_missing [--recommends] PKG...
#
# Installed packages are skipped (dpkg's status), so a second run does
# nothing and needs neither root nor the network. `apt-get update` runs at
# most once per shell. Recommended packages are left out unless asked for.

apt_install_missing() {
    local recommends=(--no-install-recommends)
    if [[ ${1:-} == --recommends ]]; then recommends=(); shift; fi
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || {
            echo "need root (or sudo) to apt-get install ${missing[*]}" >&2
            return 1
        }
        sudo=(sudo)
    fi
    echo "apt-get install ${missing[*]}" >&2
    if [[ -z ${SLUICE_APT_UPDATED:-} ]]; then
        # Another install may hold the lists' lock for a while: try again.
        local try
        for try in $(seq 60); do
            "${sudo[@]}" apt-get update -qq -o DPkg::Lock::Timeout=600 && break
            [ "$try" -lt 60 ] || return 1
            sleep 5
        done
        SLUICE_APT_UPDATED=1
    fi
    # Installs may run side by side (tests/run.sh starts several in the
    # background): wait for dpkg's lock rather than fail.
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq -o DPkg::Lock::Timeout=600 \
        "${recommends[@]}" "${missing[@]}" >/dev/null
}
