#!/usr/bin/env bash
# Installs the system packages that CellPol's app, its GUI tests and the standalone
# bundle need: Xvfb (a virtual display for the GUI tests), Qt's X11/OpenGL libraries,
# binutils (PyInstaller's objdump) and desktop-file-utils (the bundle's menu entry).
#
#   scripts/install_system_deps.sh           install what is missing
#   scripts/install_system_deps.sh --check   only say whether something is missing (exit 1)
#
# Debian/Ubuntu: apt-get, through sudo when not root. Other systems: prints the
# packages for the package manager it finds (dnf, zypper, pacman, brew) and exits 1;
# install them yourself. Without them the GUI tests are skipped, with the reason.
# Idempotent: when everything is there it only runs one dpkg-query.
set -euo pipefail

DEB_PACKAGES=(binutils desktop-file-utils xvfb xauth libgl1 libgl1-mesa-dri libegl1
    libdbus-1-3 libfontconfig1 libglib2.0-0 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4
    libxcb-image0 libxcb-keysyms1 libxcb-render-util0 libxcb-shape0)
DNF_PACKAGES="binutils desktop-file-utils xorg-x11-server-Xvfb xorg-x11-xauth mesa-libGL \
mesa-dri-drivers mesa-libEGL dbus-libs fontconfig glib2 libxkbcommon-x11 xcb-util-cursor \
xcb-util-wm xcb-util-image xcb-util-keysyms xcb-util-renderutil libxcb"
ZYPPER_PACKAGES="binutils desktop-file-utils xorg-x11-server-Xvfb xauth Mesa-libGL1 Mesa-dri \
Mesa-libEGL1 libdbus-1-3 fontconfig libglib-2_0-0 libxkbcommon-x11-0 libxcb-cursor0 \
libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-render-util0 libxcb-shape0"
PACMAN_PACKAGES="binutils desktop-file-utils xorg-server-xvfb xorg-xauth libglvnd mesa dbus \
fontconfig glib2 libxkbcommon-x11 xcb-util-cursor xcb-util-wm xcb-util-image \
xcb-util-keysyms xcb-util-renderutil libxcb"
# What the packages provide, for systems whose package names we do not know.
GENERIC="Xvfb, xauth, OpenGL/EGL (Mesa), D-Bus, fontconfig, GLib, xkbcommon-x11, the XCB \
utility libraries (cursor, icccm/wm, image, keysyms, render-util, shape), binutils (objdump), \
desktop-file-utils"

check_only=0
case "${1:-}" in
    --check) check_only=1 ;;
    "") ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "install_system_deps: unknown option $1 (use --check or nothing)" >&2; exit 2 ;;
esac

say() { echo "install_system_deps: $*"; }

if command -v dpkg-query >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    # One dpkg-query for all packages; unknown ones are reported on stderr (ignored).
    installed=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${DEB_PACKAGES[@]}" \
        2>/dev/null | awk '$2 ~ /^ii/ {sub(/:.*/, "", $1); print $1}' || true)
    missing=()
    for pkg in "${DEB_PACKAGES[@]}"; do
        grep -qx "$pkg" <<<"$installed" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        [ "$check_only" -eq 1 ] || say "all system packages are installed"
        exit 0
    fi
    if [ "$check_only" -eq 1 ]; then
        say "missing Debian packages: ${missing[*]}"
        exit 1
    fi
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=()
    elif command -v sudo >/dev/null 2>&1 && { sudo -n true 2>/dev/null || [ -t 0 ]; }; then
        SUDO=(sudo)  # asks for the password on a terminal
    else
        say "cannot install ${missing[*]}: not root and no usable sudo."
        say "ask an administrator to run: apt-get install ${missing[*]}"
        exit 1
    fi
    say "installing Debian packages: ${missing[*]}"
    "${SUDO[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends \
        "${missing[@]}"
    exit 0
fi

# Not Debian: a cheap check for the commands and libraries, then the list to install.
missing_any=0
for cmd in Xvfb xauth objdump; do
    command -v "$cmd" >/dev/null 2>&1 || missing_any=1
done
if command -v ldconfig >/dev/null 2>&1; then
    libs=$(ldconfig -p 2>/dev/null || true)
    for lib in libxcb-cursor.so.0 libxkbcommon-x11.so.0 libEGL.so.1 libGL.so.1; do
        grep -q "$lib" <<<"$libs" || missing_any=1
    done
fi
if [ "$(uname -s)" = "Darwin" ]; then
    # Qt draws with Cocoa on macOS: the app and its GUI tests need no X server.
    [ "$check_only" -eq 1 ] || say "macOS: no system packages needed"
    exit 0
fi
if [ "$missing_any" -eq 0 ]; then
    [ "$check_only" -eq 1 ] || say "the needed commands and libraries are present"
    exit 0
fi
if [ "$check_only" -eq 1 ]; then
    say "system packages missing (Xvfb, X11/OpenGL libraries or binutils)"
    exit 1
fi
if command -v dnf >/dev/null 2>&1; then
    say "run: sudo dnf install $DNF_PACKAGES"
elif command -v zypper >/dev/null 2>&1; then
    say "run: sudo zypper install $ZYPPER_PACKAGES"
elif command -v pacman >/dev/null 2>&1; then
    say "run: sudo pacman -S --needed $PACMAN_PACKAGES"
else
    say "install with your package manager: $GENERIC"
    say "(their Debian names: ${DEB_PACKAGES[*]})"
fi
say "not a Debian/Ubuntu system: install the packages above yourself; until then the GUI tests are skipped"
exit 1
