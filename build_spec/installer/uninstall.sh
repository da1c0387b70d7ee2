#!/bin/sh
# Remove what install.sh installed: ~/.local/opt/CellPol (or $CELLPOL_PREFIX/CellPol),
# the menu entry and the icons. Your images, projects and results are not touched.
set -eu

: "${HOME:?uninstall.sh: HOME is not set}"
prefix=${CELLPOL_PREFIX:-$HOME/.local/opt}
data=${XDG_DATA_HOME:-$HOME/.local/share}
dest=$prefix/CellPol
apps=$data/applications
icons=$data/icons/hicolor

# Only remove a folder that holds the app, never a folder that merely has its name.
if [ -d "$dest" ]; then
    if [ -x "$dest/CellPol" ] || [ -f "$dest/uninstall.sh" ]; then
        rm -rf "$dest"
        echo "removed $dest"
    else
        echo "uninstall.sh: $dest does not look like an installed CellPol; left alone" >&2
    fi
fi
for f in "$apps/cellpol.desktop" "$icons/256x256/apps/cellpol.png" "$icons/scalable/apps/cellpol.svg"; do
    if [ -e "$f" ]; then
        rm -f "$f"
        echo "removed $f"
    fi
done
rmdir "$prefix" 2>/dev/null || true  # only when empty

if command -v update-desktop-database >/dev/null 2>&1; then
    update-desktop-database -q "$apps" >/dev/null 2>&1 || true
fi
echo "CellPol uninstalled"
