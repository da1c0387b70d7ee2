#!/bin/sh
# Install CellPol for the current user, with no root rights:
#   the app          -> ~/.local/opt/CellPol/      (CELLPOL_PREFIX overrides ~/.local/opt)
#   the menu entry   -> ~/.local/share/applications/cellpol.desktop
#   the icon         -> ~/.local/share/icons/hicolor/{256x256,scalable}/apps/cellpol.*
# (~/.local/share is $XDG_DATA_HOME when set.) Running it again replaces the
# installed app. Remove everything with ~/.local/opt/CellPol/uninstall.sh.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
: "${HOME:?install.sh: HOME is not set}"
prefix=${CELLPOL_PREFIX:-$HOME/.local/opt}
data=${XDG_DATA_HOME:-$HOME/.local/share}
dest=$prefix/CellPol
apps=$data/applications
icons=$data/icons/hicolor

if [ ! -x "$here/CellPol/CellPol" ]; then
    echo "install.sh: $here/CellPol/CellPol not found; run install.sh from the unpacked archive" >&2
    exit 1
fi
case "$dest" in
    *[\"\`\$\\%]*)  # the menu entry's Exec= line cannot hold these characters
        echo "install.sh: cannot install into $dest (it contains \" \` \$ \\ or %); set CELLPOL_PREFIX" >&2
        exit 1 ;;
esac

mkdir -p "$prefix" "$apps" "$icons/256x256/apps" "$icons/scalable/apps"

# Copy next to the destination first, then swap: an interrupted install never
# leaves a half-copied app where the menu entry points.
tmp="$prefix/.CellPol.installing.$$"
trap 'rm -rf "$tmp"' EXIT INT TERM
rm -rf "$tmp"
cp -R "$here/CellPol" "$tmp"
cp "$here/uninstall.sh" "$tmp/uninstall.sh"
chmod 755 "$tmp/uninstall.sh"
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT INT TERM

cp "$here/cellpol.png" "$icons/256x256/apps/cellpol.png"
[ -f "$here/cellpol.svg" ] && cp "$here/cellpol.svg" "$icons/scalable/apps/cellpol.svg"

# An absolute icon path works in every desktop, with or without an icon theme cache.
sed -e "s|@EXEC@|$dest/CellPol|g" -e "s|@ICON@|$icons/256x256/apps/cellpol.png|g" \
    "$here/cellpol.desktop.in" > "$apps/cellpol.desktop.tmp"
chmod 644 "$apps/cellpol.desktop.tmp"
mv "$apps/cellpol.desktop.tmp" "$apps/cellpol.desktop"

# Menus pick the entry up by themselves; this refreshes the "open with" cache
# for image/tiff, when the tool is present. (The entry names its icon by path,
# so no icon-theme cache is needed.)
if command -v update-desktop-database >/dev/null 2>&1; then
    update-desktop-database -q "$apps" >/dev/null 2>&1 || true
fi

echo "CellPol installed in $dest"
echo "  menu entry: $apps/cellpol.desktop"
echo "  run it:     \"$dest/CellPol\"   (self-test: \"$dest/CellPol\" --selftest)"
echo "  uninstall:  \"$dest/uninstall.sh\""
